//! The facade's one error type.

use crate::kind::BackendKind;
use cuframes_core::runtime::{
    ChangeError, ConnectError, CreateError, HostError, PacketError, PacketRecvError, RecvError,
};
use cuframes_core::{MemoryKind, SyncKind};

/// What can go wrong, for every operation of the facade. The engine's own
/// errors are kept whole (match on [`Error::Recv`]`(RecvError::Timeout(_))`
/// and the like).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting failed (no publisher, refused, protocol, import).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Receiving a frame failed (timeout, disconnected, ...).
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// Receiving a packet failed.
    #[error(transparent)]
    Packet(#[from] PacketRecvError),
    /// Creating a publisher failed.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// A stream change was refused.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// Publishing a packet failed.
    #[error(transparent)]
    PublishPacket(#[from] PacketError),
    /// Every slot is leased and the policy dropped the frame.
    #[error("every slot is leased: the frame was dropped")]
    Dropped,
    /// Writing a frame into a slot failed.
    #[error("writing the frame into its slot: {0}")]
    Write(String),
    /// The host backend failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The CUDA backend failed (driver missing, device, import, copy).
    #[cfg(feature = "cuda")]
    #[error(transparent)]
    Cuda(#[from] cuframes_cuda::CudaError),
    /// The Vulkan backend failed (loader or device missing, import, copy).
    #[cfg(feature = "vulkan")]
    #[error(transparent)]
    Vulkan(#[from] cuframes_vulkan::VulkanError),
    /// The backend asked for is not in this build.
    #[error("the {0} backend is not built into this cuframes (enable its cargo feature `{0}`)")]
    NotBuilt(BackendKind),
    /// No backend of this build imports what the publisher offers.
    #[error("no backend of this build imports {memory:?} memory with {sync:?} sync (build with the `cuda` or `vulkan` feature, or publish host memory)")]
    NoImporter {
        /// The publisher's memory kind.
        memory: MemoryKind,
        /// The publisher's sync kind.
        sync: SyncKind,
    },
    /// A backend name that is not `auto`, `host`, `cuda` or `vulkan`.
    #[error("unknown backend {0:?} (expected auto, host, cuda or vulkan)")]
    BadBackendName(String),
    /// A frame's data does not match its stream's layout.
    #[error("frame data of {got} bytes, the stream's packed frame is {need} bytes")]
    FrameSize {
        /// Bytes given.
        got: usize,
        /// Bytes the layout needs.
        need: usize,
    },
}

impl Error {
    /// Whether this is a receive that timed out (nothing arrived in time;
    /// also while reconnecting).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Recv(RecvError::Timeout(_)) | Error::Packet(PacketRecvError::Timeout(_))
        )
    }

    /// Whether the publisher is gone for good and everything it left was
    /// delivered.
    pub fn is_disconnected(&self) -> bool {
        matches!(
            self,
            Error::Recv(RecvError::Disconnected) | Error::Packet(PacketRecvError::Disconnected)
        )
    }
}
