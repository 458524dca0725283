//! The publisher and subscriber tools as real, separate OS processes over
//! host memory: every frame delivered and bit-exact against FFmpeg's
//! reference decode, slow NewestOnly readers, and crashes on either side
//! (bad input and exit statuses: `cli.rs`).

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, Published, Publisher, PublisherConfig, RecvError, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use cuframes_testkit::media;

mod common;
use common::{finish, publisher, subscriber};

/// A fresh runtime directory for one test of this file.
fn runtime_dir(test: &str) -> PathBuf {
    cuframes_testkit::runtime_dir("tools", test)
}

use cuframes_testkit::framemd5_file as framemd5;

use cuframes_testkit::dev_shm_listing as shm_listing;

fn three_in_order_subscribers_match_ffmpeg(clip: &str, key: &str) {
    let dir = runtime_dir(key);
    let shm_before = shm_listing();
    let input = media(clip);
    let reference = framemd5(&media(&format!("{clip}.framemd5")));
    let publ = publisher(
        &dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--key",
            key,
            "--policy",
            "wait",
            "--wait-subscribers",
            "3",
        ],
    )
    .spawn()
    .unwrap();
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.join(format!("sub{i}.framemd5")))
        .collect();
    let subs: Vec<Child> = outs
        .iter()
        .map(|o| {
            subscriber(
                &dir,
                &[
                    "--key",
                    key,
                    "--mode",
                    "in-order",
                    "--framemd5",
                    o.to_str().unwrap(),
                ],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    finish(publ, "publisher");
    for (i, s) in subs.into_iter().enumerate() {
        let out = finish(s, "subscriber");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("dropped 0"), "subscriber {i}: {err}");
        let got = framemd5(&outs[i]);
        assert_eq!(got.len(), reference.len(), "subscriber {i} frame count");
        for (n, ((gi, gh), (ri, rh))) in got.iter().zip(&reference).enumerate() {
            assert_eq!(
                (gi, gh),
                (&(n as u64), rh),
                "subscriber {i} frame {n} ({ri})"
            );
        }
        std::fs::remove_file(&outs[i]).unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "runtime dir not empty after a clean exit: {left:?}"
    );
    assert_eq!(shm_listing(), shm_before, "/dev/shm changed");
}

#[test]
fn h264_to_three_in_order_subscribers_matches_ffmpeg() {
    three_in_order_subscribers_match_ffmpeg("sample-h264.mp4", "h264-3subs");
}

#[test]
fn hevc_to_three_in_order_subscribers_matches_ffmpeg() {
    three_in_order_subscribers_match_ffmpeg("sample-hevc.mkv", "hevc-3subs");
}

#[test]
fn raw_annex_b_h264_matches_ffmpeg() {
    three_in_order_subscribers_match_ffmpeg("sample-h264.h264", "raw-3subs");
}

#[test]
fn slow_newest_only_subscriber_gets_newest_untorn_frames_and_counts_drops() {
    let dir = runtime_dir("newest");
    let reference = framemd5(&media("sample-h264.mp4.framemd5"));
    let input = media("sample-h264.mp4");
    let out = dir.join("slow.framemd5");
    // Paced like a 25 fps camera; the subscriber takes 50 ms per frame.
    let publ = publisher(
        &dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--key",
            "slow",
            "--realtime",
            "--wait-subscribers",
            "1",
        ],
    )
    .spawn()
    .unwrap();
    let sub = subscriber(
        &dir,
        &[
            "--key",
            "slow",
            "--mode",
            "newest-only",
            "--sleep-ms",
            "50",
            "--framemd5",
            out.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    finish(publ, "publisher");
    let stderr = String::from_utf8_lossy(&finish(sub, "subscriber").stderr).into_owned();
    let got = framemd5(&out);
    assert!(
        got.len() > 10 && got.len() < reference.len(),
        "received {} of {}: {stderr}",
        got.len(),
        reference.len()
    );
    let dropped: u64 = stderr
        .split("dropped ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no drop count in {stderr}"));
    assert!(dropped > 0, "{stderr}");
    assert_eq!(
        got.len() as u64 + dropped,
        reference.len() as u64,
        "every frame is received or counted: {stderr}"
    );
    let mut last = None;
    for (idx, hash) in &got {
        assert!(
            last.is_none_or(|l| *idx > l),
            "NewestOnly went backwards at {idx}"
        );
        last = Some(*idx);
        assert_eq!(
            hash, &reference[*idx as usize].1,
            "frame {idx} differs from FFmpeg's (torn?)"
        );
    }
}

fn small_stream() -> StreamDesc {
    StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap()
}

#[test]
fn subscriber_killed_holding_a_lease_is_reclaimed_within_100ms() {
    let dir = runtime_dir("killsub");
    let shm_before = shm_listing();
    let mut cfg = PublisherConfig::new("killsub");
    cfg.runtime_dir = Some(dir.clone());
    cfg.slots = 2;
    cfg.policy = PublishPolicy::Wait;
    cfg.wait_timeout = Duration::from_secs(20);
    cfg.lease_timeout = Duration::from_secs(60);
    let mut p = Publisher::create(HostBackend, cfg, small_stream()).unwrap();
    // Receives frame 1 and holds it (its lease) while sleeping.
    let mut sub = subscriber(
        &dir,
        &[
            "--key",
            "killsub",
            "--mode",
            "in-order",
            "--sleep-ms",
            "600000",
            "--max-frames",
            "1",
        ],
    )
    .spawn()
    .unwrap();
    assert!(p.wait_for_subscribers(1, Duration::from_secs(10)));
    let write = |slot: &mut cuframes_core::runtime::HostSlot,
                 _: &StreamDesc|
     -> Result<(), std::io::Error> {
        slot.bytes_mut().fill(7);
        Ok(())
    };
    assert_eq!(
        p.publish(FrameMeta::default(), write).unwrap(),
        Published::Committed(1)
    );
    assert_eq!(
        p.publish(FrameMeta::default(), write).unwrap(),
        Published::Committed(2)
    );
    // Give the subscriber time to lease frame 1; slot 1 is leased, slot 2
    // unread by an InOrder subscriber: the third publish must wait.
    std::thread::sleep(Duration::from_millis(500));
    let pid = sub.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        Instant::now()
    });
    let outcome = p.publish(FrameMeta::default(), write).unwrap();
    let returned = Instant::now();
    let killed = killer.join().unwrap();
    let _ = sub.wait();
    assert_eq!(outcome, Published::Committed(3));
    let after_kill = returned.saturating_duration_since(killed);
    assert!(
        returned > killed,
        "publish returned before the kill: the lease was not respected"
    );
    assert!(
        after_kill < Duration::from_millis(100),
        "slot reclaimed {after_kill:?} after SIGKILL"
    );
    eprintln!("slot reclaimed {after_kill:?} after SIGKILL");
    for n in 4..10 {
        assert_eq!(
            p.publish(FrameMeta::default(), write).unwrap(),
            Published::Committed(n)
        );
    }
    assert_eq!(p.subscriber_count(), 0);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("killsub.sock")],
        "only the live publisher's socket may remain"
    );
    drop(p);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(shm_listing(), shm_before, "/dev/shm changed");
}

fn disconnected_within_100ms(kill: bool) {
    let dir = runtime_dir(if kill { "killpub" } else { "exitpub" });
    let input = media("sample-h264.mp4");
    let key = if kill { "killpub" } else { "exitpub" };
    let mut publ = publisher(
        &dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--key",
            key,
            "--realtime",
            "--loop",
        ],
    )
    .spawn()
    .unwrap();
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(dir.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let sub = loop {
        match Subscriber::connect_host(key, opts.clone()) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    };
    for _ in 0..5 {
        drop(sub.next_frame(Duration::from_secs(5)).unwrap());
    }
    let sig = if kill {
        rustix::process::Signal::KILL
    } else {
        rustix::process::Signal::TERM
    };
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(publ.id() as i32).unwrap(),
        sig,
    )
    .unwrap();
    let sent = Instant::now();
    let result = loop {
        match sub.next_frame(Duration::from_secs(5)) {
            Ok(f) => drop(f),
            Err(e) => break e,
        }
    };
    let took = sent.elapsed();
    assert!(matches!(result, RecvError::Disconnected), "{result}");
    assert!(
        took < Duration::from_millis(100),
        "Disconnected after {took:?}"
    );
    eprintln!(
        "Disconnected {took:?} after SIG{}",
        if kill { "KILL" } else { "TERM" }
    );
    let status = publ.wait().unwrap();
    if !kill {
        assert!(status.success(), "SIGTERM must be a clean exit: {status}");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "clean exit leaves nothing"
        );
    }
}

#[test]
fn publisher_killed_gives_disconnected_within_100ms() {
    disconnected_within_100ms(true);
}

#[test]
fn publisher_terminated_gives_disconnected_within_100ms() {
    disconnected_within_100ms(false);
}
