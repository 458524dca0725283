//! cuframes-vulkan: the Vulkan backend of cuframes (experimental;
//! `docs/vulkan.md`, `docs/protocol.md` §3.6).
//!
//! - Memory kind `VulkanOpaqueFd`: each slot is a linear `VkBuffer` over a
//!   dedicated, device-local allocation of
//!   [`MemoryKind::gpu_allocation_size`] bytes, exported with
//!   `VK_KHR_external_memory_fd` as an opaque fd (sent with SCM_RIGHTS) and
//!   imported by subscribers on the device of the same `deviceUUID`.
//! - Sync kind `HostFence` (default): the publisher waits for its upload (a
//!   fence) before it commits the frame; subscribers read committed frames
//!   without waiting on anything. Sync kind `VulkanTimeline`
//!   ([`VulkanSync::Timeline`], where `VK_KHR_external_semaphore_fd`
//!   exists): per-slot timeline semaphores exported as opaque fds; the
//!   publisher commits once its upload is submitted, and subscribers wait
//!   for the slot's semaphore to reach the frame's `seq`.
//! - Across APIs: a Vulkan subscriber imports the frames of a CUDA
//!   (`CudaVmmFd`) publisher; `cuframes-cuda` imports the frames of a Vulkan
//!   publisher (`cuImportExternalMemory`). NVIDIA's `deviceUUID` is the CUDA
//!   device UUID.
//! - Frames reach consumers through [`VulkanFrameExt`]: the slot's
//!   `VkBuffer`, each plane's offset and pitch, a copy to host memory.
//!
//! The loader is opened at run time (ash `loaded`): this crate builds and
//! its CPU tests run without Vulkan, and a machine without a loader or a
//! device gets an error, never a panic.
//!
//! [`MemoryKind::gpu_allocation_size`]: cuframes_core::MemoryKind::gpu_allocation_size
#![deny(unsafe_code)]

mod backend;
mod error;
mod frame;
mod loader;
mod slot;
mod vk;

pub use ash;
pub use backend::{VulkanBackend, VulkanConfig, VulkanSync, MAX_TIMELINE_SLOTS};
pub use error::{uuid_string, VulkanError};
pub use frame::VulkanFrameExt;
pub use loader::{probe, Probe, ProbeError};
pub use slot::{BufferPlane, VulkanImported, VulkanSlot};
pub use vk::{devices, DeviceInfo, DeviceSelect, QueueAccess};

/// An opened Vulkan device of this backend (shared by the backend, its
/// slots and imports).
#[derive(Debug, Clone)]
pub struct VulkanDevice(pub(crate) std::sync::Arc<vk::Gpu>);

impl VulkanDevice {
    /// What the device is: name, UUIDs, extensions.
    pub fn info(&self) -> &DeviceInfo {
        self.0.info()
    }

    /// Runs `f` with the instance, device, queue family and queue, the
    /// queue locked for the closure's duration (this backend submits its own
    /// copies on the same queue). Work that reads a frame must be submitted
    /// here: releasing the frame waits for this queue (`vkQueueWaitIdle`).
    /// Do not drop a frame or call `copy_to_host` inside `f`: both take the
    /// same lock, which is not reentrant (a deadlock).
    pub fn with_queue<R>(&self, f: impl FnOnce(QueueAccess<'_>) -> R) -> R {
        self.0.with_queue(f)
    }
}
