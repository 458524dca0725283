//! Typed access to the words of a control region and of a lease row.

use crate::layout::{
    header, lease, slot, ControlHeader, ControlLayout, LeaseRow, SlotDesc, StreamDesc,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use core::mem::size_of;

/// A region's word slice is shorter than its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("region holds {have} words, its layout needs {need}")]
pub struct WordsError {
    /// Words available.
    pub have: usize,
    /// Words needed.
    pub need: usize,
}

/// The control region as atomic words: header, stream description, slot table.
///
/// `wake` and `release_wake` are the 32-bit futex words in the low halves of
/// header words 13 and 14; those two u64 words are never accessed as u64.
#[derive(Clone, Copy)]
pub struct ControlWords<'a> {
    words: &'a [AtomicU64],
    wake: &'a AtomicU32,
    release_wake: &'a AtomicU32,
    layout: ControlLayout,
}

impl<'a> ControlWords<'a> {
    /// Wraps `words` (the whole region) and its two futex words.
    pub fn new(
        words: &'a [AtomicU64],
        wake: &'a AtomicU32,
        release_wake: &'a AtomicU32,
        layout: ControlLayout,
    ) -> Result<Self, WordsError> {
        let need = (layout.slot_offset(layout.slot_count) / 8) as usize;
        if words.len() < need {
            return Err(WordsError {
                have: words.len(),
                need,
            });
        }
        Ok(ControlWords {
            words,
            wake,
            release_wake,
            layout,
        })
    }

    /// The geometry.
    pub fn layout(&self) -> ControlLayout {
        self.layout
    }

    pub(crate) fn header(&self, w: usize) -> &'a AtomicU64 {
        &self.words[w]
    }

    pub(crate) fn slot(&self, slot: u32, w: usize) -> &'a AtomicU64 {
        let base = (self.layout.slot_offset(slot) / 8) as usize;
        &self.words[base + w]
    }

    /// The futex word bumped after each commit.
    pub fn wake(&self) -> &'a AtomicU32 {
        self.wake
    }

    /// The futex word the publisher sleeps on while it waits for a release.
    pub fn release_wake(&self) -> &'a AtomicU32 {
        self.release_wake
    }

    /// Copies the header out (futex words as their 32-bit values).
    pub fn snapshot_header(&self) -> ControlHeader {
        let mut raw = [0u64; size_of::<ControlHeader>() / 8];
        for (i, v) in raw.iter_mut().enumerate() {
            *v = match i {
                header::word::WAKE => self.wake.load(Ordering::Acquire) as u64,
                header::word::RELEASE_WAKE => self.release_wake.load(Ordering::Acquire) as u64,
                _ => self.words[i].load(Ordering::Acquire),
            };
        }
        zerocopy::transmute!(raw)
    }

    /// Copies the stream description out.
    pub fn snapshot_stream(&self) -> StreamDesc {
        let base = (self.layout.stream_offset() / 8) as usize;
        let mut raw = [0u64; size_of::<StreamDesc>() / 8];
        for (i, v) in raw.iter_mut().enumerate() {
            *v = self.words[base + i].load(Ordering::Acquire);
        }
        zerocopy::transmute!(raw)
    }

    /// Copies slot `i`'s descriptor out.
    pub fn snapshot_slot(&self, i: u32) -> SlotDesc {
        let mut raw = [0u64; size_of::<SlotDesc>() / 8];
        for (w, v) in raw.iter_mut().enumerate() {
            *v = self.slot(i, w).load(Ordering::Acquire);
        }
        zerocopy::transmute!(raw)
    }

    /// Publisher only: writes a header (except the futex words) and stream description.
    pub(crate) fn store_header_and_stream(&self, h: &ControlHeader, s: &StreamDesc) {
        let raw: [u64; size_of::<ControlHeader>() / 8] = zerocopy::transmute!(*h);
        for (i, v) in raw.iter().enumerate() {
            if i != header::word::WAKE && i != header::word::RELEASE_WAKE {
                self.words[i].store(*v, Ordering::SeqCst);
            }
        }
        self.store_stream(s);
    }

    pub(crate) fn store_stream(&self, s: &StreamDesc) {
        let base = (self.layout.stream_offset() / 8) as usize;
        let raw: [u64; size_of::<StreamDesc>() / 8] = zerocopy::transmute!(*s);
        for (i, v) in raw.iter().enumerate() {
            self.words[base + i].store(*v, Ordering::SeqCst);
        }
    }

    /// Sequence number of the newest committed frame (0: none).
    pub fn latest_seq(&self) -> u64 {
        self.header(header::word::LATEST_SEQ).load(Ordering::SeqCst)
    }

    /// Whether the publisher marked the region closed.
    pub fn is_closed(&self) -> bool {
        self.header(header::word::PUBLISHER_STATE)
            .load(Ordering::Acquire)
            == crate::layout::STATE_CLOSED
    }

    pub(crate) fn slot_seq(&self, i: u32) -> &'a AtomicU64 {
        self.slot(i, slot::word::SEQ)
    }
}

/// A lease row as atomic words.
#[derive(Clone, Copy)]
pub struct LeaseWords<'a> {
    words: &'a [AtomicU64],
}

impl<'a> LeaseWords<'a> {
    /// Wraps the first 16 words of `words`.
    pub fn new(words: &'a [AtomicU64]) -> Result<Self, WordsError> {
        if words.len() < lease::word::COUNT {
            return Err(WordsError {
                have: words.len(),
                need: lease::word::COUNT,
            });
        }
        Ok(LeaseWords { words })
    }

    /// Lease entry `i` (0..LEASES_PER_ROW).
    pub(crate) fn lease(&self, i: usize) -> &'a AtomicU64 {
        &self.words[lease::word::LEASES + i]
    }

    pub(crate) fn consumed(&self) -> &'a AtomicU64 {
        &self.words[lease::word::CONSUMED_SEQ]
    }

    /// Subscriber only: writes a fresh row (magic, no leases, `consumed_seq`).
    pub fn init(&self, consumed_seq: u64) {
        for w in self.words[..lease::word::COUNT].iter() {
            w.store(0, Ordering::SeqCst);
        }
        self.words[lease::word::MAGIC].store(crate::layout::LEASE_MAGIC, Ordering::SeqCst);
        self.consumed().store(consumed_seq, Ordering::SeqCst);
    }

    /// Copies the row out.
    pub fn snapshot(&self) -> LeaseRow {
        let mut raw = [0u64; lease::word::COUNT];
        for (i, v) in raw.iter_mut().enumerate() {
            *v = self.words[i].load(Ordering::Acquire);
        }
        zerocopy::transmute!(raw)
    }
}
