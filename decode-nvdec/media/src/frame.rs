//! Decoded frames in host memory.

use cuframes_core::layout::StreamDesc;
use cuframes_core::{Codec, PixelFormat};

/// Where one plane lies in [`HostFrame::data`]. All sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PlaneLayout {
    /// Offset of the plane's first row from the start of the buffer, in bytes.
    pub offset: usize,
    /// Distance between the starts of consecutive rows, in bytes.
    pub pitch: usize,
    /// Meaningful bytes per row (`<= pitch`).
    pub row_bytes: usize,
    /// Number of rows.
    pub rows: usize,
}

impl PlaneLayout {
    /// Bytes the plane spans in the buffer: `pitch * (rows - 1) + row_bytes`
    /// (0 for an empty plane), `None` on overflow.
    pub fn span(&self) -> Option<usize> {
        match self.rows {
            0 => Some(0),
            rows => self
                .pitch
                .checked_mul(rows - 1)?
                .checked_add(self.row_bytes),
        }
    }

    /// Tightly packed NV12 planes of a `width` x `height` frame (pixels), as
    /// FFmpeg's rawvideo `nv12` (`av_image_fill_arrays` with alignment 1):
    /// Y is `height` rows of `width` bytes at offset 0; CbCr follows with
    /// `ceil(height/2)` rows of `2*ceil(width/2)` bytes.
    ///
    /// Returns the two planes and the total size in bytes (core's
    /// `FrameLayout`, packed), `None` for a size core refuses (0, or above
    /// 16384 px) or that overflows `usize`.
    pub fn nv12(width: u32, height: u32) -> Option<([PlaneLayout; 2], usize)> {
        Self::semi_planar_420(width, height, 1)
    }

    /// Tightly packed P010 planes of a `width` x `height` frame (pixels), as
    /// FFmpeg's rawvideo `p010le` (`av_image_fill_arrays` with alignment 1):
    /// Y is `height` rows of `2*width` bytes (one little-endian `u16` per
    /// sample, the 10 significant bits in the high bits) at offset 0; CbCr
    /// follows with `ceil(height/2)` rows of `4*ceil(width/2)` bytes
    /// (interleaved `u16` Cb, Cr pairs).
    ///
    /// Returns the two planes and the total size in bytes (core's
    /// `FrameLayout`, packed), `None` for a size core refuses (0, or above
    /// 16384 px) or that overflows `usize`.
    pub fn p010(width: u32, height: u32) -> Option<([PlaneLayout; 2], usize)> {
        Self::semi_planar_420(width, height, 2)
    }

    /// Packed 4:2:0 semi-planar layout (NV12 with 1-byte samples, P010 with
    /// 2): Y rows of `width * bytes` at offset 0, then `ceil(height/2)`
    /// CbCr rows of `2 * ceil(width/2) * bytes`; `None` on overflow.
    fn semi_planar_420(width: u32, height: u32, bytes: usize) -> Option<([PlaneLayout; 2], usize)> {
        let format = if bytes == 1 {
            PixelFormat::Nv12
        } else {
            PixelFormat::P010
        };
        // Core's FrameLayout is the one place plane geometry is derived;
        // the packed (rawvideo) view of it is what a HostFrame holds. The
        // codec does not matter to the layout.
        let desc = StreamDesc::packed(width, height, format, Codec::H264).ok()?;
        let layout = desc.validate(desc.frame_size).ok()?;
        let plane = |i: usize| -> Option<PlaneLayout> {
            let p = layout.plane(i)?;
            Some(PlaneLayout {
                offset: usize::try_from(layout.packed_offset(i)?).ok()?,
                pitch: usize::try_from(p.row_bytes()).ok()?,
                row_bytes: usize::try_from(p.row_bytes()).ok()?,
                rows: usize::try_from(p.rows()).ok()?,
            })
        };
        let total = usize::try_from(layout.packed_size()).ok()?;
        Some(([plane(0)?, plane(1)?], total))
    }

    /// The packed layout of `format` ([`PlaneLayout::nv12`] or
    /// [`PlaneLayout::p010`]); `None` for other formats or on overflow.
    pub fn packed(
        format: PixelFormat,
        width: u32,
        height: u32,
    ) -> Option<([PlaneLayout; 2], usize)> {
        match format {
            PixelFormat::Nv12 => PlaneLayout::nv12(width, height),
            PixelFormat::P010 => PlaneLayout::p010(width, height),
            _ => None,
        }
    }
}

/// A decoded picture in host memory, in a two-plane format:
/// [`PixelFormat::Nv12`] (8-bit streams) or [`PixelFormat::P010`] (10-bit).
///
/// Frames made by this crate are tightly packed (`pitch == row_bytes`) with
/// plane 1 right after plane 0, so [`HostFrame::packed_bytes`] is byte for
/// byte what `ffmpeg -f rawvideo -pix_fmt nv12` (or `p010le`) writes for the
/// frame, and its MD5 is the hash column of `ffmpeg -f framemd5 -pix_fmt
/// nv12` (`p010le`). Each frame carries its own size: after a mid-stream
/// resolution change the next frames simply have the new `width` / `height`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFrame {
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Layout of `data`.
    pub format: PixelFormat,
    /// All planes, at the offsets given by `planes`.
    pub data: Vec<u8>,
    /// Plane 0 (Y) and plane 1 (interleaved CbCr) inside `data`.
    pub planes: [PlaneLayout; 2],
    /// Presentation time in nanoseconds: the decoder's best-effort timestamp
    /// (`AVFrame::best_effort_timestamp`, rescaled from the stream time base),
    /// or for streams without timestamps (raw Annex B) the previous frame's
    /// time plus `1 / frame_rate` starting at 0 ([`crate::time::FrameClock`]);
    /// `None` if neither is known.
    pub pts_ns: Option<i64>,
    /// The picture is a keyframe (`AV_FRAME_FLAG_KEY` / `AVFrame::key_frame`).
    pub keyframe: bool,
}

impl HostFrame {
    /// Bytes of plane `i` (0: Y, 1: CbCr) from its first row's start to its
    /// last row's end (`PlaneLayout::span`), pitch padding between rows
    /// included.
    ///
    /// Returns an empty slice for `i >= 2` or when the plane does not fit in
    /// `data` (possible only if the public fields were edited inconsistently).
    pub fn plane(&self, i: usize) -> &[u8] {
        let Some(layout) = self.planes.get(i) else {
            return &[];
        };
        layout
            .span()
            .and_then(|len| layout.offset.checked_add(len))
            .and_then(|end| self.data.get(layout.offset..end))
            .unwrap_or(&[])
    }

    /// The whole frame buffer: for frames made by this crate, the planes
    /// tightly packed one after the other, i.e. FFmpeg's rawvideo layout of
    /// [`HostFrame::format`] (`width * height * 3 / 2` bytes for even NV12
    /// sizes).
    pub fn packed_bytes(&self) -> &[u8] {
        &self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_layout_matches_core_extents() {
        for (w, h) in [(1280, 720), (641, 361), (1, 1), (2, 3)] {
            let (planes, total) = PlaneLayout::nv12(w, h).unwrap();
            for (i, p) in planes.iter().enumerate() {
                let (row_bytes, rows) = PixelFormat::Nv12.plane_extent(i as u32, w, h).unwrap();
                assert_eq!(p.row_bytes as u64, row_bytes);
                assert_eq!(p.rows as u64, rows);
                assert_eq!(p.pitch, p.row_bytes);
            }
            assert_eq!(planes[1].offset, planes[0].span().unwrap());
            assert_eq!(total, planes[1].offset + planes[1].span().unwrap());
        }
        assert_eq!(PlaneLayout::nv12(1280, 720).unwrap().1, 1280 * 720 * 3 / 2);
    }

    #[test]
    fn p010_layout_matches_core_extents() {
        for (w, h) in [(640, 360), (641, 361), (1, 1), (2, 3)] {
            let (planes, total) = PlaneLayout::p010(w, h).unwrap();
            assert_eq!(
                PlaneLayout::packed(PixelFormat::P010, w, h),
                Some((planes, total))
            );
            for (i, p) in planes.iter().enumerate() {
                let (row_bytes, rows) = PixelFormat::P010.plane_extent(i as u32, w, h).unwrap();
                assert_eq!(p.row_bytes as u64, row_bytes);
                assert_eq!(p.rows as u64, rows);
                assert_eq!(p.pitch, p.row_bytes);
            }
            assert_eq!(planes[1].offset, planes[0].span().unwrap());
            assert_eq!(total, planes[1].offset + planes[1].span().unwrap());
        }
        // FFmpeg's p010le frame size for the 10-bit sample (its framemd5 `size`).
        assert_eq!(PlaneLayout::p010(640, 360).unwrap().1, 691_200);
    }

    #[test]
    fn plane_slices_and_bounds() {
        let (planes, total) = PlaneLayout::nv12(4, 2).unwrap();
        let frame = HostFrame {
            width: 4,
            height: 2,
            format: PixelFormat::Nv12,
            data: (0..total as u8).collect(),
            planes,
            pts_ns: None,
            keyframe: false,
        };
        assert_eq!(frame.plane(0), &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(frame.plane(1), &[8, 9, 10, 11]);
        assert!(frame.plane(2).is_empty());
        assert_eq!(frame.packed_bytes().len(), 12);

        let mut broken = frame.clone();
        broken.data.truncate(10);
        assert!(broken.plane(1).is_empty());
    }
}
