//! [`CudaBackend`]: the core `Backend` trait over CUDA device memory
//! (`docs/protocol.md` §3.6).
//!
//! Handles in WELCOME, per slot: `CudaVmmFd` sends one fd (SCM_RIGHTS) and,
//! with `IpcEvent`, the 64-byte `CUipcEventHandle`; `CudaLegacyIpc` sends
//! the 64-byte `CUipcMemHandle`, then the event handle with `IpcEvent`.

use crate::driver::{self, DeviceAlloc, Event, IpcMem, VmmHandle, VmmMapping};
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
        })
    }

    /// A subscriber's backend: accepts `CudaVmmFd` and `CudaLegacyIpc`
    /// publishers and opens the device whose UUID the publisher announces.
    ///
    /// Errors: [`CudaError::DriverMissing`] without a driver.
    pub fn subscriber() -> Result<Self, CudaError> {
        crate::device::init()?;
        Ok(CudaBackend {
            config: CudaConfig::default(),
            device: None,
        })
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
        matches!(kind, MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc)
    }

    fn attach(&mut self, peer: &Peer) -> Result<(), CudaError> {
        self.config.memory = match peer.memory_kind {
            MemoryKind::CudaVmmFd => CudaMemory::VmmFd,
            MemoryKind::CudaLegacyIpc => CudaMemory::LegacyIpc,
            k => return Err(CudaError::Kind(k)),
        };
        self.config.sync = match peer.sync_kind {
            SyncKind::IpcEvent => CudaSync::IpcEvent,
            _ => CudaSync::HostFence,
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
        Ok(SlotExport { fd, handle })
    }

    #[allow(unsafe_code)]
    unsafe fn import(
        &self,
        fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<CudaImported, CudaError> {
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
            CudaMemory::VmmFd => {
                let fd = fd.ok_or(CudaError::MissingFd)?;
                let size = self.vmm_size(dev, size)?;
                let h = VmmHandle::import(fd.as_fd())?;
                let (map, ro) = VmmMapping::map(&h, dev.raw_device(), size, true)?;
                (Imported::Vmm { map, _handle: h }, size, ro, 0)
            }
            CudaMemory::LegacyIpc => {
                // SAFETY: the handle comes from this publisher's WELCOME for a
                // CudaLegacyIpc slot (the caller's obligation, `Backend::import`).
                let m = unsafe { IpcMem::open(&ipc(0)) }?;
                (Imported::Legacy(m), size, false, IPC_HANDLE)
            }
        };
        let event = match self.config.sync {
            // SAFETY: as above, an IpcEvent publisher's event handle.
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

    fn before_release(&self, _slot: &CudaImported) {
        // Synchronous release: the consumer's work on the frame must be done
        // before the publisher may rewrite the slot. Frames released with
        // `release_after(stream)` skip this.
        if let Ok(d) = self.dev() {
            if let Err(e) = driver::ctx_synchronize() {
                tracing::warn!(device = d.ordinal(), "cuCtxSynchronize before release: {e}");
            }
        }
    }
}
