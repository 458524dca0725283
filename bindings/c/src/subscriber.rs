//! Subscribers, frames and packets behind the C handles (safe Rust; the
//! `ffi` module converts C arguments and results).
//!
//! A subscriber is a `cuframes` facade [`Subscriber`]: connecting, the
//! backend choice (`CUFRAMES_BACKEND_AUTO`: made by the facade from the
//! publisher's offer on the one connection, [`Backend::resolve`]), the
//! legacy-IPC opt-in and the wait for a publisher are the facade's. Frames
//! are facade [`OwnedFrame`]s: they hold their ring generation themselves,
//! so a frame handle may be released from any thread and even after its
//! subscriber was destroyed.

use crate::error::{facade_error, Error, *};
use crate::types::*;
use cuframes_core::runtime::{CodecParams, EndReason, Packet, PublisherUids, Reconnect};
use cuframes_core::DeliveryMode;
use cuframes_facade::cuda::{CudaBackend, CudaFrameExt, RawStream};
use cuframes_facade::{
    Backend, BackendKind, OwnedFrame, Plane, Subscriber, SubscriberOptions, WaitStrategy,
};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

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

/// The facade backend of a C `cuframes_backend` value.
pub fn backend_from_c(v: i32) -> Result<Backend, Error> {
    use cuframes_backend::*;
    match v {
        x if x == CUFRAMES_BACKEND_AUTO as i32 => Ok(Backend::Auto),
        x if x == CUFRAMES_BACKEND_HOST as i32 => Ok(Backend::Host),
        x if x == CUFRAMES_BACKEND_CUDA as i32 => Ok(Backend::Cuda),
        x if x == CUFRAMES_BACKEND_VULKAN as i32 => Ok(Backend::Vulkan),
        _ => Err(Error::arg(format!("backend {v} is not a cuframes_backend"))),
    }
}

/// The C `cuframes_memory` of frames read with `kind`.
pub fn memory_of(kind: BackendKind) -> cuframes_memory {
    match kind {
        BackendKind::Host => cuframes_memory::CUFRAMES_MEMORY_HOST,
        BackendKind::Cuda => cuframes_memory::CUFRAMES_MEMORY_CUDA,
        BackendKind::Vulkan => cuframes_memory::CUFRAMES_MEMORY_VULKAN,
    }
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// A subscriber's settings, converted from `cuframes_subscriber_options_t`.
#[derive(Debug, Clone)]
pub struct SubscribeConfig {
    /// Stream key.
    pub key: String,
    /// The facade's options (backend, core's options, the wait for a
    /// publisher, the legacy-IPC opt-in).
    pub opts: SubscriberOptions,
}

/// What `cuframes_subscriber_options_init` fills in: the facade's and
/// core's defaults ([`SubscriberOptions::default`], [`Reconnect::default`]).
pub fn default_subscriber_options() -> cuframes_subscriber_options_t {
    let d = SubscriberOptions::default();
    let rc = Reconnect::default();
    cuframes_subscriber_options_t {
        struct_size: std::mem::size_of::<cuframes_subscriber_options_t>(),
        key: std::ptr::null(),
        consumer_name: std::ptr::null(),
        runtime_dir: std::ptr::null(),
        mode: match d.subscribe.mode {
            DeliveryMode::InOrder => cuframes_mode::CUFRAMES_MODE_IN_ORDER,
            _ => cuframes_mode::CUFRAMES_MODE_NEWEST_ONLY,
        } as i32,
        backend: match d.backend {
            Backend::Host => cuframes_backend::CUFRAMES_BACKEND_HOST,
            Backend::Cuda => cuframes_backend::CUFRAMES_BACKEND_CUDA,
            Backend::Vulkan => cuframes_backend::CUFRAMES_BACKEND_VULKAN,
            Backend::Auto => cuframes_backend::CUFRAMES_BACKEND_AUTO,
        } as i32,
        subscribe_flags: if d.subscribe.frames {
            CUFRAMES_SUBSCRIBE_FRAMES
        } else {
            0
        } | if d.subscribe.packets {
            CUFRAMES_SUBSCRIBE_PACKETS
        } else {
            0
        },
        connect_timeout_ms: ms(d.subscribe.handshake_timeout),
        wait_publisher_ms: ms(d.wait_publisher),
        reconnect: u32::from(d.subscribe.reconnect.is_some()),
        reconnect_first_delay_ms: ms(rc.first_delay),
        reconnect_max_delay_ms: ms(rc.max_delay),
        reconnect_give_up_ms: rc
            .give_up_after
            .map_or(-1, |g| i64::try_from(g.as_millis()).unwrap_or(i64::MAX)),
        publisher_uids: std::ptr::null(),
        publisher_uid_count: 0,
        accept_any_publisher_uid: u32::from(d.subscribe.publisher_uids == PublisherUids::Any),
        allow_legacy_ipc: u32::from(d.legacy_ipc_allowed()),
        wait_spin_us: u32::try_from(d.subscribe.wait.spin.as_micros()).unwrap_or(u32::MAX),
        wait_anticipate: u32::from(d.subscribe.wait.anticipate),
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
        let mut opts = SubscriberOptions::new(mode);
        opts.backend = backend_from_c(o.backend)?;
        opts.wait_publisher = Duration::from_millis(u64::from(o.wait_publisher_ms));
        let sub = &mut opts.subscribe;
        if let Some(n) = name {
            sub.name = n;
        }
        sub.runtime_dir = runtime_dir;
        sub.handshake_timeout = Duration::from_millis(u64::from(o.connect_timeout_ms.max(1)));
        if o.wait_spin_us > CUFRAMES_MAX_WAIT_SPIN_US {
            return Err(Error::arg(format!(
                "wait_spin_us {} is over {CUFRAMES_MAX_WAIT_SPIN_US} (1 s)",
                o.wait_spin_us
            )));
        }
        sub.wait = WaitStrategy {
            spin: Duration::from_micros(u64::from(o.wait_spin_us)),
            anticipate: o.wait_anticipate != 0,
        };
        if o.subscribe_flags & !(CUFRAMES_SUBSCRIBE_FRAMES | CUFRAMES_SUBSCRIBE_PACKETS) != 0 {
            return Err(Error::arg(format!(
                "subscribe_flags {:#x} has unknown bits",
                o.subscribe_flags
            )));
        }
        sub.frames = o.subscribe_flags & CUFRAMES_SUBSCRIBE_FRAMES != 0;
        sub.packets = o.subscribe_flags & CUFRAMES_SUBSCRIBE_PACKETS != 0;
        if !sub.frames && !sub.packets {
            return Err(Error::arg(
                "subscribe_flags asks for neither frames nor packets",
            ));
        }
        if o.reconnect != 0 {
            sub.reconnect = Some(Reconnect {
                first_delay: Duration::from_millis(u64::from(o.reconnect_first_delay_ms)),
                max_delay: Duration::from_millis(u64::from(o.reconnect_max_delay_ms)),
                give_up_after: u64::try_from(o.reconnect_give_up_ms)
                    .ok()
                    .map(Duration::from_millis),
            });
        }
        sub.publisher_uids = if o.accept_any_publisher_uid != 0 {
            PublisherUids::Any
        } else if uids.is_empty() {
            PublisherUids::SameUser
        } else {
            PublisherUids::Only(uids)
        };
        if o.allow_legacy_ipc != 0 {
            // SAFETY: the C caller set `allow_legacy_ipc`, whose documentation
            // (cuframes.h) states the obligation of `allow_legacy_ipc`'s
            // `# Safety`: it trusts every publisher this subscriber connects to
            // to send only real IPC handles of whole slots. The publisher's uid
            // is still checked (`publisher_uids`).
            #[allow(unsafe_code)]
            unsafe {
                opts.allow_legacy_ipc()
            }
        }
        Ok(SubscribeConfig { key, opts })
    }
}

/// A `cuframes_subscriber_t`.
pub struct SubscriberObj {
    sub: Mutex<Subscriber>,
    /// The codec parameters last returned by `get_codec_params` (their
    /// extradata pointer stays valid while they do not change).
    codec: Mutex<Option<CodecParams>>,
}

/// A packets-only HELLO to a publisher without a packet ring is refused
/// with ERROR Unsupported (`docs/protocol.md` §6, §9.6): that is
/// `CUFRAMES_ERR_NO_PACKET_RING`, as when frames are wanted too.
fn no_ring(cfg: &SubscribeConfig, e: cuframes_facade::Error) -> Error {
    let packets_only = cfg.opts.subscribe.packets && !cfg.opts.subscribe.frames;
    let refused = matches!(
        e,
        cuframes_facade::Error::Connect(cuframes_core::runtime::ConnectError::Rejected {
            code: cuframes_core::wire::ErrorCode::Unsupported,
            ..
        })
    );
    let mut err = facade_error(e, false);
    if packets_only && refused {
        err.code = CUFRAMES_ERR_NO_PACKET_RING;
    }
    err
}

impl SubscriberObj {
    /// Connects as `cfg` says: the facade's [`Subscriber::connect`] (one
    /// connection; the backend chosen from the offer; waits up to
    /// `wait_publisher` for a publisher).
    pub fn connect(cfg: &SubscribeConfig) -> Result<Self, Error> {
        let sub = Subscriber::connect(&cfg.key, cfg.opts.clone()).map_err(|e| no_ring(cfg, e))?;
        Ok(SubscriberObj {
            sub: Mutex::new(sub),
            codec: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Subscriber> {
        // A panic inside a call is caught at the boundary; the subscriber
        // itself stays consistent (its state is updated by whole steps).
        self.sub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next frame; CUDA frames are ordered after the publisher's writes
    /// in `stream` (or waited for on the host when `stream` is `None`).
    pub fn next_frame(&self, wait: Wait, stream: Option<RawStream>) -> Result<FrameObj, Error> {
        let sub = self.lock();
        let f = loop {
            match sub.next_frame(wait.slice()) {
                Ok(f) => break f.into_owned(),
                Err(e) if e.is_timeout() && wait == Wait::Forever => {}
                Err(e) => return Err(facade_error(e, wait.is_zero())),
            }
        };
        if let Some(cf) = f.as_cuda() {
            match stream {
                Some(st) => cf.wait_in(st)?,
                None => cf.memory().wait_host()?,
            }
        }
        Ok(FrameObj::new(f))
    }

    /// The next packet.
    pub fn next_packet(&self, wait: Wait) -> Result<PacketObj, Error> {
        let sub = self.lock();
        loop {
            match sub.next_packet(wait.slice()) {
                Ok(p) => return Ok(PacketObj { packet: p }),
                Err(e) if e.is_timeout() && wait == Wait::Forever => {}
                Err(e) => return Err(facade_error(e, wait.is_zero())),
            }
        }
    }

    /// The codec id and extradata; the returned pointer and length stay
    /// valid until the parameters change or the subscriber is destroyed.
    pub fn codec_params(&self) -> Result<(u32, *const u8, usize), Error> {
        let params = self
            .lock()
            .codec_params()
            .map_err(|e| facade_error(e, false))?;
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
        let d = sub.stream();
        let memory = memory_of(sub.backend());
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
        let (f, p) = (sub.stats(), sub.packet_stats());
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
        match self.lock().end_reason() {
            None => cuframes_end_reason::CUFRAMES_END_NONE,
            Some(EndReason::EndOfStream) => cuframes_end_reason::CUFRAMES_END_OF_STREAM,
            Some(EndReason::Shutdown) => cuframes_end_reason::CUFRAMES_END_SHUTDOWN,
            Some(EndReason::Vanished) => cuframes_end_reason::CUFRAMES_END_VANISHED,
            Some(EndReason::Refused) => cuframes_end_reason::CUFRAMES_END_REFUSED,
            Some(EndReason::ProtocolError) => cuframes_end_reason::CUFRAMES_END_PROTOCOL_ERROR,
        }
    }
}

/// One plane of a frame as the C side sees it (addresses as integers, so
/// the object is `Send + Sync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaneInfo {
    /// Host address (0 for CUDA and Vulkan).
    pub host: usize,
    /// Device address (0 for host and Vulkan).
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
    /// Host, CUDA or Vulkan.
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
    /// Bytes `copy_to_host` writes (the facade's `packed_size`).
    pub packed_size: usize,
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
            // frame keeps (or 0 → NULL for CUDA and Vulkan frames).
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

/// A `cuframes_frame_t`.
pub struct FrameObj {
    frame: Mutex<Option<OwnedFrame>>,
    /// What the accessors return.
    pub info: FrameInfo,
}

impl FrameObj {
    /// The C view of a leased frame: its planes from the facade's
    /// [`OwnedFrame::plane`], whatever the backend.
    fn new(f: OwnedFrame) -> Self {
        let s = f.stream();
        let m = f.meta();
        let mut info = FrameInfo {
            width: s.width as u32,
            height: s.height as u32,
            pixel_format: s.format().code(),
            memory: memory_of(f.backend()),
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
            packed_size: f.packed_size(),
        };
        for i in 0..info.plane_count.min(CUFRAMES_MAX_PLANES as u32) {
            let p = match f.plane(i as usize) {
                Some(Plane::Host {
                    bytes,
                    pitch,
                    row_bytes,
                    rows,
                }) => PlaneInfo {
                    host: bytes.as_ptr() as usize,
                    device: 0,
                    pitch,
                    row_bytes,
                    rows,
                },
                Some(Plane::Cuda {
                    ptr,
                    pitch,
                    row_bytes,
                    rows,
                }) => PlaneInfo {
                    host: 0,
                    device: ptr,
                    pitch,
                    row_bytes,
                    rows,
                },
                Some(Plane::Vulkan {
                    pitch,
                    row_bytes,
                    rows,
                    ..
                }) => PlaneInfo {
                    host: 0,
                    device: 0,
                    pitch,
                    row_bytes,
                    rows,
                },
                None => continue,
            };
            info.planes[i as usize] = p;
        }
        FrameObj {
            frame: Mutex::new(Some(f)),
            info,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedFrame>> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Releases now (CUDA: after synchronising the frame's context).
    /// `CUFRAMES_ERR_LEASE_REVOKED` if the publisher had revoked the lease.
    pub fn release(&self) -> Result<(), Error> {
        let f = self.slot().take().ok_or_else(|| Error::handle("frame"))?;
        if f.release() {
            Ok(())
        } else {
            Err(Error::new(
                CUFRAMES_ERR_LEASE_REVOKED,
                "the publisher revoked the lease before release (held past its lease timeout): data read from the frame may be torn",
            ))
        }
    }

    /// CUDA: returns the lease once the work queued on `stream` so far is
    /// done, without blocking. A frame in other memory is refused (and kept).
    pub fn release_after(&self, stream: RawStream) -> Result<(), Error> {
        let mut slot = self.slot();
        match slot.take().map(OwnedFrame::into_cuda) {
            Some(Ok(f)) => Ok(f.release_after(stream)?),
            Some(Err(other)) => {
                *slot = Some(other);
                Err(Error::new(
                    CUFRAMES_ERR_UNSUPPORTED,
                    "release_after needs a frame in CUDA memory; release other frames with cuframes_subscriber_release",
                ))
            }
            None => Err(Error::handle("frame")),
        }
    }

    /// Bytes of the frame in FFmpeg's packed layout (planes in order, rows
    /// without pitch padding): the facade's `packed_size`.
    pub fn packed_size(&self) -> usize {
        self.info.packed_size
    }

    /// Copies the frame into `dst` in FFmpeg's packed layout and returns the
    /// bytes written ([`FrameObj::packed_size`]): host frames row by row
    /// straight into `dst`; CUDA and Vulkan frames through the facade's
    /// `copy_to_host` (a device-to-host copy after the publisher's writes).
    /// `CUFRAMES_ERR_INVALID_ARG` if `dst` is too small.
    pub fn copy_to_host(&self, dst: &mut [u8]) -> Result<usize, Error> {
        let need = self.packed_size();
        if dst.len() < need {
            return Err(Error::new(
                CUFRAMES_ERR_INVALID_ARG,
                format!("a buffer of {} bytes; the frame needs {need}", dst.len()),
            ));
        }
        let slot = self.slot();
        let f = slot.as_ref().ok_or_else(|| Error::handle("frame"))?;
        if let Some(h) = f.as_host() {
            let mut at = 0;
            h.for_each_row(|row| {
                dst[at..at + row.len()].copy_from_slice(row);
                at += row.len();
            });
            return Ok(at);
        }
        let mut packed = Vec::with_capacity(need);
        f.copy_to_host(&mut packed)
            .map_err(|e| facade_error(e, false))?;
        let n = packed.len();
        dst.get_mut(..n)
            .ok_or_else(|| Error::new(CUFRAMES_ERR_INTERNAL, "packed size changed"))?
            .copy_from_slice(&packed);
        Ok(n)
    }

    /// Runs `f` on the frame if it lives in CUDA memory;
    /// `CUFRAMES_ERR_UNSUPPORTED` for a frame in other memory.
    pub fn with_cuda<R>(
        &self,
        f: impl FnOnce(&cuframes_core::runtime::OwnedFrame<CudaBackend>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let slot = self.slot();
        let frame = slot.as_ref().ok_or_else(|| Error::handle("frame"))?;
        match frame.as_cuda() {
            Some(cf) => f(cf),
            None => Err(Error::new(
                CUFRAMES_ERR_UNSUPPORTED,
                format!(
                    "the frame is in {} memory, not CUDA memory",
                    frame.backend()
                ),
            )),
        }
    }

    /// Whether the lease is still valid (not revoked).
    pub fn is_valid(&self) -> Result<bool, Error> {
        let slot = self.slot();
        Ok(slot
            .as_ref()
            .ok_or_else(|| Error::handle("frame"))?
            .is_valid())
    }
}

/// A `cuframes_packet_t`: the packet copied out of the ring.
pub struct PacketObj {
    /// The packet.
    pub packet: Packet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use cuframes_facade::Codec;

    #[test]
    fn c_option_defaults_are_the_facades_and_cores() {
        let c = default_subscriber_options();
        let d = SubscriberOptions::default();
        let cfg = SubscribeConfig::from_c(&c, "k".into(), None, None, Vec::new()).unwrap();
        let o = &cfg.opts;
        assert_eq!(o.backend, d.backend);
        assert_eq!(o.subscribe.mode, d.subscribe.mode);
        assert_eq!(o.subscribe.handshake_timeout, d.subscribe.handshake_timeout);
        assert_eq!(o.subscribe.wait, d.subscribe.wait);
        assert_eq!(o.subscribe.frames, d.subscribe.frames);
        assert_eq!(o.subscribe.packets, d.subscribe.packets);
        assert_eq!(o.subscribe.reconnect, d.subscribe.reconnect);
        assert_eq!(o.subscribe.publisher_uids, d.subscribe.publisher_uids);
        assert_eq!(o.wait_publisher, d.wait_publisher);
        assert!(!o.legacy_ipc_allowed());
        let rc = Reconnect::default();
        assert_eq!(
            u64::from(c.reconnect_first_delay_ms),
            rc.first_delay.as_millis() as u64
        );
        assert_eq!(
            u64::from(c.reconnect_max_delay_ms),
            rc.max_delay.as_millis() as u64
        );
        assert_eq!(c.reconnect_give_up_ms, -1);
        // The values the header documents.
        assert_eq!(
            (
                c.connect_timeout_ms,
                c.reconnect_first_delay_ms,
                c.reconnect_max_delay_ms
            ),
            (5000, 50, 500)
        );
        assert_eq!((c.wait_spin_us, c.wait_anticipate), (50, 1));
    }

    #[test]
    fn the_legacy_ipc_opt_in_reaches_the_facade() {
        let mut c = default_subscriber_options();
        c.allow_legacy_ipc = 1;
        let cfg = SubscribeConfig::from_c(&c, "k".into(), None, None, Vec::new()).unwrap();
        assert!(cfg.opts.legacy_ipc_allowed());
    }

    #[test]
    fn backend_values_map_to_the_facades() {
        use cuframes_backend::*;
        for (c, b) in [
            (CUFRAMES_BACKEND_AUTO, Backend::Auto),
            (CUFRAMES_BACKEND_HOST, Backend::Host),
            (CUFRAMES_BACKEND_CUDA, Backend::Cuda),
            (CUFRAMES_BACKEND_VULKAN, Backend::Vulkan),
        ] {
            assert_eq!(backend_from_c(c as i32).unwrap(), b);
        }
        assert!(backend_from_c(4).is_err());
        assert_eq!(
            memory_of(BackendKind::Vulkan) as i32,
            cuframes_memory::CUFRAMES_MEMORY_VULKAN as i32
        );
    }

    /// The header's AVCodecID constants are literals (cbindgen writes no
    /// `const fn` calls); they must be core's.
    #[test]
    fn av_codec_id_constants_are_cores() {
        assert_eq!(CUFRAMES_AV_CODEC_ID_H264, Codec::H264.av_codec_id());
        assert_eq!(CUFRAMES_AV_CODEC_ID_HEVC, Codec::Hevc.av_codec_id());
        assert_eq!(
            Codec::from_av_codec_id(CUFRAMES_AV_CODEC_ID_HEVC),
            Some(Codec::Hevc)
        );
    }
}
