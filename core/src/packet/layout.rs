//! The packet ring's shared-memory layout (`docs/protocol.md` §9.2): the
//! reference C implementation's §10 layout (`proto_version` 2), byte for
//! byte, and this implementation's layout 3, which is layout 2 followed by a
//! 64-byte tail holding a futex word ([`PacketTail`]).
//!
//! Unlike the frame ring's all-u64 structures, the first three header words
//! and the slot's `data_size`/`flags` word each hold two little-endian u32
//! fields, as the reference defines them. Every access still goes through a
//! whole 64-bit atomic word (the `region` module); the structs here are for
//! offsets, sizes, documentation and golden-bytes tests.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `magic` of a packet ring: the frame ring magic of the reference plus one.
pub const PACKET_MAGIC: u32 = 0xCC7C_1DCD;
/// `proto_version` of the layout this publisher writes: 3 (0.3 in the
/// `major << 16 | minor` encoding of §7, where the reference's 2 reads as
/// 0.2): layout 2 plus the [`PacketTail`] with the `wake` futex word.
pub const PACKET_LAYOUT_VERSION: u32 = 3;
/// `proto_version` of the reference's layout (v0.2): no futex word; readers
/// poll it.
pub const PACKET_LAYOUT_V2: u32 = 2;
/// Bytes of [`PacketTail`] (layout 3 only), after the data area.
pub const PACKET_TAIL_SIZE: u64 = 64;
/// Bytes of [`PacketHeader`]: where the slot table starts.
pub const PACKET_HEADER_SIZE: u64 = 0x1040;
/// Bytes of one [`PacketSlot`].
pub const PACKET_SLOT_SIZE: u64 = 64;
/// Most bytes of codec extradata the header holds.
pub const MAX_EXTRADATA: usize = 4096;
/// Fewest slots a packet ring may have.
pub const MIN_PACKET_SLOTS: u32 = 1;
/// Most slots a packet ring may have (the reference's limit).
pub const MAX_PACKET_SLOTS: u32 = 1024;
/// `seq`, `global_seq`, `last_keyframe_seq` value meaning "none" (`UINT64_MAX`).
pub const SEQ_NONE: u64 = u64::MAX;
/// `pts_ns`/`dts_ns` value meaning "no timestamp" (`AV_NOPTS_VALUE`).
pub const TS_NONE: i64 = i64::MIN;

/// Packet flag: the packet starts a keyframe (IDR for H.264, IRAP for HEVC).
pub const PACKET_KEY: u32 = 1;
/// Packet flag: the publisher knows the packet is damaged.
pub const PACKET_CORRUPT: u32 = 2;
/// Packet flag: packets before this one were lost at the source (reconnect,
/// loop restart). Readers also report their own overruns as discontinuities.
pub const PACKET_DISCONTINUITY: u32 = 4;
/// Packet flag: the last packet of an access unit (this publisher sends one
/// packet per access unit, so it sets it on every packet).
pub const PACKET_LAST_IN_AU: u32 = 8;

/// `codec_id` values: FFmpeg's `AVCodecID`s of H.264 and HEVC, defined with
/// [`crate::Codec`]'s conversions ([`crate::Codec::av_codec_id`]).
pub use crate::format::{AV_CODEC_ID_H264, AV_CODEC_ID_HEVC};

/// The 0x1040-byte header at offset 0 of the packet region.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct PacketHeader {
    /// [`PACKET_MAGIC`].
    pub magic: u32,
    /// [`PACKET_LAYOUT_VERSION`].
    pub proto_version: u32,
    /// Number of slots N, [`MIN_PACKET_SLOTS`]..=[`MAX_PACKET_SLOTS`].
    pub ring_slots: u32,
    /// Bytes of the data area (a multiple of 8 in this implementation).
    pub data_size: u32,
    /// FFmpeg `AVCodecID` of the packets ([`AV_CODEC_ID_H264`], [`AV_CODEC_ID_HEVC`]).
    pub codec_id: u32,
    /// Bytes of `codec_extradata` in use, ≤ [`MAX_EXTRADATA`].
    pub codec_extradata_size: u32,
    /// Process id of the publisher (informational).
    pub producer_pid: u64,
    /// Sequence number of the newest published packet ([`SEQ_NONE`]: none yet).
    pub global_seq: u64,
    /// Sequence number of the newest keyframe packet ([`SEQ_NONE`]: none yet).
    pub last_keyframe_seq: u64,
    /// Absolute byte cursor: where the next packet's bytes go (see §9.4 for
    /// when this implementation advances it).
    pub write_offset: u64,
    /// Non-zero once the publisher has shut the ring down.
    pub shutdown_flag: u64,
    /// Parameter sets in Annex B (start codes): SPS+PPS, VPS+SPS+PPS for HEVC.
    pub codec_extradata: [u8; MAX_EXTRADATA],
}

/// One 64-byte slot; slot `i` is at `0x1040 + 64·i`. Packet `s` uses slot `s % N`.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct PacketSlot {
    /// Sequence number of the packet in the slot; [`SEQ_NONE`]: none or being rewritten.
    pub seq: u64,
    /// Presentation time, ns ([`TS_NONE`]: none).
    pub pts_ns: i64,
    /// Decode time, ns ([`TS_NONE`]: none).
    pub dts_ns: i64,
    /// Absolute byte cursor of the payload; its bytes start at data index
    /// `data_offset % data_size` and wrap around the end of the data area.
    pub data_offset: u64,
    /// Payload bytes (> 0, ≤ `data_size`).
    pub data_size: u32,
    /// [`PACKET_KEY`] | [`PACKET_CORRUPT`] | [`PACKET_DISCONTINUITY`] | [`PACKET_LAST_IN_AU`].
    pub flags: u32,
    /// Reserved: zero on write, ignored on read.
    pub reserved: [u8; 24],
}

/// The 64-byte tail of a layout-3 region, at `0x1040 + 64·N + data_size`
/// (8-aligned: `data_size` is a multiple of 8).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct PacketTail {
    /// Futex word: the publisher adds 1 (wrapping) after every published
    /// packet and at shutdown, then FUTEX_WAKEs it (§9.5 *Waiting*).
    pub wake: u32,
    /// Reserved: zero on write, ignored on read.
    pub reserved: [u8; 60],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<PacketTail>() as u64 == PACKET_TAIL_SIZE);
    assert!(offset_of!(PacketTail, wake) == 0x00);
    assert!(offset_of!(PacketTail, reserved) == 0x04);
    assert!(size_of::<PacketHeader>() as u64 == PACKET_HEADER_SIZE);
    assert!(offset_of!(PacketHeader, magic) == 0x00);
    assert!(offset_of!(PacketHeader, proto_version) == 0x04);
    assert!(offset_of!(PacketHeader, ring_slots) == 0x08);
    assert!(offset_of!(PacketHeader, data_size) == 0x0C);
    assert!(offset_of!(PacketHeader, codec_id) == 0x10);
    assert!(offset_of!(PacketHeader, codec_extradata_size) == 0x14);
    assert!(offset_of!(PacketHeader, producer_pid) == 0x18);
    assert!(offset_of!(PacketHeader, global_seq) == 0x20);
    assert!(offset_of!(PacketHeader, last_keyframe_seq) == 0x28);
    assert!(offset_of!(PacketHeader, write_offset) == 0x30);
    assert!(offset_of!(PacketHeader, shutdown_flag) == 0x38);
    assert!(offset_of!(PacketHeader, codec_extradata) == 0x40);
    assert!(size_of::<PacketSlot>() as u64 == PACKET_SLOT_SIZE);
    assert!(offset_of!(PacketSlot, seq) == 0x00);
    assert!(offset_of!(PacketSlot, pts_ns) == 0x08);
    assert!(offset_of!(PacketSlot, dts_ns) == 0x10);
    assert!(offset_of!(PacketSlot, data_offset) == 0x18);
    assert!(offset_of!(PacketSlot, data_size) == 0x20);
    assert!(offset_of!(PacketSlot, flags) == 0x24);
    assert!(offset_of!(PacketSlot, reserved) == 0x28);
};

/// Word indices (u64 words from the region start) of the header fields.
pub(crate) mod word {
    use super::PacketHeader;
    use core::mem::offset_of;
    /// `magic` (low half) | `proto_version` (high half).
    pub const MAGIC_VERSION: usize = offset_of!(PacketHeader, magic) / 8;
    /// `ring_slots` (low) | `data_size` (high).
    pub const SLOTS_DATA: usize = offset_of!(PacketHeader, ring_slots) / 8;
    /// `codec_id` (low) | `codec_extradata_size` (high).
    pub const CODEC: usize = offset_of!(PacketHeader, codec_id) / 8;
    pub const PID: usize = offset_of!(PacketHeader, producer_pid) / 8;
    pub const GLOBAL_SEQ: usize = offset_of!(PacketHeader, global_seq) / 8;
    pub const LAST_KEY: usize = offset_of!(PacketHeader, last_keyframe_seq) / 8;
    pub const WRITE_OFFSET: usize = offset_of!(PacketHeader, write_offset) / 8;
    pub const SHUTDOWN: usize = offset_of!(PacketHeader, shutdown_flag) / 8;
    pub const EXTRADATA: usize = offset_of!(PacketHeader, codec_extradata) / 8;
    /// Words of the header.
    pub const HEADER: usize = core::mem::size_of::<PacketHeader>() / 8;

    /// Word indices within a slot.
    pub mod slot {
        use super::super::PacketSlot;
        use core::mem::offset_of;
        pub const SEQ: usize = offset_of!(PacketSlot, seq) / 8;
        pub const PTS: usize = offset_of!(PacketSlot, pts_ns) / 8;
        pub const DTS: usize = offset_of!(PacketSlot, dts_ns) / 8;
        pub const OFFSET: usize = offset_of!(PacketSlot, data_offset) / 8;
        /// `data_size` (low) | `flags` (high).
        pub const SIZE_FLAGS: usize = offset_of!(PacketSlot, data_size) / 8;
        pub const WORDS: usize = core::mem::size_of::<PacketSlot>() / 8;
    }
}

/// Geometry of a packet region: layout version, slot count and data-area size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketGeometry {
    slots: u32,
    data_size: u32,
    /// Layout 3: the region ends with a [`PacketTail`].
    tail: bool,
}

/// Why a packet region or its geometry is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketLayoutError {
    /// The region is smaller than its 0x1040-byte header.
    #[error("packet region of {0} bytes is smaller than its 4160-byte header")]
    TooSmall(u64),
    /// Magic mismatch.
    #[error("packet region magic {0:#010x} is not 0xcc7c1dcd")]
    BadMagic(u32),
    /// Another layout version.
    #[error("packet region layout version {0}, this implementation reads 2 and 3")]
    Version(u32),
    /// `ring_slots` outside 1..=1024.
    #[error("packet ring slot count {0} is outside 1..=1024")]
    SlotCount(u32),
    /// `data_size` is 0 or not a multiple of 8.
    #[error("packet data area of {0} bytes is empty or not a multiple of 8")]
    DataSize(u32),
    /// The region's length is not what its geometry needs.
    #[error("packet region holds {have} bytes, its header describes {need}")]
    Length {
        /// Bytes mapped.
        have: u64,
        /// Bytes the header's geometry needs.
        need: u64,
    },
}

impl PacketGeometry {
    /// Layout [`PACKET_LAYOUT_VERSION`] (3, with the futex word) of `slots`
    /// slots and a data area of `data_size` bytes.
    ///
    /// Errors: [`PacketLayoutError::SlotCount`] outside 1..=1024,
    /// [`PacketLayoutError::DataSize`] for 0 or a size that is not a multiple of 8.
    pub const fn new(slots: u32, data_size: u32) -> Result<Self, PacketLayoutError> {
        Self::with_version(PACKET_LAYOUT_VERSION, slots, data_size)
    }

    /// Layout `version` ([`PACKET_LAYOUT_V2`], the reference's, or
    /// [`PACKET_LAYOUT_VERSION`]) of `slots` slots and `data_size` bytes.
    ///
    /// Errors: [`PacketLayoutError::Version`] for another version, else as
    /// [`PacketGeometry::new`].
    pub const fn with_version(
        version: u32,
        slots: u32,
        data_size: u32,
    ) -> Result<Self, PacketLayoutError> {
        let tail = match version {
            PACKET_LAYOUT_V2 => false,
            PACKET_LAYOUT_VERSION => true,
            v => return Err(PacketLayoutError::Version(v)),
        };
        if slots < MIN_PACKET_SLOTS || slots > MAX_PACKET_SLOTS {
            return Err(PacketLayoutError::SlotCount(slots));
        }
        if data_size == 0 || data_size % 8 != 0 {
            return Err(PacketLayoutError::DataSize(data_size));
        }
        Ok(PacketGeometry {
            slots,
            data_size,
            tail,
        })
    }

    /// `proto_version` of the layout: 2 or 3.
    pub const fn version(&self) -> u32 {
        if self.tail {
            PACKET_LAYOUT_VERSION
        } else {
            PACKET_LAYOUT_V2
        }
    }

    /// Byte offset of the `wake` futex word (the [`PacketTail`] at
    /// `0x1040 + 64·N + data_size`); `None` for layout 2, which has none.
    pub const fn wake_offset(&self) -> Option<u64> {
        if self.tail {
            Some(self.data_offset() + self.data_size as u64)
        } else {
            None
        }
    }

    /// Number of slots.
    pub const fn slots(&self) -> u32 {
        self.slots
    }

    /// Bytes of the data area.
    pub const fn data_size(&self) -> u32 {
        self.data_size
    }

    /// Byte offset of slot `i`: `0x1040 + 64·i`.
    pub const fn slot_offset(&self, i: u32) -> u64 {
        PACKET_HEADER_SIZE + i as u64 * PACKET_SLOT_SIZE
    }

    /// Byte offset of the data area: `0x1040 + 64·N`.
    pub const fn data_offset(&self) -> u64 {
        self.slot_offset(self.slots)
    }

    /// Bytes of the whole region: `0x1040 + 64·N + data_size`, plus 64 for
    /// layout 3's tail.
    pub const fn region_size(&self) -> u64 {
        let tail = if self.tail { PACKET_TAIL_SIZE } else { 0 };
        self.data_offset() + self.data_size as u64 + tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_the_reference_formula() {
        let g = PacketGeometry::with_version(2, 64, 8 << 20).unwrap();
        assert_eq!(g.version(), 2);
        assert_eq!(g.slot_offset(0), 0x1040);
        assert_eq!(g.data_offset(), 0x1040 + 64 * 64);
        assert_eq!(g.region_size(), 0x1040 + 64 * 64 + (8 << 20));
        assert_eq!(g.wake_offset(), None);
        let g3 = PacketGeometry::new(64, 8 << 20).unwrap();
        assert_eq!(g3.version(), 3);
        assert_eq!(g3.data_offset(), g.data_offset());
        assert_eq!(g3.wake_offset(), Some(0x1040 + 64 * 64 + (8 << 20)));
        assert_eq!(g3.region_size(), 0x1040 + 64 * 64 + (8 << 20) + 64);
        for v in [0, 1, 4, 0x0001_0002] {
            assert_eq!(
                PacketGeometry::with_version(v, 4, 8),
                Err(PacketLayoutError::Version(v))
            );
        }
        assert_eq!(
            PacketGeometry::new(0, 8),
            Err(PacketLayoutError::SlotCount(0))
        );
        assert_eq!(
            PacketGeometry::new(1025, 8),
            Err(PacketLayoutError::SlotCount(1025))
        );
        assert_eq!(
            PacketGeometry::new(4, 12),
            Err(PacketLayoutError::DataSize(12))
        );
        assert_eq!(
            PacketGeometry::new(4, 0),
            Err(PacketLayoutError::DataSize(0))
        );
    }
}
