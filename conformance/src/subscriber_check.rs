//! `check-subscriber`: black-box cases for a subscriber command.
//!
//! The suite serves the command as a publisher ([`crate::harness`]) of
//! synthetic frames (host memory, or CUDA memory on request), in several
//! scenarios, one run of the command
//! each: a normal stream with a PING, an unknown message and an overrun
//! burst, then a clean end; a publisher crash; a STREAM_CHANGED; and WELCOMEs
//! or ERRORs the subscriber must refuse. It watches the command's lease row
//! (which it maps read-only, as any publisher does) and its messages.
//!
//! Contract for the command under test: it connects to the key given by the
//! `{key}` placeholder in its arguments (or `$CUFRAMES_KEY`) in the runtime
//! directory `{runtime_dir}` (or `$CUFRAMES_RUNTIME_DIR`), receives frames
//! holding each for 2-5 ms (so that sampling sees its leases), exits with
//! status 0 when the publisher ends the stream or disappears, and with a
//! non-zero status when the publisher refuses it.

use crate::harness::{Harness, HarnessConfig, HarnessMemory, WelcomeStyle};
use crate::{Case, Outcome, Report};
use cuframes_core::layout::{LEASE_MAGIC, SEQ_WRITING};
use cuframes_core::runtime::shm::Mapping;
use cuframes_core::sync::Ordering;
use cuframes_core::wire::{Message, MessageType, HELLO_WANTS_FRAMES};
use cuframes_core::DeliveryMode;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

macro_rules! case {
    ($name:ident, $id:literal, $sec:literal, $desc:literal) => {
        #[doc = $desc]
        pub const $name: Case = Case {
            id: $id,
            description: $desc,
            section: $sec,
        };
    };
}

case!(
    HELLO,
    "SUB-HELLO-001",
    "§4.3",
    "HELLO offers a version range containing 1.0, wants frames, names a known delivery mode"
);
case!(
    ROW_INIT,
    "SUB-ROW-001",
    "§3.5",
    "lease row: 4096 bytes, sealed, CUFLEASE magic, no lease and consumed_seq 0 at HELLO"
);
case!(ROW_BOUNDS, "SUB-ROW-002", "§3.5", "the subscriber writes only its lease entries and consumed_seq: magic kept, reserved words and bytes 128..4096 zero");
case!(
    ROW_VALUES,
    "SUB-ROW-003",
    "§5.2",
    "every lease value is a committed sequence number (never above latest_seq, never WRITING)"
);
case!(
    LEASE_IDLE,
    "SUB-LEASE-001",
    "§5.2",
    "releases every lease: 0.5 s after the last frame no entry is held"
);
case!(
    LEASE_HOLD,
    "SUB-LEASE-002",
    "§5.2",
    "no lease is held for more than 1 s while frames flow"
);
case!(
    RECV,
    "SUB-RECV-001",
    "§5.3",
    "receives frames: at least 10 distinct leases, newly leased seqs strictly increasing"
);
case!(
    OVERRUN,
    "SUB-OVERRUN-001",
    "§5.3",
    "after an overrun (5 x slot_count frames at once) it leases frames newer than the burst"
);
case!(
    INORDER,
    "SUB-INORDER-001",
    "§3.5",
    "InOrder: consumed_seq never decreases and never exceeds latest_seq"
);
case!(
    UNKNOWN,
    "SUB-WIRE-001",
    "§4.1",
    "an unknown message type before WELCOME is skipped (the subscriber then leases frames)"
);
case!(
    PING,
    "SUB-PING-001",
    "§6",
    "PING(n) once established is answered with PONG(n) within 1 s"
);
case!(MSGS, "SUB-MSG-001", "§6", "sends only HELLO, then PING/PONG/GOODBYE/RELEASE; never ERROR, WELCOME, STREAM_CHANGED or a second HELLO");
case!(
    END,
    "SUB-END-001",
    "§5.6",
    "clean end (CLOSED + GOODBYE EndOfStream): the command exits 0 within 5 s"
);
case!(
    CRASH,
    "SUB-DISC-001",
    "§5.6",
    "publisher crash (socket EOF without GOODBYE, state LIVE): the command exits with a non-zero status within 3 s (a crash is not a clean end; run subscribers without automatic reconnection)"
);
case!(
    OTHER_UID,
    "SUB-UID-001",
    "§2.1",
    "a publisher listening as another uid (nobody, 65534) is refused by default: no HELLO is sent and the command exits with a non-zero status within 3 s (needs root; N/A otherwise)"
);
case!(CHANGED, "SUB-CHG-001", "§6", "STREAM_CHANGED: the subscriber stays established or leaves with GOODBYE Normal; no protocol error, no crash");
case!(
    VER_WELCOME,
    "SUB-VER-001",
    "§6",
    "W1: a WELCOME naming version 2.0 is refused: connection closed, no lease taken"
);
case!(
    VER_ERROR,
    "SUB-VER-002",
    "§7",
    "ERROR VersionMismatch: reported as a failure (non-zero exit within 3 s), no lease taken"
);
case!(
    W_SLOTS,
    "SUB-W-002",
    "§6",
    "W2: a WELCOME with slot_count 1 is refused: connection closed, no lease taken"
);
case!(W_CONTROL, "SUB-W-006", "§6", "W6: a WELCOME whose control_size is not region_size(slot_count) is refused: connection closed, no lease taken");

case!(
    W_SEALS,
    "SUB-W-007",
    "§2.2",
    "W7: an unsealed control-region memfd (no F_SEAL_SHRINK/F_SEAL_FUTURE_WRITE) is refused: connection closed, no lease taken"
);
case!(
    W_SLOTFD,
    "SUB-W-010",
    "§6",
    "W10: slot fds of the wrong size are refused: connection closed, no lease taken"
);

/// Every case, in report order.
pub const CASES: &[Case] = &[
    HELLO,
    ROW_INIT,
    ROW_BOUNDS,
    ROW_VALUES,
    LEASE_IDLE,
    LEASE_HOLD,
    RECV,
    OVERRUN,
    INORDER,
    UNKNOWN,
    PING,
    MSGS,
    END,
    CRASH,
    OTHER_UID,
    CHANGED,
    VER_WELCOME,
    VER_ERROR,
    W_SLOTS,
    W_CONTROL,
    W_SEALS,
    W_SLOTFD,
];

/// The subscriber command under test.
#[derive(Debug, Clone)]
pub struct SubscriberTarget {
    /// Program.
    pub program: String,
    /// Arguments; `{key}` and `{runtime_dir}` are substituted.
    pub args: Vec<String>,
}

impl SubscriberTarget {
    fn describe(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn spawn(&self, key: &str, dir: &Path) -> Result<Child, String> {
        let d = dir.to_string_lossy();
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| a.replace("{key}", key).replace("{runtime_dir}", &d))
            .collect();
        let log =
            std::fs::File::create(dir.join(format!("{key}.log"))).map_err(|e| e.to_string())?;
        Command::new(&self.program)
            .args(&args)
            .env("CUFRAMES_RUNTIME_DIR", dir)
            .env("CUFRAMES_KEY", key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program))
    }
}

/// The command and the memory served.
struct Target<'a> {
    t: &'a SubscriberTarget,
    memory: HarnessMemory,
}

/// The subscriber process of one scenario; killed if still running on drop.
struct Proc {
    child: Child,
    status: Option<ExitStatus>,
    log: PathBuf,
}

impl Proc {
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let t: String = s
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        t.trim().replace('\n', " | ")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.poll().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the suite saw of one lease row over time.
#[derive(Debug, Default)]
struct RowWatch {
    since: [(u64, Option<Instant>); 4],
    max_hold: Duration,
    max_hold_seq: u64,
    leased: Vec<u64>,
    bounds: Option<String>,
    values: Option<String>,
    consumed: Option<String>,
    last_consumed: u64,
    samples: u64,
    magic_zero: bool,
}

impl RowWatch {
    fn observe(&mut self, row: &Mapping, latest: u64, inorder: bool) {
        let w = row.words();
        let now = Instant::now();
        self.samples += 1;
        if self.bounds.is_none() {
            // The row is rewritten after WELCOME (§3.5: zeroed, then the
            // magic stored again), so one sample may catch the magic at 0.
            let magic = w[0].load(Ordering::SeqCst);
            let zero_again = magic == 0 && self.magic_zero;
            self.magic_zero = magic == 0;
            if (magic != LEASE_MAGIC && magic != 0) || zero_again {
                self.bounds = Some(format!("the magic word changed to {magic:#x}"));
            } else if let Some(i) = (6..w.len()).find(|&i| w[i].load(Ordering::Relaxed) != 0) {
                self.bounds = Some(format!(
                    "byte {} of the lease row holds {:#x} (outside the entries and consumed_seq)",
                    i * 8,
                    w[i].load(Ordering::Relaxed)
                ));
            }
        }
        for e in 0..4 {
            let v = w[1 + e].load(Ordering::SeqCst);
            if v != 0 && (v & SEQ_WRITING != 0 || v > latest) && self.values.is_none() {
                self.values = Some(format!(
                    "entry {e} holds {v:#x} while latest_seq is {latest}"
                ));
            }
            let (old, since) = self.since[e];
            if v != old || since.is_none() {
                if v != 0 && v != old && !self.leased.contains(&v) {
                    self.leased.push(v);
                }
                self.since[e] = (v, Some(now));
            } else if v != 0 {
                if let Some(s) = since {
                    let held = now - s;
                    if held > self.max_hold {
                        self.max_hold = held;
                        self.max_hold_seq = v;
                    }
                }
            }
        }
        let c = w[5].load(Ordering::SeqCst);
        if inorder && self.consumed.is_none() {
            if c < self.last_consumed {
                self.consumed = Some(format!(
                    "consumed_seq went back from {} to {c}",
                    self.last_consumed
                ));
            } else if c > latest {
                self.consumed = Some(format!("consumed_seq {c} > latest_seq {latest}"));
            }
        }
        self.last_consumed = c;
    }

    fn held_now(row: &Mapping) -> Vec<u64> {
        (0..4)
            .map(|e| row.words()[1 + e].load(Ordering::SeqCst))
            .filter(|&v| v != 0)
            .collect()
    }

    fn increasing(&self) -> bool {
        self.leased.windows(2).all(|p| p[0] < p[1])
    }
}

struct Scenario {
    h: Harness,
    p: Proc,
    watch: RowWatch,
    inorder: bool,
}

const HELLO_WAIT: Duration = Duration::from_secs(5);

impl Scenario {
    fn start(
        t: &Target<'_>,
        dir: &Path,
        key: &str,
        cfg: impl FnOnce(&mut HarnessConfig),
    ) -> Result<Self, String> {
        let mut c = HarnessConfig::new(key, dir);
        c.memory = t.memory;
        cfg(&mut c);
        let mut h = Harness::start(c).map_err(|e| e.to_string())?;
        for _ in 0..5 {
            h.publish();
        }
        let child = t.t.spawn(key, dir)?;
        Ok(Scenario {
            h,
            p: Proc {
                child,
                status: None,
                log: dir.join(format!("{key}.log")),
            },
            watch: RowWatch::default(),
            inorder: false,
        })
    }

    fn row(&self) -> Option<&Mapping> {
        self.h.conns.first().and_then(|c| c.row.as_ref())
    }

    fn tick(&mut self) {
        self.h.pump();
        let latest = self.h.latest_seq();
        if let Some(c) = self.h.conns.first() {
            if let Some(seen) = &c.hello {
                self.inorder = seen.hello.mode == DeliveryMode::InOrder;
            }
            if let Some(row) = c.row.as_ref() {
                self.watch.observe(row, latest, self.inorder);
            }
        }
        self.p.poll();
    }

    /// Waits for the HELLO (and WELCOME, if the harness sends one).
    fn wait_hello(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + HELLO_WAIT;
        while Instant::now() < deadline {
            self.tick();
            if self.h.conns.first().is_some_and(|c| c.hello.is_some()) {
                return Ok(());
            }
            if let Some(s) = self.p.status {
                return Err(format!(
                    "the command exited ({s}) without sending HELLO: {}",
                    self.p.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(format!(
            "no HELLO within {HELLO_WAIT:?}: {}",
            self.p.log_tail()
        ))
    }

    /// Publishes `n` frames at `fps`, observing between frames.
    fn stream(&mut self, n: u32, fps: u32, mut each: impl FnMut(&mut Self, u32)) {
        let period = Duration::from_secs(1) / fps;
        let mut next = Instant::now();
        let mut i = 0;
        while i < n {
            self.tick();
            if Instant::now() >= next {
                self.h.publish();
                each(self, i);
                i += 1;
                next += period;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn idle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.tick();
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn wait_exit(&mut self, d: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.tick();
            if let Some(s) = self.p.poll() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    fn received(&self) -> Vec<(u32, Instant, Option<u64>)> {
        self.h
            .conns
            .first()
            .map(|c| c.received.clone())
            .unwrap_or_default()
    }
}

fn fail(s: impl Into<String>) -> Outcome {
    Outcome::Fail(s.into())
}

/// Up to 8 values, then how many in all.
fn brief(v: &[u64]) -> String {
    if v.len() <= 8 {
        format!("{v:?}")
    } else {
        format!("{:?}… ({} in all)", &v[..8], v.len())
    }
}

/// Runs every case against `t`, with sockets in a fresh directory under
/// `work`, serving frames from `memory`.
pub fn run(t: &SubscriberTarget, work: &Path, memory: HarnessMemory) -> Report {
    run_only(t, work, memory, &|_| true)
}

/// Runs the scenarios holding a case `want` selects (a scenario reports all
/// its cases).
pub fn run_only(
    t: &SubscriberTarget,
    work: &Path,
    memory: HarnessMemory,
    want: &dyn Fn(&Case) -> bool,
) -> Report {
    let subject = match memory {
        HarnessMemory::Host => t.describe(),
        HarnessMemory::Cuda(c) => format!(
            "{} (CUDA memory: {:?}, {:?})",
            t.describe(),
            c.memory,
            c.sync
        ),
        HarnessMemory::Vulkan(c) => format!("{} (Vulkan memory, {:?})", t.describe(), c.sync),
    };
    let mut r = Report::new("check-subscriber", &subject);
    let t = &Target { t, memory };
    let dir = work.join(format!("cuframes-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        for c in CASES {
            r.push(
                *c,
                fail(format!("cannot create {}: {e}", dir.display())),
                Duration::ZERO,
            );
        }
        return r;
    }
    if BASIC.iter().any(want) {
        basic(t, &dir, &mut r);
    }
    if want(&CRASH) {
        crash(t, &dir, &mut r);
    }
    if want(&OTHER_UID) {
        other_uid(t, &dir, &mut r);
    }
    if want(&CHANGED) {
        changed(t, &dir, &mut r);
    }
    let refusals = [
        (
            VER_WELCOME,
            "conf-sub-ver",
            WelcomeStyle::VersionOutsideOffer,
        ),
        (VER_ERROR, "conf-sub-err", WelcomeStyle::RefuseVersion),
        (W_SLOTS, "conf-sub-slots", WelcomeStyle::OneSlot),
        (W_CONTROL, "conf-sub-ctl", WelcomeStyle::WrongControlSize),
        (W_SEALS, "conf-sub-seals", WelcomeStyle::UnsealedControl),
        (W_SLOTFD, "conf-sub-slotfd", WelcomeStyle::WrongSlotFds),
    ];
    // Legacy IPC slots travel as handles, not fds: no slot fd to get wrong.
    let no_slot_fds = matches!(
        memory,
        HarnessMemory::Cuda(c) if c.memory == cuframes_cuda::CudaMemory::LegacyIpc
    );
    for (case, key, style) in refusals {
        if !want(&case) {
            continue;
        }
        if style == WelcomeStyle::WrongSlotFds && no_slot_fds {
            r.push(
                case,
                Outcome::Skip("CudaLegacyIpc sends no slot fds (W10 does not apply)".into()),
                Duration::ZERO,
            );
            continue;
        }
        refusal(t, &dir, &mut r, case, key, style);
    }
    let _ = std::fs::remove_dir_all(&dir);
    r.results
        .sort_by_key(|x| CASES.iter().position(|c| c.id == x.case.id));
    r
}

const BASIC: &[Case] = &[
    HELLO, ROW_INIT, ROW_BOUNDS, ROW_VALUES, LEASE_IDLE, LEASE_HOLD, RECV, OVERRUN, INORDER,
    UNKNOWN, PING, MSGS, END,
];

fn basic(t: &Target<'_>, dir: &Path, r: &mut Report) {
    let start = Instant::now();
    let mut s = match Scenario::start(t, dir, "conf-sub-basic", |c| {
        c.unknown_before_welcome = true
    }) {
        Ok(s) => s,
        Err(e) => {
            for c in BASIC {
                r.push(*c, fail(e.clone()), Duration::ZERO);
            }
            return;
        }
    };
    if let Err(e) = s.wait_hello() {
        for c in BASIC {
            r.push(*c, fail(e.clone()), start.elapsed());
        }
        return;
    }
    let seen = s.h.conns[0].hello.clone();
    let nonce = 0x5EED_0000_0000_0001u64;
    let mut ping_at = None;
    s.stream(60, 100, |s, i| {
        if i == 20 {
            s.h.broadcast(&Message::Ping(nonce));
            ping_at = Some(Instant::now());
        }
    });
    for _ in 0..5 * s.h.slot_count() {
        s.h.publish();
    }
    let burst_end = s.h.latest_seq();
    s.stream(60, 100, |_, _| {});
    s.idle(Duration::from_millis(500));
    let held_idle = s.row().map(RowWatch::held_now).unwrap_or_default();
    let established = s.row().is_some();
    let msgs = s.received();
    s.h.finish();
    let status = s.wait_exit(Duration::from_secs(5));
    let el = start.elapsed();
    let w = &s.watch;
    let not_est = || fail("the subscriber never became established");

    // HELLO.
    let o = match &seen {
        Some(h) => {
            let v = h.hello;
            let one = (1u16, 0u16);
            if (v.version_min.major, v.version_min.minor) > one
                || (v.version_max.major, v.version_max.minor) < one
            {
                fail(format!(
                    "offer {}..={} excludes 1.0",
                    v.version_min, v.version_max
                ))
            } else if v.flags & HELLO_WANTS_FRAMES == 0 {
                fail(format!("flags {:#x} without WANTS_FRAMES", v.flags))
            } else if let DeliveryMode::Unknown(m) = v.mode {
                fail(format!("unknown delivery mode {m}"))
            } else {
                Outcome::Pass
            }
        }
        None => fail("no HELLO"),
    };
    r.push(HELLO, o, el);
    let o = match &seen {
        Some(h) => match &h.row_error {
            Some(e) => fail(e.clone()),
            None => {
                let row = h.initial_row;
                if row[1..16].iter().any(|&x| x != 0) {
                    fail(format!(
                        "row at HELLO is not zero beyond the magic: {:?}",
                        &row[1..16]
                    ))
                } else {
                    Outcome::Pass
                }
            }
        },
        None => fail("no HELLO"),
    };
    r.push(ROW_INIT, o, el);
    let est = |o: Outcome| if established { o } else { not_est() };
    r.push(
        ROW_BOUNDS,
        est(w.bounds.clone().map_or(Outcome::Pass, Outcome::Fail)),
        el,
    );
    r.push(
        ROW_VALUES,
        est(w.values.clone().map_or(Outcome::Pass, Outcome::Fail)),
        el,
    );
    r.push(
        LEASE_IDLE,
        est(Outcome::check(held_idle.is_empty(), || {
            format!("still holding {held_idle:?} 0.5 s after the last frame")
        })),
        el,
    );
    r.push(
        LEASE_HOLD,
        est(Outcome::check(w.max_hold <= Duration::from_secs(1), || {
            format!("held seq {} for {:?}", w.max_hold_seq, w.max_hold)
        })),
        el,
    );
    r.push(
        RECV,
        est(if w.leased.len() < 10 {
            fail(format!(
                "only {} distinct leases seen: {:?}",
                w.leased.len(),
                brief(&w.leased)
            ))
        } else {
            Outcome::check(w.increasing(), || {
                format!("lease order {}", brief(&w.leased))
            })
        }),
        el,
    );
    r.push(
        OVERRUN,
        est(Outcome::check(
            w.leased.iter().any(|&v| v > burst_end),
            || format!("no lease above the burst's last seq {burst_end}"),
        )),
        el,
    );
    r.push(
        INORDER,
        if !s.inorder {
            Outcome::Skip("the subscriber asked for NewestOnly".into())
        } else {
            est(w.consumed.clone().map_or(Outcome::Pass, Outcome::Fail))
        },
        el,
    );
    r.push(
        UNKNOWN,
        est(Outcome::check(!w.leased.is_empty(), || {
            "established but never leased a frame after the unknown message".into()
        })),
        el,
    );
    let pong = msgs
        .iter()
        .find(|m| m.0 == MessageType::Pong.code() && m.2 == Some(nonce));
    r.push(
        PING,
        est(match (pong, ping_at) {
            (Some(p), Some(at)) if p.1.saturating_duration_since(at) <= Duration::from_secs(1) => {
                Outcome::Pass
            }
            (Some(p), Some(at)) => fail(format!(
                "PONG after {:?}",
                p.1.saturating_duration_since(at)
            )),
            _ => fail("no PONG with the PING's nonce"),
        }),
        el,
    );
    r.push(MSGS, est(bad_messages(&msgs)), el);
    r.push(
        END,
        match status {
            Some(st) if st.success() => Outcome::Pass,
            Some(st) => fail(format!("exited with {st}: {}", s.p.log_tail())),
            None => fail("still running 5 s after the stream ended"),
        },
        el,
    );
}

fn bad_messages(msgs: &[(u32, Instant, Option<u64>)]) -> Outcome {
    let allowed_after = [
        MessageType::Ping.code(),
        MessageType::Pong.code(),
        MessageType::Goodbye.code(),
        MessageType::Release.code(),
    ];
    for (i, m) in msgs.iter().enumerate() {
        let known = m.0 <= 8;
        if i == 0 {
            if m.0 != MessageType::Hello.code() && known {
                return fail(format!("first message is type {}", m.0));
            }
        } else if known && !allowed_after.contains(&m.0) {
            return fail(format!("sent message type {} after HELLO", m.0));
        }
    }
    Outcome::Pass
}

fn crash(t: &Target<'_>, dir: &Path, r: &mut Report) {
    let start = Instant::now();
    let mut s = match Scenario::start(t, dir, "conf-sub-crash", |_| {}) {
        Ok(s) => s,
        Err(e) => return r.push(CRASH, fail(e), Duration::ZERO),
    };
    if let Err(e) = s.wait_hello() {
        return r.push(CRASH, fail(e), start.elapsed());
    }
    s.stream(30, 100, |_, _| {});
    if let Some(st) = s.p.poll() {
        return r.push(
            CRASH,
            fail(format!("exited ({st}) before the publisher went away")),
            start.elapsed(),
        );
    }
    s.h.crash();
    let o = match s.wait_exit(Duration::from_secs(3)) {
        Some(st) if st.success() => fail(format!(
            "exited with status 0 after the publisher crashed (a crash is not a clean end): {}",
            s.p.log_tail()
        )),
        Some(_) => Outcome::Pass,
        None => fail("still running 3 s after the publisher's socket closed"),
    };
    r.push(CRASH, o, start.elapsed());
}

fn other_uid(t: &Target<'_>, dir: &Path, r: &mut Report) {
    if !rustix::process::geteuid().is_root() {
        return r.push(
            OTHER_UID,
            Outcome::Skip("needs root to listen as another uid".into()),
            Duration::ZERO,
        );
    }
    let start = Instant::now();
    let mut s = match Scenario::start(t, dir, "conf-sub-uid", |c| c.listen_as_uid = Some(65534)) {
        Ok(s) => s,
        Err(e) => return r.push(OTHER_UID, fail(e), Duration::ZERO),
    };
    let status = s.wait_exit(Duration::from_secs(3));
    let hello = s.h.conns.first().is_some_and(|c| c.hello.is_some());
    let o = match status {
        _ if hello => fail("sent HELLO to a publisher of another uid (accepted an impostor)"),
        Some(st) if st.success() => {
            fail("exited with status 0 after refusing (a refusal is an error)")
        }
        Some(_) => Outcome::Pass,
        None => fail("still running 3 s after connecting to a publisher of another uid"),
    };
    r.push(OTHER_UID, o, start.elapsed());
}

fn changed(t: &Target<'_>, dir: &Path, r: &mut Report) {
    let start = Instant::now();
    let mut s = match Scenario::start(t, dir, "conf-sub-changed", |_| {}) {
        Ok(s) => s,
        Err(e) => return r.push(CHANGED, fail(e), Duration::ZERO),
    };
    if let Err(e) = s.wait_hello() {
        return r.push(CHANGED, fail(e), start.elapsed());
    }
    s.stream(30, 100, |_, _| {});
    s.h.broadcast(&Message::StreamChanged(2));
    let sent = Instant::now();
    s.stream(60, 100, |_, _| {});
    let msgs = s.received();
    let closed = s.h.conns.first().and_then(|c| c.closed.clone());
    s.h.finish();
    let status = s.wait_exit(Duration::from_secs(5));
    let after: Vec<u32> = msgs.iter().filter(|m| m.1 >= sent).map(|m| m.0).collect();
    let o = if let Outcome::Fail(e) = bad_messages(&msgs) {
        fail(e)
    } else if let Some((why, _)) = &closed {
        // It left: it must have said GOODBYE Normal first.
        let bye = msgs
            .iter()
            .any(|m| m.1 >= sent && m.0 == MessageType::Goodbye.code() && m.2 == Some(0));
        Outcome::check(bye, || {
            format!("connection ended ({why}) after STREAM_CHANGED without GOODBYE Normal; sent {after:?}")
        })
    } else {
        Outcome::Pass
    };
    let o = match (o, status) {
        (Outcome::Pass, Some(st)) if st.code().is_none() || st.code() == Some(101) => {
            fail(format!("the command crashed ({st}): {}", s.p.log_tail()))
        }
        (o, _) => o,
    };
    r.push(CHANGED, o, start.elapsed());
}

fn refusal(t: &Target<'_>, dir: &Path, r: &mut Report, case: Case, key: &str, style: WelcomeStyle) {
    let start = Instant::now();
    let mut s = match Scenario::start(t, dir, key, |c| c.welcome = style) {
        Ok(s) => s,
        Err(e) => return r.push(case, fail(e), Duration::ZERO),
    };
    if let Err(e) = s.wait_hello() {
        return r.push(case, fail(e), start.elapsed());
    }
    // Keep publishing: a subscriber that wrongly accepts would lease.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut closed_at = None;
    while Instant::now() < deadline {
        s.stream(5, 100, |_, _| {});
        let c = &s.h.conns[0];
        if c.closed.is_some() && closed_at.is_none() {
            closed_at = Some(Instant::now());
        }
        let exited = s.p.poll().is_some();
        if !s.watch.leased.is_empty()
            || (style == WelcomeStyle::RefuseVersion && exited)
            || (style != WelcomeStyle::RefuseVersion && closed_at.is_some())
        {
            break;
        }
    }
    let leased = s.watch.leased.clone();
    let o = if !leased.is_empty() {
        fail(format!(
            "leased frames {} after a WELCOME it must refuse",
            brief(&leased)
        ))
    } else if style == WelcomeStyle::RefuseVersion {
        match s.p.poll() {
            Some(st) if !st.success() => Outcome::Pass,
            Some(st) => fail(format!("exited with {st} after a refusal")),
            None => fail("still running 3 s after ERROR VersionMismatch"),
        }
    } else {
        Outcome::check(closed_at.is_some(), || {
            "the connection stayed open 3 s after a WELCOME it must refuse".into()
        })
    };
    s.h.finish();
    let _ = s.wait_exit(Duration::from_millis(500));
    r.push(case, o, start.elapsed());
}
