//! The publishing half of the tool: creates the publisher on the first frame
//! (its geometry fixes the ring's layout), paces, flags, counts, reports.

use crate::packets::PacketFeed;
use anyhow::{bail, Context, Result};
use cuframes_core::layout::{StreamDesc, FLAG_DISCONTINUITY, FLAG_KEY};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{Backend, Published, Publisher, PublisherConfig};
use cuframes_core::{Codec, PixelFormat};
use cuframes_nvdec::Packet;
use std::time::{Duration, Instant};

/// What the first frame and the input say about the stream.
pub struct Geometry {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
}

pub struct Output<B: Backend + Send + Sync + 'static> {
    backend: Option<B>,
    config: PublisherConfig,
    codec: Codec,
    frame_rate: (i32, i32),
    wait_subscribers: usize,
    wait_subscribers_timeout: Duration,
    realtime: bool,
    stats_interval: f64,
    vram_free: Option<Box<dyn Fn() -> Option<u64>>>,
    feed: Option<PacketFeed>,
    publisher: Option<Publisher<B>>,
    pace_start: Option<(Instant, i64)>,
    pub source_index: u64,
    pub loops: u64,
    pending_discontinuity: bool,
    pub total: u64,
    started: Instant,
    last_stats: Instant,
}

pub struct Settings {
    pub config: PublisherConfig,
    pub codec: Codec,
    pub frame_rate: (i32, i32),
    pub wait_subscribers: usize,
    pub wait_subscribers_timeout: Duration,
    pub realtime: bool,
    pub stats_interval: f64,
    /// Free device memory now (CUDA backend): to report the ring's VRAM.
    pub vram_free: Option<Box<dyn Fn() -> Option<u64>>>,
    /// `--packets`: the packet feed.
    pub feed: Option<PacketFeed>,
}

impl<B: Backend + Send + Sync + 'static> Output<B> {
    pub fn new(backend: B, s: Settings) -> Self {
        Output {
            backend: Some(backend),
            config: s.config,
            codec: s.codec,
            frame_rate: s.frame_rate,
            wait_subscribers: s.wait_subscribers,
            wait_subscribers_timeout: s.wait_subscribers_timeout,
            realtime: s.realtime,
            stats_interval: s.stats_interval,
            vram_free: s.vram_free,
            feed: s.feed,
            publisher: None,
            pace_start: None,
            source_index: 0,
            loops: 0,
            pending_discontinuity: false,
            total: 0,
            started: Instant::now(),
            last_stats: Instant::now(),
        }
    }

    /// The input starts again (--loop): the next frame carries DISCONTINUITY.
    pub fn restarted(&mut self) {
        self.source_index = 0;
        self.loops += 1;
        self.pending_discontinuity = true;
        self.pace_start = None;
        if let Some(f) = self.feed.as_mut() {
            f.discontinuity = true;
        }
    }

    /// `--packets`: publishes a demuxed packet before it is decoded (queued
    /// until the first frame creates the publisher).
    pub fn packet(&mut self, p: &Packet) {
        if let Some(f) = self.feed.as_mut() {
            f.feed(p, self.publisher.as_mut());
        }
    }

    fn publisher(&mut self, g: &Geometry) -> Result<&mut Publisher<B>> {
        if self.publisher.is_none() {
            let mut stream = StreamDesc::packed(g.width, g.height, g.format, self.codec)
                .context("unsupported frame geometry")?;
            if self.frame_rate.0 > 0 && self.frame_rate.1 > 0 {
                stream.fps_num = self.frame_rate.0 as u64;
                stream.fps_den = self.frame_rate.1 as u64;
            }
            let backend = self.backend.take().context("backend already used")?;
            let free_before = self.vram_free.as_ref().and_then(|f| f());
            let mut p = Publisher::create(backend, self.config.clone(), stream)
                .with_context(|| format!("cannot publish on key {:?}", self.config.key))?;
            if let (Some(a), Some(b)) = (free_before, self.vram_free.as_ref().and_then(|f| f())) {
                tracing::info!(
                    "ring: {} slots of {} B frames: {:.1} MiB of VRAM",
                    self.config.slots,
                    stream.frame_size,
                    a.saturating_sub(b) as f64 / 1048576.0
                );
            }
            if let (Some(f), Some(pc)) = (self.feed.as_ref(), self.config.packets.as_ref()) {
                tracing::info!(
                    slots = pc.slots,
                    bytes = pc.data_size,
                    "packet ring on ({} bytes of Annex B extradata)",
                    f.annexb.extradata().len()
                );
            }
            tracing::info!(socket = %p.socket_path().display(), slots = self.config.slots, policy = ?self.config.policy, "publishing");
            if self.wait_subscribers > 0 {
                tracing::info!("waiting for {} subscriber(s)", self.wait_subscribers);
                if !p.wait_for_subscribers(self.wait_subscribers, self.wait_subscribers_timeout) {
                    bail!(
                        "only {} of {} subscribers connected within {:?}",
                        p.subscriber_count(),
                        self.wait_subscribers,
                        self.wait_subscribers_timeout
                    );
                }
            }
            if let Some(f) = self.feed.as_mut() {
                f.flush(&mut p);
            }
            self.publisher = Some(p);
        }
        let p = self.publisher.as_mut().context("publisher")?;
        let s = p.stream();
        if g.width as u64 != s.width || g.height as u64 != s.height || g.format != s.format() {
            bail!(
                "the stream changed from {}x{} {:?} to {}x{} {:?} at frame {}; resolution changes are not supported yet",
                s.width, s.height, s.format(), g.width, g.height, g.format, self.source_index
            );
        }
        Ok(p)
    }

    /// Publishes one frame of geometry `g`; `write` fills the slot.
    pub fn publish<E, F>(
        &mut self,
        g: &Geometry,
        pts_ns: Option<i64>,
        keyframe: bool,
        write: F,
    ) -> Result<()>
    where
        E: std::error::Error + Send + Sync + 'static,
        F: FnOnce(&mut B::Slot, &StreamDesc) -> Result<(), E>,
    {
        if self.realtime {
            self.pace(pts_ns);
        }
        let mut flags = if keyframe { FLAG_KEY } else { 0 };
        if self.pending_discontinuity {
            flags |= FLAG_DISCONTINUITY;
            self.pending_discontinuity = false;
        }
        let meta = FrameMeta {
            pts_ns,
            flags,
            source_index: self.source_index,
            ..Default::default()
        };
        let p = self.publisher(g)?;
        match p.publish(meta, write).context("publishing a frame")? {
            Published::Committed(_) | Published::Dropped => {}
        }
        self.source_index += 1;
        self.total += 1;
        self.maybe_stats();
        Ok(())
    }

    fn pace(&mut self, pts_ns: Option<i64>) {
        let Some(pts) = pts_ns else { return };
        let (t0, p0) = *self.pace_start.get_or_insert((Instant::now(), pts));
        if let Ok(ahead) = u64::try_from(pts - p0) {
            let due = t0 + Duration::from_nanos(ahead);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }

    fn maybe_stats(&mut self) {
        if self.stats_interval <= 0.0
            || self.last_stats.elapsed().as_secs_f64() < self.stats_interval
        {
            return;
        }
        self.last_stats = Instant::now();
        if let Some(p) = &self.publisher {
            let st = p.stats();
            tracing::info!(
                "{} frames published, {} dropped, {} subscriber(s), {:.1} fps, loop {}",
                st.published,
                st.dropped,
                st.subscribers,
                st.published as f64 / self.started.elapsed().as_secs_f64(),
                self.loops
            );
        }
    }

    /// Prints the summary and ends the stream; `Ok(false)` if no frame was published.
    pub fn finish(self, stopped: bool) -> bool {
        let Some(p) = self.publisher else {
            return false;
        };
        let st = p.stats();
        let why = if stopped {
            "stopped by signal"
        } else {
            "end of input"
        };
        eprintln!(
            "cuframes-publish: {why}: {} frames published, {} dropped, {} revoked lease(s), {:.1} fps",
            st.published,
            st.dropped,
            st.revoked_leases,
            st.published as f64 / self.started.elapsed().as_secs_f64()
        );
        if let Some(f) = &self.feed {
            eprintln!(
                "cuframes-publish: {} packets published, {} skipped",
                st.packets_published, f.skipped
            );
        }
        if stopped {
            // GOODBYE Shutdown: reconnecting subscribers wait for the next
            // publisher on the key (an upgrade), instead of ending.
            drop(p);
        } else {
            // GOODBYE EndOfStream: the input is over, subscribers end.
            p.finish();
        }
        true
    }
}
