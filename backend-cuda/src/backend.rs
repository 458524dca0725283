//! [`CudaBackend`]: the core `Backend` trait over CUDA device memory
//! (`docs/protocol.md` §3.6).
//!
//! Handles in WELCOME, per slot: `CudaVmmFd` sends one fd (SCM_RIGHTS) and,
//! with `IpcEvent`, the 64-byte `CUipcEventHandle`; `CudaLegacyIpc` sends
//! the 64-byte `CUipcMemHandle`, then the event handle with `IpcEvent`.

use crate::driver::{self, DeviceAlloc, Event, ExternalMem, IpcMem, VmmHandle, VmmMapping};
use crate::slot::{Imported, Owned};
use crate::{CudaDevice, CudaError, CudaImported, CudaSlot};
use cuframes_core::runtime::{Backend, Peer, SlotExport};
use cuframes_core::{MemoryKind, SyncKind};
use rustix::fd::{AsFd, OwnedFd};

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
    /// The publisher synchronises its stream before committing the frame.
    #[default]
    HostFence,
    /// Per-slot interprocess events (`CU_EVENT_INTERPROCESS`): the publisher
    /// commits at once and subscribers wait on the event in their streams.
    /// Legacy IPC underneath: needs a shared PID namespace.
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

const IPC_HANDLE: usize = 64;

/// The CUDA backend: publishers allocate slots in VRAM, subscribers import
/// them on the same GPU, found by UUID.
#[derive(Debug)]
pub struct CudaBackend {
    config: CudaConfig,
    device: Option<CudaDevice>,
    /// Subscriber: legacy IPC handles may be imported
    /// ([`CudaBackend::allow_legacy_ipc`]).
    legacy_ipc: bool,
    /// Subscriber: the publisher is a Vulkan one (`VulkanOpaqueFd`): its
    /// fds are imported with `cuImportExternalMemory`.
    vulkan_peer: bool,
}

impl CudaBackend {
    /// A publisher's backend on device `config.device`.
    ///
    /// Errors: [`CudaError::DriverMissing`] without a driver (never a panic),
    /// [`CudaError::NoDevice`], driver errors.
    pub fn publisher(config: CudaConfig) -> Result<Self, CudaError> {
        let device = CudaDevice::open(config.device)?;
        Ok(CudaBackend {
            config,
            device: Some(device),
            legacy_ipc: false,
            vulkan_peer: false,
        })
    }

    /// A subscriber's backend: imports `CudaVmmFd` publishers with
    /// `HostFence` sync, and opens the device whose UUID the publisher
    /// announces. A VMM fd is a kernel object the driver validates on
    /// import (`cuMemImportFromShareableHandle`), so a hostile publisher
    /// cannot make it map anything but memory it shares.
    ///
    /// Publishers that share legacy IPC handles (`CudaLegacyIpc` memory,
    /// or `IpcEvent` sync) are refused at connect with
    /// [`CudaError::LegacyIpcNotAllowed`] unless the backend was made with
    /// [`CudaBackend::allow_legacy_ipc`].
    ///
    /// Errors: [`CudaError::DriverMissing`] without a driver.
    pub fn subscriber() -> Result<Self, CudaError> {
        crate::device::init()?;
        Ok(CudaBackend {
            config: CudaConfig::default(),
            device: None,
            legacy_ipc: false,
            vulkan_peer: false,
        })
    }

    /// Lets this subscriber backend import legacy CUDA IPC handles:
    /// `CUipcMemHandle`s (`CudaLegacyIpc` memory) and `CUipcEventHandle`s
    /// (`IpcEvent` sync), 64 opaque bytes each from the publisher's WELCOME.
    ///
    /// # Safety
    /// The driver cannot tell a forged handle from a real one: a handle
    /// opened with `cuIpcOpenMemHandle` / `cuIpcOpenEventHandle` may name
    /// any IPC-exportable allocation or event of any process on the GPU, not
    /// the publisher's slot, and nothing checks that the allocation holds a
    /// whole slot. The caller must trust every publisher this backend
    /// connects to (including those it reconnects to) to send only handles
    /// it got from `cuIpcGetMemHandle` / `cuIpcGetEventHandle` for slots of
    /// the announced size — e.g. because the subscriber accepts only
    /// publishers of its own uid (`SubscribeOptions::publisher_uids`) and
    /// runs in the same PID namespace as a publisher it controls.
    #[allow(unsafe_code)]
    pub unsafe fn allow_legacy_ipc(mut self) -> Self {
        self.legacy_ipc = true;
        self
    }

    /// Whether [`CudaBackend::allow_legacy_ipc`] was given.
    pub fn legacy_ipc_allowed(&self) -> bool {
        self.legacy_ipc
    }

    /// The device (a subscriber's only after connecting).
    pub fn device(&self) -> Option<&CudaDevice> {
        self.device.as_ref()
    }

    /// The settings in force (a subscriber's follow its publisher).
    pub fn config(&self) -> CudaConfig {
        self.config
    }

    fn dev(&self) -> Result<&CudaDevice, CudaError> {
        let d = self.device.as_ref().ok_or(CudaError::NotAttached)?;
        d.make_current()?;
        Ok(d)
    }

    fn handle_len(&self) -> usize {
        // The CUDA kinds are known kinds: the rule always has an answer.
        self.memory_kind().handle_len(self.sync_kind()).unwrap_or(0) as usize
    }

    fn vmm_size(&self, dev: &CudaDevice, size: u64) -> Result<u64, CudaError> {
        let g = driver::vmm_granularity(dev.raw_device())?.max(1);
        Ok(size.max(1).div_ceil(g) * g)
    }
}

impl Backend for CudaBackend {
    type Slot = CudaSlot;
    type Imported = CudaImported;
    type Error = CudaError;

    fn memory_kind(&self) -> MemoryKind {
        if self.vulkan_peer {
            return MemoryKind::VulkanOpaqueFd;
        }
        match self.config.memory {
            CudaMemory::VmmFd => MemoryKind::CudaVmmFd,
            CudaMemory::LegacyIpc => MemoryKind::CudaLegacyIpc,
        }
    }

    fn sync_kind(&self) -> SyncKind {
        match self.config.sync {
            CudaSync::HostFence => SyncKind::HostFence,
            CudaSync::IpcEvent => SyncKind::IpcEvent,
        }
    }

    fn gpu_uuid(&self) -> [u8; 16] {
        self.device.as_ref().map_or([0; 16], CudaDevice::uuid)
    }

    fn accepts(&self, kind: MemoryKind) -> bool {
        matches!(
            kind,
            MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc | MemoryKind::VulkanOpaqueFd
        )
    }

    fn attach(&mut self, peer: &Peer) -> Result<(), CudaError> {
        let legacy =
            peer.memory_kind == MemoryKind::CudaLegacyIpc || peer.sync_kind == SyncKind::IpcEvent;
        if legacy && !self.legacy_ipc {
            return Err(CudaError::LegacyIpcNotAllowed {
                memory: peer.memory_kind,
                sync: peer.sync_kind,
            });
        }
        self.vulkan_peer = peer.memory_kind == MemoryKind::VulkanOpaqueFd;
        if self.vulkan_peer && peer.sync_kind != SyncKind::HostFence {
            return Err(CudaError::Kind(peer.memory_kind));
        }
        self.config.memory = match peer.memory_kind {
            MemoryKind::CudaVmmFd | MemoryKind::VulkanOpaqueFd => CudaMemory::VmmFd,
            MemoryKind::CudaLegacyIpc => CudaMemory::LegacyIpc,
            k => return Err(CudaError::Kind(k)),
        };
        self.config.sync = match peer.sync_kind {
            SyncKind::IpcEvent => CudaSync::IpcEvent,
            SyncKind::HostFence => CudaSync::HostFence,
            // A frame must never be read before its writes are known to be
            // done: sync kinds CUDA cannot wait on are refused.
            _ => return Err(CudaError::Kind(peer.memory_kind)),
        };
        let d = CudaDevice::by_uuid(&peer.gpu_uuid)?;
        self.config.device = d.ordinal();
        self.device = Some(d);
        Ok(())
    }

    fn allocate(&self, _index: u32, size: u64) -> Result<CudaSlot, CudaError> {
        let dev = self.dev()?;
        let (mem, size) = match self.config.memory {
            CudaMemory::VmmFd => {
                let size = self.vmm_size(dev, size)?;
                let handle = VmmHandle::create(dev.raw_device(), size)?;
                let (map, _) = VmmMapping::map(&handle, dev.raw_device(), size, false)?;
                (Owned::Vmm { map, handle }, size)
            }
            CudaMemory::LegacyIpc => (Owned::Legacy(DeviceAlloc::new(size)?), size),
        };
        let event = match self.config.sync {
            CudaSync::IpcEvent => Some(Event::interprocess()?),
            CudaSync::HostFence => None,
        };
        Ok(CudaSlot {
            mem,
            event,
            size,
            device: dev.clone(),
        })
    }

    fn export(&self, slot: &CudaSlot) -> Result<SlotExport, CudaError> {
        self.dev()?;
        let mut handle = Vec::with_capacity(self.handle_len());
        let fd = match &slot.mem {
            Owned::Vmm { handle: h, .. } => Some(h.export_fd()?),
            Owned::Legacy(a) => {
                handle.extend_from_slice(&a.ipc_handle()?);
                None
            }
        };
        if let Some(e) = &slot.event {
            handle.extend_from_slice(&e.ipc_handle()?);
        }
        Ok(SlotExport {
            fd,
            handle,
            sync_fd: None,
        })
    }

    /// VMM fds are imported as the driver validates them; legacy IPC
    /// handles only with [`CudaBackend::allow_legacy_ipc`] (else
    /// [`CudaError::LegacyIpcNotAllowed`]).
    #[allow(unsafe_code)]
    fn import(
        &self,
        fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<CudaImported, CudaError> {
        let uses_handles =
            self.config.memory == CudaMemory::LegacyIpc || self.config.sync == CudaSync::IpcEvent;
        if uses_handles && !self.legacy_ipc {
            return Err(CudaError::LegacyIpcNotAllowed {
                memory: self.memory_kind(),
                sync: self.sync_kind(),
            });
        }
        let dev = self.dev()?;
        if handle.len() != self.handle_len() {
            return Err(CudaError::HandleLength {
                len: handle.len(),
                expected: self.handle_len(),
            });
        }
        let ipc = |at: usize| -> [u8; IPC_HANDLE] {
            let mut h = [0u8; IPC_HANDLE];
            h.copy_from_slice(&handle[at..at + IPC_HANDLE]);
            h
        };
        let (mem, size, read_only, ev_at) = match self.config.memory {
            // A Vulkan publisher: one dedicated allocation of the protocol's
            // size per slot (§3.6); the driver validates the fd and size.
            CudaMemory::VmmFd if self.vulkan_peer => {
                let fd = fd.ok_or(CudaError::MissingFd)?;
                let size = MemoryKind::VulkanOpaqueFd
                    .gpu_allocation_size(size)
                    .ok_or(CudaError::Layout("slot size overflows its allocation"))?;
                let m = ExternalMem::import_opaque_fd(fd, size, true)?;
                (Imported::External(m), size, false, 0)
            }
            CudaMemory::VmmFd => {
                let fd = fd.ok_or(CudaError::MissingFd)?;
                let size = self.vmm_size(dev, size)?;
                let h = VmmHandle::import(fd.as_fd())?;
                let (map, ro) = VmmMapping::map(&h, dev.raw_device(), size, true)?;
                (Imported::Vmm { map, _handle: h }, size, ro, 0)
            }
            CudaMemory::LegacyIpc => {
                // SAFETY: `IpcMem::open` needs a handle from the publisher's
                // `cuIpcGetMemHandle`; `legacy_ipc` is set (checked above),
                // so the application took that on with the `unsafe`
                // `allow_legacy_ipc` (its `# Safety`).
                let m = unsafe { IpcMem::open(&ipc(0)) }?;
                (Imported::Legacy(m), size, false, IPC_HANDLE)
            }
        };
        let event = match self.config.sync {
            // SAFETY: `Event::open` needs a handle from the publisher's
            // `cuIpcGetEventHandle`; IpcEvent sync implies `legacy_ipc`
            // (checked above): the application vouched for it through the
            // `unsafe` `allow_legacy_ipc`.
            CudaSync::IpcEvent => Some(unsafe { Event::open(&ipc(ev_at)) }?),
            CudaSync::HostFence => None,
        };
        Ok(CudaImported {
            mem,
            event,
            size,
            read_only,
            device: dev.clone(),
        })
    }

    fn before_release(slot: &CudaImported) {
        // Synchronous release: the consumer's work on the frame must be done
        // before the publisher may rewrite the slot. Frames released with
        // `release_after(stream)` skip this. `synchronize` makes the slot's
        // context current first: an owned frame may be dropped on any thread.
        if let Err(e) = slot.device.synchronize() {
            tracing::warn!(
                device = slot.device.ordinal(),
                "cuCtxSynchronize before release: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscriber backend as `subscriber()` makes it, without a driver.
    fn unattached(legacy_ipc: bool) -> CudaBackend {
        CudaBackend {
            config: CudaConfig::default(),
            device: None,
            legacy_ipc,
            vulkan_peer: false,
        }
    }

    fn peer(memory_kind: MemoryKind, sync_kind: SyncKind) -> Peer {
        Peer {
            memory_kind,
            sync_kind,
            gpu_uuid: [7; 16],
            slot_size: 4096,
            slot_count: 2,
        }
    }

    /// A safe `Subscriber::connect` must not reach `cuIpcOpenMemHandle` /
    /// `cuIpcOpenEventHandle` on the publisher's word: without the opt-in,
    /// legacy IPC publishers are refused before any driver call.
    #[test]
    fn legacy_ipc_is_refused_without_the_opt_in() {
        for (m, s) in [
            (MemoryKind::CudaLegacyIpc, SyncKind::HostFence),
            (MemoryKind::CudaLegacyIpc, SyncKind::IpcEvent),
            (MemoryKind::CudaVmmFd, SyncKind::IpcEvent),
        ] {
            let mut b = unattached(false);
            let e = b.attach(&peer(m, s)).unwrap_err();
            assert!(matches!(e, CudaError::LegacyIpcNotAllowed { .. }), "{e}");
            assert!(e.to_string().contains("--allow-legacy-ipc"), "{e}");
        }
        // Even if `attach` were skipped, `import` refuses a legacy config.
        let mut b = unattached(false);
        b.config.memory = CudaMemory::LegacyIpc;
        let e = b.import(None, &[0; 64], 4096).unwrap_err();
        assert!(matches!(e, CudaError::LegacyIpcNotAllowed { .. }), "{e}");
        let mut b = unattached(false);
        b.config.sync = CudaSync::IpcEvent;
        let fd = rustix::fs::memfd_create("x", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let e = b.import(Some(fd), &[0; 64], 4096).unwrap_err();
        assert!(matches!(e, CudaError::LegacyIpcNotAllowed { .. }), "{e}");
    }

    #[test]
    fn vulkan_publishers_are_imported_with_host_fence_only() {
        let b = unattached(false);
        assert!(b.accepts(MemoryKind::VulkanOpaqueFd));
        // HostFence: past every kind check, failing only on the device.
        let mut b = unattached(false);
        let e = b
            .attach(&peer(MemoryKind::VulkanOpaqueFd, SyncKind::HostFence))
            .unwrap_err();
        assert!(
            !matches!(
                e,
                CudaError::Kind(_) | CudaError::LegacyIpcNotAllowed { .. }
            ),
            "{e}"
        );
        assert_eq!(b.memory_kind(), MemoryKind::VulkanOpaqueFd);
        // Vulkan has no CUDA events: IpcEvent is refused even with the opt-in.
        // SAFETY: nothing is imported by this test.
        #[allow(unsafe_code)]
        let mut b = unsafe { unattached(false).allow_legacy_ipc() };
        let e = b
            .attach(&peer(MemoryKind::VulkanOpaqueFd, SyncKind::IpcEvent))
            .unwrap_err();
        assert!(
            matches!(e, CudaError::Kind(MemoryKind::VulkanOpaqueFd)),
            "{e}"
        );
    }

    #[test]
    fn vmm_with_host_fence_needs_no_opt_in() {
        // It gets past the legacy check and fails only on the device lookup
        // (no driver here, or no GPU of that UUID).
        let mut b = unattached(false);
        let e = b
            .attach(&peer(MemoryKind::CudaVmmFd, SyncKind::HostFence))
            .unwrap_err();
        assert!(!matches!(e, CudaError::LegacyIpcNotAllowed { .. }), "{e}");
        // SAFETY: nothing is imported by this test.
        #[allow(unsafe_code)]
        let b = unsafe { unattached(false).allow_legacy_ipc() };
        assert!(b.legacy_ipc_allowed());
    }
}
