//! cuframes-vulkan: the experimental Vulkan backend (skeleton).
//!
//! Planned: slots as `VkDeviceMemory` exported with
//! `VK_KHR_external_memory_fd` (opaque fds sent with SCM_RIGHTS), timeline
//! semaphores exported as fds, import into Vulkan and into CUDA
//! (`cuImportExternalMemory`). What exists now: a loader probe that reports
//! whether a Vulkan loader and the instance extension this backend needs are
//! present, without panicking when they are not.
#![deny(unsafe_code)]

mod loader;

pub use loader::{probe, Probe, ProbeError};
