//! `check-publisher`: black-box cases for a live publisher.
//!
//! The suite connects to `<runtime dir>/<key>.sock` as many subscribers,
//! speaking the wire protocol itself (core's codec and SCM_RIGHTS channel),
//! so it can also send what a correct subscriber never would: malformed,
//! oversized and unknown messages, wrong versions, bad lease rows. It maps
//! the control region and slots read-only, holds leases through its own lease
//! row, and watches what the publisher does with them.
//!
//! The publisher under test must be publishing frames (host memory, at least
//! ~10 frames per second) for the whole run; it may or may not have a packet
//! ring. Cases that need more progress than the publisher made are skipped,
//! never failed.

use crate::{Case, Outcome, Report};
use cuframes_core::layout::{
    header, ControlHeader, ControlLayout, StreamDesc, LEASES_PER_ROW, LEASE_REGION_SIZE,
    SEQ_WRITING, STATE_LIVE,
};
use cuframes_core::packet::{PacketGeometry, PACKET_HEADER_SIZE, PACKET_MAGIC, SEQ_NONE};
use cuframes_core::runtime::channel::{Channel, ChannelError};
use cuframes_core::runtime::shm::{self, Access, Mapping};
use cuframes_core::runtime::PublisherConfig;
use cuframes_core::sync::{fence, Ordering};
use cuframes_core::wire::{
    decode, ErrorCode, GoodbyeReason, Hello, Message, Name, HELLO_WANTS_FRAMES,
    HELLO_WANTS_PACKETS, WELCOME_HAS_PACKETS,
};
use cuframes_core::{DeliveryMode, MemoryKind, SyncKind, Version, PROTOCOL_VERSION};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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

case!(HS_NEWEST, "PUB-HS-001", "§4.3", "HELLO 1.0..=1.0, NewestOnly, frames: WELCOME 1.0 with a non-zero id, 2..=64 slots, consistent handle_len and fd count (W1-W5)");
case!(
    HS_DEADLINE,
    "PUB-HS-005",
    "§6",
    "a connection that never sends HELLO is closed by the handshake deadline (within it + 2 s)"
);
case!(
    HS_INORDER,
    "PUB-HS-002",
    "§4.3",
    "HELLO in InOrder mode is accepted with a correct WELCOME"
);
case!(
    HS_TAIL,
    "PUB-HS-003",
    "§4.1",
    "a HELLO payload longer than needed is accepted (tail ignored)"
);
case!(
    HS_MANY,
    "PUB-HS-004",
    "§4.3",
    "8 simultaneous subscribers are all welcomed with distinct non-zero subscriber ids"
);
case!(
    VER_MAJOR,
    "PUB-VER-001",
    "§7",
    "offer 2.0..=2.0: ERROR VersionMismatch, then the connection closes"
);
case!(
    VER_WIDE,
    "PUB-VER-002",
    "§7",
    "offer 1.0..=3.0: WELCOME with a 1.x version inside the offer"
);
case!(
    VER_MINOR,
    "PUB-VER-003",
    "§7",
    "offer 0.1..=1.65535: WELCOME with a 1.x version inside the offer"
);
case!(
    VER_EMPTY,
    "PUB-VER-004",
    "§7",
    "offer with min > max (1.1..=1.0): ERROR VersionMismatch"
);
case!(
    VER_OLD,
    "PUB-VER-005",
    "§7",
    "offer 0.0..=0.9: ERROR VersionMismatch naming both sides"
);
case!(
    REF_NOTHING,
    "PUB-REF-001",
    "§6",
    "HELLO wanting neither frames nor packets: ERROR Unsupported"
);
case!(
    REF_MODE,
    "PUB-REF-002",
    "§6",
    "HELLO with unknown delivery mode 7: ERROR Unsupported"
);
case!(
    REF_NOFD,
    "PUB-REF-003",
    "§4.4",
    "HELLO wanting frames without a lease-row fd: ERROR BadMessage"
);
case!(
    REF_MAGIC,
    "PUB-REF-004",
    "§3.5",
    "lease row without the CUFLEASE magic: ERROR BadMessage"
);
case!(
    REF_SIZE,
    "PUB-REF-005",
    "§3.5",
    "lease row of 8192 bytes instead of 4096: ERROR BadMessage"
);
case!(
    REF_UNSEALED,
    "PUB-REF-006",
    "§2.2",
    "unsealed lease row (no F_SEAL_SHRINK/F_SEAL_FUTURE_WRITE): ERROR BadMessage"
);
case!(
    WIRE_STRAY,
    "PUB-WIRE-007",
    "§4.1",
    "fds sent after HELLO (on PING and an unknown message) are closed at once, not kept"
);
case!(
    WIRE_SHORT,
    "PUB-WIRE-001",
    "§4.1",
    "HELLO payload shorter than 36 bytes: ERROR BadMessage and close"
);
case!(
    WIRE_LONG,
    "PUB-WIRE-002",
    "§4.1",
    "length field 16385 (oversized): the connection is closed"
);
case!(
    WIRE_UNKNOWN,
    "PUB-WIRE-003",
    "§4.1",
    "an unknown message type before HELLO is skipped; HELLO is then welcomed"
);
case!(
    WIRE_UTF8,
    "PUB-WIRE-004",
    "§4.3",
    "HELLO whose name is not UTF-8: ERROR BadMessage"
);
case!(
    ST_PING_EARLY,
    "PUB-ST-001",
    "§6",
    "PING before HELLO: ERROR BadMessage"
);
case!(
    ST_PING,
    "PUB-ST-002",
    "§6",
    "PING(n) once established: PONG(n)"
);
case!(
    ST_IGNORE,
    "PUB-ST-003",
    "§6",
    "unknown type and RELEASE once established are ignored (a later PING is answered)"
);
case!(
    ST_HELLO2,
    "PUB-ST-004",
    "§6",
    "a second HELLO once established: ERROR BadMessage"
);
case!(
    WIRE_NAME,
    "PUB-WIRE-005",
    "§4.3",
    "HELLO whose name_len is 65 (over 64): ERROR BadMessage"
);
case!(
    WIRE_FDS,
    "PUB-WIRE-006",
    "§4.1",
    "320 fds on unknown messages before HELLO: each closed once its message is handled, or the connection is closed; never kept"
);
case!(
    ST_WELCOME_EARLY,
    "PUB-ST-005",
    "§6",
    "WELCOME sent by a subscriber before HELLO: ERROR BadMessage"
);
case!(
    ST_BYE_EARLY,
    "PUB-ST-006",
    "§6",
    "GOODBYE before HELLO: the publisher closes the connection without WELCOME"
);
case!(
    ST_ERROR,
    "PUB-ST-007",
    "§6",
    "ERROR from an established subscriber: the publisher closes the connection"
);
case!(
    MEM_FDS,
    "PUB-MEM-001",
    "§2.2",
    "control and slot memfds have exactly the announced sizes and both seals (W6, W7, W10)"
);
case!(
    MEM_HEADER,
    "PUB-MEM-002",
    "§3.2",
    "control header validates, agrees with WELCOME (W8, W9), state LIVE, reserved words zero"
);
case!(
    MEM_STREAM,
    "PUB-MEM-003",
    "§3.3",
    "stream description validates against slot_size; generation >= 1; reserved words zero"
);
case!(
    MEM_SLOTS,
    "PUB-MEM-004",
    "§3.4",
    "slot table over 1 s: seq 0, WRITING or <= latest_seq; committed seqs unique; reserved zero"
);
case!(
    SEQ_MONO,
    "PUB-SEQ-001",
    "§5.4",
    "latest_seq and frames_published never decrease; latest_seq grows; wake moves with it"
);
case!(
    SEQ_START,
    "PUB-SEQ-002",
    "§4.3",
    "WELCOME start_seq lies between latest_seq before HELLO and after WELCOME"
);
case!(
    LEASE_ONE,
    "PUB-LEASE-001",
    "§5.2",
    "a leased slot is never rewritten: seq and bytes unchanged over 1.5 s of publishing"
);
case!(
    LEASE_FOUR,
    "PUB-LEASE-002",
    "§5.2",
    "four simultaneous leases (every entry) are all respected over 1 s"
);
case!(
    LEASE_EVICT,
    "PUB-LEASE-005",
    "§5.2",
    "eviction attack: every slot pinned by rows that also write a fresh value into two entries every ms; the publisher commits again within lease_timeout + 2 s"
);
case!(
    LEASE_META,
    "PUB-LEASE-003",
    "§3.4",
    "metadata under a lease: generation = stream generation, reserved flag bits zero"
);
case!(
    SLOW_INORDER,
    "PUB-SLOW-001",
    "§5.4",
    "an InOrder subscriber that never consumes does not stall publication: over slot_count frames committed within 4 s"
);
case!(
    RECLAIM_CRASH,
    "PUB-RECLAIM-001",
    "§5.6",
    "subscriber crashes mid-lease (socket closes, no GOODBYE): with every other slot pinned, its slot is rewritten within 3 s"
);
case!(
    RECLAIM_BYE,
    "PUB-RECLAIM-002",
    "§5.6",
    "subscriber sends GOODBYE while holding a lease: with every other slot pinned, its slot is rewritten within 3 s"
);
case!(PKT_WELCOME, "PUB-PKT-001", "§9.6", "frames+packets HELLO: with HAS_PACKETS the packet memfd has the announced size, seals and a valid header");
case!(
    PKT_ONLY,
    "PUB-PKT-002",
    "§9.6",
    "packets-only HELLO: WELCOME with 2 fds if a ring exists, else ERROR Unsupported"
);
case!(PKT_RING, "PUB-PKT-003", "§9.4", "packet ring over 1 s: global_seq never decreases, slot seqs sit in their slots, offsets 8-aligned");

/// Every case, in report order.
pub const CASES: &[Case] = &[
    HS_NEWEST,
    HS_INORDER,
    HS_TAIL,
    HS_MANY,
    HS_DEADLINE,
    VER_MAJOR,
    VER_WIDE,
    VER_MINOR,
    VER_EMPTY,
    VER_OLD,
    REF_NOTHING,
    REF_MODE,
    REF_NOFD,
    REF_MAGIC,
    REF_SIZE,
    REF_UNSEALED,
    WIRE_SHORT,
    WIRE_LONG,
    WIRE_UNKNOWN,
    WIRE_UTF8,
    WIRE_NAME,
    WIRE_FDS,
    WIRE_STRAY,
    ST_PING_EARLY,
    ST_PING,
    ST_IGNORE,
    ST_HELLO2,
    ST_WELCOME_EARLY,
    ST_BYE_EARLY,
    ST_ERROR,
    MEM_FDS,
    MEM_HEADER,
    MEM_STREAM,
    MEM_SLOTS,
    SEQ_MONO,
    SEQ_START,
    LEASE_ONE,
    LEASE_FOUR,
    LEASE_META,
    LEASE_EVICT,
    SLOW_INORDER,
    RECLAIM_CRASH,
    RECLAIM_BYE,
    PKT_WELCOME,
    PKT_ONLY,
    PKT_RING,
];

/// The publisher under test.
#[derive(Debug, Clone)]
pub struct PublisherTarget {
    /// Stream key.
    pub key: String,
    /// Runtime directory holding `<key>.sock`.
    pub runtime_dir: PathBuf,
    /// The publisher's `lease_timeout` (default 5 s, §5.2): PUB-LEASE-005
    /// waits up to this + 2 s for progress.
    pub lease_timeout: Duration,
    /// The publisher's handshake deadline (default 3 s, §6): PUB-HS-005
    /// waits up to this + 2 s for the close.
    pub handshake_timeout: Duration,
}

impl PublisherTarget {
    /// `key` in `runtime_dir`, with the protocol's default timeouts.
    pub fn new(key: &str, runtime_dir: PathBuf) -> Self {
        PublisherTarget {
            key: key.to_owned(),
            runtime_dir,
            lease_timeout: PublisherConfig::DEFAULT_LEASE_TIMEOUT,
            handshake_timeout: PublisherConfig::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    fn socket(&self) -> PathBuf {
        self.runtime_dir.join(format!("{}.sock", self.key))
    }
}

const REPLY: Duration = Duration::from_secs(3);
const V1_0: Version = Version { major: 1, minor: 0 };

/// What the publisher answered.
#[derive(Debug)]
enum Reply {
    Welcome(WelcomeInfo),
    Error(ErrorCode, String),
    Other(u32),
    Closed,
    Timeout,
    Broken(String),
}

impl Reply {
    fn describe(&self) -> String {
        match self {
            Reply::Welcome(w) => format!("WELCOME version {}", w.version),
            Reply::Error(c, t) => format!("ERROR {c:?} {t:?}"),
            Reply::Other(t) => format!("message of type {t}"),
            Reply::Closed => "connection closed without a reply".into(),
            Reply::Timeout => format!("no reply within {REPLY:?}"),
            Reply::Broken(e) => format!("unreadable reply: {e}"),
        }
    }
}

/// WELCOME, copied out of its buffer.
#[derive(Debug, Clone)]
struct WelcomeInfo {
    version: Version,
    subscriber_id: u32,
    memory_kind: MemoryKind,
    sync_kind: SyncKind,
    slot_count: u32,
    flags: u32,
    control_size: u64,
    slot_size: u64,
    start_seq: u64,
    handle_len: u32,
    packet_region_size: u64,
}

/// A lease row the suite owns.
struct Row {
    fd: OwnedFd,
    map: Mapping,
}

impl Row {
    fn new() -> Result<Self, String> {
        let (fd, map) = shm::create_shared("cuframes-lease-row", LEASE_REGION_SIZE)
            .map_err(|e| e.to_string())?;
        let w = map.words();
        w[crate::word::ROW_MAGIC].store(cuframes_core::layout::LEASE_MAGIC, Ordering::SeqCst);
        Ok(Row { fd, map })
    }
    fn set(&self, entry: usize, v: u64) {
        self.map.words()[crate::word::ROW_LEASES + entry].store(v, Ordering::SeqCst);
    }
    fn set_consumed(&self, v: u64) {
        self.map.words()[crate::word::ROW_CONSUMED].store(v, Ordering::SeqCst);
    }
}

/// One raw connection.
struct Client {
    chan: Channel,
    raw: UnixStream,
}

fn hello(min: Version, max: Version, flags: u32, mode: DeliveryMode) -> Hello {
    Hello {
        version_min: min,
        version_max: max,
        flags,
        mode,
        gpu_uuid: [0; 16],
        name: Name::truncated("cuframes-conformance"),
    }
}

fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut b = vec![0u8; msg.buffer_len()];
    let _ = msg.emit(&mut b);
    b
}

impl Client {
    fn connect(t: &PublisherTarget) -> Result<Self, String> {
        let s = UnixStream::connect(t.socket())
            .map_err(|e| format!("cannot connect to {}: {e}", t.socket().display()))?;
        let raw = s.try_clone().map_err(|e| e.to_string())?;
        Ok(Client {
            chan: Channel::new(s),
            raw,
        })
    }

    fn send(&self, msg: &Message<'_>, fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<(), String> {
        self.chan.send(msg, fds).map_err(|e| e.to_string())
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.raw.write_all(bytes).map_err(|e| e.to_string())
    }

    /// The next message of a known type (unknown types are skipped).
    fn reply(&mut self, timeout: Duration) -> Reply {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let raw = match self.chan.recv(Some(left)) {
                Ok(Some(r)) => r,
                Ok(None) => return Reply::Timeout,
                Err(ChannelError::Closed) => return Reply::Closed,
                Err(e) => return Reply::Broken(e.to_string()),
            };
            let msg = match decode(&raw) {
                Ok(Some(d)) => d.message,
                Ok(None) => return Reply::Broken("truncated".into()),
                Err(e) => return Reply::Broken(e.to_string()),
            };
            return match msg {
                Message::Welcome(w) => Reply::Welcome(WelcomeInfo {
                    version: w.version,
                    subscriber_id: w.subscriber_id,
                    memory_kind: w.memory_kind,
                    sync_kind: w.sync_kind,
                    slot_count: w.slot_count,
                    flags: w.flags,
                    control_size: w.control_size,
                    slot_size: w.slot_size,
                    start_seq: w.start_seq,
                    handle_len: w.handle_len,
                    packet_region_size: w.packet_region_size,
                }),
                Message::Error(e) => Reply::Error(e.code, e.text.to_owned()),
                Message::Unknown { .. } => continue,
                m => Reply::Other(m.kind().code()),
            };
        }
    }

    /// Waits for EOF; true if the publisher closed within `timeout`.
    fn closes_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.chan.recv(Some(left)) {
                Ok(Some(_)) => continue,
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// An established frame session: WELCOME, mapped control region and slots.
struct Session {
    client: Client,
    row: Row,
    w: WelcomeInfo,
    layout: ControlLayout,
    control: Mapping,
    control_fd: OwnedFd,
    slot_fds: Vec<OwnedFd>,
    slots: Vec<Mapping>,
    packet_fd: Option<OwnedFd>,
    stream: StreamDesc,
}

/// `round_up(max(n, 1), 4096)`, saturating (a hostile `slot_size` near
/// 2^64 must not overflow; the size check then fails).
fn round_page(n: u64) -> u64 {
    n.max(1).div_ceil(4096).saturating_mul(4096)
}

impl Session {
    fn open(t: &PublisherTarget, mode: DeliveryMode, flags: u32) -> Result<Self, String> {
        let mut client = Client::connect(t)?;
        let row = Row::new()?;
        client.send(
            &Message::Hello(hello(V1_0, V1_0, flags, mode)),
            &[row.fd.as_fd()],
        )?;
        let w = match client.reply(REPLY) {
            Reply::Welcome(w) => w,
            r => return Err(format!("expected WELCOME, got {}", r.describe())),
        };
        let layout = ControlLayout::new(w.slot_count)
            .ok_or_else(|| format!("WELCOME slot_count {} outside 2..=64", w.slot_count))?;
        if w.memory_kind != MemoryKind::HostMemfd {
            return Err(format!(
                "memory kind {:?}: this suite maps host memory only",
                w.memory_kind
            ));
        }
        let packets = w.flags & WELCOME_HAS_PACKETS != 0;
        let n = 1 + w.slot_count as usize + usize::from(packets);
        let mut fds = client
            .chan
            .take_fds(n)
            .map_err(|e| format!("WELCOME fds: {e}"))?;
        let packet_fd = if packets { fds.pop() } else { None };
        let slot_fds = fds.split_off(1);
        let control_fd = fds.remove(0);
        if w.control_size != layout.region_size() {
            return Err(format!(
                "control_size {} != region_size({}) = {}",
                w.control_size,
                w.slot_count,
                layout.region_size()
            ));
        }
        shm::check_received(control_fd.as_fd(), w.control_size)
            .map_err(|e| format!("control region: {e}"))?;
        let control = Mapping::map(
            control_fd.as_fd(),
            w.control_size as usize,
            Access::ReadOnly,
        )
        .map_err(|e| format!("control region: {e}"))?;
        let slot_len = round_page(w.slot_size);
        let mut slots = Vec::new();
        for (i, f) in slot_fds.iter().enumerate() {
            shm::check_received(f.as_fd(), slot_len).map_err(|e| format!("slot {i}: {e}"))?;
            slots.push(
                Mapping::map(f.as_fd(), slot_len as usize, Access::ReadOnly)
                    .map_err(|e| format!("slot {i}: {e}"))?,
            );
        }
        let stream = snapshot_stream(&control);
        row.set_consumed(w.start_seq);
        Ok(Session {
            client,
            row,
            w,
            layout,
            control,
            control_fd,
            slot_fds,
            slots,
            packet_fd,
            stream,
        })
    }

    fn word(&self, i: usize) -> u64 {
        self.control.words()[i].load(Ordering::SeqCst)
    }
    fn latest(&self) -> u64 {
        self.word(crate::word::LATEST_SEQ)
    }
    fn slot_word(&self, i: u32, w: usize) -> u64 {
        self.word((self.layout.slot_offset(i) / 8) as usize + w)
    }
    fn slot_seq(&self, i: u32) -> u64 {
        self.slot_word(i, crate::word::SLOT_SEQ)
    }
    fn wake(&self) -> u32 {
        self.control
            .u32_at(header::WAKE_OFFSET)
            .map_or(0, |w| w.load(Ordering::SeqCst))
    }

    /// Waits until at least one frame is committed.
    fn wait_frame(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.latest() == 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Leases a committed frame other than those in `avoid` into `entry`
    /// (S1, fence, S2). Returns (slot, seq).
    fn lease_any(&self, entry: usize, avoid: &[u64]) -> Option<(u32, u64)> {
        for _ in 0..2000 {
            let latest = self.latest();
            for i in 0..self.layout.slot_count {
                let s = self.slot_seq(i);
                if s == 0 || s & SEQ_WRITING != 0 || s > latest || avoid.contains(&s) {
                    continue;
                }
                self.row.set(entry, s);
                fence(Ordering::SeqCst);
                if self.slot_seq(i) == s {
                    return Some((i, s));
                }
                self.row.set(entry, 0);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    fn lease_newest(&self, entry: usize) -> Option<(u32, u64)> {
        for _ in 0..2000 {
            let latest = self.latest();
            if latest != 0 && latest & SEQ_WRITING == 0 {
                if let Some(i) = (0..self.layout.slot_count).find(|&i| self.slot_seq(i) == latest) {
                    self.row.set(entry, latest);
                    fence(Ordering::SeqCst);
                    if self.slot_seq(i) == latest {
                        return Some((i, latest));
                    }
                    self.row.set(entry, 0);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    /// Leases, into `entry`, whatever frame slot `i` holds (retrying while
    /// the publisher rewrites it); `false` if no lease could be confirmed.
    fn lease_slot(&self, entry: usize, i: u32) -> bool {
        for round in 0..20_000u32 {
            let v = self.slot_seq(i);
            if v != 0 && v & SEQ_WRITING == 0 {
                self.row.set(entry, v);
                fence(Ordering::SeqCst);
                if self.slot_seq(i) == v {
                    return true;
                }
                self.row.set(entry, 0);
            }
            if round % 64 == 63 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        false
    }

    fn slot_hash(&self, i: u32) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let b = self.slots[i as usize].bytes();
        let n = (self.stream.frame_size as usize).min(b.len());
        b[..n].hash(&mut h);
        h.finish()
    }
}

fn snapshot_header(m: &Mapping) -> ControlHeader {
    let mut raw = [0u64; 32];
    for (i, v) in raw.iter_mut().enumerate() {
        *v = m.words()[i].load(Ordering::Acquire);
    }
    zerocopy::transmute!(raw)
}

fn snapshot_stream(m: &Mapping) -> StreamDesc {
    let mut raw = [0u64; 16];
    for (i, v) in raw.iter_mut().enumerate() {
        *v = m.words()[32 + i].load(Ordering::Acquire);
    }
    zerocopy::transmute!(raw)
}

/// Runs every case against `t`.
pub fn run(t: &PublisherTarget) -> Report {
    run_only(t, &|_| true)
}

/// Runs the cases `want` selects against `t`.
pub fn run_only(t: &PublisherTarget, want: &dyn Fn(&Case) -> bool) -> Report {
    let mut r = Report::new("check-publisher", &format!("key {}", t.key));
    let mut go = |case: Case, f: &dyn Fn(&PublisherTarget) -> Outcome| {
        if !want(&case) {
            return;
        }
        let start = Instant::now();
        let o = f(t);
        r.push(case, o, start.elapsed());
    };
    go(HS_NEWEST, &|t| welcome_case(t, DeliveryMode::NewestOnly));
    go(HS_INORDER, &|t| welcome_case(t, DeliveryMode::InOrder));
    go(HS_TAIL, &hello_tail);
    go(HS_MANY, &many);
    go(HS_DEADLINE, &hs_deadline);
    go(VER_MAJOR, &|t| {
        refused(
            t,
            ver(2, 0),
            ver(2, 0),
            HELLO_WANTS_FRAMES,
            1,
            RowKind::Good,
            ErrorCode::VersionMismatch,
            true,
        )
    });
    go(VER_WIDE, &|t| version_ok(t, ver(1, 0), ver(3, 0)));
    go(VER_MINOR, &|t| version_ok(t, ver(0, 1), ver(1, 65535)));
    go(VER_EMPTY, &|t| {
        refused(
            t,
            ver(1, 1),
            ver(1, 0),
            HELLO_WANTS_FRAMES,
            1,
            RowKind::Good,
            ErrorCode::VersionMismatch,
            false,
        )
    });
    go(VER_OLD, &|t| {
        refused(
            t,
            ver(0, 0),
            ver(0, 9),
            HELLO_WANTS_FRAMES,
            1,
            RowKind::Good,
            ErrorCode::VersionMismatch,
            false,
        )
    });
    go(REF_NOTHING, &|t| {
        refused(
            t,
            V1_0,
            V1_0,
            0,
            1,
            RowKind::None,
            ErrorCode::Unsupported,
            false,
        )
    });
    go(REF_MODE, &|t| {
        refused(
            t,
            V1_0,
            V1_0,
            HELLO_WANTS_FRAMES,
            7,
            RowKind::Good,
            ErrorCode::Unsupported,
            false,
        )
    });
    go(REF_NOFD, &|t| {
        refused(
            t,
            V1_0,
            V1_0,
            HELLO_WANTS_FRAMES,
            1,
            RowKind::None,
            ErrorCode::BadMessage,
            false,
        )
    });
    go(REF_MAGIC, &|t| {
        refused(
            t,
            V1_0,
            V1_0,
            HELLO_WANTS_FRAMES,
            1,
            RowKind::NoMagic,
            ErrorCode::BadMessage,
            false,
        )
    });
    go(REF_SIZE, &|t| {
        refused(
            t,
            V1_0,
            V1_0,
            HELLO_WANTS_FRAMES,
            1,
            RowKind::TooBig,
            ErrorCode::BadMessage,
            false,
        )
    });
    go(REF_UNSEALED, &|t| {
        refused(
            t,
            V1_0,
            V1_0,
            HELLO_WANTS_FRAMES,
            1,
            RowKind::Unsealed,
            ErrorCode::BadMessage,
            false,
        )
    });
    go(WIRE_SHORT, &wire_short);
    go(WIRE_LONG, &wire_long);
    go(WIRE_UNKNOWN, &wire_unknown);
    go(WIRE_UTF8, &wire_utf8);
    go(WIRE_NAME, &wire_name);
    go(WIRE_FDS, &wire_fds);
    go(WIRE_STRAY, &wire_stray);
    go(ST_PING_EARLY, &ping_early);
    go(ST_PING, &ping);
    go(ST_IGNORE, &ignore_established);
    go(ST_HELLO2, &second_hello);
    go(ST_WELCOME_EARLY, &welcome_early);
    go(ST_BYE_EARLY, &bye_early);
    go(ST_ERROR, &error_established);
    go(MEM_FDS, &mem_fds);
    go(MEM_HEADER, &mem_header);
    go(MEM_STREAM, &mem_stream);
    go(MEM_SLOTS, &mem_slots);
    go(SEQ_MONO, &seq_mono);
    go(SEQ_START, &seq_start);
    go(LEASE_ONE, &lease_one);
    go(LEASE_FOUR, &lease_four);
    go(LEASE_META, &lease_meta);
    go(LEASE_EVICT, &lease_evict);
    go(SLOW_INORDER, &slow_inorder);
    go(RECLAIM_CRASH, &|t| reclaim(t, false));
    go(RECLAIM_BYE, &|t| reclaim(t, true));
    go(PKT_WELCOME, &pkt_welcome);
    go(PKT_ONLY, &pkt_only);
    go(PKT_RING, &pkt_ring);
    r
}

const fn ver(major: u16, minor: u16) -> Version {
    Version { major, minor }
}

fn fail(s: impl Into<String>) -> Outcome {
    Outcome::Fail(s.into())
}

fn welcome_checks(w: &WelcomeInfo, min: Version, max: Version) -> Result<(), String> {
    let (v, lo, hi) = (w.version, (min.major, min.minor), (max.major, max.minor));
    if (v.major, v.minor) < lo || (v.major, v.minor) > hi {
        return Err(format!("W1: version {v} outside the offer {min}..={max}"));
    }
    if v.major != PROTOCOL_VERSION.major {
        return Err(format!("version {v}: major is not 1"));
    }
    if !(2..=64).contains(&w.slot_count) {
        return Err(format!("W2: slot_count {}", w.slot_count));
    }
    let mem = match w.memory_kind {
        MemoryKind::CudaLegacyIpc => 64,
        MemoryKind::Unknown(c) => return Err(format!("unknown memory kind {c}")),
        _ => 0,
    };
    let ev = if w.sync_kind == SyncKind::IpcEvent {
        64
    } else {
        0
    };
    if w.handle_len != mem + ev {
        return Err(format!("W3: handle_len {} != {}", w.handle_len, mem + ev));
    }
    if w.subscriber_id == 0 {
        return Err("subscriber_id is 0".into());
    }
    Ok(())
}

fn welcome_case(t: &PublisherTarget, mode: DeliveryMode) -> Outcome {
    match Session::open(t, mode, HELLO_WANTS_FRAMES) {
        Ok(s) => match welcome_checks(&s.w, V1_0, V1_0) {
            Ok(()) => {
                // W5: nothing beyond the announced fds arrives.
                if s.slot_fds.len() != s.w.slot_count as usize {
                    fail(format!(
                        "{} slot fds for {} slots",
                        s.slot_fds.len(),
                        s.w.slot_count
                    ))
                } else {
                    Outcome::Pass
                }
            }
            Err(e) => fail(e),
        },
        Err(e) => fail(e),
    }
}

fn hello_tail(t: &PublisherTarget) -> Outcome {
    let Ok(mut c) = Client::connect(t) else {
        return fail("cannot connect");
    };
    let Ok(row) = Row::new() else {
        return fail("cannot create a lease row");
    };
    let mut b = encode(&Message::Hello(hello(
        V1_0,
        V1_0,
        HELLO_WANTS_FRAMES,
        DeliveryMode::NewestOnly,
    )));
    let name_len = b.len() - 44;
    b.extend_from_slice(&[0xA5; 16]);
    let len = (36 + name_len + 16) as u32;
    b[4..8].copy_from_slice(&len.to_le_bytes());
    // Send it with the row fd: through the channel as an Unknown-typed
    // message of type 1 (the encoder writes the bytes verbatim).
    let msg = Message::Unknown {
        kind: 1,
        payload: &b[8..],
    };
    if let Err(e) = c.send(&msg, &[row.fd.as_fd()]) {
        return fail(e);
    }
    match c.reply(REPLY) {
        Reply::Welcome(_) => Outcome::Pass,
        r => fail(format!("expected WELCOME, got {}", r.describe())),
    }
}

fn many(t: &PublisherTarget) -> Outcome {
    let mut ids = Vec::new();
    let mut sessions = Vec::new();
    for i in 0..8 {
        let mode = if i % 2 == 0 {
            DeliveryMode::NewestOnly
        } else {
            DeliveryMode::InOrder
        };
        match Session::open(t, mode, HELLO_WANTS_FRAMES) {
            Ok(s) => {
                ids.push(s.w.subscriber_id);
                sessions.push(s);
            }
            Err(e) => return fail(format!("subscriber {i}: {e}")),
        }
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    Outcome::check(sorted.len() == 8 && !ids.contains(&0), || {
        format!("subscriber ids {ids:?}")
    })
}

/// Kinds of lease row sent with HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Good,
    None,
    NoMagic,
    TooBig,
    Unsealed,
}

fn make_row(kind: RowKind) -> Result<Option<OwnedFd>, String> {
    Ok(match kind {
        RowKind::None => None,
        RowKind::Good => Some(Row::new()?.fd),
        RowKind::NoMagic => Some(
            shm::create_shared("cuframes-lease-row", LEASE_REGION_SIZE)
                .map_err(|e| e.to_string())?
                .0,
        ),
        RowKind::TooBig => {
            let (fd, map) =
                shm::create_shared("cuframes-lease-row", 8192).map_err(|e| e.to_string())?;
            map.words()[0].store(cuframes_core::layout::LEASE_MAGIC, Ordering::SeqCst);
            Some(fd)
        }
        RowKind::Unsealed => {
            let fd =
                rustix::fs::memfd_create("cuframes-lease-row", rustix::fs::MemfdFlags::CLOEXEC)
                    .map_err(|e| e.to_string())?;
            rustix::fs::ftruncate(&fd, LEASE_REGION_SIZE).map_err(|e| e.to_string())?;
            let mut magic = b"CUFLEASE".to_vec();
            magic.resize(8, 0);
            rustix::io::pwrite(&fd, &magic, 0).map_err(|e| e.to_string())?;
            Some(fd)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn refused(
    t: &PublisherTarget,
    min: Version,
    max: Version,
    flags: u32,
    mode: u32,
    row: RowKind,
    want: ErrorCode,
    check_close: bool,
) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let fd = match make_row(row) {
        Ok(f) => f,
        Err(e) => return fail(format!("suite could not build its lease row: {e}")),
    };
    let fds: Vec<_> = fd.iter().map(|f| f.as_fd()).collect();
    let h = hello(min, max, flags, DeliveryMode::from_code(mode));
    if let Err(e) = c.send(&Message::Hello(h), &fds) {
        return fail(e);
    }
    match c.reply(REPLY) {
        Reply::Error(code, text) if code == want => {
            if want == ErrorCode::VersionMismatch && !text.contains(&format!("{min}")) {
                return fail(format!(
                    "VersionMismatch text {text:?} does not name the offer {min}..={max}"
                ));
            }
            if check_close && !c.closes_within(REPLY) {
                return fail("the connection stayed open after ERROR");
            }
            Outcome::Pass
        }
        r => fail(format!("expected ERROR {want:?}, got {}", r.describe())),
    }
}

fn version_ok(t: &PublisherTarget, min: Version, max: Version) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let Ok(row) = Row::new() else {
        return fail("cannot create a lease row");
    };
    let h = hello(min, max, HELLO_WANTS_FRAMES, DeliveryMode::NewestOnly);
    if let Err(e) = c.send(&Message::Hello(h), &[row.fd.as_fd()]) {
        return fail(e);
    }
    match c.reply(REPLY) {
        Reply::Welcome(w) => match welcome_checks(&w, min, max) {
            Ok(()) => Outcome::Pass,
            Err(e) => fail(e),
        },
        r => fail(format!("expected WELCOME, got {}", r.describe())),
    }
}

fn expect_bad_message(c: &mut Client) -> Outcome {
    match c.reply(REPLY) {
        Reply::Error(ErrorCode::BadMessage, _) => Outcome::check(c.closes_within(REPLY), || {
            "the connection stayed open after ERROR".into()
        }),
        r => fail(format!("expected ERROR BadMessage, got {}", r.describe())),
    }
}

fn wire_short(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut b = vec![1, 0, 0, 0, 20, 0, 0, 0];
    b.extend_from_slice(&[0u8; 20]);
    if let Err(e) = c.send_raw(&b) {
        return fail(e);
    }
    expect_bad_message(&mut c)
}

fn wire_long(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut b = vec![1, 0, 0, 0];
    b.extend_from_slice(&16385u32.to_le_bytes());
    b.extend_from_slice(&[0u8; 64]);
    if let Err(e) = c.send_raw(&b) {
        return fail(e);
    }
    // An ERROR BadMessage may precede the close; nothing else may.
    match c.reply(REPLY) {
        Reply::Closed | Reply::Broken(_) => Outcome::Pass,
        Reply::Error(ErrorCode::BadMessage, _) => Outcome::check(c.closes_within(REPLY), || {
            "the connection stayed open".into()
        }),
        r => fail(format!(
            "expected the connection to close, got {}",
            r.describe()
        )),
    }
}

fn wire_unknown(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let Ok(row) = Row::new() else {
        return fail("cannot create a lease row");
    };
    let unk = Message::Unknown {
        kind: 0x7777,
        payload: &[0x55; 100],
    };
    if let Err(e) = c.send(&unk, &[]) {
        return fail(e);
    }
    let h = hello(V1_0, V1_0, HELLO_WANTS_FRAMES, DeliveryMode::NewestOnly);
    if let Err(e) = c.send(&Message::Hello(h), &[row.fd.as_fd()]) {
        return fail(e);
    }
    match c.reply(REPLY) {
        Reply::Welcome(_) => Outcome::Pass,
        r => fail(format!("expected WELCOME, got {}", r.describe())),
    }
}

fn wire_utf8(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut b = encode(&Message::Hello(hello(
        V1_0,
        V1_0,
        0,
        DeliveryMode::NewestOnly,
    )));
    // Replace the name with two invalid UTF-8 bytes.
    b.truncate(44);
    b.extend_from_slice(&[0xFF, 0xFE]);
    b[4..8].copy_from_slice(&38u32.to_le_bytes());
    b[40..42].copy_from_slice(&2u16.to_le_bytes());
    if let Err(e) = c.send_raw(&b) {
        return fail(e);
    }
    expect_bad_message(&mut c)
}

fn ping_early(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = c.send(&Message::Ping(7), &[]) {
        return fail(e);
    }
    expect_bad_message(&mut c)
}

fn pong_for(c: &mut Client, nonce: u64) -> Outcome {
    if let Err(e) = c.send(&Message::Ping(nonce), &[]) {
        return fail(e);
    }
    let deadline = Instant::now() + REPLY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.chan.recv(Some(left)) {
            Ok(Some(raw)) => match decode(&raw) {
                Ok(Some(d)) => match d.message {
                    Message::Pong(n) if n == nonce => return Outcome::Pass,
                    Message::Pong(n) => return fail(format!("PONG({n:#x}) for PING({nonce:#x})")),
                    Message::Unknown { .. } => continue,
                    m => return fail(format!("expected PONG, got {:?}", m.kind())),
                },
                _ => return fail("undecodable reply"),
            },
            Ok(None) => return fail(format!("no PONG within {REPLY:?}")),
            Err(e) => return fail(format!("connection ended: {e}")),
        }
    }
}

fn ping(t: &PublisherTarget) -> Outcome {
    match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(mut s) => pong_for(&mut s.client, 0x0123_4567_89AB_CDEF),
        Err(e) => fail(e),
    }
}

fn ignore_established(t: &PublisherTarget) -> Outcome {
    match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(mut s) => {
            let unk = Message::Unknown {
                kind: 0xDEAD,
                payload: &[1, 2, 3],
            };
            if let Err(e) = s.client.send(&unk, &[]) {
                return fail(e);
            }
            if let Err(e) = s.client.send(&Message::Release(1), &[]) {
                return fail(e);
            }
            pong_for(&mut s.client, 99)
        }
        Err(e) => fail(e),
    }
}

fn second_hello(t: &PublisherTarget) -> Outcome {
    match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(mut s) => {
            let h = hello(V1_0, V1_0, HELLO_WANTS_FRAMES, DeliveryMode::NewestOnly);
            let Ok(row) = Row::new() else {
                return fail("cannot create a lease row");
            };
            if let Err(e) = s.client.send(&Message::Hello(h), &[row.fd.as_fd()]) {
                return fail(e);
            }
            expect_bad_message(&mut s.client)
        }
        Err(e) => fail(e),
    }
}

fn mem_fds(t: &PublisherTarget) -> Outcome {
    // Session::open already applies W6, W7 and W10 and fails on them.
    match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => {
            // A writable shared mapping of a received fd must fail.
            let w = Mapping::map(
                s.control_fd.as_fd(),
                s.w.control_size as usize,
                Access::ReadWrite,
            );
            if w.is_ok() {
                return fail("the control region could be mapped writable");
            }
            for (i, f) in s.slot_fds.iter().enumerate() {
                if Mapping::map(
                    f.as_fd(),
                    round_page(s.w.slot_size) as usize,
                    Access::ReadWrite,
                )
                .is_ok()
                {
                    return fail(format!("slot {i} could be mapped writable"));
                }
            }
            Outcome::Pass
        }
        Err(e) => fail(e),
    }
}

fn mem_header(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let h = snapshot_header(&s.control);
    if let Err(e) = ControlLayout::validate(&h, &s.stream, s.control.len() as u64) {
        return fail(format!("W8: {e}"));
    }
    if h.memory_kind != u64::from(s.w.memory_kind.code())
        || h.sync_kind != u64::from(s.w.sync_kind.code())
        || h.slot_count != u64::from(s.w.slot_count)
        || h.slot_size != s.w.slot_size
    {
        return fail(format!(
            "W9: header kinds/slots ({}, {}, {}, {}) differ from WELCOME",
            h.memory_kind, h.sync_kind, h.slot_count, h.slot_size
        ));
    }
    if h.publisher_state != STATE_LIVE {
        return fail(format!(
            "publisher_state {} (expected LIVE 1)",
            h.publisher_state
        ));
    }
    if h.reserved.iter().any(|&w| w != 0) {
        return fail("reserved header words are not zero");
    }
    if h.wake >> 32 != 0 || h.release_wake >> 32 != 0 {
        return fail("reserved high halves of the futex words are not zero");
    }
    if s.w.memory_kind == MemoryKind::HostMemfd && h.gpu_uuid != [0, 0] {
        return fail("gpu_uuid is not zero for host memory");
    }
    Outcome::Pass
}

fn mem_stream(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let d = s.stream;
    if let Err(e) = d.validate(s.w.slot_size) {
        return fail(format!("stream description: {e}"));
    }
    if d.generation == 0 {
        return fail("generation is 0");
    }
    if d.reserved.iter().any(|&w| w != 0) {
        return fail("reserved stream words are not zero");
    }
    if d.colour >> 32 != 0 {
        return fail("reserved colour bits 32..63 are not zero");
    }
    // The description does not change while this implementation runs.
    std::thread::sleep(Duration::from_millis(200));
    Outcome::check(snapshot_stream(&s.control) == d, || {
        "the stream description changed without STREAM_CHANGED".into()
    })
}

fn mem_slots(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        let mut seen = Vec::new();
        for i in 0..s.layout.slot_count {
            let seq = s.slot_seq(i);
            let latest = s.latest();
            if seq & SEQ_WRITING == 0 && seq > latest {
                return fail(format!("slot {i} seq {seq} > latest_seq {latest}"));
            }
            if seq != 0 && seq & SEQ_WRITING == 0 {
                seen.push(seq);
            }
            if s.slot_word(i, 6) != 0 || s.slot_word(i, 7) != 0 {
                return fail(format!("slot {i}: reserved words are not zero"));
            }
        }
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != n {
            return fail("two slots hold the same committed seq");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Outcome::Pass
}

fn seq_mono(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Each sample loads wake, then latest_seq, as a subscriber does (§5.5).
    let mut prev_w = s.wake();
    let first = s.latest();
    let mut last = first;
    let mut published = s.word(crate::word::FRAMES_PUBLISHED);
    let end = Instant::now() + Duration::from_millis(1500);
    let mut wake_ok = true;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(2));
        let w = s.wake();
        let l = s.latest();
        let p = s.word(crate::word::FRAMES_PUBLISHED);
        if l < last {
            return fail(format!("latest_seq went back from {last} to {l}"));
        }
        if p < published {
            return fail(format!(
                "frames_published went back from {published} to {p}"
            ));
        }
        // A commit stores latest_seq, then bumps wake (§5.4 steps 4, 6).
        // latest_seq moved after the previous sample loaded wake, so that
        // commit's bump came after that load too: once it has had time to
        // finish, wake differs from the previous sample's value.
        if l > last {
            std::thread::sleep(Duration::from_millis(20));
            if s.wake() == prev_w {
                wake_ok = false;
            }
        }
        prev_w = w;
        last = l;
        published = p;
    }
    if last == first {
        return fail("latest_seq did not grow in 1.5 s (is the publisher publishing?)");
    }
    Outcome::check(wake_ok, || {
        "latest_seq grew but the wake word did not change".into()
    })
}

fn seq_start(t: &PublisherTarget) -> Outcome {
    // Watch latest_seq through an earlier session's mapping.
    let probe = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let before = probe.latest();
    let s = match Session::open(t, DeliveryMode::InOrder, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let after = probe.latest();
    Outcome::check(before <= s.w.start_seq && s.w.start_seq <= after, || {
        format!("start_seq {} outside [{before}, {after}]", s.w.start_seq)
    })
}

/// Commits seen from `from` until `latest`.
fn progress(s: &Session, from: u64) -> u64 {
    s.latest().saturating_sub(from)
}

fn lease_one(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !s.wait_frame(REPLY) {
        return Outcome::Skip("no frame was published".into());
    }
    let Some((i, seq)) = s.lease_newest(0) else {
        return Outcome::Skip("could not confirm a lease (publisher too fast?)".into());
    };
    let hash = s.slot_hash(i);
    let start = s.latest();
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        let now = s.slot_seq(i);
        if now != seq && now != (SEQ_WRITING | seq) {
            return fail(format!("leased slot {i} (seq {seq}) now holds {now:#x}"));
        }
        if now == seq && s.slot_hash(i) != hash && s.slot_seq(i) == seq {
            return fail(format!("bytes of leased slot {i} (seq {seq}) changed"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    s.row.set(0, 0);
    let n = progress(&s, start);
    if n < u64::from(s.w.slot_count) {
        return Outcome::Skip(format!(
            "only {n} frames published while the lease was held; need {}",
            s.w.slot_count
        ));
    }
    Outcome::Pass
}

fn lease_four(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !s.wait_frame(REPLY) {
        return Outcome::Skip("no frame was published".into());
    }
    let want = 4.min(s.w.slot_count as usize - 1);
    let mut held: Vec<(u32, u64, u64)> = Vec::new();
    let deadline = Instant::now() + REPLY;
    while held.len() < want && Instant::now() < deadline {
        let avoid: Vec<u64> = held.iter().map(|h| h.1).collect();
        if let Some((i, seq)) = s.lease_any(held.len(), &avoid) {
            held.push((i, seq, s.slot_hash(i)));
        }
    }
    if held.len() < want {
        return Outcome::Skip(format!("confirmed only {} of {want} leases", held.len()));
    }
    let start = s.latest();
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        for &(i, seq, hash) in &held {
            let now = s.slot_seq(i);
            if now != seq && now != (SEQ_WRITING | seq) {
                return fail(format!("leased slot {i} (seq {seq}) now holds {now:#x}"));
            }
            if now == seq && s.slot_hash(i) != hash && s.slot_seq(i) == seq {
                return fail(format!("bytes of leased slot {i} (seq {seq}) changed"));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if progress(&s, start) == 0 {
        return Outcome::Skip("no frame published while the leases were held".into());
    }
    Outcome::Pass
}

fn lease_meta(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !s.wait_frame(REPLY) {
        return Outcome::Skip("no frame was published".into());
    }
    for _ in 0..5 {
        let Some((i, seq)) = s.lease_newest(0) else {
            return Outcome::Skip("could not confirm a lease".into());
        };
        let gen = s.slot_word(i, crate::word::SLOT_GENERATION);
        let flags = s.slot_word(i, crate::word::SLOT_FLAGS);
        s.row.set(0, 0);
        if gen != s.stream.generation {
            return fail(format!(
                "frame {seq}: generation {gen}, stream has {}",
                s.stream.generation
            ));
        }
        if flags & !3 != 0 {
            return fail(format!("frame {seq}: reserved flag bits set ({flags:#x})"));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    Outcome::Pass
}

fn slow_inorder(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::InOrder, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    // Never consume: consumed_seq stays at start_seq.
    let start = s.latest();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut last = start;
    while Instant::now() < deadline {
        let l = s.latest();
        if l != last {
            last = l;
            // Under Wait the ring fills with frames this subscriber has not
            // read; past wait_timeout (2 s by default) they are overwritten.
            if l > start + u64::from(s.w.slot_count) {
                return Outcome::Pass;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    fail(format!(
        "latest_seq moved from {start} only to {last} in 4 s with a non-consuming InOrder subscriber"
    ))
}

fn reclaim(t: &PublisherTarget, goodbye: bool) -> Outcome {
    // Observe through a second session that holds nothing.
    let obs = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !s.wait_frame(REPLY) {
        return Outcome::Skip("no frame was published".into());
    }
    let Some((i, seq)) = s.lease_newest(0) else {
        return Outcome::Skip("could not confirm a lease".into());
    };
    let pre = obs.latest();
    std::thread::sleep(Duration::from_millis(300));
    // Frames the publisher committed in those 300 ms, all slots free but one:
    // how fast it publishes when nothing stops it.
    let pace = progress(&obs, pre);
    // `WRITING | seq` is a claim probing the slot (P1, then P3 on seeing the
    // lease): the frame is still there.
    let rewritten = |v: u64| v != seq && v != (SEQ_WRITING | seq);
    if rewritten(obs.slot_seq(i)) {
        return fail(format!("slot {i} was rewritten while leased"));
    }
    let start = obs.latest();
    // Close: the row keeps saying "leased", since the suite still maps it
    // read-write; only the socket says the subscriber is gone.
    let Session { client, row, .. } = s;
    if goodbye {
        let _ = client.send(&Message::Goodbye(GoodbyeReason::Normal), &[]);
    }
    drop(client);
    // A publisher may prefer other slots for as long as it likes (§5.4's
    // warm pass keeps reusing the newest free slots, and a reclaimed slot
    // holding an old frame need never be rewritten). So pin every other
    // slot's frame through further sessions: if the dead subscriber's lease
    // was reclaimed, its slot is then the only one left to write.
    let others: Vec<u32> = (0..obs.layout.slot_count).filter(|&j| j != i).collect();
    let mut pins = Vec::new();
    for chunk in others.chunks(LEASES_PER_ROW) {
        let p = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        for (e, &j) in chunk.iter().enumerate() {
            if rewritten(obs.slot_seq(i)) {
                break;
            }
            if !p.lease_slot(e, j) {
                return Outcome::Skip(format!(
                    "could not pin slot {j} to leave only slot {i} free"
                ));
            }
        }
        pins.push(p);
    }
    // The pins are released (entries cleared) before their sessions close,
    // so that they hold nothing afterwards even in a publisher that does
    // not reclaim closed connections' rows.
    let unpin = |pins: Vec<Session>| {
        for p in &pins {
            for e in 0..LEASES_PER_ROW {
                p.row.set(e, 0);
            }
        }
        drop(pins);
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if rewritten(obs.slot_seq(i)) {
            unpin(pins);
            drop(row);
            return Outcome::Pass;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    unpin(pins);
    drop(row);
    let n = progress(&obs, start);
    // With every other slot pinned a publisher that did not reclaim the
    // slot cannot publish at all; only one that was not publishing before
    // either is too slow to tell.
    if pace < 2 {
        return Outcome::Skip(format!(
            "only {pace} frames published in 300 ms before the subscriber left: too slow to tell"
        ));
    }
    fail(format!(
        "slot {i} still holds seq {seq} 3 s after the subscriber left, with every other slot pinned ({n} frames published since; {pace} in 300 ms before)"
    ))
}

fn packet_check(fd: &OwnedFd, size: u64) -> Result<(Mapping, PacketGeometry), String> {
    if size < PACKET_HEADER_SIZE {
        return Err(format!(
            "packet_region_size {size} is smaller than the header"
        ));
    }
    shm::check_received(fd.as_fd(), size).map_err(|e| format!("packet region: {e}"))?;
    let m = Mapping::map(fd.as_fd(), size as usize, Access::ReadOnly)
        .map_err(|e| format!("packet region: {e}"))?;
    let w0 = m.words()[0].load(Ordering::Acquire);
    let w1 = m.words()[1].load(Ordering::Acquire);
    let (magic, version) = (w0 as u32, (w0 >> 32) as u32);
    let (slots, data) = (w1 as u32, (w1 >> 32) as u32);
    if magic != PACKET_MAGIC {
        return Err(format!("packet header magic {magic:#x} version {version}"));
    }
    // Layout 2 (the reference's) or 3 (with the wake tail), §9.2.
    let geo = PacketGeometry::with_version(version, slots, data)
        .map_err(|e| format!("packet geometry: {e}"))?;
    if geo.region_size() != size {
        return Err(format!(
            "packet_region_size {size} != region size {} of the header geometry",
            geo.region_size()
        ));
    }
    Ok((m, geo))
}

fn pkt_session(t: &PublisherTarget) -> Result<Option<Session>, String> {
    let s = Session::open(
        t,
        DeliveryMode::NewestOnly,
        HELLO_WANTS_FRAMES | HELLO_WANTS_PACKETS,
    )?;
    Ok(if s.w.flags & WELCOME_HAS_PACKETS != 0 {
        Some(s)
    } else {
        None
    })
}

fn pkt_welcome(t: &PublisherTarget) -> Outcome {
    match pkt_session(t) {
        Ok(Some(s)) => match s
            .packet_fd
            .as_ref()
            .map(|f| packet_check(f, s.w.packet_region_size))
        {
            Some(Ok(_)) => Outcome::Pass,
            Some(Err(e)) => fail(e),
            None => fail("HAS_PACKETS without a packet fd"),
        },
        Ok(None) => Outcome::Skip("the publisher has no packet ring".into()),
        Err(e) => fail(e),
    }
}

fn pkt_only(t: &PublisherTarget) -> Outcome {
    let has_ring = match pkt_session(t) {
        Ok(s) => s.is_some(),
        Err(e) => return fail(format!("frames+packets HELLO: {e}")),
    };
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let h = hello(V1_0, V1_0, HELLO_WANTS_PACKETS, DeliveryMode::NewestOnly);
    if let Err(e) = c.send(&Message::Hello(h), &[]) {
        return fail(e);
    }
    match (has_ring, c.reply(REPLY)) {
        (true, Reply::Welcome(w)) => {
            if w.flags & WELCOME_HAS_PACKETS == 0 {
                return fail("packets-only WELCOME without HAS_PACKETS");
            }
            match c.chan.take_fds(2) {
                Ok(fds) => match packet_check(&fds[1], w.packet_region_size) {
                    Ok(_) => Outcome::Pass,
                    Err(e) => fail(e),
                },
                Err(e) => fail(format!("packets-only WELCOME: {e}")),
            }
        }
        (false, Reply::Error(ErrorCode::Unsupported, _)) => Outcome::Pass,
        (true, r) => fail(format!("expected WELCOME, got {}", r.describe())),
        (false, r) => fail(format!("expected ERROR Unsupported, got {}", r.describe())),
    }
}

fn pkt_ring(t: &PublisherTarget) -> Outcome {
    let s = match pkt_session(t) {
        Ok(Some(s)) => s,
        Ok(None) => return Outcome::Skip("the publisher has no packet ring".into()),
        Err(e) => return fail(e),
    };
    let Some(fd) = s.packet_fd.as_ref() else {
        return fail("HAS_PACKETS without a packet fd");
    };
    let (m, geo) = match packet_check(fd, s.w.packet_region_size) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let word = |i: usize| m.words()[i].load(Ordering::Acquire);
    let n = u64::from(geo.slots());
    let mut last_g = word(4);
    let mut last_off = word(6);
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        let g = word(4);
        let key = word(5);
        let off = word(6);
        if last_g != SEQ_NONE && (g == SEQ_NONE || g < last_g) {
            return fail(format!("global_seq went back from {last_g} to {g}"));
        }
        if off < last_off || off % 8 != 0 {
            return fail(format!(
                "write_offset {off} (was {last_off}): not monotonic or not 8-aligned"
            ));
        }
        if g != SEQ_NONE && key != SEQ_NONE && key > g {
            return fail(format!("last_keyframe_seq {key} > global_seq {g}"));
        }
        for i in 0..geo.slots() {
            let base = (geo.slot_offset(i) / 8) as usize;
            let seq = word(base);
            if seq != SEQ_NONE && seq % n != u64::from(i) {
                return fail(format!("packet slot {i} holds seq {seq}"));
            }
            let off = word(base + 3);
            if seq != SEQ_NONE && off % 8 != 0 {
                return fail(format!("packet {seq}: data_offset {off} not 8-aligned"));
            }
        }
        last_g = g;
        last_off = off;
        std::thread::sleep(Duration::from_millis(5));
    }
    Outcome::Pass
}

fn wire_name(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut b = encode(&Message::Hello(hello(
        V1_0,
        V1_0,
        0,
        DeliveryMode::NewestOnly,
    )));
    b.truncate(44);
    b.extend_from_slice(&[b'n'; 65]);
    b[4..8].copy_from_slice(&(36u32 + 65).to_le_bytes());
    b[40..42].copy_from_slice(&65u16.to_le_bytes());
    if let Err(e) = c.send_raw(&b) {
        return fail(e);
    }
    expect_bad_message(&mut c)
}

fn wire_fds(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // 64 copies of one end of a socket pair per message: the other end reads
    // EOF once the publisher has closed every copy.
    let Ok((probe, end)) = UnixStream::pair() else {
        return fail("cannot create a socket pair");
    };
    let fds = [end.as_fd(); 64];
    let unk = Message::Unknown {
        kind: 0x7778,
        payload: &[0; 8],
    };
    for _ in 0..5 {
        match c.chan.send(&unk, &fds) {
            Ok(()) => {}
            // The publisher already closed: that is allowed.
            Err(ChannelError::Closed) => return Outcome::Pass,
            Err(e) => return fail(format!("the suite could not send fds: {e}")),
        }
    }
    drop(end);
    if closed_by_peer(&probe, REPLY) {
        return Outcome::Pass;
    }
    match c.reply(Duration::from_millis(100)) {
        Reply::Closed | Reply::Broken(_) => Outcome::Pass,
        Reply::Error(ErrorCode::BadMessage, _) => Outcome::check(c.closes_within(REPLY), || {
            "the connection stayed open".into()
        }),
        r => fail(format!(
            "320 fds on unknown messages: still held {REPLY:?} later and the connection is open ({})",
            r.describe()
        )),
    }
}

/// Whether `probe` reads EOF within `timeout`: every copy of its peer end
/// (sent to the publisher) was closed.
fn closed_by_peer(probe: &UnixStream, timeout: Duration) -> bool {
    let Ok(mut p) = probe.try_clone() else {
        return false;
    };
    if p.set_nonblocking(true).is_err() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut b = [0u8; 1];
        if let Ok(0) = std::io::Read::read(&mut p, &mut b) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wire_stray(t: &PublisherTarget) -> Outcome {
    let s = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let Ok((probe, end)) = UnixStream::pair() else {
        return fail("cannot create a socket pair");
    };
    let unk = Message::Unknown {
        kind: 0x7779,
        payload: &[0; 8],
    };
    let sent = s
        .client
        .send(&Message::Ping(7), &[end.as_fd()])
        .and_then(|()| s.client.send(&unk, &[end.as_fd(), end.as_fd()]));
    if let Err(e) = sent {
        return fail(format!("the suite could not send fds: {e}"));
    }
    drop(end);
    Outcome::check(closed_by_peer(&probe, Duration::from_secs(1)), || {
        "3 fds sent after HELLO were still open 1 s later".into()
    })
}

fn hs_deadline(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let start = Instant::now();
    let limit = t.handshake_timeout + Duration::from_secs(2);
    if c.closes_within(limit) {
        Outcome::Pass
    } else {
        fail(format!(
            "a connection without HELLO was still open after {:?} (handshake deadline {:?})",
            start.elapsed(),
            t.handshake_timeout
        ))
    }
}

fn lease_evict(t: &PublisherTarget) -> Outcome {
    let first = match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !first.wait_frame(REPLY) {
        return Outcome::Skip("no frame was published".into());
    }
    let n = first.w.slot_count as usize;
    let mut sessions = vec![first];
    for _ in 1..n.div_ceil(2) {
        match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
            Ok(s) => sessions.push(s),
            Err(e) => return fail(e),
        }
    }
    // Pin every slot: two frames per row, in entries 0 and 1.
    let mut pinned: Vec<u64> = Vec::new();
    for k in 0..n {
        let s = &sessions[k / 2];
        match s.lease_any(k % 2, &pinned) {
            Some((_, seq)) => pinned.push(seq),
            None => return Outcome::Skip("could not confirm a lease".into()),
        }
    }
    let stalled_at = sessions[0].latest();
    let start = Instant::now();
    let limit = t.lease_timeout + Duration::from_secs(2);
    let mut fresh = u64::MAX / 2;
    while start.elapsed() < limit {
        for s in &sessions {
            // Meaningless values, new every millisecond.
            s.row.set(2, fresh);
            s.row.set(3, fresh - 1);
            fresh -= 2;
        }
        // More frames than could be placed without reusing a pinned slot.
        if sessions[0].latest() > stalled_at + n as u64 {
            return Outcome::Pass;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    fail(format!(
        "no progress past seq {stalled_at} for {limit:?} while every slot was pinned and fresh values churned (lease timeout {:?})",
        t.lease_timeout
    ))
}

fn welcome_early(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let w = cuframes_core::wire::Welcome {
        version: V1_0,
        subscriber_id: 1,
        memory_kind: MemoryKind::HostMemfd,
        sync_kind: SyncKind::HostFence,
        slot_count: 2,
        flags: 0,
        control_size: 4096,
        slot_size: 4096,
        start_seq: 0,
        handle_len: 0,
        handles: &[],
        packet_region_size: 0,
    };
    if let Err(e) = c.send(&Message::Welcome(w), &[]) {
        return fail(e);
    }
    expect_bad_message(&mut c)
}

fn bye_early(t: &PublisherTarget) -> Outcome {
    let mut c = match Client::connect(t) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = c.send(&Message::Goodbye(GoodbyeReason::Normal), &[]) {
        return fail(e);
    }
    match c.reply(REPLY) {
        Reply::Closed | Reply::Broken(_) => Outcome::Pass,
        r => fail(format!(
            "expected the connection to close, got {}",
            r.describe()
        )),
    }
}

fn error_established(t: &PublisherTarget) -> Outcome {
    match Session::open(t, DeliveryMode::NewestOnly, HELLO_WANTS_FRAMES) {
        Ok(mut s) => {
            let e = cuframes_core::wire::ErrorMsg {
                code: ErrorCode::Internal,
                text: "conformance suite",
            };
            if let Err(e) = s.client.send(&Message::Error(e), &[]) {
                return fail(e);
            }
            match s.client.reply(REPLY) {
                Reply::Closed | Reply::Broken(_) => Outcome::Pass,
                r => fail(format!(
                    "expected the connection to close, got {}",
                    r.describe()
                )),
            }
        }
        Err(e) => fail(e),
    }
}
