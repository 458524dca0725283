//! What publishing a frame came to, and the publisher's counters and lease table.

#[cfg(doc)]
use super::Publisher;

/// What happened to a frame handed to [`Publisher::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Committed with this sequence number.
    Committed(u64),
    /// Dropped: every slot was leased (and, under `Wait`, stayed so for `wait_timeout`).
    Dropped,
}

/// Publisher counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Frames committed.
    pub published: u64,
    /// Frames dropped for lack of a slot.
    pub dropped: u64,
    /// Connected subscribers.
    pub subscribers: usize,
    /// Leases revoked after `lease_timeout`.
    pub revoked_leases: u64,
    /// Times an InOrder subscriber lagged past `wait_timeout` and lost frames.
    pub lagged: u64,
    /// InOrder subscribers demoted after `max_lag_events` lags.
    pub demoted: u64,
    /// Packets published into the packet ring.
    pub packets_published: u64,
}

/// One entry of the publisher's lease table: a frame a subscriber holds now,
/// read from its lease row (`docs/protocol.md` §5.2). See [`Publisher::leases`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldLease {
    /// The subscriber's id (its WELCOME `subscriber_id`).
    pub subscriber: u32,
    /// Sequence number of the leased frame.
    pub seq: u64,
    /// No longer honoured: revoked after `lease_timeout`, or its frame is
    /// gone from the slots (rewritten after the revocation). The publisher
    /// ignores it; data read through it may be torn.
    pub revoked: bool,
}
