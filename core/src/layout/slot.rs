//! Slot descriptors (`docs/protocol.md` §3.4).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `seq` bit set while the publisher rewrites a slot; the low bits keep the
/// sequence number the slot held before.
pub const SEQ_WRITING: u64 = 1 << 63;

/// `flags`: the frame is a keyframe (decoded from an IDR / IRAP picture).
pub const FLAG_KEY: u64 = 1;
/// `flags`: frames before this one were lost at the source or the publisher
/// (gap in the source, loop restart).
pub const FLAG_DISCONTINUITY: u64 = 2;

/// `pts_ns` value meaning "no timestamp".
pub const PTS_NONE: u64 = i64::MIN as u64;

/// One 64-byte entry of the slot table; slot `i` sits at
/// `slot_table_offset + i * slot_stride`. Little-endian u64 fields.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct SlotDesc {
    /// Sequence number of the frame in the slot; 0: empty; [`SEQ_WRITING`]
    /// set: being rewritten. Sequence numbers start at 1 and only grow.
    pub seq: u64,
    /// Presentation time, ns, as an i64 two's complement ([`PTS_NONE`]: none).
    pub pts_ns: u64,
    /// `CLOCK_MONOTONIC` time of the commit, ns.
    pub publish_ns: u64,
    /// [`FLAG_KEY`] | [`FLAG_DISCONTINUITY`].
    pub flags: u64,
    /// Stream description generation the frame was written with.
    pub generation: u64,
    /// Index of the frame in the source's output order, from 0; restarts at 0
    /// when a looped file starts again.
    pub source_index: u64,
    /// Reserved: zero on write, ignored on read.
    pub reserved: [u64; 2],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<SlotDesc>() == 64);
    assert!(offset_of!(SlotDesc, seq) == 0);
    assert!(offset_of!(SlotDesc, pts_ns) == 8);
    assert!(offset_of!(SlotDesc, publish_ns) == 16);
    assert!(offset_of!(SlotDesc, flags) == 24);
    assert!(offset_of!(SlotDesc, generation) == 32);
    assert!(offset_of!(SlotDesc, source_index) == 40);
    assert!(offset_of!(SlotDesc, reserved) == 48);
};

/// Word indices within a slot descriptor.
pub(crate) mod word {
    use super::SlotDesc;
    use core::mem::offset_of;
    pub const SEQ: usize = offset_of!(SlotDesc, seq) / 8;
    pub const PTS_NS: usize = offset_of!(SlotDesc, pts_ns) / 8;
    pub const PUBLISH_NS: usize = offset_of!(SlotDesc, publish_ns) / 8;
    pub const FLAGS: usize = offset_of!(SlotDesc, flags) / 8;
    pub const GENERATION: usize = offset_of!(SlotDesc, generation) / 8;
    pub const SOURCE_INDEX: usize = offset_of!(SlotDesc, source_index) / 8;
}
