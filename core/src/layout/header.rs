//! The control-region header (`docs/protocol.md` §3.2).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `"CUFRAMES"` read as a little-endian u64.
pub const CONTROL_MAGIC: u64 = u64::from_le_bytes(*b"CUFRAMES");

/// `publisher_state`: the publisher is running.
pub const STATE_LIVE: u64 = 1;
/// `publisher_state`: the publisher has shut down cleanly.
pub const STATE_CLOSED: u64 = 2;

/// First 256 bytes of the control region. Every field is a little-endian u64,
/// naturally aligned, read and written with atomic word accesses; `wake` and
/// `release_wake` are 32-bit futex words in the low half of their u64 (the high
/// half is reserved, zero).
///
/// Written only by the publisher; subscribers map it read-only and validate a
/// snapshot before trusting any field ([`super::ControlLayout::validate`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct ControlHeader {
    /// [`CONTROL_MAGIC`].
    pub magic: u64,
    /// Protocol version of the layout, `major << 16 | minor`.
    pub version: u64,
    /// Bytes of this header (256).
    pub header_size: u64,
    /// Bytes of the whole control region (a multiple of 4096).
    pub region_size: u64,
    /// Byte offset of the stream description.
    pub stream_offset: u64,
    /// Byte offset of the slot table.
    pub slot_table_offset: u64,
    /// Number of frame slots, 2..=64.
    pub slot_count: u64,
    /// Bytes per slot descriptor (64).
    pub slot_stride: u64,
    /// Bytes of each slot's frame allocation.
    pub slot_size: u64,
    /// Memory kind code of the frame allocations ([`crate::MemoryKind`]).
    pub memory_kind: u64,
    /// Sync kind code ([`crate::SyncKind`]).
    pub sync_kind: u64,
    /// [`STATE_LIVE`] or [`STATE_CLOSED`].
    pub publisher_state: u64,
    /// Sequence number of the newest committed frame (0: none yet).
    pub latest_seq: u64,
    /// Futex word bumped after every commit (low 32 bits).
    pub wake: u64,
    /// Futex word subscribers FUTEX_WAKE after a release (low 32 bits; never
    /// written by subscribers, who map it read-only).
    pub release_wake: u64,
    /// Frames committed since start.
    pub frames_published: u64,
    /// Frames the publisher dropped because no slot could be written.
    pub frames_dropped: u64,
    /// UUID of the GPU holding the frames (zero for host memory).
    pub gpu_uuid: [u64; 2],
    /// Reserved: zero on write, ignored on read.
    pub reserved: [u64; 13],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<ControlHeader>() == 256);
    assert!(offset_of!(ControlHeader, magic) == 0);
    assert!(offset_of!(ControlHeader, version) == 8);
    assert!(offset_of!(ControlHeader, header_size) == 16);
    assert!(offset_of!(ControlHeader, region_size) == 24);
    assert!(offset_of!(ControlHeader, stream_offset) == 32);
    assert!(offset_of!(ControlHeader, slot_table_offset) == 40);
    assert!(offset_of!(ControlHeader, slot_count) == 48);
    assert!(offset_of!(ControlHeader, slot_stride) == 56);
    assert!(offset_of!(ControlHeader, slot_size) == 64);
    assert!(offset_of!(ControlHeader, memory_kind) == 72);
    assert!(offset_of!(ControlHeader, sync_kind) == 80);
    assert!(offset_of!(ControlHeader, publisher_state) == 88);
    assert!(offset_of!(ControlHeader, latest_seq) == 96);
    assert!(offset_of!(ControlHeader, wake) == 104);
    assert!(offset_of!(ControlHeader, release_wake) == 112);
    assert!(offset_of!(ControlHeader, frames_published) == 120);
    assert!(offset_of!(ControlHeader, frames_dropped) == 128);
    assert!(offset_of!(ControlHeader, gpu_uuid) == 136);
    assert!(offset_of!(ControlHeader, reserved) == 152);
};

/// Byte offset of the `wake` futex word.
pub const WAKE_OFFSET: usize = core::mem::offset_of!(ControlHeader, wake);
/// Byte offset of the `release_wake` futex word.
pub const RELEASE_WAKE_OFFSET: usize = core::mem::offset_of!(ControlHeader, release_wake);

/// Word indices (byte offset / 8) of the header fields the ring touches.
pub(crate) mod word {
    use super::ControlHeader;
    use core::mem::offset_of;
    pub const PUBLISHER_STATE: usize = offset_of!(ControlHeader, publisher_state) / 8;
    pub const LATEST_SEQ: usize = offset_of!(ControlHeader, latest_seq) / 8;
    pub const WAKE: usize = offset_of!(ControlHeader, wake) / 8;
    pub const RELEASE_WAKE: usize = offset_of!(ControlHeader, release_wake) / 8;
    pub const FRAMES_PUBLISHED: usize = offset_of!(ControlHeader, frames_published) / 8;
    pub const FRAMES_DROPPED: usize = offset_of!(ControlHeader, frames_dropped) / 8;
}
