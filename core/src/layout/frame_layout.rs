//! The validated geometry of a frame in its slot (`docs/protocol.md` §3.3).
//!
//! [`StreamDesc::validate`](super::StreamDesc::validate) checks a stream
//! description against a slot size once and returns a [`FrameLayout`]
//! (smoltcp's `Repr`): per plane its offset, pitch, row bytes and rows, and
//! the bytes the frame occupies. Consumers read planes, rows and packed
//! sizes from it instead of re-deriving them from the description's fields.
//!
//! Units: offsets, pitches and sizes are bytes, offsets relative to the
//! slot's first byte; `rows` counts rows; width and height are pixels.
//!
//! Contract: a `FrameLayout` is made only by `validate`, so for every plane
//! `offset + pitch · rows ≤ frame_size ≤ slot_size`, `pitch ≥ row_bytes`,
//! `rows ≥ 1`, the planes' `offset .. offset + pitch · rows` ranges do not
//! overlap, and `frame_size` fits a `usize`. No accessor panics, and the
//! copies ([`FrameLayout::copy_packed`], [`FrameLayout::copy_plane_from`])
//! return an error instead of panicking on buffers that are too short.

use crate::PixelFormat;
use core::ops::Range;

/// Most planes a frame has (NV12 and P010: 2, Y then interleaved CbCr).
pub const MAX_PLANES: usize = 2;

/// Where one plane of a frame lies in its slot. All values in bytes except
/// `rows`; row `r` (0-based) occupies `offset + r · pitch ..
/// offset + r · pitch + row_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlaneLayout {
    offset: u64,
    pitch: u64,
    row_bytes: u64,
    rows: u64,
}

impl PlaneLayout {
    /// Byte offset of the plane's first row in the slot.
    pub const fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes between the starts of two consecutive rows (≥ `row_bytes`).
    pub const fn pitch(&self) -> u64 {
        self.pitch
    }

    /// Visible bytes of a row: `width · bytes per sample` for luma,
    /// `2 · ceil(width / 2) · bytes per sample` for interleaved chroma.
    pub const fn row_bytes(&self) -> u64 {
        self.row_bytes
    }

    /// Rows: `height` for luma, `ceil(height / 2)` for 4:2:0 chroma.
    pub const fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes of the plane packed (pitch = row bytes): `row_bytes · rows`.
    pub const fn packed_size(&self) -> u64 {
        // Cannot overflow: row_bytes · rows ≤ pitch · rows ≤ frame_size.
        self.row_bytes * self.rows
    }

    /// One past the last byte of the last row:
    /// `offset + pitch · (rows − 1) + row_bytes`, the bytes a 2-D copy of
    /// the plane reads.
    pub const fn end(&self) -> u64 {
        // rows ≥ 1 and offset + pitch · rows ≤ frame_size (validate).
        self.offset + self.pitch * (self.rows - 1) + self.row_bytes
    }

    /// The whole rows the layout reserves for the plane:
    /// `offset .. offset + pitch · rows` (what validation checks against
    /// `frame_size`).
    pub const fn span(&self) -> Range<u64> {
        self.offset..self.offset + self.pitch * self.rows
    }

    /// Row `r` as a byte range of the slot; `None` for `r ≥ rows`.
    pub fn row(&self, r: u64) -> Option<Range<usize>> {
        if r >= self.rows {
            return None;
        }
        // In range of usize: every plane ends within frame_size ≤ usize::MAX.
        let start = (self.offset + r * self.pitch) as usize;
        Some(start..start + self.row_bytes as usize)
    }

    /// Every row of the plane, first to last, as byte ranges of the slot.
    pub fn row_ranges(&self) -> RowRanges {
        RowRanges {
            next: self.offset as usize,
            pitch: self.pitch as usize,
            row_bytes: self.row_bytes as usize,
            left: self.rows as usize,
        }
    }
}

/// The rows of one plane as byte ranges of the slot
/// ([`PlaneLayout::row_ranges`]).
#[derive(Debug, Clone)]
pub struct RowRanges {
    next: usize,
    pitch: usize,
    row_bytes: usize,
    left: usize,
}

impl Iterator for RowRanges {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let start = self.next;
        // Past the last row this is offset + pitch · rows ≤ frame_size: no
        // overflow; saturating all the same for a hand-made iterator.
        self.next = self.next.saturating_add(self.pitch);
        Some(start..start.saturating_add(self.row_bytes))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for RowRanges {}

/// Why a copy between a slot and a host buffer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    /// The format has no plane with this index.
    #[error("the frame has no plane {0}")]
    NoPlane(usize),
    /// The source is shorter than the rows it must hold.
    #[error("source of {len} bytes, {need} needed")]
    SourceTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The destination is shorter than what the copy writes.
    #[error("destination of {len} bytes, {need} needed")]
    DestinationTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A source pitch below the plane's row bytes (rows would overlap).
    #[error("source pitch {pitch} B is below the plane's row size {row_bytes} B")]
    SourcePitch {
        /// Pitch given, bytes.
        pitch: usize,
        /// Row bytes of the plane.
        row_bytes: usize,
    },
}

/// A stream description checked against a slot size
/// ([`StreamDesc::validate`](super::StreamDesc::validate)): the frame's
/// format, size in pixels, and where each plane lies in the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    format: PixelFormat,
    width: u32,
    height: u32,
    planes: [PlaneLayout; MAX_PLANES],
    plane_count: usize,
    frame_size: u64,
}

impl FrameLayout {
    /// Made by `StreamDesc::validate` only, after it checked the contract
    /// of the module docs.
    pub(super) const fn new_validated(
        format: PixelFormat,
        width: u32,
        height: u32,
        planes: [(u64, u64, u64, u64); MAX_PLANES],
        plane_count: usize,
        frame_size: u64,
    ) -> Self {
        let mut out = [PlaneLayout {
            offset: 0,
            pitch: 0,
            row_bytes: 0,
            rows: 0,
        }; MAX_PLANES];
        let mut i = 0;
        while i < MAX_PLANES {
            let (offset, pitch, row_bytes, rows) = planes[i];
            out[i] = PlaneLayout {
                offset,
                pitch,
                row_bytes,
                rows,
            };
            i += 1;
        }
        FrameLayout {
            format,
            width,
            height,
            planes: out,
            plane_count,
            frame_size,
        }
    }

    /// The pixel format (never `Unknown`).
    pub const fn format(&self) -> PixelFormat {
        self.format
    }

    /// Width, pixels (1..=16384).
    pub const fn width(&self) -> u32 {
        self.width
    }

    /// Height, pixels (1..=16384).
    pub const fn height(&self) -> u32 {
        self.height
    }

    /// The planes in order (NV12 / P010: Y, then interleaved CbCr).
    pub fn planes(&self) -> &[PlaneLayout] {
        self.planes.get(..self.plane_count).unwrap_or(&[])
    }

    /// Plane `i`; `None` if the format has no such plane.
    pub fn plane(&self, i: usize) -> Option<PlaneLayout> {
        self.planes().get(i).copied()
    }

    /// Bytes of the slot the frame occupies, from its first byte: every
    /// plane lies within `0..frame_size` (the description's `frame_size`,
    /// what a whole-frame device copy moves).
    pub const fn frame_size(&self) -> u64 {
        self.frame_size
    }

    /// One past the last byte any row occupies (≤ `frame_size`): the
    /// shortest source [`FrameLayout::copy_packed`] accepts.
    pub fn end(&self) -> u64 {
        self.planes()
            .iter()
            .map(PlaneLayout::end)
            .max()
            .unwrap_or(0)
    }

    /// Bytes of the frame packed: the sum over planes of `row_bytes · rows`
    /// (FFmpeg's rawvideo layout, what "copy to host packed" produces).
    pub fn packed_size(&self) -> u64 {
        self.planes().iter().map(PlaneLayout::packed_size).sum()
    }

    /// Byte offset of plane `i` in the packed frame ([`FrameLayout::copy_packed`]'s
    /// output): the packed sizes of the planes before it. `None` if the
    /// format has no such plane.
    pub fn packed_offset(&self, i: usize) -> Option<u64> {
        let planes = self.planes();
        planes.get(i)?;
        Some(planes.iter().take(i).map(PlaneLayout::packed_size).sum())
    }

    /// Every row of every plane, in packed order (plane 0's rows, then
    /// plane 1's), as byte ranges of the slot.
    pub fn packed_rows(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.planes().iter().flat_map(PlaneLayout::row_ranges)
    }

    /// Copies the frame from `src_slot` (the slot's bytes from its first,
    /// at least [`FrameLayout::end`] of them) into `dst` packed (planes in
    /// order, rows without pitch padding); returns the bytes written,
    /// [`FrameLayout::packed_size`]. Bytes of `dst` past them are untouched.
    ///
    /// Errors: [`CopyError::SourceTooShort`],
    /// [`CopyError::DestinationTooShort`]; nothing is written then.
    pub fn copy_packed(&self, src_slot: &[u8], dst: &mut [u8]) -> Result<usize, CopyError> {
        let need_src = self.end() as usize;
        if src_slot.len() < need_src {
            return Err(CopyError::SourceTooShort {
                len: src_slot.len(),
                need: need_src,
            });
        }
        let need_dst = self.packed_size() as usize;
        if dst.len() < need_dst {
            return Err(CopyError::DestinationTooShort {
                len: dst.len(),
                need: need_dst,
            });
        }
        let mut at = 0usize;
        for row in self.packed_rows() {
            let n = row.len();
            match (src_slot.get(row), dst.get_mut(at..at + n)) {
                (Some(s), Some(d)) => d.copy_from_slice(s),
                // Unreachable after the length checks above.
                (None, _) => {
                    return Err(CopyError::SourceTooShort {
                        len: src_slot.len(),
                        need: need_src,
                    })
                }
                (_, None) => {
                    return Err(CopyError::DestinationTooShort {
                        len: dst.len(),
                        need: need_dst,
                    })
                }
            }
            at += n;
        }
        Ok(at)
    }

    /// Copies plane `plane` from host rows (row `r` at `src[r · src_pitch
    /// ..][..row_bytes]`; `src_pitch = row_bytes` for a packed plane) into
    /// `dst_slot` (the slot's bytes from its first) at the plane's offset
    /// and pitch. Padding bytes between rows are untouched.
    ///
    /// Errors: [`CopyError::NoPlane`], [`CopyError::SourcePitch`] (below
    /// the row bytes), [`CopyError::SourceTooShort`] (fewer than
    /// `src_pitch · (rows − 1) + row_bytes` bytes),
    /// [`CopyError::DestinationTooShort`] (fewer than the plane's
    /// [`PlaneLayout::end`]); nothing is written then.
    pub fn copy_plane_from(
        &self,
        plane: usize,
        src: &[u8],
        src_pitch: usize,
        dst_slot: &mut [u8],
    ) -> Result<(), CopyError> {
        let p = self.plane(plane).ok_or(CopyError::NoPlane(plane))?;
        let row_bytes = p.row_bytes as usize;
        if src_pitch < row_bytes {
            return Err(CopyError::SourcePitch {
                pitch: src_pitch,
                row_bytes,
            });
        }
        let need_src = src_pitch
            .checked_mul(p.rows as usize - 1)
            .and_then(|n| n.checked_add(row_bytes))
            .unwrap_or(usize::MAX);
        if src.len() < need_src {
            return Err(CopyError::SourceTooShort {
                len: src.len(),
                need: need_src,
            });
        }
        let need_dst = p.end() as usize;
        if dst_slot.len() < need_dst {
            return Err(CopyError::DestinationTooShort {
                len: dst_slot.len(),
                need: need_dst,
            });
        }
        for (r, row) in p.row_ranges().enumerate() {
            // In range: r < rows, so r · src_pitch + row_bytes ≤ need_src.
            let s = r * src_pitch;
            match (src.get(s..s + row_bytes), dst_slot.get_mut(row)) {
                (Some(s), Some(d)) => d.copy_from_slice(s),
                _ => {
                    return Err(CopyError::SourceTooShort {
                        len: src.len(),
                        need: need_src,
                    })
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::layout::{StreamDesc, StreamError};
    use crate::{Codec, PixelFormat};
    use std::prelude::rust_2021::*;

    #[test]
    fn golden_nv12_1280x720_pitch_1280() {
        let d = StreamDesc::packed(1280, 720, PixelFormat::Nv12, Codec::H264).unwrap();
        let l = d.validate(d.frame_size).unwrap();
        assert_eq!(l.format(), PixelFormat::Nv12);
        assert_eq!((l.width(), l.height()), (1280, 720));
        assert_eq!(l.planes().len(), 2);
        let y = l.plane(0).unwrap();
        assert_eq!(y.offset(), 0);
        assert_eq!(y.pitch(), 1280);
        assert_eq!(y.row_bytes(), 1280);
        assert_eq!(y.rows(), 720);
        assert_eq!(y.packed_size(), 921_600);
        assert_eq!(y.end(), 921_600);
        assert_eq!(y.span(), 0..921_600);
        let uv = l.plane(1).unwrap();
        assert_eq!(uv.offset(), 921_600);
        assert_eq!(uv.pitch(), 1280);
        assert_eq!(uv.row_bytes(), 1280);
        assert_eq!(uv.rows(), 360);
        assert_eq!(uv.packed_size(), 460_800);
        assert_eq!(uv.end(), 1_382_400);
        assert_eq!(l.plane(2), None);
        assert_eq!(l.frame_size(), 1_382_400);
        assert_eq!(l.end(), 1_382_400);
        assert_eq!(l.packed_size(), 1_382_400);
        assert_eq!(l.packed_offset(0), Some(0));
        assert_eq!(l.packed_offset(1), Some(921_600));
        assert_eq!(l.packed_offset(2), None);
        assert_eq!(uv.row(0), Some(921_600..922_880));
        assert_eq!(uv.row(359), Some(1_381_120..1_382_400));
        assert_eq!(uv.row(360), None);
    }

    #[test]
    fn golden_p010_1920x1080() {
        let d = StreamDesc::packed(1920, 1080, PixelFormat::P010, Codec::Hevc).unwrap();
        let l = d.validate(d.frame_size).unwrap();
        assert_eq!(l.format(), PixelFormat::P010);
        assert_eq!((l.width(), l.height()), (1920, 1080));
        // Row bytes 3840 (2 bytes per sample) round up to a 3840 pitch (15 · 256).
        let y = l.plane(0).unwrap();
        assert_eq!(y.offset(), 0);
        assert_eq!(y.pitch(), 3840);
        assert_eq!(y.row_bytes(), 3840);
        assert_eq!(y.rows(), 1080);
        assert_eq!(y.end(), 4_147_200);
        let uv = l.plane(1).unwrap();
        assert_eq!(uv.offset(), 4_147_200);
        assert_eq!(uv.pitch(), 3840);
        assert_eq!(uv.row_bytes(), 3840);
        assert_eq!(uv.rows(), 540);
        assert_eq!(uv.end(), 6_220_800);
        assert_eq!(l.frame_size(), 6_220_800);
        assert_eq!(l.packed_size(), 6_220_800);
    }

    #[test]
    fn padded_rows_pack_without_their_padding() {
        // 641x361 NV12: row bytes 641 / 642 in 768-byte pitches.
        let d = StreamDesc::packed(641, 361, PixelFormat::Nv12, Codec::H264).unwrap();
        let l = d.validate(d.frame_size).unwrap();
        assert_eq!(l.packed_size(), 641 * 361 + 642 * 181);
        assert_eq!(l.packed_offset(1), Some(641 * 361));
        let y = l.plane(0).unwrap();
        assert_eq!(y.end(), 768 * 360 + 641);
        assert_eq!(l.end(), l.plane(1).unwrap().end());
        assert!(l.end() < l.frame_size());
        let slot: Vec<u8> = (0..d.frame_size).map(|i| (i % 768 % 251) as u8).collect();
        let mut out = vec![0xEE; l.packed_size() as usize + 3];
        assert_eq!(l.copy_packed(&slot, &mut out), Ok(l.packed_size() as usize));
        assert_eq!(&out[..641], &slot[..641]);
        assert_eq!(&out[641..1282], &slot[768..768 + 641]);
        let uv0 = 641 * 361;
        assert_eq!(&out[uv0..uv0 + 642], &slot[768 * 361..768 * 361 + 642]);
        assert_eq!(out[out.len() - 3..], [0xEE; 3]);
        // A slot cut at the last row's end is enough; one byte less is not.
        let end = l.end() as usize;
        assert!(l.copy_packed(&slot[..end], &mut out).is_ok());
        assert_eq!(
            l.copy_packed(&slot[..end - 1], &mut out),
            Err(super::CopyError::SourceTooShort {
                len: end - 1,
                need: end
            })
        );
        let short = l.packed_size() as usize - 1;
        assert_eq!(
            l.copy_packed(&slot, &mut out[..short]),
            Err(super::CopyError::DestinationTooShort {
                len: short,
                need: short + 1
            })
        );
        // Unpacking plane by plane and packing again gives the same bytes.
        let mut slot2 = vec![0u8; d.frame_size as usize];
        let mut at = 0;
        for (i, p) in l.planes().iter().enumerate() {
            let n = p.packed_size() as usize;
            let rb = p.row_bytes() as usize;
            l.copy_plane_from(i, &out[at..at + n], rb, &mut slot2)
                .unwrap();
            at += n;
        }
        let mut again = vec![0u8; l.packed_size() as usize];
        l.copy_packed(&slot2, &mut again).unwrap();
        assert_eq!(again[..], out[..again.len()]);
        assert_eq!(
            l.copy_plane_from(2, &out, 641, &mut slot2),
            Err(super::CopyError::NoPlane(2))
        );
        assert_eq!(
            l.copy_plane_from(0, &out, 640, &mut slot2),
            Err(super::CopyError::SourcePitch {
                pitch: 640,
                row_bytes: 641
            })
        );
        assert!(matches!(
            l.copy_plane_from(0, &out[..641 * 360], 641, &mut slot2),
            Err(super::CopyError::SourceTooShort { .. })
        ));
        assert!(matches!(
            l.copy_plane_from(1, &out, 642, &mut slot2[..100]),
            Err(super::CopyError::DestinationTooShort { .. })
        ));
    }

    #[test]
    fn rows_iterate_in_slot_order() {
        let d = StreamDesc::packed(64, 33, PixelFormat::Nv12, Codec::H264).unwrap();
        let l = d.validate(d.frame_size).unwrap();
        let uv = l.plane(1).unwrap();
        let rows: Vec<_> = uv.row_ranges().collect();
        assert_eq!(rows.len(), 17);
        assert_eq!(uv.row_ranges().len(), 17);
        assert_eq!(rows[0], 256 * 33..256 * 33 + 64);
        assert_eq!(rows[16], 256 * 33 + 256 * 16..256 * 33 + 256 * 16 + 64);
        assert_eq!(l.packed_rows().count(), 33 + 17);
        // A hostile pitch that overflows is refused, not wrapped.
        let mut bad = d;
        bad.plane_pitch[1] = u64::MAX / 2;
        assert_eq!(
            bad.validate(u64::MAX),
            Err(StreamError::PlaneOutOfBounds(1))
        );
    }
}
