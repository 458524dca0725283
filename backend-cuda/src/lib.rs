//! cuframes-cuda: the CUDA backend of cuframes (`docs/protocol.md` §3.6,
//! `docs/gpu.md`).
//!
//! - Memory kinds: [`CudaMemory::VmmFd`] (default: `cuMemCreate` with POSIX
//!   fd handles, fds sent with SCM_RIGHTS, imported with
//!   `cuMemImportFromShareableHandle` + `cuMemMap` + `cuMemSetAccess`; works
//!   across containers and PID namespaces) and [`CudaMemory::LegacyIpc`]
//!   (`cuIpcGetMemHandle` / `cuIpcOpenMemHandle`).
//! - Sync kinds: [`CudaSync::HostFence`] (default: the publisher waits for its
//!   copy before committing) and [`CudaSync::IpcEvent`] (per-slot
//!   interprocess events the subscriber waits on in its own stream).
//! - Subscribers find their device by the publisher's GPU UUID, or work on
//!   another GPU ([`CudaBackend::subscriber_with`]): the slots peer-mapped
//!   for it ([`CrossGpu::PeerMap`]) or each frame copied to it
//!   ([`CrossGpu::Copy`], [`CudaFrameExt::copy_into`]); `docs/gpu.md`,
//!   "Multi-GPU hosts".
//! - A subscriber also imports the frames of a Vulkan publisher
//!   (`VulkanOpaqueFd`, `cuframes-vulkan`): each slot's opaque fd with
//!   `cuImportExternalMemory` as a dedicated allocation of the protocol's
//!   size (`docs/protocol.md` §3.6), mapped with
//!   `cuExternalMemoryGetMappedBuffer`; `HostFence` sync only.
//! - Frames reach consumers through [`CudaFrameExt`]: device pointers and
//!   pitches, `wait_in(stream)`, `release_after(stream)`.
//!
//! The driver is loaded at run time (cudarc `dynamic-loading`): this crate
//! builds and its CPU tests run without CUDA, and a machine without a driver
//! gets [`CudaError::DriverMissing`], never a panic.
#![deny(unsafe_code)]

mod backend;
mod device;
mod driver;
mod error;
mod frame;
mod slot;

pub use backend::{CrossGpu, CudaBackend, CudaConfig, CudaMemory, CudaSync, SubscriberConfig};
pub use device::{CudaDevice, CudaStream, DeviceSelect, DeviceSelectError, MemoryInfo};
pub use driver::{driver_present, RawStream};
pub use error::{uuid_string, CudaError, DriverError};
pub use frame::{CudaFrameCopy, CudaFrameExt, DevicePlane};
pub use slot::{CudaImported, CudaSlot, FrameAccess};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        if driver_present() {
            eprintln!("skipped: a CUDA driver is present (the GPU tests cover this machine)");
            return;
        }
        assert!(matches!(
            CudaBackend::publisher(CudaConfig::default()),
            Err(CudaError::DriverMissing)
        ));
        assert!(matches!(
            CudaBackend::subscriber(),
            Err(CudaError::DriverMissing)
        ));
        assert!(matches!(CudaDevice::open(0), Err(CudaError::DriverMissing)));
    }

    #[test]
    fn uuids_print_like_nvidia_smi() {
        let u = [
            0x5e, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f, 0x60, 0x71, 0x82, 0x93, 0xa4, 0xb5, 0xc6, 0xd7,
            0xe8, 0xf9,
        ];
        assert_eq!(uuid_string(&u), "GPU-5e1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9");
    }
}
