//! `Subscriber`, `Packet` and `CodecParams`.
//!
//! Blocking waits run without the GIL in slices of [`SLICE`], checking for
//! signals between slices, so Ctrl-C raises KeyboardInterrupt in a blocked
//! `next()`.

use crate::errors;
use crate::frame::{Frame, Owned};
use crate::seconds::{opt_seconds, seconds};
use cuframes_core::runtime::{
    Backend, ConnectError, HostBackend, PacketRecvError, PublisherUids, Reconnect, RecvError,
    SubscribeOptions, Subscriber as RustSubscriber, WaitStrategy,
};
use cuframes_core::{DeliveryMode, MemoryKind};
use cuframes_cuda::CudaBackend;
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest wait without the GIL before signals are checked.
const SLICE: Duration = Duration::from_millis(50);

/// A subscriber of either backend.
enum Any {
    Host(RustSubscriber<HostBackend>),
    Cuda(RustSubscriber<CudaBackend>),
}

/// A cuframes subscriber. See the type stub (`_cuframes.pyi`).
#[pyclass(module = "cuframes._cuframes", name = "Subscriber", frozen)]
pub struct Subscriber {
    inner: Mutex<Option<Any>>,
    key: String,
    timeout: Option<Duration>,
    /// The CUDA device ordinal for CUDA subscribers.
    cuda: Option<i32>,
    frames: bool,
}

/// Longest `wait_spin` accepted: a longer busy-wait is a mistake.
const MAX_WAIT_SPIN: Duration = Duration::from_secs(1);

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

fn connect_with<B: Backend>(
    key: &str,
    backend: impl Fn() -> Result<B, PyErrLater>,
    opts: &SubscribeOptions,
    wait: Duration,
) -> Result<RustSubscriber<B>, PyErrLater> {
    let deadline = Instant::now() + wait;
    loop {
        match RustSubscriber::connect(key, backend()?, opts.clone()) {
            Err(ConnectError::NoPublisher { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.map_err(PyErrLater::Connect),
        }
    }
}

/// An error made without the GIL, turned into a Python exception after.
enum PyErrLater {
    Connect(ConnectError),
    Cuda(cuframes_cuda::CudaError),
}

impl PyErrLater {
    fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            PyErrLater::Connect(e) => errors::connect_error(py, e),
            PyErrLater::Cuda(e) => errors::cuda_error(py, e),
        }
    }
}

fn cuda_backend(allow_legacy_ipc: bool) -> Result<CudaBackend, PyErrLater> {
    let b = CudaBackend::subscriber().map_err(PyErrLater::Cuda)?;
    Ok(if allow_legacy_ipc {
        // SAFETY: the caller passed allow_legacy_ipc=True, whose
        // documentation (docs/python.md, _cuframes.pyi) says it trusts the
        // publisher's legacy IPC handles (the `# Safety` of
        // `CudaBackend::allow_legacy_ipc`); the publisher's uid is checked.
        #[allow(unsafe_code)]
        unsafe {
            b.allow_legacy_ipc()
        }
    } else {
        b
    })
}

impl Subscriber {
    /// Waits for `f` without the GIL, in slices, until it returns something
    /// other than a timeout or `timeout` (None: forever) passes.
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        f: impl Fn(&Any, Duration) -> Result<T, Wait> + Sync,
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
                Err(Wait::TimedOut) => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Err(Wait::TimedOut));
                    }
                }
                other => return Ok(other),
            }
        }
    }
}

/// What a wait slice ended with, besides a value.
enum Wait {
    TimedOut,
    Frame(RecvError),
    Packet(PacketRecvError),
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
        wait_publisher = 0.0, handshake_timeout = 5.0, allow_legacy_ipc = false,
        wait_spin = 50e-6, wait_anticipate = true))]
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
        let mut opts = SubscribeOptions::new(self::mode(mode)?);
        if let Some(n) = name {
            opts.name = n;
        }
        opts.runtime_dir = runtime_dir;
        opts.frames = frames;
        opts.packets = packets;
        opts.publisher_uids = uids(publisher_uids)?;
        opts.handshake_timeout = seconds(handshake_timeout, "handshake_timeout")?;
        let spin = seconds(wait_spin, "wait_spin")?;
        if spin > MAX_WAIT_SPIN {
            return Err(PyValueError::new_err(format!(
                "wait_spin must be at most 1 second, not {wait_spin}"
            )));
        }
        opts.wait = WaitStrategy {
            spin,
            anticipate: wait_anticipate,
        };
        if reconnect {
            opts.reconnect = Some(Reconnect::default());
        }
        let timeout = opt_seconds(timeout, "timeout")?;
        let wait = seconds(wait_publisher, "wait_publisher")?;
        if !matches!(backend, "auto" | "host" | "cuda") {
            return Err(PyValueError::new_err(format!(
                "backend must be \"auto\", \"host\" or \"cuda\", not {backend:?}"
            )));
        }
        let k = key.to_owned();
        let inner = py
            .detach(|| -> Result<Any, PyErrLater> {
                let cuda = || connect_with(&k, || cuda_backend(allow_legacy_ipc), &opts, wait);
                match backend {
                    "host" => connect_with(&k, || Ok(HostBackend), &opts, wait).map(Any::Host),
                    "cuda" => cuda().map(Any::Cuda),
                    _ => match connect_with(&k, || Ok(HostBackend), &opts, wait) {
                        Err(PyErrLater::Connect(ConnectError::MemoryKind {
                            theirs: MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc,
                            ..
                        })) => cuda().map(Any::Cuda),
                        r => r.map(Any::Host),
                    },
                }
            })
            .map_err(|e| e.into_py(py))?;
        let cuda = match &inner {
            Any::Host(_) => None,
            Any::Cuda(s) => s.backend().device().map(|d| d.ordinal() as i32),
        };
        Ok(Subscriber {
            inner: Mutex::new(Some(inner)),
            key: key.to_owned(),
            timeout,
            cuda,
            frames,
        })
    }

    /// The stream key.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// "host" or "cuda": the memory frames arrive in.
    #[getter]
    fn backend(&self) -> &'static str {
        if self.cuda.is_some() {
            "cuda"
        } else {
            "host"
        }
    }

    /// The publisher-assigned id of the current connection (the
    /// `subscriber` of `Publisher.leases()`).
    #[getter]
    fn id(&self) -> PyResult<u32> {
        self.with(|s| match s {
            Any::Host(s) => s.id(),
            Any::Cuda(s) => s.id(),
        })
    }

    /// Counters: received, dropped, revoked, reconnects, stream_changes.
    fn stats(&self, py: Python<'_>) -> PyResult<Py<pyo3::types::PyDict>> {
        let st = self.with(|s| match s {
            Any::Host(s) => s.stats(),
            Any::Cuda(s) => s.stats(),
        })?;
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
            let r = match s {
                Any::Host(s) => s.next_frame(slice).map(|f| Owned::Host(f.into_owned())),
                Any::Cuda(s) => s.next_frame(slice).map(|f| Owned::Cuda(f.into_owned())),
            };
            r.map_err(|e| match e {
                RecvError::Timeout(_) => Wait::TimedOut,
                e => Wait::Frame(e),
            })
        })?;
        match r {
            Ok(owned) => Frame::new(py, owned, slf.clone().unbind(), me.cuda),
            Err(Wait::TimedOut) => Err(errors::error(py, "Timeout", timeout_msg(timeout, "frame"))),
            Err(Wait::Frame(e)) => Err(errors::recv_error(py, e)),
            Err(Wait::Packet(e)) => Err(errors::packet_error(py, e)),
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
        let r = self.wait(py, timeout, |s, slice| {
            let r = match s {
                Any::Host(s) => s.next_packet(slice),
                Any::Cuda(s) => s.next_packet(slice),
            };
            r.map_err(|e| match e {
                PacketRecvError::Timeout(_) => Wait::TimedOut,
                e => Wait::Packet(e),
            })
        })?;
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
            Err(Wait::Packet(e)) => Err(errors::packet_error(py, e)),
            Err(Wait::Frame(e)) => Err(errors::recv_error(py, e)),
        }
    }

    /// An iterator of packets until the end of stream.
    fn packets(slf: Py<Self>) -> PacketIter {
        PacketIter { sub: slf }
    }

    /// The codec and its parameter sets from the packet ring (packets=True).
    fn codec_params(&self, py: Python<'_>) -> PyResult<CodecParams> {
        let r = self.with(|s| match s {
            Any::Host(s) => s.codec_params(),
            Any::Cuda(s) => s.codec_params(),
        })?;
        let p = r.map_err(|e| errors::packet_error(py, e))?;
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
    fn with<R>(&self, f: impl FnOnce(&Any) -> R) -> PyResult<R> {
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
    /// "h264", "hevc", or "unknown".
    #[getter]
    fn codec(&self) -> &'static str {
        match self.codec_id {
            27 => "h264",
            173 => "hevc",
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
