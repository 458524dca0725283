//! `Subscriber`, `Packet` and `CodecParams`.
//!
//! Blocking waits run without the GIL in slices of [`SLICE`], checking for
//! signals between slices, so Ctrl-C raises KeyboardInterrupt in a blocked
//! `next()`.

use crate::errors;
use crate::frame::Frame;
use crate::seconds::{opt_seconds, seconds};
use cuframes::core::runtime::{PublisherUids, Reconnect, WaitStrategy};
use cuframes::{Backend, BackendKind, DeliveryMode, SubscriberOptions};
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait without the GIL before signals are checked.
const SLICE: Duration = Duration::from_millis(50);

/// A cuframes subscriber. See the type stub (`_cuframes.pyi`).
#[pyclass(module = "cuframes._cuframes", name = "Subscriber", frozen)]
pub struct Subscriber {
    inner: Mutex<Option<cuframes::Subscriber>>,
    key: String,
    timeout: Option<Duration>,
    /// The backend the slots were imported with (the facade's choice).
    kind: BackendKind,
    /// The CUDA device ordinal for CUDA subscribers.
    cuda: Option<i32>,
    frames: bool,
}

/// Longest `wait_spin` accepted: a longer busy-wait is a mistake.
const MAX_WAIT_SPIN: Duration = Duration::from_secs(1);

/// Defaults of the keyword arguments, taken from core's
/// `SubscribeOptions::new` (through the facade's `SubscriberOptions`), so
/// the Python signature cannot drift from the Rust defaults.
mod defaults {
    use cuframes::SubscriberOptions;

    pub fn handshake_timeout() -> f64 {
        SubscriberOptions::default()
            .subscribe
            .handshake_timeout
            .as_secs_f64()
    }

    pub fn wait_spin() -> f64 {
        SubscriberOptions::default()
            .subscribe
            .wait
            .spin
            .as_secs_f64()
    }

    pub fn wait_anticipate() -> bool {
        SubscriberOptions::default().subscribe.wait.anticipate
    }

    pub fn wait_publisher() -> f64 {
        SubscriberOptions::default().wait_publisher.as_secs_f64()
    }
}

fn mode(s: &str) -> PyResult<DeliveryMode> {
    match s.replace('-', "_").as_str() {
        "newest" | "newest_only" => Ok(DeliveryMode::NewestOnly),
        "in_order" => Ok(DeliveryMode::InOrder),
        _ => Err(PyValueError::new_err(format!(
            "mode must be \"newest\" or \"in_order\", not {s:?}"
        ))),
    }
}

fn uids(obj: Option<&Bound<'_, PyAny>>) -> PyResult<PublisherUids> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(PublisherUids::SameUser);
    };
    if let Ok(s) = o.extract::<String>() {
        return match s.as_str() {
            "any" => Ok(PublisherUids::Any),
            "same_user" | "same-user" => Ok(PublisherUids::SameUser),
            _ => Err(PyValueError::new_err(format!(
                "publisher_uids must be \"same_user\", \"any\" or a list of uids, not {s:?}"
            ))),
        };
    }
    Ok(PublisherUids::Only(o.extract::<Vec<u32>>()?))
}

/// `backend=` as the facade's [`Backend`] (`auto`, `host`, `cuda`, `vulkan`).
pub fn backend(s: &str) -> PyResult<Backend> {
    s.parse::<Backend>().map_err(|_| {
        PyValueError::new_err(format!(
            "backend must be \"auto\", \"host\", \"cuda\" or \"vulkan\", not {s:?}"
        ))
    })
}

/// Lets `opts` import legacy CUDA IPC handles.
fn allow_legacy_ipc(opts: &mut SubscriberOptions) {
    // SAFETY: the caller passed allow_legacy_ipc=True, whose documentation
    // (docs/python.md, _cuframes.pyi) says it trusts every publisher it
    // connects to to send only real IPC handles of whole slots (the
    // `# Safety` of `SubscriberOptions::allow_legacy_ipc`); the publisher's
    // uid is still checked (`publisher_uids=`).
    #[allow(unsafe_code)]
    unsafe {
        opts.allow_legacy_ipc()
    }
}

impl Subscriber {
    /// Waits for `f` without the GIL, in slices, until it returns something
    /// other than a timeout or `timeout` (None: forever) passes.
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        f: impl Fn(&cuframes::Subscriber, Duration) -> Result<T, cuframes::Error> + Sync,
    ) -> PyResult<Result<T, Wait>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            let r = py.detach(|| {
                let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                match g.as_ref() {
                    Some(s) => Ok(f(s, slice)),
                    None => Err(()),
                }
            });
            let r = r.map_err(|()| PyValueError::new_err("the subscriber is closed"))?;
            match r {
                Err(e) if e.is_timeout() => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Err(Wait::TimedOut));
                    }
                }
                Err(e) => return Ok(Err(Wait::Failed(e))),
                Ok(v) => return Ok(Ok(v)),
            }
        }
    }
}

/// What a wait ended with, besides a value.
enum Wait {
    /// The whole timeout passed.
    TimedOut,
    /// Anything else (disconnected, protocol, ...).
    Failed(cuframes::Error),
}

fn timeout_msg(t: Option<Duration>, what: &str) -> String {
    match t {
        Some(t) => format!("no {what} within {t:?}"),
        None => format!("no {what}"),
    }
}

#[pymethods]
impl Subscriber {
    #[new]
    #[pyo3(signature = (key, mode = "newest", backend = "auto", timeout = None, reconnect = true,
        packets = false, frames = true, name = None, runtime_dir = None, publisher_uids = None,
        wait_publisher = defaults::wait_publisher(),
        handshake_timeout = defaults::handshake_timeout(), allow_legacy_ipc = false,
        wait_spin = defaults::wait_spin(), wait_anticipate = defaults::wait_anticipate()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        key: &str,
        mode: &str,
        backend: &str,
        timeout: Option<f64>,
        reconnect: bool,
        packets: bool,
        frames: bool,
        name: Option<String>,
        runtime_dir: Option<PathBuf>,
        publisher_uids: Option<&Bound<'_, PyAny>>,
        wait_publisher: f64,
        handshake_timeout: f64,
        allow_legacy_ipc: bool,
        wait_spin: f64,
        wait_anticipate: bool,
    ) -> PyResult<Self> {
        let mut opts = SubscriberOptions::new(self::mode(mode)?);
        opts.backend = self::backend(backend)?;
        let sub = &mut opts.subscribe;
        if let Some(n) = name {
            sub.name = n;
        }
        sub.runtime_dir = runtime_dir;
        sub.frames = frames;
        sub.packets = packets;
        sub.publisher_uids = uids(publisher_uids)?;
        sub.handshake_timeout = seconds(handshake_timeout, "handshake_timeout")?;
        let spin = seconds(wait_spin, "wait_spin")?;
        if spin > MAX_WAIT_SPIN {
            return Err(PyValueError::new_err(format!(
                "wait_spin must be at most 1 second, not {wait_spin}"
            )));
        }
        sub.wait = WaitStrategy {
            spin,
            anticipate: wait_anticipate,
        };
        if reconnect {
            sub.reconnect = Some(Reconnect::default());
        }
        opts.wait_publisher = seconds(wait_publisher, "wait_publisher")?;
        if allow_legacy_ipc {
            self::allow_legacy_ipc(&mut opts);
        }
        let timeout = opt_seconds(timeout, "timeout")?;
        // The facade connects once: handshake, the backend chosen from the
        // publisher's offer (`Backend::resolve`), the import.
        let inner = py
            .detach(|| cuframes::Subscriber::connect(key, opts))
            .map_err(|e| errors::facade_error(py, e))?;
        let kind = inner.backend();
        let cuda = inner
            .as_cuda()
            .and_then(|s| s.backend().device())
            .map(|d| d.ordinal() as i32);
        Ok(Subscriber {
            inner: Mutex::new(Some(inner)),
            key: key.to_owned(),
            timeout,
            kind,
            cuda,
            frames,
        })
    }

    /// The stream key.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// "host", "cuda" or "vulkan": the memory frames arrive in.
    #[getter]
    fn backend(&self) -> &'static str {
        self.kind.name()
    }

    /// The publisher-assigned id of the current connection (the
    /// `subscriber` of `Publisher.leases()`).
    #[getter]
    fn id(&self) -> PyResult<u32> {
        self.with(|s| s.id())
    }

    /// Counters: received, dropped, revoked, reconnects, stream_changes.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<pyo3::types::PyDict>> {
        let st = self.with(|s| s.stats())?;
        let d = pyo3::types::PyDict::new(py);
        d.set_item("received", st.received)?;
        d.set_item("dropped", st.dropped)?;
        d.set_item("revoked", st.revoked)?;
        d.set_item("reconnects", st.reconnects)?;
        d.set_item("stream_changes", st.stream_changes)?;
        d.set_item("spin_hits", st.spin_hits)?;
        Ok(d.unbind())
    }

    /// The next frame; waits at most `timeout` seconds (None: the
    /// subscriber's timeout, None there too: forever).
    #[pyo3(signature = (timeout = None))]
    fn next(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Frame> {
        let py = slf.py();
        let me = slf.get();
        let timeout = opt_seconds(timeout, "timeout")?.or(me.timeout);
        let r = me.wait(py, timeout, |s, slice| {
            s.next_frame(slice).map(cuframes::Frame::into_owned)
        })?;
        match r {
            Ok(owned) => Frame::new(py, owned, slf.clone().into_any().unbind(), me.cuda),
            Err(Wait::TimedOut) => Err(errors::error(py, "Timeout", timeout_msg(timeout, "frame"))),
            Err(Wait::Failed(e)) => Err(errors::facade_error(py, e)),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Frames until the publisher's end of stream (Disconnected ends the
    /// iteration); waits as `next()` does.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Frame> {
        let py = slf.py();
        match Self::next(slf, None) {
            Err(e) if e.is_instance(py, &errors_class(py, "Disconnected")?) => {
                Err(PyStopIteration::new_err(()))
            }
            r => r,
        }
    }

    /// The next encoded packet (packets=True); waits as `next()` does.
    #[pyo3(signature = (timeout = None))]
    fn next_packet(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Packet> {
        let timeout = opt_seconds(timeout, "timeout")?.or(self.timeout);
        let r = self.wait(py, timeout, |s, slice| s.next_packet(slice))?;
        match r {
            Ok(p) => Ok(Packet {
                data: PyBytes::new(py, &p.data).unbind(),
                seq: p.meta.seq,
                pts_ns: p.meta.pts_ns,
                dts_ns: p.meta.dts_ns,
                keyframe: p.meta.is_key(),
                discontinuity: p.meta.discontinuity,
                skipped: p.meta.skipped,
            }),
            Err(Wait::TimedOut) => {
                Err(errors::error(py, "Timeout", timeout_msg(timeout, "packet")))
            }
            Err(Wait::Failed(e)) => Err(errors::facade_error(py, e)),
        }
    }

    /// An iterator of packets until the end of stream.
    fn packets(slf: Py<Self>) -> PacketIter {
        PacketIter { sub: slf }
    }

    /// The codec and its parameter sets from the packet ring (packets=True).
    fn codec_params(&self, py: Python<'_>) -> PyResult<CodecParams> {
        let p = self
            .with(|s| s.codec_params())?
            .map_err(|e| errors::facade_error(py, e))?;
        Ok(CodecParams {
            codec_id: p.codec_id,
            extradata: PyBytes::new(py, &p.extradata).unbind(),
        })
    }

    /// Closes the connection. Frames still alive stay mapped (memory-safe)
    /// but the publisher reclaims their leases and may rewrite their slots.
    fn close(&self, py: Python<'_>) {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
        py.detach(|| drop(s));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<cuframes.Subscriber key={:?} {}{}>",
            self.key,
            self.backend(),
            if self.frames { "" } else { " packets-only" }
        )
    }
}

impl Subscriber {
    fn with<R>(&self, f: impl FnOnce(&cuframes::Subscriber) -> R) -> PyResult<R> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .map(f)
            .ok_or_else(|| PyValueError::new_err("the subscriber is closed"))
    }
}

fn errors_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("cuframes._errors")?.getattr(name)
}

/// Iterator returned by `Subscriber.packets()`.
#[pyclass(module = "cuframes._cuframes", name = "_PacketIter", frozen)]
pub struct PacketIter {
    sub: Py<Subscriber>,
}

#[pymethods]
impl PacketIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Packet> {
        match self.sub.get().next_packet(py, None) {
            Err(e) if e.is_instance(py, &errors_class(py, "Disconnected")?) => {
                Err(PyStopIteration::new_err(()))
            }
            r => r,
        }
    }
}

/// One encoded packet (an Annex B access unit), copied out of the ring.
#[pyclass(module = "cuframes._cuframes", name = "Packet", frozen, get_all)]
pub struct Packet {
    data: Py<PyBytes>,
    seq: u64,
    pts_ns: Option<i64>,
    dts_ns: Option<i64>,
    keyframe: bool,
    discontinuity: bool,
    skipped: u64,
}

#[pymethods]
impl Packet {
    fn __len__(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<cuframes.Packet seq={} {} bytes pts_ns={:?}{}>",
            self.seq,
            self.__len__(py),
            self.pts_ns,
            if self.keyframe { " key" } else { "" }
        )
    }
}

/// The codec of a packet ring.
#[pyclass(module = "cuframes._cuframes", name = "CodecParams", frozen, get_all)]
pub struct CodecParams {
    codec_id: u32,
    extradata: Py<PyBytes>,
}

#[pymethods]
impl CodecParams {
    /// "h264", "hevc", or "unknown" (core's `Codec::from_av_codec_id`).
    #[getter]
    fn codec(&self) -> &'static str {
        match cuframes::Codec::from_av_codec_id(self.codec_id) {
            Some(cuframes::Codec::H264) => "h264",
            Some(cuframes::Codec::Hevc) => "hevc",
            _ => "unknown",
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<cuframes.CodecParams {} ({} bytes of extradata)>",
            self.codec(),
            self.extradata.bind(py).as_bytes().len()
        )
    }
}
