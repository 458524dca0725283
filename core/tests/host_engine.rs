//! The publisher and subscriber engines over host memory, in one process
//! (threads). The separate-process tests live with the tools in
//! `decode-nvdec/tests/`.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, Published, Publisher, PublisherConfig, RecvError, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path, key: &str, slots: u32, policy: PublishPolicy) -> PublisherConfig {
    let mut c = PublisherConfig::new(key);
    c.runtime_dir = Some(dir.to_path_buf());
    c.slots = slots;
    c.policy = policy;
    c
}

fn opts(dir: &Path, mode: DeliveryMode) -> SubscribeOptions {
    let mut o = SubscribeOptions::new(mode);
    o.runtime_dir = Some(dir.to_path_buf());
    o
}

fn stream() -> StreamDesc {
    StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap()
}

/// Fills every byte of the frame with `n as u8` and the first 8 with `n`.
fn fill(
    slot: &mut cuframes_core::runtime::HostSlot,
    s: &StreamDesc,
    n: u64,
) -> Result<(), Infallible> {
    let b = &mut slot.bytes_mut()[..s.frame_size as usize];
    b.fill(n as u8);
    b[..8].copy_from_slice(&n.to_le_bytes());
    Ok(())
}

fn frame_number(f: &cuframes_core::runtime::Frame<'_>) -> u64 {
    let (y, _) = f.plane(0).unwrap();
    let n = u64::from_le_bytes(y[..8].try_into().unwrap());
    let (uv, _) = f.plane(1).unwrap();
    assert!(uv.iter().all(|&b| b == n as u8), "torn frame {n}");
    n
}

#[test]
fn in_order_wait_delivers_every_frame_to_every_subscriber() {
    let dir = temp_dir("inorder");
    let mut p = Publisher::create(
        HostBackend,
        config(&dir, "k", 3, PublishPolicy::Wait),
        stream(),
    )
    .unwrap();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let s = Subscriber::connect_host("k", opts(&dir, DeliveryMode::InOrder)).unwrap();
                let mut got = Vec::new();
                loop {
                    match s.next_frame(Duration::from_secs(5)) {
                        Ok(f) => {
                            if i == 0 {
                                std::thread::sleep(Duration::from_micros(300));
                            }
                            got.push(frame_number(&f));
                            assert_eq!(f.meta().source_index, *got.last().unwrap());
                        }
                        Err(RecvError::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                (got, s.stats())
            })
        })
        .collect();
    assert!(p.wait_for_subscribers(3, Duration::from_secs(5)));
    for n in 0..300u64 {
        let meta = FrameMeta {
            source_index: n,
            ..Default::default()
        };
        assert!(matches!(
            p.publish(meta, |slot, s| fill(slot, s, n)).unwrap(),
            Published::Committed(_)
        ));
    }
    p.finish();
    for h in handles {
        let (got, stats) = h.join().unwrap();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        assert_eq!(stats.dropped, 0);
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "socket left behind"
    );
}

#[test]
fn newest_only_skips_and_counts_but_never_tears() {
    let dir = temp_dir("newest");
    let mut p = Publisher::create(
        HostBackend,
        config(&dir, "n", 4, PublishPolicy::DropFrame),
        stream(),
    )
    .unwrap();
    let d2 = dir.clone();
    let h = std::thread::spawn(move || {
        let s = Subscriber::connect_host("n", opts(&d2, DeliveryMode::NewestOnly)).unwrap();
        let mut last = None;
        let mut seen = 0u64;
        while let Ok(f) = s.next_frame(Duration::from_secs(5)) {
            let n = frame_number(&f);
            std::thread::sleep(Duration::from_millis(2));
            assert!(f.is_valid());
            assert!(last.is_none_or(|l| n > l));
            last = Some(n);
            seen += 1;
        }
        (seen, s.stats())
    });
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    for n in 0..2000u64 {
        p.publish(FrameMeta::default(), |slot, s| fill(slot, s, n))
            .unwrap();
    }
    p.finish();
    let (seen, stats) = h.join().unwrap();
    assert!(seen < 2000, "a slow NewestOnly reader must skip");
    assert_eq!(stats.received, seen);
    assert!(stats.dropped > 0);
}

#[test]
fn second_publisher_and_missing_publisher_are_clear_errors() {
    let dir = temp_dir("errors");
    let p = Publisher::create(
        HostBackend,
        config(&dir, "dup", 2, PublishPolicy::DropFrame),
        stream(),
    )
    .unwrap();
    let again = Publisher::create(
        HostBackend,
        config(&dir, "dup", 2, PublishPolicy::DropFrame),
        stream(),
    );
    assert!(matches!(
        again,
        Err(cuframes_core::runtime::CreateError::AlreadyRunning(_))
    ));
    let none = Subscriber::connect_host("nobody", opts(&dir, DeliveryMode::InOrder));
    assert!(matches!(
        none,
        Err(cuframes_core::runtime::ConnectError::NoPublisher { .. })
    ));
    let bad = Subscriber::connect_host("../x", opts(&dir, DeliveryMode::InOrder));
    assert!(matches!(
        bad,
        Err(cuframes_core::runtime::ConnectError::Dir(_))
    ));
    drop(p);
}

/// §5.4 warm pass: a subscriber that has read and released every frame
/// before the next one is published keeps the publisher on two slots of its
/// eight (the newest frame's, which NewestOnly readers could still want, and
/// the one before), where oldest-first would cycle through all eight. A
/// second, InOrder subscriber that reads nothing keeps its unread frames: the
/// warm pass never takes them.
#[test]
fn a_caught_up_subscriber_keeps_the_publisher_on_two_warm_slots() {
    let dir = temp_dir("warm");
    let mut p = Publisher::create(
        HostBackend,
        config(&dir, "k", 8, PublishPolicy::DropFrame),
        stream(),
    )
    .unwrap();
    let s = Subscriber::connect_host("k", opts(&dir, DeliveryMode::InOrder)).unwrap();
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    let mut used = std::collections::BTreeSet::new();
    for n in 1..=40u64 {
        let mut g = p.acquire().expect("a slot");
        if n > 8 {
            used.insert(g.index());
        }
        let st = *g.stream();
        fill(g.slot(), &st, n).unwrap();
        g.commit(FrameMeta::default());
        let f = s.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(frame_number(&f), n);
    }
    assert_eq!(used.len(), 2, "slots used after warm-up: {used:?}");

    // An InOrder reader that joins now (start_seq 40) and reads nothing:
    // frames 41.. are unread by it, so the warm pass must leave them and
    // take the slots of frames both readers are past (≤ 40), even under
    // DropFrame, where unread frames do not block the oldest-first pass.
    let lazy = Subscriber::connect_host("k", opts(&dir, DeliveryMode::InOrder)).unwrap();
    assert!(p.wait_for_subscribers(2, Duration::from_secs(5)));
    for n in 41..=44u64 {
        let mut g = p.acquire().expect("a slot");
        let st = *g.stream();
        fill(g.slot(), &st, n).unwrap();
        g.commit(FrameMeta::default());
        let f = s.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(frame_number(&f), n);
    }
    // Frames 41..=44 are unread by `lazy`: none of their slots was reused.
    for n in 41..=44u64 {
        let f = lazy.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(frame_number(&f), n);
        assert_eq!(f.skipped(), 0);
    }
}
