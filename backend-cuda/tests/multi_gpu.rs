//! Cross-GPU subscribers on a host with two or more GPUs (`docs/gpu.md`,
//! "Multi-GPU hosts"): a publisher on GPU 0, subscribers on GPU 1 that
//! peer-map the slots or copy each frame. `#[ignore]`d: run by
//! `scripts/gpu-multi.sh` on the two-GPU machine with `--ignored`.
//!
//! Without a driver they fail (never pass silently); with one GPU they
//! print `skipped: needs 2 GPUs` and return, and `scripts/gpu-multi.sh`
//! refuses to run there at all.

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{Publisher, PublisherConfig, SubscribeOptions, Subscriber};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use cuframes_cuda::{
    driver_present, CrossGpu, CudaBackend, CudaConfig, CudaDevice, CudaError, CudaFrameCopy,
    CudaFrameExt, CudaStream, DeviceSelect, FrameAccess, RawStream, SubscriberConfig,
};
use std::path::PathBuf;
use std::time::Duration;

const W: u32 = 256;
const H: u32 = 128;

/// Whether this machine has two GPUs; fails without a driver.
fn two_gpus() -> bool {
    assert!(
        driver_present(),
        "no CUDA driver: GPU tests must run on the GPU machine (scripts/gpu-multi.sh)"
    );
    let n = CudaDevice::count().unwrap();
    if n < 2 {
        println!("skipped: needs 2 GPUs, this machine has {n}");
        return false;
    }
    true
}

fn desc() -> StreamDesc {
    StreamDesc::packed(W, H, PixelFormat::Nv12, Codec::H264).unwrap()
}

/// A frame whose every byte depends on (frame, offset), packed NV12.
fn pattern(n: u64) -> Vec<u8> {
    (0..(W * H * 3 / 2) as usize)
        .map(|i| (i as u64).wrapping_mul(31).wrapping_add(n * 7) as u8)
        .collect()
}

fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("cuframes-mgpu-{}", std::process::id()))
}

/// A publisher on GPU 0 with `slots` slots and the Wait policy.
fn publisher(key: &str, slots: u32) -> Publisher<CudaBackend> {
    let mut cfg = PublisherConfig::new(key);
    cfg.runtime_dir = Some(dir());
    cfg.policy = PublishPolicy::Wait;
    cfg.slots = slots;
    let backend = CudaBackend::publisher(CudaConfig::default()).unwrap();
    Publisher::create(backend, cfg, desc()).unwrap()
}

fn publish(p: &mut Publisher<CudaBackend>, n: u64) {
    let frame = pattern(n);
    let y = (W * H) as usize;
    p.publish(FrameMeta::default(), |slot, d| {
        slot.copy_plane_from_host(d, 0, &frame[..y], W as usize)?;
        slot.copy_plane_from_host(d, 1, &frame[y..], W as usize)?;
        slot.fence(RawStream::DEFAULT)
    })
    .unwrap();
}

fn subscribe(key: &str, cross_gpu: CrossGpu) -> Result<Subscriber<CudaBackend>, String> {
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(dir());
    let backend = CudaBackend::subscriber_with(SubscriberConfig {
        device: Some(DeviceSelect::Ordinal(1)),
        cross_gpu,
    })
    .unwrap();
    Subscriber::connect(key, backend, opts).map_err(|e| format!("{e:#}"))
}

#[test]
#[ignore = "needs 2 NVIDIA GPUs: run by scripts/gpu-multi.sh"]
fn a_subscriber_on_gpu1_reads_peer_mapped_frames_of_gpu0() {
    if !two_gpus() {
        return;
    }
    let g0 = CudaDevice::open(0).unwrap();
    let g1 = CudaDevice::open(1).unwrap();
    let peer = g1.can_access_peer(&g0).unwrap();
    println!("figure: cuDeviceCanAccessPeer(1, 0) = {peer}");
    let key = "mgpu-peer";
    let mut p = publisher(key, 4);
    let sub = match subscribe(key, CrossGpu::PeerMap) {
        Ok(s) => s,
        Err(e) => {
            // Without peer access PeerMap must be refused, with a reason.
            assert!(!peer, "peer access exists but PeerMap failed: {e}");
            assert!(e.contains("cuDeviceCanAccessPeer"), "{e}");
            println!("skipped: no peer access between GPU 0 and 1 (refused as expected: {e})");
            return;
        }
    };
    assert!(peer, "PeerMap connected without peer access");
    assert_eq!(
        sub.backend().frame_access(),
        FrameAccess::PeerMapped { source: 0 }
    );
    assert_eq!(sub.backend().device().unwrap().ordinal(), 1);
    let stream = CudaStream::new(&g1).unwrap();
    let mut host = Vec::new();
    for n in 0..20 {
        publish(&mut p, n);
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(f.device().ordinal(), 1, "peer-mapped pointers are GPU 1's");
        f.wait_in(stream.raw()).unwrap();
        f.copy_to_host(&mut host).unwrap();
        assert_eq!(host, pattern(n), "frame {n} read through the peer mapping");
        f.release_after(stream.raw()).unwrap();
    }
    stream.synchronize().unwrap();
    p.finish();
}

#[test]
#[ignore = "needs 2 NVIDIA GPUs: run by scripts/gpu-multi.sh"]
fn a_copy_on_gpu1_outlives_the_lease_of_its_frame() {
    if !two_gpus() {
        return;
    }
    let key = "mgpu-copy";
    // Two slots: frame 3 must reuse frame 1's slot.
    let mut p = publisher(key, 2);
    let sub = subscribe(key, CrossGpu::Copy).unwrap();
    let access = sub.backend().frame_access();
    println!("figure: CrossGpu::Copy resolved to {access:?}");
    assert!(matches!(
        access,
        FrameAccess::PeerMapped { source: 0 } | FrameAccess::SourceMapped { source: 0 }
    ));
    let g1 = sub.backend().device().unwrap().clone();
    assert_eq!(g1.ordinal(), 1);
    let stream = CudaStream::new(&g1).unwrap();
    let mut copy = CudaFrameCopy::new(&g1, &sub.stream()).unwrap();
    assert_eq!(copy.device().ordinal(), 1);
    publish(&mut p, 1);
    let f1 = sub.next_frame(Duration::from_secs(5)).unwrap();
    let seq1 = f1.meta().seq;
    f1.copy_into(&mut copy, stream.raw()).unwrap();
    f1.release_after(stream.raw()).unwrap();
    // Frame 2 held in the other slot: frame 3 can only go into frame 1's
    // slot (free once the copy is done), which is thereby rewritten.
    let mut host = Vec::new();
    publish(&mut p, 2);
    let f2 = sub.next_frame(Duration::from_secs(5)).unwrap();
    publish(&mut p, 3);
    let f3 = sub.next_frame(Duration::from_secs(5)).unwrap();
    f3.copy_to_host(&mut host).unwrap();
    assert_eq!(host, pattern(3));
    drop((f2, f3));
    copy.copy_to_host(stream.raw(), &mut host).unwrap();
    assert_eq!(copy.meta().seq, seq1);
    assert_eq!(
        host,
        pattern(1),
        "the copy of frame 1 after its slot was rewritten"
    );
    let y = copy.device_plane(0).unwrap();
    assert_eq!((y.row_bytes, y.rows), (W as usize, H as usize));
    // A copy too small for the frame is refused, not overrun.
    let tiny = StreamDesc::packed(16, 16, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut small = CudaFrameCopy::new(&g1, &tiny).unwrap();
    publish(&mut p, 4);
    let f = sub.next_frame(Duration::from_secs(5)).unwrap();
    assert!(matches!(
        f.copy_into(&mut small, stream.raw()),
        Err(CudaError::Layout(_))
    ));
    drop(f);
    p.finish();
}

#[test]
#[ignore = "needs 2 NVIDIA GPUs: run by scripts/gpu-multi.sh"]
fn a_same_gpu_subscriber_copies_to_the_other_gpu_with_cu_memcpy_peer() {
    if !two_gpus() {
        return;
    }
    // The subscriber works on GPU 0 (local slots); its copy lives on GPU 1:
    // copy_into goes through cuMemcpyPeerAsync between the two contexts.
    let key = "mgpu-peercopy";
    let mut p = publisher(key, 4);
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(dir());
    let sub = Subscriber::connect(key, CudaBackend::subscriber().unwrap(), opts).unwrap();
    assert_eq!(sub.backend().frame_access(), FrameAccess::Local);
    let g1 = CudaDevice::open(1).unwrap();
    let stream = CudaStream::new(&g1).unwrap();
    let mut copy = CudaFrameCopy::new(&g1, &sub.stream()).unwrap();
    let mut host = Vec::new();
    for n in 0..10 {
        publish(&mut p, n);
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(f.device().ordinal(), 0);
        f.copy_into(&mut copy, stream.raw()).unwrap();
        f.release_after(stream.raw()).unwrap();
        copy.copy_to_host(stream.raw(), &mut host).unwrap();
        assert_eq!(host, pattern(n), "frame {n} copied to GPU 1");
    }
    p.finish();
}

#[test]
#[ignore = "needs 2 NVIDIA GPUs: run by scripts/gpu-multi.sh"]
fn a_device_that_is_not_here_is_refused_at_connect() {
    if !two_gpus() {
        return;
    }
    let key = "mgpu-nodev";
    let mut p = publisher(key, 2);
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(dir());
    let n = CudaDevice::count().unwrap();
    let backend = CudaBackend::subscriber_with(SubscriberConfig {
        device: Some(DeviceSelect::Ordinal(n)),
        cross_gpu: CrossGpu::Auto,
    })
    .unwrap();
    let e = format!(
        "{:#}",
        Subscriber::connect(key, backend, opts).err().unwrap()
    );
    assert!(e.contains(&format!("no CUDA device {n}")), "{e}");
    publish(&mut p, 0);
    p.finish();
}
