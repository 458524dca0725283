//! Frames as a Vulkan consumer sees them: the slot's `VkBuffer`, each
//! plane's offset and pitch, and a copy to host memory.
//!
//! ```no_run
//! use cuframes_core::runtime::{SubscribeOptions, Subscriber};
//! use cuframes_core::DeliveryMode;
//! use cuframes_vulkan::{VulkanBackend, VulkanFrameExt};
//! use std::time::Duration;
//!
//! let sub = Subscriber::connect(
//!     "cam1",
//!     VulkanBackend::subscriber()?,
//!     SubscribeOptions::new(DeliveryMode::NewestOnly),
//! )?;
//! let frame = sub.next_frame(Duration::from_secs(1))?;
//! let y = frame.buffer_plane(0)?; // NV12 luma: y.offset, y.pitch bytes per row
//! let buffer = frame.buffer(); // bind as a storage buffer in your own pipeline
//! // VulkanTimeline sync: wait for this (semaphore, value) in your submission.
//! let _wait = frame.wait_semaphore();
//! // ... submit work reading `buffer` through the device's `with_queue` ...
//! drop(frame); // waits for the queue, then returns the lease
//! # let _ = (y, buffer);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::slot::{buffer_plane, BufferPlane};
use crate::{VulkanBackend, VulkanDevice, VulkanError};
use ash::vk;
use cuframes_core::runtime::{Frame, OwnedFrame};

/// Vulkan access to a leased [`Frame`] or [`OwnedFrame`] of a
/// [`VulkanBackend`] subscriber.
pub trait VulkanFrameExt {
    /// The slot's buffer, holding the frame's planes.
    fn buffer(&self) -> vk::Buffer;

    /// Plane `i` (NV12 / P010: 0 = Y, 1 = interleaved CbCr) in the buffer.
    fn buffer_plane(&self, i: usize) -> Result<BufferPlane, VulkanError>;

    /// The device the buffer lives on.
    fn device(&self) -> VulkanDevice;

    /// Copies the frame to host memory as FFmpeg's packed rawvideo layout
    /// (planes in order, rows without pitch padding), e.g. to hash it
    /// (after the publisher's timeline semaphore, if any).
    fn copy_to_host(&self, out: &mut Vec<u8>) -> Result<(), VulkanError>;

    /// `VulkanTimeline` sync: the semaphore and the value (the frame's
    /// `seq`) to wait for in a queue submission before reading the frame;
    /// `None` under `HostFence` (the frame is complete when received).
    fn wait_semaphore(&self) -> Option<(vk::Semaphore, u64)>;

    /// Blocks until the publisher's writes of the frame are done, at most
    /// `timeout` (at once under `HostFence`).
    fn wait_host(&self, timeout: std::time::Duration) -> Result<(), VulkanError>;
}

macro_rules! vulkan_frame_methods {
    () => {
        fn buffer(&self) -> vk::Buffer {
            self.memory().buffer()
        }

        fn buffer_plane(&self, i: usize) -> Result<BufferPlane, VulkanError> {
            buffer_plane(self.stream(), i, self.memory().size())
        }

        fn device(&self) -> VulkanDevice {
            self.memory().device()
        }

        fn copy_to_host(&self, out: &mut Vec<u8>) -> Result<(), VulkanError> {
            self.memory()
                .copy_to_host(self.stream(), self.meta().seq, out)
        }

        fn wait_semaphore(&self) -> Option<(vk::Semaphore, u64)> {
            self.memory().semaphore().map(|s| (s, self.meta().seq))
        }

        fn wait_host(&self, timeout: std::time::Duration) -> Result<(), VulkanError> {
            let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
            self.memory().wait_host(self.meta().seq, ns)
        }
    };
}

impl VulkanFrameExt for Frame<'_, VulkanBackend> {
    vulkan_frame_methods!();
}

impl VulkanFrameExt for OwnedFrame<VulkanBackend> {
    vulkan_frame_methods!();
}
