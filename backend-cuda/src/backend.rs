//! [`CudaBackend`]: the core `Backend` trait over CUDA device memory
//! (`docs/protocol.md` §3.6).
//!
//! Handles in WELCOME, per slot: `CudaVmmFd` sends one fd (SCM_RIGHTS) and,
//! with `IpcEvent`, the 64-byte `CUipcEventHandle`; `CudaLegacyIpc` sends
//! the 64-byte `CUipcMemHandle`, then the event handle with `IpcEvent`.

use crate::device::find_uuid;
use crate::driver::{self, DeviceAlloc, Event, ExternalMem, IpcMem, VmmHandle, VmmMapping};
use crate::slot::{FrameAccess, Imported, Owned};
use crate::{CudaDevice, CudaError, CudaImported, CudaSlot, DeviceSelect};
use cuframes_core::runtime::{Api, Exporter, Importer, Peer, SlotExport};
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

/// How a subscriber on another GPU than its publisher's takes the frames
/// (`docs/gpu.md`, "Multi-GPU hosts"). Ignored when both are on one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrossGpu {
    /// [`CrossGpu::PeerMap`] when this GPU can access the publisher's
    /// (`cuDeviceCanAccessPeer`), else [`CrossGpu::Copy`]. Check
    /// [`CudaBackend::frame_access`] (or a frame's `device()`) after connecting
    /// to learn which.
    #[default]
    Auto,
    /// Map each slot for this GPU (`cuMemSetAccess` with this device as the
    /// location; legacy IPC: `cuIpcOpenMemHandle` with lazy peer access):
    /// kernels here read the frame in place, over NVLink or PCIe. Refused
    /// at connect ([`CudaError::CrossGpu`]) when peer access is impossible.
    PeerMap,
    /// The application copies each frame to a buffer of its own on this GPU
    /// ([`crate::CudaFrameExt::copy_into`] into a [`crate::CudaFrameCopy`])
    /// and may release the lease as soon as the copy is done. The slots are
    /// peer-mapped when possible (the copy then runs on this GPU's copy
    /// engines over the link), else mapped for the publisher's GPU, whose
    /// context this process then retains, and copied with
    /// `cuMemcpyPeerAsync` (staged through host memory by the driver).
    Copy,
}

/// A subscriber backend's settings ([`CudaBackend::subscriber_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriberConfig {
    /// The GPU this subscriber works on; `None`: the publisher's (found by
    /// its UUID), as [`CudaBackend::subscriber`] does.
    pub device: Option<DeviceSelect>,
    /// What to do when that GPU is not the publisher's.
    pub cross_gpu: CrossGpu,
}

/// Picks the [`FrameAccess`] for a subscriber on GPU `here` of a publisher
/// on GPU `source` (ordinals in this process), or says why it cannot take
/// the frames. `peer`: `cuDeviceCanAccessPeer(here, source)`; `legacy`:
/// the publisher shares legacy IPC memory handles; `vulkan`: a Vulkan
/// publisher (`VulkanOpaqueFd`).
pub(crate) fn resolve_access(
    cross: CrossGpu,
    (source, here): (u32, u32),
    peer: bool,
    legacy: bool,
    vulkan: bool,
) -> Result<FrameAccess, CudaError> {
    if source == here {
        return Ok(FrameAccess::Local);
    }
    let refuse = |reason| CudaError::CrossGpu {
        publisher: source,
        subscriber: here,
        reason,
    };
    if vulkan {
        return Err(refuse(
            "a Vulkan publisher's memory can only be imported on its own GPU",
        ));
    }
    match (cross, peer) {
        (_, true) => Ok(FrameAccess::PeerMapped { source }),
        (CrossGpu::PeerMap, false) => Err(refuse(
            "no peer access between the GPUs (cuDeviceCanAccessPeer); use cross-GPU copy",
        )),
        (_, false) if legacy => Err(refuse(
            "legacy CUDA IPC memory needs peer access between the GPUs; publish with vmm-fd memory",
        )),
        (CrossGpu::Auto | CrossGpu::Copy, false) => Ok(FrameAccess::SourceMapped { source }),
    }
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
    /// Subscriber: the requested device and cross-GPU mode.
    sub: SubscriberConfig,
    /// Subscriber: how frames are reached (resolved in `attach`).
    access: FrameAccess,
    /// Subscriber: the publisher's GPU (found by its UUID in `attach`).
    source: Option<cudarc::driver::sys::CUdevice>,
    /// Subscriber, [`FrameAccess::SourceMapped`]: the publisher's GPU, whose
    /// context maps the slots.
    source_device: Option<CudaDevice>,
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
            sub: SubscriberConfig::default(),
            access: FrameAccess::Local,
            source: None,
            source_device: None,
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
        Self::subscriber_with(SubscriberConfig::default())
    }

    /// A subscriber's backend working on the GPU `config.device` (default:
    /// the publisher's), taking frames from a publisher on another GPU as
    /// `config.cross_gpu` says (`docs/gpu.md`, "Multi-GPU hosts").
    ///
    /// At connect the publisher's UUID must name a GPU visible here
    /// ([`CudaError::UuidNotFound`]), the selected device must exist
    /// ([`CudaError::NoDevice`] / [`CudaError::UuidNotFound`]), and a
    /// cross-GPU subscription must be possible ([`CudaError::CrossGpu`]:
    /// `PeerMap` without peer access, legacy IPC memory without peer
    /// access, a Vulkan publisher). [`CudaBackend::frame_access`] then says
    /// how frames are reached. Otherwise as [`CudaBackend::subscriber`].
    ///
    /// Errors: [`CudaError::DriverMissing`] without a driver.
    pub fn subscriber_with(config: SubscriberConfig) -> Result<Self, CudaError> {
        crate::device::init()?;
        Ok(CudaBackend {
            config: CudaConfig::default(),
            device: None,
            legacy_ipc: false,
            vulkan_peer: false,
            sub: config,
            access: FrameAccess::Local,
            source: None,
            source_device: None,
        })
    }

    /// Subscriber: how frames are reached ([`FrameAccess::Local`] before
    /// connecting and when the publisher is on this subscriber's GPU).
    pub fn frame_access(&self) -> FrameAccess {
        self.access
    }

    /// Subscriber: the settings it was made with.
    pub fn subscriber_config(&self) -> SubscriberConfig {
        self.sub
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

    /// The device: a publisher's slots are on it; a subscriber works on it
    /// (known only after connecting): create the streams that read or copy
    /// frames on this device. Under [`FrameAccess::SourceMapped`] the
    /// frames' own pointers are valid on the publisher's GPU instead
    /// (`CudaFrameExt::device`).
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

    /// `size` rounded up to the VMM granularity of the GPU `dev` (where the
    /// allocation lives: the publisher's sizes its slots so).
    fn vmm_size(&self, dev: cudarc::driver::sys::CUdevice, size: u64) -> Result<u64, CudaError> {
        let g = driver::vmm_granularity(dev)?.max(1);
        Ok(size.max(1).div_ceil(g) * g)
    }
}

impl Api for CudaBackend {
    type Slot = CudaSlot;
    type Imported = CudaImported;
    type Error = CudaError;
    const NAME: &'static str = "cuda";

    fn memory_kind(&self) -> MemoryKind {
        if self.vulkan_peer {
            return MemoryKind::VulkanOpaqueFd;
        }
        match self.config.memory {
            CudaMemory::VmmFd => MemoryKind::CudaVmmFd,
            CudaMemory::LegacyIpc => MemoryKind::CudaLegacyIpc,
        }
    }

    fn gpu_uuid(&self) -> [u8; 16] {
        self.device.as_ref().map_or([0; 16], CudaDevice::uuid)
    }
}

impl Exporter for CudaBackend {
    fn sync_kind(&self) -> SyncKind {
        match self.config.sync {
            CudaSync::HostFence => SyncKind::HostFence,
            CudaSync::IpcEvent => SyncKind::IpcEvent,
        }
    }

    fn allocate(&self, _index: u32, size: u64) -> Result<CudaSlot, CudaError> {
        let dev = self.dev()?;
        let (mem, size) = match self.config.memory {
            CudaMemory::VmmFd => {
                let size = self.vmm_size(dev.raw_device(), size)?;
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
}

impl Importer for CudaBackend {
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
        // The announced UUID is only trusted once it names a GPU here.
        let (source, source_raw) = find_uuid(&peer.gpu_uuid)?;
        let here = match self.sub.device {
            None => CudaDevice::open(source)?,
            Some(select) => CudaDevice::select(select)?,
        };
        let peer_ok =
            here.ordinal() != source && driver::can_access_peer(here.raw_device(), source_raw)?;
        self.access = resolve_access(
            self.sub.cross_gpu,
            (source, here.ordinal()),
            peer_ok,
            self.config.memory == CudaMemory::LegacyIpc,
            self.vulkan_peer,
        )?;
        self.source_device = match self.access {
            FrameAccess::SourceMapped { source } => Some(CudaDevice::open(source)?),
            _ => None,
        };
        self.source = Some(source_raw);
        here.make_current()?;
        self.config.device = here.ordinal();
        self.device = Some(here);
        Ok(())
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
                // Sized by the GPU holding the allocation, mapped for the
                // GPU whose kernels read it (`FrameAccess`).
                let size = self.vmm_size(self.source.unwrap_or(dev.raw_device()), size)?;
                let h = VmmHandle::import(fd.as_fd())?;
                let reader = self.source_device.as_ref().unwrap_or(dev);
                reader.make_current()?;
                let mapped = VmmMapping::map(&h, reader.raw_device(), size, true);
                dev.make_current()?;
                let (map, ro) = mapped?;
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
            device: self.source_device.as_ref().unwrap_or(dev).clone(),
            consumer: dev.clone(),
            access: self.access,
        })
    }

    fn before_release(slot: &CudaImported) {
        // Synchronous release: the consumer's work on the frame must be done
        // before the publisher may rewrite the slot. Frames released with
        // `release_after(stream)` skip this. `synchronize` makes the slot's
        // context current first: an owned frame may be dropped on any thread.
        if let Err(e) = slot.consumer.synchronize() {
            tracing::warn!(
                device = slot.consumer.ordinal(),
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
            sub: SubscriberConfig::default(),
            access: FrameAccess::Local,
            source: None,
            source_device: None,
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
    fn cross_gpu_access_is_resolved_from_the_mode_and_peer_access() {
        use CrossGpu::*;
        use FrameAccess::*;
        let r =
            |cross, gpus, peer, legacy, vulkan| resolve_access(cross, gpus, peer, legacy, vulkan);
        // One GPU: local whatever the mode, even without "peer access".
        for m in [Auto, PeerMap, Copy] {
            assert_eq!(r(m, (1, 1), false, true, true).unwrap(), Local);
        }
        // Peer access: every mode maps for the subscriber's GPU.
        for m in [Auto, PeerMap, Copy] {
            assert_eq!(
                r(m, (0, 1), true, false, false).unwrap(),
                PeerMapped { source: 0 }
            );
            assert_eq!(
                r(m, (0, 1), true, true, false).unwrap(),
                PeerMapped { source: 0 }
            );
        }
        // No peer access: Auto and Copy map for the publisher's GPU; PeerMap is refused.
        assert_eq!(
            r(Auto, (0, 1), false, false, false).unwrap(),
            SourceMapped { source: 0 }
        );
        assert_eq!(
            r(Copy, (2, 1), false, false, false).unwrap(),
            SourceMapped { source: 2 }
        );
        let e = r(PeerMap, (0, 1), false, false, false).unwrap_err();
        assert!(
            matches!(
                e,
                CudaError::CrossGpu {
                    publisher: 0,
                    subscriber: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("cuDeviceCanAccessPeer"), "{e}");
        // Legacy IPC memory cannot be staged: refused without peer access.
        for m in [Auto, Copy] {
            let e = r(m, (0, 1), false, true, false).unwrap_err();
            assert!(e.to_string().contains("legacy CUDA IPC"), "{e}");
        }
        // A Vulkan publisher's memory is only imported on its own GPU.
        let e = r(Auto, (0, 1), true, false, true).unwrap_err();
        assert!(e.to_string().contains("Vulkan"), "{e}");
    }

    #[test]
    fn device_selections_parse_ordinals_and_uuids() {
        assert_eq!("1".parse::<DeviceSelect>(), Ok(DeviceSelect::Ordinal(1)));
        let u = "GPU-5e1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        let DeviceSelect::Uuid(bytes) = u.parse::<DeviceSelect>().unwrap() else {
            panic!("not a UUID");
        };
        assert_eq!(crate::uuid_string(&bytes), u);
        for bad in [
            "",
            "-1",
            "gpu0",
            "GPU-5e1b",
            "GPU-zz1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
            "GPU-5e1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9aa",
        ] {
            let e = bad.parse::<DeviceSelect>().unwrap_err();
            assert!(e.to_string().contains("GPU UUID"), "{bad:?}: {e}");
        }
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
