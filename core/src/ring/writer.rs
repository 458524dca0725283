//! The publisher's half of the ring.

use super::{ControlWords, FrameMeta, LeaseWords};
use crate::layout::{
    header, slot, ControlHeader, StreamDesc, LEASES_PER_ROW, PTS_NONE, SEQ_WRITING, STATE_CLOSED,
};
use crate::sync::{fence, Ordering};

/// Ordering of the WRITING mark (P1). `--cfg cuframes_loom_mutation` weakens it
/// to `Release` and drops the fence after it, a deliberate bug that the loom
/// tests must catch (`docs/verification.md`); never set in real builds.
#[cfg(not(cuframes_loom_mutation))]
const P1_ORDER: Ordering = Ordering::SeqCst;
#[cfg(cuframes_loom_mutation)]
const P1_ORDER: Ordering = Ordering::Release;

/// What the publisher knows of one connected subscriber when it picks a slot.
#[derive(Clone, Copy)]
pub struct ReaderRef<'a> {
    /// The subscriber's lease row (hostile input).
    pub row: LeaseWords<'a>,
    /// `Some(floor)` for a live InOrder subscriber: frames above
    /// `max(floor, row.consumed_seq)` are unread (they block claims only
    /// under `honour_unread`, and are never taken as warm slots). `None` for
    /// NewestOnly (and demoted InOrder) subscribers.
    pub unread_floor: Option<u64>,
    /// Lease entry `i` is ignored while it still holds `revoked[i]` (a lease
    /// the publisher revoked after `lease_timeout`); 0: nothing revoked.
    pub revoked: [u64; LEASES_PER_ROW],
}

impl ReaderRef<'_> {
    /// Whether this reader holds an unrevoked lease on frame `seq` (`seq > 0`).
    fn leases(&self, seq: u64) -> bool {
        (0..LEASES_PER_ROW).any(|i| {
            let v = self.row.lease(i).load(Ordering::SeqCst);
            v == seq && v != self.revoked[i]
        })
    }

    /// Whether this InOrder reader has not consumed frame `seq` yet.
    fn unread(&self, seq: u64) -> bool {
        match self.unread_floor {
            Some(floor) => seq > floor.max(self.row.consumed().load(Ordering::Acquire)),
            None => false,
        }
    }
}

/// A slot marked as being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotClaim {
    /// Slot index.
    pub slot: u32,
    /// Sequence number the slot held before (0: empty).
    pub prev_seq: u64,
}

/// Result of [`RingWriter::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The slot is ours to write until [`RingWriter::commit`].
    Claimed(SlotClaim),
    /// No slot may be written now.
    Busy {
        /// Some slot was free of leases but unread by an InOrder reader.
        blocked_by_unread: bool,
    },
}

/// The publisher's view of its own control region.
#[derive(Clone, Copy)]
pub struct RingWriter<'a> {
    ctl: ControlWords<'a>,
}

impl<'a> RingWriter<'a> {
    /// Wraps the region; call [`RingWriter::init`] once before publishing.
    pub fn new(ctl: ControlWords<'a>) -> Self {
        RingWriter { ctl }
    }

    /// The words underneath.
    pub fn words(&self) -> ControlWords<'a> {
        self.ctl
    }

    /// Writes the header and stream description and empties every slot.
    pub fn init(&self, h: &ControlHeader, s: &StreamDesc) {
        self.ctl.store_header_and_stream(h, s);
        for i in 0..self.ctl.layout().slot_count {
            for w in 0..core::mem::size_of::<crate::layout::SlotDesc>() / 8 {
                self.ctl.slot(i, w).store(0, Ordering::SeqCst);
            }
        }
    }

    /// Picks a slot to write and marks it `WRITING` (`docs/protocol.md`
    /// §5.4): first a **warm** slot — the most recently written one whose
    /// frame is older than the newest and read by every InOrder reader in
    /// `readers` (no reader will ask for it again, so reusing it costs none
    /// of them a frame, and its memory is the likeliest still in cache) —
    /// else the slot with the oldest frame.
    ///
    /// A slot is skipped while any reader leases its frame, and, when
    /// `honour_unread`, while an InOrder reader has not consumed it.
    /// `readers` is iterated several times (hence `Clone`); no allocation.
    /// Single publisher thread only.
    pub fn claim<'r, I>(&self, readers: I, honour_unread: bool) -> Claim
    where
        I: IntoIterator + Clone,
        I::Item: core::borrow::Borrow<ReaderRef<'r>>,
    {
        use core::borrow::Borrow;
        let n = self.ctl.layout().slot_count;
        let latest = self.ctl.latest_seq();
        let mut tried: u64 = 0;
        let unread = |seq: u64| readers.clone().into_iter().any(|r| r.borrow().unread(seq));
        let leased = |seq: u64| readers.clone().into_iter().any(|r| r.borrow().leases(seq));
        // Warm pass: newest first among frames no reader will read again.
        let mut warm_skip: u64 = 0;
        for _ in 0..n {
            let mut best: Option<(u32, u64)> = None;
            for i in 0..n {
                if (tried | warm_skip) & (1 << i) != 0 {
                    continue;
                }
                let s = self.ctl.slot_seq(i).load(Ordering::Relaxed);
                if s != 0 && s < latest && best.is_none_or(|(_, b)| s > b) {
                    best = Some((i, s));
                }
            }
            let Some((i, prev)) = best else { break };
            if unread(prev) {
                warm_skip |= 1 << i;
                continue;
            }
            tried |= 1 << i;
            if let Some(c) = self.try_slot(i, prev, &leased) {
                return Claim::Claimed(c);
            }
        }
        // Oldest first (empty slots, `seq = 0`, first; ties: lowest index).
        let mut blocked_by_unread = false;
        for _ in 0..n {
            // Next untried slot with the smallest sequence number.
            let mut best: Option<(u32, u64)> = None;
            for i in 0..n {
                if tried & (1 << i) != 0 {
                    continue;
                }
                let s = self.ctl.slot_seq(i).load(Ordering::Relaxed);
                if best.is_none_or(|(_, b)| s < b) {
                    best = Some((i, s));
                }
            }
            let Some((i, prev)) = best else { break };
            tried |= 1 << i;
            if prev != 0 && honour_unread && unread(prev) {
                blocked_by_unread = true;
                continue;
            }
            if let Some(c) = self.try_slot(i, prev, &leased) {
                return Claim::Claimed(c);
            }
        }
        Claim::Busy { blocked_by_unread }
    }

    /// P1–P3 of §5.2 on slot `i` holding `prev`: mark it, then back off if
    /// a reader leases `prev`.
    fn try_slot(&self, i: u32, prev: u64, leased: &impl Fn(u64) -> bool) -> Option<SlotClaim> {
        // P1 (docs/protocol.md §5.2): mark the slot, then a full fence
        // before the lease scan (P2) so the two form a Dekker pair with
        // the readers' S1/S2, and so frame writes after it are ordered
        // after the mark (the post-check of `RingReader::still_valid`).
        self.ctl.slot_seq(i).store(SEQ_WRITING | prev, P1_ORDER);
        if !cfg!(cuframes_loom_mutation) {
            fence(Ordering::SeqCst);
        }
        if prev != 0 && leased(prev) {
            self.ctl.slot_seq(i).store(prev, Ordering::SeqCst);
            return None;
        }
        Some(SlotClaim {
            slot: i,
            prev_seq: prev,
        })
    }

    /// P2 of §5.2 again for a slot already claimed (its P1 fence done):
    /// whether a reader in `readers` leases the frame it held.
    pub fn leased_by<'r, I>(&self, c: SlotClaim, readers: I) -> bool
    where
        I: IntoIterator,
        I::Item: core::borrow::Borrow<ReaderRef<'r>>,
    {
        use core::borrow::Borrow;
        c.prev_seq != 0 && readers.into_iter().any(|r| r.borrow().leases(c.prev_seq))
    }

    /// Gives a claimed slot back before anything was written to it: the
    /// slot holds its old frame again (P3 of §5.2). The publisher uses it
    /// when, after the claim, it learns of a reader that joined meanwhile and
    /// leases the frame.
    pub fn unclaim(&self, c: SlotClaim) {
        self.ctl
            .slot_seq(c.slot)
            .store(c.prev_seq, Ordering::SeqCst);
    }

    /// Gives a claimed slot back after a failed write: the slot becomes
    /// empty (`seq := 0`). Its old frame is not restored, because the failed
    /// write may have changed some of its bytes; restoring `prev_seq` would
    /// let a reader lease (or post-check as valid) a torn frame.
    pub fn abandon(&self, c: SlotClaim) {
        self.ctl.slot_seq(c.slot).store(0, Ordering::SeqCst);
    }

    /// Sequence number the next commit will get.
    pub fn next_seq(&self) -> u64 {
        self.ctl.latest_seq().saturating_add(1)
    }

    /// Publishes the frame written into the claimed slot: metadata, then its
    /// sequence number, then `latest_seq`, then bumps `wake`. The caller
    /// FUTEX_WAKEs `wake` afterwards. Returns the sequence number.
    pub fn commit(&self, c: SlotClaim, meta: &FrameMeta) -> u64 {
        let seq = self.next_seq();
        let w = |word: usize, v: u64| self.ctl.slot(c.slot, word).store(v, Ordering::Relaxed);
        w(
            slot::word::PTS_NS,
            meta.pts_ns.map_or(PTS_NONE, |p| p as u64),
        );
        w(slot::word::PUBLISH_NS, meta.publish_ns);
        w(slot::word::FLAGS, meta.flags);
        w(slot::word::GENERATION, meta.generation);
        w(slot::word::SOURCE_INDEX, meta.source_index);
        self.ctl.slot_seq(c.slot).store(seq, Ordering::SeqCst);
        self.ctl
            .header(header::word::LATEST_SEQ)
            .store(seq, Ordering::SeqCst);
        let published = self.ctl.header(header::word::FRAMES_PUBLISHED);
        published.store(published.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.ctl.wake().fetch_add(1, Ordering::SeqCst);
        seq
    }

    /// Counts a frame the publisher could not place.
    pub fn count_drop(&self) {
        let d = self.ctl.header(header::word::FRAMES_DROPPED);
        d.store(d.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Marks the region closed and bumps `wake` so sleeping readers look.
    pub fn close(&self) {
        self.ctl
            .header(header::word::PUBLISHER_STATE)
            .store(STATE_CLOSED, Ordering::SeqCst);
        self.ctl.wake().fetch_add(1, Ordering::SeqCst);
    }
}
