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
    /// `max(floor, row.consumed_seq)` are unread. `None` for NewestOnly.
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

    /// Picks a slot to write and marks it `WRITING`, oldest frame first.
    ///
    /// A slot is skipped while any reader in `readers` leases its frame, and,
    /// when `honour_unread`, while an InOrder reader has not consumed it.
    /// Single publisher thread only.
    pub fn claim(&self, readers: &[ReaderRef<'_>], honour_unread: bool) -> Claim {
        let n = self.ctl.layout().slot_count;
        let mut tried: u64 = 0;
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
            if prev != 0 && honour_unread && readers.iter().any(|r| r.unread(prev)) {
                blocked_by_unread = true;
                continue;
            }
            // P1 (docs/protocol.md §5.2): mark the slot, then a full fence
            // before the lease scan (P2) so the two form a Dekker pair with
            // the readers' S1/S2, and so frame writes after it are ordered
            // after the mark (the post-check of `RingReader::still_valid`).
            self.ctl.slot_seq(i).store(SEQ_WRITING | prev, P1_ORDER);
            if !cfg!(cuframes_loom_mutation) {
                fence(Ordering::SeqCst);
            }
            if prev != 0 && readers.iter().any(|r| r.leases(prev)) {
                self.ctl.slot_seq(i).store(prev, Ordering::SeqCst);
                continue;
            }
            return Claim::Claimed(SlotClaim {
                slot: i,
                prev_seq: prev,
            });
        }
        Claim::Busy { blocked_by_unread }
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
