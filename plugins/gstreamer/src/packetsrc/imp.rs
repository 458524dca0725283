//! `cuframespacketsrc` implementation: a live `GstPushSrc` reading the
//! publisher's encoded packet ring (`docs/protocol.md` §9).

use crate::common::{self, Mode, OpenSpec, SourceBackend};
use crate::conv::{self, TimeMap};
use cuframes::{Error, Subscriber};
use cuframes_core::runtime::{CodecParams, EndReason, Packet, PacketRecvError};
use cuframes_core::Codec;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "cuframespacketsrc",
        gst::DebugColorFlags::empty(),
        Some("cuframes packet source"),
    )
});

const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
struct Settings {
    key: Option<String>,
    reconnect: bool,
    runtime_dir: Option<String>,
    timeout_ms: u32,
    backend: SourceBackend,
    allow_legacy_ipc: bool,
    publisher_uids: Vec<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            key: None,
            reconnect: true,
            runtime_dir: None,
            timeout_ms: 0,
            backend: SourceBackend::Auto,
            allow_legacy_ipc: false,
            publisher_uids: Vec::new(),
        }
    }
}

struct Streaming {
    sub: Option<Subscriber>,
    /// Codec of the current caps (FFmpeg `AVCodecID`).
    codec: Option<u32>,
    /// The extradata the current caps were made from (H.264's codec_data).
    extradata: Vec<u8>,
    /// Parameter sets go in front of the next keyframe (first packet, and
    /// after a discontinuity: a reconnected publisher may have new ones).
    headers: bool,
    discont: bool,
    time: TimeMap,
    last_packet: Instant,
}

impl Default for Streaming {
    fn default() -> Self {
        Streaming {
            sub: None,
            codec: None,
            extradata: Vec::new(),
            headers: true,
            discont: true,
            time: TimeMap::default(),
            last_packet: Instant::now(),
        }
    }
}

/// The element.
#[derive(Default)]
pub struct CuframesPacketSrc {
    settings: Mutex<Settings>,
    streaming: Mutex<Streaming>,
    flushing: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[glib::object_subclass]
impl ObjectSubclass for CuframesPacketSrc {
    const NAME: &'static str = "GstCuframesPacketSrc";
    type Type = super::CuframesPacketSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for CuframesPacketSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("key")
                    .nick("Stream key")
                    .blurb("Key of the publisher (started with --packets) whose packet ring to read, [A-Za-z0-9_-]{1,63} (required)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("reconnect")
                    .nick("Reconnect")
                    .blurb("Reconnect when the publisher stops or dies; the stream resumes at a keyframe flagged DISCONT, parameter sets in front. false: end with the publisher (EOS on its end of stream or shutdown, an error if it died). A publisher not up yet at start is always waited for (see timeout)")
                    .default_value(true)
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
                    .blurb("Fail with an error when no packet arrived for this many milliseconds, also while waiting for or reconnecting to a publisher; 0: wait forever")
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", SourceBackend::Auto)
                    .nick("Memory backend")
                    .blurb("The publisher's frame memory this subscriber accepts (packets are always in host memory): auto (chosen from the publisher's offer), host, cuda, vulkan")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("allow-legacy-ipc")
                    .nick("Allow legacy CUDA IPC")
                    .blurb("Accept a publisher that shares legacy CUDA IPC handles (trust it: same uid, same PID namespace)")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "key" => s.key = value.get().unwrap_or(None),
            "reconnect" => s.reconnect = value.get().unwrap_or(true),
            "runtime-dir" => s.runtime_dir = value.get().unwrap_or(None),
            "timeout" => s.timeout_ms = value.get().unwrap_or(0),
            "backend" => s.backend = value.get().unwrap_or_default(),
            "allow-legacy-ipc" => s.allow_legacy_ipc = value.get().unwrap_or(false),
            "publisher-uids" => s.publisher_uids = common::id_list(value),
            other => gst::warning!(CAT, imp = self, "unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "key" => s.key.to_value(),
            "reconnect" => s.reconnect.to_value(),
            "runtime-dir" => s.runtime_dir.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            "backend" => s.backend.to_value(),
            "allow-legacy-ipc" => s.allow_legacy_ipc.to_value(),
            "publisher-uids" => common::id_list_value(&s.publisher_uids),
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

impl GstObjectImpl for CuframesPacketSrc {}

impl ElementImpl for CuframesPacketSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "cuframes packet source",
                "Source/Video",
                "Encoded H.264 / HEVC access units (Annex B) from a cuframes publisher's packet ring, starting on a keyframe",
                "cuframes developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut caps = gst::Caps::new_empty();
            {
                let caps = caps.get_mut().expect("new caps");
                for codec in [Codec::H264, Codec::Hevc] {
                    if let Some(c) = conv::packet_caps(codec, None) {
                        caps.append(c);
                    }
                }
            }
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

impl BaseSrcImpl for CuframesPacketSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        if lock(&self.settings).key.as_deref().unwrap_or("").is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ["cuframespacketsrc needs the key property"]
            ));
        }
        *lock(&self.streaming) = Streaming::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.streaming) = Streaming::default();
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        // Caps come from the ring's codec, known once connected (`create`).
        if let Some(caps) = self.obj().src_pad().current_caps() {
            self.obj()
                .set_caps(&caps)
                .map_err(|e| gst::loggable_error!(CAT, "set_caps: {e}"))?;
        }
        Ok(())
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            q.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
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

impl PushSrcImpl for CuframesPacketSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let set = lock(&self.settings).clone();
        let mut st = lock(&self.streaming);
        let (packet, params) = self.receive(&set, &mut st)?;
        st.last_packet = Instant::now();
        // New caps for a new codec, or new parameter sets (a reconnected or
        // changed stream): H.264's codec_data is made from them.
        if st.codec != Some(params.codec_id) || st.extradata != params.extradata {
            let caps = Codec::from_av_codec_id(params.codec_id)
                .and_then(|c| conv::packet_caps(c, Some(&params.extradata)))
                .ok_or_else(|| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::CodecNotFound,
                    [
                        "packet ring codec id {} is not H.264 ({}) or HEVC ({}), or its extradata holds no SPS and PPS",
                        params.codec_id,
                        Codec::H264.av_codec_id(),
                        Codec::Hevc.av_codec_id()
                    ]
                );
                gst::FlowError::NotNegotiated
            })?;
            gst::info!(CAT, imp = self, "caps {caps}");
            self.obj()
                .set_caps(&caps)
                .map_err(|_| gst::FlowError::NotNegotiated)?;
            st.codec = Some(params.codec_id);
            st.extradata = params.extradata.clone();
            st.headers = true;
        }
        let m = packet.meta;
        if m.discontinuity {
            st.discont = true;
            st.headers = true;
            st.time.reset();
        }
        let key = m.is_key();
        let data = if Codec::from_av_codec_id(params.codec_id) == Some(Codec::H264) {
            // H.264 goes out as AVC samples; the parameter sets are in the
            // caps' codec_data.
            conv::annexb_to_avc(&packet.data)
        } else {
            // HEVC: parameter sets (VPS/SPS/PPS) in front of the first
            // keyframe, so a parser downstream can start there (the ring
            // keeps them out of band, as MP4 and Matroska sources have them).
            let mut data = Vec::with_capacity(packet.data.len() + params.extradata.len());
            if key && st.headers {
                data.extend_from_slice(&params.extradata);
                st.headers = false;
            }
            data.extend_from_slice(&packet.data);
            data
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        let now = common::running_time_now(self.obj().upcast_ref());
        // Decode time drives the anchor (it never goes back within a
        // stream); the presentation time keeps its distance from it.
        let dts_src = m.dts_ns.or(m.pts_ns);
        let dts = st.time.map(dts_src, now);
        let pts = match (m.pts_ns, dts_src) {
            (Some(p), Some(d)) => dts.checked_add_signed(p.saturating_sub(d)),
            _ => Some(dts),
        };
        {
            let b = buffer.get_mut().ok_or(gst::FlowError::Error)?;
            b.set_dts(gst::ClockTime::from_nseconds(dts));
            b.set_pts(pts.map(gst::ClockTime::from_nseconds));
            b.set_offset(m.seq);
            let mut flags = gst::BufferFlags::empty();
            if !key {
                flags |= gst::BufferFlags::DELTA_UNIT;
            }
            if std::mem::take(&mut st.discont) {
                flags |= gst::BufferFlags::DISCONT;
            }
            b.set_flags(flags);
        }
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}

impl CuframesPacketSrc {
    fn receive(
        &self,
        set: &Settings,
        st: &mut Streaming,
    ) -> Result<(Packet, CodecParams), gst::FlowError> {
        let deadline = || {
            (set.timeout_ms > 0)
                .then(|| st.last_packet + Duration::from_millis(u64::from(set.timeout_ms)))
        };
        loop {
            if self.flushing.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            if deadline().is_some_and(|d| Instant::now() >= d) {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ["no packet from key {:?} for {} ms", set.key, set.timeout_ms]
                );
                return Err(gst::FlowError::Error);
            }
            if st.sub.is_none() {
                let mut spec = OpenSpec::new(
                    set.key.as_deref().unwrap_or(""),
                    &self.obj().name(),
                    Mode::InOrder,
                    set.reconnect,
                    set.runtime_dir.as_deref(),
                );
                spec.opts.subscribe.frames = false;
                spec.opts.subscribe.packets = true;
                spec.backend(set.backend, set.allow_legacy_ipc);
                spec.opts.subscribe.publisher_uids = common::publisher_uids(&set.publisher_uids);
                match spec.open_waiting(true, &self.flushing, deadline()) {
                    Ok(Some(s)) => st.sub = Some(s),
                    Ok(None) => return Err(gst::FlowError::Flushing),
                    Err(e) => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::OpenRead,
                            ["cannot subscribe to the packets of {:?}: {e}", set.key]
                        );
                        return Err(gst::FlowError::Error);
                    }
                }
            }
            let Some(sub) = st.sub.as_ref() else {
                continue;
            };
            let got = sub
                .next_packet(POLL)
                .and_then(|p| Ok((p, sub.codec_params()?)));
            match got {
                Ok(r) => return Ok(r),
                Err(Error::Packet(PacketRecvError::Timeout(_))) => continue,
                Err(Error::Packet(PacketRecvError::Corrupt(e))) => {
                    gst::warning!(CAT, imp = self, "skipped a corrupt packet slot: {e}");
                }
                Err(Error::Packet(PacketRecvError::Disconnected)) => {
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
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Read,
                        ["receiving a packet: {e}"]
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }
}
