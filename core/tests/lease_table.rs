//! `Publisher::leases`: the publisher's view of the leases its subscribers
//! hold (their lease rows, `docs/protocol.md` §5.2), which the Python
//! bindings' tests and `Publisher.leases()` read.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HeldLease, HostBackend, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat};
use std::path::PathBuf;
use std::time::Duration;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(key: &str, lease_timeout: Duration) -> (Dir, Publisher<HostBackend>, Subscriber) {
    let dir = std::env::temp_dir().join(format!("cuframes-leases-{}-{key}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = PublisherConfig::new(key);
    cfg.runtime_dir = Some(dir.clone());
    cfg.slots = 2;
    cfg.lease_timeout = lease_timeout;
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let p = Publisher::create(HostBackend, cfg, stream).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::NewestOnly);
    o.runtime_dir = Some(dir.clone());
    let sub = Subscriber::connect_host(key, o).unwrap();
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    (Dir(dir), p, sub)
}

fn publish(p: &mut Publisher<HostBackend>) -> u64 {
    p.acquire().unwrap().commit(FrameMeta::default())
}

#[test]
fn held_frames_are_listed_until_released() {
    let (_dir, mut p, sub) = setup("held", Duration::from_secs(60));
    assert_eq!(p.leases(), vec![]);
    let seq = publish(&mut p);
    let f = sub.next_frame(Duration::from_secs(5)).unwrap();
    let held = HeldLease {
        subscriber: sub.id(),
        seq,
        revoked: false,
    };
    assert_eq!(p.leases(), vec![held]);
    let owned = f.into_owned();
    assert_eq!(p.leases(), vec![held], "into_owned keeps the lease");
    assert!(owned.release());
    assert_eq!(p.leases(), vec![]);
}

#[test]
fn a_revoked_lease_is_listed_as_revoked_also_after_its_slot_is_rewritten() {
    let (_dir, mut p, sub) = setup("revoked", Duration::ZERO);
    let seq = publish(&mut p);
    let f = sub.next_frame(Duration::from_secs(5)).unwrap();
    // Each claim scans the lease rows: the first starts the lease's clock,
    // a later one revokes it (held longer than zero), later ones rewrite
    // its slot.
    let mut seen_revoked = false;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(2));
        publish(&mut p);
        let l = p.leases();
        assert_eq!(l.len(), 1);
        assert_eq!((l[0].subscriber, l[0].seq), (sub.id(), seq));
        seen_revoked |= l[0].revoked;
        if seen_revoked {
            assert!(l[0].revoked, "once revoked, always listed as revoked");
        }
    }
    assert!(seen_revoked);
    assert!(!f.release());
    assert_eq!(p.leases(), vec![]);
}
