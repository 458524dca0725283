//! `Publisher`: frames from NumPy arrays (host memory, copied into slots of
//! any backend by the facade's `publish_planes`) or CUDA tensors
//! (`__cuda_array_interface__`, device-to-device copies into VRAM slots).

use crate::errors;
use crate::seconds::seconds;
use crate::stream;
use cuframes::core::layout::FLAG_KEY;
use cuframes::core::runtime::PublishError;
use cuframes::cuda::{CudaError, CudaSlot};
use cuframes::{
    BackendKind, Codec, FrameMeta, PixelFormat, PublishPolicy, Published, PublisherConfig,
    PublisherOptions, StreamDesc,
};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::path::PathBuf;
use std::time::Duration;

/// A cuframes publisher. See the type stub (`_cuframes.pyi`).
#[pyclass(module = "cuframes._cuframes", name = "Publisher")]
pub struct Publisher {
    inner: Option<cuframes::Publisher>,
    desc: StreamDesc,
    key: String,
    /// The backend holding the slots (the facade's choice for "auto").
    kind: BackendKind,
    /// CUDA device ordinal of a CUDA publisher.
    device: Option<u32>,
}

/// Defaults of the keyword arguments, taken from core's
/// `PublisherConfig::new` (through the facade's `PublisherOptions`).
mod defaults {
    use cuframes::PublisherConfig;

    pub fn slots() -> u32 {
        PublisherConfig::new("defaults").slots
    }

    pub fn wait_timeout() -> f64 {
        PublisherConfig::DEFAULT_WAIT_TIMEOUT.as_secs_f64()
    }

    pub fn lease_timeout() -> f64 {
        PublisherConfig::DEFAULT_LEASE_TIMEOUT.as_secs_f64()
    }
}

/// Rows, row bytes of plane `i` (core's `FrameLayout`; (0, 0) for a plane
/// the format does not have).
fn extent(desc: &StreamDesc, i: usize) -> (usize, usize) {
    desc.validate(desc.frame_size)
        .ok()
        .and_then(|l| l.plane(i))
        .map_or((0, 0), |p| (p.rows() as usize, p.row_bytes() as usize))
}

/// A plane of the caller's frame in device memory: address and pitch.
#[derive(Clone, Copy)]
struct DevicePlane {
    ptr: u64,
    pitch: usize,
}

/// Reads `__cuda_array_interface__` of `obj`: (address, shape, strides in
/// bytes, item size, stream).
#[allow(clippy::type_complexity)]
fn cai(
    obj: &Bound<'_, PyAny>,
) -> PyResult<(u64, Vec<usize>, Option<Vec<usize>>, usize, Option<i64>)> {
    let d = obj.getattr("__cuda_array_interface__")?;
    let d = d.cast::<PyDict>()?;
    let get = |k: &str| -> PyResult<Bound<'_, PyAny>> {
        d.get_item(k)?
            .ok_or_else(|| PyValueError::new_err(format!("__cuda_array_interface__ lacks {k:?}")))
    };
    let (ptr, _ro): (u64, bool) = get("data")?.extract()?;
    let shape: Vec<usize> = get("shape")?.extract()?;
    let strides: Option<Vec<usize>> = match d.get_item("strides")? {
        Some(s) if !s.is_none() => Some(s.extract()?),
        _ => None,
    };
    let typestr: String = get("typestr")?.extract()?;
    let item = match typestr.as_str() {
        "|u1" | "<u1" | "|i1" => 1,
        "<u2" | "<i2" => 2,
        t => {
            return Err(PyTypeError::new_err(format!(
                "unsupported dtype {t:?}: uint8 (NV12) or uint16 (P010)"
            )))
        }
    };
    let stream = match d.get_item("stream")? {
        Some(s) if !s.is_none() => Some(s.extract()?),
        _ => None,
    };
    Ok((ptr, shape, strides, item, stream))
}

impl Publisher {
    fn inner(&mut self) -> PyResult<&mut cuframes::Publisher> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("the publisher is closed"))
    }

    fn bps(&self) -> usize {
        self.desc.format().bytes_per_sample().unwrap_or(1) as usize
    }

    /// The caller's host frame as the bytes of each plane, packed rows.
    fn host_planes<'py>(
        &self,
        py: Python<'py>,
        frame: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<PyReadonlyArray1<'py, u8>>> {
        let np = py.import("numpy")?;
        let bps = self.bps();
        let as_bytes = |a: Bound<'py, PyAny>,
                        want: usize,
                        what: &str|
         -> PyResult<PyReadonlyArray1<'py, u8>> {
            let a = np.call_method1("ascontiguousarray", (a,))?;
            let item: usize = a.getattr("itemsize")?.extract()?;
            if item != bps {
                return Err(PyTypeError::new_err(format!(
                    "{what}: {}-byte elements, expected {} ({})",
                    item,
                    bps,
                    if bps == 2 {
                        "uint16 for P010"
                    } else {
                        "uint8 for NV12"
                    }
                )));
            }
            let flat = a
                .call_method1("reshape", (-1,))?
                .call_method1("view", ("u1",))?;
            let n: usize = flat.getattr("size")?.extract()?;
            if n != want {
                return Err(PyValueError::new_err(format!(
                    "{what}: {n} bytes, expected {want}"
                )));
            }
            flat.extract()
        };
        let sizes: Vec<usize> = (0..2)
            .map(|i| {
                let (rows, row) = extent(&self.desc, i);
                rows * row
            })
            .collect();
        if frame.is_instance_of::<PyTuple>() || frame.is_instance_of::<PyList>() {
            let n = frame.len()?;
            if n != 2 {
                return Err(PyValueError::new_err(format!(
                    "{n} planes given, NV12 / P010 have 2"
                )));
            }
            (0..2)
                .map(|i| as_bytes(frame.get_item(i)?, sizes[i], &format!("plane {i}")))
                .collect()
        } else {
            let all = as_bytes(frame.clone(), sizes[0] + sizes[1], "frame (packed)")?;
            let a = all.as_any();
            let y = a.get_item(pyo3::types::PySlice::new(py, 0, sizes[0] as isize, 1))?;
            let c = a.get_item(pyo3::types::PySlice::new(
                py,
                sizes[0] as isize,
                (sizes[0] + sizes[1]) as isize,
                1,
            ))?;
            Ok(vec![y.extract()?, c.extract()?])
        }
    }

    /// The caller's CUDA frame as device planes, and the stream it is on.
    fn device_planes(&self, frame: &Bound<'_, PyAny>) -> PyResult<(Vec<DevicePlane>, Option<i64>)> {
        let bps = self.bps();
        let one = |obj: &Bound<'_, PyAny>,
                   i: Option<usize>|
         -> PyResult<(u64, usize, usize, Option<i64>)> {
            let (ptr, shape, strides, item, stream) = cai(obj)?;
            if item != bps {
                return Err(PyTypeError::new_err(format!(
                    "{item}-byte elements, expected {bps}"
                )));
            }
            if shape.len() != 2 {
                return Err(PyValueError::new_err(format!(
                    "shape {shape:?}: expected (rows, elements per row)"
                )));
            }
            let pitch = match strides {
                None => shape[1] * item,
                Some(s) if s.len() == 2 && s[1] == item => s[0],
                Some(s) => {
                    return Err(PyValueError::new_err(format!(
                        "strides {s:?}: rows must be contiguous"
                    )))
                }
            };
            if let Some(i) = i {
                let (rows, row) = extent(&self.desc, i);
                if shape[0] != rows || shape[1] * item != row {
                    return Err(PyValueError::new_err(format!(
                        "plane {i}: shape {shape:?}, expected ({rows}, {})",
                        row / item
                    )));
                }
            }
            Ok((ptr, shape[0], pitch, stream))
        };
        if frame.is_instance_of::<PyTuple>() || frame.is_instance_of::<PyList>() {
            let mut planes = Vec::new();
            let mut stream = None;
            for i in 0..2 {
                let (ptr, _, pitch, s) = one(&frame.get_item(i)?, Some(i))?;
                planes.push(DevicePlane { ptr, pitch });
                stream = stream.or(s);
            }
            return Ok((planes, stream));
        }
        let (ptr, rows, pitch, stream) = one(frame, None)?;
        let (r0, row0) = extent(&self.desc, 0);
        let (r1, row1) = extent(&self.desc, 1);
        if row0 != row1 || rows != r0 + r1 || pitch < row0 {
            return Err(PyValueError::new_err(format!(
                "packed frame: expected shape ({}, {}) (Y rows, then CbCr rows)",
                r0 + r1,
                row0 / bps
            )));
        }
        Ok((
            vec![
                DevicePlane { ptr, pitch },
                DevicePlane {
                    ptr: ptr + (r0 * pitch) as u64,
                    pitch,
                },
            ],
            stream,
        ))
    }
}

#[pymethods]
impl Publisher {
    #[new]
    #[pyo3(signature = (key, width, height, format = "nv12", backend = "host", *,
        slots = defaults::slots(), policy = "drop_frame",
        wait_timeout = defaults::wait_timeout(), lease_timeout = defaults::lease_timeout(),
        runtime_dir = None, device = 0, fps = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        key: &str,
        width: u32,
        height: u32,
        format: &str,
        backend: &str,
        slots: u32,
        policy: &str,
        wait_timeout: f64,
        lease_timeout: f64,
        runtime_dir: Option<PathBuf>,
        device: u32,
        fps: Option<(u64, u64)>,
    ) -> PyResult<Self> {
        let fmt = match format {
            "nv12" => PixelFormat::Nv12,
            "p010" => PixelFormat::P010,
            f => {
                return Err(PyValueError::new_err(format!(
                    "format must be \"nv12\" or \"p010\", not {f:?}"
                )))
            }
        };
        let mut desc = StreamDesc::packed(width, height, fmt, Codec::Unknown(0))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        if let Some((n, d)) = fps {
            desc.fps_num = n;
            desc.fps_den = d;
        }
        let mut opts = PublisherOptions::new(key);
        opts.backend = crate::subscriber::backend(backend)?;
        opts.cuda.device = device;
        let cfg: &mut PublisherConfig = &mut opts.config;
        cfg.slots = slots;
        cfg.policy = match policy.replace('-', "_").as_str() {
            "drop_frame" => PublishPolicy::DropFrame,
            "wait" => PublishPolicy::Wait,
            p => {
                return Err(PyValueError::new_err(format!(
                    "policy must be \"drop_frame\" or \"wait\", not {p:?}"
                )))
            }
        };
        cfg.wait_timeout = seconds(wait_timeout, "wait_timeout")?;
        cfg.lease_timeout = seconds(lease_timeout, "lease_timeout")?;
        cfg.runtime_dir = runtime_dir;
        // The facade picks and starts the backend (`Backend::resolve_publisher`;
        // "auto": CUDA when usable, else host memory).
        let inner = py
            .detach(|| cuframes::Publisher::create(opts, desc))
            .map_err(|e| errors::facade_error(py, e))?;
        let kind = inner.backend();
        Ok(Publisher {
            inner: Some(inner),
            desc,
            key: key.to_owned(),
            kind,
            device: (kind == BackendKind::Cuda).then_some(device),
        })
    }

    /// The stream key.
    #[getter]
    fn key(&self) -> &str {
        &self.key
    }

    /// Bytes between rows of each plane in the slots.
    #[getter]
    fn pitches(&self) -> (u64, u64) {
        (self.desc.plane_pitch[0], self.desc.plane_pitch[1])
    }

    /// Publishes one frame (copied into a slot). Returns its sequence
    /// number, or None when it was dropped (every slot leased).
    #[pyo3(signature = (frame, pts_ns = None, keyframe = true, stream = None))]
    fn publish(
        &mut self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        pts_ns: Option<i64>,
        keyframe: bool,
        stream: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let meta = FrameMeta {
            pts_ns,
            flags: if keyframe { FLAG_KEY } else { 0 },
            ..FrameMeta::default()
        };
        let first = if frame.is_instance_of::<PyTuple>() || frame.is_instance_of::<PyList>() {
            frame.get_item(0)?
        } else {
            frame.clone()
        };
        let on_device = first.hasattr("__cuda_array_interface__")?;
        if !on_device {
            // Host memory into the slots of any backend: the facade's
            // publish_planes (a host copy, a host-to-device copy then a
            // fence, or a Vulkan upload), rows checked against the layout.
            let planes = self.host_planes(py, frame)?;
            let srcs: Vec<(&[u8], usize)> = planes
                .iter()
                .enumerate()
                .map(|(i, p)| p.as_slice().map(|s| (s, extent(&self.desc, i).1)))
                .collect::<Result<_, _>>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let p = self.inner()?;
            return match p.publish_planes(meta, &srcs) {
                Ok(seq) => Ok(Some(seq)),
                Err(cuframes::Error::Dropped) => Ok(None),
                Err(e) => Err(errors::facade_error(py, e)),
            };
        }
        if self.kind != BackendKind::Cuda {
            return Err(PyTypeError::new_err(format!(
                "a CUDA tensor (__cuda_array_interface__) needs a CUDA publisher; this one is {}",
                self.kind
            )));
        }
        let (planes, cai_stream) = self.device_planes(frame)?;
        let s = match stream.filter(|s| !s.is_none()) {
            Some(s) => stream::raw_stream(s)?,
            None => stream::from_int(cai_stream.unwrap_or(1))?,
        };
        let p = self
            .inner()?
            .as_cuda_mut()
            .ok_or_else(|| PyTypeError::new_err("not a CUDA publisher"))?;
        let r = py
            .detach(|| {
                p.publish(meta, |slot: &mut CudaSlot, desc| -> Result<(), CudaError> {
                    for (i, pl) in planes.iter().enumerate() {
                        slot.copy_plane_from_device(desc, i, pl.ptr, pl.pitch, s)?;
                    }
                    slot.fence(s)
                })
            })
            .map_err(|e| match e {
                PublishError::Write(e) => errors::cuda_error(py, e),
            })?;
        Ok(match r {
            Published::Committed(seq) => Some(seq),
            Published::Dropped => None,
        })
    }

    /// Waits until at least `n` subscribers are connected or `timeout`
    /// seconds pass; returns whether they are.
    #[pyo3(signature = (n = 1, timeout = 10.0))]
    fn wait_for_subscribers(&mut self, py: Python<'_>, n: usize, timeout: f64) -> PyResult<bool> {
        let t = seconds(timeout, "timeout")?;
        let deadline = std::time::Instant::now() + t;
        loop {
            let slice = deadline
                .saturating_duration_since(std::time::Instant::now())
                .min(Duration::from_millis(50));
            let inner = self.inner()?;
            let ok = py.detach(|| inner.wait_for_subscribers(n, slice));
            if ok {
                return Ok(true);
            }
            py.check_signals()?;
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// The publisher's lease table now: (subscriber id, frame seq, revoked)
    /// for each frame a subscriber holds (protocol.md §5.2).
    fn leases(&mut self) -> PyResult<Vec<(u32, u64, bool)>> {
        let l = self.inner()?.leases();
        Ok(l.into_iter()
            .map(|h| (h.subscriber, h.seq, h.revoked))
            .collect())
    }

    /// Counters: published, dropped, subscribers, revoked_leases, lagged.
    fn stats<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner()?.stats();
        let d = PyDict::new(py);
        d.set_item("published", s.published)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("subscribers", s.subscribers)?;
        d.set_item("revoked_leases", s.revoked_leases)?;
        d.set_item("lagged", s.lagged)?;
        Ok(d)
    }

    /// CUDA device ordinal of a CUDA publisher, else None.
    #[getter]
    fn device(&self) -> Option<u32> {
        self.device
    }

    /// Ends the stream: GOODBYE (end of stream) to every subscriber, which
    /// still drain the frames left in the ring; the socket is removed.
    fn close(&mut self, py: Python<'_>) {
        if let Some(p) = self.inner.take() {
            py.detach(|| p.finish());
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<cuframes.Publisher key={:?} {}x{} {}>",
            self.key, self.desc.width, self.desc.height, self.kind
        )
    }
}
