//! The suite's own publisher: built from core's protocol pieces (ring writer,
//! handshake machine, wire codec, memfds) so that it owns every lease row it
//! serves and can observe them, send what a scenario asks for (PING,
//! STREAM_CHANGED, a faulty WELCOME, an ERROR), and end the stream cleanly or
//! as a crash. `check-subscriber` serves the subscriber under test with it.
//!
//! [`Faults`] turn it into a deliberately broken publisher, which the tests
//! use to show that `check-publisher` catches each fault by a named case.
//!
//! Frames are synthetic, host memory, NV12: every byte of the frame of
//! sequence number `s` is `s mod 251`, except the first 8 bytes of plane 0,
//! which hold `s` as a little-endian u64.

use cuframes_core::handshake::{PublisherEvent, PublisherHandshake};
use cuframes_core::layout::{
    ControlLayout, FrameLayout, StreamDesc, FLAG_KEY, LEASES_PER_ROW, LEASE_MAGIC,
    LEASE_REGION_SIZE,
};
use cuframes_core::ring::{Claim, ControlWords, FrameMeta, LeaseWords, ReaderRef, RingWriter};
use cuframes_core::runtime::channel::{Channel, ChannelError};
use cuframes_core::runtime::shm::{self, Access, Mapping, ShmError};
use cuframes_core::runtime::PublisherConfig;
use cuframes_core::runtime::{clock, futex};
use cuframes_core::runtime::{Api, Exporter, LeaseClock, SlotExport};
use cuframes_core::sync::Ordering;
use cuframes_core::wire::{
    decode, ErrorCode, GoodbyeReason, Hello, Message, Welcome, HELLO_WANTS_FRAMES,
};
use cuframes_core::{Codec, MemoryKind, PixelFormat, SyncKind, Version, PROTOCOL_VERSION};
use cuframes_cuda::{CudaBackend, CudaSlot, RawStream};
use cuframes_vulkan::{VulkanBackend, VulkanSlot};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Deliberate protocol violations, for showing that the suite catches them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Claim slots without looking at lease rows (breaks §5.2).
    pub ignore_leases: bool,
    /// Answer a version mismatch with `ERROR BadMessage` (breaks §7, §4.4).
    pub wrong_error_code: bool,
    /// Keep honouring the lease row of a subscriber whose socket closed
    /// (breaks §5.6).
    pub no_reclaim: bool,
    /// Time lease values the way this implementation did before issue 12:
    /// remember the first-seen time of at most 64 values per row, evicting
    /// the oldest, so fresh meaningless values restart real pins' timers
    /// (breaks §5.2 *Revocation*).
    pub forget_leases: bool,
    /// Never close a connection that does not send HELLO (breaks §6).
    pub no_handshake_deadline: bool,
    /// Keep fds that arrive after HELLO or with messages that take none,
    /// closing only past 256 queued (breaks §4.1).
    pub keep_stray_fds: bool,
}

/// The pre-issue-12 lease timer, for [`Faults::forget_leases`].
#[derive(Debug, Default)]
struct ForgetfulClock {
    first_seen: Vec<(u64, Instant)>,
    revoked_values: Vec<u64>,
    revoked: [u64; LEASES_PER_ROW],
}

impl ForgetfulClock {
    fn scan(&mut self, leases: &[u64; LEASES_PER_ROW], now: Instant, timeout: Duration) {
        for (i, &v) in leases.iter().enumerate() {
            if v == 0 || v == self.revoked[i] {
                continue;
            }
            if self.revoked_values.contains(&v) {
                self.revoked[i] = v;
                continue;
            }
            let first = match self.first_seen.iter().find(|(s, _)| *s == v) {
                Some(&(_, t)) => t,
                None => {
                    if self.first_seen.len() == 64 {
                        self.first_seen.remove(0);
                    }
                    self.first_seen.push((v, now));
                    now
                }
            };
            if now.duration_since(first) > timeout {
                self.revoked[i] = v;
                if self.revoked_values.len() == 64 {
                    self.revoked_values.remove(0);
                }
                self.revoked_values.push(v);
            }
        }
    }
}

/// How the harness answers an acceptable HELLO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WelcomeStyle {
    /// A correct WELCOME.
    #[default]
    Normal,
    /// WELCOME naming version 2.0, outside any 1.x offer (fails W1).
    VersionOutsideOffer,
    /// WELCOME with `slot_count` 1 (fails W2).
    OneSlot,
    /// WELCOME whose `control_size` is one page too large (fails W6/W7).
    WrongControlSize,
    /// WELCOME whose control region fd is an unsealed copy (fails W7).
    UnsealedControl,
    /// WELCOME whose slot fds are the control region's fd, of the wrong
    /// size (fails W10).
    WrongSlotFds,
    /// `ERROR VersionMismatch` instead of WELCOME.
    RefuseVersion,
}

/// Harness settings.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// Stream key.
    pub key: String,
    /// Runtime directory holding `<key>.sock`.
    pub runtime_dir: PathBuf,
    /// Frame slots (2..=64).
    pub slots: u32,
    /// Frame geometry.
    pub width: u32,
    /// Frame geometry.
    pub height: u32,
    /// How acceptable HELLOs are answered.
    pub welcome: WelcomeStyle,
    /// Deliberate faults.
    pub faults: Faults,
    /// Send an unknown message type right before each WELCOME (§4.1).
    pub unknown_before_welcome: bool,
    /// Where the slots live.
    pub memory: HarnessMemory,
    /// Leases pinning a frame longer than this are revoked (§5.2; default 5 s).
    pub lease_timeout: Duration,
    /// Connections without HELLO this long are closed (§6; default 3 s).
    pub handshake_timeout: Duration,
    /// Listen on the socket as this uid (`SO_PEERCRED` then reports it to
    /// subscribers, §2.1): the socket is bound as the harness's own user,
    /// then `listen(2)` runs on a helper thread whose effective uid is this
    /// one. Needs root; `None` (default): the harness's own uid.
    pub listen_as_uid: Option<u32>,
}

impl HarnessConfig {
    /// Defaults: 8 slots of 64×32 NV12, correct behaviour.
    pub fn new(key: &str, runtime_dir: &Path) -> Self {
        HarnessConfig {
            key: key.to_owned(),
            runtime_dir: runtime_dir.to_owned(),
            slots: 8,
            width: 64,
            height: 32,
            welcome: WelcomeStyle::Normal,
            faults: Faults::default(),
            unknown_before_welcome: false,
            memory: HarnessMemory::Host,
            lease_timeout: PublisherConfig::DEFAULT_LEASE_TIMEOUT,
            handshake_timeout: PublisherConfig::DEFAULT_HANDSHAKE_TIMEOUT,
            listen_as_uid: None,
        }
    }
}

/// Starting the harness failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Socket or directory trouble.
    #[error("socket {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Memfd trouble.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// Bad geometry.
    #[error("bad harness geometry")]
    Geometry,
    /// The CUDA backend failed (no driver, no GPU, allocation).
    #[error("CUDA: {0}")]
    Cuda(#[from] cuframes_cuda::CudaError),
    /// The Vulkan backend failed (no loader, no device, allocation).
    #[error("Vulkan: {0}")]
    Vulkan(#[from] cuframes_vulkan::VulkanError),
}

/// Where the harness keeps its slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HarnessMemory {
    /// Host memfds (`HostMemfd`, `HostFence`).
    #[default]
    Host,
    /// VRAM of CUDA device 0 through `cuframes-cuda` (`CudaVmmFd` or
    /// `CudaLegacyIpc`, `HostFence` or `IpcEvent`, as configured).
    Cuda(cuframes_cuda::CudaConfig),
    /// Vulkan device memory through `cuframes-vulkan` (`VulkanOpaqueFd`,
    /// `HostFence` or `VulkanTimeline`, as configured), on the most capable
    /// device (lavapipe where there is no GPU).
    Vulkan(cuframes_vulkan::VulkanConfig),
}

/// The slot allocations.
enum Slots {
    Host(Vec<(OwnedFd, Mapping)>),
    Cuda {
        backend: CudaBackend,
        slots: Vec<CudaSlot>,
        exports: Vec<SlotExport>,
        handles: Vec<u8>,
        handle_len: u32,
    },
    Vulkan {
        backend: VulkanBackend,
        slots: Vec<VulkanSlot>,
        exports: Vec<SlotExport>,
    },
}

impl Slots {
    fn new(memory: HarnessMemory, n: u32, slot_size: u64) -> Result<Self, HarnessError> {
        match memory {
            HarnessMemory::Host => {
                let len = slot_size.max(1).div_ceil(4096) * 4096;
                let mut v = Vec::new();
                for i in 0..n {
                    v.push(shm::create_shared(&format!("cuframes-slot-{i}"), len)?);
                }
                Ok(Slots::Host(v))
            }
            HarnessMemory::Cuda(cfg) => {
                let backend = CudaBackend::publisher(cfg)?;
                let mut slots = Vec::new();
                let mut exports = Vec::new();
                for i in 0..n {
                    let s = backend.allocate(i, slot_size)?;
                    exports.push(backend.export(&s)?);
                    slots.push(s);
                }
                let handle_len = exports.first().map_or(0, |e| e.handle.len()) as u32;
                let handles = exports.iter().flat_map(|e| e.handle.clone()).collect();
                Ok(Slots::Cuda {
                    backend,
                    slots,
                    exports,
                    handles,
                    handle_len,
                })
            }
            HarnessMemory::Vulkan(cfg) => {
                let backend = VulkanBackend::publisher(cfg)?;
                let mut slots = Vec::new();
                let mut exports = Vec::new();
                for i in 0..n {
                    let s = backend.allocate(i, slot_size)?;
                    exports.push(backend.export(&s)?);
                    slots.push(s);
                }
                Ok(Slots::Vulkan {
                    backend,
                    slots,
                    exports,
                })
            }
        }
    }

    fn kinds(&self) -> (MemoryKind, SyncKind, [u8; 16]) {
        match self {
            Slots::Host(_) => (MemoryKind::HostMemfd, SyncKind::HostFence, [0; 16]),
            Slots::Cuda { backend, .. } => (
                backend.memory_kind(),
                backend.sync_kind(),
                backend.gpu_uuid(),
            ),
            Slots::Vulkan { backend, .. } => (
                backend.memory_kind(),
                backend.sync_kind(),
                backend.gpu_uuid(),
            ),
        }
    }

    fn handles(&self) -> (u32, &[u8]) {
        match self {
            Slots::Host(_) | Slots::Vulkan { .. } => (0, &[]),
            Slots::Cuda {
                handles,
                handle_len,
                ..
            } => (*handle_len, handles),
        }
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        match self {
            Slots::Host(v) => v.iter().map(|(f, _)| f.as_fd()).collect(),
            Slots::Cuda { exports, .. } | Slots::Vulkan { exports, .. } => exports
                .iter()
                .flat_map(|e| [e.fd.as_ref(), e.sync_fd.as_ref()])
                .flatten()
                .map(|f| f.as_fd())
                .collect(),
        }
    }

    /// Writes the synthetic frame `seq` into slot `i` and fences it.
    fn write(&mut self, i: u32, stream: &StreamDesc, seq: u64) -> Result<(), HarnessError> {
        let layout = stream
            .validate(stream.frame_size)
            .map_err(|_| HarnessError::Geometry)?;
        let n = layout.frame_size() as usize;
        let plane = |frame, p| host_plane(&layout, frame, p);
        match self {
            Slots::Host(v) => {
                let bytes = v
                    .get_mut(i as usize)
                    .and_then(|(_, m)| m.bytes_mut())
                    .ok_or(HarnessError::Geometry)?;
                let n = n.min(bytes.len());
                bytes[..n].fill((seq % 251) as u8);
                bytes[..8].copy_from_slice(&seq.to_le_bytes());
            }
            Slots::Cuda { slots, .. } => {
                let slot = slots.get_mut(i as usize).ok_or(HarnessError::Geometry)?;
                let mut frame = vec![(seq % 251) as u8; n];
                frame[..8].copy_from_slice(&seq.to_le_bytes());
                for p in 0..layout.planes().len() {
                    let (src, pitch) = plane(&frame, p).ok_or(HarnessError::Geometry)?;
                    slot.copy_plane_from_host(stream, p, src, pitch)?;
                }
                slot.fence(RawStream::DEFAULT)?;
            }
            Slots::Vulkan { slots, .. } => {
                let slot = slots.get_mut(i as usize).ok_or(HarnessError::Geometry)?;
                let mut frame = vec![(seq % 251) as u8; n];
                frame[..8].copy_from_slice(&seq.to_le_bytes());
                let planes: Vec<(&[u8], usize)> = (0..layout.planes().len())
                    .map(|p| plane(&frame, p).ok_or(HarnessError::Geometry))
                    .collect::<Result<_, _>>()?;
                // `VulkanTimeline`: the value to signal is the frame's seq.
                <VulkanBackend as Exporter>::claimed(slot, seq);
                slot.write_from_host(stream, &planes)?;
            }
        }
        Ok(())
    }
}

/// Plane `p` of `frame`, a host copy of a slot laid out by `layout`: its
/// bytes from the first row on, and its pitch.
fn host_plane<'f>(layout: &FrameLayout, frame: &'f [u8], p: usize) -> Option<(&'f [u8], usize)> {
    let pl = layout.plane(p)?;
    Some((frame.get(pl.offset() as usize..)?, pl.pitch() as usize))
}

/// What the harness saw of one subscriber's HELLO.
#[derive(Debug, Clone)]
pub struct HelloSeen {
    /// The decoded HELLO.
    pub hello: Hello,
    /// Why the lease row was refused (`None`: accepted).
    pub row_error: Option<String>,
    /// `start_seq` sent in WELCOME.
    pub start_seq: u64,
    /// When it arrived.
    pub at: Instant,
    /// The row's first 16 words when HELLO arrived (before WELCOME).
    pub initial_row: [u64; 16],
}

/// One connection.
pub struct Conn {
    chan: Channel,
    hs: PublisherHandshake,
    /// Publisher-assigned id.
    pub id: u32,
    /// The lease row, once HELLO was accepted.
    pub row: Option<Mapping>,
    /// The HELLO, once received.
    pub hello: Option<HelloSeen>,
    /// Every message type received, in order, with its time.
    pub received: Vec<(u32, Instant, Option<u64>)>,
    /// Why the connection ended, once it did.
    pub closed: Option<(String, Instant)>,
    /// When it was accepted.
    accepted: Instant,
    /// Revocation timers of its row (§5.2).
    clock: LeaseClock,
    forgetful: ForgetfulClock,
    /// Per entry: the revoked frame it holds (0: none).
    revoked: [u64; LEASES_PER_ROW],
}

/// The harness publisher.
pub struct Harness {
    cfg: HarnessConfig,
    layout: ControlLayout,
    socket: PathBuf,
    listener: Option<UnixListener>,
    control_fd: OwnedFd,
    control: Mapping,
    slots: Slots,
    stream: StreamDesc,
    /// Connections, open and closed.
    pub conns: Vec<Conn>,
    /// Rows of closed connections kept by the `no_reclaim` fault.
    zombie_rows: Vec<Mapping>,
    next_id: u32,
    /// An unsealed memfd holding a copy of the control region, for
    /// [`WelcomeStyle::UnsealedControl`].
    unsealed: Option<OwnedFd>,
    source_index: u64,
    dropped: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HarnessError + '_ {
    move |source| HarnessError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Binds `path`, then calls `listen(2)` with the effective uid `uid` on a
/// helper thread (Linux credentials are per thread; the kernel records the
/// listener's credentials at `listen`, and `SO_PEERCRED` reports them to
/// whoever connects). The thread switches back before it ends.
fn listen_as(path: &Path, uid: u32) -> std::io::Result<UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let path = path.to_owned();
    std::thread::spawn(move || -> std::io::Result<UnixListener> {
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
        rustix::net::bind(&fd, &SocketAddrUnix::new(&path)?)?;
        rustix::thread::set_thread_res_uid(None, rustix::process::Uid::from_raw(uid), None)?;
        let listened = rustix::net::listen(&fd, 64);
        let back = rustix::thread::set_thread_res_uid(None, rustix::process::Uid::ROOT, None);
        listened?;
        back?;
        Ok(UnixListener::from(fd))
    })
    .join()
    .map_err(|_| std::io::Error::other("the listen_as thread panicked"))?
}

impl Harness {
    /// Binds `<runtime dir>/<key>.sock` (replacing a stale file) and builds
    /// the ring.
    pub fn start(cfg: HarnessConfig) -> Result<Self, HarnessError> {
        let layout = ControlLayout::new(cfg.slots).ok_or(HarnessError::Geometry)?;
        let stream = StreamDesc::packed(cfg.width, cfg.height, PixelFormat::Nv12, Codec::H264)
            .map_err(|_| HarnessError::Geometry)?;
        std::fs::create_dir_all(&cfg.runtime_dir).map_err(io(&cfg.runtime_dir))?;
        let socket = cfg.runtime_dir.join(format!("{}.sock", cfg.key));
        let _ = std::fs::remove_file(&socket);
        let listener = match cfg.listen_as_uid {
            None => UnixListener::bind(&socket).map_err(io(&socket))?,
            Some(uid) => listen_as(&socket, uid).map_err(io(&socket))?,
        };
        listener.set_nonblocking(true).map_err(io(&socket))?;
        let (control_fd, control) =
            shm::create_shared(&format!("cuframes-{}", cfg.key), layout.region_size())?;
        let slots = Slots::new(cfg.memory, cfg.slots, stream.frame_size)?;
        let (memory_kind, sync_kind, gpu_uuid) = slots.kinds();
        let h = Harness {
            cfg,
            layout,
            socket,
            listener: Some(listener),
            control_fd,
            control,
            slots,
            stream,
            conns: Vec::new(),
            zombie_rows: Vec::new(),
            next_id: 1,
            unsealed: None,
            source_index: 0,
            dropped: 0,
        };
        let header = layout.header(stream.frame_size, memory_kind, sync_kind, gpu_uuid);
        h.writer()?.init(&header, &stream);
        let mut h = h;
        if h.cfg.welcome == WelcomeStyle::UnsealedControl {
            h.unsealed = Some(h.unsealed_copy().map_err(|e| HarnessError::Io {
                path: PathBuf::from("memfd"),
                source: e.into(),
            })?);
        }
        Ok(h)
    }

    fn words(&self) -> Result<ControlWords<'_>, HarnessError> {
        let wake = self
            .control
            .u32_at(cuframes_core::layout::header::WAKE_OFFSET)
            .ok_or(HarnessError::Geometry)?;
        let rwake = self
            .control
            .u32_at(cuframes_core::layout::header::RELEASE_WAKE_OFFSET)
            .ok_or(HarnessError::Geometry)?;
        ControlWords::new(self.control.words(), wake, rwake, self.layout)
            .map_err(|_| HarnessError::Geometry)
    }

    fn writer(&self) -> Result<RingWriter<'_>, HarnessError> {
        Ok(RingWriter::new(self.words()?))
    }

    /// An unsealed memfd with the control region's bytes (as they are now).
    fn unsealed_copy(&self) -> Result<OwnedFd, rustix::io::Errno> {
        let fd = rustix::fs::memfd_create("cuframes-unsealed", rustix::fs::MemfdFlags::CLOEXEC)?;
        let mut bytes = Vec::with_capacity(self.control.len());
        for w in self.control.words() {
            bytes.extend_from_slice(&w.load(Ordering::SeqCst).to_le_bytes());
        }
        rustix::fs::ftruncate(&fd, bytes.len() as u64)?;
        let mut off = 0;
        while off < bytes.len() {
            off += rustix::io::pwrite(&fd, &bytes[off..], off as u64)?;
        }
        Ok(fd)
    }

    /// The stream description served.
    pub fn stream(&self) -> &StreamDesc {
        &self.stream
    }

    /// Frame slots.
    pub fn slot_count(&self) -> u32 {
        self.layout.slot_count
    }

    /// Newest committed sequence number.
    pub fn latest_seq(&self) -> u64 {
        self.words().map_or(0, |w| w.latest_seq())
    }

    /// Frames dropped because every slot was leased.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Accepts connections and handles every message that has arrived.
    pub fn pump(&mut self) {
        if let Some(l) = &self.listener {
            while let Ok((stream, _)) = l.accept() {
                let _ = stream.set_nonblocking(true);
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                self.conns.push(Conn {
                    chan: Channel::new(stream),
                    hs: PublisherHandshake::new(PROTOCOL_VERSION),
                    id,
                    row: None,
                    hello: None,
                    received: Vec::new(),
                    closed: None,
                    accepted: Instant::now(),
                    clock: LeaseClock::new(),
                    forgetful: ForgetfulClock::default(),
                    revoked: [0; LEASES_PER_ROW],
                });
            }
        }
        for i in 0..self.conns.len() {
            if self.conns[i].closed.is_none() {
                self.service(i);
            }
            let c = &self.conns[i];
            if c.closed.is_none()
                && c.hello.is_none()
                && !self.cfg.faults.no_handshake_deadline
                && c.accepted.elapsed() > self.cfg.handshake_timeout
            {
                self.close_conn(i, "no HELLO within the handshake deadline".into());
            }
        }
    }

    fn close_conn(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        c.closed = Some((why, Instant::now()));
        if let Some(row) = c.row.take() {
            if self.cfg.faults.no_reclaim {
                self.zombie_rows.push(row);
            }
        }
        // Drop the socket: replace the channel by a closed one is not
        // possible, so shut it down.
        let _ = rustix::net::shutdown(c.chan.fd(), rustix::net::Shutdown::Both);
        if let Ok(w) = self.words() {
            w.release_wake().fetch_add(1, Ordering::SeqCst);
            futex::wake_all(w.release_wake());
        }
    }

    fn service(&mut self, i: usize) {
        loop {
            let raw = match self.conns[i].chan.recv(Some(Duration::ZERO)) {
                Ok(Some(raw)) => raw,
                Ok(None) => return,
                Err(ChannelError::Closed) => return self.close_conn(i, "socket closed".into()),
                Err(e) => {
                    let c = &mut self.conns[i];
                    c.hs.reject(ErrorCode::BadMessage, format_args!("{e}"));
                    flush(c);
                    return self.close_conn(i, format!("malformed: {e}"));
                }
            };
            let Ok(Some(d)) = decode(&raw) else {
                return self.close_conn(i, "undecodable".into());
            };
            let nonce = match d.message {
                Message::Ping(n) | Message::Pong(n) => Some(n),
                Message::Goodbye(r) => Some(u64::from(r.code())),
                _ => None,
            };
            self.conns[i]
                .received
                .push((d.message.kind().code(), Instant::now(), nonce));
            let hello = matches!(d.message, Message::Hello(_));
            let ev = self.conns[i].hs.handle(d.message);
            if !self.cfg.faults.keep_stray_fds {
                let c = &mut self.conns[i];
                if c.hello.is_some() && !hello {
                    c.chan.refuse_fds();
                } else if !hello {
                    c.chan.close_stray_fds();
                }
            }
            if self.cfg.faults.wrong_error_code && matches!(ev, Ok(PublisherEvent::Refused)) {
                let c = &mut self.conns[i];
                while c.hs.poll_transmit().is_some() {}
                c.hs.reject(ErrorCode::BadMessage, format_args!("refused"));
            }
            let keep = match ev {
                Ok(PublisherEvent::Accepted { hello, version }) => self.accept(i, hello, version),
                Ok(PublisherEvent::Goodbye(_)) | Ok(PublisherEvent::Refused) | Err(_) => false,
                Ok(_) => true,
            };
            let sent = flush(&mut self.conns[i]);
            if !keep || !sent {
                let why = match ev {
                    Ok(PublisherEvent::Goodbye(r)) => format!("GOODBYE {r:?}"),
                    Ok(PublisherEvent::Refused) => "refused".into(),
                    Err(e) => format!("protocol error: {e}"),
                    _ => "closed".into(),
                };
                return self.close_conn(i, why);
            }
        }
    }

    fn accept(&mut self, i: usize, hello: Hello, version: Version) -> bool {
        let start_seq = self.latest_seq();
        let mut seen = HelloSeen {
            hello,
            row_error: None,
            start_seq,
            at: Instant::now(),
            initial_row: [0; 16],
        };
        let c = &mut self.conns[i];
        if hello.flags & HELLO_WANTS_FRAMES == 0 {
            c.hello = Some(seen);
            c.hs.reject(
                ErrorCode::Unsupported,
                format_args!("this publisher has no packet ring"),
            );
            return false;
        }
        let row = c
            .chan
            .take_fds(1)
            .map_err(|e| e.to_string())
            .and_then(|mut f| {
                let fd = f.remove(0);
                shm::check_received(fd.as_fd(), LEASE_REGION_SIZE)
                    .and_then(|()| {
                        Mapping::map(fd.as_fd(), LEASE_REGION_SIZE as usize, Access::ReadOnly)
                    })
                    .map_err(|e| e.to_string())
            })
            .and_then(|m| {
                if m.words()[crate::word::ROW_MAGIC].load(Ordering::SeqCst) == LEASE_MAGIC {
                    Ok(m)
                } else {
                    Err("lease row does not start with CUFLEASE".into())
                }
            });
        c.chan.discard_fds();
        let row = match row {
            Ok(r) => {
                for (i, v) in seen.initial_row.iter_mut().enumerate() {
                    *v = r.words()[i].load(Ordering::SeqCst);
                }
                r
            }
            Err(e) => {
                seen.row_error = Some(e.clone());
                c.hello = Some(seen);
                c.hs.reject(ErrorCode::BadMessage, format_args!("lease row: {e}"));
                return false;
            }
        };
        c.hello = Some(seen);
        if self.cfg.unknown_before_welcome {
            let _ = c.chan.send(
                &Message::Unknown {
                    kind: 0x4B4E_4F57,
                    payload: b"unknown type",
                },
                &[],
            );
        }
        let (memory_kind, sync_kind, _) = self.slots.kinds();
        let (handle_len, handles) = self.slots.handles();
        let mut w = Welcome {
            version,
            subscriber_id: c.id,
            memory_kind,
            sync_kind,
            slot_count: self.layout.slot_count,
            flags: 0,
            control_size: self.layout.region_size(),
            slot_size: self.stream.frame_size,
            start_seq,
            handle_len,
            handles,
            packet_region_size: 0,
        };
        match self.cfg.welcome {
            WelcomeStyle::Normal => {}
            WelcomeStyle::VersionOutsideOffer => w.version = Version { major: 2, minor: 0 },
            WelcomeStyle::OneSlot => w.slot_count = 1,
            WelcomeStyle::WrongControlSize => w.control_size += 4096,
            WelcomeStyle::UnsealedControl | WelcomeStyle::WrongSlotFds => {}
            WelcomeStyle::RefuseVersion => {
                c.hs.reject(
                    ErrorCode::VersionMismatch,
                    format_args!("publisher speaks protocol 1.0, refusing on purpose"),
                );
                return false;
            }
        }
        let mut fds = vec![self.control_fd.as_fd()];
        match self.cfg.welcome {
            WelcomeStyle::UnsealedControl => {
                if let Some(u) = &self.unsealed {
                    fds[0] = u.as_fd();
                }
                fds.extend(self.slots.fds());
            }
            WelcomeStyle::WrongSlotFds => {
                fds.extend(std::iter::repeat_n(
                    self.control_fd.as_fd(),
                    self.slots.fds().len(),
                ));
            }
            _ => fds.extend(self.slots.fds()),
        }
        c.row = Some(row);
        if c.chan.send(&Message::Welcome(w), &fds).is_err() {
            return false;
        }
        if let Ok(words) = self.words() {
            futex::wake_all(words.release_wake());
        }
        true
    }

    /// Sends `msg` to every established connection.
    pub fn broadcast(&mut self, msg: &Message<'_>) {
        for c in self
            .conns
            .iter()
            .filter(|c| c.closed.is_none() && c.row.is_some())
        {
            let _ = c.chan.send(msg, &[]);
        }
    }

    /// Publishes one synthetic frame; `Some(seq)` if committed, `None` if
    /// every slot was leased (counted as dropped).
    pub fn publish(&mut self) -> Option<u64> {
        self.expire_leases();
        let rows: Vec<(&Mapping, [u64; LEASES_PER_ROW])> = if self.cfg.faults.ignore_leases {
            Vec::new()
        } else {
            self.conns
                .iter()
                .filter_map(|c| c.row.as_ref().map(|r| (r, c.revoked)))
                .chain(self.zombie_rows.iter().map(|r| (r, [0; LEASES_PER_ROW])))
                .collect()
        };
        let readers: Vec<ReaderRef<'_>> = rows
            .iter()
            .filter_map(|(m, revoked)| {
                LeaseWords::new(m.words()).ok().map(|row| ReaderRef {
                    row,
                    unread_floor: None,
                    revoked: *revoked,
                })
            })
            .collect();
        let writer = self.writer().ok()?;
        let claim = match writer.claim(&readers, false) {
            Claim::Claimed(c) => c,
            Claim::Busy { .. } => {
                writer.count_drop();
                drop(readers);
                self.dropped += 1;
                return None;
            }
        };
        let seq = writer.next_seq();
        drop(readers);
        if self.slots.write(claim.slot, &self.stream, seq).is_err() {
            // A failed write may have changed the old frame's bytes (§5.4).
            if let Ok(w) = self.writer() {
                w.abandon(claim);
            }
            self.dropped += 1;
            return None;
        }
        let meta = FrameMeta {
            seq,
            pts_ns: Some(seq as i64 * 10_000_000),
            publish_ns: clock::monotonic_ns(),
            flags: FLAG_KEY,
            generation: self.stream.generation,
            source_index: self.source_index,
        };
        self.source_index += 1;
        let writer = self.writer().ok()?;
        let s = writer.commit(claim, &meta);
        futex::wake_all(writer.words().wake());
        Some(s)
    }

    /// Revokes leases held past `lease_timeout` (§5.2), with core's
    /// [`LeaseClock`] or, under [`Faults::forget_leases`], the old timer.
    fn expire_leases(&mut self) {
        let Ok(w) = self.words() else { return };
        let alive: Vec<u64> = (0..self.layout.slot_count)
            .map(|i| w.snapshot_slot(i).seq & !cuframes_core::layout::SEQ_WRITING)
            .filter(|&s| s != 0)
            .collect();
        let now = Instant::now();
        let timeout = self.cfg.lease_timeout;
        let forget = self.cfg.faults.forget_leases;
        for c in self.conns.iter_mut() {
            let Some(row) = c.row.as_ref().and_then(|m| LeaseWords::new(m.words()).ok()) else {
                continue;
            };
            let leases = row.snapshot().leases;
            c.revoked = if forget {
                c.forgetful.scan(&leases, now, timeout);
                c.forgetful.revoked
            } else {
                c.clock.scan(&leases, &alive, now, timeout).ignore
            };
        }
    }

    /// Clean shutdown (§5.6): `publisher_state := CLOSED`, wake, GOODBYE
    /// EndOfStream to every connection, close them, unlink the socket.
    pub fn finish(&mut self) {
        if let Ok(w) = self.writer() {
            w.close();
            futex::wake_all(w.words().wake());
        }
        self.broadcast(&Message::Goodbye(GoodbyeReason::EndOfStream));
        self.drop_all("publisher finished");
    }

    /// A crash: every connection closes without GOODBYE, the state stays LIVE.
    pub fn crash(&mut self) {
        self.drop_all("publisher crashed");
    }

    fn drop_all(&mut self, why: &str) {
        for i in 0..self.conns.len() {
            if self.conns[i].closed.is_none() {
                self.close_conn(i, why.into());
            }
        }
        self.listener = None;
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

fn flush(c: &mut Conn) -> bool {
    while let Some(o) = c.hs.poll_transmit() {
        if c.chan.send(&o.message(), &[]).is_err() {
            return false;
        }
    }
    true
}

/// A harness publishing `fps` frames per second on its own thread until
/// dropped; used as a publisher under test.
pub struct Running {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts `cfg` and publishes at `fps`.
    pub fn spawn(cfg: HarnessConfig, fps: u32) -> Result<Self, HarnessError> {
        let mut h = Harness::start(cfg)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let period = Duration::from_secs(1) / fps.max(1);
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s2.load(std::sync::atomic::Ordering::Acquire) {
                h.pump();
                if Instant::now() >= next {
                    h.publish();
                    next += period;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            h.finish();
        });
        Ok(Running {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
