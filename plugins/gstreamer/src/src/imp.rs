//! `cuframessrc` implementation: a live `GstPushSrc` whose `create` leases
//! the next frame and wraps its slot in a buffer.

use crate::common::{self, Mode, OpenSpec, SourceBackend};
use crate::conv::{self, TimeMap};
use crate::memory::{self, Counters, SharedCounters, SlotMemory};
use cuframes::{BackendKind, Error, OwnedFrame, Plane, Subscriber};
use cuframes_core::layout::{StreamDesc, LEASES_PER_ROW};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{EndReason, RecvError};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cuframessrc",
        gst::DebugColorFlags::empty(),
        Some("cuframes frame source"),
    )
});

/// Most buffers that wrap a leased slot at once: a subscriber has
/// `LEASES_PER_ROW` (4) lease entries and needs one free to receive.
const MAX_LEASED: u32 = LEASES_PER_ROW as u32 - 1;

/// How long one `next_frame` call waits before `create` checks for
/// flushing and the `timeout` property.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
struct Settings {
    key: Option<String>,
    mode: Mode,
    reconnect: bool,
    backend: SourceBackend,
    allow_legacy_ipc: bool,
    publisher_uids: Vec<u32>,
    runtime_dir: Option<String>,
    timeout_ms: u32,
    max_leased: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key: None,
            mode: Mode::Newest,
            reconnect: true,
            backend: SourceBackend::Auto,
            allow_legacy_ipc: false,
            publisher_uids: Vec::new(),
            runtime_dir: None,
            timeout_ms: 0,
            max_leased: MAX_LEASED,
        }
    }
}

/// What the streaming thread keeps between buffers.
struct Streaming {
    sub: Option<Subscriber>,
    /// Description the current caps were made from.
    stream: Option<StreamDesc>,
    info: Option<gst_video::VideoInfo>,
    /// Downstream accepts `GstVideoMeta` (so padded slots go out as they are).
    video_meta: bool,
    time: TimeMap,
    /// The next buffer is flagged DISCONT.
    discont: bool,
    /// Cloned into every zero-copy buffer: `strong_count - 1` are live.
    token: Arc<()>,
    /// When the last frame arrived (or the source started).
    last_frame: Instant,
}

impl Default for Streaming {
    fn default() -> Self {
        Streaming {
            sub: None,
            stream: None,
            info: None,
            video_meta: false,
            time: TimeMap::default(),
            discont: true,
            token: Arc::new(()),
            last_frame: Instant::now(),
        }
    }
}

/// A received frame, out of the subscriber's borrow.
struct Received {
    meta: FrameMeta,
    stream: StreamDesc,
    changed: bool,
    payload: Payload,
}

enum Payload {
    /// A host slot, still leased.
    Slot(OwnedFrame),
    /// Packed bytes (pitch = row bytes) copied from a CUDA or Vulkan slot.
    Packed(Vec<u8>),
}

/// The element.
#[derive(Default)]
pub struct CuframesSrc {
    settings: Mutex<Settings>,
    streaming: Mutex<Streaming>,
    counters: SharedCounters,
    flushing: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for CuframesSrc {
    const NAME: &'static str = "GstCuframesSrc";
    type Type = super::CuframesSrc;
    type ParentType = gst_base::PushSrc;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ObjectImpl for CuframesSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("key")
                    .nick("Stream key")
                    .blurb("Key of the publisher to subscribe to, [A-Za-z0-9_-]{1,63} (required)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", Mode::Newest)
                    .nick("Delivery mode")
                    .blurb("newest: the newest frame each time, skipping what the pipeline is too slow for; in-order: every frame in sequence")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("reconnect")
                    .nick("Reconnect")
                    .blurb("Reconnect when the publisher stops or dies (50 ms doubling to 500 ms between attempts); the first buffer afterwards is flagged DISCONT. false: end with the publisher (EOS on its end of stream or shutdown, an error if it died). A publisher not up yet at start is always waited for (see timeout)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", SourceBackend::Auto)
                    .nick("Memory backend")
                    .blurb("auto: chosen from the publisher's offer (host memory for host slots; CUDA if a driver is present, else Vulkan, for GPU slots); host; cuda; vulkan. Host slots are wrapped without a copy; CUDA and Vulkan frames are copied to host memory once per frame (GStreamer 1.22 has no public CUDA or Vulkan memory)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("allow-legacy-ipc")
                    .nick("Allow legacy CUDA IPC")
                    .blurb("Import legacy CUDA IPC handles (publishers with --memory legacy-ipc or --sync ipc-event). The driver cannot check them: set only for publishers you trust (same uid, same PID namespace)")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                common::id_list_spec(
                    "publisher-uids",
                    "Publisher uids",
                    "Uids of publishers to accept besides root (SO_PEERCRED, checked before anything is sent), e.g. <1000, 1001>; empty (default): this process's uid or root",
                ),
                glib::ParamSpecString::builder("runtime-dir")
                    .nick("Runtime directory")
                    .blurb("Directory of the publishers' sockets (default: $CUFRAMES_RUNTIME_DIR, else /run/cuframes, else $XDG_RUNTIME_DIR/cuframes, else /tmp/cuframes-<uid>)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout (ms)")
                    .blurb("Fail with an error when no frame arrived for this many milliseconds, also while waiting for or reconnecting to a publisher; 0: wait forever")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-leased-buffers")
                    .nick("Most zero-copy buffers")
                    .blurb("Most buffers alive at once that wrap a leased slot (a subscriber has 4 leases and needs one to receive); a frame beyond them is copied into system memory and its lease returned at once. 0: always copy")
                    .minimum(0)
                    .maximum(MAX_LEASED)
                    .default_value(MAX_LEASED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Counters: buffers, zero-copy (slot wrapped), copied, revoked (zero-copy buffers freed after the publisher revoked their lease: held past its lease timeout, their bytes may have been rewritten), skipped (frames the subscriber skipped or lost), reconnects, stream-changes")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "key" => s.key = value.get().unwrap_or(None),
            "mode" => s.mode = value.get().unwrap_or_default(),
            "reconnect" => s.reconnect = value.get().unwrap_or(true),
            "backend" => s.backend = value.get().unwrap_or_default(),
            "allow-legacy-ipc" => s.allow_legacy_ipc = value.get().unwrap_or(false),
            "publisher-uids" => s.publisher_uids = common::id_list(value),
            "runtime-dir" => s.runtime_dir = value.get().unwrap_or(None),
            "timeout" => s.timeout_ms = value.get().unwrap_or(0),
            "max-leased-buffers" => s.max_leased = value.get().unwrap_or(MAX_LEASED),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "key" => s.key.to_value(),
            "mode" => s.mode.to_value(),
            "reconnect" => s.reconnect.to_value(),
            "backend" => s.backend.to_value(),
            "allow-legacy-ipc" => s.allow_legacy_ipc.to_value(),
            "publisher-uids" => common::id_list_value(&s.publisher_uids),
            "runtime-dir" => s.runtime_dir.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            "max-leased-buffers" => s.max_leased.to_value(),
            "stats" => self.stats().to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
        obj.set_do_timestamp(false);
    }
}

impl GstObjectImpl for CuframesSrc {}

impl ElementImpl for CuframesSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "cuframes source",
                "Source/Video",
                "Decoded frames shared by a cuframes publisher (zero-copy from host-memory slots)",
                "cuframes developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list([
                    gst_video::VideoFormat::Nv12,
                    gst_video::VideoFormat::P01010le,
                ])
                .build();
            vec![gst::PadTemplate::new(
                "src",
                gst::PadDirection::Src,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("static pad template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for CuframesSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        if lock(&self.settings).key.as_deref().unwrap_or("").is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["cuframessrc needs the key property"]
            ));
        }
        *lock(&self.streaming) = Streaming::default();
        *lock(&self.counters) = Counters::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Drops the subscriber (its socket closes; the publisher reclaims
        // leases of frames still in flight only when their buffers are freed).
        *lock(&self.streaming) = Streaming::default();
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        // Caps come from the publisher's stream description, known once the
        // first frame arrives (`create` sets them); on a reconfigure the
        // current caps are offered again.
        let caps = self.obj().src_pad().current_caps();
        if let Some(caps) = caps {
            self.obj()
                .set_caps(&caps)
                .map_err(|e| gst::loggable_error!(CAT, "set_caps: {e}"))?;
        }
        Ok(())
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            // Frames are stamped when they arrive: the latency is one frame
            // interval (the publisher commits a frame once it is decoded).
            let frame = lock(&self.streaming)
                .stream
                .as_ref()
                .and_then(frame_duration)
                .unwrap_or(gst::ClockTime::ZERO);
            q.set(true, frame, gst::ClockTime::NONE);
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(false, Ordering::Release);
        Ok(())
    }
}

/// One frame interval of `s`, if its rate is known.
fn frame_duration(s: &StreamDesc) -> Option<gst::ClockTime> {
    let fps = conv::framerate(s);
    (fps.numer() > 0).then(|| {
        gst::ClockTime::SECOND
            .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
            .unwrap_or(gst::ClockTime::ZERO)
    })
}

impl PushSrcImpl for CuframesSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let mut st = lock(&self.streaming);
        let received = self.receive(&settings, &mut st)?;
        st.last_frame = Instant::now();
        let buffer = self.make_buffer(&settings, &mut st, received)?;
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}

impl CuframesSrc {
    fn stats(&self) -> gst::Structure {
        // Not from the subscriber: the streaming thread holds it while it waits.
        let c = *lock(&self.counters);
        gst::Structure::builder("cuframessrc-stats")
            .field("buffers", c.buffers)
            .field("zero-copy", c.zero_copy)
            .field("copied", c.copied)
            .field("revoked", c.revoked)
            .field("skipped", c.skipped)
            .field("reconnects", c.reconnects)
            .field("stream-changes", c.stream_changes)
            .build()
    }

    /// Waits for the next frame (connecting first if needed).
    fn receive(&self, set: &Settings, st: &mut Streaming) -> Result<Received, gst::FlowError> {
        let deadline = || {
            (set.timeout_ms > 0)
                .then(|| st.last_frame + Duration::from_millis(u64::from(set.timeout_ms)))
        };
        loop {
            if self.flushing.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            if deadline().is_some_and(|d| Instant::now() >= d) {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ["no frame from key {:?} for {} ms", set.key, set.timeout_ms]
                );
                return Err(gst::FlowError::Error);
            }
            if st.sub.is_none() {
                let mut spec = OpenSpec::new(
                    set.key.as_deref().unwrap_or(""),
                    &self.obj().name(),
                    set.mode,
                    set.reconnect,
                    set.runtime_dir.as_deref(),
                );
                spec.backend(set.backend, set.allow_legacy_ipc);
                spec.opts.subscribe.publisher_uids = common::publisher_uids(&set.publisher_uids);
                match spec.open_waiting(true, &self.flushing, deadline()) {
                    Ok(Some(s)) => {
                        gst::info!(
                            CAT,
                            imp = self,
                            "subscribed to {:?} ({} backend, {:?} memory)",
                            set.key,
                            s.backend(),
                            s.offer().memory_kind()
                        );
                        st.sub = Some(s);
                    }
                    Ok(None) => return Err(gst::FlowError::Flushing),
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::OpenRead,
                            ["cannot subscribe to {:?}: {e}", set.key]
                        );
                        return Err(gst::FlowError::Error);
                    }
                }
            }
            let Some(sub) = st.sub.as_ref() else {
                continue;
            };
            let got = sub.next_frame(POLL).and_then(|f| {
                let (meta, stream, changed) = (*f.meta(), *f.stream(), f.stream_changed());
                let payload = match f.backend() {
                    // Host slots go downstream as they are (`make_buffer`).
                    BackendKind::Host => Payload::Slot(f.into_owned()),
                    // GPU memory: one copy to host memory, lease returned
                    // when `f` drops here.
                    _ => {
                        let mut data = Vec::new();
                        f.copy_to_host(&mut data)?;
                        Payload::Packed(data)
                    }
                };
                Ok(Received {
                    meta,
                    stream,
                    changed,
                    payload,
                })
            });
            match got {
                Ok(r) => {
                    let s = sub.stats();
                    memory::count(&self.counters, |c| {
                        c.skipped = s.dropped;
                        c.reconnects = s.reconnects;
                        c.stream_changes = s.stream_changes;
                    });
                    return Ok(r);
                }
                Err(Error::Recv(RecvError::Timeout(_))) => continue,
                Err(Error::Recv(RecvError::TooManyLeases)) => {
                    // Only if buffers outlived max-leased-buffers' count
                    // (e.g. the property was lowered): wait for one to go.
                    common::sleep_unless(&self.flushing, Duration::from_millis(5));
                }
                Err(Error::Recv(RecvError::Disconnected)) => {
                    let why = sub.end_reason();
                    return match why {
                        Some(EndReason::EndOfStream | EndReason::Shutdown) | None => {
                            gst::info!(CAT, imp = self, "publisher ended ({why:?}): EOS");
                            Err(gst::FlowError::Eos)
                        }
                        Some(r) => {
                            gst::element_imp_error!(
                                self,
                                gst::ResourceError::Read,
                                ["publisher of {:?} went away ({r:?})", set.key]
                            );
                            Err(gst::FlowError::Error)
                        }
                    };
                }
                Err(e @ Error::Recv(_)) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ["receiving a frame: {e}"]
                    );
                    return Err(gst::FlowError::Error);
                }
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ["copying a {} frame to host memory: {e}", sub.backend()]
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }

    /// Sets caps for `s` when they differ from the current ones, and asks
    /// downstream whether it reads `GstVideoMeta`.
    fn renegotiate(&self, st: &mut Streaming, s: &StreamDesc) -> Result<(), gst::FlowError> {
        let same = st.stream.as_ref().is_some_and(|c| {
            (
                c.width,
                c.height,
                c.pixel_format,
                c.fps_num,
                c.fps_den,
                c.colour,
            ) == (
                s.width,
                s.height,
                s.pixel_format,
                s.fps_num,
                s.fps_den,
                s.colour,
            )
        });
        if same {
            st.stream = Some(*s);
            return Ok(());
        }
        let info = conv::video_info(s).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ["{e}"]);
            gst::FlowError::NotNegotiated
        })?;
        let caps = info.to_caps().map_err(|_| gst::FlowError::NotNegotiated)?;
        gst::info!(CAT, imp = self, "caps {caps}");
        self.obj().set_caps(&caps).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["downstream refused {caps}: {e}"]
            );
            gst::FlowError::NotNegotiated
        })?;
        let mut q = gst::query::Allocation::new(Some(&caps), false);
        st.video_meta = self.obj().src_pad().peer_query(&mut q)
            && q.find_allocation_meta::<gst_video::VideoMeta>().is_some();
        gst::debug!(
            CAT,
            imp = self,
            "downstream GstVideoMeta: {}",
            st.video_meta
        );
        st.stream = Some(*s);
        st.info = Some(info);
        Ok(())
    }

    fn make_buffer(
        &self,
        set: &Settings,
        st: &mut Streaming,
        r: Received,
    ) -> Result<gst::Buffer, gst::FlowError> {
        if r.changed || st.stream.is_none() {
            self.renegotiate(st, &r.stream)?;
        }
        let Some(info) = st.info.clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let s = r.stream;
        let leased = Arc::strong_count(&st.token) - 1;
        let wrap = |f: &OwnedFrame| {
            leased < set.max_leased as usize
                && (st.video_meta || conv::is_default_layout(f.stream(), &info))
        };
        let bad = || {
            gst::element_imp_error!(
                self,
                gst::StreamError::Decode,
                ["frame does not fit its stream description"]
            );
            gst::FlowError::Error
        };
        let (mut buffer, zero_copy) = match r.payload {
            Payload::Slot(f) if wrap(&f) => (
                gst::Buffer::from_slice(SlotMemory::new(
                    f,
                    Arc::clone(&st.token),
                    Arc::clone(&self.counters),
                )),
                true,
            ),
            Payload::Slot(f) => {
                let b = memory::packed_copy(&s, &info, &|i| match f.plane(i)? {
                    Plane::Host { bytes, pitch, .. } => Some((bytes, pitch)),
                    _ => None,
                })
                .ok_or_else(bad)?;
                // The copy is complete: the lease goes back now.
                if !f.release() {
                    memory::count(&self.counters, |c| c.revoked += 1);
                }
                (b, false)
            }
            Payload::Packed(d) => (
                memory::packed_copy(&s, &info, &|i| memory::packed_plane(&s, &d, i))
                    .ok_or_else(bad)?,
                false,
            ),
        };
        let now = common::running_time_now(self.obj().upcast_ref());
        if r.changed || r.meta.is_discontinuity() {
            st.time.reset();
            st.discont = true;
        }
        let pts = st.time.map(r.meta.pts_ns, now);
        {
            let b = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            b.set_pts(gst::ClockTime::from_nseconds(pts));
            b.set_duration(frame_duration(&s));
            b.set_offset(r.meta.seq);
            if std::mem::take(&mut st.discont) {
                b.set_flags(gst::BufferFlags::DISCONT);
            }
            if zero_copy {
                // The slot's layout: per-plane offsets and pitches (bytes).
                let offsets = [s.plane_offset[0] as usize, s.plane_offset[1] as usize];
                let strides = [s.plane_pitch[0] as i32, s.plane_pitch[1] as i32];
                gst_video::VideoMeta::add_full(
                    b,
                    gst_video::VideoFrameFlags::empty(),
                    info.format(),
                    info.width(),
                    info.height(),
                    &offsets,
                    &strides,
                )
                .map_err(|_| bad())?;
            }
        }
        memory::count(&self.counters, |c| {
            c.buffers += 1;
            if zero_copy {
                c.zero_copy += 1;
            } else {
                c.copied += 1;
            }
        });
        Ok(buffer)
    }
}
