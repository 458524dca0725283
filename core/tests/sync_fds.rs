//! Sync kinds with an fd per slot (`VulkanTimeline`, `docs/protocol.md`
//! §3.6, §4.3): WELCOME carries each slot's memory fd then its sync fd, the
//! subscriber hands both to `Importer::import_slot`, and the publisher tells
//! the backend which `seq` a claimed slot will be committed as
//! (`Exporter::claimed`). A host-memory backend stands in for Vulkan: its
//! "semaphore" is a memfd whose size names the slot.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    Api, BackendErrorKind, CreateError, Exporter, HostBackend, HostError, HostImported, HostSlot,
    Importer, Publisher, PublisherConfig, SlotExport, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, PublishPolicy, SyncKind};
use rustix::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

/// Every `claimed` call: (slot's first byte marker, seq).
static CLAIMS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

struct FdSync;

/// Announces `VulkanTimeline` but exports no sync fds.
struct Forgetful;

impl Api for Forgetful {
    type Slot = HostSlot;
    type Imported = HostImported;
    type Error = HostError;

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::HostMemfd
    }
}

impl Exporter for Forgetful {
    fn sync_kind(&self) -> SyncKind {
        SyncKind::VulkanTimeline
    }

    fn allocate(&self, index: u32, size: u64) -> Result<HostSlot, HostError> {
        HostBackend.allocate(index, size)
    }

    fn export(&self, slot: &HostSlot) -> Result<SlotExport, HostError> {
        HostBackend.export(slot)
    }
}

impl Importer for Forgetful {
    fn import(&self, fd: Option<OwnedFd>, h: &[u8], size: u64) -> Result<HostImported, HostError> {
        HostBackend.import(fd, h, size)
    }
}

#[test]
fn a_backend_whose_exports_break_its_sync_kind_cannot_publish() {
    let dir = std::env::temp_dir().join(format!("cuframes-syncfd2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = PublisherConfig::new("forgetful");
    cfg.runtime_dir = Some(dir.clone());
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let e = Publisher::create(Forgetful, cfg, stream)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("lacks a sync fd"), "{e}");
    // A broken contract is a backend failure of the generic kind.
    match e {
        CreateError::Backend(f) => assert_eq!(f.kind, BackendErrorKind::Failed),
        other => panic!("expected CreateError::Backend, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

struct Slot {
    host: HostSlot,
    index: u32,
}

struct Imported {
    host: HostImported,
    /// Size of the sync fd received with the slot.
    sync_size: Option<u64>,
}

fn sync_fd(index: u32) -> OwnedFd {
    let fd = rustix::fs::memfd_create("sync", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 1000 + index as u64).unwrap();
    fd
}

impl Api for FdSync {
    type Slot = Slot;
    type Imported = Imported;
    type Error = HostError;

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::HostMemfd
    }
}

impl Exporter for FdSync {
    fn sync_kind(&self) -> SyncKind {
        SyncKind::VulkanTimeline
    }

    fn claimed(slot: &mut Slot, seq: u64) {
        CLAIMS.lock().unwrap().push(seq * 100 + slot.index as u64);
    }

    fn allocate(&self, index: u32, size: u64) -> Result<Slot, HostError> {
        Ok(Slot {
            host: HostBackend.allocate(index, size)?,
            index,
        })
    }

    fn export(&self, slot: &Slot) -> Result<SlotExport, HostError> {
        let mut e = HostBackend.export(&slot.host)?;
        e.sync_fd = Some(sync_fd(slot.index));
        Ok(e)
    }
}

impl Importer for FdSync {
    fn import(&self, _: Option<OwnedFd>, _: &[u8], _: u64) -> Result<Imported, HostError> {
        panic!("import_slot is what the subscriber calls")
    }

    fn import_slot(
        &self,
        fd: Option<OwnedFd>,
        sync_fd: Option<OwnedFd>,
        handle: &[u8],
        size: u64,
    ) -> Result<Imported, HostError> {
        Ok(Imported {
            host: HostBackend.import(fd, handle, size)?,
            sync_size: sync_fd.map(|f| rustix::fs::fstat(&f).unwrap().st_size as u64),
        })
    }
}

#[test]
fn each_slot_travels_with_its_sync_fd_and_claims_name_the_seq() {
    let dir = std::env::temp_dir().join(format!("cuframes-syncfd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = PublisherConfig::new("syncfd");
    cfg.runtime_dir = Some(dir.clone());
    cfg.slots = 3;
    cfg.policy = PublishPolicy::DropFrame;
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(FdSync, cfg, stream).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(dir.clone());
    let sub = Subscriber::connect("syncfd", FdSync, o).unwrap();
    for n in 1..=4u64 {
        let mut g = p.acquire().expect("a free slot");
        let index = g.index();
        g.slot().host.bytes_mut().fill(n as u8);
        assert_eq!(g.commit(FrameMeta::default()), n);
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        // The frame's slot came with that slot's own sync fd (slot order
        // kept: memory fd, then sync fd, per slot).
        assert_eq!(f.memory().sync_size, Some(1000 + index as u64));
        assert!(f.memory().host.bytes()[..64].iter().all(|&b| b == n as u8));
        assert_eq!(
            CLAIMS.lock().unwrap().last().copied(),
            Some(n * 100 + index as u64),
            "claimed() names the seq the commit gave"
        );
        assert!(f.release());
    }
    // An abandoned claim is told the seq the next commit then reuses.
    let g = p.acquire().unwrap();
    drop(g);
    let mut g = p.acquire().unwrap();
    let i = g.index() as u64;
    g.slot().host.bytes_mut().fill(9);
    assert_eq!(g.commit(FrameMeta::default()), 5);
    assert_eq!(CLAIMS.lock().unwrap().last().copied(), Some(500 + i));
    drop(sub);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
