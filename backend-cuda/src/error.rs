//! The backend's errors.

pub use crate::driver::DriverError;
use cuframes_core::runtime::BackendErrorKind;

/// What can go wrong in the CUDA backend.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// `libcuda.so` could not be loaded (no NVIDIA driver on this machine).
    #[error("the NVIDIA driver (libcuda.so.1) is not available on this machine")]
    DriverMissing,
    /// A CUDA driver call failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// No device with this ordinal.
    #[error("no CUDA device {ordinal}: this process sees {count}")]
    NoDevice {
        /// Asked-for ordinal.
        ordinal: u32,
        /// Devices visible (after `CUDA_VISIBLE_DEVICES`).
        count: i32,
    },
    /// The publisher's GPU is not visible to this process.
    #[error("the publisher's GPU {} is not visible here (check CUDA_VISIBLE_DEVICES / the container's devices)", uuid_string(.0))]
    UuidNotFound([u8; 16]),
    /// A subscriber backend was used before the handshake attached it.
    #[error("the subscriber backend has no device yet (import before attach)")]
    NotAttached,
    /// The publisher sent no fd for a VMM slot.
    #[error("a CudaVmmFd slot arrived without its file descriptor")]
    MissingFd,
    /// A slot's handle bytes have the wrong length for its kinds.
    #[error("slot handle of {len} bytes, expected {expected} for this memory and sync kind")]
    HandleLength {
        /// Received.
        len: usize,
        /// Expected.
        expected: usize,
    },
    /// The publisher shares memory of a kind this backend does not import.
    #[error("memory kind {0:?} is not a CUDA kind")]
    Kind(cuframes_core::MemoryKind),
    /// The publisher shares legacy CUDA IPC handles (`CudaLegacyIpc` memory
    /// or `IpcEvent` sync), which cannot be validated, and this subscriber
    /// backend was not told to trust them ([`crate::CudaBackend::allow_legacy_ipc`]).
    #[error("the publisher shares legacy CUDA IPC handles ({memory:?} memory, {sync:?} sync), which cannot be validated; importing them means trusting the publisher (CudaBackend::allow_legacy_ipc, cuframes-subscribe --allow-legacy-ipc)")]
    LegacyIpcNotAllowed {
        /// The publisher's memory kind.
        memory: cuframes_core::MemoryKind,
        /// The publisher's sync kind.
        sync: cuframes_core::SyncKind,
    },
    /// A subscriber on another GPU than its publisher's cannot take the
    /// frames in the way asked for (`CrossGpu`, `docs/gpu.md`).
    #[error("the publisher's frames are on GPU {publisher}, this subscriber works on GPU {subscriber}: {reason}")]
    CrossGpu {
        /// The publisher's GPU (ordinal here).
        publisher: u32,
        /// The subscriber's GPU (ordinal here).
        subscriber: u32,
        /// Why not.
        reason: &'static str,
    },
    /// A frame does not fit its slot or plane layout.
    #[error("{0}")]
    Layout(&'static str),
    /// The stream description does not fit the slot or buffer it is used
    /// with (`StreamDesc::validate`, `docs/protocol.md` §3.3).
    #[error("frame layout: {0}")]
    Stream(#[from] cuframes_core::layout::StreamError),
}

impl cuframes_core::runtime::BackendError for CudaError {
    fn kind(&self) -> BackendErrorKind {
        match self {
            CudaError::DriverMissing => BackendErrorKind::Unavailable,
            CudaError::NoDevice { .. }
            | CudaError::UuidNotFound(_)
            | CudaError::CrossGpu { .. } => BackendErrorKind::NoDevice,
            CudaError::MissingFd | CudaError::HandleLength { .. } | CudaError::Kind(_) => {
                BackendErrorKind::BadPeer
            }
            CudaError::LegacyIpcNotAllowed { .. } => BackendErrorKind::NotAllowed,
            CudaError::Driver(_)
            | CudaError::NotAttached
            | CudaError::Layout(_)
            | CudaError::Stream(_) => BackendErrorKind::Failed,
        }
    }
}

/// A GPU UUID as `nvidia-smi -L` prints it: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
