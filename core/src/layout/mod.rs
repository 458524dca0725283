//! Shared-memory layouts (`docs/protocol.md` §3).
//!
//! Every structure is `#[repr(C)]`, made only of little-endian u64 words, with
//! size and offset assertions beside it. The control region is
//! `[ControlHeader][StreamDesc][SlotDesc; slot_count]`, rounded up to 4096 bytes.
//! [`StreamDesc::validate`] turns a stream description into the
//! [`FrameLayout`] every consumer reads plane offsets, pitches and rows from.

pub mod frame_layout;
pub mod header;
pub mod lease;
pub mod slot;
pub mod stream;

pub use frame_layout::{CopyError, FrameLayout, PlaneLayout, RowRanges, MAX_PLANES};
pub use header::{ControlHeader, CONTROL_MAGIC, STATE_CLOSED, STATE_LIVE};
pub use lease::{LeaseRow, LEASES_PER_ROW, LEASE_MAGIC, LEASE_REGION_SIZE};
pub use slot::{SlotDesc, FLAG_DISCONTINUITY, FLAG_KEY, PTS_NONE, SEQ_WRITING};
pub use stream::{StreamDesc, StreamError};

use crate::version::{Version, PROTOCOL_VERSION};
use core::mem::size_of;

/// Fewest slots a ring may have.
pub const MIN_SLOTS: u32 = 2;
/// Most slots a ring may have.
pub const MAX_SLOTS: u32 = 64;
/// Granularity of region sizes, bytes.
pub const PAGE: u64 = 4096;

/// Geometry of a control region with `slot_count` slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLayout {
    /// Number of slots.
    pub slot_count: u32,
}

/// Why a control region snapshot was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The region is smaller than the header.
    #[error("control region of {0} bytes is smaller than its 256-byte header")]
    TooSmall(u64),
    /// Magic mismatch.
    #[error("control region magic {0:#018x} is not CUFRAMES")]
    BadMagic(u64),
    /// A different major version.
    #[error("control region speaks protocol {theirs}, this implementation speaks {ours}")]
    Version {
        /// The region's version.
        theirs: Version,
        /// Ours.
        ours: Version,
    },
    /// A size or offset field disagrees with the layout of its slot count.
    #[error("control region field {field} is {value}, expected {expected}")]
    Field {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: u64,
        /// Value required.
        expected: u64,
    },
    /// `slot_count` outside 2..=64.
    #[error("slot count {0} is outside 2..=64")]
    SlotCount(u64),
    /// The stream description is unusable.
    #[error("stream description: {0}")]
    Stream(#[from] StreamError),
}

impl ControlLayout {
    /// Layout for `slot_count` slots; `None` outside [`MIN_SLOTS`]..=[`MAX_SLOTS`].
    pub const fn new(slot_count: u32) -> Option<Self> {
        if slot_count < MIN_SLOTS || slot_count > MAX_SLOTS {
            None
        } else {
            Some(ControlLayout { slot_count })
        }
    }

    /// Byte offset of the stream description.
    pub const fn stream_offset(&self) -> u64 {
        size_of::<ControlHeader>() as u64
    }

    /// Byte offset of the slot table.
    pub const fn slot_table_offset(&self) -> u64 {
        self.stream_offset() + size_of::<StreamDesc>() as u64
    }

    /// Byte offset of slot `i`'s descriptor.
    pub const fn slot_offset(&self, i: u32) -> u64 {
        self.slot_table_offset() + i as u64 * size_of::<SlotDesc>() as u64
    }

    /// Bytes of the region, a multiple of [`PAGE`].
    pub const fn region_size(&self) -> u64 {
        let used = self.slot_offset(self.slot_count);
        used.div_ceil(PAGE) * PAGE
    }

    /// The header a publisher writes at start.
    pub fn header(
        &self,
        slot_size: u64,
        memory: crate::MemoryKind,
        sync: crate::SyncKind,
        gpu_uuid: [u8; 16],
    ) -> ControlHeader {
        let mut uuid = [0u64; 2];
        for (i, w) in uuid.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&gpu_uuid[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(b);
        }
        ControlHeader {
            magic: CONTROL_MAGIC,
            version: PROTOCOL_VERSION.to_wire() as u64,
            header_size: size_of::<ControlHeader>() as u64,
            region_size: self.region_size(),
            stream_offset: self.stream_offset(),
            slot_table_offset: self.slot_table_offset(),
            slot_count: self.slot_count as u64,
            slot_stride: size_of::<SlotDesc>() as u64,
            slot_size,
            memory_kind: memory.code() as u64,
            sync_kind: sync.code() as u64,
            publisher_state: STATE_LIVE,
            latest_seq: 0,
            wake: 0,
            release_wake: 0,
            frames_published: 0,
            frames_dropped: 0,
            gpu_uuid: uuid,
            reserved: [0; 13],
        }
    }

    /// Checks a header snapshot read from a mapping of `mapped_len` bytes and
    /// returns the layout it describes. Every field the ring relies on must
    /// equal what this implementation would have written for its slot count.
    pub fn validate(
        h: &ControlHeader,
        stream: &StreamDesc,
        mapped_len: u64,
    ) -> Result<Self, LayoutError> {
        if mapped_len < size_of::<ControlHeader>() as u64 {
            return Err(LayoutError::TooSmall(mapped_len));
        }
        if h.magic != CONTROL_MAGIC {
            return Err(LayoutError::BadMagic(h.magic));
        }
        let theirs = Version::from_wire(h.version.min(u32::MAX as u64) as u32);
        if theirs.major != PROTOCOL_VERSION.major || h.version > u32::MAX as u64 {
            return Err(LayoutError::Version {
                theirs,
                ours: PROTOCOL_VERSION,
            });
        }
        let layout = u32::try_from(h.slot_count)
            .ok()
            .and_then(ControlLayout::new)
            .ok_or(LayoutError::SlotCount(h.slot_count))?;
        let expect = |field: &'static str, value: u64, expected: u64| {
            if value == expected {
                Ok(())
            } else {
                Err(LayoutError::Field {
                    field,
                    value,
                    expected,
                })
            }
        };
        expect(
            "header_size",
            h.header_size,
            size_of::<ControlHeader>() as u64,
        )?;
        expect("region_size", h.region_size, layout.region_size())?;
        expect("mapped length", mapped_len, layout.region_size())?;
        expect("stream_offset", h.stream_offset, layout.stream_offset())?;
        expect(
            "slot_table_offset",
            h.slot_table_offset,
            layout.slot_table_offset(),
        )?;
        expect("slot_stride", h.slot_stride, size_of::<SlotDesc>() as u64)?;
        stream.validate(h.slot_size)?;
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Codec, MemoryKind, PixelFormat, SyncKind};

    #[test]
    fn region_rounds_up_to_pages() {
        assert_eq!(ControlLayout::new(8).unwrap().region_size(), 4096);
        assert_eq!(
            ControlLayout::new(64).unwrap().slot_offset(64),
            384 + 64 * 64
        );
        assert_eq!(ControlLayout::new(64).unwrap().region_size(), 8192);
        assert!(ControlLayout::new(1).is_none());
        assert!(ControlLayout::new(65).is_none());
    }

    #[test]
    fn own_header_validates_and_tampering_is_caught() {
        let l = ControlLayout::new(8).unwrap();
        let s = StreamDesc::packed(1280, 720, PixelFormat::Nv12, Codec::H264).unwrap();
        let h = l.header(
            s.frame_size,
            MemoryKind::HostMemfd,
            SyncKind::HostFence,
            [0; 16],
        );
        assert_eq!(ControlLayout::validate(&h, &s, 4096), Ok(l));
        let mut bad = h;
        bad.slot_table_offset += 8;
        assert!(matches!(
            ControlLayout::validate(&bad, &s, 4096),
            Err(LayoutError::Field {
                field: "slot_table_offset",
                ..
            })
        ));
        let mut bad = h;
        bad.slot_count = 1000;
        assert_eq!(
            ControlLayout::validate(&bad, &s, 4096),
            Err(LayoutError::SlotCount(1000))
        );
        let mut bad = h;
        bad.version = (2 << 16) as u64;
        assert!(matches!(
            ControlLayout::validate(&bad, &s, 4096),
            Err(LayoutError::Version { .. })
        ));
        let mut small = h;
        small.slot_size = s.frame_size - 1;
        assert!(matches!(
            ControlLayout::validate(&small, &s, 4096),
            Err(LayoutError::Stream(StreamError::FrameTooLarge { .. }))
        ));
        assert!(matches!(
            ControlLayout::validate(&h, &s, 100),
            Err(LayoutError::TooSmall(100))
        ));
    }

    #[test]
    fn packed_nv12_pitches_are_aligned_and_valid() {
        let s = StreamDesc::packed(641, 361, PixelFormat::Nv12, Codec::Hevc).unwrap();
        assert_eq!(s.plane_pitch, [768, 768]);
        assert_eq!(s.plane_offset, [0, 768 * 361]);
        assert_eq!(s.frame_size, 768 * 361 + 768 * 181);
        assert!(s.validate(s.frame_size).is_ok());
        let mut overlap = s;
        overlap.plane_offset[1] = 10;
        assert_eq!(
            overlap.validate(s.frame_size),
            Err(StreamError::PlaneOutOfBounds(1))
        );
        let mut narrow = s;
        narrow.plane_pitch[0] = 640;
        assert!(matches!(
            narrow.validate(s.frame_size),
            Err(StreamError::PitchTooSmall { plane: 0, .. })
        ));
        let mut huge = s;
        huge.plane_pitch[1] = u64::MAX / 2;
        assert_eq!(
            huge.validate(s.frame_size),
            Err(StreamError::PlaneOutOfBounds(1))
        );
    }
}
