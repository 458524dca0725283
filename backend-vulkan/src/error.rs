//! [`VulkanError`]: what can go wrong in this backend.

use ash::vk;
use cuframes_core::{MemoryKind, SyncKind};

/// A Vulkan backend error.
#[derive(Debug, thiserror::Error)]
pub enum VulkanError {
    /// No Vulkan loader (`libvulkan.so.1`) could be loaded.
    #[error("no Vulkan loader (libvulkan.so.1): {0}")]
    NoLoader(String),
    /// A Vulkan call failed: which one, and its `VkResult`.
    #[error("{call} failed: {result}")]
    Call {
        /// The Vulkan function.
        call: &'static str,
        /// What it returned.
        result: vk::Result,
    },
    /// No physical device offers what this backend needs (Vulkan 1.2, a
    /// queue with transfer and compute, `VK_KHR_external_memory_fd`).
    #[error("no usable Vulkan device: {0}")]
    NoDevice(String),
    /// No physical device has the UUID the publisher announced.
    #[error("no Vulkan device with the publisher's device UUID {0}")]
    NoSuchUuid(String),
    /// No memory type fits (device-local for slots, host-visible for staging).
    #[error("no Vulkan memory type for {0}")]
    NoMemoryType(&'static str),
    /// The driver needs a different allocation size than the one the
    /// protocol fixes for this slot size (`docs/protocol.md` §3.6).
    #[error("a buffer of {size} bytes needs {needs} bytes of memory here; the protocol's allocation is {size}")]
    AllocationSize {
        /// The allocation size of the protocol.
        size: u64,
        /// What the driver asks for.
        needs: u64,
    },
    /// The publisher sent no fd for a slot.
    #[error("slot arrived without its fd")]
    MissingFd,
    /// The publisher sent per-slot handle bytes where none belong.
    #[error("slot handle of {len} bytes; this memory/sync kind has none")]
    HandleLength {
        /// Bytes received.
        len: usize,
    },
    /// A slot fd that is a file (a software implementation's memfd) does
    /// not hold the slot's whole allocation, or may still shrink.
    #[error("slot fd refused: {0}")]
    BadFd(String),
    /// The publisher's memory kind cannot be imported by this backend.
    #[error("cannot import memory kind {0:?} with Vulkan")]
    Kind(MemoryKind),
    /// The publisher's sync kind is not supported.
    #[error("sync kind {0:?} is not supported by the Vulkan backend")]
    Sync(SyncKind),
    /// `import` before `attach` (a subscriber backend not yet connected).
    #[error("the subscriber backend has no device yet (not attached)")]
    NotAttached,
    /// A plane does not fit its slot, or the stream has no such plane.
    #[error("frame layout: {0}")]
    Layout(&'static str),
    /// The stream description does not fit the slot it is used with
    /// (`StreamDesc::validate`, `docs/protocol.md` §3.3).
    #[error("frame layout: {0}")]
    Stream(#[from] cuframes_core::layout::StreamError),
    /// The publisher's timeline semaphore did not reach the frame's value
    /// in time.
    #[error("the publisher's timeline semaphore is at {reached}, frame {value} not done in time")]
    SyncTimeout {
        /// The value waited for (the frame's `seq`).
        value: u64,
        /// The value it had.
        reached: u64,
    },
    /// A host buffer given to a copy is too short.
    #[error("host buffer of {len} bytes, {need} needed")]
    HostBuffer {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
}

impl cuframes_core::runtime::BackendError for VulkanError {
    fn kind(&self) -> cuframes_core::runtime::BackendErrorKind {
        use cuframes_core::runtime::BackendErrorKind as K;
        match self {
            VulkanError::NoLoader(_) => K::Unavailable,
            VulkanError::NoDevice(_)
            | VulkanError::NoSuchUuid(_)
            | VulkanError::NoMemoryType(_) => K::NoDevice,
            VulkanError::MissingFd
            | VulkanError::HandleLength { .. }
            | VulkanError::BadFd(_)
            | VulkanError::Kind(_)
            | VulkanError::Sync(_)
            | VulkanError::AllocationSize { .. } => K::BadPeer,
            _ => K::Failed,
        }
    }
}

impl VulkanError {
    pub(crate) fn call(call: &'static str) -> impl FnOnce(vk::Result) -> VulkanError {
        move |result| VulkanError::Call { call, result }
    }
}

/// A 16-byte UUID as `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (the form
/// `nvidia-smi -L` prints; NVIDIA's Vulkan `deviceUUID` is the CUDA UUID).
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
