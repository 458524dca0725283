//! Cross-process benches of the host path, with iceoryx2 and a Unix socket
//! measured side by side in the same run (`docs/BENCHMARKS.md`).
//!
//! - `latency/*`: one-way publish-to-receive latency of a 64-byte item. The
//!   bench stamps CLOCK_MONOTONIC just before the publish call; the child
//!   subscriber stamps it when its receive call returns and sends the stamp
//!   back through a pipe. The bench then sleeps [`GAP`] so a blocking
//!   subscriber is asleep again before the next item. Criterion's figure is
//!   the round trip (publish → receive → ack through the pipe); the
//!   percentiles in the summary are the one-way stamps.
//! - `frames/*`: 1080p NV12 frames (3,110,400 bytes) to 1, 4 and 16
//!   subscribers, as fast as the slowest one takes them, without loss. The
//!   publisher copies a prepared frame into the transport once (each
//!   subscriber's socket, for the Unix socket); each subscriber reads one byte
//!   of every 4 KiB page of the frame, releases it and acks.
//! - `packets/*`: 1 KiB, 64 KiB and 1 MiB packets to one busy-polling
//!   subscriber, with a credit window (the packet ring never blocks its
//!   writer, so the bench keeps at most `window` packets unacknowledged);
//!   `packets/cuframes-block/*`: the same with a cuframes reader that blocks
//!   on the packet ring's futex word when it finds the ring empty.
//!
//! The binary re-executes itself as the child (`CUFRAMES_BENCH_ROLE`).
//! `CUFRAMES_BENCH_SLOTS` sets the cuframes frame ring's slot count
//! (default 8).
// clippy.toml bans integer atomics outside core's loom shim, for shared
// memory; the bench's counters are process-local bookkeeping.
#![allow(clippy::disallowed_types)]
#![allow(missing_docs)]

mod child;
mod peers;
mod proc;
mod report;

use criterion::{BenchmarkId, Criterion, Throughput};
use cuframes_core::runtime::clock::monotonic_ns;
use peers::{Pub, Setup};
use proc::Sub;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const FRAME_W: usize = 1920;
pub const FRAME_H: usize = 1080;
/// 1080p NV12: Y plane plus half-height interleaved CbCr.
pub const FRAME_SIZE: usize = FRAME_W * FRAME_H * 3 / 2;
/// Latency items are this many bytes (written by the publisher, every peer).
pub const LATENCY_ITEM: usize = 64;
/// Pause between latency items, so blocking subscribers are asleep.
pub const GAP: Duration = Duration::from_micros(100);

// Child environment.
pub const KIND: &str = "CB_KIND";
pub const WAKE: &str = "CB_WAKE";
pub const TARGET: &str = "CB_TARGET";
pub const DIR: &str = "CB_DIR";
pub const ACK_EVERY: &str = "CB_ACK_EVERY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Latency,
    Frames,
    Packets,
}

impl Kind {
    fn parse(s: &str) -> Kind {
        match s {
            "latency" => Kind::Latency,
            "frames" => Kind::Frames,
            "packets" => Kind::Packets,
            k => panic!("unknown kind {k}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Cuframes,
    Iceoryx2,
    Socket,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Cuframes => "cuframes",
            Peer::Iceoryx2 => "iceoryx2",
            Peer::Socket => "unix-socket",
        }
    }
}

pub const PEERS: [Peer; 3] = [Peer::Cuframes, Peer::Iceoryx2, Peer::Socket];

/// Name of the packets case whose cuframes reader blocks (futex) when the
/// ring is empty, instead of busy-polling.
pub const PACKETS_BLOCKING: &str = "cuframes-block";
/// Name of the packets case whose cuframes reader reads each packet in
/// place (`Subscriber::next_packet_with`, no copy), busy-polling.
pub const PACKETS_VIEW: &str = "cuframes-view";

/// Starts a case on first use (so filtered-out cases spawn nothing) and
/// stops it when dropped.
struct Lazy {
    dir: PathBuf,
    setup: Setup,
    live: Option<(Pub, Vec<Sub>)>,
    sent: u64,
}

impl Lazy {
    fn new(dir: &Path, setup: Setup) -> Self {
        Lazy {
            dir: dir.to_owned(),
            setup,
            live: None,
            sent: 0,
        }
    }

    fn get(&mut self) -> (&mut Pub, &mut Vec<Sub>) {
        let (p, subs) = self.live.get_or_insert_with(|| {
            let (p, mut subs) = peers::start(&self.dir, self.setup);
            if self.setup.kind != Kind::Latency {
                subs.iter_mut().for_each(Sub::track);
            }
            (p, subs)
        });
        (p, subs)
    }
}

impl Drop for Lazy {
    fn drop(&mut self) {
        if let Some((p, subs)) = self.live.take() {
            p.stop();
            drop(subs);
        }
    }
}

fn latency(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("latency");
    let cases = [
        (Peer::Cuframes, false, "futex"),
        (Peer::Cuframes, false, "futex-only"),
        (Peer::Cuframes, true, "poll"),
        (Peer::Iceoryx2, false, "event"),
        (Peer::Iceoryx2, true, "poll"),
        (Peer::Socket, false, "blocking"),
    ];
    for (peer, poll, wake) in cases {
        let id = format!("{}/{wake}", peer.name());
        let mut lazy = Lazy::new(
            dir,
            Setup {
                peer,
                kind: Kind::Latency,
                poll,
                futex_only: wake == "futex-only",
                in_place: false,
                subscribers: 1,
                max_len: LATENCY_ITEM,
                window: 1,
            },
        );
        g.bench_function(&id, |b| {
            b.iter_custom(|iters| {
                let (p, subs) = lazy.get();
                let sub = &mut subs[0];
                let mut item = [0u8; LATENCY_ITEM];
                let mut rtt = Duration::ZERO;
                let mut samples = Vec::with_capacity(iters as usize);
                let mut commit = Vec::new();
                for i in 0..iters {
                    std::thread::sleep(GAP);
                    item[..8].copy_from_slice(&i.to_le_bytes());
                    let start = Instant::now();
                    let t0 = monotonic_ns();
                    p.send(&item);
                    let ack = sub.read_ack();
                    rtt += start.elapsed();
                    samples.push(ack.at_ns.saturating_sub(t0));
                    if ack.pub_ns != 0 {
                        commit.push(ack.at_ns.saturating_sub(ack.pub_ns));
                    }
                }
                report::latency(&id, &samples);
                if !commit.is_empty() {
                    report::latency(&format!("{id} (commit->recv)"), &commit);
                }
                rtt
            })
        });
    }
    g.finish();
}

fn frames(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("frames-1080p-nv12");
    let src: Vec<u8> = (0..FRAME_SIZE).map(|i| (i * 7) as u8).collect();
    for n in [1usize, 4, 16] {
        g.throughput(Throughput::Elements(n as u64));
        for peer in PEERS {
            let id = format!("{}/{n}", peer.name());
            let mut lazy = Lazy::new(
                dir,
                Setup {
                    peer,
                    kind: Kind::Frames,
                    poll: false,
                    futex_only: false,
                    in_place: false,
                    subscribers: n,
                    max_len: FRAME_SIZE,
                    window: 1,
                },
            );
            g.bench_function(BenchmarkId::new(peer.name(), n), |b| {
                b.iter_custom(|iters| {
                    let sent = lazy.sent;
                    let (p, subs) = lazy.get();
                    let start = Instant::now();
                    for _ in 0..iters {
                        p.send(&src);
                    }
                    proc::wait_all(subs, sent + iters);
                    let t = start.elapsed();
                    lazy.sent += iters;
                    report::throughput(&id, iters, FRAME_SIZE as u64, n as u64, t);
                    t
                })
            });
        }
    }
    g.finish();
}

fn packets(c: &mut Criterion, dir: &Path) {
    let mut g = c.benchmark_group("packets");
    for (size, label) in [
        (1usize << 10, "1KiB"),
        (64 << 10, "64KiB"),
        (1 << 20, "1MiB"),
    ] {
        let src: Vec<u8> = (0..size).map(|i| (i * 13) as u8).collect();
        // Packets a reader may be behind, for every peer: half the cuframes
        // ring's 64 slots, or 8 MiB's worth (the cuframes ring and
        // iceoryx2's subscriber buffer are sized from it, peers.rs).
        let window = (32u64).min(((16 << 20) / 2 / size) as u64);
        g.throughput(Throughput::Bytes(size as u64));
        let cases = PEERS
            .map(|peer| (peer, peer.name(), true))
            .into_iter()
            .chain([
                (Peer::Cuframes, PACKETS_BLOCKING, false),
                (Peer::Cuframes, PACKETS_VIEW, true),
            ]);
        for (peer, name, poll) in cases {
            let id = format!("{name}/{label}");
            let mut lazy = Lazy::new(
                dir,
                Setup {
                    peer,
                    kind: Kind::Packets,
                    poll,
                    futex_only: false,
                    in_place: name == PACKETS_VIEW,
                    subscribers: 1,
                    max_len: size,
                    window,
                },
            );
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| {
                    let sent = lazy.sent;
                    let (p, subs) = lazy.get();
                    let start = Instant::now();
                    for i in 0..iters {
                        if sent + i + 1 > window {
                            proc::wait_min(subs, sent + i + 1 - window);
                        }
                        p.send(&src);
                    }
                    proc::wait_all(subs, sent + iters);
                    let t = start.elapsed();
                    lazy.sent += iters;
                    report::throughput(&id, iters, size as u64, 1, t);
                    t
                })
            });
        }
    }
    g.finish();
}

fn main() {
    if let Ok(role) = std::env::var(proc::ROLE) {
        child::run(&role);
    }
    let dir = std::env::temp_dir().join(format!("cuframes-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench runtime dir");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    latency(&mut c, &dir);
    frames(&mut c, &dir);
    packets(&mut c, &dir);
    c.final_summary();
    if std::env::args().any(|a| a == "--test") {
        println!("(criterion --test mode: one iteration per case; the figures below mean nothing)");
    }
    report::print();
    let _ = std::fs::remove_dir_all(&dir);
}
