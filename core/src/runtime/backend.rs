//! The backend trait: who allocates frame slots and how they travel
//! (`docs/protocol.md` §3.6). Modelled on wgpu-hal's `Api`: the trait names
//! the types of each side; each backend is its own crate, except the
//! host-memory one, which lives here.

use crate::{MemoryKind, SyncKind};
use rustix::fd::OwnedFd;
use std::prelude::rust_2021::*;

/// How one slot allocation travels to a subscriber.
#[derive(Debug)]
pub struct SlotExport {
    /// A file descriptor sent with SCM_RIGHTS (fd memory kinds).
    pub fd: Option<OwnedFd>,
    /// Bytes sent in WELCOME (handle memory kinds, e.g. a 64-byte
    /// `CUipcMemHandle`); empty for fd kinds.
    pub handle: Vec<u8>,
    /// The slot's sync fd, sent right after its memory fd, for sync kinds
    /// with [`SyncKind::fds_per_slot`] 1 (`VulkanTimeline`: the slot's
    /// timeline semaphore); `None` otherwise.
    pub sync_fd: Option<OwnedFd>,
}

/// What a subscriber learns of the publisher before it imports any slot
/// (WELCOME and the validated control header, `docs/protocol.md` §4.2, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The publisher's memory kind.
    pub memory_kind: MemoryKind,
    /// The publisher's sync kind.
    pub sync_kind: SyncKind,
    /// UUID of the GPU holding the slots (zero for host memory).
    pub gpu_uuid: [u8; 16],
    /// Bytes per slot.
    pub slot_size: u64,
    /// Slots in the ring.
    pub slot_count: u32,
}

/// A memory backend: frame slots allocated by the publisher, exported as fds
/// or handles, imported by subscribers.
pub trait Backend {
    /// A slot as the publisher owns it (writable).
    type Slot: Send;
    /// A slot as a subscriber imported it (readable).
    type Imported;
    /// What can go wrong; backends keep to a few portable variants.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The memory kind announced in the header and WELCOME.
    fn memory_kind(&self) -> MemoryKind;

    /// The sync kind announced in the header and WELCOME.
    fn sync_kind(&self) -> SyncKind {
        SyncKind::HostFence
    }

    /// UUID of the GPU holding the slots (zero for host memory).
    fn gpu_uuid(&self) -> [u8; 16] {
        [0; 16]
    }

    /// Subscriber: whether this backend can import memory of `kind`
    /// (default: only its own [`Backend::memory_kind`]).
    fn accepts(&self, kind: MemoryKind) -> bool {
        kind == self.memory_kind()
    }

    /// Subscriber: called once with the publisher's description before the
    /// first [`Backend::import`]; a GPU backend picks its device by
    /// `peer.gpu_uuid` here. Default: nothing to do.
    fn attach(&mut self, peer: &Peer) -> Result<(), Self::Error> {
        let _ = peer;
        Ok(())
    }

    /// Subscriber: called when a frame guard in `slot` (a [`Frame`] or an
    /// [`OwnedFrame`], on whatever thread drops it) is dropped or released,
    /// before its lease is returned; a GPU backend waits here for the
    /// consumer's work on the frame. An associated function, not a method:
    /// an `OwnedFrame` outlives its subscriber's borrow and carries only
    /// the slot. Default: nothing to wait for.
    ///
    /// [`Frame`]: super::Frame
    /// [`OwnedFrame`]: super::OwnedFrame
    fn before_release(slot: &Self::Imported)
    where
        Self: Sized,
    {
        let _ = slot;
    }

    /// Publisher: `slot` was claimed for the frame that will be committed
    /// as `seq` (if it is committed): a backend whose sync signals a value
    /// per frame (`VulkanTimeline`) signals `seq` when the frame's writes
    /// are done. Called before the writer gets the slot. Default: nothing.
    fn claimed(slot: &mut Self::Slot, seq: u64)
    where
        Self: Sized,
    {
        let _ = (slot, seq);
    }

    /// Publisher: allocates slot `index` of `size` bytes.
    fn allocate(&self, index: u32, size: u64) -> Result<Self::Slot, Self::Error>;

    /// Publisher: an export of `slot`, made once and sent to every subscriber.
    fn export(&self, slot: &Self::Slot) -> Result<SlotExport, Self::Error>;

    /// Subscriber: imports one slot of `size` bytes from what a publisher
    /// sent in WELCOME.
    ///
    /// Safe, and called from the safe [`Subscriber::connect`] with whatever
    /// a possibly hostile publisher sent: an implementation must check
    /// `fd` / `handle` / `size` itself (the host backend checks the memfd's
    /// size and seals before mapping it) or refuse them. A handle that
    /// cannot be validated (legacy CUDA IPC) may only be imported after the
    /// application opted in through an `unsafe` API of the backend that
    /// makes trusting the publisher its obligation.
    ///
    /// Errors: the backend's, for anything it cannot import.
    ///
    /// [`Subscriber::connect`]: super::Subscriber::connect
    fn import(
        &self,
        fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<Self::Imported, Self::Error>;

    /// Subscriber: imports one slot with its sync fd (sync kinds with
    /// [`SyncKind::fds_per_slot`] 1); what [`Subscriber::connect`] calls.
    /// The same validation duty as [`Backend::import`]. Default: the sync
    /// fd is closed and the slot imported with [`Backend::import`] — right
    /// for backends whose [`Backend::attach`] refuses such sync kinds.
    ///
    /// [`Subscriber::connect`]: super::Subscriber::connect
    fn import_slot(
        &self,
        fd: Option<OwnedFd>,
        sync_fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<Self::Imported, Self::Error> {
        drop(sync_fd);
        self.import(fd, handle, size)
    }
}
