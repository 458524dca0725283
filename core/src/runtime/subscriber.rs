//! The subscriber engine (`docs/protocol.md` §5, §6).
//!
//! [`Subscriber::connect`] sends HELLO with a fresh lease-row memfd, checks
//! WELCOME, maps the publisher's control region read-only, validates it and
//! imports the slots through the backend. [`Subscriber::next_frame`] leases
//! the next frame for its delivery mode and returns a [`Frame`] guard whose
//! drop releases the lease.

use super::backend::{Backend, Peer};
use super::channel::{Channel, ChannelError};
use super::dir::{self, DirError};
use super::futex;
use super::host::HostBackend;
use super::leases::{LeaseState, PendingRelease};
use super::shm::{self, Access, Mapping, ShmError};
use crate::handshake::{HandshakeError, SubscriberEvent, SubscriberHandshake};
use crate::layout::{
    header, ControlLayout, LayoutError, StreamDesc, LEASES_PER_ROW, LEASE_REGION_SIZE,
};
use crate::ring::{Acquire, ControlWords, Cursor, FrameMeta, Lease, LeaseWords, RingReader};
use crate::wire::{
    decode, ErrorCode, Hello, Name, WireError, HELLO_WANTS_FRAMES, HELLO_WANTS_PACKETS,
    WELCOME_HAS_PACKETS,
};
use crate::{DeliveryMode, MemoryKind, PROTOCOL_VERSION};
use rustix::fd::{AsFd, OwnedFd};
use std::cell::{Cell, RefCell};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::sync::Arc;
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
    /// No new frame within the timeout.
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The publisher is gone (socket closed, GOODBYE, or region closed) and
    /// every frame left in the ring has been delivered.
    #[error("publisher disconnected")]
    Disconnected,
    /// All lease entries are held by live [`Frame`]s.
    #[error("all {LEASES_PER_ROW} leases are held; drop a frame first")]
    TooManyLeases,
    /// The stream description changed; reconnect to re-import.
    #[error("stream changed to generation {0}; reconnect")]
    StreamChanged(u64),
    /// The publisher broke the protocol.
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
}

/// A connection to one publisher.
pub struct Subscriber<B: Backend = HostBackend> {
    chan: RefCell<Channel>,
    hs: RefCell<SubscriberHandshake>,
    leases: Arc<LeaseState>,
    _row_fd: OwnedFd,
    stream: StreamDesc,
    slots: Vec<B::Imported>,
    subscriber_id: u32,
    cursor: Cell<Cursor>,
    stats: Cell<SubscriberStats>,
    gone: Cell<bool>,
    frames: bool,
    packets: Option<super::packets::PacketState>,
    backend: B,
}

impl Subscriber<HostBackend> {
    /// Connects to `key` with the host-memory backend.
    pub fn connect_host(key: &str, opts: SubscribeOptions) -> Result<Self, ConnectError> {
        Self::connect(key, HostBackend, opts)
    }
}

impl<B: Backend> Subscriber<B> {
    /// Connects to the publisher of `key`, importing its slots with `backend`.
    ///
    /// The backend sees the publisher's memory kind, sync kind and GPU UUID
    /// ([`Backend::attach`]) before it imports the slots.
    pub fn connect(
        key: &str,
        mut backend: B,
        opts: SubscribeOptions,
    ) -> Result<Self, ConnectError> {
        if !opts.frames && !opts.packets {
            return Err(ConnectError::NothingWanted);
        }
        let dir = opts.runtime_dir.clone().unwrap_or_else(dir::runtime_dir);
        let path = dir::socket_path(&dir, key)?;
        let stream = UnixStream::connect(&path).map_err(|source| ConnectError::NoPublisher {
            key: key.to_owned(),
            path: path.clone(),
            source,
        })?;
        let _ = stream.set_nonblocking(true);
        let mut chan = Channel::new(stream);

        let (row_fd, row) = shm::create_shared("cuframes-lease-row", LEASE_REGION_SIZE)?;
        LeaseWords::new(row.words())
            .map_err(|_| ShmError::Size {
                actual: 0,
                expected: LEASE_REGION_SIZE,
            })?
            .init(0);

        let hello = Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            flags: if opts.frames { HELLO_WANTS_FRAMES } else { 0 }
                | if opts.packets { HELLO_WANTS_PACKETS } else { 0 },
            mode: opts.mode,
            gpu_uuid: backend.gpu_uuid(),
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

        let deadline = Instant::now() + opts.handshake_timeout;
        let raw = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let raw = match chan.recv(Some(left)) {
                Ok(Some(raw)) => raw,
                Ok(None) if left.is_zero() => {
                    return Err(ConnectError::Timeout(opts.handshake_timeout))
                }
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
        if !backend.accepts(welcome.memory_kind) {
            return Err(ConnectError::MemoryKind {
                theirs: welcome.memory_kind,
                ours: backend.memory_kind(),
            });
        }
        let has_packets = welcome.flags & WELCOME_HAS_PACKETS != 0;
        if opts.packets && !has_packets {
            return Err(ConnectError::NoPacketRing);
        }
        let n_fds =
            1 + if opts.frames && welcome.memory_kind.uses_fds() {
                welcome.slot_count as usize
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
        backend
            .attach(&Peer {
                memory_kind: welcome.memory_kind,
                sync_kind: welcome.sync_kind,
                gpu_uuid: uuid_bytes(header.gpu_uuid),
                slot_size: welcome.slot_size,
                slot_count: welcome.slot_count,
            })
            .map_err(|e| ConnectError::Import(Box::new(e)))?;
        let mut slots = Vec::with_capacity(welcome.slot_count as usize);
        for i in 0..welcome.slot_count as usize * usize::from(opts.frames) {
            let hl = welcome.handle_len as usize;
            let handle = &welcome.handles[i * hl..(i + 1) * hl];
            let fd = if welcome.memory_kind.uses_fds() {
                fds.next()
            } else {
                None
            };
            // SAFETY: `fd`/`handle` come from this publisher's WELCOME for its
            // memory kind, which equals this backend's (checked above), for
            // slots of `slot_size` bytes (validated against the region).
            #[allow(unsafe_code)]
            let imported = unsafe { backend.import(fd, handle, welcome.slot_size) }
                .map_err(|e| ConnectError::Import(Box::new(e)))?;
            slots.push(imported);
        }
        let packets = match fds.next() {
            Some(fd) if has_packets => Some(super::packets::PacketState::open(
                fd,
                welcome.packet_region_size,
            )?),
            _ => None,
        };
        let start = welcome.start_seq;
        LeaseWords::new(row.words())
            .map_err(|_| ShmError::Size {
                actual: 0,
                expected: LEASE_REGION_SIZE,
            })?
            .init(start);
        let subscriber_id = welcome.subscriber_id;
        Ok(Subscriber {
            chan: RefCell::new(chan),
            hs: RefCell::new(hs),
            leases: Arc::new(LeaseState::new(control, row, layout, opts.mode)),
            _row_fd: row_fd,
            stream,
            slots,
            subscriber_id,
            cursor: Cell::new(Cursor { last_seq: start }),
            stats: Cell::new(SubscriberStats::default()),
            gone: Cell::new(false),
            frames: opts.frames,
            packets,
            backend,
        })
    }

    fn reader(&self) -> RingReader<'_> {
        self.leases.reader()
    }

    /// The validated stream description (frame size, format, plane layout).
    pub fn stream(&self) -> &StreamDesc {
        &self.stream
    }

    /// The backend this subscriber imported its slots with.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Slots in the publisher's ring.
    pub fn slot_count(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Publisher-assigned id.
    pub fn id(&self) -> u32 {
        self.subscriber_id
    }

    /// Counters so far.
    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            revoked: self.leases.book().revoked,
            ..self.stats.get()
        }
    }

    /// The next frame for this subscriber's delivery mode, waiting at most
    /// `timeout`.
    ///
    /// NewestOnly returns the newest committed frame newer than the last one
    /// returned; InOrder the next in sequence. Frames that were skipped or
    /// lost are counted in [`Frame::skipped`] and [`SubscriberStats::dropped`].
    /// After the publisher is gone, the frames still in the ring are
    /// delivered, then [`RecvError::Disconnected`].
    pub fn next_frame(&self, timeout: Duration) -> Result<Frame<'_, B>, RecvError> {
        if !self.frames {
            return Err(RecvError::NotSubscribed);
        }
        let deadline = Instant::now() + timeout;
        let used = self.leases.book().entries;
        let entry = (0..LEASES_PER_ROW)
            .find(|i| used & (1 << i) == 0)
            .ok_or(RecvError::TooManyLeases)?;
        let reader = self.reader();
        loop {
            let wake = reader.words().wake().load(crate::sync::Ordering::SeqCst);
            // Read before acquiring: every frame committed before the close
            // (or before the socket EOF we saw) is visible to this acquire.
            let finished = self.gone.get() || reader.words().is_closed();
            if let Acquire::Frame(lease) =
                reader.acquire(self.leases.mode, self.cursor.get(), entry)
            {
                self.cursor.set(Cursor {
                    last_seq: lease.seq,
                });
                self.leases.book().entries |= 1 << entry;
                let mut st = self.stats.get();
                st.received += 1;
                st.dropped = st.dropped.saturating_add(lease.skipped);
                self.stats.set(st);
                let meta = reader.meta(&lease);
                return Ok(Frame {
                    sub: self,
                    lease,
                    meta,
                });
            }
            if finished {
                self.gone.set(true);
                return Err(RecvError::Disconnected);
            }
            self.service_socket()?;
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout(timeout));
            }
            // Slices bound how late a dead publisher (socket EOF) is noticed.
            futex::wait(
                reader.words().wake(),
                wake,
                (deadline - now).min(Duration::from_millis(10)),
            );
        }
    }

    /// Handles whatever the publisher sent (PING, GOODBYE, STREAM_CHANGED, EOF).
    pub(super) fn service_socket(&self) -> Result<(), RecvError> {
        let mut chan = self.chan.borrow_mut();
        loop {
            let raw = match chan.recv(Some(Duration::ZERO)) {
                Ok(Some(raw)) => raw,
                Ok(None) => return Ok(()),
                Err(_) => {
                    // EOF, reset or garbage: the publisher is gone for us.
                    self.gone.set(true);
                    return Ok(());
                }
            };
            let Ok(Some(d)) = decode(&raw) else {
                self.gone.set(true);
                return Ok(());
            };
            let mut hs = self.hs.borrow_mut();
            match hs.handle(d.message) {
                Ok(SubscriberEvent::Goodbye(_)) | Ok(SubscriberEvent::Rejected(_)) => {
                    self.gone.set(true)
                }
                Ok(SubscriberEvent::StreamChanged(g)) => return Err(RecvError::StreamChanged(g)),
                Ok(_) => {}
                Err(e) => return Err(RecvError::Protocol(e.to_string())),
            }
            while let Some(o) = hs.poll_transmit() {
                let _ = chan.send(&o.message(), &[]);
            }
        }
    }

    /// The packet ring state, when subscribed to packets.
    pub(super) fn packet_state(&self) -> Option<&super::packets::PacketState> {
        self.packets.as_ref()
    }

    /// Whether the publisher is known gone (socket EOF, GOODBYE, ERROR).
    pub(super) fn publisher_gone(&self) -> bool {
        self.gone.get()
    }

    fn release(&self, slot: &B::Imported, lease: &Lease) -> bool {
        self.backend.before_release(slot);
        self.leases.release(lease)
    }
}

impl<B: Backend> Drop for Subscriber<B> {
    fn drop(&mut self) {
        let mut hs = self.hs.borrow_mut();
        hs.close();
        let chan = self.chan.borrow();
        while let Some(o) = hs.poll_transmit() {
            let _ = chan.send(&o.message(), &[]);
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

/// A leased frame; dropping it releases the lease.
pub struct Frame<'a, B: Backend = HostBackend> {
    sub: &'a Subscriber<B>,
    lease: Lease,
    meta: FrameMeta,
}

impl<'a, B: Backend> Frame<'a, B> {
    /// Sequence number, timestamps, flags, source index.
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// Frames skipped or lost between the previous frame and this one.
    pub fn skipped(&self) -> u64 {
        self.lease.skipped
    }

    /// Plane layout of the frame.
    pub fn stream(&self) -> &'a StreamDesc {
        &self.sub.stream
    }

    /// The slot memory the frame lives in.
    pub fn memory(&self) -> &'a B::Imported {
        &self.sub.slots[self.lease.slot as usize]
    }

    /// Whether the frame is still in its slot: `false` only after the publisher
    /// revoked the lease (held past `lease_timeout`); data read since may be torn.
    pub fn is_valid(&self) -> bool {
        self.sub.reader().still_valid(&self.lease)
    }

    /// Releases now; returns [`Frame::is_valid`] as of the release.
    pub fn release(self) -> bool {
        let me = std::mem::ManuallyDrop::new(self);
        me.sub.release(me.memory(), &me.lease)
    }

    /// Ends the guard but keeps the lease: the returned [`PendingRelease`]
    /// returns it later, from any thread (e.g. a CUDA host callback once the
    /// consumer's stream is done with the frame). Skips the backend's
    /// release-time synchronisation: the caller takes that on.
    pub fn release_later(self) -> PendingRelease {
        let me = std::mem::ManuallyDrop::new(self);
        PendingRelease {
            state: Arc::clone(&me.sub.leases),
            lease: me.lease,
            done: false,
        }
    }
}

impl<'a> Frame<'a, HostBackend> {
    /// Plane `i` (0: Y, 1: CbCr) as `(bytes from its first row, pitch)`.
    /// `None` for a plane the format does not have.
    pub fn plane(&self, i: usize) -> Option<(&'a [u8], usize)> {
        let s = self.stream();
        let (row, rows) = s
            .format()
            .plane_extent(i as u32, s.width as u32, s.height as u32)?;
        let start = *s.plane_offset.get(i)? as usize;
        let pitch = *s.plane_pitch.get(i)? as usize;
        let len = pitch * (rows as usize - 1) + row as usize;
        self.memory()
            .bytes()
            .get(start..start + len)
            .map(|b| (b, pitch))
    }

    /// Calls `f` with each row of each plane, without pitch padding: the
    /// bytes of FFmpeg's packed rawvideo layout, in order.
    pub fn for_each_row(&self, mut f: impl FnMut(&[u8])) {
        let s = self.stream();
        for i in 0..2 {
            let Some((row, rows)) = s.format().plane_extent(i, s.width as u32, s.height as u32)
            else {
                continue;
            };
            let Some((bytes, pitch)) = self.plane(i as usize) else {
                continue;
            };
            for r in 0..rows as usize {
                f(&bytes[r * pitch..r * pitch + row as usize]);
            }
        }
    }
}

impl<B: Backend> Drop for Frame<'_, B> {
    fn drop(&mut self) {
        self.sub.release(self.memory(), &self.lease);
    }
}
