//! `OwnedFrame` (a lease without the subscriber borrow, for FFI / Python /
//! GStreamer handles) and the two-phase `Publisher::acquire` / `SlotGuard`.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, OwnedFrame, Publisher, PublisherConfig, RecvError, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use std::path::PathBuf;
use std::time::Duration;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(key: &str, slots: u32) -> (Dir, Publisher<HostBackend>, Subscriber) {
    let dir = std::env::temp_dir().join(format!("cuframes-owned-{}-{key}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = PublisherConfig::new(key);
    cfg.runtime_dir = Some(dir.clone());
    cfg.slots = slots;
    cfg.policy = PublishPolicy::DropFrame;
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let p = Publisher::create(HostBackend, cfg, stream).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::NewestOnly);
    o.runtime_dir = Some(dir.clone());
    let sub = Subscriber::connect_host(key, o).unwrap();
    (Dir(dir), p, sub)
}

/// Fills the whole slot with `byte` through the two-phase API.
fn publish_filled(p: &mut Publisher<HostBackend>, byte: u8) -> Option<u64> {
    let mut g = p.acquire()?;
    g.slot().bytes_mut().fill(byte);
    Some(g.commit(FrameMeta::default()))
}

fn assert_send_sync<T: Send + Sync + 'static>() {}

#[test]
fn owned_frame_is_send_sync_static() {
    assert_send_sync::<OwnedFrame<HostBackend>>();
}

#[test]
fn owned_frame_pins_its_slot_and_is_released_on_another_thread() {
    let (_dir, mut p, sub) = setup("pin", 2);
    assert_eq!(publish_filled(&mut p, 0xA1), Some(1));
    let owned = sub.next_frame(Duration::from_secs(5)).unwrap().into_owned();
    assert_eq!(owned.meta().seq, 1);

    // While leased, the slot is never rewritten: with 2 slots, every new
    // frame goes to the other one.
    for b in 0..5u8 {
        assert!(publish_filled(&mut p, b).is_some());
    }
    let (y, pitch) = owned.plane(0).unwrap();
    assert!(pitch >= 64, "pitch {pitch} below the row bytes");
    assert!(y.iter().all(|&b| b == 0xA1), "leased slot was rewritten");
    let mut rows = 0;
    owned.for_each_row(|r| {
        assert!(r.iter().all(|&b| b == 0xA1));
        rows += 1;
    });
    assert_eq!(rows, 32 + 16);

    // Released on another thread: still valid, the lease returned.
    let valid = std::thread::spawn(move || owned.release()).join().unwrap();
    assert!(valid);
    drop(sub);
}

#[test]
fn owned_frame_outliving_its_subscriber_reports_the_lost_lease() {
    // The lease lives as long as the subscriber's connection: at socket EOF
    // the publisher reclaims it (§5.6). The frame stays mapped and readable
    // (no memory error) and says, once its slot is rewritten, that what
    // was read may be torn.
    let (_dir, mut p, sub) = setup("outlive", 2);
    publish_filled(&mut p, 0xB2).unwrap();
    let owned = sub.next_frame(Duration::from_secs(5)).unwrap().into_owned();
    drop(sub);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while owned.is_valid() {
        assert!(
            std::time::Instant::now() < deadline,
            "slot never reused after the subscriber left"
        );
        publish_filled(&mut p, 0x00);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(owned.plane(0).is_some());
    assert!(!owned.release());
}

#[test]
fn dropped_owned_frame_returns_its_lease() {
    let (_dir, mut p, sub) = setup("drop", 2);
    publish_filled(&mut p, 1).unwrap();
    let f = sub.next_frame(Duration::from_secs(5)).unwrap().into_owned();
    // A second owned frame, so that both slots are leased.
    publish_filled(&mut p, 2).unwrap();
    let g = sub.next_frame(Duration::from_secs(5)).unwrap().into_owned();
    assert!(
        publish_filled(&mut p, 3).is_none(),
        "every slot leased: the frame must be dropped"
    );
    assert_eq!(p.stats().dropped, 1);
    std::thread::spawn(move || drop(f)).join().unwrap();
    assert!(
        publish_filled(&mut p, 4).is_some(),
        "the dropped frame's slot is free again"
    );
    drop(g);
}

#[test]
fn abandoned_slot_publishes_nothing() {
    let (_dir, mut p, sub) = setup("abandon", 3);
    {
        let mut g = p.acquire().unwrap();
        g.slot().bytes_mut().fill(0xEE);
        // Dropped without commit.
    }
    assert!(matches!(
        sub.next_frame(Duration::from_millis(100)),
        Err(RecvError::Timeout(_))
    ));
    assert_eq!(p.stats().published, 0);
    assert_eq!(
        publish_filled(&mut p, 0x42),
        Some(1),
        "sequence numbers continue where they were"
    );
    let f = sub.next_frame(Duration::from_secs(5)).unwrap();
    assert_eq!(f.meta().seq, 1);
    assert!(f.plane(0).unwrap().0.iter().all(|&b| b == 0x42));
    assert!(f.release());
}

#[test]
fn slot_guard_describes_the_stream() {
    let (_dir, mut p, _sub) = setup("desc", 2);
    let want = *p.stream();
    let g = p.acquire().unwrap();
    assert_eq!(*g.stream(), want);
    assert!(g.index() < 2);
}
