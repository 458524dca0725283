//! `Publisher`: frames from NumPy arrays (host memory) or CUDA tensors
//! (`__cuda_array_interface__`, device-to-device copies into VRAM slots).

use crate::errors;
use crate::seconds::seconds;
use crate::stream;
use cuframes_core::layout::{StreamDesc, FLAG_KEY};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, HostSlot, Published, Publisher as RustPublisher, PublisherConfig,
};
use cuframes_core::{Codec, PixelFormat, PublishPolicy};
use cuframes_cuda::{CudaBackend, CudaConfig, CudaError, CudaSlot};
use numpy::PyReadonlyArray1;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

enum Any {
    Host(RustPublisher<HostBackend>),
    Cuda(RustPublisher<CudaBackend>),
}

/// A cuframes publisher. See the type stub (`_cuframes.pyi`).
#[pyclass(module = "cuframes._cuframes", name = "Publisher")]
pub struct Publisher {
    inner: Option<Any>,
    desc: StreamDesc,
    key: String,
    /// CUDA device ordinal of a CUDA publisher.
    device: Option<u32>,
}

/// Rows, row bytes of plane `i`.
fn extent(desc: &StreamDesc, i: usize) -> (usize, usize) {
    desc.format()
        .plane_extent(i as u32, desc.width as u32, desc.height as u32)
        .map_or((0, 0), |(row, rows)| (rows as usize, row as usize))
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
    fn inner(&mut self) -> PyResult<&mut Any> {
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
    #[pyo3(signature = (key, width, height, format = "nv12", backend = "host", *, slots = 8,
        policy = "drop_frame", wait_timeout = 2.0, lease_timeout = 5.0, runtime_dir = None,
        device = 0, fps = None))]
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
        let mut cfg = PublisherConfig::new(key);
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
        let (inner, dev) = match backend {
            "host" => (
                Any::Host(
                    py.detach(|| RustPublisher::create(HostBackend, cfg, desc))
                        .map_err(|e| errors::create_error(py, e))?,
                ),
                None,
            ),
            "cuda" => {
                let b = CudaBackend::publisher(CudaConfig {
                    device,
                    ..CudaConfig::default()
                })
                .map_err(|e| errors::cuda_error(py, e))?;
                (
                    Any::Cuda(
                        py.detach(|| RustPublisher::create(b, cfg, desc))
                            .map_err(|e| errors::create_error(py, e))?,
                    ),
                    Some(device),
                )
            }
            b => {
                return Err(PyValueError::new_err(format!(
                    "backend must be \"host\" or \"cuda\", not {b:?}"
                )))
            }
        };
        Ok(Publisher {
            inner: Some(inner),
            desc,
            key: key.to_owned(),
            device: dev,
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
        let is_cuda = matches!(self.inner()?, Any::Cuda(_));
        let first = if frame.is_instance_of::<PyTuple>() || frame.is_instance_of::<PyList>() {
            frame.get_item(0)?
        } else {
            frame.clone()
        };
        let on_device = first.hasattr("__cuda_array_interface__")?;
        let r = if is_cuda && !on_device {
            // Host memory into VRAM slots: synchronous host-to-device copies.
            let planes = self.host_planes(py, frame)?;
            let srcs: Vec<&[u8]> = planes
                .iter()
                .map(|p| p.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let desc = self.desc;
            let Any::Cuda(p) = self.inner()? else {
                unreachable_backend()
            };
            p.publish(meta, |slot: &mut CudaSlot, _| -> Result<(), CudaError> {
                for (i, src) in srcs.iter().enumerate() {
                    slot.copy_plane_from_host(&desc, i, src, extent(&desc, i).1)?;
                }
                slot.fence(cuframes_cuda::RawStream::DEFAULT)
            })
            .map_err(|e| match e {
                cuframes_core::runtime::PublishError::Write(e) => errors::cuda_error(py, e),
            })?
        } else if is_cuda {
            let (planes, cai_stream) = self.device_planes(frame)?;
            let s = match stream.filter(|s| !s.is_none()) {
                Some(s) => stream::raw_stream(s)?,
                None => stream::from_int(cai_stream.unwrap_or(1))?,
            };
            let Any::Cuda(p) = self.inner()? else {
                unreachable_backend()
            };
            py.detach(|| {
                p.publish(meta, |slot: &mut CudaSlot, desc| -> Result<(), CudaError> {
                    for (i, pl) in planes.iter().enumerate() {
                        slot.copy_plane_from_device(desc, i, pl.ptr, pl.pitch, s)?;
                    }
                    slot.fence(s)
                })
            })
            .map_err(|e| match e {
                cuframes_core::runtime::PublishError::Write(e) => errors::cuda_error(py, e),
            })?
        } else {
            let planes = self.host_planes(py, frame)?;
            let desc = self.desc;
            let srcs: Vec<&[u8]> = planes
                .iter()
                .map(|p| p.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let Any::Host(p) = self.inner()? else {
                unreachable_backend()
            };
            p.publish(meta, |slot: &mut HostSlot, _| -> Result<(), Infallible> {
                let bytes = slot.bytes_mut();
                for (i, src) in srcs.iter().enumerate() {
                    let (rows, row) = extent(&desc, i);
                    let off = desc.plane_offset[i] as usize;
                    let pitch = desc.plane_pitch[i] as usize;
                    for r in 0..rows {
                        if let (Some(d), Some(s)) = (
                            bytes.get_mut(off + r * pitch..off + r * pitch + row),
                            src.get(r * row..(r + 1) * row),
                        ) {
                            d.copy_from_slice(s);
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| -> PyErr {
                match e {
                    cuframes_core::runtime::PublishError::Write(e) => match e {},
                }
            })?
        };
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
            let ok = py.detach(|| match inner {
                Any::Host(p) => p.wait_for_subscribers(n, slice),
                Any::Cuda(p) => p.wait_for_subscribers(n, slice),
            });
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
        let l = match self.inner()? {
            Any::Host(p) => p.leases(),
            Any::Cuda(p) => p.leases(),
        };
        Ok(l.into_iter()
            .map(|h| (h.subscriber, h.seq, h.revoked))
            .collect())
    }

    /// Counters: published, dropped, subscribers, revoked_leases, lagged.
    fn stats<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = match self.inner()? {
            Any::Host(p) => p.stats(),
            Any::Cuda(p) => p.stats(),
        };
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
            py.detach(|| match p {
                Any::Host(p) => p.finish(),
                Any::Cuda(p) => p.finish(),
            });
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
            self.key,
            self.desc.width,
            self.desc.height,
            if self.device.is_some() {
                "cuda"
            } else {
                "host"
            }
        )
    }
}

#[cold]
fn unreachable_backend() -> ! {
    // `is_cuda` was read from the same `inner` just above.
    unreachable!("publisher backend changed during publish")
}
