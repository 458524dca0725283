//! Publishers behind the C handles (safe Rust).
//!
//! A publisher is a `cuframes` facade [`Publisher`]
//! ([`Publisher::create`]: the backend choice, `CUFRAMES_BACKEND_AUTO`'s
//! CUDA-else-host fallback, the backend created once). The C API fills a
//! slot across calls (acquire, write, commit), while the engine's
//! `Publisher::acquire` returns a `SlotGuard` that mutably borrows the
//! engine publisher (reached through the facade's `as_host_mut` /
//! `as_cuda_mut`). Between acquire and commit / abandon the facade
//! publisher and its guard therefore live together in an `ouroboros`
//! self-referencing cell ([`Acquired`]); commit or abandon drops the guard
//! and takes the publisher back out. While a slot is held the publisher is
//! borrowed, so the other publisher calls (packets, extradata) answer
//! `CUFRAMES_ERR_UNSUPPORTED` until the slot is committed or abandoned.

use crate::error::*;
use crate::types::*;
use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    self as rt, Backend as EngineBackend, HostBackend, PacketRingConfig, PublisherConfig, SlotGuard,
};
use cuframes_core::{Codec, PixelFormat, PublishPolicy};
use cuframes_facade::cuda::{CudaBackend, CudaConfig, CudaMemory, CudaSync, RawStream};
use cuframes_facade::{Backend, BackendKind, Publisher, PublisherOptions};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// What `cuframes_publisher_options_init` fills in: core's defaults
/// ([`PublisherConfig::new`], [`PacketRingConfig::new`]); the backend is
/// `CUFRAMES_BACKEND_HOST` (a C publisher writes its slots itself, and the
/// memory it writes must not change with the machine).
pub fn default_publisher_options() -> cuframes_publisher_options_t {
    let c = PublisherConfig::new("");
    let r = PacketRingConfig::new(0);
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
        slots: c.slots,
        policy: match c.policy {
            PublishPolicy::Wait => cuframes_policy::CUFRAMES_POLICY_WAIT,
            _ => cuframes_policy::CUFRAMES_POLICY_DROP_FRAME,
        } as i32,
        wait_timeout_ms: ms(c.wait_timeout),
        lease_timeout_ms: ms(c.lease_timeout),
        max_subscribers: u32::try_from(c.max_subscribers).unwrap_or(u32::MAX),
        socket_mode: c.socket_mode,
        backend: cuframes_backend::CUFRAMES_BACKEND_HOST as i32,
        cuda_memory: cuframes_cuda_memory::CUFRAMES_CUDA_MEMORY_VMM_FD as i32,
        cuda_sync: cuframes_cuda_sync::CUFRAMES_CUDA_SYNC_HOST_FENCE as i32,
        cuda_device: 0,
        packets: u32::from(c.packets.is_some()),
        packet_codec_id: r.codec_id,
        packet_slots: r.slots,
        packet_data_size: r.data_size,
        max_packet_size: r.max_packet_size,
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
    opts: PublisherOptions,
    stream: StreamDesc,
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
        let mut opts = PublisherOptions::new(&key);
        opts.backend = crate::subscriber::backend_from_c(o.backend)?;
        if opts.backend == Backend::Vulkan {
            return Err(Error::new(
                CUFRAMES_ERR_UNSUPPORTED,
                "a C publisher cannot write Vulkan slots: publish with CUFRAMES_BACKEND_HOST or CUFRAMES_BACKEND_CUDA",
            ));
        }
        let config = &mut opts.config;
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
                ..PacketRingConfig::new(o.packet_codec_id)
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
        opts.cuda = CudaConfig {
            memory,
            sync,
            device: o.cuda_device,
        };
        Ok(PublishConfig { opts, stream })
    }
}

/// A facade publisher and the slot it lent out (see the module docs).
#[ouroboros::self_referencing]
pub struct Acquired<B: EngineBackend + Send + Sync + 'static> {
    publisher: Publisher,
    #[borrows(mut publisher)]
    #[covariant]
    guard: Option<SlotGuard<'this, B>>,
}

/// A publisher, idle or with a slot of its backend lent out.
// One per handle, moved between its variants once per frame: boxing the
// idle publisher would cost an allocation per frame instead.
#[allow(clippy::large_enum_variant)]
pub enum State {
    /// No slot held.
    Idle(Publisher),
    /// A host-memory slot is held between acquire and commit / abandon.
    Host(Acquired<HostBackend>),
    /// A CUDA slot is held between acquire and commit / abandon.
    Cuda(Acquired<CudaBackend>),
    /// Only while a transition is under way (or after a panic in one).
    Gone,
}

/// The engine backends whose slots C writes into, for [`State::acquire`].
trait SlotMemory: EngineBackend + Send + Sync + Sized + 'static {
    const MEMORY: cuframes_memory;
    /// The facade publisher's engine publisher, when it is of this backend.
    fn engine(p: &mut Publisher) -> Option<&mut rt::Publisher<Self>>;
    /// The [`State`] holding a slot of this backend.
    fn held(a: Acquired<Self>) -> State;
    /// (host base address, device base address) of a slot.
    fn base(slot: &mut Self::Slot) -> (usize, u64);
    /// Makes the frame written on `stream` visible before commit.
    fn fence(slot: &mut Self::Slot, stream: Option<RawStream>) -> Result<(), Error>;
}

impl SlotMemory for HostBackend {
    const MEMORY: cuframes_memory = cuframes_memory::CUFRAMES_MEMORY_HOST;
    fn engine(p: &mut Publisher) -> Option<&mut rt::Publisher<Self>> {
        p.as_host_mut()
    }
    fn held(a: Acquired<Self>) -> State {
        State::Host(a)
    }
    fn base(slot: &mut Self::Slot) -> (usize, u64) {
        (slot.bytes_mut().as_mut_ptr() as usize, 0)
    }
    fn fence(_: &mut Self::Slot, _: Option<RawStream>) -> Result<(), Error> {
        Ok(())
    }
}

impl SlotMemory for CudaBackend {
    const MEMORY: cuframes_memory = cuframes_memory::CUFRAMES_MEMORY_CUDA;
    fn engine(p: &mut Publisher) -> Option<&mut rt::Publisher<Self>> {
        p.as_cuda_mut()
    }
    fn held(a: Acquired<Self>) -> State {
        State::Cuda(a)
    }
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

/// Claims a slot of `p` (whose backend is `B`): the new state and the
/// slot, or `p` back idle and `CUFRAMES_ERR_DROPPED` when every slot is
/// leased.
fn acquire_in<B: SlotMemory>(p: Publisher) -> (State, Result<SlotInfo, Error>) {
    let cell = AcquiredTryBuilder {
        publisher: p,
        guard_builder: |p: &mut Publisher| {
            B::engine(p).and_then(|e| e.acquire()).map(Some).ok_or(())
        },
    }
    .try_build_or_recover();
    let mut cell = match cell {
        Ok(c) => c,
        Err(((), heads)) => {
            return (
                State::Idle(heads.publisher),
                Err(Error::new(
                    CUFRAMES_ERR_DROPPED,
                    "every slot is leased: the frame is dropped (counted)",
                )),
            );
        }
    };
    let info = cell.with_guard_mut(|g| {
        let g = g.as_mut()?;
        let s = *g.stream();
        let layout = *g.layout();
        let (host, dev) = B::base(g.slot());
        let fmt = s.format();
        let mut planes = [(0, 0, 0, 0, 0); CUFRAMES_MAX_PLANES];
        let count = layout.planes().len().min(CUFRAMES_MAX_PLANES);
        for (i, p) in layout.planes().iter().take(count).enumerate() {
            planes[i] = (
                if host != 0 {
                    host + p.offset() as usize
                } else {
                    0
                },
                if dev != 0 { dev + p.offset() } else { 0 },
                p.pitch() as usize,
                p.row_bytes() as usize,
                p.rows() as usize,
            );
        }
        Some(SlotInfo {
            width: s.width as u32,
            height: s.height as u32,
            pixel_format: fmt.code(),
            memory: B::MEMORY,
            plane_count: count as u32,
            planes,
        })
    });
    (
        B::held(cell),
        info.ok_or_else(|| Error::new(CUFRAMES_ERR_INTERNAL, "slot without a layout")),
    )
}

/// Fences and commits the slot held in `cell`; returns the publisher (the
/// slot abandoned if the fence failed) and the sequence number.
fn commit_in<B: SlotMemory>(
    mut cell: Acquired<B>,
    meta: FrameMeta,
    stream: Option<RawStream>,
) -> (Publisher, Result<u64, Error>) {
    let r: Result<u64, Error> = cell.with_guard_mut(|g| {
        let mut guard = g.take().ok_or_else(no_slot)?;
        // A failed fence abandons the slot (the guard drops): nothing
        // half-written is published.
        B::fence(guard.slot(), stream)?;
        Ok(guard.commit(meta))
    });
    (cell.into_heads().publisher, r)
}

impl State {
    fn publisher(&mut self) -> Result<&mut Publisher, Error> {
        match self {
            State::Idle(p) => Ok(p),
            State::Host(_) | State::Cuda(_) => Err(busy()),
            State::Gone => Err(gone()),
        }
    }

    /// Claims a slot: `CUFRAMES_ERR_DROPPED` when every slot is leased.
    fn acquire(&mut self) -> Result<SlotInfo, Error> {
        let p = match std::mem::replace(self, State::Gone) {
            State::Idle(p) => p,
            other => {
                let e = if matches!(other, State::Gone) {
                    gone()
                } else {
                    busy()
                };
                *self = other;
                return Err(e);
            }
        };
        let (state, r) = match p.backend() {
            BackendKind::Host => acquire_in::<HostBackend>(p),
            BackendKind::Cuda => acquire_in::<CudaBackend>(p),
            other => (
                State::Idle(p),
                Err(Error::new(
                    CUFRAMES_ERR_UNSUPPORTED,
                    format!("slots of the {other} backend cannot be written from C"),
                )),
            ),
        };
        *self = state;
        r
    }

    fn commit(
        &mut self,
        meta: FrameMeta,
        stream: Option<RawStream>,
        committed: &mut u64,
    ) -> Result<u64, Error> {
        let meta = FrameMeta {
            source_index: if meta.source_index == u64::MAX {
                *committed
            } else {
                meta.source_index
            },
            ..meta
        };
        let (p, r) = match std::mem::replace(self, State::Gone) {
            State::Host(c) => commit_in(c, meta, stream),
            State::Cuda(c) => commit_in(c, meta, stream),
            other => {
                *self = other;
                return Err(no_slot());
            }
        };
        *self = State::Idle(p);
        let seq = r?;
        *committed += 1;
        Ok(seq)
    }

    fn abandon(&mut self) -> Result<(), Error> {
        // Dropping the guard (inside into_heads) abandons the slot.
        let p = match std::mem::replace(self, State::Gone) {
            State::Host(c) => c.into_heads().publisher,
            State::Cuda(c) => c.into_heads().publisher,
            other => {
                *self = other;
                return Err(no_slot());
            }
        };
        *self = State::Idle(p);
        Ok(())
    }

    /// The facade publisher, a held slot abandoned.
    fn into_publisher(self) -> Option<Publisher> {
        match self {
            State::Idle(p) => Some(p),
            State::Host(c) => Some(c.into_heads().publisher),
            State::Cuda(c) => Some(c.into_heads().publisher),
            State::Gone => None,
        }
    }
}

/// A `cuframes_publisher_t`.
pub struct PublisherObj {
    inner: Mutex<(State, u64)>,
}

impl PublisherObj {
    /// Starts a publisher as `cfg` says: the facade's [`Publisher::create`]
    /// (`CUFRAMES_BACKEND_AUTO`: CUDA when built and usable, else host
    /// memory, [`Backend::resolve_publisher`]).
    pub fn create(cfg: PublishConfig) -> Result<Self, Error> {
        let p = Publisher::create(cfg.opts, cfg.stream)?;
        Ok(PublisherObj {
            inner: Mutex::new((State::Idle(p), 0)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (State, u64)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims a slot.
    pub fn acquire(&self) -> Result<SlotInfo, Error> {
        self.lock().0.acquire()
    }

    /// Commits the acquired slot.
    pub fn commit(&self, meta: FrameMeta, stream: Option<RawStream>) -> Result<u64, Error> {
        let mut g = self.lock();
        let (state, committed) = &mut *g;
        state.commit(meta, stream, committed)
    }

    /// Abandons the acquired slot.
    pub fn abandon(&self) -> Result<(), Error> {
        self.lock().0.abandon()
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
        Ok(g.0.publisher()?.publish_packet(data, pts, dts, flags)?)
    }

    /// Stores the codec extradata.
    pub fn set_codec_extradata(&self, data: &[u8]) -> Result<(), Error> {
        let mut g = self.lock();
        Ok(g.0.publisher()?.set_codec_extradata(data)?)
    }

    /// Connected subscribers.
    pub fn subscriber_count(&self) -> Result<usize, Error> {
        let mut g = self.lock();
        Ok(g.0.publisher()?.subscriber_count())
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
        let (state, _) = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = state.into_publisher() {
            p.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_option_defaults_are_cores() {
        let c = default_publisher_options();
        let d = PublisherConfig::new("k");
        let r = PacketRingConfig::new(0);
        assert_eq!(c.slots, d.slots);
        assert_eq!(u128::from(c.wait_timeout_ms), d.wait_timeout.as_millis());
        assert_eq!(
            u128::from(c.lease_timeout_ms),
            PublisherConfig::DEFAULT_LEASE_TIMEOUT.as_millis()
        );
        assert_eq!(c.max_subscribers as usize, d.max_subscribers);
        assert_eq!(c.socket_mode, d.socket_mode);
        assert_eq!(
            (c.packet_slots, c.packet_data_size, c.max_packet_size),
            (r.slots, r.data_size, r.max_packet_size)
        );
        // The values the header documents.
        assert_eq!(
            (
                c.slots,
                c.wait_timeout_ms,
                c.lease_timeout_ms,
                c.max_subscribers
            ),
            (8, 2000, 5000, 64)
        );
        assert_eq!(c.socket_mode, 0o660);
        let mut c = c;
        c.width = 64;
        c.height = 64;
        let cfg = PublishConfig::from_c(&c, "k".into(), None).unwrap();
        assert_eq!(cfg.opts.backend, Backend::Host);
        assert_eq!(cfg.opts.config.lease_timeout, d.lease_timeout);
    }

    #[test]
    fn a_c_publisher_cannot_write_vulkan_slots() {
        let mut c = default_publisher_options();
        c.width = 64;
        c.height = 64;
        c.backend = cuframes_backend::CUFRAMES_BACKEND_VULKAN as i32;
        let e = PublishConfig::from_c(&c, "k".into(), None).unwrap_err();
        assert_eq!(e.code, CUFRAMES_ERR_UNSUPPORTED);
    }
}
