//! Connecting, in two phases (`docs/protocol.md` §6, W1–W11).
//!
//! Phase one, [`Welcomed::handshake`]: connect to the key's socket, check
//! the publisher's uid (§2.1), send HELLO with a fresh lease-row memfd,
//! wait for WELCOME, map the control region read-only and validate it
//! (W1–W7), map the packet ring if there is one. What the publisher offers
//! is then known ([`Offer`]) and no slot is imported.
//!
//! Phase two, `Welcomed::import` (in `engine`, which builds the
//! [`Subscriber`](super::Subscriber)): the chosen backend accepts the memory
//! kind, attaches to the publisher's GPU and imports every slot (W8–W11).
//! A re-WELCOME after STREAM_CHANGED and a reconnect go through the same
//! checks ([`check_welcome`], [`import_ring`]).

use super::error::{ConnectError, EndReason};
use super::leases::{LeaseState, RowState};
use super::options::{PublisherUids, SubscribeOptions};
use super::packet_ring::PacketState;
use super::ring::{uuid_bytes, Ring};
use crate::handshake::{HandshakeError, SubscriberEvent, SubscriberHandshake};
use crate::layout::{ControlLayout, FrameLayout, LayoutError, StreamDesc, LEASE_REGION_SIZE};
use crate::ring::LeaseWords;
use crate::runtime::backend::{BackendFailure, Importer, Peer};
use crate::runtime::channel::{Channel, ChannelError};
use crate::runtime::clock;
use crate::runtime::dir;
use crate::runtime::peer::peer_cred;
use crate::runtime::shm::{self, control_words, Access, Mapping, ShmError};
use crate::wire::{
    decode, Hello, Message, Name, Welcome, WireError, HELLO_WANTS_FRAMES, HELLO_WANTS_PACKETS,
    WELCOME_HAS_PACKETS,
};
use crate::{MemoryKind, SyncKind, PROTOCOL_VERSION};
use rustix::fd::{AsFd, OwnedFd};
use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::prelude::rust_2021::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a publisher offers, known after phase one of a connection
/// ([`Welcomed::offer`]): its WELCOME and its validated control header
/// (`docs/protocol.md` §4.2, §3.2). A backend is chosen from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Memory kind, sync kind, GPU UUID (zero for host memory), slot size
    /// (bytes) and slot count.
    pub peer: Peer,
    /// The stream: size (pixels), pixel format, plane offsets and pitches
    /// (bytes), colour description, generation.
    pub stream: StreamDesc,
    /// Whether the publisher has an encoded packet ring (`WELCOME_HAS_PACKETS`).
    pub packets: bool,
    /// The publisher-assigned id of this connection.
    pub subscriber_id: u32,
}

impl Offer {
    /// The memory kind the slots are shared as.
    pub fn memory_kind(&self) -> MemoryKind {
        self.peer.memory_kind
    }

    /// The sync kind of the slots.
    pub fn sync_kind(&self) -> SyncKind {
        self.peer.sync_kind
    }

    /// UUID of the GPU holding the slots (all zero for host memory).
    pub fn gpu_uuid(&self) -> [u8; 16] {
        self.peer.gpu_uuid
    }
}

/// One connection to a publisher, once its first ring is imported.
pub(super) struct Conn<B: Importer> {
    pub(super) chan: Channel,
    pub(super) hs: SubscriberHandshake,
    pub(super) id: u32,
    pub(super) row: Arc<RowState>,
    /// The ring frames are read from now.
    pub(super) ring: Arc<Ring<B>>,
    /// Rings announced by re-WELCOMEs, read once `ring` is closed and drained.
    pub(super) next: VecDeque<Arc<Ring<B>>>,
    pub(super) packets: Option<PacketState>,
    pub(super) end: Option<EndReason>,
    /// STREAM_CHANGED's generation while its WELCOME is awaited.
    pub(super) changing: Option<u64>,
}

/// How a WELCOME's ring meets the backend: attach it (first connection), or
/// check it against the attached peer (re-WELCOME, reconnect).
pub(super) enum Attach<'b, B> {
    First(&'b mut B),
    Again(&'b B, &'b Peer),
}

/// A ring checked from one WELCOME (W4–W7): the control region mapped and
/// validated, the slots' fds and handles received but not imported.
pub(super) struct Checked {
    control: Mapping,
    layout: ControlLayout,
    stream: StreamDesc,
    frame: FrameLayout,
    peer: Peer,
    /// Per slot (when frames are wanted): its memory fd and sync fd.
    slot_fds: Vec<(Option<OwnedFd>, Option<OwnedFd>)>,
    /// WELCOME's per-slot handles, `handle_len` bytes each.
    handles: Vec<u8>,
    handle_len: usize,
    /// The packet region's fd when `HAS_PACKETS`.
    pub(super) packet_fd: Option<OwnedFd>,
}

/// A ring imported from a [`Checked`] one, before the lease row is
/// (re)initialised.
pub(super) struct Imported<B: Importer> {
    pub(super) control: Mapping,
    pub(super) layout: ControlLayout,
    pub(super) stream: StreamDesc,
    pub(super) frame: FrameLayout,
    pub(super) slots: Vec<B::Imported>,
    pub(super) peer: Peer,
}

/// W4–W7 of `docs/protocol.md` §6 for `welcome` and the fds queued on
/// `chan`: takes the fds, maps and validates the control region. The one
/// check of connect, re-WELCOME and reconnect; no backend involved.
pub(super) fn check_welcome(
    chan: &mut Channel,
    welcome: &Welcome<'_>,
    frames: bool,
    packets: bool,
) -> Result<Checked, ConnectError> {
    let has_packets = welcome.flags & WELCOME_HAS_PACKETS != 0;
    if packets && !has_packets {
        return Err(ConnectError::NoPacketRing);
    }
    let per_slot = 1 + welcome.sync_kind.fds_per_slot() as usize;
    let slot_fds = if frames && welcome.memory_kind.uses_fds() {
        welcome.slot_count as usize * per_slot
    } else {
        0
    };
    let n_fds = 1 + slot_fds + usize::from(has_packets);
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
    // Checked by `ControlLayout::validate` already; this keeps the planes.
    let frame = stream
        .validate(welcome.slot_size)
        .map_err(LayoutError::Stream)?;
    let peer = Peer {
        memory_kind: welcome.memory_kind,
        sync_kind: welcome.sync_kind,
        gpu_uuid: uuid_bytes(header.gpu_uuid),
        slot_size: welcome.slot_size,
        slot_count: welcome.slot_count,
    };
    let mut slots = Vec::new();
    if slot_fds > 0 {
        for _ in 0..welcome.slot_count {
            let fd = fds.next();
            let sync = (per_slot == 2).then(|| fds.next()).flatten();
            slots.push((fd, sync));
        }
    }
    Ok(Checked {
        control,
        layout,
        stream,
        frame,
        peer,
        slot_fds: slots,
        handles: welcome.handles.to_vec(),
        handle_len: welcome.handle_len as usize,
        packet_fd: fds.next().filter(|_| has_packets),
    })
}

/// W8–W10: the backend accepts the memory kind, attaches to the peer (or
/// the peer is checked against the attached one) and imports each slot,
/// validating what it is given ([`Importer::import`]).
pub(super) fn import_ring<B: Importer>(
    checked: Checked,
    frames: bool,
    attach: Attach<'_, B>,
) -> Result<Imported<B>, ConnectError> {
    let Checked {
        control,
        layout,
        stream,
        frame,
        peer,
        slot_fds,
        handles,
        handle_len,
        packet_fd: _,
    } = checked;
    let backend: &B = match attach {
        Attach::First(b) => {
            accepts(b, peer.memory_kind)?;
            b.attach(&peer)
                .map_err(|e| ConnectError::Import(BackendFailure::of::<B>(e)))?;
            b
        }
        Attach::Again(b, first) => {
            accepts(b, peer.memory_kind)?;
            if first.memory_kind != peer.memory_kind || first.sync_kind != peer.sync_kind {
                return Err(ConnectError::PeerChanged("memory or sync kind"));
            }
            if first.gpu_uuid != peer.gpu_uuid {
                return Err(ConnectError::PeerChanged("GPU"));
            }
            b
        }
    };
    let count = if frames { peer.slot_count as usize } else { 0 };
    let mut fds = slot_fds.into_iter();
    let mut slots = Vec::with_capacity(count);
    for i in 0..count {
        let handle = handles
            .get(i * handle_len..(i + 1) * handle_len)
            .unwrap_or(&[]);
        let (fd, sync_fd) = fds.next().unwrap_or((None, None));
        // The backend validates what it is given (`Importer::import`).
        let imported = backend
            .import_slot(fd, sync_fd, handle, peer.slot_size)
            .map_err(|e| ConnectError::Import(BackendFailure::of::<B>(e)))?;
        slots.push(imported);
    }
    Ok(Imported {
        control,
        layout,
        stream,
        frame,
        slots,
        peer,
    })
}

/// The backend's refusal of `kind` as the error connect reports.
fn accepts<B: Importer>(b: &B, kind: MemoryKind) -> Result<(), ConnectError> {
    if b.accepts(kind) {
        Ok(())
    } else {
        Err(ConnectError::MemoryKind {
            theirs: kind,
            ours: b.memory_kind(),
        })
    }
}

/// Phase one of a connection: the publisher answered HELLO with a WELCOME
/// whose control region was mapped and validated; no slot is imported yet.
/// [`Welcomed::offer`] says what the publisher offers; `import` (with a
/// backend chosen from it) makes the [`Subscriber`](super::Subscriber).
/// Dropping it closes the connection (the publisher sees socket EOF).
///
/// ```no_run
/// use cuframes_core::runtime::{HostBackend, SubscribeOptions, Welcomed};
/// use cuframes_core::{DeliveryMode, MemoryKind};
///
/// let welcomed = Welcomed::handshake("cam1", SubscribeOptions::new(DeliveryMode::NewestOnly))?;
/// let offer = welcomed.offer();
/// println!("{}x{} in {:?}", offer.stream.width, offer.stream.height, offer.memory_kind());
/// if offer.memory_kind() == MemoryKind::HostMemfd {
///     let sub = welcomed.import(HostBackend)?;
///     println!("{} slots", sub.slot_count());
/// }
/// # Ok::<(), cuframes_core::runtime::ConnectError>(())
/// ```
pub struct Welcomed {
    pub(super) key: String,
    pub(super) opts: SubscribeOptions,
    pub(super) chan: Channel,
    pub(super) hs: SubscriberHandshake,
    pub(super) row: Mapping,
    pub(super) row_fd: OwnedFd,
    pub(super) checked: Checked,
    pub(super) packets: Option<PacketState>,
    pub(super) offer: Offer,
    pub(super) start_seq: u64,
}

impl core::fmt::Debug for Welcomed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Welcomed")
            .field("key", &self.key)
            .field("offer", &self.offer)
            .field("start_seq", &self.start_seq)
            .finish_non_exhaustive()
    }
}

impl Welcomed {
    /// Phase one of connecting to the publisher of `key`: connect, check its
    /// uid, HELLO, WELCOME, control region (W1–W7 of `docs/protocol.md` §6),
    /// waiting at most `opts.handshake_timeout` for the answer. HELLO names
    /// no preferred GPU.
    ///
    /// Errors: [`ConnectError::NothingWanted`], `Dir`, `NoPublisher`,
    /// `PublisherUid`, `PeerCred`, `Rejected`, `Protocol`, `Channel`,
    /// `Timeout`, `Layout`, `Shm`, `NoPacketRing`, `PacketLayout`.
    pub fn handshake(key: &str, opts: SubscribeOptions) -> Result<Welcomed, ConnectError> {
        let timeout = opts.handshake_timeout;
        Self::start(key, opts, timeout, [0; 16])
    }

    /// What the publisher offers.
    pub fn offer(&self) -> Offer {
        self.offer
    }

    /// The key connected to.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The options the connection was made with.
    pub fn options(&self) -> &SubscribeOptions {
        &self.opts
    }

    /// [`Welcomed::handshake`] with the handshake wait and HELLO's preferred
    /// GPU (`gpu_uuid`, zero for none) given.
    pub(super) fn start(
        key: &str,
        opts: SubscribeOptions,
        handshake_timeout: Duration,
        gpu_uuid: [u8; 16],
    ) -> Result<Welcomed, ConnectError> {
        if !opts.frames && !opts.packets {
            return Err(ConnectError::NothingWanted);
        }
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
        let words = LeaseWords::new(row.words()).map_err(|_| ShmError::Size {
            actual: 0,
            expected: LEASE_REGION_SIZE,
        })?;
        words.init(0);
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
        // A publisher that refuses at accept (access, capacity) sends ERROR
        // and closes, maybe before HELLO arrives: read its reason before
        // giving up.
        let mut sent = Ok(());
        while let Some(o) = hs.poll_transmit() {
            let fds = if opts.frames {
                &[row_fd.as_fd()][..]
            } else {
                &[]
            };
            sent = sent.and(chan.send(&o.message(), fds));
        }

        let deadline = clock::deadline_after(handshake_timeout);
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
            if !matches!(decode(&raw), Ok(Some(d)) if matches!(d.message, Message::Unknown { .. }))
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
        let mut checked = check_welcome(&mut chan, &welcome, opts.frames, opts.packets)?;
        let packets = match checked.packet_fd.take() {
            Some(fd) => Some(PacketState::open(fd, welcome.packet_region_size)?),
            None => None,
        };
        let offer = Offer {
            peer: checked.peer,
            stream: checked.stream,
            packets: welcome.flags & WELCOME_HAS_PACKETS != 0,
            subscriber_id: welcome.subscriber_id,
        };
        Ok(Welcomed {
            key: key.to_owned(),
            start_seq: welcome.start_seq,
            opts,
            chan,
            hs,
            row,
            row_fd,
            checked,
            packets,
            offer,
        })
    }

    /// Phase two, for any backend: imports the first ring (W8–W11) and
    /// returns the connection, the peer it was attached with and `start_seq`.
    pub(super) fn into_conn<B: Importer>(
        self,
        attach: Attach<'_, B>,
        revoked: &Arc<Mutex<u64>>,
    ) -> Result<(Conn<B>, Peer, u64), ConnectError> {
        let Welcomed {
            opts,
            chan,
            hs,
            row,
            row_fd,
            checked,
            packets,
            offer,
            start_seq,
            ..
        } = self;
        let im = import_ring(checked, opts.frames, attach)?;
        // W11: the row's consumed_seq starts at start_seq.
        if let Ok(w) = LeaseWords::new(row.words()) {
            w.init(start_seq);
        }
        let row = Arc::new(RowState::new(row, row_fd, opts.mode, Arc::clone(revoked)));
        let ring = Ring {
            leases: Arc::new(LeaseState::new(im.control, Arc::clone(&row), im.layout)),
            stream: im.stream,
            layout: im.frame,
            slots: im.slots,
            start_seq,
        };
        Ok((
            Conn {
                chan,
                hs,
                id: offer.subscriber_id,
                row,
                ring: Arc::new(ring),
                next: VecDeque::new(),
                packets,
                end: None,
                changing: None,
            },
            im.peer,
            start_seq,
        ))
    }
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
    let cred = peer_cred(stream).map_err(|source| ConnectError::PeerCred {
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
