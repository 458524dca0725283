//! CUDA and Vulkan sharing frames through the real socket handshake, on an
//! NVIDIA GPU (the Vulkan device of the CUDA device's UUID): a Vulkan
//! subscriber of a CUDA VMM-fd publisher, a CUDA subscriber of a Vulkan
//! publisher, and Vulkan to Vulkan on NVIDIA's driver. `#[ignore]`d: CI has
//! no GPU; `scripts/gpu-tests.sh` (section 1) runs them with `--ignored`.
//! Without a CUDA driver or an NVIDIA Vulkan device they fail (they never
//! pass silently where they cannot run).

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    Api, Exporter, Importer, Published, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, PublishPolicy};
use cuframes_cuda::{driver_present, CudaBackend, CudaConfig, CudaDevice, CudaFrameExt, RawStream};
use cuframes_vulkan::{DeviceSelect, VulkanBackend, VulkanConfig, VulkanFrameExt, VulkanSync};
use std::path::PathBuf;
use std::time::Duration;

const IGNORE: &str = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh";

fn need_gpu() -> CudaDevice {
    assert!(
        driver_present(),
        "no CUDA driver: GPU tests must run on the GPU machine (scripts/gpu-tests.sh)"
    );
    CudaDevice::open(0).unwrap()
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-vkcu-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Packed NV12 frame `n` of `w`x`h`: every byte depends on (frame, offset).
fn pattern(n: u64, w: usize, h: usize) -> Vec<u8> {
    (0..w * h + w * h.div_ceil(2))
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(n * 7) as u8)
        .collect()
}

fn vulkan_with(cuda: &CudaDevice, sync: VulkanSync) -> VulkanBackend {
    VulkanBackend::publisher(VulkanConfig {
        device: DeviceSelect::Uuid(cuda.uuid()),
        sync,
    })
    .expect("a Vulkan device with the CUDA device's UUID (NVIDIA ICD)")
}

fn vulkan_on(cuda: &CudaDevice) -> VulkanBackend {
    vulkan_with(cuda, VulkanSync::HostFence)
}

fn opts(d: &std::path::Path) -> SubscribeOptions {
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(d.to_path_buf());
    o
}

fn config(key: &str, d: &std::path::Path) -> PublisherConfig {
    let mut cfg = PublisherConfig::new(key);
    cfg.runtime_dir = Some(d.to_path_buf());
    cfg.policy = PublishPolicy::Wait;
    cfg.slots = 4;
    cfg
}

const W: usize = 1280;
const H: usize = 720;

#[test]
#[ignore = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh"]
fn vulkan_device_uuid_is_the_cuda_uuid() {
    let cuda = need_gpu();
    let devices = cuframes_vulkan::devices().unwrap();
    for d in &devices {
        println!(
            "figure: Vulkan device {}: {} ({}), {}, external memory fd {}, external semaphore fd {}",
            d.index,
            d.name,
            d.device_type,
            cuframes_vulkan::uuid_string(&d.device_uuid),
            d.external_memory_fd,
            d.external_semaphore_fd
        );
    }
    let v = vulkan_on(&cuda);
    assert_eq!(v.gpu_uuid(), cuda.uuid(), "{IGNORE}");
    let info = v.device().unwrap().info().clone();
    assert!(info.external_memory_fd);
    println!(
        "figure: CUDA device 0 {} = Vulkan {} ({})",
        cuframes_cuda::uuid_string(&cuda.uuid()),
        info.name,
        info.device_type
    );
}

/// NVDEC's path: a CUDA VMM-fd publisher, a Vulkan subscriber.
#[test]
#[ignore = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh"]
fn vulkan_subscriber_reads_a_cuda_vmm_publisher() {
    let cuda = need_gpu();
    let d = dir("cu2vk");
    let desc = StreamDesc::packed(W as u32, H as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(
        CudaBackend::publisher(CudaConfig::default()).unwrap(),
        config("cu2vk", &d),
        desc,
    )
    .unwrap();
    let sub = Subscriber::connect("cu2vk", VulkanBackend::subscriber().unwrap(), opts(&d)).unwrap();
    let vk = sub.backend().device().unwrap();
    assert_eq!(vk.info().device_uuid, cuda.uuid());
    let mut buf = Vec::new();
    for n in 0..30 {
        let frame = pattern(n, W, H);
        let (y, uv) = frame.split_at(W * H);
        let r = p
            .publish(FrameMeta::default(), |slot, s| {
                slot.copy_plane_from_host(s, 0, y, W)?;
                slot.copy_plane_from_host(s, 1, uv, W)?;
                slot.fence(RawStream::DEFAULT)
            })
            .unwrap();
        assert!(matches!(r, Published::Committed(_)));
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert!(!f.memory().is_dedicated(), "CUDA memory is a plain import");
        f.copy_to_host(&mut buf).unwrap();
        assert!(buf == frame, "frame {n} differs");
    }
    println!("figure: CUDA VMM -> Vulkan: 30 frames of 1280x720 NV12 bit-exact");
    p.finish();
}

/// A Vulkan publisher, a CUDA subscriber (`cuImportExternalMemory`).
#[test]
#[ignore = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh"]
fn cuda_subscriber_reads_a_vulkan_publisher() {
    let cuda = need_gpu();
    let d = dir("vk2cu");
    let desc = StreamDesc::packed(W as u32, H as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(vulkan_on(&cuda), config("vk2cu", &d), desc).unwrap();
    let sub = Subscriber::connect("vk2cu", CudaBackend::subscriber().unwrap(), opts(&d)).unwrap();
    assert_eq!(sub.backend().memory_kind(), MemoryKind::VulkanOpaqueFd);
    let mut buf = Vec::new();
    for n in 0..30 {
        let frame = pattern(n, W, H);
        let (y, uv) = frame.split_at(W * H);
        let r = p
            .publish(FrameMeta::default(), |slot, s| {
                slot.write_from_host(s, &[(y, W), (uv, W)])
            })
            .unwrap();
        assert!(matches!(r, Published::Committed(_)));
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        let plane = f.device_plane(1).unwrap();
        assert_eq!((plane.pitch, plane.rows), (W, H / 2));
        f.copy_to_host(&mut buf).unwrap();
        assert!(buf == frame, "frame {n} differs");
    }
    println!("figure: Vulkan -> CUDA: 30 frames of 1280x720 NV12 bit-exact");
    p.finish();
}

/// Vulkan to Vulkan on NVIDIA's driver (no memfds: the driver validates).
#[test]
#[ignore = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh"]
fn vulkan_to_vulkan_on_the_gpu() {
    let cuda = need_gpu();
    let d = dir("vk2vk");
    let desc = StreamDesc::packed(W as u32, H as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(vulkan_on(&cuda), config("vk2vk", &d), desc).unwrap();
    let sub = Subscriber::connect("vk2vk", VulkanBackend::subscriber().unwrap(), opts(&d)).unwrap();
    let mut buf = Vec::new();
    for n in 0..30 {
        let frame = pattern(n, W, H);
        let (y, uv) = frame.split_at(W * H);
        p.publish(FrameMeta::default(), |slot, s| {
            slot.write_from_host(s, &[(y, W), (uv, W)])
        })
        .unwrap();
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert!(f.memory().is_dedicated());
        f.copy_to_host(&mut buf).unwrap();
        assert!(buf == frame, "frame {n} differs");
    }
    // An import claiming a larger slot than the allocation must fail, not
    // map beyond it: what the NVIDIA driver does with a wrong size.
    let v = vulkan_on(&cuda);
    let slot = v.allocate(0, 1000).unwrap();
    let mut s = VulkanBackend::subscriber().unwrap();
    s.attach(&cuframes_core::runtime::Peer {
        memory_kind: MemoryKind::VulkanOpaqueFd,
        sync_kind: cuframes_core::SyncKind::HostFence,
        gpu_uuid: v.gpu_uuid(),
        slot_size: 1000,
        slot_count: 2,
    })
    .unwrap();
    let wrong = s.import(v.export(&slot).unwrap().fd, &[], 5 << 20);
    println!(
        "figure: NVIDIA Vulkan import of a 2 MiB opaque fd as 6 MiB: {}",
        match &wrong {
            Ok(_) => "accepted (the driver does not check the size)".to_string(),
            Err(e) => format!("refused ({e})"),
        }
    );
    p.finish();
}

/// `VulkanTimeline`: per-slot timeline semaphores exported as opaque fds;
/// the publisher commits once the upload is submitted and the subscriber
/// waits for the slot's semaphore to reach the frame's `seq`.
#[test]
#[ignore = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh"]
fn vulkan_timeline_semaphores_order_frames_across_processes() {
    let cuda = need_gpu();
    let d = dir("vktl");
    let desc = StreamDesc::packed(W as u32, H as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    let backend = vulkan_with(&cuda, VulkanSync::Timeline);
    assert_eq!(backend.sync_kind(), cuframes_core::SyncKind::VulkanTimeline);
    let mut p = Publisher::create(backend, config("vktl", &d), desc).unwrap();
    let sub = Subscriber::connect("vktl", VulkanBackend::subscriber().unwrap(), opts(&d)).unwrap();
    assert_eq!(
        sub.backend().sync_kind(),
        cuframes_core::SyncKind::VulkanTimeline
    );
    let mut buf = Vec::new();
    let frames = 60;
    for n in 0..frames {
        let frame = pattern(n, W, H);
        let (y, uv) = frame.split_at(W * H);
        p.publish(FrameMeta::default(), |slot, s| {
            slot.write_from_host(s, &[(y, W), (uv, W)])
        })
        .unwrap();
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        let (_, value) = f.wait_semaphore().expect("a timeline semaphore per slot");
        assert_eq!(value, f.meta().seq);
        f.copy_to_host(&mut buf).unwrap();
        assert!(buf == frame, "frame {n} differs");
    }
    // A CUDA subscriber cannot wait on Vulkan semaphores: refused.
    let e = Subscriber::connect("vktl", CudaBackend::subscriber().unwrap(), opts(&d));
    assert!(e.is_err(), "a CUDA subscriber must refuse VulkanTimeline");
    println!("figure: Vulkan timeline semaphores: {frames} frames of 1280x720 NV12 bit-exact");
    p.finish();
}

/// VRAM a Vulkan subscriber's imports take beyond its device: 8 slots of
/// 1080p NV12 (4 MiB allocations) exported by a Vulkan publisher and by a
/// CUDA VMM publisher, imported by a Vulkan subscriber whose device is
/// already open; free VRAM (`cuMemGetInfo`, device-wide) before and after
/// the imports. Importing must not copy the slots.
#[test]
#[ignore = "needs an NVIDIA GPU with its Vulkan driver: run by scripts/gpu-tests.sh"]
fn vulkan_imports_take_no_vram_beyond_the_device() {
    let cuda = need_gpu();
    let desc = StreamDesc::packed(1920, 1080, PixelFormat::Nv12, Codec::H264).unwrap();
    let size = desc.frame_size;
    for kind in [MemoryKind::VulkanOpaqueFd, MemoryKind::CudaVmmFd] {
        // The publishers and their slots live to the end of each round.
        let (exports, uuid, _keep): (Vec<_>, [u8; 16], Box<dyn std::any::Any>) = match kind {
            MemoryKind::VulkanOpaqueFd => {
                let p = vulkan_on(&cuda);
                let slots: Vec<_> = (0..8).map(|i| p.allocate(i, size).unwrap()).collect();
                let e = slots.iter().map(|s| p.export(s).unwrap()).collect();
                let uuid = p.gpu_uuid();
                (e, uuid, Box::new((p, slots)))
            }
            _ => {
                let p = CudaBackend::publisher(CudaConfig::default()).unwrap();
                let slots: Vec<_> = (0..8).map(|i| p.allocate(i, size).unwrap()).collect();
                let e = slots.iter().map(|s| p.export(s).unwrap()).collect();
                let uuid = p.gpu_uuid();
                (e, uuid, Box::new((p, slots)))
            }
        };
        let mut sub = VulkanBackend::subscriber().unwrap();
        sub.attach(&cuframes_core::runtime::Peer {
            memory_kind: kind,
            sync_kind: cuframes_core::SyncKind::HostFence,
            gpu_uuid: uuid,
            slot_size: size,
            slot_count: 8,
        })
        .unwrap();
        let before = cuda.memory_info().unwrap().free;
        let imported: Vec<_> = exports
            .into_iter()
            .map(|e| sub.import(e.fd, &e.handle, size).unwrap())
            .collect();
        let after = cuda.memory_info().unwrap().free;
        let mib = before.saturating_sub(after) as f64 / 1048576.0;
        println!(
            "figure: a Vulkan subscriber importing 8 {kind:?} slots of 1920x1080 NV12 ({} MiB each) took {mib:.2} MiB of VRAM beyond its device",
            imported[0].size() >> 20
        );
        assert!(
            mib < 8.0,
            "imports took {mib:.2} MiB: copies of the 32 MiB ring?"
        );
    }
}
