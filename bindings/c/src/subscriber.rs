//! Subscribers, frames and packets behind the C handles (safe Rust; the
//! `ffi` module converts C arguments and results).
//!
//! A subscriber wraps `Subscriber<HostBackend>` or `Subscriber<CudaBackend>`
//! (chosen at create: `CUFRAMES_BACKEND_AUTO` tries host memory and switches
//! to CUDA when the publisher says its memory is CUDA, like
//! `cuframes-subscribe --backend auto`). Frames are `OwnedFrame`s: they hold
//! their ring generation themselves, so a frame handle may be released from
//! any thread and even after its subscriber was destroyed.

use crate::error::{packet_error, recv_error, Error, *};
use crate::types::*;
use cuframes_core::runtime::{
    Backend, CodecParams, ConnectError, EndReason, HostBackend, OwnedFrame, Packet, PublisherUids,
    Reconnect, SubscribeOptions, Subscriber, WaitStrategy,
};
use cuframes_core::{DeliveryMode, MemoryKind, PixelFormat};
use cuframes_cuda::{CudaBackend, CudaFrameExt, RawStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a call may wait, from a C `timeout_ms`: negative blocks until
/// something arrives, 0 does not block, positive waits that many ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until something arrives (or the stream ends).
    Forever,
    /// At most this long (zero: do not block).
    For(Duration),
}

impl Wait {
    /// From a C `timeout_ms`.
    pub fn from_ms(ms: i32) -> Wait {
        match u64::try_from(ms) {
            Ok(ms) => Wait::For(Duration::from_millis(ms)),
            Err(_) => Wait::Forever,
        }
    }

    fn is_zero(self) -> bool {
        self == Wait::For(Duration::ZERO)
    }

    /// The slice to wait in one call of the Rust API.
    fn slice(self) -> Duration {
        match self {
            Wait::Forever => Duration::from_secs(3600),
            Wait::For(d) => d,
        }
    }
}

/// Which backend a subscriber uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// Host memory, or CUDA for a CUDA publisher.
    Auto,
    /// Host memory only.
    Host,
    /// CUDA only.
    Cuda,
}

impl BackendChoice {
    /// From a C `cuframes_backend` value.
    pub fn from_c(v: i32) -> Result<Self, Error> {
        match v {
            x if x == cuframes_backend::CUFRAMES_BACKEND_AUTO as i32 => Ok(BackendChoice::Auto),
            x if x == cuframes_backend::CUFRAMES_BACKEND_HOST as i32 => Ok(BackendChoice::Host),
            x if x == cuframes_backend::CUFRAMES_BACKEND_CUDA as i32 => Ok(BackendChoice::Cuda),
            _ => Err(Error::arg(format!("backend {v} is not a cuframes_backend"))),
        }
    }
}

/// A subscriber's settings, converted from `cuframes_subscriber_options_t`.
#[derive(Debug, Clone)]
pub struct SubscribeConfig {
    /// Stream key.
    pub key: String,
    /// Options for the Rust subscriber.
    pub opts: SubscribeOptions,
    /// Backend.
    pub backend: BackendChoice,
    /// Legacy CUDA IPC opt-in.
    pub allow_legacy_ipc: bool,
    /// Retry while nobody publishes the key.
    pub wait_publisher: Duration,
}

/// What `cuframes_subscriber_options_init` fills in.
pub fn default_subscriber_options() -> cuframes_subscriber_options_t {
    cuframes_subscriber_options_t {
        struct_size: std::mem::size_of::<cuframes_subscriber_options_t>(),
        key: std::ptr::null(),
        consumer_name: std::ptr::null(),
        runtime_dir: std::ptr::null(),
        mode: cuframes_mode::CUFRAMES_MODE_NEWEST_ONLY as i32,
        backend: cuframes_backend::CUFRAMES_BACKEND_AUTO as i32,
        subscribe_flags: CUFRAMES_SUBSCRIBE_FRAMES,
        connect_timeout_ms: 5000,
        wait_publisher_ms: 0,
        reconnect: 0,
        reconnect_first_delay_ms: 50,
        reconnect_max_delay_ms: 500,
        reconnect_give_up_ms: -1,
        publisher_uids: std::ptr::null(),
        publisher_uid_count: 0,
        accept_any_publisher_uid: 0,
        allow_legacy_ipc: 0,
        wait_spin_us: WaitStrategy::default().spin.as_micros() as u32,
        wait_anticipate: u32::from(WaitStrategy::default().anticipate),
    }
}

impl SubscribeConfig {
    /// Checks and converts the C options; `key`, `name`, `runtime_dir` and
    /// `uids` are the strings and array the pointers named, already read.
    pub fn from_c(
        o: &cuframes_subscriber_options_t,
        key: String,
        name: Option<String>,
        runtime_dir: Option<PathBuf>,
        uids: Vec<u32>,
    ) -> Result<Self, Error> {
        let mode = match o.mode {
            x if x == cuframes_mode::CUFRAMES_MODE_NEWEST_ONLY as i32 => DeliveryMode::NewestOnly,
            x if x == cuframes_mode::CUFRAMES_MODE_IN_ORDER as i32 => DeliveryMode::InOrder,
            v => return Err(Error::arg(format!("mode {v} is not a cuframes_mode"))),
        };
        let mut opts = SubscribeOptions::new(mode);
        if let Some(n) = name {
            opts.name = n;
        }
        opts.runtime_dir = runtime_dir;
        opts.handshake_timeout = Duration::from_millis(u64::from(o.connect_timeout_ms.max(1)));
        if o.wait_spin_us > CUFRAMES_MAX_WAIT_SPIN_US {
            return Err(Error::arg(format!(
                "wait_spin_us {} is over {CUFRAMES_MAX_WAIT_SPIN_US} (1 s)",
                o.wait_spin_us
            )));
        }
        opts.wait = WaitStrategy {
            spin: Duration::from_micros(u64::from(o.wait_spin_us)),
            anticipate: o.wait_anticipate != 0,
        };
        if o.subscribe_flags & !(CUFRAMES_SUBSCRIBE_FRAMES | CUFRAMES_SUBSCRIBE_PACKETS) != 0 {
            return Err(Error::arg(format!(
                "subscribe_flags {:#x} has unknown bits",
                o.subscribe_flags
            )));
        }
        opts.frames = o.subscribe_flags & CUFRAMES_SUBSCRIBE_FRAMES != 0;
        opts.packets = o.subscribe_flags & CUFRAMES_SUBSCRIBE_PACKETS != 0;
        if !opts.frames && !opts.packets {
            return Err(Error::arg(
                "subscribe_flags asks for neither frames nor packets",
            ));
        }
        if o.reconnect != 0 {
            opts.reconnect = Some(Reconnect {
                first_delay: Duration::from_millis(u64::from(o.reconnect_first_delay_ms)),
                max_delay: Duration::from_millis(u64::from(o.reconnect_max_delay_ms)),
                give_up_after: u64::try_from(o.reconnect_give_up_ms)
                    .ok()
                    .map(Duration::from_millis),
            });
        }
        opts.publisher_uids = if o.accept_any_publisher_uid != 0 {
            PublisherUids::Any
        } else if uids.is_empty() {
            PublisherUids::SameUser
        } else {
            PublisherUids::Only(uids)
        };
        Ok(SubscribeConfig {
            key,
            opts,
            backend: BackendChoice::from_c(o.backend)?,
            allow_legacy_ipc: o.allow_legacy_ipc != 0,
            wait_publisher: Duration::from_millis(u64::from(o.wait_publisher_ms)),
        })
    }
}

/// The Rust subscriber of either backend.
pub enum AnySubscriber {
    /// Host memory.
    Host(Subscriber<HostBackend>),
    /// CUDA memory.
    Cuda(Subscriber<CudaBackend>),
}

/// A `cuframes_subscriber_t`.
pub struct SubscriberObj {
    sub: Mutex<AnySubscriber>,
    /// The codec parameters last returned by `get_codec_params` (their
    /// extradata pointer stays valid while they do not change).
    codec: Mutex<Option<CodecParams>>,
}

fn connect_with<B: Backend>(
    cfg: &SubscribeConfig,
    backend: impl Fn() -> Result<B, Error>,
) -> Result<Subscriber<B>, Error> {
    let deadline = Instant::now() + cfg.wait_publisher;
    loop {
        match Subscriber::connect(&cfg.key, backend()?, cfg.opts.clone()) {
            Err(ConnectError::NoPublisher { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.map_err(|e| no_ring(cfg, e)),
        }
    }
}

fn cuda_backend(cfg: &SubscribeConfig) -> Result<CudaBackend, Error> {
    let b = CudaBackend::subscriber()?;
    Ok(if cfg.allow_legacy_ipc {
        // SAFETY: the C caller set `allow_legacy_ipc`, whose documentation
        // (cuframes.h) states the obligation of `allow_legacy_ipc`'s
        // `# Safety`: it trusts every publisher this subscriber connects to
        // to send only real IPC handles of whole slots. The publisher's uid
        // is still checked (`publisher_uids`).
        #[allow(unsafe_code)]
        unsafe {
            b.allow_legacy_ipc()
        }
    } else {
        b
    })
}

/// A packets-only HELLO to a publisher without a packet ring is refused
/// with ERROR Unsupported (`docs/protocol.md` §6, §9.6): that is
/// `CUFRAMES_ERR_NO_PACKET_RING`, as when frames are wanted too.
fn no_ring(cfg: &SubscribeConfig, e: ConnectError) -> Error {
    let packets_only = cfg.opts.packets && !cfg.opts.frames;
    let refused = matches!(
        e,
        ConnectError::Rejected {
            code: cuframes_core::wire::ErrorCode::Unsupported,
            ..
        }
    );
    let mut err = Error::from(e);
    if packets_only && refused {
        err.code = CUFRAMES_ERR_NO_PACKET_RING;
    }
    err
}

/// Whether connecting with host memory failed because the publisher shares VRAM.
fn is_cuda_publisher(e: &ConnectError) -> bool {
    matches!(
        e,
        ConnectError::MemoryKind {
            theirs: MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc,
            ..
        }
    )
}

impl SubscriberObj {
    /// Connects as `cfg` says.
    pub fn connect(cfg: &SubscribeConfig) -> Result<Self, Error> {
        let sub = match cfg.backend {
            BackendChoice::Host => AnySubscriber::Host(connect_with(cfg, || Ok(HostBackend))?),
            BackendChoice::Cuda => AnySubscriber::Cuda(connect_with(cfg, || cuda_backend(cfg))?),
            BackendChoice::Auto => {
                let deadline = Instant::now() + cfg.wait_publisher;
                loop {
                    match Subscriber::connect(&cfg.key, HostBackend, cfg.opts.clone()) {
                        Ok(s) => break AnySubscriber::Host(s),
                        Err(e) if is_cuda_publisher(&e) => {
                            break AnySubscriber::Cuda(connect_with(cfg, || cuda_backend(cfg))?)
                        }
                        Err(ConnectError::NoPublisher { .. }) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(no_ring(cfg, e)),
                    }
                }
            }
        };
        Ok(SubscriberObj {
            sub: Mutex::new(sub),
            codec: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AnySubscriber> {
        // A panic inside a call is caught at the boundary; the subscriber
        // itself stays consistent (its state is updated by whole steps).
        self.sub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next frame; CUDA frames are ordered after the publisher's writes
    /// in `stream` (or waited for on the host when `stream` is `None`).
    pub fn next_frame(&self, wait: Wait, stream: Option<RawStream>) -> Result<FrameObj, Error> {
        let sub = self.lock();
        match &*sub {
            AnySubscriber::Host(s) => {
                let f = next_loop(wait, |d| s.next_frame(d).map(|f| f.into_owned()))?;
                Ok(FrameObj::host(f))
            }
            AnySubscriber::Cuda(s) => {
                let f = next_loop(wait, |d| s.next_frame(d).map(|f| f.into_owned()))?;
                match stream {
                    Some(st) => f.wait_in(st)?,
                    None => f.memory().wait_host()?,
                }
                Ok(FrameObj::cuda(f))
            }
        }
    }

    /// The next packet.
    pub fn next_packet(&self, wait: Wait) -> Result<PacketObj, Error> {
        let sub = self.lock();
        let get = |d| match &*sub {
            AnySubscriber::Host(s) => s.next_packet(d),
            AnySubscriber::Cuda(s) => s.next_packet(d),
        };
        loop {
            match get(wait.slice()) {
                Ok(p) => return Ok(PacketObj { packet: p }),
                Err(cuframes_core::runtime::PacketRecvError::Timeout(_))
                    if wait == Wait::Forever => {}
                Err(e) => return Err(packet_error(e, wait.is_zero())),
            }
        }
    }

    /// The codec id and extradata; the returned pointer and length stay
    /// valid until the parameters change or the subscriber is destroyed.
    pub fn codec_params(&self) -> Result<(u32, *const u8, usize), Error> {
        let params = {
            let sub = self.lock();
            match &*sub {
                AnySubscriber::Host(s) => s.codec_params(),
                AnySubscriber::Cuda(s) => s.codec_params(),
            }
            .map_err(|e| packet_error(e, false))?
        };
        let mut keep = self.codec.lock().unwrap_or_else(|p| p.into_inner());
        if keep.as_ref() != Some(&params) {
            *keep = Some(params);
        }
        let p = keep
            .as_ref()
            .ok_or_else(|| Error::new(CUFRAMES_ERR_INTERNAL, "codec params"))?;
        Ok((p.codec_id, p.extradata.as_ptr(), p.extradata.len()))
    }

    /// The stream frames are received with now.
    pub fn stream_info(&self) -> cuframes_stream_info_t {
        let sub = self.lock();
        let (d, memory) = match &*sub {
            AnySubscriber::Host(s) => (s.stream(), cuframes_memory::CUFRAMES_MEMORY_HOST),
            AnySubscriber::Cuda(s) => (s.stream(), cuframes_memory::CUFRAMES_MEMORY_CUDA),
        };
        let mut info = cuframes_stream_info_t {
            struct_size: std::mem::size_of::<cuframes_stream_info_t>(),
            width: d.width as u32,
            height: d.height as u32,
            pixel_format: d.format().code(),
            codec: d.codec().code(),
            fps_num: d.fps_num.min(u32::MAX as u64) as u32,
            fps_den: d.fps_den.min(u32::MAX as u64) as u32,
            memory: memory as i32,
            plane_count: d.format().plane_count().unwrap_or(0),
            generation: d.generation,
            frame_size: d.frame_size,
            plane_offset: [0; CUFRAMES_MAX_PLANES],
            plane_pitch: [0; CUFRAMES_MAX_PLANES],
        };
        info.plane_offset[..2].copy_from_slice(&d.plane_offset);
        info.plane_pitch[..2].copy_from_slice(&d.plane_pitch);
        info
    }

    /// Counters.
    pub fn stats(&self) -> cuframes_subscriber_stats_t {
        let sub = self.lock();
        let (f, p) = match &*sub {
            AnySubscriber::Host(s) => (s.stats(), s.packet_stats()),
            AnySubscriber::Cuda(s) => (s.stats(), s.packet_stats()),
        };
        cuframes_subscriber_stats_t {
            struct_size: std::mem::size_of::<cuframes_subscriber_stats_t>(),
            received: f.received,
            dropped: f.dropped,
            revoked: f.revoked,
            reconnects: f.reconnects,
            stream_changes: f.stream_changes,
            packets_received: p.received,
            packets_lost: p.lost,
            packet_discontinuities: p.discontinuities,
        }
    }

    /// Why the connection ended, if it did.
    pub fn end_reason(&self) -> cuframes_end_reason {
        let sub = self.lock();
        let r = match &*sub {
            AnySubscriber::Host(s) => s.end_reason(),
            AnySubscriber::Cuda(s) => s.end_reason(),
        };
        match r {
            None => cuframes_end_reason::CUFRAMES_END_NONE,
            Some(EndReason::EndOfStream) => cuframes_end_reason::CUFRAMES_END_OF_STREAM,
            Some(EndReason::Shutdown) => cuframes_end_reason::CUFRAMES_END_SHUTDOWN,
            Some(EndReason::Vanished) => cuframes_end_reason::CUFRAMES_END_VANISHED,
            Some(EndReason::Refused) => cuframes_end_reason::CUFRAMES_END_REFUSED,
            Some(EndReason::ProtocolError) => cuframes_end_reason::CUFRAMES_END_PROTOCOL_ERROR,
        }
    }
}

/// Calls `next` until it delivers, honouring `wait`.
fn next_loop<T>(
    wait: Wait,
    mut next: impl FnMut(Duration) -> Result<T, cuframes_core::runtime::RecvError>,
) -> Result<T, Error> {
    loop {
        match next(wait.slice()) {
            Ok(f) => return Ok(f),
            Err(cuframes_core::runtime::RecvError::Timeout(_)) if wait == Wait::Forever => {}
            Err(e) => return Err(recv_error(e, wait.is_zero())),
        }
    }
}

/// One plane of a frame as the C side sees it (addresses as integers, so
/// the object is `Send + Sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaneInfo {
    /// Host address (0 for CUDA).
    pub host: usize,
    /// Device address (0 for host).
    pub device: u64,
    /// Pitch, bytes.
    pub pitch: usize,
    /// Row bytes.
    pub row_bytes: usize,
    /// Rows.
    pub rows: usize,
}

/// A frame's description, computed once when it is leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Pixel format code.
    pub pixel_format: u32,
    /// Host or CUDA.
    pub memory: cuframes_memory,
    /// Sequence number.
    pub seq: u64,
    /// pts, ns, or `CUFRAMES_TS_NONE`.
    pub pts_ns: i64,
    /// Commit time, ns.
    pub publish_ns: u64,
    /// Flag bits.
    pub flags: u64,
    /// Source index.
    pub source_index: u64,
    /// Frames skipped before it.
    pub skipped: u64,
    /// Stream generation.
    pub generation: u64,
    /// First frame of a new stream description.
    pub stream_changed: bool,
    /// Planes.
    pub plane_count: u32,
    /// Their spans.
    pub planes: [PlaneInfo; CUFRAMES_MAX_PLANES],
}

impl FrameInfo {
    /// The C struct.
    pub fn to_c(&self) -> cuframes_frame_info_t {
        let mut planes = [cuframes_plane_t {
            data: std::ptr::null(),
            device_ptr: 0,
            pitch: 0,
            row_bytes: 0,
            rows: 0,
        }; CUFRAMES_MAX_PLANES];
        for (c, p) in planes.iter_mut().zip(&self.planes) {
            // An integer-to-pointer cast: the address of a live mapping the
            // frame keeps (or 0 → NULL for CUDA frames).
            c.data = p.host as *const std::ffi::c_void;
            c.device_ptr = p.device;
            c.pitch = p.pitch;
            c.row_bytes = p.row_bytes;
            c.rows = p.rows;
        }
        cuframes_frame_info_t {
            struct_size: std::mem::size_of::<cuframes_frame_info_t>(),
            width: self.width,
            height: self.height,
            pixel_format: self.pixel_format,
            memory: self.memory as i32,
            seq: self.seq,
            pts_ns: self.pts_ns,
            publish_ns: self.publish_ns,
            flags: self.flags,
            source_index: self.source_index,
            skipped: self.skipped,
            generation: self.generation,
            stream_changed: u32::from(self.stream_changed),
            plane_count: self.plane_count,
            planes,
        }
    }

    /// Plane `i`, if the frame has it.
    pub fn plane(&self, i: u32) -> Option<&PlaneInfo> {
        (i < self.plane_count)
            .then(|| self.planes.get(i as usize))
            .flatten()
    }
}

/// A leased frame of either backend.
pub enum AnyFrame {
    /// Host memory.
    Host(OwnedFrame<HostBackend>),
    /// CUDA memory.
    Cuda(OwnedFrame<CudaBackend>),
}

/// A `cuframes_frame_t`.
pub struct FrameObj {
    frame: Mutex<Option<AnyFrame>>,
    /// What the accessors return.
    pub info: FrameInfo,
}

fn base_info<B: Backend + 'static>(f: &OwnedFrame<B>, memory: cuframes_memory) -> FrameInfo
where
    B::Imported: Send + Sync,
{
    let s = f.stream();
    let m = f.meta();
    FrameInfo {
        width: s.width as u32,
        height: s.height as u32,
        pixel_format: s.format().code(),
        memory,
        seq: m.seq,
        pts_ns: m.pts_ns.unwrap_or(CUFRAMES_TS_NONE),
        publish_ns: m.publish_ns,
        flags: m.flags,
        source_index: m.source_index,
        skipped: f.skipped(),
        generation: s.generation,
        stream_changed: f.stream_changed(),
        plane_count: s.format().plane_count().unwrap_or(0),
        planes: [PlaneInfo::default(); CUFRAMES_MAX_PLANES],
    }
}

impl FrameObj {
    fn host(f: OwnedFrame<HostBackend>) -> Self {
        let mut info = base_info(&f, cuframes_memory::CUFRAMES_MEMORY_HOST);
        let s = *f.stream();
        let fmt: PixelFormat = s.format();
        for i in 0..info.plane_count.min(CUFRAMES_MAX_PLANES as u32) {
            let (Some((bytes, pitch)), Some((row, rows))) = (
                f.plane(i as usize),
                fmt.plane_extent(i, s.width as u32, s.height as u32),
            ) else {
                continue;
            };
            info.planes[i as usize] = PlaneInfo {
                host: bytes.as_ptr() as usize,
                device: 0,
                pitch,
                row_bytes: row as usize,
                rows: rows as usize,
            };
        }
        FrameObj {
            frame: Mutex::new(Some(AnyFrame::Host(f))),
            info,
        }
    }

    fn cuda(f: OwnedFrame<CudaBackend>) -> Self {
        let mut info = base_info(&f, cuframes_memory::CUFRAMES_MEMORY_CUDA);
        for i in 0..info.plane_count.min(CUFRAMES_MAX_PLANES as u32) {
            if let Ok(p) = f.device_plane(i as usize) {
                info.planes[i as usize] = PlaneInfo {
                    host: 0,
                    device: p.ptr,
                    pitch: p.pitch,
                    row_bytes: p.row_bytes,
                    rows: p.rows,
                };
            }
        }
        FrameObj {
            frame: Mutex::new(Some(AnyFrame::Cuda(f))),
            info,
        }
    }

    fn take(&self) -> Result<AnyFrame, Error> {
        self.frame
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Error::handle("frame"))
    }

    /// Releases now (CUDA: after synchronising the frame's context).
    /// `CUFRAMES_ERR_LEASE_REVOKED` if the publisher had revoked the lease.
    pub fn release(&self) -> Result<(), Error> {
        let ok = match self.take()? {
            AnyFrame::Host(f) => f.release(),
            AnyFrame::Cuda(f) => f.release(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::new(
                CUFRAMES_ERR_LEASE_REVOKED,
                "the publisher revoked the lease before release (held past its lease timeout): data read from the frame may be torn",
            ))
        }
    }

    /// CUDA: returns the lease once the work queued on `stream` so far is
    /// done, without blocking. A host frame is refused (and kept).
    pub fn release_after(&self, stream: RawStream) -> Result<(), Error> {
        let mut slot = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(AnyFrame::Cuda(f)) => Ok(f.release_after(stream)?),
            Some(other) => {
                *slot = Some(other);
                Err(Error::new(
                    CUFRAMES_ERR_UNSUPPORTED,
                    "release_after needs a frame in CUDA memory; release host frames with cuframes_subscriber_release",
                ))
            }
            None => Err(Error::handle("frame")),
        }
    }

    /// Bytes of the frame in FFmpeg's packed layout (planes in order, rows
    /// without pitch padding).
    pub fn packed_size(&self) -> usize {
        let n = (self.info.plane_count as usize).min(CUFRAMES_MAX_PLANES);
        self.info.planes[..n]
            .iter()
            .map(|p| p.row_bytes * p.rows)
            .sum()
    }

    /// Copies the frame into `dst` in FFmpeg's packed layout and returns the
    /// bytes written ([`FrameObj::packed_size`]): host frames row by row, CUDA
    /// frames with `cuMemcpy2D` to host after the publisher's writes are
    /// complete. `CUFRAMES_ERR_INVALID_ARG` if `dst` is too small.
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<usize, Error> {
        let need = self.packed_size();
        if dst.len() < need {
            return Err(Error::new(
                CUFRAMES_ERR_INVALID_ARG,
                format!("a buffer of {} bytes; the frame needs {need}", dst.len()),
            ));
        }
        let slot = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(AnyFrame::Host(f)) => {
                let mut at = 0;
                f.for_each_row(|row| {
                    dst[at..at + row.len()].copy_from_slice(row);
                    at += row.len();
                });
                Ok(at)
            }
            Some(AnyFrame::Cuda(f)) => {
                let mem = f.memory();
                mem.wait_host()?;
                let mut at = 0;
                for i in 0..(self.info.plane_count as usize).min(CUFRAMES_MAX_PLANES) {
                    let p = self.info.planes[i];
                    let n = p.row_bytes * p.rows;
                    mem.copy_plane_to_host(f.stream(), i, &mut dst[at..at + n])?;
                    at += n;
                }
                Ok(at)
            }
            None => Err(Error::handle("frame")),
        }
    }

    /// Runs `f` on the frame if it lives in CUDA memory;
    /// `CUFRAMES_ERR_UNSUPPORTED` for a host frame.
    pub fn with_cuda<R>(
        &self,
        f: impl FnOnce(&OwnedFrame<CudaBackend>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let slot = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(AnyFrame::Cuda(frame)) => f(frame),
            Some(AnyFrame::Host(_)) => Err(Error::new(
                CUFRAMES_ERR_UNSUPPORTED,
                "the frame is in host memory, not CUDA memory",
            )),
            None => Err(Error::handle("frame")),
        }
    }

    /// Whether the lease is still valid (not revoked).
    pub fn is_valid(&self) -> Result<bool, Error> {
        let slot = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(AnyFrame::Host(f)) => Ok(f.is_valid()),
            Some(AnyFrame::Cuda(f)) => Ok(f.is_valid()),
            None => Err(Error::handle("frame")),
        }
    }
}

/// A `cuframes_packet_t`: the packet copied out of the ring.
pub struct PacketObj {
    /// The packet.
    pub packet: Packet,
}
