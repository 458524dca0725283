//! Per-frame metadata as the ring hands it out.

use crate::layout::{FLAG_DISCONTINUITY, FLAG_KEY};

/// Metadata of one committed frame (the [`crate::layout::SlotDesc`] fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Presentation time, ns.
    pub pts_ns: Option<i64>,
    /// `CLOCK_MONOTONIC` time of the commit, ns.
    pub publish_ns: u64,
    /// Raw flag bits ([`FLAG_KEY`], [`FLAG_DISCONTINUITY`]).
    pub flags: u64,
    /// Stream description generation the frame belongs to.
    pub generation: u64,
    /// Index of the frame in the source's output order (restarts on loop).
    pub source_index: u64,
}

impl FrameMeta {
    /// Whether the frame is a keyframe.
    pub fn is_key(&self) -> bool {
        self.flags & FLAG_KEY != 0
    }

    /// Whether frames before this one were lost at the source.
    pub fn is_discontinuity(&self) -> bool {
        self.flags & FLAG_DISCONTINUITY != 0
    }
}
