//! [`SlotGuard`]: a claimed slot being filled, committed or abandoned
//! (`docs/protocol.md` §5.1).

use super::{unreachable_layout, Publisher};
use crate::layout::{FrameLayout, StreamDesc};
use crate::ring::{FrameMeta, SlotClaim};
use crate::runtime::backend::Exporter;
use crate::runtime::{clock, futex};
use std::prelude::rust_2021::*;

/// A claimed slot of a [`Publisher`] being filled ([`Publisher::acquire`]):
/// while it lives no subscriber can lease the slot. [`SlotGuard::commit`]
/// publishes the frame; dropping the guard abandons it (`docs/protocol.md`
/// §5.1: the slot's sequence word goes back to what it was).
pub struct SlotGuard<'p, B: Exporter + Send + Sync + 'static> {
    pub(super) publisher: &'p mut Publisher<B>,
    /// `None` once committed.
    pub(super) claim: Option<SlotClaim>,
}

impl<B: Exporter + Send + Sync + 'static> SlotGuard<'_, B> {
    /// The slot to write the frame into: [`HostSlot::bytes_mut`] for host
    /// memory, a device pointer for GPU backends.
    ///
    /// [`HostSlot::bytes_mut`]: crate::runtime::HostSlot::bytes_mut
    pub fn slot(&mut self) -> &mut B::Slot {
        self.parts().0
    }

    /// Layout of the frame to write: size, format, plane offsets and
    /// pitches (bytes), the same as [`Publisher::stream`].
    pub fn stream(&self) -> &StreamDesc {
        &self.publisher.stream
    }

    /// Where each plane of the frame to write lies in the slot (offsets,
    /// pitches, row bytes, rows; bytes): the same as [`Publisher::layout`].
    /// Host slots: [`FrameLayout::copy_plane_from`] writes a plane into
    /// [`HostSlot::bytes_mut`].
    ///
    /// [`HostSlot::bytes_mut`]: crate::runtime::HostSlot::bytes_mut
    pub fn layout(&self) -> &FrameLayout {
        &self.publisher.layout
    }

    /// Index of the claimed slot in the ring (0-based).
    pub fn index(&self) -> u32 {
        self.claim.as_ref().map_or(0, |c| c.slot)
    }

    pub(super) fn parts(&mut self) -> (&mut B::Slot, &StreamDesc) {
        let p = &mut *self.publisher;
        let i = self.claim.as_ref().map_or(0, |c| c.slot) as usize;
        match p.slots.get_mut(i) {
            Some(slot) => (slot, &p.stream),
            // Claims come from this ring's writer, which has one entry per slot.
            None => unreachable_layout(),
        }
    }

    /// Publishes the frame: commits `meta` (its `seq`, `publish_ns` and
    /// `generation` are set here), wakes the subscribers, returns the
    /// frame's sequence number.
    pub fn commit(mut self, meta: FrameMeta) -> u64 {
        let p = &mut *self.publisher;
        let Some(claim) = self.claim.take() else {
            return 0;
        };
        let meta = FrameMeta {
            publish_ns: clock::monotonic_ns(),
            generation: p.stream.generation,
            ..meta
        };
        let seq = p.ring.writer().commit(claim, &meta);
        futex::wake_all(p.ring.words().wake());
        p.stats.published += 1;
        seq
    }
}

impl<B: Exporter + Send + Sync + 'static> Drop for SlotGuard<'_, B> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.publisher.ring.writer().abandon(claim);
        }
    }
}
