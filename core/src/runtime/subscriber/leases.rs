//! A subscriber's lease book: its lease row (one per connection), the
//! publisher's control region (one per ring generation), and which of the
//! row's entries live frames hold (`docs/protocol.md` §5.3).
//!
//! Both live behind `Arc`s so that a lease can be returned from another
//! thread after the [`Frame`](super::Frame) guard is gone: a CUDA host
//! callback that runs once the consumer's stream has finished with the frame
//! ([`PendingRelease`]), and so that frames of a ring the subscriber has left
//! (a stream change, a reconnect) keep that ring's mappings alive.

use crate::layout::ControlLayout;
use crate::ring::{Lease, LeaseWords, RingReader};
use crate::runtime::futex;
use crate::runtime::shm::{control_words, Mapping};
use crate::DeliveryMode;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex, MutexGuard};

/// Entries in use and counters; one lock also orders concurrent releases so
/// that `consumed_seq` only ever moves forward.
#[derive(Debug, Default)]
pub(crate) struct Book {
    /// Bit `i`: lease entry `i` is held by a live frame or a pending release.
    pub(crate) entries: u8,
}

/// One connection's lease row (shared by every ring generation that
/// connection imports) and its book.
pub(crate) struct RowState {
    pub(crate) row: Mapping,
    pub(crate) _fd: rustix::fd::OwnedFd,
    pub(crate) mode: DeliveryMode,
    book: Mutex<Book>,
    /// Revoked-lease count of the whole subscriber (all connections).
    revoked: Arc<Mutex<u64>>,
}

impl RowState {
    pub(crate) fn new(
        row: Mapping,
        fd: rustix::fd::OwnedFd,
        mode: DeliveryMode,
        revoked: Arc<Mutex<u64>>,
    ) -> Self {
        RowState {
            row,
            _fd: fd,
            mode,
            book: Mutex::new(Book::default()),
            revoked,
        }
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One ring generation as a subscriber reads it: the publisher's control
/// region and the connection's lease row.
pub(crate) struct LeaseState {
    pub(crate) control: Mapping,
    pub(crate) row: Arc<RowState>,
    pub(crate) layout: ControlLayout,
}

impl LeaseState {
    pub(crate) fn new(control: Mapping, row: Arc<RowState>, layout: ControlLayout) -> Self {
        LeaseState {
            control,
            row,
            layout,
        }
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.row.book()
    }

    pub(crate) fn mode(&self) -> DeliveryMode {
        self.row.mode
    }

    pub(crate) fn reader(&self) -> RingReader<'_> {
        // Both mappings were checked against `layout` when imported.
        let ctl = control_words(&self.control, self.layout);
        let row = LeaseWords::new(self.row.row.words());
        match (ctl, row) {
            (Ok(c), Ok(r)) => RingReader::new(c, r),
            _ => unreachable!("mappings validated at connect"),
        }
    }

    /// Returns `lease` to the publisher; `false` if it had been revoked.
    pub(crate) fn release(&self, lease: &Lease) -> bool {
        let reader = self.reader();
        let mut book = self.book();
        let valid = reader.still_valid(lease);
        reader.release(lease, self.row.mode);
        book.entries &= !(1 << lease.entry);
        if !valid {
            *self.row.revoked.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
        drop(book);
        futex::wake_all(reader.words().release_wake());
        valid
    }
}

/// A lease whose [`Frame`](super::Frame) guard is gone but which is not yet
/// returned: made by [`Frame::release_later`](super::Frame::release_later),
/// returned by [`PendingRelease::release`] or on drop, from any thread.
///
/// Until then the slot stays leased (the publisher may revoke it after
/// `lease_timeout`, like any lease) and its lease entry stays taken.
#[must_use = "dropping a PendingRelease releases the lease at once"]
pub struct PendingRelease {
    pub(crate) state: Arc<LeaseState>,
    pub(crate) lease: Lease,
    pub(crate) done: bool,
    /// The ring generation the frame came from (its imported slots), kept
    /// mapped until the lease is returned.
    pub(crate) _ring: Arc<dyn Send + Sync>,
}

impl PendingRelease {
    /// Sequence number of the frame this lease holds.
    pub fn seq(&self) -> u64 {
        self.lease.seq
    }

    /// Returns the lease; `false` if the publisher had revoked it (data read
    /// since may have been torn).
    pub fn release(mut self) -> bool {
        self.done = true;
        self.state.release(&self.lease)
    }
}

impl Drop for PendingRelease {
    fn drop(&mut self) {
        if !self.done {
            self.state.release(&self.lease);
        }
    }
}

impl std::fmt::Debug for PendingRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRelease")
            .field("lease", &self.lease)
            .finish()
    }
}
