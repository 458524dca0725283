//! `cuframessink` implementation: a `GstBaseSink` that owns the facade's
//! `cuframes::Publisher`, made when caps arrive, and publishes each
//! buffer's planes with `publish_planes` (a host copy, or an upload into
//! CUDA or Vulkan memory).

use crate::conv;
use cuframes::{Backend, Error, Publisher, PublisherOptions};
use cuframes_core::layout::{StreamDesc, FLAG_DISCONTINUITY, FLAG_KEY};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{PublisherConfig, PublisherStats};
use cuframes_core::PublishPolicy;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cuframessink",
        gst::DebugColorFlags::empty(),
        Some("cuframes publisher sink"),
    )
});

/// `policy`: what the publisher does when every slot is leased or unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstCuframesPolicy")]
pub enum Policy {
    /// DropFrame: overwrite an unread frame, or drop the new one.
    #[default]
    #[enum_value(
        name = "Drop: overwrite an unread frame, or drop the new one when every slot is leased",
        nick = "drop"
    )]
    Drop = 0,
    /// Wait: block up to `wait-timeout` for a slot first.
    #[enum_value(
        name = "Wait: block up to wait-timeout for in-order subscribers, then drop",
        nick = "wait"
    )]
    Wait = 1,
}

/// `backend` of the sink: where the slots live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstCuframesPublisherBackend")]
pub enum SinkBackend {
    /// Host memory (memfds): any Linux machine.
    #[default]
    #[enum_value(name = "Host memory (memfd slots)", nick = "host")]
    Host = 0,
    /// VRAM (VMM fds, host-fence sync) on CUDA device `cuda-device`.
    #[enum_value(
        name = "CUDA VRAM slots (VMM fds); one host-to-device copy per frame",
        nick = "cuda"
    )]
    Cuda = 1,
    /// Vulkan external memory (opaque fds) on the first Vulkan device with
    /// `VK_KHR_external_memory_fd`.
    #[enum_value(
        name = "Vulkan external-memory slots (opaque fds); one upload per frame",
        nick = "vulkan"
    )]
    Vulkan = 2,
}

impl From<SinkBackend> for Backend {
    fn from(b: SinkBackend) -> Self {
        match b {
            SinkBackend::Host => Backend::Host,
            SinkBackend::Cuda => Backend::Cuda,
            SinkBackend::Vulkan => Backend::Vulkan,
        }
    }
}

#[derive(Debug, Clone)]
struct Settings {
    key: Option<String>,
    slots: u32,
    policy: Policy,
    wait_timeout_ms: u32,
    lease_timeout_ms: u32,
    runtime_dir: Option<String>,
    backend: SinkBackend,
    cuda_device: u32,
    wait_subscribers: u32,
    socket_mode: u32,
    allow_uids: Vec<u32>,
    allow_gids: Vec<u32>,
}

/// Core's defaults ([`PublisherConfig::DEFAULT_WAIT_TIMEOUT`],
/// [`PublisherConfig::DEFAULT_LEASE_TIMEOUT`]) in the properties' ms.
const DEFAULT_WAIT_MS: u32 = PublisherConfig::DEFAULT_WAIT_TIMEOUT.as_millis() as u32;
const DEFAULT_LEASE_MS: u32 = PublisherConfig::DEFAULT_LEASE_TIMEOUT.as_millis() as u32;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key: None,
            slots: 8,
            policy: Policy::Drop,
            wait_timeout_ms: DEFAULT_WAIT_MS,
            lease_timeout_ms: DEFAULT_LEASE_MS,
            runtime_dir: None,
            backend: SinkBackend::Host,
            cuda_device: 0,
            wait_subscribers: 0,
            socket_mode: 0o660,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    publisher: Option<Publisher>,
    info: Option<gst_video::VideoInfo>,
    stream: Option<StreamDesc>,
    /// Frames rendered (the published frames' `source_index`).
    index: u64,
    /// `wait-subscribers` has been satisfied.
    waited: bool,
}

/// The element.
#[derive(Default)]
pub struct CuframesSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// The publisher's counters after the last frame (the streaming thread
    /// holds `state` while it waits for a slot or for subscribers).
    stats: Mutex<PublisherStats>,
    flushing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[glib::object_subclass]
impl ObjectSubclass for CuframesSink {
    const NAME: &'static str = "GstCuframesSink";
    type Type = super::CuframesSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for CuframesSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("key")
                    .nick("Stream key")
                    .blurb("Key to publish under, [A-Za-z0-9_-]{1,63} (required); its socket is <runtime-dir>/<key>.sock")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slots")
                    .nick("Ring slots")
                    .blurb("Frame slots in the ring, 2-64 (each holds one frame: pitches rounded up to 256 bytes)")
                    .minimum(2)
                    .maximum(64)
                    .default_value(8)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("policy", Policy::Drop)
                    .nick("Publish policy")
                    .blurb("drop: overwrite an unread frame, or drop the new one when every slot is leased; wait: block the streaming thread up to wait-timeout for in-order subscribers first")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wait-timeout")
                    .nick("Wait timeout (ms)")
                    .blurb("policy=wait: longest wait for a slot, milliseconds")
                    .default_value(DEFAULT_WAIT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("lease-timeout")
                    .nick("Lease timeout (ms)")
                    .blurb("A subscriber's lease held longer than this many milliseconds is revoked and its slot reused")
                    .minimum(1)
                    .default_value(DEFAULT_LEASE_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("runtime-dir")
                    .nick("Runtime directory")
                    .blurb("Directory of the socket (default: $CUFRAMES_RUNTIME_DIR, else /run/cuframes, else $XDG_RUNTIME_DIR/cuframes, else /tmp/cuframes-<uid>)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", SinkBackend::Host)
                    .nick("Memory backend")
                    .blurb("host: slots in host memory (memfds); cuda: slots in VRAM of cuda-device (VMM fds, host-fence sync), one host-to-device copy per frame; vulkan: slots in Vulkan external memory (opaque fds), one upload per frame")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("cuda-device")
                    .nick("CUDA device")
                    .blurb("backend=cuda: the CUDA device ordinal")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wait-subscribers")
                    .nick("Wait for subscribers")
                    .blurb("Hold the first frame until this many subscribers are connected (0: publish at once)")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("socket-mode")
                    .nick("Socket mode")
                    .blurb("File mode of the socket, e.g. 432 (= 0660, the default): who may open it")
                    .maximum(0o777)
                    .default_value(0o660)
                    .mutable_ready()
                    .build(),
                crate::common::id_list_spec(
                    "allow-uids",
                    "Allowed uids",
                    "Subscribers accepted by uid (SO_PEERCRED), e.g. <1000, 1001>; with allow-gids also empty (default): anyone who can open the socket. Root always",
                ),
                crate::common::id_list_spec(
                    "allow-gids",
                    "Allowed gids",
                    "Subscribers accepted by gid (SO_PEERCRED), e.g. <44>; see allow-uids",
                ),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Publisher counters: published, dropped (no free slot), subscribers, revoked-leases")
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
            "slots" => s.slots = value.get().unwrap_or(8),
            "policy" => s.policy = value.get().unwrap_or_default(),
            "wait-timeout" => s.wait_timeout_ms = value.get().unwrap_or(DEFAULT_WAIT_MS),
            "lease-timeout" => s.lease_timeout_ms = value.get().unwrap_or(DEFAULT_LEASE_MS),
            "runtime-dir" => s.runtime_dir = value.get().unwrap_or(None),
            "backend" => s.backend = value.get().unwrap_or_default(),
            "cuda-device" => s.cuda_device = value.get().unwrap_or(0),
            "wait-subscribers" => s.wait_subscribers = value.get().unwrap_or(0),
            "socket-mode" => s.socket_mode = value.get().unwrap_or(0o660),
            "allow-uids" => s.allow_uids = crate::common::id_list(value),
            "allow-gids" => s.allow_gids = crate::common::id_list(value),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "key" => s.key.to_value(),
            "slots" => s.slots.to_value(),
            "policy" => s.policy.to_value(),
            "wait-timeout" => s.wait_timeout_ms.to_value(),
            "lease-timeout" => s.lease_timeout_ms.to_value(),
            "runtime-dir" => s.runtime_dir.to_value(),
            "backend" => s.backend.to_value(),
            "cuda-device" => s.cuda_device.to_value(),
            "wait-subscribers" => s.wait_subscribers.to_value(),
            "socket-mode" => s.socket_mode.to_value(),
            "allow-uids" => crate::common::id_list_value(&s.allow_uids),
            "allow-gids" => crate::common::id_list_value(&s.allow_gids),
            "stats" => {
                let p = *lock(&self.stats);
                gst::Structure::builder("cuframessink-stats")
                    .field("published", p.published)
                    .field("dropped", p.dropped)
                    .field("subscribers", p.subscribers as u64)
                    .field("revoked-leases", p.revoked_leases)
                    .build()
                    .to_value()
            }
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for CuframesSink {}

impl ElementImpl for CuframesSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "cuframes sink",
                "Sink/Video",
                "Publishes raw NV12 / P010_10LE frames to cuframes subscribers under a key",
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
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .expect("static pad template")]
        });
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for CuframesSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        if lock(&self.settings).key.as_deref().unwrap_or("").is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["cuframessink needs the key property"]
            ));
        }
        *lock(&self.state) = State::default();
        *lock(&self.stats) = PublisherStats::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the publisher says GOODBYE (shutdown) and removes the socket.
        *lock(&self.state) = State::default();
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(caps)
            .map_err(|e| gst::loggable_error!(CAT, "caps {caps}: {e}"))?;
        let desc =
            conv::stream_desc(&info).map_err(|e| gst::loggable_error!(CAT, "caps {caps}: {e}"))?;
        let set = lock(&self.settings).clone();
        let mut st = lock(&self.state);
        let unchanged = st.stream.as_ref().is_some_and(|s| same_layout(s, &desc));
        match st.publisher.as_mut() {
            Some(_) if unchanged => {
                st.info = Some(info);
                return Ok(());
            }
            Some(p) => {
                gst::info!(CAT, imp = self, "stream change to {caps}");
                p.change_stream(desc)
                    .map_err(|e| gst::loggable_error!(CAT, "change_stream: {e}"))?;
            }
            None => {
                let p = self
                    .create(&set, desc)
                    .map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
                gst::info!(
                    CAT,
                    imp = self,
                    "publishing {caps} under {:?} ({} backend)",
                    set.key,
                    p.backend()
                );
                st.publisher = Some(p);
            }
        }
        st.info = Some(info);
        st.stream = Some(desc);
        Ok(())
    }

    fn propose_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        // Frames are copied row by row honouring each plane's stride, so any
        // upstream layout described by a GstVideoMeta is fine.
        query.add_allocation_meta::<gst_video::VideoMeta>(None);
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let set = lock(&self.settings).clone();
        let mut st = lock(&self.state);
        let Some(info) = st.info.clone() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        if !st.waited && set.wait_subscribers > 0 {
            while st
                .publisher
                .as_ref()
                .is_some_and(|p| p.subscriber_count() < set.wait_subscribers as usize)
            {
                if self.flushing.load(Ordering::Acquire) {
                    return Err(gst::FlowError::Flushing);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        st.waited = true;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info)
            .map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ["buffer of {} bytes does not match the caps", buffer.size()]
                );
                gst::FlowError::Error
            })?;
        let mut flags = 0;
        if !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            flags |= FLAG_KEY;
        }
        if buffer.flags().contains(gst::BufferFlags::DISCONT) && st.index > 0 {
            flags |= FLAG_DISCONTINUITY;
        }
        let meta = FrameMeta {
            pts_ns: buffer.pts().and_then(|t| i64::try_from(t.nseconds()).ok()),
            flags,
            source_index: st.index,
            ..FrameMeta::default()
        };
        st.index += 1;
        let planes: [(&[u8], usize); 2] = [0, 1].map(|i| {
            (
                frame.plane_data(i as u32).unwrap_or(&[]),
                frame
                    .plane_stride()
                    .get(i)
                    .map_or(0, |&s| s.max(0) as usize),
            )
        });
        let Some(p) = st.publisher.as_mut() else {
            return Err(gst::FlowError::NotNegotiated);
        };
        let written = p.publish_planes(meta, &planes);
        *lock(&self.stats) = p.stats();
        match written {
            Ok(seq) => gst::trace!(CAT, imp = self, "published seq {seq}"),
            Err(Error::Dropped) => gst::debug!(CAT, imp = self, "frame dropped: every slot leased"),
            Err(e) => {
                gst::element_imp_error!(self, gst::ResourceError::Write, ["{e}"]);
                return Err(gst::FlowError::Error);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view() {
            // GOODBYE end of stream: subscribers drain the ring, then end.
            if let Some(p) = lock(&self.state).publisher.take() {
                *lock(&self.stats) = p.stats();
                p.finish();
            }
        }
        self.parent_event(event)
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

impl CuframesSink {
    fn create(&self, set: &Settings, desc: StreamDesc) -> Result<Publisher, Error> {
        let mut opts = PublisherOptions::new(set.key.as_deref().unwrap_or(""));
        opts.backend = set.backend.into();
        opts.cuda.device = set.cuda_device;
        let cfg = &mut opts.config;
        cfg.slots = set.slots;
        cfg.policy = match set.policy {
            Policy::Drop => PublishPolicy::DropFrame,
            Policy::Wait => PublishPolicy::Wait,
        };
        cfg.wait_timeout = Duration::from_millis(u64::from(set.wait_timeout_ms));
        cfg.lease_timeout = Duration::from_millis(u64::from(set.lease_timeout_ms.max(1)));
        cfg.socket_mode = set.socket_mode;
        cfg.allowed_uids = set.allow_uids.clone();
        cfg.allowed_gids = set.allow_gids.clone();
        cfg.runtime_dir = set
            .runtime_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Publisher::create(opts, desc)
    }
}

/// Whether two descriptions need no new ring (same size, format, rate, colour).
fn same_layout(a: &StreamDesc, b: &StreamDesc) -> bool {
    (
        a.width,
        a.height,
        a.pixel_format,
        a.fps_num,
        a.fps_den,
        a.colour,
    ) == (
        b.width,
        b.height,
        b.pixel_format,
        b.fps_num,
        b.fps_den,
        b.colour,
    )
}
