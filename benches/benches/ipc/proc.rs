//! Child processes and the acknowledgement pipe between them and the bench.
//!
//! The bench re-executes its own binary with `CUFRAMES_BENCH_ROLE` set; the
//! child subscribes with the peer under test and writes 24-byte acks
//! (`count`, `receive_ns`, `publish_ns`: u64 LE, CLOCK_MONOTONIC ns) to its stdout,
//! which the bench reads. The ack pipe is never part of a one-way figure.

use std::io::{Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable that selects a child role.
pub const ROLE: &str = "CUFRAMES_BENCH_ROLE";

/// One ack.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    /// Items received so far (0: "subscribed, ready").
    pub count: u64,
    /// CLOCK_MONOTONIC ns when the last item was received.
    pub at_ns: u64,
    /// cuframes frames: the item's `FrameMeta::publish_ns` (stamped by the
    /// publisher just before the commit); 0 for the other peers.
    pub pub_ns: u64,
}

/// Writes acks to stdout; an error means the bench is gone.
pub struct AckWriter(std::io::Stdout);

impl AckWriter {
    pub fn new() -> Self {
        AckWriter(std::io::stdout())
    }

    /// Sends one ack; exits the child when the bench has gone away.
    pub fn send(&mut self, count: u64, at_ns: u64) {
        self.send3(count, at_ns, 0)
    }

    /// Sends one ack with the publisher's own stamp.
    pub fn send3(&mut self, count: u64, at_ns: u64, pub_ns: u64) {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&count.to_le_bytes());
        b[8..16].copy_from_slice(&at_ns.to_le_bytes());
        b[16..].copy_from_slice(&pub_ns.to_le_bytes());
        let mut out = self.0.lock();
        if out.write_all(&b).and_then(|_| out.flush()).is_err() {
            std::process::exit(0);
        }
    }
}

/// A spawned child subscriber.
pub struct Sub {
    child: Child,
    out: Option<ChildStdout>,
    /// Filled by [`Sub::track`]'s thread: latest ack count.
    pub count: Arc<AtomicU64>,
    /// Filled by [`Sub::track`]'s thread: latest ack time.
    pub at_ns: Arc<AtomicU64>,
}

impl Sub {
    /// Starts this binary in `role` with `env`, and waits for its "ready" ack.
    pub fn spawn(role: &str, env: &[(&str, String)]) -> Sub {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.env(ROLE, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn child subscriber");
        let out = child.stdout.take();
        let mut s = Sub {
            child,
            out,
            count: Arc::new(AtomicU64::new(0)),
            at_ns: Arc::new(AtomicU64::new(0)),
        };
        let ready = s.read_ack();
        assert_eq!(ready.count, 0, "child {role} did not start cleanly");
        s
    }

    /// Reads the next ack (blocking).
    pub fn read_ack(&mut self) -> Ack {
        let mut b = [0u8; 24];
        self.out
            .as_mut()
            .expect("ack pipe taken by track()")
            .read_exact(&mut b)
            .expect("child subscriber died (see its stderr above)");
        Ack {
            count: u64::from_le_bytes(b[..8].try_into().unwrap()),
            at_ns: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            pub_ns: u64::from_le_bytes(b[16..].try_into().unwrap()),
        }
    }

    /// Moves ack reading to a thread that keeps [`Sub::count`] / [`Sub::at_ns`]
    /// current and unparks the calling thread after each ack (throughput
    /// runs, where the bench must not block on one child). Waiting by
    /// parking, not spinning, matters on small machines: a spinning bench
    /// starves the thread that reads the acks.
    pub fn track(&mut self) {
        let mut out = self.out.take().expect("already tracked");
        let (count, at) = (self.count.clone(), self.at_ns.clone());
        let waiter = std::thread::current();
        std::thread::spawn(move || {
            let mut b = [0u8; 24];
            while out.read_exact(&mut b).is_ok() {
                at.store(
                    u64::from_le_bytes(b[8..16].try_into().unwrap()),
                    Ordering::SeqCst,
                );
                count.store(
                    u64::from_le_bytes(b[..8].try_into().unwrap()),
                    Ordering::SeqCst,
                );
                waiter.unpark();
            }
        });
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        // Children exit on their own once the publisher is gone; give them a
        // moment, then end this one (by its own handle).
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every tracked child acked at least `target` items.
pub fn wait_all(subs: &[Sub], target: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if subs
            .iter()
            .all(|s| s.count.load(Ordering::SeqCst) >= target)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers stalled below {target} items"
        );
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// Waits until every tracked child acked at least `target` items, parking
/// between checks (the window of the packet runs).
pub fn wait_min(subs: &[Sub], target: u64) {
    while min_count(subs) < target {
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// The smallest ack count of `subs`.
pub fn min_count(subs: &[Sub]) -> u64 {
    subs.iter()
        .map(|s| s.count.load(Ordering::SeqCst))
        .min()
        .unwrap_or(0)
}

/// Whether the process that started this child is gone (re-parented).
pub fn orphaned(parent: u32) -> bool {
    std::os::unix::process::parent_id() != parent
}

/// Reads a required environment variable of a child.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

/// Reads a numeric environment variable of a child.
pub fn env_u64(name: &str) -> u64 {
    env(name).parse().expect("numeric env")
}
