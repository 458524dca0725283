//! The publisher engine (`docs/protocol.md` §5, §6).
//!
//! [`Publisher::create`] binds `<runtime dir>/<key>.sock`, allocates the
//! control region and the slots, and starts one control thread (no thread per
//! subscriber). [`Publisher::publish`] runs on the caller's thread: it claims
//! a slot, lets the caller write the frame, and commits it.

mod config;
mod control;
mod error;
mod guard;
mod lease_clock;
mod packets;
mod readers;
mod stats;

pub use config::PublisherConfig;
pub use error::{ChangeError, CreateError, PublishError};
pub use guard::SlotGuard;
pub use lease_clock::{LeaseClock, LeaseScan, PeerName};
pub use packets::{PacketError, PacketRingConfig};
pub use stats::{HeldLease, Published, PublisherStats};

use super::backend::{BackendFailure, Exporter, SlotExport};
use super::dir;
use super::futex;
use super::shm::{self, Mapping, ShmError};
use crate::layout::{ControlLayout, FrameLayout, StreamDesc, MAX_SLOTS, MIN_SLOTS};
use crate::ring::{Claim, ControlWords, FrameMeta, RingWriter, SlotClaim};
use crate::sync::Ordering;
use crate::PublishPolicy;
use readers::Reader;
use rustix::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One ring generation as the publisher shares it: the control region and
/// the slot exports sent in WELCOME (`docs/protocol.md` §6: a stream change
/// makes a new one).
pub(crate) struct RingShared {
    layout: ControlLayout,
    control_fd: OwnedFd,
    control: Mapping,
    slot_size: u64,
    exports: Vec<SlotExport>,
    handles: Vec<u8>,
    handle_len: u32,
    /// The stream description's generation.
    generation: u64,
    /// `latest_seq` when the ring was made: its frames are above it; the
    /// `start_seq` of re-WELCOMEs for it.
    base_seq: u64,
    /// Set once the region is closed (`publisher_state` CLOSED).
    closed: AtomicBool,
}

impl RingShared {
    fn words(&self) -> ControlWords<'_> {
        match super::shm::control_words(&self.control, self.layout) {
            Ok(c) => c,
            Err(_) => unreachable_layout(),
        }
    }

    pub(crate) fn writer(&self) -> RingWriter<'_> {
        RingWriter::new(self.words())
    }

    /// Closes the region (CLOSED, wake) once.
    pub(crate) fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.writer().close();
            futex::wake_all(self.words().wake());
        }
    }
}

pub(crate) struct Shared<B: Exporter> {
    backend: B,
    config: PublisherConfig,
    /// The ring new frames go to and new subscribers are welcomed to.
    current: Mutex<Arc<RingShared>>,
    /// Rings replaced by a stream change, to be closed by the control thread
    /// once every subscriber on them has its re-WELCOME.
    retiring: Mutex<Vec<Arc<RingShared>>>,
    /// Subscribers admitted or dropped by the control thread since the
    /// publisher last looked ([`Publisher::apply_joins`]): the publisher
    /// owns the reader table, so a frame takes no lock unless this changed.
    joins: Mutex<Vec<Join>>,
    /// Set whenever something is pushed to `joins` (SeqCst: the claim's
    /// re-check after P2, §5.4); may stay set on an empty queue after a
    /// departure cancelled the admission (one empty `apply_joins`).
    joins_pending: AtomicBool,
    /// Subscribers admitted and not dropped.
    subscribers: crate::sync::AtomicU64,
    packets: Option<packets::PacketRegion>,
    stop: AtomicBool,
    end_of_stream: AtomicBool,
}

impl<B: Exporter> Shared<B> {
    pub(crate) fn current(&self) -> Arc<RingShared> {
        Arc::clone(&self.current.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn take_retiring(&self) -> Vec<Arc<RingShared>> {
        std::mem::take(&mut *self.retiring.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push_join(&self, j: Join) {
        self.joins.lock().unwrap_or_else(|p| p.into_inner()).push(j);
        self.joins_pending.store(true, Ordering::SeqCst);
    }

    /// Subscribers admitted and not dropped.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::SeqCst) as usize
    }

    /// Admits `r`: its leases are honoured by every claim that starts after
    /// this returns, and by a claim under way at its re-check (§5.4).
    pub(crate) fn add_reader(&self, r: Reader) {
        self.subscribers.fetch_add(1, Ordering::SeqCst);
        self.push_join(Join::Add(Box::new(r)));
    }

    /// Drops reader `id`. An admission the publisher thread has not taken
    /// yet is cancelled here (its row unmapped at once), so a publisher that
    /// publishes nothing for a while (a camera away) does not pile up the
    /// rows of subscribers that came and went.
    pub(crate) fn remove_reader(&self, id: u32) {
        let _ = self
            .subscribers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        {
            let mut joins = self.joins.lock().unwrap_or_else(|p| p.into_inner());
            let before = joins.len();
            joins.retain(|j| !matches!(j, Join::Add(r) if r.id == id));
            if joins.len() == before {
                // Admitted already: the publisher thread drops the row.
                joins.push(Join::Remove(id));
                self.joins_pending.store(true, Ordering::SeqCst);
            }
        }
        // Wake a publisher waiting for a slot this reader pinned.
        let ring = self.current();
        let rel = ring.words().release_wake();
        rel.fetch_add(1, Ordering::SeqCst);
        futex::wake_all(rel);
    }
}

/// A change to the reader table, made by the control thread and applied by
/// the publisher thread.
enum Join {
    Add(Box<Reader>),
    Remove(u32),
}

/// A ring replaced by a stream change, kept until no reader can need it.
struct Retired<B: Exporter> {
    ring: Arc<RingShared>,
    _slots: Vec<B::Slot>,
    /// Its last committed sequence number.
    last_seq: u64,
}

/// Allocates `n` slots of `size` bytes and exports them.
#[allow(clippy::type_complexity)]
fn allocate_ring<B: Exporter>(
    backend: &B,
    n: u32,
    size: u64,
) -> Result<(Vec<B::Slot>, Vec<SlotExport>), BackendFailure> {
    let mut slots = Vec::with_capacity(n as usize);
    let mut exports = Vec::with_capacity(n as usize);
    // WELCOME carries a sync fd per slot exactly when the sync kind says so
    // (§4.3); a backend that breaks that would desynchronise every fd after.
    let sync_fds = backend.memory_kind().uses_fds() && backend.sync_kind().fds_per_slot() == 1;
    for i in 0..n {
        let s = backend.allocate(i, size).map_err(BackendFailure::of::<B>)?;
        let e = backend.export(&s).map_err(BackendFailure::of::<B>)?;
        if e.sync_fd.is_some() != sync_fds {
            return Err(BackendFailure::contract::<B>(format!(
                "slot {i}: the backend's export {} a sync fd, its sync kind {:?} {}",
                if e.sync_fd.is_some() { "has" } else { "lacks" },
                backend.sync_kind(),
                if sync_fds { "needs one" } else { "has none" }
            )));
        }
        exports.push(e);
        slots.push(s);
    }
    Ok((slots, exports))
}

/// Makes the control region of a ring for `stream` whose first frame gets
/// `base_seq + 1`, initialised (header, description, empty slots).
fn make_ring<B: Exporter>(
    backend: &B,
    key: &str,
    layout: ControlLayout,
    stream: &StreamDesc,
    exports: Vec<SlotExport>,
    base_seq: u64,
) -> Result<RingShared, ShmError> {
    let slot_size = stream.frame_size;
    let handle_len = exports.first().map_or(0, |e| e.handle.len()) as u32;
    let handles: Vec<u8> = exports
        .iter()
        .flat_map(|e| e.handle.iter().copied())
        .collect();
    let (control_fd, control) =
        shm::create_shared(&format!("cuframes-{key}"), layout.region_size())?;
    let mut header = layout.header(
        slot_size,
        backend.memory_kind(),
        backend.sync_kind(),
        backend.gpu_uuid(),
    );
    // Sequence numbers continue across rings (§5.4, §6).
    header.latest_seq = base_seq;
    let ring = RingShared {
        layout,
        control_fd,
        control,
        slot_size,
        exports,
        handles,
        handle_len,
        generation: stream.generation,
        base_seq,
        closed: AtomicBool::new(false),
    };
    ring.writer().init(&header, stream);
    Ok(ring)
}

#[cold]
fn unreachable_layout() -> ! {
    // The control mapping is created by `create` with exactly `region_size`
    // bytes, which always holds the header's futex words and every slot.
    core::panic!("control region smaller than its own layout")
}

/// A running publisher for one stream key.
pub struct Publisher<B: Exporter + Send + Sync + 'static> {
    shared: Arc<Shared<B>>,
    /// The current ring (the same `Arc` as `shared.current`).
    ring: Arc<RingShared>,
    slots: Vec<B::Slot>,
    /// Rings replaced by [`Publisher::change_stream`], not freed yet.
    retired: Vec<Retired<B>>,
    stream: StreamDesc,
    /// `stream` validated against its slots' size.
    layout: FrameLayout,
    control_thread: Option<JoinHandle<()>>,
    socket_path: PathBuf,
    stats: PublisherStats,
    /// The reader table: owned by the publisher thread, changed only through
    /// [`Shared::joins`].
    readers: Vec<Reader>,
    /// Scratch for the frames alive in the slots (kept to avoid allocating
    /// per frame).
    alive: Vec<u64>,
}

impl<B: Exporter + Send + Sync + 'static> Publisher<B> {
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
        let frame_layout = stream.validate(stream.frame_size)?;
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

        let (slots, exports) = allocate_ring(&backend, config.slots, stream.frame_size)
            .map_err(CreateError::Backend)?;
        let ring = Arc::new(make_ring(
            &backend,
            &config.key,
            layout,
            &stream,
            exports,
            0,
        )?);

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
            current: Mutex::new(Arc::clone(&ring)),
            retiring: Mutex::new(Vec::new()),
            joins: Mutex::new(Vec::new()),
            joins_pending: AtomicBool::new(false),
            subscribers: crate::sync::AtomicU64::new(0),
            packets,
            stop: AtomicBool::new(false),
            end_of_stream: AtomicBool::new(false),
        });
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
            ring,
            slots,
            retired: Vec::new(),
            stream,
            layout: frame_layout,
            control_thread: Some(control_thread),
            socket_path,
            stats: PublisherStats::default(),
            readers: Vec::new(),
            alive: Vec::new(),
        })
    }

    /// The stream description frames are written with.
    pub fn stream(&self) -> &StreamDesc {
        &self.stream
    }

    /// Where each plane of a frame lies in its slot: the validated
    /// [`Publisher::stream`] (offsets, pitches, row bytes, rows; bytes).
    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }

    /// Path of the control socket.
    pub fn socket_path(&self) -> &std::path::Path {
        &self.socket_path
    }

    /// Subscribers connected now.
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscriber_count()
    }

    /// Counters so far.
    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            subscribers: self.subscriber_count(),
            ..self.stats
        }
    }

    /// The leases subscribers hold now (their lease rows, §5.2): one
    /// entry per occupied lease entry, in subscriber order. A lease ends
    /// when the subscriber clears its entry (frame released or dropped).
    pub fn leases(&self) -> Vec<HeldLease> {
        let mut alive = Vec::new();
        self.alive_frames(&mut alive);
        let joins = self.shared.joins.lock().unwrap_or_else(|p| p.into_inner());
        // The table as the next claim will see it.
        let gone = |id: u32| {
            joins
                .iter()
                .any(|j| matches!(j, Join::Remove(r) if *r == id))
        };
        let pending = joins.iter().filter_map(|j| match j {
            Join::Add(r) => Some(&**r),
            Join::Remove(_) => None,
        });
        let mut out = Vec::new();
        for r in self.readers.iter().chain(pending).filter(|r| !gone(r.id)) {
            let Some(row) = r.words().map(|w| w.snapshot()) else {
                continue;
            };
            for (&seq, &revoked) in row.leases.iter().zip(r.revoked.iter()) {
                if seq != 0 {
                    out.push(HeldLease {
                        subscriber: r.id,
                        seq,
                        revoked: revoked == seq || !alive.contains(&seq),
                    });
                }
            }
        }
        out
    }

    /// Blocks until at least `n` subscribers are connected or `timeout` passes;
    /// returns whether they are.
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = super::clock::deadline_after(timeout);
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
    /// `publish_ns` are set here). The closure form of
    /// [`Publisher::acquire`] + [`SlotGuard::commit`].
    ///
    /// Under `Wait` it blocks up to `wait_timeout` for a slot; afterwards, or
    /// under `DropFrame`, an unread frame is overwritten (InOrder subscribers
    /// see a counted gap) and, if every slot is leased, the frame is dropped.
    pub fn publish<E, F>(&mut self, meta: FrameMeta, write: F) -> Result<Published, PublishError<E>>
    where
        E: std::error::Error + 'static,
        F: FnOnce(&mut B::Slot, &StreamDesc) -> Result<(), E>,
    {
        let Some(mut guard) = self.acquire() else {
            return Ok(Published::Dropped);
        };
        let (slot, stream) = guard.parts();
        write(slot, stream).map_err(PublishError::Write)?;
        Ok(Published::Committed(guard.commit(meta)))
    }

    /// Claims a slot for the next frame, for callers that fill it across
    /// calls (the C ABI's acquire / commit): write the frame into
    /// [`SlotGuard::slot`] (layout: [`SlotGuard::stream`]), then
    /// [`SlotGuard::commit`]; dropping the guard abandons the slot (no frame
    /// is published, the slot is free again).
    ///
    /// Slot choice, blocking and dropping as in [`Publisher::publish`]:
    /// `None` means the frame is dropped (every slot leased; counted in
    /// [`PublisherStats::dropped`]).
    pub fn acquire(&mut self) -> Option<SlotGuard<'_, B>> {
        if !self.retired.is_empty() {
            self.free_retired();
        }
        match self.claim_slot() {
            Some(claim) => {
                let seq = self.ring.writer().next_seq();
                if let Some(slot) = self.slots.get_mut(claim.slot as usize) {
                    B::claimed(slot, seq);
                }
                Some(SlotGuard {
                    publisher: self,
                    claim: Some(claim),
                })
            }
            None => {
                self.ring.writer().count_drop();
                self.stats.dropped += 1;
                None
            }
        }
    }

    /// Applies the control thread's admissions and drops to the reader
    /// table (a lock only when there are some). `true` if there were.
    fn apply_joins(&mut self) -> bool {
        if !self.shared.joins_pending.swap(false, Ordering::SeqCst) {
            return false;
        }
        let joins =
            std::mem::take(&mut *self.shared.joins.lock().unwrap_or_else(|p| p.into_inner()));
        for j in joins {
            match j {
                Join::Add(r) => self.readers.push(*r),
                Join::Remove(id) => self.readers.retain(|r| r.id != id),
            }
        }
        true
    }

    fn claim_slot(&mut self) -> Option<SlotClaim> {
        let wait = self.shared.config.policy == PublishPolicy::Wait;
        let deadline = super::clock::deadline_after(self.shared.config.wait_timeout);
        loop {
            self.apply_joins();
            let release_seen = self.ring.words().release_wake().load(Ordering::SeqCst);
            let mut alive = std::mem::take(&mut self.alive);
            self.alive_frames(&mut alive);
            let cfg = &self.shared.config;
            // The round's time: lease revocation, the `Wait` deadline and
            // lag all judge by it.
            let now = Instant::now();
            for r in self.readers.iter_mut() {
                let n = r.expire_leases(&alive, now, cfg.lease_timeout);
                if n > 0 {
                    self.stats.revoked_leases += n as u64;
                    if let Some(skipped) = r.revoke_log.admit(now, cfg.warn_interval) {
                        tracing::warn!(subscriber = r.id, name = %r.name, "revoked {n} lease(s) held past {:?} ({skipped} more revocations not logged)", cfg.lease_timeout);
                    }
                }
            }
            self.alive = alive;
            let ring = Arc::clone(&self.ring);
            let writer = ring.writer();
            let blocked_by_unread =
                match writer.claim(self.readers.iter().filter_map(|r| r.as_ref()), wait) {
                    Claim::Claimed(c) => {
                        // A subscriber admitted after this claim began was
                        // not in its lease scan (P2). The admission is
                        // published (SeqCst) before its WELCOME leaves, so
                        // before it can lease: seeing no admission here,
                        // after P1's fence, means its S2 will see P1 (§5.4).
                        // Seeing one, scan again with it.
                        if self.shared.joins_pending.load(Ordering::SeqCst) {
                            self.apply_joins();
                            if writer.leased_by(c, self.readers.iter().filter_map(|r| r.as_ref())) {
                                writer.unclaim(c);
                                continue;
                            }
                        }
                        return Some(c);
                    }
                    Claim::Busy { blocked_by_unread } => blocked_by_unread,
                };
            let cfg = &self.shared.config;
            if blocked_by_unread && now >= deadline {
                lagged(cfg, &self.ring, &mut self.stats, &mut self.readers, now);
            }
            if wait && now < deadline {
                let left = deadline.saturating_duration_since(now);
                futex::wait(
                    self.ring.words().release_wake(),
                    release_seen,
                    left.min(Duration::from_millis(1)),
                );
            } else if !blocked_by_unread {
                return None;
            }
        }
    }

    /// Fills `alive` with the sequence numbers of the frames alive in the
    /// slots of the current and the retired rings: what a lease can pin.
    fn alive_frames(&self, alive: &mut Vec<u64>) {
        alive.clear();
        for ring in std::iter::once(&self.ring).chain(self.retired.iter().map(|r| &r.ring)) {
            let w = ring.words();
            for i in 0..ring.layout.slot_count {
                let s = w.slot_seq(i).load(Ordering::Relaxed) & !crate::layout::SEQ_WRITING;
                if s != 0 {
                    alive.push(s);
                }
            }
        }
    }
}

/// `Wait`, past the deadline (at `now`): lagging InOrder readers lose
/// frames from here on; one that lagged `max_lag_events` times is demoted
/// (§5.4).
fn lagged(
    cfg: &PublisherConfig,
    ring: &RingShared,
    stats: &mut PublisherStats,
    readers: &mut [Reader],
    now: Instant,
) {
    {
        let latest = ring.writer().next_seq() - 1;
        for r in readers
            .iter_mut()
            // Packet-only subscribers (no lease row) read no frames.
            .filter(|r| r.mode == crate::DeliveryMode::InOrder && r.row.is_some() && !r.demoted)
        {
            if r.consumed() >= latest {
                continue;
            }
            r.floor = latest;
            r.lag_events = r.lag_events.saturating_add(1);
            stats.lagged += 1;
            if cfg.max_lag_events.is_some_and(|n| r.lag_events >= n) {
                r.demoted = true;
                stats.demoted += 1;
                tracing::warn!(subscriber = r.id, name = %r.name, "InOrder subscriber kept the publisher waiting past {:?} {} times; demoted: its unread frames no longer hold slots", cfg.wait_timeout, r.lag_events);
            } else if let Some(skipped) = r.lag_log.admit(now, cfg.warn_interval) {
                tracing::warn!(subscriber = r.id, name = %r.name, "InOrder subscriber lagged past {:?}; overwriting its unread frames ({skipped} more lags not logged)", cfg.wait_timeout);
            }
        }
    }
}

impl<B: Exporter + Send + Sync + 'static> Publisher<B> {
    /// Marks the stream ended, says GOODBYE (end of stream) to every
    /// subscriber and removes the socket. Subscribers still drain the frames
    /// left in the ring before they see `Disconnected`.
    pub fn finish(mut self) {
        self.shared.end_of_stream.store(true, Ordering::Release);
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(p) = &self.shared.packets {
            p.close();
        }
        for r in self.shared.take_retiring() {
            r.close();
        }
        self.ring.close();
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.control_thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }

    /// Changes the stream mid-flight (`docs/protocol.md` §6): allocates a new
    /// ring (new slots through the backend, a new sealed control region) for
    /// `stream`, whose `generation` is set to the current one + 1 and whose
    /// sequence numbers continue the old ring's. Frames published from now
    /// on go to the new ring. The control thread then sends every connected
    /// frame subscriber STREAM_CHANGED and a WELCOME for the new ring on its
    /// connection, and only afterwards closes the old ring. The old slots are
    /// freed once every reader has consumed past the old ring's last frame
    /// and holds no lease in it (or has disconnected).
    ///
    /// The slot count stays [`PublisherConfig::slots`]; the slot size is the
    /// new stream's `frame_size` (bytes).
    ///
    /// Errors: an unusable description ([`ChangeError::Stream`]), allocation
    /// failures; the current ring is unchanged then.
    pub fn change_stream(&mut self, stream: StreamDesc) -> Result<(), ChangeError> {
        if self.control_thread.is_none() || self.shared.stop.load(Ordering::Acquire) {
            return Err(ChangeError::Stopped);
        }
        let stream = StreamDesc {
            generation: self.stream.generation.saturating_add(1),
            ..stream
        };
        let layout = stream.validate(stream.frame_size)?;
        let backend = &self.shared.backend;
        let (slots, exports) =
            allocate_ring(backend, self.ring.layout.slot_count, stream.frame_size)
                .map_err(ChangeError::Backend)?;
        let last_seq = self.ring.writer().next_seq() - 1;
        let ring = Arc::new(make_ring(
            backend,
            &self.shared.config.key,
            self.ring.layout,
            &stream,
            exports,
            last_seq,
        )?);
        // Swap first, then hand the old ring to the control thread: it
        // re-welcomes to whatever is current before closing what it took.
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Arc::clone(&ring);
        let old = std::mem::replace(&mut self.ring, ring);
        let old_slots = std::mem::replace(&mut self.slots, slots);
        self.shared
            .retiring
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&old));
        self.retired.push(Retired {
            ring: old,
            _slots: old_slots,
            last_seq,
        });
        tracing::info!(
            width = stream.width,
            height = stream.height,
            generation = stream.generation,
            "stream changed; frames go to a new ring from seq {}",
            last_seq.saturating_add(1)
        );
        self.stream = stream;
        self.layout = layout;
        self.free_retired();
        Ok(())
    }

    /// Frees replaced rings no reader can still hold or need (§6).
    fn free_retired(&mut self) {
        self.apply_joins();
        let readers = &self.readers;
        self.retired.retain(|old| {
            if !old.ring.closed.load(Ordering::Acquire) {
                return true;
            }
            let first = old.ring.base_seq.saturating_add(1);
            readers.iter().any(|r| {
                // Readers admitted to a later ring never saw this one.
                r.first_gen <= old.ring.generation && r.needs(first, old.last_seq)
            })
        });
    }

    /// Rings replaced by a stream change and not freed yet.
    pub fn retired_rings(&self) -> usize {
        self.retired.len()
    }
}

impl<B: Exporter + Send + Sync + 'static> Drop for Publisher<B> {
    fn drop(&mut self) {
        if self.control_thread.is_some() {
            self.shutdown();
        }
    }
}
