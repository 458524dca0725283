//! Lease rows (`docs/protocol.md` §3.5).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `"CUFLEASE"` as a little-endian u64.
pub const LEASE_MAGIC: u64 = u64::from_le_bytes(*b"CUFLEASE");

/// Frames one subscriber may hold at once.
pub const LEASES_PER_ROW: usize = 4;

/// Bytes of the memfd a subscriber creates for its row (one page).
pub const LEASE_REGION_SIZE: u64 = 4096;

/// A subscriber's lease row: 128 bytes at offset 0 of a memfd the subscriber
/// creates, writes, and sends with HELLO. The publisher maps it read-only and
/// treats every word as hostile: a value matching no frame is harmless, and a
/// lease held past `lease_timeout` is revoked.
#[repr(C)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, KnownLayout, Immutable,
)]
pub struct LeaseRow {
    /// [`LEASE_MAGIC`].
    pub magic: u64,
    /// Sequence numbers of the frames held; 0: entry free.
    pub leases: [u64; LEASES_PER_ROW],
    /// InOrder subscribers: highest sequence number fully consumed. The
    /// publisher's `Wait` policy does not overwrite a later frame.
    pub consumed_seq: u64,
    /// Reserved: zero on write, ignored on read.
    pub reserved: [u64; 10],
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<LeaseRow>() == 128);
    assert!(offset_of!(LeaseRow, magic) == 0);
    assert!(offset_of!(LeaseRow, leases) == 8);
    assert!(offset_of!(LeaseRow, consumed_seq) == 40);
    assert!(offset_of!(LeaseRow, reserved) == 48);
};

/// Word indices within a lease row.
pub(crate) mod word {
    use super::LeaseRow;
    use core::mem::offset_of;
    pub const MAGIC: usize = offset_of!(LeaseRow, magic) / 8;
    pub const LEASES: usize = offset_of!(LeaseRow, leases) / 8;
    pub const CONSUMED_SEQ: usize = offset_of!(LeaseRow, consumed_seq) / 8;
    /// Words in a row.
    pub const COUNT: usize = core::mem::size_of::<LeaseRow>() / 8;
}
