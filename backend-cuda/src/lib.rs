//! cuframes-cuda: the CUDA backend (skeleton).
//!
//! What exists now: the configuration types of the backend and a driver probe
//! that never panics on machines without CUDA. What comes with the GPU issue:
//! slots allocated with `cuMemCreate` and exported as POSIX fds
//! ([`CudaMemory::VmmFd`], the default) or as `cuIpcGetMemHandle` handles
//! ([`CudaMemory::LegacyIpc`]), `HostFence` / `IpcEvent` sync, and frames
//! handed to consumers as device pointers behind a releasing guard.
//! Until then [`CudaBackend::new`] returns [`CudaError::Unimplemented`] on a
//! machine with a driver, and [`CudaError::DriverMissing`] without one.
#![deny(unsafe_code)]

mod driver;

pub use driver::driver_present;

/// How slot memory is allocated and shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CudaMemory {
    /// `cuMemCreate` with `CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR`; fds sent
    /// with SCM_RIGHTS; imported with `cuMemImportFromShareableHandle`. Needs
    /// only the socket between containers.
    #[default]
    VmmFd,
    /// `cuIpcGetMemHandle` / `cuIpcOpenMemHandle`; needs a shared PID namespace.
    LegacyIpc,
}

/// How subscribers learn that a frame's GPU work is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CudaSync {
    /// The publisher synchronises before committing the frame.
    #[default]
    HostFence,
    /// Per-slot interprocess events the subscriber waits on in its stream.
    IpcEvent,
}

/// CUDA backend settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaConfig {
    /// Memory kind.
    pub memory: CudaMemory,
    /// Sync kind.
    pub sync: CudaSync,
    /// Publisher: CUDA device ordinal. Subscribers pick their device by the
    /// publisher's GPU UUID instead.
    pub device: u32,
}

/// What can go wrong in the CUDA backend.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// `libcuda.so` could not be loaded (no NVIDIA driver on this machine).
    #[error("the NVIDIA driver (libcuda.so.1) is not available on this machine")]
    DriverMissing,
    /// This build does not implement the CUDA backend yet.
    #[error("the CUDA backend is not implemented in this build: {0}")]
    Unimplemented(&'static str),
}

/// The CUDA backend.
#[derive(Debug)]
pub struct CudaBackend {
    _config: CudaConfig,
}

impl CudaBackend {
    /// Opens the backend for `config`.
    ///
    /// Errors: [`CudaError::DriverMissing`] without a driver;
    /// [`CudaError::Unimplemented`] otherwise, until the GPU issue lands.
    pub fn new(config: CudaConfig) -> Result<Self, CudaError> {
        if !driver_present() {
            return Err(CudaError::DriverMissing);
        }
        let _ = config;
        Err(CudaError::Unimplemented(
            "slot allocation and export arrive with the GPU issue",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_reports_what_is_missing_instead_of_panicking() {
        let err = CudaBackend::new(CudaConfig::default()).unwrap_err();
        if driver_present() {
            assert!(matches!(err, CudaError::Unimplemented(_)));
        } else {
            assert!(matches!(err, CudaError::DriverMissing));
        }
    }
}
