//! The tools over the Vulkan backend as separate OS processes: a
//! `cuframes-publish --backend vulkan` (software decode uploaded into
//! exportable Vulkan memory) and `cuframes-subscribe --backend vulkan`
//! processes that import the slots' opaque fds and read every frame back:
//! bit-exact against FFmpeg's reference; and a subscriber SIGKILLed while
//! holding a frame is reclaimed.
//!
//! Runs on any Vulkan device with `VK_KHR_external_memory_fd` (lavapipe in
//! CI: `.ci/vulkan`). Without one each test prints a `SKIP:` line and
//! returns, unless `CUFRAMES_REQUIRE_VULKAN=1` (set by `.ci/vulkan`), which
//! makes a missing device a failure.

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{Published, Publisher, PublisherConfig};
use cuframes_core::{Codec, PixelFormat, PublishPolicy};
use cuframes_vulkan::{VulkanBackend, VulkanConfig, VulkanSlot};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cuframes_testkit::media;

const PUBLISH: &str = env!("CARGO_BIN_EXE_cuframes-publish");
const SUBSCRIBE: &str = env!("CARGO_BIN_EXE_cuframes-subscribe");

/// Whether a usable Vulkan device exists; prints a SKIP line when not (or
/// panics under `CUFRAMES_REQUIRE_VULKAN=1`).
fn vulkan_or_skip(test: &str) -> bool {
    let why = match cuframes_vulkan::devices() {
        Ok(d) if d.iter().any(|i| i.external_memory_fd) => return true,
        Ok(d) => format!(
            "{} Vulkan device(s), none with VK_KHR_external_memory_fd",
            d.len()
        ),
        Err(e) => e.to_string(),
    };
    if std::env::var_os("CUFRAMES_REQUIRE_VULKAN").is_some_and(|v| v == "1") {
        panic!("{test}: CUFRAMES_REQUIRE_VULKAN=1 but {why}");
    }
    println!("SKIP: {test}: {why}");
    false
}

fn runtime_dir(test: &str) -> PathBuf {
    cuframes_testkit::runtime_dir("vulkan", test)
}

fn subscriber(dir: &Path, key: &str, args: &[&str]) -> Command {
    let mut c = Command::new(SUBSCRIBE);
    c.args([
        "--runtime-dir",
        dir.to_str().unwrap(),
        "--key",
        key,
        "--backend",
        "vulkan",
        "--wait-publisher-ms",
        "20000",
        "--no-reconnect",
    ]);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One Vulkan publisher of `clip` and three Vulkan subscribers: every
/// subscriber's MD5 of every frame equals FFmpeg's.
fn three_vulkan_subscribers_match_ffmpeg(clip: &str, key: &str) {
    if !vulkan_or_skip(key) {
        return;
    }
    let dir = runtime_dir(key);
    let input = media(clip);
    let reference = cuframes_testkit::framemd5_hashes(&format!("{clip}.framemd5"));
    let publ = Command::new(PUBLISH)
        .args([
            "--runtime-dir",
            dir.to_str().unwrap(),
            "--backend",
            "vulkan",
        ])
        .args(["--input", input.to_str().unwrap(), "--key", key])
        .args(["--policy", "wait", "--wait-subscribers", "3"])
        .args(["--stats-interval", "0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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
                key,
                &["--mode", "in-order", "--framemd5", o.to_str().unwrap()],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    let pub_log = String::from_utf8_lossy(&finish(publ, "publisher").stderr).into_owned();
    assert!(
        pub_log.contains("backend vulkan VulkanOpaqueFd/HostFence"),
        "publisher did not use the Vulkan backend: {pub_log}"
    );
    for (i, s) in subs.into_iter().enumerate() {
        let err = String::from_utf8_lossy(&finish(s, "subscriber").stderr).into_owned();
        assert!(
            err.contains("VulkanOpaqueFd memory"),
            "subscriber {i}: {err}"
        );
        assert!(err.contains("dropped 0"), "subscriber {i}: {err}");
        let got: Vec<String> = cuframes_testkit::framemd5_file(&outs[i])
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        assert_eq!(got.len(), reference.len(), "subscriber {i} frame count");
        for (n, (g, r)) in got.iter().zip(&reference).enumerate() {
            assert_eq!(g, r, "subscriber {i} frame {n}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h264_to_three_vulkan_subscribers_matches_ffmpeg() {
    three_vulkan_subscribers_match_ffmpeg("sample-h264.mp4", "vk-h264");
}

#[test]
fn hevc10_p010_to_three_vulkan_subscribers_matches_ffmpeg() {
    three_vulkan_subscribers_match_ffmpeg("sample-hevc10.mkv", "vk-hevc10");
}

/// Geometry changes mid-stream: a new ring of new Vulkan allocations,
/// STREAM_CHANGED, and every subscriber re-imports.
#[test]
fn size_changes_reimport_vulkan_slots_and_match_ffmpeg() {
    three_vulkan_subscribers_match_ffmpeg("sample-size-change.ts", "vk-sizechange");
}

/// A small NV12 frame whose every byte is `b`.
fn fill(
    slot: &mut VulkanSlot,
    desc: &StreamDesc,
    b: u8,
) -> Result<(), cuframes_vulkan::VulkanError> {
    let (w, h) = (desc.width as usize, desc.height as usize);
    let y = vec![b; w * h];
    let uv = vec![b; w * h.div_ceil(2)];
    slot.write_from_host(desc, &[(&y, w), (&uv, w)])
}

#[test]
fn vulkan_subscriber_killed_holding_a_frame_is_reclaimed() {
    let test = "vulkan_subscriber_killed_holding_a_frame_is_reclaimed";
    if !vulkan_or_skip(test) {
        return;
    }
    let dir = runtime_dir("killsub");
    let mut cfg = PublisherConfig::new("vk-killsub");
    cfg.runtime_dir = Some(dir.clone());
    cfg.slots = 2;
    cfg.policy = PublishPolicy::Wait;
    cfg.wait_timeout = Duration::from_secs(30);
    cfg.lease_timeout = Duration::from_secs(120);
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let backend = VulkanBackend::publisher(VulkanConfig::default()).unwrap();
    let mut p = Publisher::create(backend, cfg, stream).unwrap();
    // Receives frame 1 and holds it (its lease) while sleeping.
    let out = dir.join("victim.framemd5");
    let mut victim = subscriber(
        &dir,
        "vk-killsub",
        &[
            "--mode",
            "in-order",
            "--sleep-ms",
            "600000",
            "--max-frames",
            "1",
            "--framemd5",
            out.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    assert!(p.wait_for_subscribers(1, Duration::from_secs(20)));
    for (n, b) in [(1, 1u8), (2, 2)] {
        let r = p
            .publish(FrameMeta::default(), |s, d| fill(s, d, b))
            .unwrap();
        assert_eq!(r, Published::Committed(n));
    }
    // Slot of frame 1 leased, slot of frame 2 unread by an InOrder
    // subscriber: the third publish must wait until the victim is gone.
    std::thread::sleep(Duration::from_millis(1000));
    let pid = victim.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let at = Instant::now();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
        at
    });
    let outcome = p
        .publish(FrameMeta::default(), |s, d| fill(s, d, 3))
        .unwrap();
    let returned = Instant::now();
    let killed = killer.join().unwrap();
    let status = victim.wait().unwrap();
    assert_eq!(outcome, Published::Committed(3));
    assert!(
        returned > killed,
        "publish returned before the kill: the victim's lease was not respected"
    );
    assert!(!status.success(), "the victim was killed: {status}");
    eprintln!(
        "slot reclaimed {:?} after SIGKILL",
        returned.saturating_duration_since(killed)
    );
    // The ring goes on with both slots.
    for n in 4..10 {
        let r = p
            .publish(FrameMeta::default(), |s, d| fill(s, d, n as u8))
            .unwrap();
        assert_eq!(r, Published::Committed(n));
    }
    assert_eq!(p.subscriber_count(), 0);
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
}
