//! Publishers behind the C handles (safe Rust).
//!
//! The C API fills a slot across calls (acquire, write, commit), while
//! `Publisher::acquire` returns a `SlotGuard` that mutably borrows the
//! publisher. Between acquire and commit / abandon the publisher and its
//! guard therefore live together in an `ouroboros` self-referencing cell
//! ([`Acquired`]); commit or abandon drops the guard and takes the
//! publisher back out. While a slot is held the publisher is borrowed, so
//! the other publisher calls (packets, extradata) answer
//! `CUFRAMES_ERR_UNSUPPORTED` until the slot is committed or abandoned.

use crate::error::*;
use crate::types::*;
use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    Backend, HostBackend, PacketRingConfig, Publisher, PublisherConfig, SlotGuard,
};
use cuframes_core::{Codec, PixelFormat, PublishPolicy};
use cuframes_cuda::{CudaBackend, CudaConfig, CudaMemory, CudaSync, RawStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// What `cuframes_publisher_options_init` fills in.
pub fn default_publisher_options() -> cuframes_publisher_options_t {
    cuframes_publisher_options_t {
        struct_size: std::mem::size_of::<cuframes_publisher_options_t>(),
        key: std::ptr::null(),
        runtime_dir: std::ptr::null(),
        width: 0,
        height: 0,
        pixel_format: cuframes_pixel_format::CUFRAMES_FORMAT_NV12 as u32,
        codec: cuframes_codec::CUFRAMES_CODEC_UNKNOWN as u32,
        fps_num: 0,
        fps_den: 0,
        slots: 8,
        policy: cuframes_policy::CUFRAMES_POLICY_DROP_FRAME as i32,
        wait_timeout_ms: 2000,
        lease_timeout_ms: 5000,
        max_subscribers: 64,
        socket_mode: 0o660,
        backend: cuframes_backend::CUFRAMES_BACKEND_HOST as i32,
        cuda_memory: cuframes_cuda_memory::CUFRAMES_CUDA_MEMORY_VMM_FD as i32,
        cuda_sync: cuframes_cuda_sync::CUFRAMES_CUDA_SYNC_HOST_FENCE as i32,
        cuda_device: 0,
        packets: 0,
        packet_codec_id: 0,
        packet_slots: 64,
        packet_data_size: 8 << 20,
        max_packet_size: 2 << 20,
    }
}

/// What `cuframes_frame_meta_init` fills in.
pub fn default_frame_meta() -> cuframes_frame_meta_t {
    cuframes_frame_meta_t {
        struct_size: std::mem::size_of::<cuframes_frame_meta_t>(),
        pts_ns: CUFRAMES_TS_NONE,
        flags: 0,
        source_index: -1,
    }
}

/// A publisher's settings, converted from `cuframes_publisher_options_t`.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    config: PublisherConfig,
    stream: StreamDesc,
    backend: i32,
    cuda: CudaConfig,
}

impl PublishConfig {
    /// Checks and converts the C options (`key` and `runtime_dir` already read).
    pub fn from_c(
        o: &cuframes_publisher_options_t,
        key: String,
        runtime_dir: Option<PathBuf>,
    ) -> Result<Self, Error> {
        let format = match PixelFormat::from_code(o.pixel_format) {
            f @ (PixelFormat::Nv12 | PixelFormat::P010) => f,
            PixelFormat::Unknown(c) => {
                return Err(Error::arg(format!(
                    "pixel_format {c} is not a cuframes_pixel_format"
                )))
            }
        };
        let mut stream = StreamDesc::packed(o.width, o.height, format, Codec::from_code(o.codec))
            .map_err(|e| Error::arg(format!("stream description: {e}")))?;
        stream.fps_num = u64::from(o.fps_num);
        stream.fps_den = u64::from(o.fps_den);
        let mut config = PublisherConfig::new(&key);
        config.runtime_dir = runtime_dir;
        config.slots = o.slots;
        config.policy = match o.policy {
            x if x == cuframes_policy::CUFRAMES_POLICY_DROP_FRAME as i32 => {
                PublishPolicy::DropFrame
            }
            x if x == cuframes_policy::CUFRAMES_POLICY_WAIT as i32 => PublishPolicy::Wait,
            v => return Err(Error::arg(format!("policy {v} is not a cuframes_policy"))),
        };
        config.wait_timeout = Duration::from_millis(u64::from(o.wait_timeout_ms));
        config.lease_timeout = Duration::from_millis(u64::from(o.lease_timeout_ms.max(1)));
        config.max_subscribers = o.max_subscribers.max(1) as usize;
        config.socket_mode = o.socket_mode;
        if o.packets != 0 {
            config.packets = Some(PacketRingConfig {
                slots: o.packet_slots,
                data_size: o.packet_data_size,
                max_packet_size: o.max_packet_size,
                codec_id: o.packet_codec_id,
                extradata: Vec::new(),
            });
        }
        let memory = match o.cuda_memory {
            x if x == cuframes_cuda_memory::CUFRAMES_CUDA_MEMORY_VMM_FD as i32 => CudaMemory::VmmFd,
            x if x == cuframes_cuda_memory::CUFRAMES_CUDA_MEMORY_LEGACY_IPC as i32 => {
                CudaMemory::LegacyIpc
            }
            v => {
                return Err(Error::arg(format!(
                    "cuda_memory {v} is not a cuframes_cuda_memory"
                )))
            }
        };
        let sync = match o.cuda_sync {
            x if x == cuframes_cuda_sync::CUFRAMES_CUDA_SYNC_HOST_FENCE as i32 => {
                CudaSync::HostFence
            }
            x if x == cuframes_cuda_sync::CUFRAMES_CUDA_SYNC_IPC_EVENT as i32 => CudaSync::IpcEvent,
            v => {
                return Err(Error::arg(format!(
                    "cuda_sync {v} is not a cuframes_cuda_sync"
                )))
            }
        };
        crate::subscriber::BackendChoice::from_c(o.backend)?;
        Ok(PublishConfig {
            config,
            stream,
            backend: o.backend,
            cuda: CudaConfig {
                memory,
                sync,
                device: o.cuda_device,
            },
        })
    }
}

/// A publisher and the slot it lent out (see the module docs).
#[ouroboros::self_referencing]
pub struct Acquired<B: Backend + Send + Sync + 'static> {
    publisher: Publisher<B>,
    #[borrows(mut publisher)]
    #[covariant]
    guard: Option<SlotGuard<'this, B>>,
}

/// A publisher, idle or with a slot lent out.
// One per handle, moved between its variants once per frame: boxing the
// idle publisher would cost an allocation per frame instead.
#[allow(clippy::large_enum_variant)]
pub enum State<B: Backend + Send + Sync + 'static> {
    /// No slot held.
    Idle(Publisher<B>),
    /// A slot is held between acquire and commit / abandon.
    Acquired(Acquired<B>),
    /// Only while a transition is under way (or after a panic in one).
    Gone,
}

/// Where a slot's memory is, for [`State::acquire`].
trait SlotMemory: Backend + Send + Sync + 'static {
    const MEMORY: cuframes_memory;
    /// (host base address, device base address) of a slot.
    fn base(slot: &mut Self::Slot) -> (usize, u64);
    /// Makes the frame written on `stream` visible before commit.
    fn fence(slot: &mut Self::Slot, stream: Option<RawStream>) -> Result<(), Error>;
}

impl SlotMemory for HostBackend {
    const MEMORY: cuframes_memory = cuframes_memory::CUFRAMES_MEMORY_HOST;
    fn base(slot: &mut Self::Slot) -> (usize, u64) {
        (slot.bytes_mut().as_mut_ptr() as usize, 0)
    }
    fn fence(_: &mut Self::Slot, _: Option<RawStream>) -> Result<(), Error> {
        Ok(())
    }
}

impl SlotMemory for CudaBackend {
    const MEMORY: cuframes_memory = cuframes_memory::CUFRAMES_MEMORY_CUDA;
    fn base(slot: &mut Self::Slot) -> (usize, u64) {
        (0, slot.device_ptr())
    }
    fn fence(slot: &mut Self::Slot, stream: Option<RawStream>) -> Result<(), Error> {
        Ok(slot.fence(stream.unwrap_or(RawStream::DEFAULT))?)
    }
}

/// The slot description handed to C (addresses as integers).
#[derive(Debug, Clone, Copy)]
pub struct SlotInfo {
    /// The C struct, without pointers.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Format code.
    pub pixel_format: u32,
    /// Memory.
    pub memory: cuframes_memory,
    /// Planes.
    pub plane_count: u32,
    /// (host address, device address, pitch, row bytes, rows) per plane.
    pub planes: [(usize, u64, usize, usize, usize); CUFRAMES_MAX_PLANES],
}

fn busy() -> Error {
    Error::new(
        CUFRAMES_ERR_UNSUPPORTED,
        "a slot is acquired: commit or abandon it first",
    )
}

fn no_slot() -> Error {
    Error::new(
        CUFRAMES_ERR_UNSUPPORTED,
        "no slot is acquired (cuframes_publisher_acquire first)",
    )
}

fn gone() -> Error {
    Error::new(
        CUFRAMES_ERR_INTERNAL,
        "the publisher was lost in an earlier failed call",
    )
}

#[allow(private_bounds)]
impl<B: SlotMemory> State<B> {
    fn publisher(&mut self) -> Result<&mut Publisher<B>, Error> {
        match self {
            State::Idle(p) => Ok(p),
            State::Acquired(_) => Err(busy()),
            State::Gone => Err(gone()),
        }
    }

    /// Claims a slot: `CUFRAMES_ERR_DROPPED` when every slot is leased.
    fn acquire(&mut self) -> Result<SlotInfo, Error> {
        let p = match std::mem::replace(self, State::Gone) {
            State::Idle(p) => p,
            other => {
                let e = if matches!(other, State::Acquired(_)) {
                    busy()
                } else {
                    gone()
                };
                *self = other;
                return Err(e);
            }
        };
        let cell = AcquiredTryBuilder {
            publisher: p,
            guard_builder: |p: &mut Publisher<B>| p.acquire().map(Some).ok_or(()),
        }
        .try_build_or_recover();
        let mut cell = match cell {
            Ok(c) => c,
            Err(((), heads)) => {
                *self = State::Idle(heads.publisher);
                return Err(Error::new(
                    CUFRAMES_ERR_DROPPED,
                    "every slot is leased: the frame is dropped (counted)",
                ));
            }
        };
        let info = cell.with_guard_mut(|g| {
            let g = g.as_mut()?;
            let s = *g.stream();
            let (host, dev) = B::base(g.slot());
            let fmt = s.format();
            let mut planes = [(0, 0, 0, 0, 0); CUFRAMES_MAX_PLANES];
            let count = fmt.plane_count().unwrap_or(0);
            for i in 0..count.min(CUFRAMES_MAX_PLANES as u32) {
                let (row, rows) = fmt.plane_extent(i, s.width as u32, s.height as u32)?;
                let off = *s.plane_offset.get(i as usize)?;
                let pitch = *s.plane_pitch.get(i as usize)? as usize;
                planes[i as usize] = (
                    if host != 0 { host + off as usize } else { 0 },
                    if dev != 0 { dev + off } else { 0 },
                    pitch,
                    row as usize,
                    rows as usize,
                );
            }
            Some(SlotInfo {
                width: s.width as u32,
                height: s.height as u32,
                pixel_format: fmt.code(),
                memory: B::MEMORY,
                plane_count: count,
                planes,
            })
        });
        *self = State::Acquired(cell);
        info.ok_or_else(|| Error::new(CUFRAMES_ERR_INTERNAL, "slot without a layout"))
    }

    fn commit(
        &mut self,
        meta: FrameMeta,
        stream: Option<RawStream>,
        committed: &mut u64,
    ) -> Result<u64, Error> {
        let mut cell = match std::mem::replace(self, State::Gone) {
            State::Acquired(c) => c,
            other => {
                *self = other;
                return Err(no_slot());
            }
        };
        let meta = FrameMeta {
            source_index: if meta.source_index == u64::MAX {
                *committed
            } else {
                meta.source_index
            },
            ..meta
        };
        let r: Result<u64, Error> = cell.with_guard_mut(|g| {
            let mut guard = g.take().ok_or_else(no_slot)?;
            // A failed fence abandons the slot (the guard drops): nothing
            // half-written is published.
            B::fence(guard.slot(), stream)?;
            Ok(guard.commit(meta))
        });
        *self = State::Idle(cell.into_heads().publisher);
        let seq = r?;
        *committed += 1;
        Ok(seq)
    }

    fn abandon(&mut self) -> Result<(), Error> {
        match std::mem::replace(self, State::Gone) {
            State::Acquired(c) => {
                // Dropping the guard (inside into_heads) abandons the slot.
                *self = State::Idle(c.into_heads().publisher);
                Ok(())
            }
            other => {
                *self = other;
                Err(no_slot())
            }
        }
    }
}

/// The publisher of either backend.
pub enum AnyPublisher {
    /// Host memory.
    Host(State<HostBackend>),
    /// CUDA memory.
    Cuda(State<CudaBackend>),
}

/// A `cuframes_publisher_t`.
pub struct PublisherObj {
    inner: Mutex<(AnyPublisher, u64)>,
}

macro_rules! with_state {
    ($any:expr, $s:ident => $body:expr) => {
        match $any {
            AnyPublisher::Host($s) => $body,
            AnyPublisher::Cuda($s) => $body,
        }
    };
}

impl PublisherObj {
    /// Starts a publisher as `cfg` says.
    pub fn create(cfg: PublishConfig) -> Result<Self, Error> {
        let cuda = match cfg.backend {
            x if x == cuframes_backend::CUFRAMES_BACKEND_HOST as i32 => false,
            x if x == cuframes_backend::CUFRAMES_BACKEND_CUDA as i32 => true,
            _ => cuframes_cuda::driver_present() && CudaBackend::publisher(cfg.cuda).is_ok(),
        };
        let any = if cuda {
            let b = CudaBackend::publisher(cfg.cuda)?;
            AnyPublisher::Cuda(State::Idle(Publisher::create(b, cfg.config, cfg.stream)?))
        } else {
            AnyPublisher::Host(State::Idle(Publisher::create(
                HostBackend,
                cfg.config,
                cfg.stream,
            )?))
        };
        Ok(PublisherObj {
            inner: Mutex::new((any, 0)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (AnyPublisher, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims a slot.
    pub fn acquire(&self) -> Result<SlotInfo, Error> {
        let mut g = self.lock();
        with_state!(&mut g.0, s => s.acquire())
    }

    /// Commits the acquired slot.
    pub fn commit(&self, meta: FrameMeta, stream: Option<RawStream>) -> Result<u64, Error> {
        let mut g = self.lock();
        let (any, committed) = &mut *g;
        with_state!(any, s => s.commit(meta, stream, committed))
    }

    /// Abandons the acquired slot.
    pub fn abandon(&self) -> Result<(), Error> {
        let mut g = self.lock();
        with_state!(&mut g.0, s => s.abandon())
    }

    /// Publishes one packet.
    pub fn publish_packet(
        &self,
        data: &[u8],
        pts: Option<i64>,
        dts: Option<i64>,
        flags: u32,
    ) -> Result<u64, Error> {
        let mut g = self.lock();
        with_state!(&mut g.0, s => Ok(s.publisher()?.publish_packet(data, pts, dts, flags)?))
    }

    /// Stores the codec extradata.
    pub fn set_codec_extradata(&self, data: &[u8]) -> Result<(), Error> {
        let mut g = self.lock();
        with_state!(&mut g.0, s => Ok(s.publisher()?.set_codec_extradata(data)?))
    }

    /// Connected subscribers.
    pub fn subscriber_count(&self) -> Result<usize, Error> {
        let mut g = self.lock();
        with_state!(&mut g.0, s => Ok(s.publisher()?.subscriber_count()))
    }

    /// Waits for `n` subscribers, up to `timeout`. The object lock is not
    /// held while waiting.
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<bool, Error> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.subscriber_count()? >= n {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Says GOODBYE end of stream and stops (the object is consumed).
    pub fn finish(self) {
        let (any, _) = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        fn fin<B: Backend + Send + Sync + 'static>(s: State<B>) {
            match s {
                State::Idle(p) => p.finish(),
                State::Acquired(c) => c.into_heads().publisher.finish(),
                State::Gone => {}
            }
        }
        match any {
            AnyPublisher::Host(s) => fin(s),
            AnyPublisher::Cuda(s) => fin(s),
        }
    }
}
