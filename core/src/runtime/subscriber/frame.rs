//! Leased frames: [`Frame`], a guard that borrows its subscriber, and
//! [`OwnedFrame`], the same lease with no borrow (for handles that FFI,
//! Python or GStreamer hand out and free on any thread).
//!
//! Both hold the ring generation the frame came from (control region, lease
//! row, imported slots, stream description) in an `Arc`, so they stay
//! readable after the subscriber moved to a new ring or reconnected, and
//! both return the lease (`docs/protocol.md` §5.2) exactly once: on
//! `release`, `release_later` or drop.

#[cfg(doc)]
use super::engine::Subscriber;
use super::leases::PendingRelease;
use super::ring::Ring;
use crate::layout::{FrameLayout, StreamDesc};
use crate::ring::{FrameMeta, Lease};
use crate::runtime::backend::Importer;
use crate::runtime::host::HostBackend;
use core::marker::PhantomData;
use std::prelude::rust_2021::*;
use std::sync::Arc;

/// The lease and what it needs, shared by both guards: the single place
/// that returns it.
struct Held<B: Importer> {
    ring: Arc<Ring<B>>,
    lease: Lease,
    meta: FrameMeta,
    changed: bool,
    /// Released already (by `release` or `release_later`).
    done: bool,
}

impl<B: Importer> Held<B> {
    fn memory(&self) -> &B::Imported {
        // The lease's slot index comes from this ring's own slot table scan.
        match self.ring.slots.get(self.lease.slot as usize) {
            Some(s) => s,
            None => unreachable_slot(),
        }
    }

    fn is_valid(&self) -> bool {
        self.ring.leases.reader().still_valid(&self.lease)
    }

    fn release(&mut self) -> bool {
        self.done = true;
        B::before_release(self.memory());
        self.ring.leases.release(&self.lease)
    }
}

impl<B: Importer + 'static> Held<B>
where
    B::Imported: Send + Sync,
{
    fn release_later(&mut self) -> PendingRelease {
        self.done = true;
        PendingRelease {
            state: Arc::clone(&self.ring.leases),
            lease: self.lease,
            done: false,
            _ring: Arc::clone(&self.ring) as Arc<dyn Send + Sync>,
        }
    }
}

impl<B: Importer> Drop for Held<B> {
    fn drop(&mut self) {
        if !self.done {
            self.release();
        }
    }
}

impl Held<HostBackend> {
    fn plane(&self, i: usize) -> Option<(&[u8], usize)> {
        let p = self.ring.layout.plane(i)?;
        // From the first row to the end of the last (no padding after it).
        let (start, end) = (
            usize::try_from(p.offset()).ok()?,
            usize::try_from(p.end()).ok()?,
        );
        let bytes = self.memory().bytes().get(start..end)?;
        Some((bytes, usize::try_from(p.pitch()).ok()?))
    }

    fn for_each_row(&self, mut f: impl FnMut(&[u8])) {
        let bytes = self.memory().bytes();
        for row in self.ring.layout.packed_rows() {
            // The layout was validated against the slot size at import.
            if let Some(r) = bytes.get(row) {
                f(r);
            }
        }
    }
}

#[cold]
fn unreachable_slot() -> ! {
    // Leases are only made for slots of the ring they were acquired in.
    core::panic!("lease names a slot outside its ring")
}

/// A leased frame; dropping it releases the lease.
///
/// The guard holds the ring generation it came from (control region, lease
/// row, imported slots, stream description), so it stays readable after the
/// subscriber moved to a new ring or reconnected.
///
/// **Torn data.** The slot's bytes live in the publisher's shared memory.
/// While the lease is valid the publisher does not write them (§5.2); but a
/// publisher revokes a lease held longer than its `lease_timeout` and may
/// then rewrite the slot under the reader. Data read from a frame is
/// therefore only known whole if [`Frame::is_valid`] (or the value of
/// [`Frame::release`]) says so *after* the read; otherwise it may be torn
/// (parts of two frames). Such data is still memory-safe to read (every
/// byte value is valid, the mapping stays mapped) but must be discarded.
///
/// Everything the guard hands out borrows from the guard, so no plane
/// outlives it (the lease): this fails to compile with E0597 (`frame` does
/// not live long enough), while the same code using the plane inside the
/// block compiles (the `no_run` example below):
///
/// ```compile_fail,E0597
/// use cuframes_core::runtime::{SubscribeOptions, Subscriber};
/// use cuframes_core::DeliveryMode;
/// use std::time::Duration;
///
/// let sub = Subscriber::connect_host("cam1", SubscribeOptions::new(DeliveryMode::NewestOnly)).unwrap();
/// let plane = {
///     let frame = sub.next_frame(Duration::from_secs(1)).unwrap();
///     frame.plane(0).unwrap().0 // error: `frame` does not live long enough
/// };
/// println!("{}", plane.len());
/// ```
///
/// ```no_run
/// use cuframes_core::runtime::{SubscribeOptions, Subscriber};
/// use cuframes_core::DeliveryMode;
/// use std::time::Duration;
///
/// let sub = Subscriber::connect_host("cam1", SubscribeOptions::new(DeliveryMode::NewestOnly)).unwrap();
/// let len = {
///     let frame = sub.next_frame(Duration::from_secs(1)).unwrap();
///     let n = frame.plane(0).unwrap().0.len();
///     // Only now is it known that the bytes were not rewritten meanwhile.
///     frame.release().then_some(n)
/// };
/// println!("{len:?}");
/// ```
pub struct Frame<'a, B: Importer = HostBackend> {
    held: Held<B>,
    /// Frames borrow their subscriber (`Subscriber::next_frame` ties `'a`
    /// to it): no guard outlives it (use [`Frame::into_owned`] for one that
    /// may). The raw pointer keeps the guard `!Send + !Sync`, as the
    /// subscriber it borrows is.
    _sub: PhantomData<(&'a (), *const ())>,
}

impl<B: Importer> Frame<'_, B> {
    pub(super) fn new(ring: Arc<Ring<B>>, lease: Lease, meta: FrameMeta, changed: bool) -> Self {
        Frame {
            held: Held {
                ring,
                lease,
                meta,
                changed,
                done: false,
            },
            _sub: PhantomData,
        }
    }

    /// The same lease as an [`OwnedFrame`], which does not borrow the
    /// subscriber (and is `Send + Sync` where the backend's imports are).
    pub fn into_owned(self) -> OwnedFrame<B> {
        OwnedFrame { held: self.held }
    }
}

/// A leased frame that owns its place: the lease of a [`Frame`] without the
/// borrow of its [`Subscriber`] (`'static`; `Send + Sync` where the
/// backend's imported slots are, as for [`HostBackend`] and the CUDA
/// backend). It keeps its ring generation (mappings, imported slots)
/// alive until it is released or dropped, so it may outlive the subscriber
/// and be freed on any thread: what C, Python and GStreamer handles hold.
/// Made by [`Frame::into_owned`].
///
/// The same rules as for [`Frame`] apply: data read while the lease was
/// revoked may be torn ([`OwnedFrame::is_valid`]), and everything it hands
/// out borrows from it. The lease itself lives as long as the subscriber's
/// connection: once the [`Subscriber`] is dropped the publisher reclaims it
/// at socket EOF (`docs/protocol.md` §5.6), so a frame that outlives its
/// subscriber stays mapped and memory-safe to read but may be rewritten
/// (`is_valid()` turns `false`, `release()` returns `false`). Bindings
/// keep the subscriber alive while its frames are.
pub struct OwnedFrame<B: Importer = HostBackend> {
    held: Held<B>,
}

/// The accessors and release paths, the same for both guards.
macro_rules! guard_methods {
    ($guard:ident) => {
        /// Sequence number, timestamps, flags, source index. After a
        /// reconnect the first frame's flags include `FLAG_DISCONTINUITY`.
        pub fn meta(&self) -> &FrameMeta {
            &self.held.meta
        }

        /// Frames skipped or lost between the previous frame and this one.
        pub fn skipped(&self) -> u64 {
            self.held.lease.skipped
        }

        /// Plane layout (and size, format) of this frame's ring.
        pub fn stream(&self) -> &StreamDesc {
            &self.held.ring.stream
        }

        /// Where each plane lies in the slot (offset, pitch, row bytes,
        /// rows; bytes), validated against the slot size at import
        /// (`docs/protocol.md` §3.4).
        pub fn layout(&self) -> &FrameLayout {
            &self.held.ring.layout
        }

        /// Whether this is the first frame of a new stream description: the
        /// first of a new ring generation (STREAM_CHANGED, `docs/protocol.md`
        /// §6), or the first after a reconnect to a publisher whose
        /// description differs. `stream()` gives the new one.
        pub fn stream_changed(&self) -> bool {
            self.held.changed
        }

        /// The slot memory the frame lives in.
        pub fn memory(&self) -> &B::Imported {
            self.held.memory()
        }

        /// Whether the frame is still in its slot: `false` only after the
        /// publisher revoked the lease (held past `lease_timeout`); data read
        /// from the frame before this call may then be torn.
        pub fn is_valid(&self) -> bool {
            self.held.is_valid()
        }

        /// Releases now, after the backend's release-time synchronisation
        /// (the CUDA backend waits for the slot's context), like dropping the
        /// guard; returns `is_valid()` as of the release: `false` means data
        /// read from the frame may be torn.
        pub fn release(mut self) -> bool {
            self.held.release()
        }
    };
}

impl<B: Importer> Frame<'_, B> {
    guard_methods!(Frame);
}

impl<B: Importer> OwnedFrame<B> {
    guard_methods!(OwnedFrame);
}

/// `release_later` for both guards.
macro_rules! release_later {
    () => {
        /// Ends the guard but keeps the lease: the returned [`PendingRelease`]
        /// returns it later, from any thread (e.g. a CUDA host callback once
        /// the consumer's stream is done with the frame), and keeps the
        /// frame's ring (its imported slots) alive until then. Skips the
        /// backend's release-time synchronisation: the caller takes that on.
        pub fn release_later(mut self) -> PendingRelease {
            self.held.release_later()
        }
    };
}

impl<B: Importer + 'static> Frame<'_, B>
where
    B::Imported: Send + Sync,
{
    release_later!();
}

impl<B: Importer + 'static> OwnedFrame<B>
where
    B::Imported: Send + Sync,
{
    release_later!();
}

/// Host-memory plane access for both guards.
macro_rules! host_planes {
    () => {
        /// Plane `i` (0: Y, 1: CbCr) as `(bytes from its first row, pitch)`,
        /// borrowed from this guard. `None` for a plane the format does not
        /// have. The slice spans `pitch × (rows − 1) + row bytes`.
        pub fn plane(&self, i: usize) -> Option<(&[u8], usize)> {
            self.held.plane(i)
        }

        /// Calls `f` with each row of each plane, without pitch padding: the
        /// bytes of FFmpeg's packed rawvideo layout, in order.
        pub fn for_each_row(&self, f: impl FnMut(&[u8])) {
            self.held.for_each_row(f)
        }
    };
}

impl Frame<'_, HostBackend> {
    host_planes!();
}

impl OwnedFrame<HostBackend> {
    host_planes!();
}
