//! The two-phase connect (`docs/protocol.md` §6): `Welcomed::handshake`
//! reports what the publisher offers before anything is imported, and
//! `Welcomed::import` imports with the backend chosen from it, on the same
//! connection.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    Api, ConnectError, HostBackend, HostError, HostImported, HostSlot, Importer, Publisher,
    PublisherConfig, SubscribeOptions, Welcomed,
};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, PublishPolicy};
use rustix::fd::OwnedFd;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-2p-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn publisher(dir: &Path, key: &str, stream: StreamDesc) -> Publisher<HostBackend> {
    let mut c = PublisherConfig::new(key);
    c.runtime_dir = Some(dir.to_path_buf());
    c.slots = 4;
    c.policy = PublishPolicy::DropFrame;
    Publisher::create(HostBackend, c, stream).unwrap()
}

fn opts(dir: &Path) -> SubscribeOptions {
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(dir.to_path_buf());
    o
}

fn publish(p: &mut Publisher<HostBackend>, n: u8) {
    let meta = FrameMeta {
        source_index: u64::from(n),
        ..Default::default()
    };
    p.publish(meta, |slot: &mut HostSlot, s: &StreamDesc| {
        slot.bytes_mut()[..s.frame_size as usize].fill(n);
        Ok::<(), Infallible>(())
    })
    .unwrap();
}

#[test]
fn the_offer_is_known_before_import_and_import_reads_on_the_same_connection() {
    let dir = temp_dir("offer");
    let stream = StreamDesc::packed(96, 48, PixelFormat::Nv12, Codec::Hevc).unwrap();
    let mut p = publisher(&dir, "cam", stream);
    let welcomed = Welcomed::handshake("cam", opts(&dir)).unwrap();
    let offer = welcomed.offer();
    assert_eq!(offer.memory_kind(), MemoryKind::HostMemfd);
    assert_eq!(offer.gpu_uuid(), [0; 16]);
    assert_eq!(offer.stream.width, 96);
    assert_eq!(offer.stream.height, 48);
    assert_eq!(offer.stream.codec, u64::from(Codec::Hevc.code()));
    assert_eq!(offer.peer.slot_count, 4);
    assert!(!offer.packets);
    assert_eq!(welcomed.key(), "cam");
    // The publisher counts the connection once HELLO is handled.
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));

    let sub = welcomed.import(HostBackend).unwrap();
    assert_eq!(sub.id(), offer.subscriber_id);
    publish(&mut p, 7);
    let f = sub.next_frame(Duration::from_secs(5)).unwrap();
    assert_eq!(f.meta().source_index, 7);
    assert!(f.plane(0).unwrap().0.iter().all(|&b| b == 7));
    drop(f);
    // One connection made it all: the publisher never saw a second one.
    assert_eq!(p.stats().subscribers, 1);
    drop(sub);
    p.finish();
}

/// An import-only backend (no `Exporter`: the roles are separate traits)
/// that refuses every memory kind, as a GPU-only backend refuses host
/// memory.
struct Refusing;

impl Api for Refusing {
    type Slot = HostSlot;
    type Imported = HostImported;
    type Error = HostError;

    fn memory_kind(&self) -> MemoryKind {
        MemoryKind::CudaVmmFd
    }
}

impl Importer for Refusing {
    fn accepts(&self, _kind: MemoryKind) -> bool {
        false
    }

    fn import(
        &self,
        _fd: Option<OwnedFd>,
        _handle: &[u8],
        _size: u64,
    ) -> Result<HostImported, HostError> {
        unreachable!("a refused memory kind is never imported")
    }
}

#[test]
fn a_backend_that_refuses_the_offer_fails_import_and_the_connection_closes() {
    let dir = temp_dir("refuse");
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let p = publisher(&dir, "cam", stream);
    let welcomed = Welcomed::handshake("cam", opts(&dir)).unwrap();
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    match welcomed.import(Refusing) {
        Err(ConnectError::MemoryKind { theirs, ours }) => {
            assert_eq!(theirs, MemoryKind::HostMemfd);
            assert_eq!(ours, MemoryKind::CudaVmmFd);
        }
        Err(e) => panic!("expected MemoryKind, got {e}"),
        Ok(_) => panic!("a refusing backend imported"),
    }
    // The failed import dropped the connection: the publisher sees EOF.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while p.subscriber_count() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p.subscriber_count(), 0);
}

#[test]
fn a_welcomed_connection_dropped_unimported_frees_its_seat() {
    let dir = temp_dir("drop");
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let p = publisher(&dir, "cam", stream);
    let welcomed = Welcomed::handshake("cam", opts(&dir)).unwrap();
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    drop(welcomed);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while p.subscriber_count() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(p.subscriber_count(), 0);
}

#[test]
fn handshake_without_a_publisher_is_no_publisher() {
    let dir = temp_dir("none");
    assert!(matches!(
        Welcomed::handshake("nobody", opts(&dir)),
        Err(ConnectError::NoPublisher { .. })
    ));
}
