//! [`VulkanBackend`]: the core `Backend` trait over Vulkan external memory
//! (`docs/protocol.md` §3.6, `docs/vulkan.md`).
//!
//! Per slot, WELCOME carries one opaque fd (SCM_RIGHTS) and no handle
//! bytes, then under `VulkanTimeline` the slot's timeline semaphore fd.
//! `HostFence`: the publisher's upload is complete (fence waited) before it
//! commits the frame; `VulkanTimeline`: the upload signals the slot's
//! semaphore to the frame's `seq`, and subscribers wait for that value.

use crate::slot::{VulkanImported, VulkanSlot};
use crate::vk::{DeviceSelect, Gpu, ImportAs, Semaphore, SharedBuffer};
use crate::{VulkanDevice, VulkanError};
use cuframes_core::runtime::{Api, Exporter, Importer, Peer, SlotExport};
use cuframes_core::{MemoryKind, SyncKind};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, SealFlags};
use std::sync::Arc;

/// How subscribers learn that a frame's writes are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VulkanSync {
    /// The publisher waits for its upload (a fence) before committing.
    #[default]
    HostFence,
    /// Per-slot timeline semaphores exported as opaque fds: the publisher
    /// commits as soon as the upload is submitted, which signals the slot's
    /// semaphore to the frame's `seq`; subscribers wait for that value.
    /// Needs `VK_KHR_external_semaphore_fd` (NVIDIA; not lavapipe) and at
    /// most 32 slots (WELCOME carries two fds per slot, 72 at most).
    Timeline,
}

/// Vulkan backend settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VulkanConfig {
    /// Publisher: which device holds the slots. Subscribers open the device
    /// whose UUID the publisher announces instead.
    pub device: DeviceSelect,
    /// Publisher: the sync kind. Subscribers follow the publisher's.
    pub sync: VulkanSync,
}

/// Most slots of a `VulkanTimeline` ring: 1 + 2 × 32 + 1 fds in WELCOME,
/// within the 72 a receiver sizes for (`docs/protocol.md` §4.1).
pub const MAX_TIMELINE_SLOTS: u32 = 32;

/// The Vulkan backend: publishers allocate slots as exportable device
/// memory, subscribers import them on the device of the same UUID.
///
/// A subscriber imports `VulkanOpaqueFd` publishers (dedicated
/// allocations) and `CudaVmmFd` publishers (a CUDA VMM allocation's POSIX
/// fd is an opaque fd to NVIDIA's Vulkan driver), both with `HostFence` sync.
#[derive(Debug)]
pub struct VulkanBackend {
    gpu: Option<Arc<Gpu>>,
    /// Subscriber: the publisher's memory kind (decides how to import).
    peer_kind: MemoryKind,
    /// The sync kind: the publisher's choice, a subscriber's peer's.
    sync: SyncKind,
}

impl VulkanBackend {
    /// A publisher's backend on the device `config.device` names.
    ///
    /// Errors: [`VulkanError::NoLoader`] without `libvulkan.so.1` (never a
    /// panic), [`VulkanError::NoDevice`] when no device has
    /// `VK_KHR_external_memory_fd`, Vulkan call failures.
    pub fn publisher(config: VulkanConfig) -> Result<Self, VulkanError> {
        let gpu = Gpu::open(config.device)?;
        let sync = match config.sync {
            VulkanSync::HostFence => SyncKind::HostFence,
            VulkanSync::Timeline if gpu.info().timeline_fd => SyncKind::VulkanTimeline,
            VulkanSync::Timeline => {
                return Err(VulkanError::NoDevice(format!(
                "{} has no timeline semaphores exportable as fds (VK_KHR_external_semaphore_fd)",
                gpu.info().name
            )))
            }
        };
        Ok(VulkanBackend {
            gpu: Some(gpu),
            peer_kind: MemoryKind::VulkanOpaqueFd,
            sync,
        })
    }

    /// A subscriber's backend: it opens the device whose `deviceUUID` the
    /// publisher announces when it connects.
    ///
    /// Errors: [`VulkanError::NoLoader`] without `libvulkan.so.1`.
    pub fn subscriber() -> Result<Self, VulkanError> {
        crate::probe().map_err(|e| VulkanError::NoLoader(e.to_string()))?;
        Ok(VulkanBackend {
            gpu: None,
            peer_kind: MemoryKind::VulkanOpaqueFd,
            sync: SyncKind::HostFence,
        })
    }

    /// The device (a subscriber's only after connecting).
    pub fn device(&self) -> Option<VulkanDevice> {
        self.gpu.clone().map(VulkanDevice)
    }

    fn gpu(&self) -> Result<&Arc<Gpu>, VulkanError> {
        self.gpu.as_ref().ok_or(VulkanError::NotAttached)
    }

    fn allocation_size(kind: MemoryKind, slot_size: u64) -> Result<u64, VulkanError> {
        kind.gpu_allocation_size(slot_size)
            .ok_or(VulkanError::Layout("slot size overflows its allocation"))
    }
}

/// Checks a received slot fd that is a file: a software implementation
/// (lavapipe) exports memfds, which the CPU maps. It must hold at least the whole
/// allocation and be sealed against shrinking, or a hostile publisher
/// could make this process fault (SIGBUS) reading a frame. Fds of a GPU
/// driver (a device node, an anonymous inode) are validated by the driver
/// on import.
fn check_fd(fd: BorrowedFd<'_>, alloc: u64) -> Result<FdKind, VulkanError> {
    let st = rustix::fs::fstat(fd).map_err(|e| VulkanError::BadFd(format!("fstat: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(FdKind::Driver);
    }
    // At least the allocation: lavapipe's memfds carry a few KiB of its own.
    if (st.st_size as u64) < alloc {
        return Err(VulkanError::BadFd(format!(
            "a file of {} bytes, the slot's allocation is {alloc}",
            st.st_size
        )));
    }
    let seals = rustix::fs::fcntl_get_seals(fd)
        .map_err(|e| VulkanError::BadFd(format!("a file without seals ({e})")))?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(VulkanError::BadFd(
            "a file not sealed against shrinking (F_SEAL_SHRINK)".into(),
        ));
    }
    Ok(FdKind::File)
}

/// What [`check_fd`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdKind {
    /// A GPU driver's handle: imported as received.
    Driver,
    /// A file (lavapipe's memfd).
    File,
}

/// The same file opened again (`/proc/self/fd/N`): a new open file
/// description with its own file offset. Every subscriber receives the
/// publisher's memfd as a duplicate of one open file description, and
/// lavapipe's import reads the memory's header with `lseek` + `read` on it
/// (Mesa's `os_import_memory_fd`): subscribers importing at the same moment
/// (all of them re-import at a stream change) moved each other's offset and
/// one import failed with `ERROR_INVALID_EXTERNAL_HANDLE` (seen once in CI).
/// Seals belong to the file, so the checks above still hold.
fn own_description(fd: &OwnedFd) -> Result<OwnedFd, VulkanError> {
    use rustix::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| VulkanError::BadFd(format!("reopening the slot's memfd through {path}: {e}")))
}

/// Publisher: seals an exported fd that is a memfd against resizing, so
/// that subscribers accept it (`check_fd`). GPU driver fds are left alone.
fn seal_exported(fd: BorrowedFd<'_>) -> Result<(), VulkanError> {
    let st = rustix::fs::fstat(fd).map_err(|e| VulkanError::BadFd(format!("fstat: {e}")))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Ok(());
    }
    let seals = rustix::fs::fcntl_get_seals(fd).unwrap_or(SealFlags::empty());
    if seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Ok(());
    }
    rustix::fs::fcntl_add_seals(fd, SealFlags::SHRINK | SealFlags::GROW).map_err(|e| {
        VulkanError::BadFd(format!(
            "the driver exports memfds that cannot be sealed against resizing ({e})"
        ))
    })
}

impl Api for VulkanBackend {
    type Slot = VulkanSlot;
    type Imported = VulkanImported;
    type Error = VulkanError;
    const NAME: &'static str = "vulkan";

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::VulkanOpaqueFd
    }

    fn gpu_uuid(&self) -> [u8; 16] {
        self.gpu.as_ref().map_or([0; 16], |g| g.info().device_uuid)
    }
}

impl Exporter for VulkanBackend {
    fn sync_kind(&self) -> SyncKind {
        self.sync
    }

    fn allocate(&self, index: u32, size: u64) -> Result<VulkanSlot, VulkanError> {
        let alloc = Self::allocation_size(MemoryKind::VulkanOpaqueFd, size)?;
        let gpu = self.gpu()?;
        let sem = match self.sync {
            SyncKind::VulkanTimeline if index >= MAX_TIMELINE_SLOTS => {
                return Err(VulkanError::Layout(
                    "at most 32 slots with timeline semaphores (two fds per slot in WELCOME)",
                ))
            }
            SyncKind::VulkanTimeline => Some(Semaphore::exportable(gpu)?),
            _ => None,
        };
        Ok(VulkanSlot {
            buf: SharedBuffer::exportable(gpu, alloc)?,
            sem,
            next_value: 0,
            signaled: 0,
        })
    }

    fn export(&self, slot: &VulkanSlot) -> Result<SlotExport, VulkanError> {
        let fd = slot.buf.export_fd()?;
        seal_exported(fd.as_fd())?;
        let sync_fd = slot.sem.as_ref().map(Semaphore::export_fd).transpose()?;
        Ok(SlotExport {
            fd: Some(fd),
            handle: Vec::new(),
            sync_fd,
        })
    }

    fn claimed(slot: &mut VulkanSlot, seq: u64) {
        slot.next_value = seq;
    }
}

impl Importer for VulkanBackend {
    fn accepts(&self, kind: MemoryKind) -> bool {
        matches!(kind, MemoryKind::VulkanOpaqueFd | MemoryKind::CudaVmmFd)
    }

    fn attach(&mut self, peer: &Peer) -> Result<(), VulkanError> {
        if !self.accepts(peer.memory_kind) {
            return Err(VulkanError::Kind(peer.memory_kind));
        }
        match (peer.memory_kind, peer.sync_kind) {
            (_, SyncKind::HostFence) | (MemoryKind::VulkanOpaqueFd, SyncKind::VulkanTimeline) => {}
            (_, s) => return Err(VulkanError::Sync(s)),
        }
        let gpu = Gpu::open(DeviceSelect::Uuid(peer.gpu_uuid))?;
        if peer.sync_kind == SyncKind::VulkanTimeline && !gpu.info().timeline_fd {
            return Err(VulkanError::NoDevice(format!(
                "the publisher uses timeline semaphores; {} cannot import them",
                gpu.info().name
            )));
        }
        self.peer_kind = peer.memory_kind;
        self.sync = peer.sync_kind;
        self.gpu = Some(gpu);
        Ok(())
    }

    /// Imports a slot fd after checking what can be checked without
    /// trusting the publisher: no handle bytes, an fd present, the
    /// allocation size fixed by the protocol for `size` (not taken from the
    /// peer), and for a memfd (software implementations) its exact size and
    /// seals. The import is a dedicated allocation of a buffer made like the
    /// publisher's (`VulkanOpaqueFd`) or a plain one (`CudaVmmFd`).
    fn import(
        &self,
        fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<VulkanImported, VulkanError> {
        self.import_slot(fd, None, handle, size)
    }

    /// [`Importer::import`](cuframes_core::runtime::Importer::import), and under `VulkanTimeline` the slot's timeline
    /// semaphore from `sync_fd` (required; the driver checks it is one).
    fn import_slot(
        &self,
        fd: Option<OwnedFd>,
        sync_fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<VulkanImported, VulkanError> {
        let gpu = self.gpu()?;
        if !handle.is_empty() {
            return Err(VulkanError::HandleLength { len: handle.len() });
        }
        let fd = fd.ok_or(VulkanError::MissingFd)?;
        let alloc = Self::allocation_size(self.peer_kind, size)?;
        let fd = match check_fd(fd.as_fd(), alloc)? {
            FdKind::File => own_description(&fd)?,
            FdKind::Driver => fd,
        };
        let how = match self.peer_kind {
            MemoryKind::VulkanOpaqueFd => ImportAs::Dedicated,
            MemoryKind::CudaVmmFd => ImportAs::Plain,
            k => return Err(VulkanError::Kind(k)),
        };
        let sem = match self.sync {
            SyncKind::VulkanTimeline => {
                let sfd = sync_fd.ok_or(VulkanError::MissingFd)?;
                Some(Semaphore::import(gpu, sfd)?)
            }
            _ => None,
        };
        Ok(VulkanImported {
            buf: SharedBuffer::import(gpu, fd, alloc, how)?,
            sem,
        })
    }

    fn before_release(slot: &VulkanImported) {
        // Synchronous release: work the application submitted on this
        // backend's queue (`VulkanDevice::with_queue`) must be done before
        // the publisher may rewrite the slot.
        if let Err(e) = slot.buf.gpu().wait_idle() {
            tracing::warn!("vkQueueWaitIdle before release: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::MemfdFlags;

    fn memfd(len: u64, seal: bool) -> OwnedFd {
        let fd =
            rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        if seal {
            seal_exported(fd.as_fd()).unwrap();
        }
        fd
    }

    #[test]
    fn memfd_slots_must_be_whole_and_sealed() {
        let a = 2 << 20;
        assert!(check_fd(memfd(a, true).as_fd(), a).is_ok());
        let short = check_fd(memfd(a / 2, true).as_fd(), a).unwrap_err();
        assert!(short.to_string().contains("1048576 bytes"), "{short}");
        let unsealed = check_fd(memfd(a, false).as_fd(), a).unwrap_err();
        assert!(unsealed.to_string().contains("F_SEAL_SHRINK"), "{unsealed}");
        // A memfd that cannot be sealed is refused on export.
        let fd = rustix::fs::memfd_create("t", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, a).unwrap();
        assert!(seal_exported(fd.as_fd()).is_err());
        // Not a file (a driver's fd): left to the driver.
        let (r, _w) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        assert_eq!(check_fd(r.as_fd(), a).unwrap(), FdKind::Driver);
        assert_eq!(check_fd(memfd(a, true).as_fd(), a).unwrap(), FdKind::File);
    }

    #[test]
    fn a_memfd_is_imported_through_its_own_file_description() {
        // Subscribers share one open file description of the publisher's
        // memfd; what goes to the driver must not share its file offset.
        let fd = memfd(4096, true);
        rustix::io::write(&fd, b"header").unwrap();
        let mine = own_description(&fd).unwrap();
        assert_eq!(
            rustix::fs::seek(&fd, rustix::fs::SeekFrom::Current(0)).unwrap(),
            6
        );
        assert_eq!(
            rustix::fs::seek(&mine, rustix::fs::SeekFrom::Current(0)).unwrap(),
            0
        );
        let mut buf = [0u8; 6];
        rustix::io::read(&mine, &mut buf).unwrap();
        assert_eq!(&buf, b"header");
        // Still the same file: the seals came along.
        assert!(rustix::fs::fcntl_get_seals(&mine)
            .unwrap()
            .contains(SealFlags::SHRINK));
        assert_eq!(rustix::fs::fstat(&mine).unwrap().st_size, 4096);
    }

    #[test]
    fn an_unattached_subscriber_imports_nothing_and_refuses_other_kinds() {
        let mut b = VulkanBackend {
            gpu: None,
            peer_kind: MemoryKind::VulkanOpaqueFd,
            sync: SyncKind::HostFence,
        };
        assert!(matches!(
            b.import(Some(memfd(2 << 20, true)), &[], 100),
            Err(VulkanError::NotAttached)
        ));
        for (m, s) in [
            (MemoryKind::HostMemfd, SyncKind::HostFence),
            (MemoryKind::CudaLegacyIpc, SyncKind::HostFence),
            (MemoryKind::VulkanOpaqueFd, SyncKind::IpcEvent),
            (MemoryKind::CudaVmmFd, SyncKind::IpcEvent),
            (MemoryKind::CudaVmmFd, SyncKind::VulkanTimeline),
        ] {
            let e = b
                .attach(&Peer {
                    memory_kind: m,
                    sync_kind: s,
                    gpu_uuid: [0; 16],
                    slot_size: 100,
                    slot_count: 2,
                })
                .unwrap_err();
            assert!(
                matches!(e, VulkanError::Kind(_) | VulkanError::Sync(_)),
                "{m:?}/{s:?}: {e}"
            );
        }
        assert!(b.accepts(MemoryKind::CudaVmmFd) && b.accepts(MemoryKind::VulkanOpaqueFd));
        assert!(!b.accepts(MemoryKind::HostMemfd));
    }
}
