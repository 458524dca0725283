//! The backend traits: who allocates frame slots and how they travel
//! (`docs/protocol.md` §3.6). Modelled on wgpu-hal: [`Api`] names the types
//! of each side, one trait per role points back to it ([`Exporter`] for
//! publishers, [`Importer`] for subscribers); each backend is its own
//! crate, except the host-memory one, which lives here.

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

/// What both roles of a memory backend share (wgpu-hal's `Api`): the
/// types of a slot on each side and of the backend's errors, and the
/// memory the backend speaks. A backend implements [`Exporter`] (what a
/// publisher needs), [`Importer`] (what a subscriber needs), or both
/// ([`Backend`]).
pub trait Api {
    /// A slot as the publisher owns it (writable).
    type Slot: Send;
    /// A slot as a subscriber imported it (readable).
    type Imported;
    /// What can go wrong; each error says what it means to the caller
    /// ([`BackendError::kind`]).
    type Error: BackendError;

    /// The backend's name in errors and logs (`host`, `cuda`, `vulkan`).
    const NAME: &'static str = "backend";

    /// The memory kind announced in the header and WELCOME (publisher), or
    /// this backend's own kind (subscriber; what a refusal names).
    fn memory_kind(&self) -> MemoryKind;

    /// UUID of the GPU holding (publisher) or reading (subscriber, once
    /// attached) the slots; zero for host memory.
    fn gpu_uuid(&self) -> [u8; 16] {
        [0; 16]
    }
}

/// What a backend failure means to its caller, whatever the backend: the
/// few portable variants front-ends map to their own codes, instead of
/// downcasting to each backend's error type (wgpu-hal style).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The driver or loader is not on this machine (libcuda, the Vulkan
    /// loader).
    Unavailable,
    /// No device matches (an ordinal out of range, the publisher's GPU not
    /// visible here, no device with the needed features).
    NoDevice,
    /// What the publisher sent cannot be imported (a missing or wrong fd,
    /// a handle of the wrong length, a kind or size the backend refuses).
    BadPeer,
    /// The application did not opt in to what the publisher needs (legacy
    /// CUDA IPC handles).
    NotAllowed,
    /// Anything else: a driver call failed, memory ran out.
    Failed,
}

/// A backend's error type: any error that says what it means.
pub trait BackendError: std::error::Error + Send + Sync + 'static {
    /// What this failure means to the caller.
    fn kind(&self) -> BackendErrorKind;
}

/// A backend failure as the engines report it (`ConnectError::Import`,
/// `CreateError::Backend`, `ChangeError::Backend`): the backend's name, the
/// portable kind, and the backend's own error for the message.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct BackendFailure {
    /// [`Api::NAME`] of the backend that failed.
    pub api: &'static str,
    /// What it means.
    pub kind: BackendErrorKind,
    /// The backend's error (or the engine's text for a broken contract).
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendFailure {
    /// Wraps an error of backend `B`.
    pub fn of<B: Api>(e: B::Error) -> Self {
        BackendFailure {
            api: B::NAME,
            kind: e.kind(),
            error: Box::new(e),
        }
    }

    /// Backend `B` broke the engine's contract (`text` says how).
    pub(crate) fn contract<B: Api>(text: String) -> Self {
        BackendFailure {
            api: B::NAME,
            kind: BackendErrorKind::Failed,
            error: text.into(),
        }
    }
}

/// The publisher's role: allocate frame slots and export them as fds or
/// handles (`docs/protocol.md` §3.6, §4.2).
pub trait Exporter: Api {
    /// The sync kind announced in the header and WELCOME.
    fn sync_kind(&self) -> SyncKind {
        SyncKind::HostFence
    }

    /// `slot` was claimed for the frame that will be committed as `seq`
    /// (if it is committed): a backend whose sync signals a value per frame
    /// (`VulkanTimeline`) signals `seq` when the frame's writes are done.
    /// Called before the writer gets the slot. Default: nothing.
    fn claimed(slot: &mut Self::Slot, seq: u64)
    where
        Self: Sized,
    {
        let _ = (slot, seq);
    }

    /// Allocates slot `index` of `size` bytes.
    fn allocate(&self, index: u32, size: u64) -> Result<Self::Slot, Self::Error>;

    /// An export of `slot`, made once and sent to every subscriber.
    fn export(&self, slot: &Self::Slot) -> Result<SlotExport, Self::Error>;
}

/// The subscriber's role: import the slots a publisher sent
/// (`docs/protocol.md` §6, W8–W10) and wait for the consumer's work on a
/// frame before its lease is returned.
pub trait Importer: Api {
    /// Whether this backend can import memory of `kind` (default: only
    /// its own [`Api::memory_kind`]).
    fn accepts(&self, kind: MemoryKind) -> bool {
        kind == self.memory_kind()
    }

    /// Called once with the publisher's description before the first
    /// [`Importer::import`]; a GPU backend picks its device by
    /// `peer.gpu_uuid` here. Default: nothing to do.
    fn attach(&mut self, peer: &Peer) -> Result<(), Self::Error> {
        let _ = peer;
        Ok(())
    }

    /// Called when a frame guard in `slot` (a [`Frame`] or an
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

    /// Imports one slot of `size` bytes from what a publisher sent in
    /// WELCOME.
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

    /// Imports one slot with its sync fd (sync kinds with
    /// [`SyncKind::fds_per_slot`] 1); what [`Subscriber::connect`] calls.
    /// The same validation duty as [`Importer::import`]. Default: the sync
    /// fd is closed and the slot imported with [`Importer::import`] — right
    /// for backends whose [`Importer::attach`] refuses such sync kinds.
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

/// A backend of both roles, as the host, CUDA and Vulkan backends are:
/// implemented for every type that is an [`Exporter`] and an [`Importer`].
/// Code that only publishes bounds on [`Exporter`], code that only
/// subscribes on [`Importer`].
pub trait Backend: Exporter + Importer {}

impl<T: Exporter + Importer> Backend for T {}
