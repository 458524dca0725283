//! The subscriber engine (`docs/protocol.md` §5, §6).
//!
//! [`Subscriber::connect`] sends HELLO with a fresh lease-row memfd, checks
//! WELCOME, maps the publisher's control region read-only, validates it and
//! imports the slots through the backend. [`Subscriber::next_frame`] leases
//! the next frame for its delivery mode and returns a [`Frame`] guard whose
//! drop releases the lease.
//!
//! A publisher may change its stream mid-connection (STREAM_CHANGED, then a
//! WELCOME for a new ring, §6): the subscriber imports the new ring through
//! the same checks as at connect, keeps delivering the old ring's frames
//! until the publisher closes it, then moves on; the first frame of the new
//! ring says so ([`Frame::stream_changed`]). With
//! [`SubscribeOptions::reconnect`] a subscriber whose publisher vanished
//! (crash, or GOODBYE Shutdown) connects again to the same key.

use super::backend::{Backend, Peer};
use super::channel::{Channel, ChannelError};
use super::dir::{self, DirError};
use super::frame::Frame;
use super::futex;
use super::host::HostBackend;
use super::leases::{LeaseState, RowState};
use super::packets::PacketState;
use super::shm::{self, Access, Mapping, ShmError};
use super::wait::{self, Pace, WaitStrategy};
use crate::handshake::{HandshakeError, SubscriberEvent, SubscriberHandshake};
use crate::layout::{
    header, ControlLayout, LayoutError, StreamDesc, FLAG_DISCONTINUITY, LEASES_PER_ROW,
    LEASE_REGION_SIZE,
};
use crate::ring::{Acquire, ControlWords, Cursor, LeaseWords};
use crate::wire::{
    decode, ErrorCode, GoodbyeReason, Hello, Name, Welcome, WireError, HELLO_WANTS_FRAMES,
    HELLO_WANTS_PACKETS, WELCOME_HAS_PACKETS,
};
use crate::{DeliveryMode, MemoryKind, PROTOCOL_VERSION};
use rustix::fd::{AsFd, OwnedFd};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Subscriber settings. `SubscribeOptions::new(mode)` gives the defaults.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Name shown in the publisher's logs (≤ 64 bytes, cut if longer).
    pub name: String,
    /// Runtime directory (default [`dir::runtime_dir`]).
    pub runtime_dir: Option<PathBuf>,
    /// Longest wait for WELCOME (default 5 s).
    pub handshake_timeout: Duration,
    /// Subscribe to decoded frames (default true).
    pub frames: bool,
    /// Subscribe to the encoded packet ring (default false; see
    /// [`Subscriber::next_packet`]). A publisher without one fails the
    /// connection with [`ConnectError::NoPacketRing`].
    pub packets: bool,
    /// Reconnect automatically when the publisher vanishes (default `None`:
    /// report [`RecvError::Disconnected`]). See [`Reconnect`].
    pub reconnect: Option<Reconnect>,
    /// Which publishers to accept, by the uid the kernel reports for the
    /// connected socket (`SO_PEERCRED`, `docs/protocol.md` §2.1). Default
    /// [`PublisherUids::SameUser`]: this process's uid or root. A refused
    /// publisher is [`ConnectError::PublisherUid`]; the check runs before
    /// HELLO, so nothing is sent to it.
    pub publisher_uids: PublisherUids,
    /// How [`Subscriber::next_frame`] waits when no frame is ready (default:
    /// spin 50 µs, anticipating the stream's pace, then the futex; see
    /// [`WaitStrategy`]).
    pub wait: WaitStrategy,
}

/// The publishers a subscriber accepts, by uid ([`SubscribeOptions::publisher_uids`]).
/// Root (uid 0) is always accepted: it could read this process's memory anyway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PublisherUids {
    /// This process's real uid, or root.
    #[default]
    SameUser,
    /// These uids, or root.
    Only(Vec<u32>),
    /// Any publisher: the check is off (the socket's directory and mode are
    /// then the only protection, `docs/protocol.md` §2.1).
    Any,
}

impl PublisherUids {
    /// Whether a publisher running as `uid` is accepted by a subscriber
    /// running as `own` (both real uids).
    pub fn allows(&self, uid: u32, own: u32) -> bool {
        uid == 0
            || match self {
                PublisherUids::SameUser => uid == own,
                PublisherUids::Only(list) => list.contains(&uid),
                PublisherUids::Any => true,
            }
    }
}

impl core::fmt::Display for PublisherUids {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PublisherUids::SameUser => write!(
                f,
                "same uid ({}) or root",
                rustix::process::getuid().as_raw()
            ),
            PublisherUids::Only(l) => write!(f, "uids {l:?} or root"),
            PublisherUids::Any => f.write_str("any uid"),
        }
    }
}

/// Why a connection to a publisher ended ([`Subscriber::end_reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// GOODBYE EndOfStream: the publisher's input ended; the stream is over.
    EndOfStream,
    /// GOODBYE with another reason (Shutdown, Normal...): the publisher
    /// stopped on purpose before its input ended (e.g. SIGTERM).
    Shutdown,
    /// Socket EOF or reset without GOODBYE: the publisher died (crash,
    /// SIGKILL) or stopped answering sensibly.
    Vanished,
    /// The publisher sent ERROR.
    Refused,
    /// The publisher broke the protocol (e.g. a bad re-WELCOME).
    ProtocolError,
}

impl EndReason {
    /// Whether automatic reconnection follows this end (§6 *Reconnection*):
    /// [`EndReason::Shutdown`] and [`EndReason::Vanished`].
    pub fn reconnects(self) -> bool {
        matches!(self, EndReason::Shutdown | EndReason::Vanished)
    }

    /// Whether the publisher ended the stream cleanly (GOODBYE EndOfStream).
    pub fn is_end_of_stream(self) -> bool {
        self == EndReason::EndOfStream
    }
}

impl SubscribeOptions {
    /// Defaults for `mode`.
    pub fn new(mode: DeliveryMode) -> Self {
        SubscribeOptions {
            mode,
            name: format!("pid-{}", std::process::id()),
            runtime_dir: None,
            handshake_timeout: Duration::from_secs(5),
            frames: true,
            packets: false,
            reconnect: None,
            publisher_uids: PublisherUids::SameUser,
            wait: WaitStrategy::default(),
        }
    }
}

/// Automatic reconnection (`docs/protocol.md` §5.6): when the publisher
/// vanishes — socket EOF or reset without GOODBYE, or GOODBYE with reason
/// Shutdown or Normal — the subscriber first delivers what is left in its
/// rings, then connects to the same key again from inside
/// [`Subscriber::next_frame`] / [`Subscriber::next_packet`] (which return
/// `Timeout` while it waits). GOODBYE EndOfStream, an ERROR and a protocol
/// error still end with `Disconnected`.
///
/// Attempts follow a capped exponential backoff: the first at once, then
/// after `first_delay`, doubling up to `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Wait before the second attempt (default 50 ms).
    pub first_delay: Duration,
    /// Longest wait between attempts (default 500 ms).
    pub max_delay: Duration,
    /// Give up (report `Disconnected`) when no attempt succeeded this long
    /// after the publisher was found gone (default `None`: never).
    pub give_up_after: Option<Duration>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            give_up_after: None,
        }
    }
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad key.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// Nobody publishes this key (no socket, or nobody listening on it).
    #[error("no publisher on key {key:?} (socket {path}): {source}")]
    NoPublisher {
        /// Key.
        key: String,
        /// Socket path tried.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The process listening on the key's socket runs as a uid this
    /// subscriber does not accept ([`SubscribeOptions::publisher_uids`]): it
    /// may be another user impersonating the publisher.
    #[error("the publisher of {key:?} runs as uid {uid}, which this subscriber does not accept (it accepts {allowed}); to trust it, allow uid {uid} (cuframes-subscribe --publisher-uid {uid}, SubscribeOptions::publisher_uids)")]
    PublisherUid {
        /// Key.
        key: String,
        /// The publisher's uid (`SO_PEERCRED`).
        uid: u32,
        /// What was accepted.
        allowed: PublisherUids,
    },
    /// The publisher's credentials could not be read (`SO_PEERCRED`), so its
    /// uid could not be checked (fail closed).
    #[error("cannot read the credentials of the publisher of {key:?} (SO_PEERCRED): {source}")]
    PeerCred {
        /// Key.
        key: String,
        /// OS error.
        source: rustix::io::Errno,
    },
    /// The publisher refused the HELLO.
    #[error("publisher refused: {code:?}: {text}")]
    Rejected {
        /// Its code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The publisher broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] HandshakeError),
    /// A socket or message error.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// No WELCOME in time.
    #[error("no answer from the publisher within {0:?}")]
    Timeout(Duration),
    /// The publisher's memory kind is not this backend's.
    #[error("publisher shares {theirs:?} memory, this subscriber's backend imports {ours:?}")]
    MemoryKind {
        /// Announced kind.
        theirs: MemoryKind,
        /// This backend's kind.
        ours: MemoryKind,
    },
    /// A later ring (re-WELCOME after STREAM_CHANGED, or a reconnect) differs
    /// from the first in memory kind, sync kind, GPU, subscriber id or packet
    /// ring (§6): the backend stays attached to the first publisher's.
    #[error("the new ring differs from the attached one in {0}")]
    PeerChanged(&'static str),
    /// The control region failed validation.
    #[error("control region: {0}")]
    Layout(#[from] LayoutError),
    /// Mapping failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The backend could not import a slot.
    #[error("slot import: {0}")]
    Import(Box<dyn std::error::Error + Send + Sync>),
    /// Packets were asked for, but the publisher has no packet ring.
    #[error("the publisher has no packet ring (start it with packets enabled)")]
    NoPacketRing,
    /// Neither frames nor packets were asked for.
    #[error("SubscribeOptions asks for neither frames nor packets")]
    NothingWanted,
    /// The packet region failed validation.
    #[error("packet ring: {0}")]
    PacketLayout(#[from] crate::packet::PacketLayoutError),
}

/// Receiving a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// No new frame within the timeout (also while reconnecting).
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The publisher is gone (socket closed, GOODBYE, or region closed) and
    /// every frame left in the ring has been delivered; with
    /// [`SubscribeOptions::reconnect`], only after GOODBYE EndOfStream, a
    /// protocol failure, or the give-up duration.
    #[error("publisher disconnected")]
    Disconnected,
    /// All lease entries are held by live [`Frame`]s.
    #[error("all {LEASES_PER_ROW} leases are held; drop a frame first")]
    TooManyLeases,
    /// The publisher broke the protocol (e.g. a bad re-WELCOME after
    /// STREAM_CHANGED); the connection is failed, later calls deliver what
    /// is left, then `Disconnected`.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// This subscriber did not ask for frames (`SubscribeOptions::frames`).
    #[error("this subscriber did not subscribe to frames")]
    NotSubscribed,
}

/// Subscriber counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Frames handed out.
    pub received: u64,
    /// Frames skipped (NewestOnly) or lost (InOrder gaps).
    pub dropped: u64,
    /// Frames whose lease the publisher revoked before release.
    pub revoked: u64,
    /// Successful automatic reconnections ([`SubscribeOptions::reconnect`]).
    pub reconnects: u64,
    /// Stream changes delivered: switches to a new ring generation, and
    /// reconnects to a publisher with a different stream description.
    pub stream_changes: u64,
    /// Times a blocked `next_frame` saw the commit while spinning
    /// ([`WaitStrategy`]) rather than after a futex wake-up: how often the
    /// spin paid off.
    pub spin_hits: u64,
}

/// One ring generation as imported: the control region, the connection's
/// lease row, the slots and their stream description. Frames hold an `Arc`
/// of it, so it stays mapped while any of them lives.
pub(crate) struct Ring<B: Backend> {
    pub(super) leases: Arc<LeaseState>,
    pub(super) stream: StreamDesc,
    pub(super) slots: Vec<B::Imported>,
    /// WELCOME's `start_seq`: frames of this ring are above it.
    start_seq: u64,
}

/// How often an empty poll (`next_frame` with a short timeout) reads the
/// control socket while the ring is open. A publisher that died without
/// closing its ring is noticed this much later at most.
const SOCKET_POLL_EVERY: Duration = Duration::from_millis(1);

/// One connection to a publisher.
struct Conn<B: Backend> {
    chan: Channel,
    hs: SubscriberHandshake,
    id: u32,
    row: Arc<RowState>,
    /// The ring frames are read from now.
    ring: Arc<Ring<B>>,
    /// Rings announced by re-WELCOMEs, read once `ring` is closed and drained.
    next: VecDeque<Arc<Ring<B>>>,
    packets: Option<PacketState>,
    end: Option<EndReason>,
    /// STREAM_CHANGED's generation while its WELCOME is awaited.
    changing: Option<u64>,
}

/// Reconnection progress.
#[derive(Debug, Clone, Copy)]
struct Retry {
    since: Instant,
    next_try: Instant,
    delay: Duration,
    given_up: bool,
}

/// [`Subscriber::spin_plan`]'s answer.
enum SpinPlan {
    /// Busy-wait on `wake` until this instant.
    Spin(Instant),
    /// Napped until the spin window (or a commit): look at the ring again.
    Napped,
    /// Sleep on the futex.
    Sleep,
}

/// What to do once a connection has ended and its rings are drained.
enum Recovery {
    /// A new connection is up: read again.
    Reconnected,
    /// Not yet: wait until this instant (or the caller's deadline).
    Wait(Instant),
    /// The end is final.
    Disconnected,
}

/// A connection to one publisher.
pub struct Subscriber<B: Backend = HostBackend> {
    key: String,
    opts: SubscribeOptions,
    conn: RefCell<Conn<B>>,
    cursor: Cell<Cursor>,
    stats: Cell<SubscriberStats>,
    revoked: Arc<Mutex<u64>>,
    /// The next frame reports a stream change.
    announce_change: Cell<bool>,
    /// The next frame carries `FLAG_DISCONTINUITY` (after a reconnect).
    announce_gap: Cell<bool>,
    /// When the control socket was last read while the ring was open
    /// (polling reads it at most every [`SOCKET_POLL_EVERY`]).
    socket_read_at: Cell<Instant>,
    retry: Cell<Option<Retry>>,
    /// The stream's commit pace, for [`WaitStrategy::anticipate`].
    pace: Cell<Pace>,
    /// The last reconnect failure logged at WARN (each new kind once).
    retry_warned: RefCell<String>,
    /// What the backend was attached with; later rings must match.
    peer: Peer,
    backend: B,
}

impl Subscriber<HostBackend> {
    /// Connects to `key` with the host-memory backend.
    pub fn connect_host(key: &str, opts: SubscribeOptions) -> Result<Self, ConnectError> {
        Self::connect(key, HostBackend, opts)
    }
}

/// How a WELCOME's ring meets the backend: attach it (first connection), or
/// check it against the attached peer (re-WELCOME, reconnect).
enum Attach<'b, B> {
    First(&'b mut B),
    Again(&'b B, &'b Peer),
}

/// A ring checked and imported from one WELCOME (W4–W10), before the lease
/// row is (re)initialised.
struct Imported<B: Backend> {
    control: Mapping,
    layout: ControlLayout,
    stream: StreamDesc,
    slots: Vec<B::Imported>,
    peer: Peer,
    /// The packet region's fd when `HAS_PACKETS`.
    packet_fd: Option<OwnedFd>,
}

/// W4–W10 of `docs/protocol.md` §6 for `welcome` and the fds queued on
/// `chan`: the one import path of connect and re-WELCOME.
fn import_welcome<B: Backend>(
    chan: &mut Channel,
    welcome: &Welcome<'_>,
    frames: bool,
    packets: bool,
    attach: Attach<'_, B>,
) -> Result<Imported<B>, ConnectError> {
    let accepts = match &attach {
        Attach::First(b) => b.accepts(welcome.memory_kind),
        Attach::Again(b, _) => b.accepts(welcome.memory_kind),
    };
    if !accepts {
        let ours = match &attach {
            Attach::First(b) => b.memory_kind(),
            Attach::Again(b, _) => b.memory_kind(),
        };
        return Err(ConnectError::MemoryKind {
            theirs: welcome.memory_kind,
            ours,
        });
    }
    let has_packets = welcome.flags & WELCOME_HAS_PACKETS != 0;
    if packets && !has_packets {
        return Err(ConnectError::NoPacketRing);
    }
    let n_fds =
        1 + if frames && welcome.memory_kind.uses_fds() {
            welcome.slot_count as usize * (1 + welcome.sync_kind.fds_per_slot() as usize)
        } else {
            0
        } + usize::from(has_packets);
    let mut fds = chan.take_fds(n_fds)?.into_iter();
    chan.discard_fds();
    let control_fd = fds.next().ok_or(ChannelError::MissingFds {
        need: n_fds,
        have: 0,
    })?;
    let layout = ControlLayout::new(welcome.slot_count)
        .ok_or(LayoutError::SlotCount(welcome.slot_count as u64))?;
    if welcome.control_size != layout.region_size() {
        return Err(LayoutError::Field {
            field: "WELCOME control_size",
            value: welcome.control_size,
            expected: layout.region_size(),
        }
        .into());
    }
    shm::check_received(control_fd.as_fd(), layout.region_size())?;
    let control = Mapping::map(
        control_fd.as_fd(),
        layout.region_size() as usize,
        Access::ReadOnly,
    )?;
    let words = control_words(&control, layout)?;
    let header = words.snapshot_header();
    let stream = words.snapshot_stream();
    let checked = ControlLayout::validate(&header, &stream, control.len() as u64)?;
    if header.memory_kind != welcome.memory_kind.code() as u64
        || header.sync_kind != welcome.sync_kind.code() as u64
    {
        return Err(LayoutError::Field {
            field: "memory_kind/sync_kind vs WELCOME",
            value: header.memory_kind,
            expected: welcome.memory_kind.code() as u64,
        }
        .into());
    }
    if checked != layout || header.slot_size != welcome.slot_size {
        return Err(LayoutError::Field {
            field: "slot_count/slot_size vs WELCOME",
            value: header.slot_count,
            expected: welcome.slot_count as u64,
        }
        .into());
    }
    let peer = Peer {
        memory_kind: welcome.memory_kind,
        sync_kind: welcome.sync_kind,
        gpu_uuid: uuid_bytes(header.gpu_uuid),
        slot_size: welcome.slot_size,
        slot_count: welcome.slot_count,
    };
    let backend: &B = match attach {
        Attach::First(b) => {
            b.attach(&peer)
                .map_err(|e| ConnectError::Import(Box::new(e)))?;
            b
        }
        Attach::Again(b, first) => {
            if first.memory_kind != peer.memory_kind || first.sync_kind != peer.sync_kind {
                return Err(ConnectError::PeerChanged("memory or sync kind"));
            }
            if first.gpu_uuid != peer.gpu_uuid {
                return Err(ConnectError::PeerChanged("GPU"));
            }
            b
        }
    };
    let mut slots = Vec::with_capacity(welcome.slot_count as usize);
    for i in 0..welcome.slot_count as usize * usize::from(frames) {
        let hl = welcome.handle_len as usize;
        let handle = welcome.handles.get(i * hl..(i + 1) * hl).unwrap_or(&[]);
        let (fd, sync_fd) = if welcome.memory_kind.uses_fds() {
            let fd = fds.next();
            let sync = (welcome.sync_kind.fds_per_slot() == 1)
                .then(|| fds.next())
                .flatten();
            (fd, sync)
        } else {
            (None, None)
        };
        // The backend validates what it is given (`Backend::import`).
        let imported = backend
            .import_slot(fd, sync_fd, handle, welcome.slot_size)
            .map_err(|e| ConnectError::Import(Box::new(e)))?;
        slots.push(imported);
    }
    Ok(Imported {
        control,
        layout,
        stream,
        slots,
        peer,
        packet_fd: fds.next().filter(|_| has_packets),
    })
}

impl<B: Backend> Subscriber<B> {
    /// Connects to the publisher of `key`, importing its slots with `backend`.
    ///
    /// The backend sees the publisher's memory kind, sync kind and GPU UUID
    /// ([`Backend::attach`]) before it imports the slots. Later rings of this
    /// subscriber (stream changes, reconnects) must keep them
    /// ([`ConnectError::PeerChanged`]).
    pub fn connect(
        key: &str,
        mut backend: B,
        opts: SubscribeOptions,
    ) -> Result<Self, ConnectError> {
        if !opts.frames && !opts.packets {
            return Err(ConnectError::NothingWanted);
        }
        let revoked = Arc::new(Mutex::new(0));
        let (conn, peer, start) = open_conn(
            key,
            &opts,
            opts.handshake_timeout,
            Attach::First(&mut backend),
            &revoked,
        )?;
        Ok(Subscriber {
            key: key.to_owned(),
            opts,
            conn: RefCell::new(conn),
            cursor: Cell::new(Cursor { last_seq: start }),
            stats: Cell::new(SubscriberStats::default()),
            revoked,
            announce_change: Cell::new(false),
            announce_gap: Cell::new(false),
            socket_read_at: Cell::new(Instant::now()),
            retry: Cell::new(None),
            pace: Cell::new(Pace::default()),
            retry_warned: RefCell::new(String::new()),
            peer,
            backend,
        })
    }

    /// The stream description of the ring frames are read from now (frame
    /// size, format, plane layout). It changes with the stream
    /// (`docs/protocol.md` §6); each frame's own is [`Frame::stream`].
    pub fn stream(&self) -> StreamDesc {
        self.conn.borrow().ring.stream
    }

    /// The backend this subscriber imported its slots with.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Slots in the ring frames are read from now.
    pub fn slot_count(&self) -> u32 {
        self.conn.borrow().ring.slots.len() as u32
    }

    /// Publisher-assigned id (of the current connection).
    pub fn id(&self) -> u32 {
        self.conn.borrow().id
    }

    /// Counters so far.
    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            revoked: *self.revoked.lock().unwrap_or_else(|p| p.into_inner()),
            ..self.stats.get()
        }
    }

    /// The next frame for this subscriber's delivery mode, waiting at most
    /// `timeout`.
    ///
    /// NewestOnly returns the newest committed frame newer than the last one
    /// returned; InOrder the next in sequence. Frames that were skipped or
    /// lost are counted in [`Frame::skipped`] and [`SubscriberStats::dropped`].
    /// After a stream change the old ring's frames come first, then the new
    /// ring's ([`Frame::stream_changed`] on its first). After the publisher
    /// is gone, the frames still in the ring are delivered, then
    /// [`RecvError::Disconnected`] — or, with [`SubscribeOptions::reconnect`],
    /// the frames of the next publisher on the key (the first one flagged
    /// `FLAG_DISCONTINUITY`).
    pub fn next_frame(&self, timeout: Duration) -> Result<Frame<'_, B>, RecvError> {
        if !self.opts.frames {
            return Err(RecvError::NotSubscribed);
        }
        // A poll's deadline is any instant already past (the last socket
        // read): it saves a clock read per empty poll.
        let now = Instant::now();
        // A timeout past what `Instant` can hold waits "forever".
        let deadline = super::clock::deadline_from(now, timeout);
        // The spin of `opts.wait` happens at most once per call.
        let mut spun = false;
        loop {
            let ring = Arc::clone(&self.conn.borrow().ring);
            let used = ring.leases.book().entries;
            let entry = (0..LEASES_PER_ROW)
                .find(|i| used & (1 << i) == 0)
                .ok_or(RecvError::TooManyLeases)?;
            let reader = ring.leases.reader();
            let wake = reader.words().wake().load(crate::sync::Ordering::SeqCst);
            // Read before acquiring: every frame committed before the close
            // (or before the socket EOF we saw) is visible to this acquire.
            let closed = reader.words().is_closed();
            let finished = closed || self.conn.borrow().end.is_some();
            if let Acquire::Frame(lease) =
                reader.acquire(ring.leases.mode(), self.cursor.get(), entry)
            {
                self.cursor.set(Cursor {
                    last_seq: lease.seq,
                });
                ring.leases.book().entries |= 1 << entry;
                let mut st = self.stats.get();
                st.received += 1;
                st.dropped = st.dropped.saturating_add(lease.skipped);
                self.stats.set(st);
                let mut meta = reader.meta(&lease);
                if self.opts.wait.anticipate {
                    let mut pace = self.pace.get();
                    pace.observe(meta.publish_ns);
                    self.pace.set(pace);
                }
                if self.announce_gap.replace(false) {
                    meta.flags |= FLAG_DISCONTINUITY;
                }
                let changed = self.announce_change.replace(false);
                return Ok(Frame::new(ring, lease, meta, changed));
            }
            if finished {
                // A WELCOME or GOODBYE sent before the close is in the socket.
                self.service_socket()?;
                if closed && self.switch_ring() {
                    continue;
                }
                match self.recover(deadline) {
                    Recovery::Reconnected => continue,
                    Recovery::Disconnected => return Err(RecvError::Disconnected),
                    Recovery::Wait(until) => {
                        if Instant::now() >= deadline {
                            return Err(RecvError::Timeout(timeout));
                        }
                        let until = until.min(deadline);
                        std::thread::sleep(
                            until
                                .saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(10)),
                        );
                        continue;
                    }
                }
            }
            // The ring is open and empty. Everything the socket can bring
            // that matters now (GOODBYE, STREAM_CHANGED, EOF) is followed or
            // preceded by the ring's close, seen above without a syscall, so
            // a polling caller (`timeout` zero) reads the socket at most
            // every SOCKET_POLL_EVERY: an empty poll is a few loads, not a
            // `recvmsg`.
            let mut now = Instant::now();
            if now.saturating_duration_since(self.socket_read_at.get()) >= SOCKET_POLL_EVERY
                || timeout > SOCKET_POLL_EVERY
            {
                self.service_socket()?;
                self.socket_read_at.set(now);
                now = Instant::now();
            }
            if now >= deadline {
                return Err(RecvError::Timeout(timeout));
            }
            let word = ring.leases.reader().words().wake();
            if !spun {
                match self.spin_plan(now, deadline, word, wake) {
                    SpinPlan::Spin(until) => {
                        spun = true;
                        if wait::spin_until_changed(word, wake, until) {
                            let mut st = self.stats.get();
                            st.spin_hits += 1;
                            self.stats.set(st);
                        }
                        continue;
                    }
                    SpinPlan::Napped => continue,
                    SpinPlan::Sleep => {}
                }
            }
            // Slices bound how late a dead publisher (socket EOF) is noticed.
            futex::wait(word, wake, (deadline - now).min(Duration::from_millis(10)));
        }
    }

    /// What [`WaitStrategy`] says to do now that the ring is empty: spin
    /// until an instant; or (anticipation, the next commit not yet due) nap
    /// on the futex until the spin window opens — done here, woken early by
    /// any commit — after which the caller looks at the ring again; or sleep
    /// on the futex (no spin configured, or the pace unknown and no spin).
    fn spin_plan(
        &self,
        now: Instant,
        deadline: Instant,
        word: &crate::sync::AtomicU32,
        seen: u32,
    ) -> SpinPlan {
        let w = self.opts.wait;
        let capped =
            |from: Instant, d: Duration| super::clock::deadline_from(from, d).min(deadline);
        if w.anticipate {
            let now_ns = super::clock::monotonic_ns();
            if let Some((from, until)) = self.pace.get().spin_from(now_ns, w.spin) {
                if from > now_ns {
                    let nap = Duration::from_nanos(from - now_ns)
                        .min(deadline.saturating_duration_since(now))
                        .min(Duration::from_millis(10));
                    futex::wait(word, seen, nap);
                    // Woken by a commit, a slice or the deadline ended, or
                    // the window is open: the caller looks at the ring (and
                    // the clock) again first.
                    return SpinPlan::Napped;
                }
                let left = Duration::from_nanos(until.saturating_sub(now_ns));
                return SpinPlan::Spin(capped(Instant::now(), left.max(w.spin)));
            }
        }
        if w.spin.is_zero() {
            SpinPlan::Sleep
        } else {
            SpinPlan::Spin(capped(now, w.spin))
        }
    }

    /// Moves to the next ring announced by a re-WELCOME, once the current
    /// one is closed and drained. `false` if there is none.
    fn switch_ring(&self) -> bool {
        let mut c = self.conn.borrow_mut();
        let Some(next) = c.next.pop_front() else {
            return false;
        };
        // Everything of the old rings is consumed or lost: tell the publisher
        // (it frees the old slots once no reader needs them, §5.6).
        next.leases.reader().mark_consumed(next.start_seq);
        tracing::info!(
            width = next.stream.width,
            height = next.stream.height,
            generation = next.stream.generation,
            "stream changed; reading the new ring"
        );
        c.ring = next;
        drop(c);
        self.announce_change.set(true);
        let mut st = self.stats.get();
        st.stream_changes += 1;
        self.stats.set(st);
        true
    }

    /// After the connection ended (or its ring closed) and everything was
    /// delivered: reconnect, wait, or give up.
    fn recover(&self, deadline: Instant) -> Recovery {
        let end = self.conn.borrow().end;
        let now = Instant::now();
        let Some(end) = end else {
            // Closed region, no GOODBYE or EOF yet: wait for the reason (a
            // publisher closes its ring, then says GOODBYE, §5.6), so that
            // `end_reason` can tell a clean end from a crash.
            return Recovery::Wait(now + Duration::from_millis(10));
        };
        let Some(rc) = self.opts.reconnect else {
            return Recovery::Disconnected;
        };
        if !end.reconnects() {
            return Recovery::Disconnected;
        }
        let mut r = self.retry.get().unwrap_or(Retry {
            since: now,
            next_try: now,
            delay: rc.first_delay,
            given_up: false,
        });
        if r.given_up {
            return Recovery::Disconnected;
        }
        if rc
            .give_up_after
            .is_some_and(|g| now.duration_since(r.since) >= g)
        {
            r.given_up = true;
            self.retry.set(Some(r));
            tracing::warn!(key = %self.key, "publisher did not come back; giving up");
            return Recovery::Disconnected;
        }
        if now < r.next_try {
            self.retry.set(Some(r));
            return Recovery::Wait(r.next_try);
        }
        // One attempt; its handshake wait is bounded by the caller's deadline
        // (at least 50 ms, so a live publisher can answer).
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(50))
            .min(self.opts.handshake_timeout);
        match open_conn(
            &self.key,
            &self.opts,
            wait,
            Attach::Again(&self.backend, &self.peer),
            &self.revoked,
        ) {
            Ok((conn, _, start)) => {
                let old_stream = self.conn.borrow().ring.stream;
                let new_stream = conn.ring.stream;
                {
                    let mut c = self.conn.borrow_mut();
                    let stats = c.packets.as_ref().map(|p| p.stats.get());
                    *c = conn;
                    if let (Some(p), Some(s)) = (&c.packets, stats) {
                        p.stats.set(s);
                        p.gap.set(true);
                    }
                }
                self.cursor.set(Cursor { last_seq: start });
                self.retry.set(None);
                self.announce_gap.set(true);
                let mut st = self.stats.get();
                st.reconnects += 1;
                if !same_geometry(&old_stream, &new_stream) {
                    self.announce_change.set(true);
                    st.stream_changes += 1;
                }
                self.stats.set(st);
                tracing::info!(key = %self.key, "reconnected to the publisher");
                Recovery::Reconnected
            }
            Err(e) => {
                // Nobody listening yet is what waiting looks like; anything
                // else (another uid, memory kind or GPU, a refusal) would
                // be retried silently forever: say it, once per kind.
                let text = e.to_string();
                if matches!(e, ConnectError::NoPublisher { .. }) {
                    tracing::debug!(key = %self.key, "reconnect attempt failed: {text}");
                } else if *self.retry_warned.borrow() != text {
                    tracing::warn!(key = %self.key, "reconnect attempt refused, still retrying: {text}");
                    *self.retry_warned.borrow_mut() = text;
                }
                r.next_try = super::clock::deadline_after(r.delay);
                r.delay = r.delay.saturating_mul(2).min(rc.max_delay);
                self.retry.set(Some(r));
                Recovery::Wait(r.next_try)
            }
        }
    }

    /// Handles whatever the publisher sent (PING, GOODBYE, STREAM_CHANGED and
    /// its WELCOME, EOF). A protocol error fails the connection and is
    /// returned once.
    pub(super) fn service_socket(&self) -> Result<(), RecvError> {
        let mut guard = self.conn.borrow_mut();
        let c = &mut *guard;
        if c.end.is_some() {
            return Ok(());
        }
        loop {
            let raw = match c.chan.recv(Some(Duration::ZERO)) {
                Ok(Some(raw)) => raw,
                Ok(None) => return Ok(()),
                Err(_) => {
                    // EOF, reset or garbage: the publisher is gone for us.
                    c.end = Some(EndReason::Vanished);
                    return Ok(());
                }
            };
            let Ok(Some(d)) = decode(&raw) else {
                c.end = Some(EndReason::Vanished);
                return Ok(());
            };
            let event = c.hs.handle(d.message);
            let result = match event {
                Ok(SubscriberEvent::Goodbye(r)) => {
                    c.end = Some(if r == GoodbyeReason::EndOfStream {
                        EndReason::EndOfStream
                    } else {
                        EndReason::Shutdown
                    });
                    Ok(())
                }
                Ok(SubscriberEvent::Rejected(_)) => {
                    c.end = Some(EndReason::Refused);
                    Ok(())
                }
                Ok(SubscriberEvent::StreamChanged(g)) => {
                    c.changing = Some(g);
                    Ok(())
                }
                Ok(SubscriberEvent::Welcomed(w)) => {
                    let g = c.changing.take();
                    match self.reimport(c, &w, g) {
                        Ok(ring) => {
                            c.next.push_back(Arc::new(ring));
                            Ok(())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                c.end = Some(EndReason::ProtocolError);
                c.chan.discard_fds();
                return Err(RecvError::Protocol(e));
            }
            while let Some(o) = c.hs.poll_transmit() {
                let _ = c.chan.send(&o.message(), &[]);
            }
            if c.end.is_some() {
                return Ok(());
            }
        }
    }

    /// Imports the ring of a re-WELCOME that followed STREAM_CHANGED(`g`).
    fn reimport(
        &self,
        c: &mut Conn<B>,
        w: &Welcome<'_>,
        g: Option<u64>,
    ) -> Result<Ring<B>, ConnectError> {
        let g = g.ok_or(HandshakeError::Unexpected {
            kind: crate::wire::MessageType::Welcome,
            state: "established",
        })?;
        if w.subscriber_id != c.id {
            return Err(ConnectError::PeerChanged("subscriber id"));
        }
        if (w.flags & WELCOME_HAS_PACKETS != 0) != c.packets.is_some() {
            return Err(ConnectError::PeerChanged("packet ring"));
        }
        let im = import_welcome(
            &mut c.chan,
            w,
            self.opts.frames,
            false,
            Attach::Again(&self.backend, &self.peer),
        )?;
        // The packet region is re-sent unchanged; the mapping we have stays.
        drop(im.packet_fd);
        let newest = c.next.back().unwrap_or(&c.ring).stream.generation;
        if im.stream.generation != g || g <= newest {
            return Err(LayoutError::Field {
                field: "stream generation vs STREAM_CHANGED",
                value: im.stream.generation,
                expected: g,
            }
            .into());
        }
        Ok(Ring {
            leases: Arc::new(LeaseState::new(im.control, Arc::clone(&c.row), im.layout)),
            stream: im.stream,
            slots: im.slots,
            start_seq: w.start_seq,
        })
    }

    /// Runs `f` on the packet ring state, when subscribed to packets.
    pub(super) fn with_packets<R>(&self, f: impl FnOnce(&PacketState) -> R) -> Option<R> {
        self.conn.borrow().packets.as_ref().map(f)
    }

    /// Why the current connection ended: `None` while it is up (also
    /// after a successful automatic reconnection). Once
    /// [`RecvError::Disconnected`] / [`PacketRecvError::Disconnected`] is
    /// returned this says why: a clean end of stream, a deliberate shutdown,
    /// a publisher that died, a refusal or a protocol error.
    ///
    /// [`PacketRecvError::Disconnected`]: super::PacketRecvError::Disconnected
    pub fn end_reason(&self) -> Option<EndReason> {
        self.conn.borrow().end
    }

    /// Whether the publisher is known gone (socket EOF, GOODBYE, ERROR).
    pub(super) fn publisher_gone(&self) -> bool {
        self.conn.borrow().end.is_some()
    }

    /// After the packet ring is drained and the publisher gone: reconnect,
    /// wait or give up (as for frames).
    pub(super) fn recover_packets(&self, deadline: Instant) -> Option<Option<Instant>> {
        match self.recover(deadline) {
            Recovery::Reconnected => Some(None),
            Recovery::Wait(t) => Some(Some(t)),
            Recovery::Disconnected => None,
        }
    }
}

/// Whether two descriptions describe the same frames (all but `generation`).
fn same_geometry(a: &StreamDesc, b: &StreamDesc) -> bool {
    StreamDesc {
        generation: 0,
        ..*a
    } == StreamDesc {
        generation: 0,
        ..*b
    }
}

/// Connects, says HELLO and imports the first ring (W1–W11); returns the
/// connection, the peer it was attached with and `start_seq`.
fn open_conn<B: Backend>(
    key: &str,
    opts: &SubscribeOptions,
    handshake_timeout: Duration,
    mut attach: Attach<'_, B>,
    revoked: &Arc<Mutex<u64>>,
) -> Result<(Conn<B>, Peer, u64), ConnectError> {
    let dir = match &opts.runtime_dir {
        Some(d) => d.clone(),
        None => dir::default_dir()?,
    };
    let path = dir::socket_path(&dir, key)?;
    let stream = UnixStream::connect(&path).map_err(|source| ConnectError::NoPublisher {
        key: key.to_owned(),
        path: path.clone(),
        source,
    })?;
    check_publisher(&stream, key, &opts.publisher_uids)?;
    let _ = stream.set_nonblocking(true);
    let mut chan = Channel::new(stream);

    let (row_fd, row) = shm::create_shared("cuframes-lease-row", LEASE_REGION_SIZE)?;
    let row_words = |row: &Mapping| {
        LeaseWords::new(row.words())
            .map(|_| ())
            .map_err(|_| ShmError::Size {
                actual: 0,
                expected: LEASE_REGION_SIZE,
            })
    };
    row_words(&row)?;
    if let Ok(w) = LeaseWords::new(row.words()) {
        w.init(0);
    }
    let gpu_uuid = match &attach {
        Attach::First(b) => b.gpu_uuid(),
        Attach::Again(b, _) => b.gpu_uuid(),
    };
    let hello = Hello {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        flags: if opts.frames { HELLO_WANTS_FRAMES } else { 0 }
            | if opts.packets { HELLO_WANTS_PACKETS } else { 0 },
        mode: opts.mode,
        gpu_uuid,
        name: Name::truncated(&opts.name),
    };
    let mut hs = SubscriberHandshake::new(hello);
    // A publisher that refuses at accept (access, capacity) sends ERROR and
    // closes, maybe before HELLO arrives: read its reason before giving up.
    let mut sent = Ok(());
    while let Some(o) = hs.poll_transmit() {
        let fds = if opts.frames {
            &[row_fd.as_fd()][..]
        } else {
            &[]
        };
        sent = sent.and(chan.send(&o.message(), fds));
    }

    let deadline = super::clock::deadline_after(handshake_timeout);
    let raw = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let raw = match chan.recv(Some(left)) {
            Ok(Some(raw)) => raw,
            Ok(None) if left.is_zero() => return Err(ConnectError::Timeout(handshake_timeout)),
            Ok(None) => continue,
            Err(e) => {
                sent?;
                return Err(e.into());
            }
        };
        // Unknown message types are skipped, also before WELCOME.
        if !matches!(decode(&raw), Ok(Some(d)) if matches!(d.message, crate::wire::Message::Unknown { .. }))
        {
            break raw;
        }
    };
    let msg = decode(&raw)
        .map_err(ChannelError::from)?
        .ok_or(ChannelError::Wire(WireError::TooLong(0)))?
        .message;
    let welcome = match hs.handle(msg)? {
        SubscriberEvent::Welcomed(w) => w,
        SubscriberEvent::Rejected(e) => {
            return Err(ConnectError::Rejected {
                code: e.code,
                text: e.text.to_owned(),
            })
        }
        _ => {
            return Err(HandshakeError::Unexpected {
                kind: msg.kind(),
                state: "waiting for WELCOME",
            }
            .into())
        }
    };
    let im = import_welcome(
        &mut chan,
        &welcome,
        opts.frames,
        opts.packets,
        match &mut attach {
            Attach::First(b) => Attach::First(&mut **b),
            Attach::Again(b, p) => Attach::Again(*b, p),
        },
    )?;
    let packets = match im.packet_fd {
        Some(fd) => Some(PacketState::open(fd, welcome.packet_region_size)?),
        None => None,
    };
    let start = welcome.start_seq;
    // W11: the row's consumed_seq starts at start_seq.
    if let Ok(w) = LeaseWords::new(row.words()) {
        w.init(start);
    }
    let row = Arc::new(RowState::new(row, row_fd, opts.mode, Arc::clone(revoked)));
    let ring = Ring {
        leases: Arc::new(LeaseState::new(im.control, Arc::clone(&row), im.layout)),
        stream: im.stream,
        slots: im.slots,
        start_seq: start,
    };
    Ok((
        Conn {
            chan,
            hs,
            id: welcome.subscriber_id,
            row,
            ring: Arc::new(ring),
            next: VecDeque::new(),
            packets,
            end: None,
            changing: None,
        },
        im.peer,
        start,
    ))
}

/// The uid check of `docs/protocol.md` §2.1 on a connected socket: the
/// publisher's uid (`SO_PEERCRED`, recorded by the kernel when it called
/// `listen`) must be accepted by `allowed`; unreadable credentials fail
/// closed unless anyone is accepted.
fn check_publisher(
    stream: &UnixStream,
    key: &str,
    allowed: &PublisherUids,
) -> Result<(), ConnectError> {
    if *allowed == PublisherUids::Any {
        return Ok(());
    }
    let cred = super::peer::peer_cred(stream).map_err(|source| ConnectError::PeerCred {
        key: key.to_owned(),
        source,
    })?;
    let uid = cred.uid;
    if allowed.allows(uid, rustix::process::getuid().as_raw()) {
        Ok(())
    } else {
        Err(ConnectError::PublisherUid {
            key: key.to_owned(),
            uid,
            allowed: allowed.clone(),
        })
    }
}

impl<B: Backend> Drop for Subscriber<B> {
    fn drop(&mut self) {
        let c = self.conn.get_mut();
        c.hs.close();
        while let Some(o) = c.hs.poll_transmit() {
            let _ = c.chan.send(&o.message(), &[]);
        }
    }
}

/// The header's GPU UUID words as the 16 bytes they were made from.
fn uuid_bytes(words: [u64; 2]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&words[0].to_le_bytes());
    b[8..].copy_from_slice(&words[1].to_le_bytes());
    b
}

/// The control region `m` as words for `layout` (futex words included).
pub(crate) fn control_words(
    m: &Mapping,
    layout: ControlLayout,
) -> Result<ControlWords<'_>, LayoutError> {
    let too_small = LayoutError::TooSmall(m.len() as u64);
    let wake = m.u32_at(header::WAKE_OFFSET).ok_or(too_small)?;
    let rel = m.u32_at(header::RELEASE_WAKE_OFFSET).ok_or(too_small)?;
    ControlWords::new(m.words(), wake, rel, layout).map_err(|_| too_small)
}
