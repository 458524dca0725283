//! The camera service end to end, as separate OS processes on the loopback:
//! a real RTSP server (GStreamer's, `scripts/rtsp-server.py`), one
//! `cuframes-publish` serving several streams from a config file, and
//! `cuframes-subscribe` processes or library subscribers hashing every
//! frame against FFmpeg's reference decode. Cameras that refuse, 404, never
//! answer, or die and come back; a publisher killed and restarted; a
//! resolution change; a 10-bit stream on the host backend; bad config files.

use cuframes_core::layout::FLAG_DISCONTINUITY;
use cuframes_core::runtime::{Frame, RecvError, SubscribeOptions, Subscriber};
use cuframes_core::DeliveryMode;
use md5::{Digest, Md5};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cuframes_testkit::framemd5_hashes;
use cuframes_testkit::rtsp::RtspServer;

const PUBLISH: &str = env!("CARGO_BIN_EXE_cuframes-publish");
const SUBSCRIBE: &str = env!("CARGO_BIN_EXE_cuframes-subscribe");

fn runtime_dir(test: &str) -> PathBuf {
    cuframes_testkit::runtime_dir("cameras", test)
}

/// These tests run real-time RTSP streams and a dozen processes each: on a
/// 2-core CI machine two at once fall behind real time, and a camera (like
/// GStreamer's server) drops a client that does not keep up. One at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child process whose stderr goes to a log file, killed on drop.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
    what: String,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf, what: &str) -> Proc {
        let f = File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Proc {
            child: Some(child),
            log,
            what: what.to_owned(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid()) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// Waits up to `limit` for the exit; panics (with the log) on timeout.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!(
                    "{} did not exit within {limit:?}:\n{}",
                    self.what,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits and requires exit status 0.
    fn success(&mut self, limit: Duration) {
        let st = self.wait(limit);
        assert!(st.success(), "{} failed ({st}):\n{}", self.what, self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `cuframes-publish --config` with `toml` (written into `dir`).
fn publish_config(dir: &Path, toml: &str, extra: &[&str]) -> Proc {
    let cfg = dir.join("cameras.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut c = Command::new(PUBLISH);
    c.arg("--config")
        .arg(&cfg)
        .args(["--runtime-dir", dir.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "info");
    Proc::spawn(c, dir.join("publisher.log"), "cuframes-publish")
}

/// `cuframes-subscribe` in order, hashing `max` frames into `<dir>/<name>.framemd5`.
fn subscribe(dir: &Path, key: &str, name: &str, max: usize, extra: &[&str]) -> Proc {
    let mut c = Command::new(SUBSCRIBE);
    c.args(["--runtime-dir", dir.to_str().unwrap()])
        .args(["--key", key, "--mode", "in-order", "--name", name])
        .args([
            "--wait-publisher-ms",
            "30000",
            "--max-frames",
            &max.to_string(),
        ])
        .arg("--framemd5")
        .arg(dir.join(format!("{name}.framemd5")))
        .args(extra);
    Proc::spawn(c, dir.join(format!("{name}.log")), name)
}

/// The hash column of each frame line of a framemd5 file written by a subscriber.
fn hashes(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

fn assert_matches_reference(dir: &Path, name: &str, reference: &[String]) {
    let got = hashes(&dir.join(format!("{name}.framemd5")));
    assert_eq!(got.len(), reference.len(), "{name}: frames received");
    let bad = got.iter().zip(reference).filter(|(a, b)| a != b).count();
    assert_eq!(
        bad,
        0,
        "{name}: {bad} of {} frames differ from FFmpeg's",
        got.len()
    );
}

/// Every frame `name` received is the reference frame of its source index,
/// and it received `n` of them (a camera that dropped a slow reader and was
/// reconnected starts over at index 0: still correct frames).
fn assert_each_frame_correct(dir: &Path, name: &str, reference: &[String], n: usize) {
    let got = cuframes_testkit::framemd5_file(&dir.join(format!("{name}.framemd5")));
    assert_eq!(got.len(), n, "{name}: frames received");
    for (i, h) in &got {
        assert_eq!(
            reference.get(*i as usize),
            Some(h),
            "{name}: frame {i} differs from FFmpeg's"
        );
    }
}

/// MD5 of a host frame's rows without pitch padding (FFmpeg's rawvideo bytes).
fn frame_md5(f: &Frame<'_>) -> String {
    let mut h = Md5::new();
    f.for_each_row(|row| h.update(row));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn h264_ref() -> Vec<String> {
    framemd5_hashes("sample-h264.mp4.framemd5")
}

#[test]
fn rtsp_h264_and_hevc_over_tcp_and_udp_reach_three_subscribers_each_bit_exact() {
    let _serial = serial();
    let dir = runtime_dir("rtsp4");
    let server = RtspServer::start(&[("/h264", "sample-h264.mp4"), ("/hevc", "sample-hevc.mkv")]);
    let mut toml = String::from("stats_interval = 1.0\n[defaults]\nbackend = \"host\"\npolicy = \"wait\"\nwait_subscribers = 3\nring = 16\n");
    let streams = [
        ("h264-tcp", "/h264", "tcp"),
        ("h264-udp", "/h264", "udp"),
        ("hevc-tcp", "/hevc", "tcp"),
        ("hevc-udp", "/hevc", "udp"),
    ];
    for (key, mount, transport) in streams {
        toml += &format!(
            "[[stream]]\nkey = \"{key}\"\nurl = \"{}\"\ntransport = \"{transport}\"\n",
            server.url(mount)
        );
    }
    let mut subs = Vec::new();
    for (key, _, _) in streams {
        for i in 0..3 {
            subs.push((
                key,
                format!("{key}-{i}"),
                subscribe(&dir, key, &format!("{key}-{i}"), 100, &[]),
            ));
        }
    }
    let publisher = publish_config(&dir, &toml, &[]);
    for (key, name, s) in &mut subs {
        s.success(Duration::from_secs(60));
        let reference = if key.starts_with("h264") {
            h264_ref()
        } else {
            framemd5_hashes("sample-hevc.mkv.framemd5")
        };
        assert_matches_reference(&dir, name, &reference);
    }
    let log = publisher.log();
    assert!(!log.contains("panicked"), "{log}");
    drop(server);
}

/// Frames a library subscriber receives, with their flags, until `n` are in
/// or `limit` passes; packets too, when it subscribed to them (their
/// `(discontinuity, keyframe)`).
fn collect_with_packets(
    sub: &Subscriber,
    n: usize,
    limit: Duration,
    packets: &mut Vec<(bool, bool)>,
) -> Vec<(String, u64)> {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        if sub.has_packets() {
            while let Ok(p) = sub.next_packet(Duration::ZERO) {
                packets.push((p.meta.discontinuity, p.meta.is_key()));
            }
        }
        match sub.next_frame(Duration::from_millis(200)) {
            Ok(f) => got.push((frame_md5(&f), f.meta().flags)),
            Err(RecvError::Timeout(_)) => {}
            Err(e) => panic!("subscriber: {e} after {} frames", got.len()),
        }
    }
    got
}

fn collect(sub: &Subscriber, n: usize, limit: Duration) -> Vec<(String, u64)> {
    collect_with_packets(sub, n, limit, &mut Vec::new())
}

#[test]
fn a_camera_that_dies_for_5_s_is_reconnected_and_subscribers_ride_through() {
    let _serial = serial();
    let dir = runtime_dir("camrestart");
    let mut server = RtspServer::start(&[("/cam", "sample-h264.mp4")]);
    let port = server.port();
    let toml = format!(
        "stats_interval = 1.0\n[[stream]]\nkey = \"cam\"\nurl = \"{}\"\ntransport = \"tcp\"\nbackend = \"host\"\npolicy = \"wait\"\nring = 16\nwait_subscribers = 1\nio_timeout_ms = 2000\nreconnect_initial_ms = 200\nreconnect_max_ms = 1000\npackets = true\npacket_slots = 1024\n",
        server.url("/cam")
    );
    let publisher = publish_config(&dir, &toml, &[]);
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(dir.clone());
    opts.packets = true;
    let deadline = Instant::now() + Duration::from_secs(30);
    let sub = loop {
        match Subscriber::connect_host("cam", opts.clone()) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("no publisher: {e}\n{}", publisher.log()),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let reference = h264_ref();
    let mut packets = Vec::new();
    let before = collect_with_packets(&sub, 30, Duration::from_secs(20), &mut packets);
    let packets_before = packets.len();
    assert!(
        packets_before >= 30,
        "packets before the gap: {packets_before}"
    );
    assert!(
        packets[1..].iter().all(|(disc, _)| !disc),
        "no discontinuity before the camera died"
    );
    assert_eq!(
        before.len(),
        30,
        "frames before the camera died:\n{}",
        publisher.log()
    );
    for (i, (h, _)) in before.iter().enumerate() {
        assert_eq!(h, &reference[i], "frame {i} before the gap");
    }
    server.kill();
    std::thread::sleep(Duration::from_secs(5));
    let server = RtspServer::start_on(port, &[("/cam", "sample-h264.mp4")]);
    // Frames already decoded before the kill drain first; then the camera
    // starts over, and its first frame carries DISCONTINUITY.
    let after = collect_with_packets(&sub, 200, Duration::from_secs(30), &mut packets);
    let gap = after
        .iter()
        .position(|(_, flags)| flags & FLAG_DISCONTINUITY != 0)
        .unwrap_or_else(|| {
            panic!(
                "no DISCONTINUITY in {} frames:\n{}",
                after.len(),
                publisher.log()
            )
        });
    for (i, (h, _)) in after[..gap].iter().enumerate() {
        assert_eq!(h, &reference[30 + i], "frame {} before the gap", 30 + i);
    }
    let resumed = &after[gap..];
    assert!(
        resumed.len() >= 50,
        "only {} frames after the reconnect:\n{}",
        resumed.len(),
        publisher.log()
    );
    for (i, (h, _)) in resumed.iter().take(50).enumerate() {
        assert_eq!(h, &reference[i], "frame {i} after the reconnect");
    }
    assert_eq!(
        sub.stats().dropped,
        0,
        "an InOrder subscriber under wait loses nothing"
    );
    // The packet ring: the first packet after the gap is flagged, and is
    // the camera's keyframe.
    let flagged: Vec<usize> = packets[packets_before..]
        .iter()
        .enumerate()
        .filter(|(_, (disc, _))| *disc)
        .map(|(i, _)| i)
        .collect();
    assert!(
        !flagged.is_empty(),
        "no packet after the gap carries DISCONTINUITY"
    );
    assert!(
        packets[packets_before + flagged[0]].1,
        "the flagged packet is a keyframe"
    );
    let log = publisher.log();
    assert!(
        log.contains("reconnecting in"),
        "the failure is logged:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("cam: streaming") && l.contains("1 reconnect(s)")),
        "the stats line shows the reconnect:\n{log}"
    );
    drop(server);
}

/// A TCP listener that accepts connections and never answers: a camera
/// that hangs.
fn silent_camera() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// A loopback port nobody listens on.
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The last stats line of `key` in a publisher log.
fn last_stats<'a>(log: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    log.lines()
        .rev()
        .find(|l| l.contains(&prefix) && l.contains("fps"))
        .unwrap_or("")
}

#[test]
fn refused_404_and_silent_cameras_get_clear_errors_and_backoff_without_touching_the_others() {
    let _serial = serial();
    let dir = runtime_dir("badcams");
    let server = RtspServer::start(&[("/cam", "sample-h264.mp4")]);
    let (_silent, silent_port) = silent_camera();
    let refused = refused_port();
    let clip = cuframes_testkit::media("sample-h264.mp4");
    let toml = format!(
        "stats_interval = 0.5\n[defaults]\nbackend = \"host\"\nio_timeout_ms = 1000\nreconnect_initial_ms = 200\nreconnect_max_ms = 800\n\
         [[stream]]\nkey = \"good\"\nfile = \"{}\"\nloop = true\nrealtime = true\npolicy = \"wait\"\nring = 16\nwait_subscribers = 1\n\
         [[stream]]\nkey = \"refused\"\nurl = \"rtsp://127.0.0.1:{refused}/cam\"\n\
         [[stream]]\nkey = \"missing\"\nurl = \"{}\"\ntransport = \"tcp\"\n\
         [[stream]]\nkey = \"silent\"\nurl = \"rtsp://admin:hunter2@127.0.0.1:{silent_port}/cam\"\n",
        clip.display(),
        server.url("/no-such-mount"),
    );
    let publisher = publish_config(&dir, &toml, &[]);
    let mut sub = subscribe(&dir, "good", "good-0", 150, &[]);
    sub.success(Duration::from_secs(40));
    // 150 frames of a looped 100-frame clip: the reference twice over.
    let reference: Vec<String> = h264_ref().into_iter().cycle().take(150).collect();
    let got = hashes(&dir.join("good-0.framemd5"));
    assert_eq!(got.len(), 150);
    assert_eq!(
        got, reference,
        "the healthy stream is untouched by the failing ones"
    );
    let log = publisher.log();
    for (key, want) in [
        ("refused", "refused"),
        ("missing", "404"),
        ("silent", "no answer"),
    ] {
        let line = last_stats(&log, key);
        assert!(
            line.contains("retry in") || line.contains("connecting"),
            "{key} backs off: {line:?}\n{log}"
        );
        assert!(
            line.to_lowercase().contains(want),
            "{key}: {want:?} not in {line:?}\n{log}"
        );
        let attempts = log
            .lines()
            .filter(|l| l.contains(key) && l.contains("reconnecting in"))
            .count();
        assert!(
            attempts >= 2,
            "{key}: retried with backoff ({attempts} attempts)\n{log}"
        );
    }
    assert!(
        !log.contains("hunter2"),
        "credentials leak into the log:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn eight_streams_in_one_process_and_one_dead_camera_changes_nothing_for_the_other_seven() {
    let _serial = serial();
    let dir = runtime_dir("eight");
    let server = RtspServer::start(&[("/h264", "sample-h264.mp4"), ("/hevc", "sample-hevc.mkv")]);
    let mut doomed = RtspServer::start(&[("/h264", "sample-h264.mp4")]);
    let mut toml = String::from("stats_interval = 1.0\n[defaults]\nbackend = \"host\"\npolicy = \"wait\"\nring = 16\nwait_subscribers = 2\ntransport = \"tcp\"\nio_timeout_ms = 1000\nreconnect_initial_ms = 200\n");
    let files = [
        ("f-h264-mp4", "sample-h264.mp4"),
        ("f-hevc-mkv", "sample-hevc.mkv"),
        ("f-h264-raw", "sample-h264.h264"),
        ("f-h264-b", "sample-h264.mp4"),
    ];
    for (key, clip) in files {
        toml += &format!(
            "[[stream]]\nkey = \"{key}\"\nfile = \"{}\"\nrealtime = true\n",
            cuframes_testkit::media(clip).display()
        );
    }
    let cams = [
        ("c-h264-a", server.url("/h264")),
        ("c-h264-b", server.url("/h264")),
        ("c-hevc", server.url("/hevc")),
        ("c-doomed", doomed.url("/h264")),
    ];
    for (key, url) in &cams {
        toml += &format!("[[stream]]\nkey = \"{key}\"\nurl = \"{url}\"\n");
    }
    let reference = |key: &str| -> Vec<String> {
        match key {
            k if k.contains("hevc") => framemd5_hashes("sample-hevc.mkv.framemd5"),
            "f-h264-raw" => framemd5_hashes("sample-h264.h264.framemd5"),
            _ => h264_ref(),
        }
    };
    let keys: Vec<&str> = files
        .iter()
        .map(|f| f.0)
        .chain(cams.iter().map(|c| c.0))
        .collect();
    let mut subs = Vec::new();
    for key in &keys {
        for i in 0..2 {
            let max = if *key == "c-doomed" { 1000 } else { 100 };
            subs.push((
                key.to_string(),
                format!("{key}-{i}"),
                subscribe(&dir, key, &format!("{key}-{i}"), max, &[]),
            ));
        }
    }
    let publisher = publish_config(&dir, &toml, &[]);
    // Once the doomed camera streams, kill it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("c-doomed-0.framemd5").exists()
        || hashes(&dir.join("c-doomed-0.framemd5")).len() < 10
    {
        assert!(
            Instant::now() < deadline,
            "the doomed camera never streamed:\n{}",
            publisher.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    doomed.kill();
    for (key, name, s) in &mut subs {
        if key == "c-doomed" {
            continue;
        }
        s.success(Duration::from_secs(60));
        assert_each_frame_correct(&dir, name, &reference(key), 100);
    }
    let log = publisher.log();
    assert!(
        log.lines()
            .any(|l| l.contains("c-doomed") && l.contains("reconnecting in")),
        "{log}"
    );
    drop(server);
}

/// `cuframes-publish` with flags (host backend).
fn publish_flags(dir: &Path, log: &str, args: &[&str]) -> Proc {
    let mut c = Command::new(PUBLISH);
    c.args([
        "--runtime-dir",
        dir.to_str().unwrap(),
        "--backend",
        "host",
        "--stats-interval",
        "0",
    ])
    .args(args)
    .env("RUST_LOG", "info");
    Proc::spawn(c, dir.join(log), log)
}

fn cuframes_entries_in_dev_shm() -> Vec<String> {
    cuframes_testkit::dev_shm_listing()
        .into_iter()
        .filter(|n| n.contains("cuframes"))
        .collect()
}

#[test]
fn a_publisher_killed_and_restarted_on_its_key_is_followed_by_its_subscribers() {
    let _serial = serial();
    let dir = runtime_dir("pubrestart");
    let shm_before = cuframes_entries_in_dev_shm();
    let clip = cuframes_testkit::media("sample-h264.mp4");
    let clip = clip.to_str().unwrap();
    let args = ["--input", clip, "--key", "cam", "--loop", "--realtime"];
    let mut first = publish_flags(&dir, "publisher-1.log", &args);
    // The tool, reconnect on by default, hashing every frame it receives.
    let mut tool = {
        let mut c = Command::new(SUBSCRIBE);
        c.args([
            "--runtime-dir",
            dir.to_str().unwrap(),
            "--key",
            "cam",
            "--mode",
            "newest-only",
        ])
        .args(["--wait-publisher-ms", "30000", "--stats-interval", "0"])
        .arg("--framemd5")
        .arg(dir.join("tool.framemd5"));
        Proc::spawn(c, dir.join("tool.log"), "cuframes-subscribe")
    };
    let mut opts = SubscribeOptions::new(DeliveryMode::NewestOnly);
    opts.runtime_dir = Some(dir.clone());
    opts.reconnect = Some(cuframes_core::runtime::Reconnect::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    let sub = loop {
        match Subscriber::connect_host("cam", opts.clone()) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("no publisher: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let reference = h264_ref();
    let before = collect(&sub, 20, Duration::from_secs(20));
    assert_eq!(before.len(), 20);
    for (h, _) in &before {
        assert!(
            reference.contains(h),
            "a frame before the kill is not one of the clip's"
        );
    }
    first.signal(rustix::process::Signal::KILL);
    first.wait(Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(2));
    let restarted = Instant::now();
    let mut second = publish_flags(&dir, "publisher-2.log", &args);
    // The library subscriber: frames resume, the first one flagged. The
    // new publisher paces at 25 fps from its first frame (seq 1), so that
    // frame went out (seq - 1) x 40 ms before the one received.
    let mut resumed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while resumed.is_none() && Instant::now() < deadline {
        match sub.next_frame(Duration::from_millis(100)) {
            Ok(f) if f.meta().flags & FLAG_DISCONTINUITY != 0 => {
                let now = cuframes_core::runtime::clock::monotonic_ns();
                let first = f
                    .meta()
                    .publish_ns
                    .saturating_sub((f.meta().seq - 1) * 40_000_000);
                resumed = Some((now.saturating_sub(first), frame_md5(&f)));
            }
            Ok(_) | Err(RecvError::Timeout(_)) => {}
            Err(e) => panic!("the library subscriber ended: {e}"),
        }
    }
    let (delay_ns, h) = resumed.expect("no flagged frame after the restart");
    assert!(
        reference.contains(&h),
        "the first frame after the restart is one of the clip's"
    );
    assert!(
        delay_ns < 1_000_000_000,
        "resumed {delay_ns} ns after the new publisher's first frame (backoff is capped at 500 ms)"
    );
    assert!(restarted.elapsed() < Duration::from_secs(20));
    assert_eq!(sub.stats().reconnects, 1);
    // The tool rides through too and keeps hashing correct frames.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(dir.join("tool.log")).unwrap_or_default();
        if log.contains("reconnected") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cuframes-subscribe did not reconnect:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    tool.signal(rustix::process::Signal::INT);
    tool.wait(Duration::from_secs(10));
    let got = hashes(&dir.join("tool.framemd5"));
    assert!(got.len() > 20, "the tool hashed {} frames", got.len());
    assert!(
        got.iter().all(|h| reference.contains(h)),
        "every frame the tool hashed is one of the clip's"
    );
    drop(sub);
    // The new publisher, stopped cleanly, removes its socket (the killed
    // one's stale socket was replaced when it started).
    second.signal(rustix::process::Signal::TERM);
    second.success(Duration::from_secs(10));
    drop(first);
    // Nothing left behind: no socket, no /dev/shm object.
    std::thread::sleep(Duration::from_millis(200));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sock"))
        .collect();
    assert!(left.is_empty(), "sockets left: {left:?}");
    assert_eq!(
        cuframes_entries_in_dev_shm(),
        shm_before,
        "/dev/shm changed"
    );
}

#[test]
fn a_resolution_change_mid_stream_reaches_every_subscriber_bit_exact() {
    let _serial = serial();
    let dir = runtime_dir("reschange");
    let clip = cuframes_testkit::media("sample-size-change.ts");
    let reference = framemd5_hashes("sample-size-change.ts.framemd5");
    let mut subs: Vec<Proc> = (0..3)
        .map(|i| subscribe(&dir, "chg", &format!("chg-{i}"), reference.len(), &[]))
        .collect();
    let mut publisher = publish_flags(
        &dir,
        "publisher.log",
        &[
            "--input",
            clip.to_str().unwrap(),
            "--key",
            "chg",
            "--policy",
            "wait",
            "--wait-subscribers",
            "3",
            "--ring",
            "4",
        ],
    );
    for (i, s) in subs.iter_mut().enumerate() {
        s.success(Duration::from_secs(60));
        assert_matches_reference(&dir, &format!("chg-{i}"), &reference);
        assert!(
            s.log().contains("stream changed"),
            "the tool logs the change:\n{}",
            s.log()
        );
    }
    publisher.success(Duration::from_secs(30));
    assert!(
        publisher.log().contains("1 stream change(s)"),
        "{}",
        publisher.log()
    );
}

#[test]
fn a_10_bit_stream_on_the_host_backend_is_shared_as_p010_bit_exact() {
    let _serial = serial();
    let dir = runtime_dir("p010");
    let clip = cuframes_testkit::media("sample-hevc10.mkv");
    let reference = framemd5_hashes("sample-hevc10.mkv.framemd5");
    let mut sub = subscribe(&dir, "ten", "ten-0", reference.len(), &[]);
    let mut publisher = publish_flags(
        &dir,
        "publisher.log",
        &[
            "--input",
            clip.to_str().unwrap(),
            "--key",
            "ten",
            "--policy",
            "wait",
            "--wait-subscribers",
            "1",
            "--decoder",
            "software",
        ],
    );
    sub.success(Duration::from_secs(60));
    assert_matches_reference(&dir, "ten-0", &reference);
    publisher.success(Duration::from_secs(30));
    assert!(publisher.log().contains("P010"), "{}", publisher.log());
}

#[test]
fn bad_config_files_fail_with_one_clear_line_before_anything_starts() {
    let _serial = serial();
    let dir = runtime_dir("badcfg");
    let clip = cuframes_testkit::media("sample-h264.mp4");
    let ok = format!("[[stream]]\nkey = \"a\"\nfile = \"{}\"\n", clip.display());
    let cases = [
        (format!("{ok}colour = \"red\"\n"), "unknown field `colour`"),
        (format!("{ok}{ok}"), "\"a\" appears more than once"),
        (
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp:/cam\"\n".to_owned(),
            "not a URL",
        ),
        (
            "[[stream]]\nkey = \"a\"\nfile = \"/no/such/clip.mp4\"\n".to_owned(),
            "/no/such/clip.mp4",
        ),
        ("[[stream\n".to_owned(), "--config"),
    ];
    for (toml, want) in cases {
        let mut p = publish_config(&dir, &toml, &[]);
        let st = p.wait(Duration::from_secs(10));
        let log = p.log();
        assert!(!st.success(), "accepted: {toml}");
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(errors.len(), 1, "one error line for {toml:?}:\n{log}");
        assert!(errors[0].contains(want), "{want:?} not in {:?}", errors[0]);
        assert!(!log.contains("publishing"), "something started:\n{log}");
        let socks = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
            .count();
        assert_eq!(socks, 0);
    }
    // Per-stream flags beside --config are refused, not silently ignored.
    let mut p = publish_config(&dir, &ok, &["--ring", "4"]);
    assert!(!p.wait(Duration::from_secs(10)).success());
    assert!(p.log().contains("cannot be used with"), "{}", p.log());
    // A missing config file, too.
    let mut c = Command::new(PUBLISH);
    c.args(["--config", "/no/such/cameras.toml"]);
    let mut p = Proc::spawn(c, dir.join("missing.log"), "cuframes-publish");
    assert!(!p.wait(Duration::from_secs(10)).success());
    assert!(p.log().contains("/no/such/cameras.toml"), "{}", p.log());
}
