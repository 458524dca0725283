//! The publishing half of a stream: the publisher's lifecycle (created on the
//! first frame, whose geometry fixes the ring; a new ring and STREAM_CHANGED
//! when the geometry changes), pacing, keyframe and discontinuity flags, the
//! packet feed and the counters.

use super::packets::PacketFeed;
use super::stats::{SharedStats, StreamState};
use cuframes_core::layout::{StreamDesc, StreamError, FLAG_DISCONTINUITY, FLAG_KEY};
use cuframes_core::packet::MAX_EXTRADATA;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    Backend, ChangeError, CreateError, PacketRingConfig, Published, Publisher, PublisherConfig,
};
use cuframes_core::{Codec, PixelFormat};
use cuframes_media::{AnnexB, Packet, StreamInfo};
use std::time::{Duration, Instant};

/// The geometry of a decoded frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel format (NV12 for 8-bit, P010 for 10-bit).
    pub format: PixelFormat,
}

/// Settings of the packet ring (`docs/protocol.md` §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSettings {
    /// Bytes of the ring's data area.
    pub data_size: u32,
    /// Packet slots: how many packets a reader may lag.
    pub slots: u32,
    /// Largest packet published, bytes; larger ones are skipped with a warning.
    pub max_packet_size: u32,
}

/// What a [`FrameSink`] needs besides the backend.
pub struct SinkSettings {
    /// The publisher's settings (key, ring, policy, timeouts, runtime dir);
    /// its `packets` is filled in from [`SinkSettings::packets`].
    pub config: PublisherConfig,
    /// Publish encoded packets too.
    pub packets: Option<PacketSettings>,
    /// Before the first frame, wait until this many subscribers connected.
    pub wait_subscribers: usize,
    /// ... for at most this long (then publishing starts anyway, with a warning).
    pub wait_subscribers_timeout: Duration,
    /// Pace frames by their timestamps, as a camera would (for files).
    pub realtime: bool,
    /// Free device memory now (CUDA backend): to report what a ring costs.
    pub vram_free: Option<Box<dyn Fn() -> Option<u64> + Send>>,
}

/// Publishing through a [`FrameSink`] failed; the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The frame's geometry cannot be laid out in a ring.
    #[error("unsupported frame geometry {width}x{height} {format:?}: {source}")]
    Geometry {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Pixel format.
        format: PixelFormat,
        /// Why.
        #[source]
        source: StreamError,
    },
    /// The publisher could not be started (key taken, socket, allocation).
    #[error("cannot publish on key {key:?}: {source}")]
    Create {
        /// Stream key.
        key: String,
        /// Why.
        #[source]
        source: CreateError,
    },
    /// A new ring for a changed geometry could not be made.
    #[error("cannot change the stream to {width}x{height} {format:?}: {source}")]
    Change {
        /// New width in pixels.
        width: u32,
        /// New height in pixels.
        height: u32,
        /// New pixel format.
        format: PixelFormat,
        /// Why.
        #[source]
        source: ChangeError,
    },
    /// An earlier attempt to start the publisher failed and used up the
    /// backend; this sink cannot publish.
    #[error("the publisher could not be started earlier; this stream cannot publish")]
    NoBackend,
    /// Writing a frame into its slot failed (a GPU copy, a layout mismatch).
    #[error("writing a frame into its slot: {0}")]
    Write(String),
}

/// Receives a stream's decoded frames and demuxed packets and publishes them
/// under one key, through whatever reconnects, loops and geometry changes
/// its input goes through.
///
/// The ring is made on the first frame (its geometry fixes the layout); a
/// frame of another geometry makes a new ring and STREAM_CHANGED
/// (`Publisher::change_stream`), so subscribers re-import without
/// reconnecting. After [`FrameSink::discontinuity`] (a reconnect, a loop, a
/// skip) the next frame and the next packet carry DISCONTINUITY.
pub struct FrameSink<B: Backend + Send + Sync + 'static> {
    backend: Option<B>,
    settings: SinkSettings,
    codec: Codec,
    frame_rate: (i32, i32),
    feed: Option<PacketFeed>,
    publisher: Option<Publisher<B>>,
    pace_start: Option<(Instant, i64)>,
    source_index: u64,
    pending_discontinuity: bool,
    total: u64,
    stats: SharedStats,
}

impl<B: Backend + Send + Sync + 'static> FrameSink<B> {
    /// A sink that will publish with `backend`; counters go to `stats`.
    pub fn new(backend: B, settings: SinkSettings, stats: SharedStats) -> Self {
        FrameSink {
            backend: Some(backend),
            settings,
            codec: Codec::H264,
            frame_rate: (0, 1),
            feed: None,
            publisher: None,
            pace_start: None,
            source_index: 0,
            pending_discontinuity: false,
            total: 0,
            stats,
        }
    }

    /// The input was (re)opened: its codec, frame rate and parameter sets.
    /// Before the first frame this also decides whether there is a packet
    /// ring (a warning, no ring, when the parameter sets do not fit in it);
    /// afterwards, changed parameter sets replace the ring's extradata.
    pub fn input_opened(&mut self, info: &StreamInfo) {
        self.codec = info.codec;
        self.frame_rate = info.frame_rate;
        if self.settings.packets.is_none() {
            return;
        }
        let annexb = match AnnexB::new(info.codec, &info.extradata) {
            Ok(a) if a.extradata().len() > MAX_EXTRADATA => {
                tracing::warn!(key = %self.settings.config.key,
                    "the input's parameter sets take {} bytes, more than the packet ring's {MAX_EXTRADATA}; no packets from this input",
                    a.extradata().len());
                None
            }
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(key = %self.settings.config.key, "the input's codec extradata is unusable ({e}); no packets from this input");
                None
            }
        };
        let Some(annexb) = annexb else {
            self.feed = None;
            return;
        };
        if let Some(p) = self.publisher.as_ref() {
            if !p.has_packet_ring() {
                return;
            }
            if self.feed.as_ref().map(|f| f.extradata()) != Some(annexb.extradata()) {
                if let Err(e) = p.set_codec_extradata(annexb.extradata()) {
                    tracing::warn!(key = %self.settings.config.key, "cannot update the packet ring's extradata: {e}");
                }
            }
        }
        let mut feed = PacketFeed::new(annexb);
        if self.total > 0 || self.feed.is_some() {
            feed.mark_discontinuity();
        }
        self.feed = Some(feed);
    }

    /// The next frame and packet carry DISCONTINUITY (input reopened after a
    /// gap, or a file started over); pacing starts over.
    pub fn discontinuity(&mut self) {
        self.source_index = 0;
        self.pending_discontinuity = true;
        self.pace_start = None;
        if let Some(f) = self.feed.as_mut() {
            f.mark_discontinuity();
        }
    }

    /// The decoder refused a packet as corrupt (`why`): it is skipped and
    /// counted (`StreamStats::corrupt_packets`), and the next frame carries
    /// DISCONTINUITY (frames may be missing or concealed around it).
    pub fn corrupt_packet(&mut self, why: &str) {
        self.pending_discontinuity = true;
        let n = {
            let mut st = self.stats.lock();
            st.corrupt_packets += 1;
            st.corrupt_packets
        };
        tracing::warn!("skipping a corrupt packet ({why}); {n} so far");
    }

    /// Frames published (or dropped for lack of a slot) so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The publisher, once the first frame created it.
    pub fn publisher(&self) -> Option<&Publisher<B>> {
        self.publisher.as_ref()
    }

    /// Publishes a demuxed packet before it is decoded (queued until the
    /// first frame creates the publisher).
    pub fn packet(&mut self, p: &Packet) {
        if let Some(f) = self.feed.as_mut() {
            f.feed(p, self.publisher.as_mut());
            let skipped = f.skipped;
            let packets = self
                .publisher
                .as_ref()
                .map_or(0, |p| p.stats().packets_published);
            let mut st = self.stats.lock();
            st.packets_skipped = skipped;
            st.packets = packets;
        }
    }

    fn desc(&self, g: &Geometry) -> Result<StreamDesc, SinkError> {
        let mut stream =
            StreamDesc::packed(g.width, g.height, g.format, self.codec).map_err(|source| {
                SinkError::Geometry {
                    width: g.width,
                    height: g.height,
                    format: g.format,
                    source,
                }
            })?;
        if self.frame_rate.0 > 0 && self.frame_rate.1 > 0 {
            stream.fps_num = self.frame_rate.0 as u64;
            stream.fps_den = self.frame_rate.1 as u64;
        }
        Ok(stream)
    }

    fn create(&mut self, g: &Geometry) -> Result<(), SinkError> {
        let stream = self.desc(g)?;
        let key = self.settings.config.key.clone();
        let mut config = self.settings.config.clone();
        if let (Some(ps), Some(f)) = (self.settings.packets, self.feed.as_ref()) {
            config.packets = Some(PacketRingConfig {
                slots: ps.slots,
                data_size: ps.data_size,
                max_packet_size: ps.max_packet_size.clamp(1, ps.data_size.max(1)),
                codec_id: self.codec.av_codec_id(),
                extradata: f.extradata().to_vec(),
            });
        }
        // The backend is consumed by the first attempt: after a failed
        // `Publisher::create` the sink cannot publish, and says so.
        let Some(backend) = self.backend.take() else {
            return Err(SinkError::NoBackend);
        };
        let free_before = self.settings.vram_free.as_ref().and_then(|f| f());
        let mut p =
            Publisher::create(backend, config, stream).map_err(|source| SinkError::Create {
                key: key.clone(),
                source,
            })?;
        if let (Some(a), Some(b)) = (
            free_before,
            self.settings.vram_free.as_ref().and_then(|f| f()),
        ) {
            tracing::info!(%key, "ring: {} slots of {} B frames: {:.1} MiB of VRAM",
                self.settings.config.slots, stream.frame_size, a.saturating_sub(b) as f64 / 1048576.0);
        }
        tracing::info!(%key, socket = %p.socket_path().display(), slots = self.settings.config.slots,
            policy = ?self.settings.config.policy, packets = p.has_packet_ring(),
            "publishing {}x{} {:?}", g.width, g.height, g.format);
        let n = self.settings.wait_subscribers;
        if n > 0 {
            tracing::info!(%key, "waiting for {n} subscriber(s)");
            if !p.wait_for_subscribers(n, self.settings.wait_subscribers_timeout) {
                tracing::warn!(%key, "only {} of {n} subscriber(s) connected within {:?}; publishing anyway",
                    p.subscriber_count(), self.settings.wait_subscribers_timeout);
            }
        }
        if let Some(f) = self.feed.as_mut() {
            f.flush(&mut p);
        }
        self.publisher = Some(p);
        self.stats.lock().size = Some((g.width, g.height));
        Ok(())
    }

    /// The publisher for a frame of geometry `g`: created on the first frame,
    /// given a new ring when `g` differs from the current stream.
    fn ring_for(&mut self, g: &Geometry) -> Result<(), SinkError> {
        let Some(p) = self.publisher.as_ref() else {
            return self.create(g);
        };
        let s = p.stream();
        if g.width as u64 == s.width && g.height as u64 == s.height && g.format == s.format() {
            return Ok(());
        }
        let (ow, oh, of) = (s.width, s.height, s.format());
        let stream = self.desc(g)?;
        if let Some(p) = self.publisher.as_mut() {
            p.change_stream(stream)
                .map_err(|source| SinkError::Change {
                    width: g.width,
                    height: g.height,
                    format: g.format,
                    source,
                })?;
        }
        tracing::info!(key = %self.settings.config.key,
            "stream changed from {ow}x{oh} {of:?} to {}x{} {:?}: new ring, subscribers re-import",
            g.width, g.height, g.format);
        let mut st = self.stats.lock();
        st.stream_changes += 1;
        st.size = Some((g.width, g.height));
        Ok(())
    }

    /// Publishes one frame of geometry `g` with time `pts_ns` (ns);
    /// `write(slot, stream)` fills the slot laid out by `stream`.
    ///
    /// With `realtime`, waits until the frame is due (its pts relative to
    /// the first frame since the last discontinuity).
    pub fn publish<E, F>(
        &mut self,
        g: &Geometry,
        pts_ns: Option<i64>,
        keyframe: bool,
        write: F,
    ) -> Result<(), SinkError>
    where
        E: std::error::Error + 'static,
        F: FnOnce(&mut B::Slot, &StreamDesc) -> Result<(), E>,
    {
        // The ring first: creating it may wait for subscribers, and the
        // pacing clock must start after that wait, not before it.
        self.ring_for(g)?;
        if self.settings.realtime {
            self.pace(pts_ns);
        }
        let Some(p) = self.publisher.as_mut() else {
            return Err(SinkError::NoBackend);
        };
        let mut flags = if keyframe { FLAG_KEY } else { 0 };
        if self.pending_discontinuity {
            flags |= FLAG_DISCONTINUITY;
        }
        let meta = FrameMeta {
            pts_ns,
            flags,
            source_index: self.source_index,
            ..Default::default()
        };
        match p.publish(meta, write) {
            Ok(Published::Committed(_)) | Ok(Published::Dropped) => {}
            Err(e) => return Err(SinkError::Write(e.to_string())),
        }
        self.pending_discontinuity = false;
        self.source_index += 1;
        self.total += 1;
        let ps = p.stats();
        let mut st = self.stats.lock();
        st.frames = ps.published;
        st.dropped = ps.dropped;
        st.subscribers = ps.subscribers;
        st.revoked_leases = ps.revoked_leases;
        st.packets = ps.packets_published;
        st.last_frame = Some(Instant::now());
        st.state = StreamState::Streaming;
        Ok(())
    }

    /// Refreshes the subscriber count in the stats (between frames, e.g.
    /// while the input is down).
    pub fn refresh_stats(&self) {
        if let Some(p) = &self.publisher {
            self.stats.lock().subscribers = p.subscriber_count();
        }
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

    /// Ends the stream: GOODBYE (end of stream) to every subscriber, who
    /// drain what is left in the ring. Returns whether any frame was
    /// published.
    pub fn finish(self) -> bool {
        match self.publisher {
            Some(p) => {
                p.finish();
                true
            }
            None => false,
        }
    }

    /// Stops without ending the stream: GOODBYE (shutdown), so subscribers
    /// with reconnect on wait for the next publisher on this key.
    pub fn shut_down(self) -> bool {
        let published = self.publisher.is_some();
        drop(self.publisher);
        published
    }
}
