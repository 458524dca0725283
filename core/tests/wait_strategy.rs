//! The subscriber's default wait (`WaitStrategy`, `docs/protocol.md` §5.5):
//! at a camera-like pace it anticipates the next commit and sees it while
//! spinning, and it never returns later than its timeout by more than a
//! futex slice. One test per concern, in-process (publisher thread,
//! subscriber thread).
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, Publisher, PublisherConfig, RecvError, SubscribeOptions, Subscriber, WaitStrategy,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-wait-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn publisher(dir: &Path) -> Publisher<HostBackend> {
    let mut c = PublisherConfig::new("w");
    c.runtime_dir = Some(dir.to_path_buf());
    let s = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    Publisher::create(HostBackend, c, s).unwrap()
}

fn subscriber(dir: &Path, wait: WaitStrategy) -> Subscriber {
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(dir.to_path_buf());
    o.wait = wait;
    Subscriber::connect_host("w", o).unwrap()
}

/// Frames every 20 ms (a pace far beyond the 50 µs spin, and past the
/// futex's 10 ms slices): without anticipation no commit would land inside
/// a spin; with it, the subscriber naps until just before each commit and
/// sees it spinning. The assertion is loose (one hit of 24 frames) so that
/// a loaded machine, where a descheduled spin gives up, does not fail it;
/// anticipation that never spins (the bug this guards against) gives 0.
#[test]
fn anticipation_spins_across_the_commit_at_a_camera_pace() {
    let dir = temp_dir("pace");
    let mut p = publisher(&dir);
    let s = subscriber(&dir, WaitStrategy::default());
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let start = Instant::now();
            for n in 0..24u32 {
                let due = start + Duration::from_millis(20) * n;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                p.publish(FrameMeta::default(), |_, _| Ok::<_, Infallible>(()))
                    .unwrap();
            }
        });
        for _ in 0..24 {
            s.next_frame(Duration::from_secs(5)).unwrap();
        }
    });
    let st = s.stats();
    assert_eq!(st.received, 24);
    assert!(
        st.spin_hits >= 1,
        "no commit was seen while spinning: {st:?}"
    );
}

/// A wait with nothing published ends at its timeout, not a futex slice
/// (10 ms) later, with the anticipating wait as with the plain futex —
/// including right after a paced stream stopped (the nap must not overrun
/// the deadline).
#[test]
fn timeouts_are_kept_with_either_strategy() {
    for (name, wait) in [
        ("default", WaitStrategy::default()),
        ("futex", WaitStrategy::FUTEX_ONLY),
    ] {
        let dir = temp_dir(name);
        let mut p = publisher(&dir);
        let s = subscriber(&dir, wait);
        assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
        // A pace of 30 ms, learned from a few frames.
        for _ in 0..4 {
            p.publish(FrameMeta::default(), |_, _| Ok::<_, Infallible>(()))
                .unwrap();
            s.next_frame(Duration::from_secs(5)).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        // The least of three overruns: a loaded machine may delay one
        // return, not every one; an overrunning wait overruns all three.
        let mut least = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            match s.next_frame(Duration::from_millis(15)) {
                Err(RecvError::Timeout(_)) => {}
                other => panic!(
                    "{name}: expected a timeout, got {:?}",
                    other.map(|f| f.meta().source_index)
                ),
            }
            let took = t.elapsed();
            assert!(
                took >= Duration::from_millis(15),
                "{name}: returned early after {took:?}"
            );
            least = least.min(took);
        }
        // Below 15 ms + a 10 ms futex slice.
        assert!(
            least < Duration::from_millis(22),
            "{name}: overran its timeout: {least:?}"
        );
    }
}
