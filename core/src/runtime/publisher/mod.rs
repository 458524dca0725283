//! The publisher engine (`docs/protocol.md` §5, §6).
//!
//! [`Publisher::create`] binds `<runtime dir>/<key>.sock`, allocates the
//! control region and the slots, and starts one control thread (no thread per
//! subscriber). [`Publisher::publish`] runs on the caller's thread: it claims
//! a slot, lets the caller write the frame, and commits it.

mod control;
mod packets;
mod readers;

pub use packets::{PacketError, PacketRingConfig};

use super::backend::{Backend, SlotExport};
use super::dir::{self, DirError};
use super::futex;
use super::shm::{self, Mapping, ShmError};
use crate::layout::{ControlLayout, StreamDesc, StreamError, MAX_SLOTS, MIN_SLOTS};
use crate::ring::{Claim, ControlWords, FrameMeta, RingWriter, SlotClaim};
use crate::sync::{AtomicU32, Ordering};
use crate::PublishPolicy;
use readers::Reader;
use rustix::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Publisher settings. `PublisherConfig::new(key)` gives the defaults.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Stream key, `[A-Za-z0-9_-]{1,63}`.
    pub key: String,
    /// Frame slots, 2..=64 (default 8).
    pub slots: u32,
    /// What to do when no slot may be rewritten (default `DropFrame`).
    pub policy: PublishPolicy,
    /// `Wait`: longest wait for a slot before an unread frame is overwritten
    /// or the new frame is dropped (default 2 s).
    pub wait_timeout: Duration,
    /// A lease held longer than this is revoked (default 5 s).
    pub lease_timeout: Duration,
    /// Most simultaneous subscribers (default 64).
    pub max_subscribers: usize,
    /// Socket file mode (default 0o660).
    pub socket_mode: u32,
    /// SO_PEERCRED allow-list of uids (empty with `allowed_gids` empty: anyone
    /// who can open the socket; root is always allowed).
    pub allowed_uids: Vec<u32>,
    /// SO_PEERCRED allow-list of gids.
    pub allowed_gids: Vec<u32>,
    /// Runtime directory (default [`dir::runtime_dir`]).
    pub runtime_dir: Option<PathBuf>,
    /// The encoded packet ring (`docs/protocol.md` §9); `None` (default):
    /// no ring, and HELLOs that want only packets are refused.
    pub packets: Option<PacketRingConfig>,
}

impl PublisherConfig {
    /// Defaults for `key`.
    pub fn new(key: &str) -> Self {
        PublisherConfig {
            key: key.to_owned(),
            slots: 8,
            policy: PublishPolicy::DropFrame,
            wait_timeout: Duration::from_secs(2),
            lease_timeout: Duration::from_secs(5),
            max_subscribers: 64,
            socket_mode: 0o660,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            runtime_dir: None,
            packets: None,
        }
    }
}

/// Starting a publisher failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Bad key or runtime directory.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// `slots` is outside 2..=64.
    #[error("slot count {0} is outside 2..=64")]
    SlotCount(u32),
    /// The stream description is unusable.
    #[error("stream description: {0}")]
    Stream(#[from] StreamError),
    /// Another publisher answers on this key.
    #[error("a publisher is already live on {0}")]
    AlreadyRunning(PathBuf),
    /// The socket could not be bound.
    #[error("cannot bind {path}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The control region could not be made.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The packet ring configuration is invalid.
    #[error("packet ring: {0}")]
    Packets(crate::packet::PacketLayoutError),
    /// `PacketRingConfig::extradata` is longer than 4096 bytes.
    #[error("packet ring: {0}")]
    Extradata(crate::packet::ExtradataError),
    /// The backend could not allocate or export a slot.
    #[error("backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// Publishing one frame failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError<E: std::error::Error + 'static> {
    /// The caller's writer failed; the slot was given back unchanged.
    #[error("writing the frame into its slot failed: {0}")]
    Write(#[source] E),
}

/// What happened to a frame handed to [`Publisher::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Committed with this sequence number.
    Committed(u64),
    /// Dropped: every slot was leased (and, under `Wait`, stayed so for `wait_timeout`).
    Dropped,
}

/// Publisher counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Frames committed.
    pub published: u64,
    /// Frames dropped for lack of a slot.
    pub dropped: u64,
    /// Connected subscribers.
    pub subscribers: usize,
    /// Leases revoked after `lease_timeout`.
    pub revoked_leases: u64,
    /// Times an InOrder subscriber lagged past `wait_timeout` and lost frames.
    pub lagged: u64,
    /// Packets published into the packet ring.
    pub packets_published: u64,
}

pub(crate) struct Shared<B: Backend> {
    backend: B,
    config: PublisherConfig,
    layout: ControlLayout,
    control_fd: OwnedFd,
    control: Mapping,
    slot_size: u64,
    exports: Vec<SlotExport>,
    handles: Vec<u8>,
    handle_len: u32,
    readers: Mutex<Vec<Reader>>,
    packets: Option<packets::PacketRegion>,
    stop: AtomicBool,
    end_of_stream: AtomicBool,
}

impl<B: Backend> Shared<B> {
    fn words(&self) -> ControlWords<'_> {
        match super::subscriber::control_words(&self.control, self.layout) {
            Ok(c) => c,
            Err(_) => unreachable_layout(),
        }
    }

    pub(crate) fn writer(&self) -> RingWriter<'_> {
        RingWriter::new(self.words())
    }

    pub(crate) fn release_wake(&self) -> &AtomicU32 {
        self.words().release_wake()
    }

    fn readers(&self) -> MutexGuard<'_, Vec<Reader>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add_reader(&self, r: Reader) {
        self.readers().push(r);
    }

    pub(crate) fn remove_reader(&self, id: u32) {
        self.readers().retain(|r| r.id != id);
        // Wake a publisher waiting for a slot this reader pinned.
        self.release_wake().fetch_add(1, Ordering::SeqCst);
        futex::wake_all(self.release_wake());
    }
}

#[cold]
fn unreachable_layout() -> ! {
    // The control mapping is created by `create` with exactly `region_size`
    // bytes, which always holds the header's futex words and every slot.
    core::panic!("control region smaller than its own layout")
}

/// A running publisher for one stream key.
pub struct Publisher<B: Backend + Send + Sync + 'static> {
    shared: Arc<Shared<B>>,
    slots: Vec<B::Slot>,
    stream: StreamDesc,
    control_thread: Option<JoinHandle<()>>,
    socket_path: PathBuf,
    stats: PublisherStats,
}

impl<B: Backend + Send + Sync + 'static> Publisher<B> {
    /// Binds the key's socket and allocates a ring for frames of `stream`.
    ///
    /// Errors: a bad key ([`CreateError::Dir`]), a live publisher on the key
    /// ([`CreateError::AlreadyRunning`]; a stale socket of a dead one is
    /// replaced), allocation failures.
    pub fn create(
        backend: B,
        config: PublisherConfig,
        stream: StreamDesc,
    ) -> Result<Self, CreateError> {
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&config.slots) {
            return Err(CreateError::SlotCount(config.slots));
        }
        let layout =
            ControlLayout::new(config.slots).ok_or(CreateError::SlotCount(config.slots))?;
        let dir = config.runtime_dir.clone().unwrap_or_else(dir::runtime_dir);
        let socket_path = dir::socket_path(&dir, &config.key)?;
        stream.validate(stream.frame_size)?;
        dir::ensure_dir(&dir)?;
        if socket_path.exists() {
            match UnixStream::connect(&socket_path) {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Ok(_) => return Err(CreateError::AlreadyRunning(socket_path)),
                Err(source) => {
                    return Err(CreateError::Bind {
                        path: socket_path,
                        source,
                    })
                }
            }
            tracing::warn!(path = %socket_path.display(), "replacing the stale socket of a publisher that died");
            let _ = std::fs::remove_file(&socket_path);
        }

        let slot_size = stream.frame_size;
        let mut slots = Vec::with_capacity(config.slots as usize);
        let mut exports = Vec::with_capacity(config.slots as usize);
        for i in 0..config.slots {
            let s = backend
                .allocate(i, slot_size)
                .map_err(|e| CreateError::Backend(Box::new(e)))?;
            exports.push(
                backend
                    .export(&s)
                    .map_err(|e| CreateError::Backend(Box::new(e)))?,
            );
            slots.push(s);
        }
        let handle_len = exports.first().map_or(0, |e| e.handle.len()) as u32;
        let handles: Vec<u8> = exports
            .iter()
            .flat_map(|e| e.handle.iter().copied())
            .collect();

        let (control_fd, control) =
            shm::create_shared(&format!("cuframes-{}", config.key), layout.region_size())?;
        let header = layout.header(
            slot_size,
            backend.memory_kind(),
            backend.sync_kind(),
            backend.gpu_uuid(),
        );

        let packets = config
            .packets
            .as_ref()
            .map(|p| packets::PacketRegion::create(&config.key, p))
            .transpose()?;

        let listener = UnixListener::bind(&socket_path).map_err(|source| CreateError::Bind {
            path: socket_path.clone(),
            source,
        })?;
        let _ = std::fs::set_permissions(
            &socket_path,
            std::fs::Permissions::from_mode(config.socket_mode),
        );
        let _ = listener.set_nonblocking(true);

        let shared = Arc::new(Shared {
            backend,
            config,
            layout,
            control_fd,
            control,
            slot_size,
            exports,
            handles,
            handle_len,
            readers: Mutex::new(Vec::new()),
            packets,
            stop: AtomicBool::new(false),
            end_of_stream: AtomicBool::new(false),
        });
        shared.writer().init(&header, &stream);
        let s2 = Arc::clone(&shared);
        let control_thread = std::thread::Builder::new()
            .name("cuframes-control".into())
            .spawn(move || control::run(s2, listener))
            .map_err(|source| CreateError::Bind {
                path: socket_path.clone(),
                source,
            })?;
        Ok(Publisher {
            shared,
            slots,
            stream,
            control_thread: Some(control_thread),
            socket_path,
            stats: PublisherStats::default(),
        })
    }

    /// The stream description frames are written with.
    pub fn stream(&self) -> &StreamDesc {
        &self.stream
    }

    /// Path of the control socket.
    pub fn socket_path(&self) -> &std::path::Path {
        &self.socket_path
    }

    /// Subscribers connected now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.readers().len()
    }

    /// Counters so far.
    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            subscribers: self.subscriber_count(),
            ..self.stats
        }
    }

    /// Blocks until at least `n` subscribers are connected or `timeout` passes;
    /// returns whether they are.
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.subscriber_count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Publishes one frame: claims a slot, calls `write(slot, stream)` to fill
    /// it (layout: [`Publisher::stream`]), then commits `meta` (its `seq` and
    /// `publish_ns` are set here).
    ///
    /// Under `Wait` it blocks up to `wait_timeout` for a slot; afterwards, or
    /// under `DropFrame`, an unread frame is overwritten (InOrder subscribers
    /// see a counted gap) and, if every slot is leased, the frame is dropped.
    pub fn publish<E, F>(&mut self, meta: FrameMeta, write: F) -> Result<Published, PublishError<E>>
    where
        E: std::error::Error + 'static,
        F: FnOnce(&mut B::Slot, &StreamDesc) -> Result<(), E>,
    {
        let claim = match self.claim_slot() {
            Some(c) => c,
            None => {
                self.shared.writer().count_drop();
                self.stats.dropped += 1;
                return Ok(Published::Dropped);
            }
        };
        let slot = &mut self.slots[claim.slot as usize];
        if let Err(e) = write(slot, &self.stream) {
            self.shared.writer().abandon(claim);
            return Err(PublishError::Write(e));
        }
        let meta = FrameMeta {
            publish_ns: super::clock::monotonic_ns(),
            generation: self.stream.generation,
            ..meta
        };
        let seq = self.shared.writer().commit(claim, &meta);
        futex::wake_all(self.shared.words().wake());
        self.stats.published += 1;
        Ok(Published::Committed(seq))
    }

    fn claim_slot(&mut self) -> Option<SlotClaim> {
        let cfg = &self.shared.config;
        let wait = cfg.policy == PublishPolicy::Wait;
        let deadline = Instant::now() + cfg.wait_timeout;
        loop {
            let release_seen = self.shared.release_wake().load(Ordering::SeqCst);
            let outcome = {
                let mut readers = self.shared.readers();
                let now = Instant::now();
                for r in readers.iter_mut() {
                    let n = r.expire_leases(now, cfg.lease_timeout);
                    if n > 0 {
                        tracing::warn!(subscriber = r.id, name = %r.name, "revoked {n} lease(s) held past {:?}", cfg.lease_timeout);
                        self.stats.revoked_leases += n as u64;
                    }
                }
                let refs: Vec<_> = readers.iter().filter_map(|r| r.as_ref(wait)).collect();
                let claim = self.shared.writer().claim(&refs, wait);
                drop(refs);
                if let Claim::Busy {
                    blocked_by_unread: true,
                } = claim
                {
                    if Instant::now() >= deadline {
                        // Lagging InOrder readers lose frames from here on.
                        let latest = self.shared.writer().next_seq() - 1;
                        for r in readers
                            .iter_mut()
                            // Packet-only subscribers (no lease row) read no frames.
                            .filter(|r| r.mode == crate::DeliveryMode::InOrder && r.row.is_some())
                        {
                            if r.consumed() < latest {
                                tracing::warn!(subscriber = r.id, name = %r.name, "InOrder subscriber lagged past {:?}; overwriting its unread frames", cfg.wait_timeout);
                                r.floor = latest;
                                self.stats.lagged += 1;
                            }
                        }
                    }
                }
                claim
            };
            match outcome {
                Claim::Claimed(c) => return Some(c),
                Claim::Busy { .. } if wait && Instant::now() < deadline => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    futex::wait(
                        self.shared.release_wake(),
                        release_seen,
                        left.min(Duration::from_millis(1)),
                    );
                }
                Claim::Busy {
                    blocked_by_unread: true,
                } => continue,
                Claim::Busy { .. } => return None,
            }
        }
    }

    /// Marks the stream ended, says GOODBYE (end of stream) to every
    /// subscriber and removes the socket. Subscribers still drain the frames
    /// left in the ring before they see `Disconnected`.
    pub fn finish(mut self) {
        self.shared.end_of_stream.store(true, Ordering::Release);
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(p) = &self.shared.packets {
            p.writer().close();
        }
        self.shared.writer().close();
        futex::wake_all(self.shared.words().wake());
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.control_thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

impl<B: Backend + Send + Sync + 'static> Drop for Publisher<B> {
    fn drop(&mut self) {
        if self.control_thread.is_some() {
            self.shutdown();
        }
    }
}
