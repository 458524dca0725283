//! Memory and sync kinds named in the header and WELCOME (`docs/protocol.md` §3.6).

/// Alignment of the device allocation behind each slot of the GPU fd kinds
/// (`CudaVmmFd`, `VulkanOpaqueFd`): 2 MiB ([`MemoryKind::gpu_allocation_size`]).
pub const GPU_ALLOCATION_ALIGN: u64 = 2 << 20;

/// Where the frame allocations live and how their handles travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    /// Host memory: one sealed memfd per slot, sent with SCM_RIGHTS.
    HostMemfd,
    /// CUDA VMM allocation (`cuMemCreate`) exported as a POSIX fd.
    CudaVmmFd,
    /// Legacy CUDA IPC handle (`cuIpcGetMemHandle`), 64 bytes per slot in WELCOME.
    CudaLegacyIpc,
    /// Vulkan `VkDeviceMemory` exported as an opaque fd.
    VulkanOpaqueFd,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl MemoryKind {
    /// Wire code.
    pub const fn code(self) -> u32 {
        match self {
            MemoryKind::HostMemfd => 1,
            MemoryKind::CudaVmmFd => 2,
            MemoryKind::CudaLegacyIpc => 3,
            MemoryKind::VulkanOpaqueFd => 4,
            MemoryKind::Unknown(c) => c,
        }
    }

    /// Kind of a wire code; never fails.
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => MemoryKind::HostMemfd,
            2 => MemoryKind::CudaVmmFd,
            3 => MemoryKind::CudaLegacyIpc,
            4 => MemoryKind::VulkanOpaqueFd,
            c => MemoryKind::Unknown(c),
        }
    }

    /// Whether each slot's handle is a file descriptor (sent with SCM_RIGHTS).
    pub const fn uses_fds(self) -> bool {
        matches!(
            self,
            MemoryKind::HostMemfd | MemoryKind::CudaVmmFd | MemoryKind::VulkanOpaqueFd
        )
    }

    /// Bytes of the device allocation behind each slot of `slot_size`
    /// bytes under a GPU fd kind (`docs/protocol.md` §3.6): `slot_size`
    /// (at least 1) rounded up to [`GPU_ALLOCATION_ALIGN`]. Exporter and
    /// importer must agree on it without asking each other: a Vulkan
    /// opaque-fd import of any other size is undefined behaviour, and CUDA
    /// needs the size to import. `CudaVmmFd` rounds to the device's VMM
    /// granularity, which is this value on NVIDIA GPUs (2 MiB). `None` for
    /// the other kinds and on overflow.
    pub const fn gpu_allocation_size(self, slot_size: u64) -> Option<u64> {
        match self {
            MemoryKind::CudaVmmFd | MemoryKind::VulkanOpaqueFd => {
                let s = if slot_size == 0 { 1 } else { slot_size };
                match s.checked_add(GPU_ALLOCATION_ALIGN - 1) {
                    Some(n) => Some(n / GPU_ALLOCATION_ALIGN * GPU_ALLOCATION_ALIGN),
                    None => None,
                }
            }
            _ => None,
        }
    }

    /// Bytes of each slot's handle in WELCOME with sync kind `sync`
    /// (`docs/protocol.md` §3.6, W3): the memory handle (none for fd kinds, a
    /// 64-byte `CUipcMemHandle` for `CudaLegacyIpc`), then a 64-byte
    /// `CUipcEventHandle` under `IpcEvent`. `None` for unknown kinds.
    pub const fn handle_len(self, sync: SyncKind) -> Option<u32> {
        let memory = match self {
            MemoryKind::CudaLegacyIpc => 64,
            MemoryKind::Unknown(_) => return None,
            _ => 0,
        };
        let event = match sync {
            SyncKind::IpcEvent => 64,
            _ => 0,
        };
        Some(memory + event)
    }
}

/// How a subscriber knows a frame's GPU work is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncKind {
    /// The publisher finished all work before committing the sequence number.
    HostFence,
    /// Per-slot interprocess CUDA events; the subscriber waits on its stream.
    IpcEvent,
    /// Per-slot Vulkan timeline semaphores exported as opaque fds (one more
    /// fd per slot in WELCOME); the publisher signals a slot's semaphore to
    /// the frame's `seq` when its writes are done, and the subscriber waits
    /// for that value before reading (`docs/protocol.md` §3.6).
    VulkanTimeline,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl SyncKind {
    /// Wire code.
    pub const fn code(self) -> u32 {
        match self {
            SyncKind::HostFence => 1,
            SyncKind::IpcEvent => 2,
            SyncKind::VulkanTimeline => 3,
            SyncKind::Unknown(c) => c,
        }
    }

    /// Fds per slot this sync kind adds to WELCOME, after the slot's memory
    /// fd (`docs/protocol.md` §4.3): 1 for `VulkanTimeline`, else 0.
    pub const fn fds_per_slot(self) -> u32 {
        match self {
            SyncKind::VulkanTimeline => 1,
            _ => 0,
        }
    }

    /// Kind of a wire code; never fails.
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => SyncKind::HostFence,
            2 => SyncKind::IpcEvent,
            3 => SyncKind::VulkanTimeline,
            c => SyncKind::Unknown(c),
        }
    }
}

/// How a subscriber walks the ring (`docs/protocol.md` §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Always the newest committed frame; older ones are skipped and counted.
    NewestOnly,
    /// Every frame in sequence; frames overwritten before they were read are
    /// reported as drops, never skipped silently.
    InOrder,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl DeliveryMode {
    /// Wire code.
    pub const fn code(self) -> u32 {
        match self {
            DeliveryMode::NewestOnly => 1,
            DeliveryMode::InOrder => 2,
            DeliveryMode::Unknown(c) => c,
        }
    }

    /// Mode of a wire code; never fails.
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => DeliveryMode::NewestOnly,
            2 => DeliveryMode::InOrder,
            c => DeliveryMode::Unknown(c),
        }
    }
}

/// What the publisher does when no slot may be rewritten (`docs/protocol.md` §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishPolicy {
    /// Never block: overwrite frames InOrder subscribers have not read yet,
    /// and drop the new frame (counted) when every slot is leased.
    DropFrame,
    /// Block, up to a timeout, until a slot is neither leased nor unread by a
    /// live InOrder subscriber: lossless delivery for InOrder subscribers that
    /// keep up within the timeout.
    Wait,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_allocations_round_up_to_2_mib() {
        let k = MemoryKind::VulkanOpaqueFd;
        assert_eq!(k.gpu_allocation_size(0), Some(2 << 20));
        assert_eq!(k.gpu_allocation_size(1), Some(2 << 20));
        assert_eq!(k.gpu_allocation_size(2 << 20), Some(2 << 20));
        // 1280x720 NV12.
        assert_eq!(k.gpu_allocation_size(1_382_400), Some(2 << 20));
        // 3840x2160 NV12: 12,441,600 bytes, 6 granules.
        assert_eq!(k.gpu_allocation_size(12_441_600), Some(12 << 20));
        assert_eq!(
            MemoryKind::CudaVmmFd.gpu_allocation_size(3 << 20),
            Some(4 << 20)
        );
        assert_eq!(k.gpu_allocation_size(u64::MAX), None);
        assert_eq!(MemoryKind::HostMemfd.gpu_allocation_size(4096), None);
        assert_eq!(MemoryKind::CudaLegacyIpc.gpu_allocation_size(4096), None);
    }
}
