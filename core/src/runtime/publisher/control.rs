//! The publisher's control thread: accepts connections, runs one handshake
//! machine per subscriber, sends WELCOME with the ring's fds, and reclaims
//! everything a subscriber held the moment its socket closes.

use super::lease_clock::PeerName;
use super::readers::Reader;
use super::{RingShared, Shared};
use crate::backoff::{Backoff, BackoffPolicy, Next};
use crate::handshake::{PublisherEvent, PublisherHandshake};
use crate::layout::{LEASE_MAGIC, LEASE_REGION_SIZE};
use crate::ring::LeaseWords;
use crate::runtime::backend::Exporter;
use crate::runtime::channel::{Channel, ChannelError};
use crate::runtime::futex;
use crate::runtime::shm::{self, Access, Mapping};
use crate::sync::Ordering;
use crate::wire::{
    decode, ErrorCode, GoodbyeReason, Message, Welcome, HELLO_WANTS_FRAMES, HELLO_WANTS_PACKETS,
    WELCOME_HAS_PACKETS,
};
use crate::PROTOCOL_VERSION;
use rustix::event::{PollFd, PollFlags};
use rustix::fd::AsFd;
use rustix::io::Errno;
use std::os::unix::net::UnixListener;
use std::prelude::rust_2021::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Accepts per round at most this many connections.
const ACCEPTS_PER_ROUND: usize = 64;
/// Pauses of `accept` after EMFILE/ENFILE: 50 ms doubling up to 1 s, for as
/// long as the failures last.
const ACCEPT_PAUSE: BackoffPolicy =
    BackoffPolicy::new(Duration::from_millis(50), Duration::from_secs(1));
/// Longest poll(2) wait of one round: how soon `stop` and deadlines are seen.
const ROUND: Duration = Duration::from_millis(20);

/// The next connection id (1..=u32::MAX, wrapping) that no live connection
/// holds: after 2^32 connections the counter wraps, and an id still in use
/// would let one subscriber's departure remove another's reader row.
/// `in_use` must be false for some id (the live connections are bounded).
fn fresh_id(next_id: &mut u32, in_use: impl Fn(u32) -> bool) -> u32 {
    loop {
        let id = *next_id;
        *next_id = next_id.wrapping_add(1).max(1);
        if !in_use(id) {
            return id;
        }
    }
}

struct Conn {
    chan: Channel,
    hs: PublisherHandshake,
    id: u32,
    pid: i32,
    /// When it was accepted: the handshake deadline counts from here.
    since: Instant,
    /// A reader is registered under `id` (HELLO accepted): counts against
    /// `max_subscribers`, and is past its handshake.
    registered: bool,
    /// Set once welcomed to frames: what a re-WELCOME repeats.
    welcomed: Option<Welcomed>,
    /// Messages waiting for the peer to read its socket.
    out: OutQueue,
    /// Close once `out` is sent (an ERROR or GOODBYE is queued); nothing
    /// more is read.
    closing: bool,
    /// A STREAM_CHANGED + WELCOME pair is queued and not fully sent.
    rewelcome_unsent: bool,
    /// Budget spent with messages left: service it next round without waiting.
    more: bool,
}

/// What a re-WELCOME or WELCOME carries besides its bytes.
struct FdSource {
    ring: Arc<RingShared>,
    frames: bool,
    packets: bool,
}

struct Queued {
    bytes: Vec<u8>,
    sent: usize,
    fds: Option<FdSource>,
    at: Instant,
}

/// One peer's outgoing messages (§4.1): the control thread never blocks on
/// a send; a peer that lets its queue grow past `max_queued_bytes`, or
/// leaves a message unsent for `send_timeout`, is disconnected.
#[derive(Default)]
struct OutQueue {
    q: std::collections::VecDeque<Queued>,
    bytes: usize,
}

/// Why a connection must close now.
#[derive(Debug)]
enum SendFail {
    Overflow,
    Stalled,
    Channel(ChannelError),
}

impl core::fmt::Display for SendFail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendFail::Overflow => f.write_str("its send queue is full (it does not read)"),
            SendFail::Stalled => f.write_str("it left a message unread past the send timeout"),
            SendFail::Channel(e) => write!(f, "{e}"),
        }
    }
}

impl OutQueue {
    fn push(
        &mut self,
        msg: &Message<'_>,
        fds: Option<FdSource>,
        cap: usize,
        now: Instant,
    ) -> Result<(), SendFail> {
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes)
            .map_err(|e| SendFail::Channel(ChannelError::Wire(e)))?;
        if self.bytes + bytes.len() > cap {
            return Err(SendFail::Overflow);
        }
        self.bytes += bytes.len();
        self.q.push_back(Queued {
            bytes,
            sent: 0,
            fds,
            at: now,
        });
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Sends what the socket takes without waiting.
    fn flush<B: Exporter>(
        &mut self,
        shared: &Shared<B>,
        chan: &Channel,
        now: Instant,
    ) -> Result<(), SendFail> {
        while let Some(m) = self.q.front_mut() {
            let n = {
                let fds = match (&m.fds, m.sent) {
                    (Some(f), 0) => {
                        let packets = shared.packets.as_ref().filter(|_| f.packets);
                        welcome_fds(&f.ring, f.frames, packets)
                    }
                    _ => Vec::new(),
                };
                chan.try_send(&m.bytes[m.sent..], &fds)
                    .map_err(SendFail::Channel)?
            };
            if n == 0 {
                if now.saturating_duration_since(m.at) > shared.config.send_timeout {
                    return Err(SendFail::Stalled);
                }
                return Ok(());
            }
            m.sent += n;
            if m.sent == m.bytes.len() {
                self.bytes -= m.bytes.len();
                self.q.pop_front();
            }
        }
        Ok(())
    }
}

impl Conn {
    /// Queues everything the machine has to send.
    fn queue_transmit(&mut self, cap: usize, now: Instant) -> Result<(), SendFail> {
        while let Some(o) = self.hs.poll_transmit() {
            self.out.push(&o.message(), None, cap, now)?;
        }
        Ok(())
    }
}

/// What a welcomed frames subscriber was welcomed with.
#[derive(Clone, Copy)]
struct Welcomed {
    version: crate::Version,
    packets: bool,
    /// Generation of the ring it was last welcomed to.
    generation: u64,
}

/// `accept(2)`'s state: paused after EMFILE/ENFILE (§6).
struct AcceptGate {
    paused_until: Option<Instant>,
    /// The pauses; its failures since the last success are logged once,
    /// then summed.
    backoff: Backoff<Instant>,
}

/// Runs until `shared.stop` is set; then says GOODBYE to everyone.
pub(super) fn run<B: Exporter + Send + Sync + 'static>(
    shared: Arc<Shared<B>>,
    listener: UnixListener,
) where
    B::Slot: Send,
{
    let cfg = &shared.config;
    let mut conns: Vec<Conn> = Vec::new();
    let mut next_id = 1u32;
    let mut gate = AcceptGate {
        paused_until: None,
        backoff: Backoff::new(ACCEPT_PAUSE),
    };
    // Rings replaced by a stream change, closed once every re-WELCOME for a
    // newer ring has left (or its connection closed).
    let mut retiring: Vec<Arc<RingShared>> = Vec::new();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if gate.paused_until.is_some_and(|t| now >= t) {
            gate.paused_until = None;
        }
        let listen = gate.paused_until.is_none();
        let busy = conns.iter().any(|c| c.more);
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 1);
        if listen {
            fds.push(PollFd::new(&listener, PollFlags::IN));
        }
        for c in &conns {
            let mut f = PollFlags::empty();
            if !c.closing {
                f |= PollFlags::IN;
            }
            if !c.out.is_empty() {
                f |= PollFlags::OUT;
            }
            fds.push(PollFd::from_borrowed_fd(c.chan.fd(), f));
        }
        let wait = if busy { Duration::ZERO } else { ROUND };
        let ts = super::super::clock::timespec(wait);
        if rustix::event::poll(&mut fds, Some(&ts)).is_err() {
            continue;
        }
        let off = usize::from(listen);
        let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
        drop(fds);
        let now = Instant::now();
        let mut gone: Vec<(usize, String)> = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if !c.closing && (ready[i + off] || c.more) {
                service(&shared, c, now);
            }
            if let Err(e) = c.out.flush(&shared, &c.chan, now) {
                gone.push((i, e.to_string()));
                continue;
            }
            if c.out.is_empty() {
                c.rewelcome_unsent = false;
            }
            if c.closing && c.out.is_empty() {
                gone.push((i, "connection ended".into()));
            } else if !c.registered
                && !c.closing
                && now.saturating_duration_since(c.since) > cfg.handshake_timeout
            {
                gone.push((i, "no HELLO within the handshake timeout".into()));
            }
        }
        for (i, why) in gone.into_iter().rev() {
            let c = conns.swap_remove(i);
            drop_conn(&shared, c, &why);
        }
        retiring.extend(shared.take_retiring());
        rewelcome(&shared, &mut conns, now);
        if !retiring.is_empty() && !conns.iter().any(|c| c.rewelcome_unsent) {
            for old in retiring.drain(..) {
                old.close();
            }
        }
        if listen && ready[0] {
            accept_some(&shared, &listener, &mut conns, &mut next_id, &mut gate, now);
        }
    }
    for old in retiring {
        old.close();
    }
    let reason = if shared.end_of_stream.load(Ordering::Acquire) {
        GoodbyeReason::EndOfStream
    } else {
        GoodbyeReason::Shutdown
    };
    // One non-blocking attempt each: a peer that does not read delays nobody.
    let now = Instant::now();
    for c in &mut conns {
        if !c.closing {
            let _ = c.out.push(&Message::Goodbye(reason), None, usize::MAX, now);
        }
        let _ = c.out.flush(&shared, &c.chan, now);
    }
}

/// Forgets a connection (its socket closes when `c` drops) and reclaims
/// what its subscriber held (§5.6).
fn drop_conn<B: Exporter>(shared: &Shared<B>, c: Conn, why: &str) {
    if c.registered {
        shared.remove_reader(c.id);
        tracing::info!(
            subscriber = c.id,
            pid = c.pid,
            "subscriber disconnected ({why}); its leases are reclaimed"
        );
    } else {
        tracing::debug!(connection = c.id, pid = c.pid, "connection closed ({why})");
    }
}

/// Accepts waiting connections (at `now`, the round's time).
/// EMFILE/ENFILE (and ENOBUFS/ENOMEM) pause accepting, with a backoff,
/// instead of spinning on a listener that stays readable; logged once per
/// episode.
fn accept_some<B: Exporter>(
    shared: &Shared<B>,
    listener: &UnixListener,
    conns: &mut Vec<Conn>,
    next_id: &mut u32,
    gate: &mut AcceptGate,
    now: Instant,
) {
    for _ in 0..ACCEPTS_PER_ROUND {
        match listener.accept() {
            Ok((stream, _)) => {
                if !gate.backoff.is_idle() {
                    tracing::info!(
                        "accepting connections again after {} failed accept(2) calls",
                        gate.backoff.failures()
                    );
                    gate.backoff.on_success();
                }
                make_room(shared, conns);
                let id = fresh_id(next_id, |id| conns.iter().any(|c| c.id == id));
                conns.push(admit(shared, stream, id, conns, now));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let errno = Errno::from_io_error(&e);
                let exhausted = matches!(
                    errno,
                    Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
                );
                if !exhausted {
                    // ECONNABORTED and the like: that one connection is lost.
                    continue;
                }
                if gate.backoff.is_idle() {
                    tracing::warn!(
                        "accept(2) failed: {e}; pausing new connections (backoff up to {:?}) until resources free up",
                        ACCEPT_PAUSE.max
                    );
                }
                // No give-up budget: always `RetryAt`.
                if let Next::RetryAt(t) = gate.backoff.on_failure(now) {
                    gate.paused_until = Some(t);
                }
                return;
            }
        }
    }
}

/// At `max_pending_handshakes` connections not yet past their handshake,
/// closes the oldest of them to make room for a new one.
fn make_room<B: Exporter>(shared: &Shared<B>, conns: &mut Vec<Conn>) {
    let pending = conns.iter().filter(|c| !c.registered).count();
    if pending < shared.config.max_pending_handshakes.max(1) {
        return;
    }
    if let Some((i, _)) = conns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.registered)
        .min_by_key(|(_, c)| c.since)
    {
        let c = conns.swap_remove(i);
        drop_conn(
            shared,
            c,
            "too many pending handshakes; the oldest is closed",
        );
    }
}

fn admit<B: Exporter>(
    shared: &Shared<B>,
    stream: std::os::unix::net::UnixStream,
    id: u32,
    conns: &[Conn],
    now: Instant,
) -> Conn {
    let _ = stream.set_nonblocking(true);
    let cred = crate::runtime::peer::peer_cred(&stream).ok();
    let pid = cred.map_or(0, |c| c.pid);
    let chan = Channel::new(stream);
    let mut hs = PublisherHandshake::new(PROTOCOL_VERSION);
    let cfg = &shared.config;
    let restricted = !cfg.allowed_uids.is_empty() || !cfg.allowed_gids.is_empty();
    if cred.is_none() && restricted {
        hs.reject(
            ErrorCode::AccessDenied,
            format_args!("cannot read the peer's credentials (SO_PEERCRED)"),
        );
    }
    if let Some(c) = cred {
        let (uid, gid) = (c.uid, c.gid);
        let open = cfg.allowed_uids.is_empty() && cfg.allowed_gids.is_empty();
        let listed = cfg.allowed_uids.contains(&uid) || cfg.allowed_gids.contains(&gid);
        if !(open || listed || uid == 0) {
            hs.reject(
                ErrorCode::AccessDenied,
                format_args!("uid {uid} gid {gid} is not allowed on this stream"),
            );
        }
    }
    reject_if_full(shared, &mut hs, conns);
    let mut c = Conn {
        chan,
        hs,
        id,
        pid,
        since: now,
        registered: false,
        welcomed: None,
        out: OutQueue::default(),
        closing: false,
        rewelcome_unsent: false,
        more: false,
    };
    if matches!(c.hs.state(), crate::handshake::PublisherState::Failed) {
        c.closing = true;
    }
    if c.queue_transmit(cfg.max_queued_bytes, now).is_err() {
        c.closing = true;
    }
    c
}

/// Queues ERROR TooManySubscribers when `max_subscribers` subscribers are
/// registered (connections still in their handshake do not count).
fn reject_if_full<B: Exporter>(shared: &Shared<B>, hs: &mut PublisherHandshake, conns: &[Conn]) {
    let live = conns.iter().filter(|c| c.registered).count();
    let max = shared.config.max_subscribers;
    if live >= max {
        hs.reject(
            ErrorCode::TooManySubscribers,
            format_args!("publisher serves its maximum of {max} subscribers"),
        );
    }
}

/// Handles at most `messages_per_round` messages of one connection at
/// `now` (the round's time); sets `c.closing` when it must close (an ERROR
/// or nothing queued), `c.more` when messages are left for the next round.
fn service<B: Exporter>(shared: &Shared<B>, c: &mut Conn, now: Instant) {
    let cfg = &shared.config;
    c.more = false;
    for _ in 0..cfg.messages_per_round.max(1) {
        let raw = match c.chan.recv(Some(Duration::ZERO)) {
            Ok(Some(raw)) => raw,
            Ok(None) => return,
            Err(ChannelError::Closed) => return close(shared, c),
            Err(e) => {
                tracing::debug!(connection = c.id, "closing connection: {e}");
                c.hs.reject(ErrorCode::BadMessage, format_args!("{e}"));
                let _ = c.queue_transmit(cfg.max_queued_bytes, now);
                return close(shared, c);
            }
        };
        let msg = match decode(&raw) {
            Ok(Some(d)) => d.message,
            _ => return close(shared, c),
        };
        let hello = matches!(msg, Message::Hello(_));
        let event = c.hs.handle(msg);
        let keep = match event {
            Ok(PublisherEvent::Accepted { hello, version }) => {
                accept(shared, c, &hello, version, now)
            }
            Ok(PublisherEvent::Goodbye(_)) | Ok(PublisherEvent::Refused) | Err(_) => false,
            Ok(PublisherEvent::Release(_) | PublisherEvent::Pong(_) | PublisherEvent::Nothing) => {
                true
            }
        };
        if hello || c.registered {
            // §4.1: after HELLO no message carries fds; close any at once.
            c.chan.refuse_fds();
        } else {
            // Fds that came with a message that takes none.
            c.chan.close_stray_fds();
        }
        if c.queue_transmit(cfg.max_queued_bytes, now).is_err() || !keep {
            return close(shared, c);
        }
    }
    c.more = c.chan.has_buffered();
}

/// Starts closing `c`: its subscriber's leases are reclaimed now; the
/// socket closes once what is queued (an ERROR) is sent or times out.
fn close<B: Exporter>(shared: &Shared<B>, c: &mut Conn) {
    c.closing = true;
    c.more = false;
    c.chan.refuse_fds();
    if c.registered {
        c.registered = false;
        shared.remove_reader(c.id);
        tracing::info!(
            subscriber = c.id,
            pid = c.pid,
            "subscriber disconnected; its leases are reclaimed"
        );
    }
}

fn accept<B: Exporter>(
    shared: &Shared<B>,
    c: &mut Conn,
    hello: &crate::wire::Hello,
    version: crate::Version,
    now: Instant,
) -> bool {
    let wants_frames = hello.flags & HELLO_WANTS_FRAMES != 0;
    let packets = match &shared.packets {
        Some(p) if hello.flags & HELLO_WANTS_PACKETS != 0 => Some(p),
        _ => None,
    };
    if !wants_frames && packets.is_none() {
        c.hs.reject(
            ErrorCode::Unsupported,
            format_args!("this publisher has no packet ring"),
        );
        return false;
    }
    if shared.subscriber_count() >= shared.config.max_subscribers {
        let max = shared.config.max_subscribers;
        c.hs.reject(
            ErrorCode::TooManySubscribers,
            format_args!("publisher serves its maximum of {max} subscribers"),
        );
        return false;
    }
    let map = if wants_frames {
        match lease_row(c) {
            Some(m) => Some(m),
            None => return false,
        }
    } else {
        c.chan.discard_fds();
        None
    };
    let name = PeerName::new(hello.name.as_str());
    let ring = shared.current();
    let start_seq = ring.writer().next_seq() - 1;
    let welcome = welcome_for(shared, &ring, c.id, version, start_seq, packets.is_some());
    let fds = FdSource {
        ring: Arc::clone(&ring),
        frames: wants_frames,
        packets: packets.is_some(),
    };
    let queued = c.out.push(
        &Message::Welcome(welcome),
        Some(fds),
        shared.config.max_queued_bytes,
        now,
    );
    if queued.is_err() {
        return false;
    }
    let mut reader = Reader::new(c.id, name.clone(), hello.mode, map, start_seq);
    reader.first_gen = ring.generation;
    // Registered before WELCOME leaves (it is only queued here), so the
    // first lease is already scanned by claims.
    shared.add_reader(reader);
    c.registered = true;
    if wants_frames {
        c.welcomed = Some(Welcomed {
            version,
            packets: packets.is_some(),
            generation: ring.generation,
        });
    }
    tracing::info!(subscriber = c.id, pid = c.pid, name = %name, mode = ?hello.mode, frames = wants_frames, packets = packets.is_some(), "subscriber joined at seq {start_seq}");
    futex::wake_all(ring.writer().words().release_wake());
    true
}

/// WELCOME for `ring` (§4.3).
fn welcome_for<'r, B: Exporter>(
    shared: &'r Shared<B>,
    ring: &'r RingShared,
    id: u32,
    version: crate::Version,
    start_seq: u64,
    packets: bool,
) -> Welcome<'r> {
    Welcome {
        version,
        subscriber_id: id,
        memory_kind: shared.backend.memory_kind(),
        sync_kind: shared.backend.sync_kind(),
        slot_count: ring.layout.slot_count,
        flags: if packets { WELCOME_HAS_PACKETS } else { 0 },
        control_size: ring.layout.region_size(),
        slot_size: ring.slot_size,
        start_seq,
        handle_len: ring.handle_len,
        handles: &ring.handles,
        packet_region_size: match (&shared.packets, packets) {
            (Some(p), true) => p.geo.region_size(),
            _ => 0,
        },
    }
}

/// The fds of a WELCOME for `ring`: control region, slots (frames: each
/// slot's memory fd, then its sync fd if the sync kind has one), packet region.
fn welcome_fds<'r>(
    ring: &'r RingShared,
    frames: bool,
    packets: Option<&'r super::packets::PacketRegion>,
) -> Vec<rustix::fd::BorrowedFd<'r>> {
    let mut fds = vec![ring.control_fd.as_fd()];
    if frames {
        fds.extend(
            ring.exports
                .iter()
                .flat_map(|e| [e.fd.as_ref(), e.sync_fd.as_ref()])
                .flatten()
                .map(|f| f.as_fd()),
        );
    }
    if let Some(p) = packets {
        fds.push(p.fd.as_fd());
    }
    fds
}

/// Stream changes (§6): queues STREAM_CHANGED then a WELCOME for the
/// current ring for every frame subscriber welcomed to an older one. The
/// caller closes the replaced rings once these have left. A connection whose
/// queue overflows is closed and reclaimed.
fn rewelcome<B: Exporter>(shared: &Shared<B>, conns: &mut Vec<Conn>, now: Instant) {
    let ring = shared.current();
    let cap = shared.config.max_queued_bytes;
    let mut gone = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        if c.closing {
            continue;
        }
        let Some(w) = c.welcomed.as_mut() else {
            continue;
        };
        if w.generation >= ring.generation {
            continue;
        }
        let welcome = welcome_for(shared, &ring, c.id, w.version, ring.base_seq, w.packets);
        let fds = FdSource {
            ring: Arc::clone(&ring),
            frames: true,
            packets: w.packets,
        };
        let queued = c
            .out
            .push(&Message::StreamChanged(ring.generation), None, cap, now)
            .and_then(|()| c.out.push(&Message::Welcome(welcome), Some(fds), cap, now))
            .and_then(|()| c.out.flush(shared, &c.chan, now));
        if let Err(e) = queued {
            gone.push((i, e.to_string()));
            continue;
        }
        c.rewelcome_unsent = !c.out.is_empty();
        w.generation = ring.generation;
        tracing::info!(
            subscriber = c.id,
            generation = ring.generation,
            "re-welcomed after a stream change"
        );
    }
    for (i, why) in gone.into_iter().rev() {
        let c = conns.swap_remove(i);
        drop_conn(shared, c, &why);
    }
}

/// Takes, checks and maps the lease row a frames HELLO carries; on failure
/// queues the ERROR and returns `None`.
fn lease_row(c: &mut Conn) -> Option<Mapping> {
    let row = match c.chan.take_fds(1) {
        Ok(mut fds) => fds.remove(0),
        Err(e) => {
            c.hs.reject(
                ErrorCode::BadMessage,
                format_args!("HELLO wants frames but {e}"),
            );
            return None;
        }
    };
    c.chan.discard_fds();
    let map = shm::check_received(row.as_fd(), LEASE_REGION_SIZE)
        .and_then(|()| Mapping::map(row.as_fd(), LEASE_REGION_SIZE as usize, Access::ReadOnly));
    let map = match map {
        Ok(m) => m,
        Err(e) => {
            c.hs.reject(ErrorCode::BadMessage, format_args!("lease row: {e}"));
            return None;
        }
    };
    if LeaseWords::new(map.words()).map(|w| w.snapshot().magic) != Ok(LEASE_MAGIC) {
        c.hs.reject(
            ErrorCode::BadMessage,
            format_args!("lease row does not start with CUFLEASE"),
        );
        return None;
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::fresh_id;

    #[test]
    fn connection_ids_wrap_past_zero_and_skip_live_ones() {
        let mut next = u32::MAX - 1;
        let live = [u32::MAX, 1, 2];
        let in_use = |id| live.contains(&id);
        assert_eq!(fresh_id(&mut next, in_use), u32::MAX - 1);
        // u32::MAX, 1 and 2 are held; 0 is never an id.
        assert_eq!(fresh_id(&mut next, in_use), 3);
        assert_eq!(next, 4);
    }
}
