//! CUDA backend tests on a real GPU. They are `#[ignore]`d: CI has no GPU and
//! reports them as ignored; `scripts/gpu-tests.sh` runs them on the GPU
//! machine with `--ignored`. Each prints `skipped:` and fails if run with
//! `--ignored` where there is no driver, so they never pass silently.

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{Api, Exporter, Importer};
use cuframes_core::runtime::{Published, Publisher, PublisherConfig, SubscribeOptions, Subscriber};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use cuframes_cuda::{
    driver_present, CudaBackend, CudaConfig, CudaDevice, CudaFrameExt, CudaStream, RawStream,
};
use std::time::Duration;

fn need_gpu() {
    assert!(
        driver_present(),
        "no CUDA driver: GPU tests must run on the GPU machine (scripts/gpu-tests.sh)"
    );
}

fn stream_desc(w: u32, h: u32) -> StreamDesc {
    StreamDesc::packed(w, h, PixelFormat::Nv12, Codec::H264).unwrap()
}

/// A frame whose every byte depends on (frame, offset).
fn pattern(n: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(n * 7) as u8)
        .collect()
}

fn packed_planes(desc: &StreamDesc, frame: &[u8]) -> Vec<(usize, usize)> {
    // (offset into `frame`, row bytes) of each plane when packed.
    let mut out = Vec::new();
    let mut at = 0;
    for i in 0..2 {
        let (row, rows) = desc
            .format()
            .plane_extent(i, desc.width as u32, desc.height as u32)
            .unwrap();
        out.push((at, row as usize));
        at += (row * rows) as usize;
    }
    assert_eq!(at, frame.len());
    out
}

#[test]
#[ignore = "needs an NVIDIA GPU: run by scripts/gpu-tests.sh"]
fn device_is_found_by_uuid() {
    need_gpu();
    let d = CudaDevice::open(0).unwrap();
    assert_ne!(d.uuid(), [0; 16]);
    let again = CudaDevice::by_uuid(&d.uuid()).unwrap();
    assert_eq!(again.ordinal(), d.ordinal());
    assert!(matches!(
        CudaDevice::by_uuid(&[0xee; 16]),
        Err(cuframes_cuda::CudaError::UuidNotFound(_))
    ));
    let m = d.memory_info().unwrap();
    println!(
        "figure: device 0: {} {} , {} MiB total, {} MiB free",
        d.name(),
        cuframes_cuda::uuid_string(&d.uuid()),
        m.total >> 20,
        m.free >> 20
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU: run by scripts/gpu-tests.sh"]
fn vmm_fd_slot_round_trips_through_an_import() {
    need_gpu();
    let publisher = CudaBackend::publisher(CudaConfig::default()).unwrap();
    let desc = stream_desc(64, 32);
    let mut slot = publisher.allocate(0, desc.frame_size).unwrap();
    let frame = pattern(1, 64 * 32 * 3 / 2);
    for (i, (at, row)) in packed_planes(&desc, &frame).into_iter().enumerate() {
        slot.copy_plane_from_host(&desc, i, &frame[at..], row)
            .unwrap();
    }
    slot.fence(RawStream::DEFAULT).unwrap();
    let export = publisher.export(&slot).unwrap();
    assert!(export.fd.is_some() && export.handle.is_empty());
    let mut subscriber = CudaBackend::subscriber().unwrap();
    subscriber
        .attach(&cuframes_core::runtime::Peer {
            memory_kind: publisher.memory_kind(),
            sync_kind: publisher.sync_kind(),
            gpu_uuid: publisher.gpu_uuid(),
            slot_size: desc.frame_size,
            slot_count: 1,
        })
        .unwrap();
    let imported = subscriber
        .import(export.fd, &export.handle, desc.frame_size)
        .unwrap();
    assert_ne!(imported.device_ptr(), slot.device_ptr(), "a second mapping");
    let mut back = vec![0u8; frame.len()];
    let mut at = 0;
    for i in 0..2 {
        at += imported
            .copy_plane_to_host(&desc, i, &mut back[at..])
            .unwrap();
    }
    assert_eq!(back, frame);
    println!(
        "figure: VMM import mapped read-only: {}",
        imported.is_read_only()
    );
}

fn ring_round_trip(config: CudaConfig, frames: u64, release_after: bool) {
    let dir = std::env::temp_dir().join(format!("cuframes-gpu-{}", std::process::id()));
    let key = format!("gpu{frames}{}", release_after as u8);
    let desc = stream_desc(256, 128);
    let mut cfg = PublisherConfig::new(&key);
    cfg.runtime_dir = Some(dir.clone());
    cfg.policy = PublishPolicy::Wait;
    cfg.slots = 4;
    let mut publisher =
        Publisher::create(CudaBackend::publisher(config).unwrap(), cfg, desc).unwrap();
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(dir);
    let sub = Subscriber::connect(&key, CudaBackend::subscriber().unwrap(), opts).unwrap();
    let device = sub.backend().device().unwrap().clone();
    let stream = CudaStream::new(&device).unwrap();
    let len = 256 * 128 * 3 / 2;
    let mut buf = Vec::new();
    for n in 0..frames {
        let frame = pattern(n, len);
        let planes = packed_planes(&desc, &frame);
        let r = publisher
            .publish(FrameMeta::default(), |slot, d| {
                for (i, (at, row)) in planes.iter().enumerate() {
                    slot.copy_plane_from_host(d, i, &frame[*at..], *row)?;
                }
                slot.fence(RawStream::DEFAULT)
            })
            .unwrap();
        assert!(matches!(r, Published::Committed(_)));
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(f.meta().seq, n + 1);
        f.wait_in(stream.raw()).unwrap();
        let y = f.device_plane(0).unwrap();
        assert_eq!((y.pitch % 256, y.row_bytes, y.rows), (0, 256, 128));
        f.copy_to_host(&mut buf).unwrap();
        assert_eq!(buf, frame, "frame {n}");
        if release_after {
            f.release_after(stream.raw()).unwrap();
        } else {
            drop(f);
        }
    }
    stream.synchronize().unwrap();
    publisher.finish();
}

#[test]
#[ignore = "needs an NVIDIA GPU: run by scripts/gpu-tests.sh"]
fn vmm_ring_delivers_exact_frames_with_sync_release() {
    need_gpu();
    ring_round_trip(CudaConfig::default(), 40, false);
}

#[test]
#[ignore = "needs an NVIDIA GPU: run by scripts/gpu-tests.sh"]
fn vmm_ring_delivers_exact_frames_with_release_after() {
    need_gpu();
    ring_round_trip(CudaConfig::default(), 40, true);
}

#[test]
#[ignore = "needs an NVIDIA GPU: run by scripts/gpu-tests.sh"]
fn dropping_a_ring_returns_its_vram() {
    need_gpu();
    let d = CudaDevice::open(0).unwrap();
    let before = d.memory_info().unwrap().free;
    let desc = stream_desc(1920, 1080);
    {
        let b = CudaBackend::publisher(CudaConfig::default()).unwrap();
        let slots: Vec<_> = (0..8)
            .map(|i| b.allocate(i, desc.frame_size).unwrap())
            .collect();
        let during = d.memory_info().unwrap().free;
        let used = before.saturating_sub(during);
        println!(
            "figure: 8 VMM slots of 1080p NV12 ({} B each, {} B allocated each): {:.1} MiB of VRAM",
            desc.frame_size,
            slots[0].size(),
            used as f64 / 1048576.0
        );
        assert!(
            used >= 8 * desc.frame_size,
            "the ring must really be in VRAM"
        );
    }
    let after = d.memory_info().unwrap().free;
    assert!(
        after + (2 << 20) >= before,
        "VRAM not returned: free {before} before, {after} after"
    );
}
