//! Mid-stream changes (STREAM_CHANGED + re-WELCOME) and automatic
//! reconnection, over host memory in one process. Reconnection after a
//! publisher killed with SIGKILL is tested with the tools in
//! `decode-nvdec/tests/tools.rs`.
#![cfg(target_os = "linux")]

use cuframes_core::layout::{StreamDesc, FLAG_DISCONTINUITY};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostSlot, Publisher, PublisherConfig, Reconnect, RecvError, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-chg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path, key: &str, policy: PublishPolicy) -> PublisherConfig {
    let mut c = PublisherConfig::new(key);
    c.runtime_dir = Some(dir.to_path_buf());
    c.slots = 4;
    c.policy = policy;
    c
}

fn opts(dir: &Path, mode: DeliveryMode) -> SubscribeOptions {
    let mut o = SubscribeOptions::new(mode);
    o.runtime_dir = Some(dir.to_path_buf());
    o
}

fn desc(w: u32, h: u32) -> StreamDesc {
    StreamDesc::packed(w, h, PixelFormat::Nv12, Codec::H264).unwrap()
}

fn publish(p: &mut Publisher<cuframes_core::runtime::HostBackend>, n: u64) {
    let r = p.publish(
        FrameMeta::default(),
        |slot: &mut HostSlot, s: &StreamDesc| {
            let b = &mut slot.bytes_mut()[..s.frame_size as usize];
            b.fill(n as u8);
            b[..8].copy_from_slice(&n.to_le_bytes());
            Ok::<_, Infallible>(())
        },
    );
    r.unwrap();
}

fn number(f: &cuframes_core::runtime::Frame<'_>) -> u64 {
    let (y, _) = f.plane(0).unwrap();
    u64::from_le_bytes(y[..8].try_into().unwrap())
}

/// Waits (generously) for the next frame.
fn next<'a>(sub: &'a Subscriber) -> cuframes_core::runtime::Frame<'a> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sub.next_frame(Duration::from_millis(100)) {
            Ok(f) => return f,
            Err(RecvError::Timeout(_)) if Instant::now() < deadline => {}
            Err(e) => panic!("no frame: {e}"),
        }
    }
}

#[test]
fn in_order_subscriber_reads_old_ring_then_new_ring_on_the_same_connection() {
    let dir = temp_dir("inorder");
    let mut p = Publisher::create(
        cuframes_core::runtime::HostBackend,
        config(&dir, "chg", PublishPolicy::Wait),
        desc(64, 32),
    )
    .unwrap();
    let sub = Subscriber::connect_host("chg", opts(&dir, DeliveryMode::InOrder)).unwrap();
    let id = sub.id();
    for n in 1..=3 {
        publish(&mut p, n);
    }
    // Hold a frame of the old ring across the change.
    let held = next(&sub);
    assert_eq!(number(&held), 1);
    assert_eq!((p.layout().width(), p.layout().height()), (64, 32));
    p.change_stream(desc(128, 48)).unwrap();
    assert_eq!(p.stream().generation, 2);
    // The layout follows the new description.
    assert_eq!(
        p.layout(),
        &p.stream().validate(p.stream().frame_size).unwrap()
    );
    assert_eq!((p.layout().width(), p.layout().height()), (128, 48));
    for n in 4..=6 {
        publish(&mut p, n);
    }
    let mut seen = vec![];
    let mut changed_at = None;
    while seen.len() < 5 {
        let f = next(&sub);
        if f.stream_changed() {
            changed_at = Some(f.meta().seq);
        }
        let n = number(&f);
        let expect = if n <= 3 { (64, 32, 1) } else { (128, 48, 2) };
        assert_eq!(
            (f.stream().width, f.stream().height, f.meta().generation),
            expect,
            "frame {n}"
        );
        assert_eq!(f.meta().seq, n, "sequence numbers continue across rings");
        seen.push(n);
    }
    assert_eq!(seen, vec![2, 3, 4, 5, 6]);
    assert_eq!(
        changed_at,
        Some(4),
        "the first frame of the new ring reports the change"
    );
    // The old frame is still readable after the switch.
    assert_eq!(number(&held), 1);
    assert_eq!(sub.stream().width, 128);
    assert_eq!(sub.id(), id, "same connection");
    let st = sub.stats();
    assert_eq!((st.dropped, st.stream_changes, st.reconnects), (0, 1, 0));
    // The old ring is freed only once the held frame is gone.
    publish(&mut p, 7);
    assert_eq!(
        p.retired_rings(),
        1,
        "a frame of the old ring is still held"
    );
    drop(held);
    let _ = next(&sub);
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.retired_rings() > 0 && Instant::now() < deadline {
        publish(&mut p, 8);
        let _ = sub.next_frame(Duration::from_millis(50));
    }
    assert_eq!(p.retired_rings(), 0, "old ring freed once nobody needs it");
    // A new subscriber gets the new ring.
    let late = Subscriber::connect_host("chg", opts(&dir, DeliveryMode::NewestOnly)).unwrap();
    assert_eq!(late.stream().width, 128);
}

#[test]
fn wait_policy_does_not_overwrite_new_frames_of_a_subscriber_still_in_the_old_ring() {
    let dir = temp_dir("wait");
    let mut cfg = config(&dir, "chgwait", PublishPolicy::Wait);
    cfg.wait_timeout = Duration::from_secs(30);
    let mut p = Publisher::create(cuframes_core::runtime::HostBackend, cfg, desc(64, 32)).unwrap();
    let sub = Subscriber::connect_host("chgwait", opts(&dir, DeliveryMode::InOrder)).unwrap();
    for n in 1..=4 {
        publish(&mut p, n);
    }
    p.change_stream(desc(32, 16)).unwrap();
    for n in 5..=8 {
        publish(&mut p, n); // fills the 4 new slots
    }
    // A 9th would have to overwrite frame 5, unread: publish it in a thread
    // and check the subscriber still gets every frame in order.
    let t = std::thread::spawn(move || {
        publish(&mut p, 9);
        p
    });
    let got: Vec<u64> = (0..9).map(|_| number(&next(&sub))).collect();
    assert_eq!(got, (1..=9).collect::<Vec<_>>());
    assert_eq!(sub.stats().dropped, 0);
    let _p = t.join().unwrap();
}

#[test]
fn reconnect_resumes_after_a_restarted_publisher_with_a_discontinuity() {
    let dir = temp_dir("reconnect");
    let p = Publisher::create(
        cuframes_core::runtime::HostBackend,
        config(&dir, "rec", PublishPolicy::DropFrame),
        desc(64, 32),
    )
    .unwrap();
    let mut o = opts(&dir, DeliveryMode::InOrder);
    o.reconnect = Some(Reconnect::default());
    let sub = Subscriber::connect_host("rec", o).unwrap();
    let mut p = p;
    publish(&mut p, 1);
    assert_eq!(number(&next(&sub)), 1);
    let held = next_or_none(&sub);
    assert!(held.is_none());
    drop(p); // GOODBYE Shutdown: reconnect
    assert!(matches!(
        sub.next_frame(Duration::from_millis(100)),
        Err(RecvError::Timeout(_))
    ));
    let mut p = Publisher::create(
        cuframes_core::runtime::HostBackend,
        config(&dir, "rec", PublishPolicy::DropFrame),
        desc(96, 32),
    )
    .unwrap();
    // The subscriber reconnects from inside next_frame; frames published
    // before it joins are not for it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.subscriber_count() == 0 {
        assert!(Instant::now() < deadline, "no reconnect within 5 s");
        assert!(matches!(
            sub.next_frame(Duration::from_millis(20)),
            Err(RecvError::Timeout(_))
        ));
    }
    publish(&mut p, 100);
    let f = next(&sub);
    assert_eq!(number(&f), 100);
    assert!(f.meta().flags & FLAG_DISCONTINUITY != 0);
    assert!(f.stream_changed(), "the new publisher's stream differs");
    assert_eq!(f.stream().width, 96);
    drop(f);
    assert_eq!(sub.stats().reconnects, 1);
    publish(&mut p, 101);
    let f = next(&sub);
    assert_eq!(f.meta().flags & FLAG_DISCONTINUITY, 0);
    drop(f);
    // End of stream: no reconnect.
    p.finish();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sub.next_frame(Duration::from_millis(100)) {
            Err(RecvError::Disconnected) => break,
            Err(RecvError::Timeout(_)) if Instant::now() < deadline => {}
            other => panic!(
                "expected Disconnected, got {:?}",
                other.map(|f| f.meta().seq)
            ),
        }
    }
    assert_eq!(sub.stats().reconnects, 1);
}

fn next_or_none<'a>(sub: &'a Subscriber) -> Option<cuframes_core::runtime::Frame<'a>> {
    sub.next_frame(Duration::from_millis(20)).ok()
}

#[test]
fn without_reconnect_a_vanished_publisher_is_disconnected_and_give_up_works() {
    let dir = temp_dir("noreconnect");
    let p = Publisher::create(
        cuframes_core::runtime::HostBackend,
        config(&dir, "norec", PublishPolicy::DropFrame),
        desc(64, 32),
    )
    .unwrap();
    let sub = Subscriber::connect_host("norec", opts(&dir, DeliveryMode::InOrder)).unwrap();
    let mut o = opts(&dir, DeliveryMode::InOrder);
    o.reconnect = Some(Reconnect {
        give_up_after: Some(Duration::from_millis(300)),
        ..Reconnect::default()
    });
    let giving_up = Subscriber::connect_host("norec", o).unwrap();
    drop(p);
    assert!(matches!(
        sub.next_frame(Duration::from_secs(5)),
        Err(RecvError::Disconnected)
    ));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match giving_up.next_frame(Duration::from_millis(100)) {
            Err(RecvError::Disconnected) => break,
            Err(RecvError::Timeout(_)) if Instant::now() < deadline => {}
            other => panic!(
                "expected Disconnected, got {:?}",
                other.map(|f| f.meta().seq)
            ),
        }
    }
}
