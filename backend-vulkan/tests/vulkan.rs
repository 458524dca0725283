//! The Vulkan backend end to end in one process, on whatever Vulkan device
//! exists (lavapipe in CI, NVIDIA on the GPU machine): slots exported as
//! opaque fds, imported by a subscriber through the real socket handshake,
//! frames read back bit-exact. Without a Vulkan device each test prints a
//! `SKIP:` line and returns, unless `CUFRAMES_REQUIRE_VULKAN=1` (set by
//! `.ci/vulkan`, where lavapipe is installed), which makes that a failure.

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    Api, Exporter, Importer, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, PublishPolicy};
use cuframes_vulkan::{VulkanBackend, VulkanConfig, VulkanFrameExt, VulkanSync};
use std::path::PathBuf;
use std::time::Duration;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(test: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("cuframes-vk-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// A publisher backend, or `None` after a SKIP line when this machine has
/// no usable Vulkan device.
fn publisher_backend(test: &str) -> Option<VulkanBackend> {
    match VulkanBackend::publisher(VulkanConfig::default()) {
        Ok(b) => Some(b),
        Err(e) if std::env::var_os("CUFRAMES_REQUIRE_VULKAN").is_some_and(|v| v == "1") => {
            panic!("{test}: CUFRAMES_REQUIRE_VULKAN=1 but no usable Vulkan device ({e})")
        }
        Err(e) => {
            println!("SKIP: {test}: no usable Vulkan device ({e})");
            None
        }
    }
}

/// Frame `n`'s packed NV12 bytes: a pattern that differs per frame, row and plane.
fn pattern(w: usize, h: usize, n: u8) -> Vec<u8> {
    let size = w * h + w * h.div_ceil(2);
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ n ^ ((i / w) as u8))
        .collect()
}

#[test]
fn frames_cross_processes_bit_exact_through_opaque_fds() {
    let Some(backend) = publisher_backend("frames_cross_processes_bit_exact_through_opaque_fds")
    else {
        return;
    };
    let info = backend.device().unwrap().info().clone();
    eprintln!(
        "device: {} ({}), {}, external semaphore fd: {}",
        info.name,
        info.device_type,
        cuframes_vulkan::uuid_string(&info.device_uuid),
        info.external_semaphore_fd
    );
    let d = dir("exact");
    let (w, h) = (66usize, 38usize);
    let mut cfg = PublisherConfig::new("vk-exact");
    cfg.runtime_dir = Some(d.0.clone());
    cfg.slots = 3;
    cfg.policy = PublishPolicy::DropFrame;
    // A pitch wider than the row: the copy must honour the stream's layout.
    let mut stream =
        StreamDesc::packed(w as u32, h as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    stream.plane_pitch = [128, 128];
    stream.plane_offset = [0, 128 * h as u64];
    stream.frame_size = 128 * (h as u64 + h.div_ceil(2) as u64);
    let mut p = Publisher::create(backend, cfg, stream).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(d.0.clone());
    let sub = Subscriber::connect("vk-exact", VulkanBackend::subscriber().unwrap(), o).unwrap();
    assert_eq!(sub.backend().memory_kind(), MemoryKind::VulkanOpaqueFd);
    let sdev = sub.backend().device().unwrap();
    assert_eq!(sdev.info().device_uuid, info.device_uuid, "found by UUID");

    let mut out = Vec::new();
    for n in 0..6u8 {
        let frame = pattern(w, h, n);
        let (y, uv) = frame.split_at(w * h);
        let mut g = p.acquire().expect("a free slot");
        let desc = *g.stream();
        g.slot().write_from_host(&desc, &[(y, w), (uv, w)]).unwrap();
        g.commit(FrameMeta {
            source_index: n as u64,
            ..Default::default()
        });
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(f.meta().source_index, n as u64);
        let plane1 = f.buffer_plane(1).unwrap();
        assert_eq!((plane1.offset, plane1.pitch), (128 * h as u64, 128));
        f.copy_to_host(&mut out).unwrap();
        assert!(out == frame, "frame {n} differs after the round trip");
        assert!(f.release());
    }
}

#[test]
fn imports_are_checked_against_the_protocol_size() {
    let Some(backend) = publisher_backend("imports_are_checked_against_the_protocol_size") else {
        return;
    };
    use cuframes_core::runtime::Peer;
    use cuframes_core::SyncKind;
    // An honest slot of 1,000 bytes: a 2 MiB allocation.
    let slot = backend.allocate(0, 1000).unwrap();
    assert_eq!(slot.size(), 2 << 20);
    let mut sub = VulkanBackend::subscriber().unwrap();
    sub.attach(&Peer {
        memory_kind: MemoryKind::VulkanOpaqueFd,
        sync_kind: SyncKind::HostFence,
        gpu_uuid: backend.gpu_uuid(),
        slot_size: 1000,
        slot_count: 2,
    })
    .unwrap();
    let fd = || backend.export(&slot).unwrap().fd;
    sub.import(fd(), &[], 1000).unwrap();
    // Handle bytes where none belong, a missing fd.
    assert!(sub.import(fd(), &[0; 64], 1000).is_err());
    assert!(sub.import(None, &[], 1000).is_err());
    // A publisher claiming a bigger slot than its allocation holds: where
    // the fd is a memfd (software implementations) it is refused before
    // Vulkan sees it; a GPU driver refuses the import itself.
    let big = sub.import(fd(), &[], 5 << 20);
    if big.is_ok() {
        eprintln!("note: this driver imported an opaque fd with a larger allocation size");
    }
    let is_memfd = {
        let f = fd().unwrap();
        rustix::fs::FileType::from_raw_mode(rustix::fs::fstat(&f).unwrap().st_mode)
            == rustix::fs::FileType::RegularFile
    };
    if is_memfd {
        let e = big.unwrap_err();
        assert!(e.to_string().contains("allocation is 6291456"), "{e}");
    }
    // A plain memfd (not a Vulkan allocation), sealed, of the right size.
    let m = rustix::fs::memfd_create(
        "fake",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    rustix::fs::ftruncate(&m, 2 << 20).unwrap();
    rustix::fs::fcntl_add_seals(&m, rustix::fs::SealFlags::SHRINK).unwrap();
    // Whatever the driver makes of it, it must not crash this process.
    match sub.import(Some(m), &[], 1000) {
        Ok(_) => eprintln!("note: the driver accepts a sealed memfd as an opaque fd"),
        Err(e) => eprintln!("a foreign memfd is refused: {e}"),
    }
}

/// `VulkanTimeline` where the device exports timeline semaphores (NVIDIA);
/// elsewhere (lavapipe has no `VK_KHR_external_semaphore_fd`) the
/// publisher must refuse it with a clear error, and the test says SKIP.
#[test]
fn timeline_semaphores_where_the_device_has_them() {
    let test = "timeline_semaphores_where_the_device_has_them";
    let Some(probe) = publisher_backend(test) else {
        return;
    };
    let info = probe.device().unwrap().info().clone();
    drop(probe);
    let config = VulkanConfig {
        sync: VulkanSync::Timeline,
        ..VulkanConfig::default()
    };
    if !info.timeline_fd {
        let e = VulkanBackend::publisher(config).unwrap_err();
        assert!(
            e.to_string().contains("VK_KHR_external_semaphore_fd"),
            "{e}"
        );
        println!(
            "SKIP: {test}: {} lacks exportable timeline semaphores",
            info.name
        );
        return;
    }
    let d = dir("timeline");
    let (w, h) = (64usize, 32usize);
    let mut cfg = PublisherConfig::new("vk-timeline");
    cfg.runtime_dir = Some(d.0.clone());
    cfg.slots = 3;
    let stream = StreamDesc::packed(w as u32, h as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(VulkanBackend::publisher(config).unwrap(), cfg, stream).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(d.0.clone());
    let sub = Subscriber::connect("vk-timeline", VulkanBackend::subscriber().unwrap(), o).unwrap();
    let mut out = Vec::new();
    for n in 0..8u8 {
        let frame = pattern(w, h, n);
        let (y, uv) = frame.split_at(w * h);
        p.publish(FrameMeta::default(), |s, desc| {
            s.write_from_host(desc, &[(y, w), (uv, w)])
        })
        .unwrap();
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(f.wait_semaphore().map(|(_, v)| v), Some(f.meta().seq));
        f.copy_to_host(&mut out).unwrap();
        assert!(out == frame, "frame {n}");
    }
}

#[test]
fn frames_and_slots_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send + 'static>() {}
    send_sync::<cuframes_core::runtime::OwnedFrame<VulkanBackend>>();
    send_sync::<VulkanBackend>();
    send::<cuframes_vulkan::VulkanSlot>();
    send_sync::<cuframes_vulkan::VulkanDevice>();
}
