//! The publisher against hostile peers (issue 12): connections that never
//! say HELLO, peers that stream messages or never read, stray fds, a peer
//! handing the publisher its own socket, fd exhaustion under `prlimit`.
//! Every bound asserted is a generous liveness bound; the numbers measured
//! are printed (`--nocapture`).
#![cfg(target_os = "linux")]

use cuframes_core::layout::{StreamDesc, LEASE_REGION_SIZE};
use cuframes_core::ring::{FrameMeta, LeaseWords};
use cuframes_core::runtime::channel::Channel;
use cuframes_core::runtime::shm;
use cuframes_core::runtime::{
    HostBackend, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::wire::{Hello, Message, Name, HELLO_WANTS_FRAMES};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PROTOCOL_VERSION};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// fd counts are per process: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stream() -> StreamDesc {
    StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap()
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Waits up to `limit` for `cond`; returns how long it took, if it held.
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A library publisher at ~200 fps on its own thread.
struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Duration>>,
    socket: PathBuf,
    dir: PathBuf,
    subscribers: Arc<Mutex<usize>>,
}

impl Running {
    fn start(dir: &Path, key: &str, tweak: impl FnOnce(&mut PublisherConfig)) -> Self {
        let mut cfg = PublisherConfig::new(key);
        cfg.runtime_dir = Some(dir.to_owned());
        tweak(&mut cfg);
        let mut p = Publisher::create(HostBackend, cfg, stream()).unwrap();
        let socket = p.socket_path().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let subscribers = Arc::new(Mutex::new(0usize));
        let (s2, n2) = (stop.clone(), subscribers.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s2.load(Ordering::Acquire) {
                let _ = p.publish(FrameMeta::default(), |slot, s| {
                    let b = &mut slot.bytes_mut()[..s.frame_size as usize];
                    b.fill(i as u8);
                    Ok::<(), std::io::Error>(())
                });
                *n2.lock().unwrap() = p.subscriber_count();
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            let t = Instant::now();
            drop(p);
            t.elapsed()
        });
        Running {
            stop,
            thread: Some(thread),
            socket,
            dir: dir.to_owned(),
            subscribers,
        }
    }

    fn subscribers(&self) -> usize {
        *self.subscribers.lock().unwrap()
    }

    /// Stops the publisher; returns how long dropping it (shutdown) took.
    fn stop(mut self) -> Duration {
        self.stop.store(true, Ordering::Release);
        self.thread.take().unwrap().join().unwrap()
    }

    fn subscribe(&self, key: &str) -> Result<Subscriber<HostBackend>, String> {
        let mut o = SubscribeOptions::new(DeliveryMode::NewestOnly);
        o.runtime_dir = Some(self.dir.clone());
        o.handshake_timeout = Duration::from_secs(10);
        Subscriber::connect_host(key, o).map_err(|e| e.to_string())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hello() -> Message<'static> {
    Message::Hello(Hello {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        flags: HELLO_WANTS_FRAMES,
        mode: DeliveryMode::NewestOnly,
        gpu_uuid: [0; 16],
        name: Name::truncated("hostile"),
    })
}

/// A lease row (sealed memfd) and its writable mapping.
fn row() -> (OwnedFd, shm::Mapping) {
    let (fd, rw) = shm::create_shared("row", LEASE_REGION_SIZE).unwrap();
    LeaseWords::new(rw.words()).unwrap().init(0);
    (fd, rw)
}

/// A raw client past its handshake: WELCOME read, its fds closed.
fn established(socket: &Path) -> (Channel, shm::Mapping) {
    let s = UnixStream::connect(socket).unwrap();
    let mut c = Channel::new(s);
    let (fd, rw) = row();
    c.send(&hello(), &[fd.as_fd()]).unwrap();
    let raw = c.recv(Some(Duration::from_secs(5))).unwrap().unwrap();
    let m = cuframes_core::wire::decode(&raw).unwrap().unwrap().message;
    assert!(matches!(m, Message::Welcome(_)), "{m:?}");
    c.discard_fds();
    (c, rw)
}

fn unknown() -> Message<'static> {
    Message::Unknown {
        kind: 0x7777_0001,
        payload: b"x",
    }
}

#[test]
fn a_thousand_silent_connections_neither_lock_out_subscribers_nor_leak_fds() {
    let _g = serial();
    let d = temp_dir("silent");
    let p = Running::start(&d, "silent", |c| {
        c.handshake_timeout = Duration::from_secs(1);
    });
    std::thread::sleep(Duration::from_millis(50));
    let baseline = fd_count();
    let idle: Vec<UnixStream> = (0..1000)
        .map(|_| UnixStream::connect(&p.socket).unwrap())
        .collect();
    let t0 = Instant::now();
    let sub = p.subscribe("silent");
    let took = t0.elapsed();
    println!("subscriber behind 1000 silent connections connected in {took:?}");
    let sub = sub.expect("a subscriber connects despite 1000 silent connections");
    assert!(
        took < Duration::from_secs(2),
        "connected {took:?} after the idle flood (deadline 1 s)"
    );
    drop(sub);
    drop(idle);
    let back = within(Duration::from_secs(5), || fd_count() <= baseline);
    println!(
        "fds: baseline {baseline}, back to it {:?} after the clients closed",
        back
    );
    assert!(
        back.is_some(),
        "fd count {} > baseline {baseline}",
        fd_count()
    );
    p.stop();
}

#[test]
fn silent_connections_are_closed_at_the_handshake_deadline() {
    let _g = serial();
    let d = temp_dir("deadline");
    let p = Running::start(&d, "deadline", |c| {
        c.handshake_timeout = Duration::from_millis(500);
    });
    let mut s = UnixStream::connect(&p.socket).unwrap();
    let t0 = Instant::now();
    let mut b = [0u8; 64];
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = s.read(&mut b).unwrap_or(usize::MAX);
    let took = t0.elapsed();
    println!("silent connection closed after {took:?} (deadline 500 ms)");
    assert_eq!(n, 0, "EOF expected");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5));
    p.stop();
}

#[test]
fn a_peer_streaming_messages_delays_neither_handshakes_nor_shutdown() {
    let _g = serial();
    let d = temp_dir("stream");
    let p = Running::start(&d, "stream", |c| {
        c.handshake_timeout = Duration::from_secs(30);
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut streamers = Vec::new();
    for pre_hello in [true, false] {
        let s2 = stop.clone();
        let socket = p.socket.clone();
        streamers.push(std::thread::spawn(move || {
            let (c, _row) = if pre_hello {
                (Channel::new(UnixStream::connect(&socket).unwrap()), row().1)
            } else {
                established(&socket)
            };
            let msg = unknown();
            let mut sent = 0u64;
            while !s2.load(Ordering::Acquire) {
                if c.send(&msg, &[]).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let s = p.subscribe("stream").expect("handshake during the stream");
        worst = worst.max(t0.elapsed());
        drop(s);
    }
    let shutdown = p.stop();
    stop.store(true, Ordering::Release);
    let sent: Vec<u64> = streamers.into_iter().map(|t| t.join().unwrap()).collect();
    println!("handshakes during the stream: worst {worst:?}; shutdown took {shutdown:?}; messages streamed {sent:?}");
    assert!(
        worst < Duration::from_millis(500),
        "handshake took {worst:?}"
    );
    assert!(
        shutdown < Duration::from_secs(1),
        "shutdown took {shutdown:?}"
    );
}

#[test]
fn peers_that_never_read_delay_nobody() {
    let _g = serial();
    let d = temp_dir("noread");
    let p = Running::start(&d, "noread", |c| {
        c.send_timeout = Duration::from_millis(500);
    });
    // Six peers flood PINGs and never read a PONG.
    let mut peers = Vec::new();
    for _ in 0..6 {
        let (c, row) = established(&p.socket);
        for n in 0..50_000u64 {
            if c.send(&Message::Ping(n), &[]).is_err() {
                break;
            }
        }
        peers.push((c, row));
    }
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let s = p
            .subscribe("noread")
            .expect("handshake next to stalled peers");
        worst = worst.max(t0.elapsed());
        drop(s);
    }
    let gone = within(Duration::from_secs(5), || p.subscribers() == 0);
    let shutdown = p.stop();
    println!(
        "handshakes next to 6 never-reading peers: worst {worst:?}; those peers dropped after {gone:?}; shutdown {shutdown:?}"
    );
    assert!(
        worst < Duration::from_millis(500),
        "handshake took {worst:?}"
    );
    assert!(gone.is_some(), "never-reading peers were not disconnected");
    assert!(
        shutdown < Duration::from_secs(1),
        "shutdown took {shutdown:?}"
    );
    drop(peers);
}

#[test]
fn stray_fds_are_closed_at_once() {
    let _g = serial();
    let d = temp_dir("strayfds");
    let p = Running::start(&d, "strayfds", |_| {});
    let (c, _row) = established(&p.socket);
    std::thread::sleep(Duration::from_millis(50));
    let baseline = fd_count();
    for _ in 0..100 {
        let (a, b) = UnixStream::pair().unwrap();
        c.send(&unknown(), &[a.as_fd(), b.as_fd()]).unwrap();
    }
    // A socket whose other end only the publisher holds: EOF once it closes it.
    let (mut r, w) = UnixStream::pair().unwrap();
    c.send(&Message::Ping(1), &[w.as_fd()]).unwrap();
    drop(w);
    r.set_nonblocking(true).unwrap();
    let eof = within(Duration::from_secs(2), || {
        use std::io::Read;
        let mut b = [0u8; 1];
        matches!(r.read(&mut b), Ok(0))
    });
    let after = fd_count();
    println!("fds: {baseline} before 201 stray fds, {after} after; pipe EOF after {eof:?}");
    assert!(eof.is_some(), "the publisher kept a stray fd");
    assert!(after <= baseline + 2, "{after} fds > {baseline}");
    drop(c);
    p.stop();
}

#[test]
fn a_peer_handing_over_its_own_socket_is_gone_when_it_closes() {
    let _g = serial();
    let d = temp_dir("ownsock");
    let p = Running::start(&d, "ownsock", |c| {
        c.handshake_timeout = Duration::from_millis(800);
    });
    std::thread::sleep(Duration::from_millis(50));
    let baseline = fd_count();
    for complete in [true, false] {
        // 64 connections that hand the publisher their own end: with a whole
        // unknown message (closed at once), or with the first half of one
        // (closed at the handshake deadline).
        let mut clients = Vec::new();
        for _ in 0..64 {
            let s = UnixStream::connect(&p.socket).unwrap();
            let c = Channel::new(s.try_clone().unwrap());
            if complete {
                c.send(&unknown(), &[s.as_fd()]).unwrap();
            } else {
                let part = [1u8, 0, 0x77, 0x77, 0x40, 0, 0, 0];
                let n = c.try_send(&part, &[s.as_fd()]).unwrap();
                assert_eq!(n, part.len());
            }
            clients.push((s, c));
        }
        // The publisher has accepted them (64 fds more than the clients' 128).
        assert!(within(Duration::from_secs(5), || fd_count() >= baseline + 3 * 64).is_some());
        std::thread::sleep(Duration::from_millis(100));
        // The peers exit.
        drop(clients);
        let t = within(Duration::from_secs(5), || fd_count() <= baseline);
        println!(
            "own-socket peers ({}): publisher fds back to baseline after {t:?}",
            if complete {
                "whole message"
            } else {
                "half a message"
            }
        );
        assert!(t.is_some(), "{} fds > baseline {baseline}", fd_count());
        if complete {
            assert!(
                t.unwrap() < Duration::from_millis(700),
                "not closed at once: {t:?}"
            );
        }
    }
    p.stop();
}

/// The child of `accept_survives_fd_exhaustion`: a publisher under
/// `prlimit --nofile=64:64`, until its stop file appears.
#[test]
fn emfile_child_publisher() {
    let Ok(dir) = std::env::var("CUFRAMES_EMFILE_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let p = Running::start(&dir, "emfile", |c| {
        c.handshake_timeout = Duration::from_millis(700);
    });
    let stop = dir.join("stop");
    let t0 = Instant::now();
    while !stop.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    p.stop();
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" of the command name; utime, stime are 14, 15.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn accept_survives_fd_exhaustion() {
    let _g = serial();
    let d = temp_dir("emfile");
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=64:64")
        .arg(&exe)
        .args(["--exact", "emfile_child_publisher", "--test-threads=1"])
        .env("CUFRAMES_EMFILE_CHILD_DIR", &d)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("prlimit (util-linux)");
    let pid = child.id();
    let sock = d.join("emfile.sock");
    assert!(within(Duration::from_secs(20), || sock.exists()).is_some());
    std::thread::sleep(Duration::from_millis(200));
    // Far more connections than the child has fds: accept hits EMFILE.
    let idle: Vec<UnixStream> = (0..150)
        .filter_map(|_| UnixStream::connect(&sock).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // USER_HZ: 100 on every Linux this runs on.
    let hz = 100.0;
    let c0 = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let cpu = (cpu_ticks(pid) - c0) as f64 / hz;
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{} idle connections; child CPU {cpu:.3} s over {wall:.2} s under EMFILE",
        idle.len()
    );
    drop(idle);
    let mut o = SubscribeOptions::new(DeliveryMode::NewestOnly);
    o.runtime_dir = Some(d.clone());
    let t1 = Instant::now();
    let sub = within(Duration::from_secs(10), || {
        Subscriber::connect_host("emfile", o.clone()).is_ok()
    });
    println!(
        "a subscriber connected {sub:?} after the idle connections closed ({:?})",
        t1.elapsed()
    );
    std::fs::write(d.join("stop"), b"").unwrap();
    let _ = child.wait();
    assert!(
        cpu < 0.5 * wall,
        "the control thread spun: {cpu:.3} s CPU in {wall:.2} s"
    );
    assert!(
        sub.is_some(),
        "no subscriber could connect once fds were free"
    );
}

#[test]
fn a_stuck_in_order_reader_is_demoted_after_max_lag_events() {
    let _g = serial();
    let d = temp_dir("demote");
    let mut cfg = PublisherConfig::new("demote");
    cfg.runtime_dir = Some(d.clone());
    cfg.slots = 4;
    cfg.policy = cuframes_core::PublishPolicy::Wait;
    cfg.wait_timeout = Duration::from_millis(100);
    cfg.max_lag_events = Some(2);
    let mut p = Publisher::create(HostBackend, cfg, stream()).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(d);
    // Connected, never reads.
    let _stuck = Subscriber::connect_host("demote", o).unwrap();
    let mut waits = Vec::new();
    for _ in 0..40 {
        let t0 = Instant::now();
        let _ = p.publish(FrameMeta::default(), |_, _| Ok::<(), std::io::Error>(()));
        waits.push(t0.elapsed());
    }
    let stalls = waits
        .iter()
        .filter(|w| **w >= Duration::from_millis(90))
        .count();
    let s = p.stats();
    println!(
        "stalls of wait_timeout: {stalls}; lagged {}, demoted {}",
        s.lagged, s.demoted
    );
    assert_eq!(s.demoted, 1);
    assert_eq!(s.lagged, 2);
    assert_eq!(stalls, 2, "a demoted reader keeps nobody waiting");
    assert_eq!(s.published, 40);
}

/// Mappings of subscribers' lease rows in this process (the publisher maps
/// each row it is handed; the subscribers here map their own while alive).
fn mapped_lease_rows() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("cuframes-lease-row"))
        .count()
}

#[test]
fn subscribers_churning_against_an_idle_publisher_leave_no_rows_behind() {
    let _g = serial();
    let d = temp_dir("churn");
    let mut cfg = PublisherConfig::new("churn");
    cfg.runtime_dir = Some(d.clone());
    // Publishes nothing while they churn: a camera that is away.
    let mut p = Publisher::create(HostBackend, cfg, stream()).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(d);
    const ROUNDS: usize = 300;
    for i in 0..ROUNDS {
        let s = Subscriber::connect_host("churn", o.clone())
            .unwrap_or_else(|e| panic!("round {i}: {e}"));
        drop(s);
    }
    let gone = within(Duration::from_secs(10), || p.subscriber_count() == 0);
    assert!(gone.is_some(), "{} still counted", p.subscriber_count());
    let rows = within(Duration::from_secs(10), || mapped_lease_rows() == 0);
    println!(
        "{ROUNDS} subscribers came and went; rows still mapped: {}",
        mapped_lease_rows()
    );
    assert!(rows.is_some(), "{} rows still mapped", mapped_lease_rows());
    // The table is sound afterwards: a newcomer gets the next frame.
    let sub = Subscriber::connect_host("churn", o).unwrap();
    within(Duration::from_secs(5), || p.subscriber_count() == 1).unwrap();
    p.publish(FrameMeta::default(), |slot, s| {
        slot.bytes_mut()[..s.frame_size as usize].fill(7);
        Ok::<(), std::io::Error>(())
    })
    .unwrap();
    let f = sub.next_frame(Duration::from_secs(5)).unwrap();
    let mut rows_seen = 0;
    f.for_each_row(|row| {
        rows_seen += 1;
        assert!(row.iter().all(|&b| b == 7));
    });
    assert!(rows_seen > 0);
    drop(f);
    assert_eq!(
        mapped_lease_rows(),
        2,
        "the newcomer's row, mapped by both sides"
    );
}
