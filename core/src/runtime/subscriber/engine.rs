//! The [`Subscriber`]: its state, phase two of connecting
//! ([`Welcomed::import`]) and its accessors. What it does lives beside it:
//! `frames` (leasing frames), `packets`, `socket` (the control socket),
//! `reconnect`.

use super::connect::{Attach, Conn, Welcomed};
use super::error::{ConnectError, EndReason, SubscriberStats};
use super::options::SubscribeOptions;
use super::packet_ring::PacketState;
use crate::backoff::Backoff;
use crate::layout::StreamDesc;
use crate::ring::Cursor;
use crate::runtime::backend::{Importer, Peer};
use crate::runtime::host::HostBackend;
use crate::runtime::wait::Pace;
use std::cell::{Cell, RefCell};
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
#[cfg(doc)]
use {super::frame::Frame, super::RecvError, crate::runtime::WaitStrategy};

/// How often an empty poll (`next_frame` with a short timeout) reads the
/// control socket while the ring is open. A publisher that died without
/// closing its ring is noticed this much later at most.
pub(super) const SOCKET_POLL_EVERY: Duration = Duration::from_millis(1);

/// A connection to one publisher.
pub struct Subscriber<B: Importer = HostBackend> {
    pub(super) key: String,
    pub(super) opts: SubscribeOptions,
    pub(super) conn: RefCell<Conn<B>>,
    pub(super) cursor: Cell<Cursor>,
    pub(super) stats: Cell<SubscriberStats>,
    pub(super) revoked: Arc<Mutex<u64>>,
    /// The next frame reports a stream change.
    pub(super) announce_change: Cell<bool>,
    /// The next frame carries `FLAG_DISCONTINUITY` (after a reconnect).
    pub(super) announce_gap: Cell<bool>,
    /// When the control socket was last read while the ring was open
    /// (polling reads it at most every [`SOCKET_POLL_EVERY`]).
    pub(super) socket_read_at: Cell<Instant>,
    /// Reconnection attempts ([`SubscribeOptions::reconnect`]'s schedule).
    pub(super) retry: Cell<Backoff<Instant>>,
    /// The stream's commit pace, for [`WaitStrategy::anticipate`].
    pub(super) pace: Cell<Pace>,
    /// The last reconnect failure logged at WARN (each new kind once).
    pub(super) retry_warned: RefCell<String>,
    /// What the backend was attached with; later rings must match.
    pub(super) peer: Peer,
    pub(super) backend: B,
}

impl Subscriber<HostBackend> {
    /// Connects to `key` with the host-memory backend.
    pub fn connect_host(key: &str, opts: SubscribeOptions) -> Result<Self, ConnectError> {
        Self::connect(key, HostBackend, opts)
    }
}

impl<B: Importer> Subscriber<B> {
    /// Connects to the publisher of `key`, importing its slots with `backend`.
    ///
    /// The backend sees the publisher's memory kind, sync kind and GPU UUID
    /// ([`Importer::attach`]) before it imports the slots. Later rings of this
    /// subscriber (stream changes, reconnects) must keep them
    /// ([`ConnectError::PeerChanged`]).
    pub fn connect(key: &str, backend: B, opts: SubscribeOptions) -> Result<Self, ConnectError> {
        let timeout = opts.handshake_timeout;
        let hello_gpu = backend.gpu_uuid();
        Welcomed::start(key, opts, timeout, hello_gpu)?.import(backend)
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
}

impl Welcomed {
    /// Phase two of connecting: imports the publisher's slots with
    /// `backend` (chosen from [`Welcomed::offer`]) and returns the
    /// subscriber. The backend sees the publisher's memory kind, sync kind
    /// and GPU UUID ([`Importer::attach`]) before it imports the slots; later
    /// rings of this subscriber (stream changes, reconnects) must keep them
    /// ([`ConnectError::PeerChanged`]).
    ///
    /// Errors: [`ConnectError::MemoryKind`] (the backend does not import
    /// this memory kind), [`ConnectError::Import`] (the backend refused the
    /// GPU or a slot).
    pub fn import<B: Importer>(self, mut backend: B) -> Result<Subscriber<B>, ConnectError> {
        let key = self.key.clone();
        let opts = self.opts.clone();
        let retry = Backoff::<Instant>::new(opts.reconnect.unwrap_or_default().policy());
        let revoked = Arc::new(Mutex::new(0));
        let (conn, peer, start) = self.into_conn(Attach::First(&mut backend), &revoked)?;
        Ok(Subscriber {
            key,
            opts,
            conn: RefCell::new(conn),
            cursor: Cell::new(Cursor { last_seq: start }),
            stats: Cell::new(SubscriberStats::default()),
            revoked,
            announce_change: Cell::new(false),
            announce_gap: Cell::new(false),
            socket_read_at: Cell::new(Instant::now()),
            retry: Cell::new(retry),
            pace: Cell::new(Pace::default()),
            retry_warned: RefCell::new(String::new()),
            peer,
            backend,
        })
    }
}

impl<B: Importer> Drop for Subscriber<B> {
    fn drop(&mut self) {
        let c = self.conn.get_mut();
        c.hs.close();
        while let Some(o) = c.hs.poll_transmit() {
            let _ = c.chan.send(&o.message(), &[]);
        }
    }
}
