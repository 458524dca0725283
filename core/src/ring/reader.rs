//! A subscriber's half of the ring.

use super::{ControlWords, FrameMeta, LeaseWords};
use crate::layout::{slot, LEASES_PER_ROW, PTS_NONE, SEQ_WRITING};
use crate::sync::{fence, spin_hint, Ordering};
use crate::DeliveryMode;

/// How often [`RingReader::acquire`] retries a frame the publisher is
/// rewriting before it reports [`Acquire::Empty`].
const RETRIES: usize = 16;

/// How many turns [`RingReader::still_valid`] waits for a publisher's claim
/// probe of the slot to end.
pub const PROBE_SPINS: usize = 4096;

/// Where a subscriber stands in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Sequence number of the last frame handed out (WELCOME's `start_seq` at first).
    pub last_seq: u64,
}

/// A held lease on a committed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Slot index.
    pub slot: u32,
    /// Frame sequence number.
    pub seq: u64,
    /// Lease entry of the row that holds it.
    pub entry: usize,
    /// Frames between the cursor and this one that this reader will never see.
    pub skipped: u64,
}

/// Result of [`RingReader::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// A frame, leased.
    Frame(Lease),
    /// Nothing newer than the cursor is committed (or it is being rewritten):
    /// wait on the `wake` futex and try again.
    Empty,
}

/// A subscriber's view: the publisher's region (read only) and its own row.
#[derive(Clone, Copy)]
pub struct RingReader<'a> {
    ctl: ControlWords<'a>,
    row: LeaseWords<'a>,
}

impl<'a> RingReader<'a> {
    /// Wraps the publisher's region and this subscriber's lease row.
    pub fn new(ctl: ControlWords<'a>, row: LeaseWords<'a>) -> Self {
        RingReader { ctl, row }
    }

    /// The control words.
    pub fn words(&self) -> ControlWords<'a> {
        self.ctl
    }

    /// Leases the next frame for `mode` after `cursor` into row entry `entry`
    /// (which must be free). The caller advances the cursor to `lease.seq`.
    pub fn acquire(&self, mode: DeliveryMode, cursor: Cursor, entry: usize) -> Acquire {
        let entry = entry % LEASES_PER_ROW;
        for _ in 0..RETRIES {
            let latest = self.ctl.latest_seq();
            let want = cursor.last_seq.saturating_add(1);
            // A `latest_seq` with the WRITING bit is no sequence number (only
            // a hostile publisher writes one); leasing it would hand out a
            // frame that never passes `still_valid`.
            if latest < want || cursor.last_seq == u64::MAX || latest & SEQ_WRITING != 0 {
                return Acquire::Empty;
            }
            let target = match mode {
                DeliveryMode::NewestOnly => latest,
                _ => match self.oldest_at_or_after(want, latest) {
                    Some(s) => s,
                    None => continue,
                },
            };
            let Some(slot) = self.find(target) else {
                continue;
            };
            let lease = self.row.lease(entry);
            // S1, full fence, S2 (docs/protocol.md §5.2).
            lease.store(target, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.ctl.slot_seq(slot).load(Ordering::SeqCst) == target {
                return Acquire::Frame(Lease {
                    slot,
                    seq: target,
                    entry,
                    skipped: target.saturating_sub(want),
                });
            }
            lease.store(0, Ordering::SeqCst);
        }
        Acquire::Empty
    }

    /// Smallest committed sequence in `want..=latest`; `None` while a slot
    /// holding such a frame is being rewritten (it may come back).
    fn oldest_at_or_after(&self, want: u64, latest: u64) -> Option<u64> {
        let mut best: Option<u64> = None;
        for i in 0..self.ctl.layout().slot_count {
            let s = self.ctl.slot_seq(i).load(Ordering::SeqCst);
            if s & SEQ_WRITING != 0 {
                if s & !SEQ_WRITING >= want {
                    return None;
                }
                continue;
            }
            if s >= want && s <= latest && best.is_none_or(|b| s < b) {
                best = Some(s);
            }
        }
        best
    }

    fn find(&self, seq: u64) -> Option<u32> {
        (0..self.ctl.layout().slot_count)
            .find(|&i| self.ctl.slot_seq(i).load(Ordering::SeqCst) == seq)
    }

    /// Metadata of a leased frame.
    pub fn meta(&self, l: &Lease) -> FrameMeta {
        let r = |w: usize| self.ctl.slot(l.slot, w).load(Ordering::Relaxed);
        let pts = r(slot::word::PTS_NS);
        FrameMeta {
            seq: l.seq,
            pts_ns: (pts != PTS_NONE).then_some(pts as i64),
            publish_ns: r(slot::word::PUBLISH_NS),
            flags: r(slot::word::FLAGS),
            generation: r(slot::word::GENERATION),
            source_index: r(slot::word::SOURCE_INDEX),
        }
    }

    /// Whether the leased frame is still in its slot. `false` only if the
    /// publisher revoked the lease (held past `lease_timeout`): data read
    /// since may be torn and must be discarded.
    ///
    /// `WRITING | seq` in the slot means the publisher is either rewriting it
    /// (the lease was revoked) or only probing it during a claim, in which
    /// case it sees this lease and restores `seq` (§5.2 P3). The check waits
    /// up to [`PROBE_SPINS`] turns for the probe to end; a publisher stalled
    /// in the middle of a probe for longer makes it answer `false`
    /// (conservative: a good frame is discarded, a torn one never kept).
    pub fn still_valid(&self, l: &Lease) -> bool {
        // Orders the caller's earlier (relaxed) reads of the slot before the
        // re-check: if one of them saw a rewrite, this load sees WRITING or a
        // later sequence (it pairs with the fence after the publisher's P1).
        fence(Ordering::Acquire);
        let seq = self.ctl.slot_seq(l.slot);
        for _ in 0..PROBE_SPINS {
            let v = seq.load(Ordering::SeqCst);
            if v != SEQ_WRITING | l.seq {
                return v == l.seq;
            }
            spin_hint();
        }
        false
    }

    /// Returns the lease. InOrder readers also advance `consumed_seq`.
    pub fn release(&self, l: &Lease, mode: DeliveryMode) {
        if mode == DeliveryMode::InOrder {
            let c = self.row.consumed();
            if c.load(Ordering::Relaxed) < l.seq {
                c.store(l.seq, Ordering::SeqCst);
            }
        }
        self.row.lease(l.entry).store(0, Ordering::SeqCst);
    }

    /// InOrder readers: marks every frame up to `seq` consumed (after a gap).
    pub fn mark_consumed(&self, seq: u64) {
        let c = self.row.consumed();
        if c.load(Ordering::Relaxed) < seq {
            c.store(seq, Ordering::SeqCst);
        }
    }
}
