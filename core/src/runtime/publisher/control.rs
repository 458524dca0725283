//! The publisher's control thread: accepts connections, runs one handshake
//! machine per subscriber, sends WELCOME with the ring's fds, and reclaims
//! everything a subscriber held the moment its socket closes.

use super::readers::Reader;
use super::{RingShared, Shared};
use crate::handshake::{PublisherEvent, PublisherHandshake};
use crate::layout::{LEASE_MAGIC, LEASE_REGION_SIZE};
use crate::ring::LeaseWords;
use crate::runtime::backend::Backend;
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
use std::os::unix::net::UnixListener;
use std::prelude::rust_2021::*;
use std::sync::Arc;
use std::time::Duration;

struct Conn {
    chan: Channel,
    hs: PublisherHandshake,
    id: u32,
    pid: i32,
    /// Set once welcomed to frames: what a re-WELCOME repeats.
    welcomed: Option<Welcomed>,
}

/// What a frames subscriber was welcomed with.
#[derive(Clone, Copy)]
struct Welcomed {
    version: crate::Version,
    packets: bool,
    /// Generation of the ring it was last welcomed to.
    generation: u64,
}

/// Runs until `shared.stop` is set; then says GOODBYE to everyone.
pub(super) fn run<B: Backend + Send + Sync + 'static>(
    shared: Arc<Shared<B>>,
    listener: UnixListener,
) where
    B::Slot: Send,
{
    let mut conns: Vec<Conn> = Vec::new();
    let mut next_id = 1u32;
    while !shared.stop.load(Ordering::Acquire) {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(conns.len() + 1);
        fds.push(PollFd::new(&listener, PollFlags::IN));
        for c in &conns {
            fds.push(PollFd::from_borrowed_fd(c.chan.fd(), PollFlags::IN));
        }
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        if rustix::event::poll(&mut fds, Some(&ts)).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
        drop(fds);
        let mut gone = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if ready[i + 1] && !service(&shared, c) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            let c = conns.swap_remove(i);
            shared.remove_reader(c.id);
            tracing::info!(
                subscriber = c.id,
                pid = c.pid,
                "subscriber disconnected; its leases are reclaimed"
            );
        }
        rewelcome(&shared, &mut conns);
        if ready[0] {
            if let Ok((stream, _)) = listener.accept() {
                if let Some(c) = admit(&shared, stream, next_id, conns.len()) {
                    conns.push(c);
                }
                next_id = next_id.wrapping_add(1).max(1);
            }
        }
    }
    let reason = if shared.end_of_stream.load(Ordering::Acquire) {
        GoodbyeReason::EndOfStream
    } else {
        GoodbyeReason::Shutdown
    };
    for c in &conns {
        let _ = c.chan.send(&Message::Goodbye(reason), &[]);
    }
}

fn admit<B: Backend>(
    shared: &Shared<B>,
    stream: std::os::unix::net::UnixStream,
    id: u32,
    live: usize,
) -> Option<Conn> {
    let _ = stream.set_nonblocking(true);
    let cred = rustix::net::sockopt::socket_peercred(&stream).ok();
    let pid = cred.map_or(0, |c| c.pid.as_raw_nonzero().get());
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
        let uid = c.uid.as_raw();
        let gid = c.gid.as_raw();
        let open = cfg.allowed_uids.is_empty() && cfg.allowed_gids.is_empty();
        let listed = cfg.allowed_uids.contains(&uid) || cfg.allowed_gids.contains(&gid);
        if !(open || listed || uid == 0) {
            hs.reject(
                ErrorCode::AccessDenied,
                format_args!("uid {uid} gid {gid} is not allowed on this stream"),
            );
        }
    }
    if live >= cfg.max_subscribers {
        hs.reject(
            ErrorCode::TooManySubscribers,
            format_args!(
                "publisher serves its maximum of {} subscribers",
                cfg.max_subscribers
            ),
        );
    }
    let mut c = Conn {
        chan,
        hs,
        id,
        pid,
        welcomed: None,
    };
    if !flush(&mut c) || matches!(c.hs.state(), crate::handshake::PublisherState::Failed) {
        return None;
    }
    Some(c)
}

/// Sends everything the machine queued. `false` if the connection must close.
fn flush(c: &mut Conn) -> bool {
    while let Some(o) = c.hs.poll_transmit() {
        if c.chan.send(&o.message(), &[]).is_err() {
            return false;
        }
    }
    true
}

/// Handles what arrived on one connection. `false`: close it and reclaim.
fn service<B: Backend>(shared: &Shared<B>, c: &mut Conn) -> bool {
    loop {
        let raw = match c.chan.recv(Some(Duration::ZERO)) {
            Ok(Some(raw)) => raw,
            Ok(None) => return true,
            Err(ChannelError::Closed) => return false,
            Err(e) => {
                tracing::warn!(subscriber = c.id, "closing connection: {e}");
                c.hs.reject(ErrorCode::BadMessage, format_args!("{e}"));
                flush(c);
                return false;
            }
        };
        let msg = match decode(&raw) {
            Ok(Some(d)) => d.message,
            _ => return false,
        };
        let event = c.hs.handle(msg);
        let keep = match event {
            Ok(PublisherEvent::Accepted { hello, version }) => accept(shared, c, &hello, version),
            Ok(PublisherEvent::Goodbye(_)) | Ok(PublisherEvent::Refused) | Err(_) => false,
            Ok(PublisherEvent::Release(_) | PublisherEvent::Pong(_) | PublisherEvent::Nothing) => {
                true
            }
        };
        if !flush(c) || !keep {
            return false;
        }
    }
}

fn accept<B: Backend>(
    shared: &Shared<B>,
    c: &mut Conn,
    hello: &crate::wire::Hello,
    version: crate::Version,
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
    let map = if wants_frames {
        match lease_row(c) {
            Some(m) => Some(m),
            None => return false,
        }
    } else {
        c.chan.discard_fds();
        None
    };
    let ring = shared.current();
    let start_seq = ring.writer().next_seq() - 1;
    let mut reader = Reader::new(
        c.id,
        hello.name.as_str().to_owned(),
        hello.mode,
        map,
        start_seq,
    );
    reader.first_gen = ring.generation;
    let welcome = welcome_for(shared, &ring, c.id, version, start_seq, packets.is_some());
    let fds = welcome_fds(&ring, wants_frames, packets);
    // Register before WELCOME leaves so the first lease is already scanned.
    shared.add_reader(reader);
    if c.chan.send(&Message::Welcome(welcome), &fds).is_err() {
        return false;
    }
    if wants_frames {
        c.welcomed = Some(Welcomed {
            version,
            packets: packets.is_some(),
            generation: ring.generation,
        });
    }
    tracing::info!(subscriber = c.id, pid = c.pid, name = hello.name.as_str(), mode = ?hello.mode, frames = wants_frames, packets = packets.is_some(), "subscriber joined at seq {start_seq}");
    futex::wake_all(ring.writer().words().release_wake());
    true
}

/// WELCOME for `ring` (§4.3).
fn welcome_for<'r, B: Backend>(
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

/// The fds of a WELCOME for `ring`: control region, slots (frames), packet region.
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
                .filter_map(|e| e.fd.as_ref().map(|f| f.as_fd())),
        );
    }
    if let Some(p) = packets {
        fds.push(p.fd.as_fd());
    }
    fds
}

/// Stream changes (§6): sends STREAM_CHANGED then a WELCOME for the current
/// ring to every frame subscriber welcomed to an older one, then closes the
/// replaced rings. A connection whose send fails is closed and reclaimed.
fn rewelcome<B: Backend>(shared: &Shared<B>, conns: &mut Vec<Conn>) {
    // Taken before `current` is read: a ring replaced after this is closed
    // on a later turn, after its subscribers are re-welcomed.
    let retiring = shared.take_retiring();
    let ring = shared.current();
    let mut gone = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let Some(w) = c.welcomed.as_mut() else {
            continue;
        };
        if w.generation >= ring.generation {
            continue;
        }
        let packets = shared.packets.as_ref().filter(|_| w.packets);
        let welcome = welcome_for(shared, &ring, c.id, w.version, ring.base_seq, w.packets);
        let fds = welcome_fds(&ring, true, packets);
        let sent = c
            .chan
            .send(&Message::StreamChanged(ring.generation), &[])
            .and_then(|()| c.chan.send(&Message::Welcome(welcome), &fds));
        if sent.is_err() {
            gone.push(i);
            continue;
        }
        w.generation = ring.generation;
        tracing::info!(
            subscriber = c.id,
            generation = ring.generation,
            "re-welcomed after a stream change"
        );
    }
    for i in gone.into_iter().rev() {
        let c = conns.swap_remove(i);
        shared.remove_reader(c.id);
    }
    for old in retiring {
        old.close();
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
