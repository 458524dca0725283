//! `Frame`, `Plane` and the lease object they share.
//!
//! The lease rule (docs/python.md, "Leases"): a frame's lease is held by a
//! `_Lease` object. The `Frame`, every NumPy view of a host plane, every
//! `Plane` exporter and every DLPack capsule (or the tensor a consumer made
//! of it) hold a strong reference to it. `Frame.release()` / `__exit__`
//! drop the frame's reference; the lease is returned when the last
//! reference goes — at once when no view is left, otherwise when the last
//! view is collected. So a view never reads a slot the publisher may reuse,
//! except after the publisher revoked the lease (`lease_timeout`), which
//! `Frame.is_valid()` / the result of `release()` report.

use crate::errors;
use crate::ffi::{self, DLDevice, PlaneSpec, KDL_CPU, KDL_CUDA};
use crate::subscriber::Subscriber;
use cuframes_core::layout::StreamDesc;
use cuframes_core::layout::{FLAG_DISCONTINUITY, FLAG_KEY};
use cuframes_core::runtime::{HostBackend, OwnedFrame};
use cuframes_core::PixelFormat;
use cuframes_cuda::{CudaBackend, CudaFrameExt, RawStream};
use numpy::PyArray1;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::Mutex;

/// A leased frame of either backend.
pub enum Owned {
    /// Host memory (memfd).
    Host(OwnedFrame<HostBackend>),
    /// CUDA device memory.
    Cuda(OwnedFrame<CudaBackend>),
}

impl Owned {
    fn is_valid(&self) -> bool {
        match self {
            Owned::Host(f) => f.is_valid(),
            Owned::Cuda(f) => f.is_valid(),
        }
    }

    fn release(self) -> bool {
        match self {
            Owned::Host(f) => f.release(),
            Owned::Cuda(f) => f.release(),
        }
    }
}

/// Holds one frame's lease; see the module documentation.
#[pyclass(module = "cuframes._cuframes", name = "_Lease", frozen)]
pub struct Lease {
    frame: Mutex<Option<Owned>>,
    /// `release(stream=...)` while views were alive: release after this
    /// stream's work once the last view is gone.
    stream: Mutex<Option<RawStream>>,
    /// The subscriber: its connection must outlive the lease.
    _sub: Py<Subscriber>,
}

impl Lease {
    fn with<R>(&self, f: impl FnOnce(&Owned) -> R) -> Option<R> {
        let g = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(f)
    }

    fn take(&self) -> Option<Owned> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let stream = *self.stream.lock().unwrap_or_else(|p| p.into_inner());
        match (self.take(), stream) {
            (Some(Owned::Cuda(f)), Some(s)) => {
                // On error the frame is released at once (synchronised).
                let _ = f.release_after(s);
            }
            (f, _) => drop(f),
        }
    }
}

/// What a frame is, copied out of its lease (immutable).
#[derive(Clone, Copy)]
struct Info {
    seq: u64,
    pts_ns: Option<i64>,
    publish_ns: u64,
    flags: u64,
    source_index: u64,
    skipped: u64,
    stream_changed: bool,
    desc: StreamDesc,
    /// `None`: host memory; `Some(ordinal)`: CUDA device.
    cuda: Option<i32>,
}

/// The number of planes of the supported formats (NV12, P010).
const PLANES: usize = 2;

/// A leased frame. See the type stub (`_cuframes.pyi`) for the Python API.
#[pyclass(module = "cuframes._cuframes", name = "Frame")]
pub struct Frame {
    lease: Option<Py<Lease>>,
    planes: Option<Py<PyTuple>>,
    /// `release()`'s result once released.
    released: Option<bool>,
    info: Info,
}

fn format_name(desc: &StreamDesc) -> &'static str {
    match desc.format() {
        PixelFormat::Nv12 => "nv12",
        PixelFormat::P010 => "p010",
        PixelFormat::Unknown(_) => "unknown",
    }
}

/// Rows, elements per row, pitch in elements, bits of plane `i`.
fn plane_shape(desc: &StreamDesc, i: usize) -> Option<(usize, usize, usize, u8)> {
    let fmt = desc.format();
    let bps = fmt.bytes_per_sample()? as usize;
    let (row, rows) = fmt.plane_extent(i as u32, desc.width as u32, desc.height as u32)?;
    let pitch = *desc.plane_pitch.get(i)? as usize;
    Some((
        rows as usize,
        row as usize / bps,
        pitch / bps,
        (bps * 8) as u8,
    ))
}

impl Frame {
    /// Wraps a frame just received by `sub`.
    pub fn new(
        py: Python<'_>,
        owned: Owned,
        sub: Py<Subscriber>,
        cuda: Option<i32>,
    ) -> PyResult<Self> {
        let (meta, skipped, changed, desc) = match &owned {
            Owned::Host(f) => (*f.meta(), f.skipped(), f.stream_changed(), *f.stream()),
            Owned::Cuda(f) => (*f.meta(), f.skipped(), f.stream_changed(), *f.stream()),
        };
        let lease = Py::new(
            py,
            Lease {
                frame: Mutex::new(Some(owned)),
                stream: Mutex::new(None),
                _sub: sub,
            },
        )?;
        Ok(Frame {
            lease: Some(lease),
            planes: None,
            released: None,
            info: Info {
                seq: meta.seq,
                pts_ns: meta.pts_ns,
                publish_ns: meta.publish_ns,
                flags: meta.flags,
                source_index: meta.source_index,
                skipped,
                stream_changed: changed,
                desc,
                cuda,
            },
        })
    }

    fn lease(&self) -> PyResult<&Py<Lease>> {
        self.lease
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the frame has been released"))
    }

    /// Where plane `i` is: a host address inside the mapping, or a device address.
    fn spec(&self, lease: &Lease, i: usize) -> PyResult<PlaneSpec> {
        let (rows, cols, pitch, bits) = plane_shape(&self.info.desc, i)
            .ok_or_else(|| PyValueError::new_err(format!("no plane {i} in this format")))?;
        let ptr = lease
            .with(|o| match o {
                Owned::Host(f) => f.plane(i).map(|(b, _)| b.as_ptr() as u64),
                Owned::Cuda(f) => f.device_plane(i).ok().map(|p| p.ptr),
            })
            .flatten()
            .ok_or_else(|| PyValueError::new_err(format!("plane {i} lies outside its slot")))?;
        let device = match self.info.cuda {
            None => DLDevice {
                device_type: KDL_CPU,
                device_id: 0,
            },
            Some(ord) => DLDevice {
                device_type: KDL_CUDA,
                device_id: ord,
            },
        };
        Ok(PlaneSpec {
            ptr,
            rows,
            cols,
            pitch,
            bits,
            device,
        })
    }

    fn plane_object(&self, py: Python<'_>, i: usize) -> PyResult<Py<Plane>> {
        let lease = self.lease()?;
        let spec = self.spec(lease.get(), i)?;
        Py::new(
            py,
            Plane {
                spec,
                lease: lease.clone_ref(py),
            },
        )
    }
}

#[pymethods]
impl Frame {
    /// Sequence number (from 1, continuing across stream changes).
    #[getter]
    fn seq(&self) -> u64 {
        self.info.seq
    }

    /// Presentation time, ns, or None.
    #[getter]
    fn pts_ns(&self) -> Option<i64> {
        self.info.pts_ns
    }

    /// CLOCK_MONOTONIC time of the publisher's commit, ns.
    #[getter]
    fn publish_ns(&self) -> u64 {
        self.info.publish_ns
    }

    /// Raw flag bits (FLAG_KEY = 1, FLAG_DISCONTINUITY = 2).
    #[getter]
    fn flags(&self) -> u64 {
        self.info.flags
    }

    /// Whether the frame is a keyframe.
    #[getter]
    fn keyframe(&self) -> bool {
        self.info.flags & FLAG_KEY != 0
    }

    /// Whether frames before this one were lost (source gap or reconnect).
    #[getter]
    fn discontinuity(&self) -> bool {
        self.info.flags & FLAG_DISCONTINUITY != 0
    }

    /// Index of the frame in the source's output order.
    #[getter]
    fn source_index(&self) -> u64 {
        self.info.source_index
    }

    /// Frames skipped or lost between the previous frame and this one.
    #[getter]
    fn skipped(&self) -> u64 {
        self.info.skipped
    }

    /// Whether this is the first frame of a new stream description.
    #[getter]
    fn stream_changed(&self) -> bool {
        self.info.stream_changed
    }

    /// Width, pixels.
    #[getter]
    fn width(&self) -> u64 {
        self.info.desc.width
    }

    /// Height, pixels.
    #[getter]
    fn height(&self) -> u64 {
        self.info.desc.height
    }

    /// "nv12" or "p010".
    #[getter]
    fn format(&self) -> &'static str {
        format_name(&self.info.desc)
    }

    /// Bytes between rows of each plane.
    #[getter]
    fn pitches(&self) -> (u64, u64) {
        (self.info.desc.plane_pitch[0], self.info.desc.plane_pitch[1])
    }

    /// "host" or "cuda".
    #[getter]
    fn backend(&self) -> &'static str {
        if self.info.cuda.is_some() {
            "cuda"
        } else {
            "host"
        }
    }

    /// CUDA device ordinal of a CUDA frame; None for host frames.
    #[getter]
    fn device(&self) -> Option<i32> {
        self.info.cuda
    }

    /// Whether the frame has been released (release() or __exit__).
    #[getter]
    fn released(&self) -> bool {
        self.lease.is_none()
    }

    /// The frame's slot as (first, end) addresses: host addresses of this
    /// process's read-only mapping, or device addresses for CUDA frames.
    #[getter]
    fn memory_range(&self) -> PyResult<(u64, u64)> {
        self.lease()?
            .get()
            .with(|o| match o {
                Owned::Host(f) => {
                    let b = f.memory().bytes();
                    (b.as_ptr() as u64, b.as_ptr() as u64 + b.len() as u64)
                }
                Owned::Cuda(f) => {
                    let m = f.memory();
                    (m.device_ptr(), m.device_ptr() + m.size())
                }
            })
            .ok_or_else(|| PyValueError::new_err("the frame has been released"))
    }

    /// The planes (Y, then interleaved CbCr). Host frames: read-only NumPy
    /// arrays over the shared memory; CUDA frames: `Plane` exporters.
    #[getter]
    fn planes(&mut self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        if let Some(p) = &self.planes {
            return Ok(p.clone_ref(py));
        }
        let lease = self.lease()?.clone_ref(py);
        let mut items: Vec<Bound<'_, PyAny>> = Vec::with_capacity(PLANES);
        for i in 0..PLANES {
            if self.info.cuda.is_some() {
                items.push(self.plane_object(py, i)?.into_bound(py).into_any());
                continue;
            }
            let spec = self.spec(lease.get(), i)?;
            let owner = lease.clone_ref(py).into_bound(py).into_any();
            // The lease object owns the mapping `spec` points into.
            items.push(if spec.bits == 16 {
                ffi::host_view::<u16>(py, spec, owner)?.into_any()
            } else {
                ffi::host_view::<u8>(py, spec, owner)?.into_any()
            });
        }
        let t = PyTuple::new(py, items)?.unbind();
        self.planes = Some(t.clone_ref(py));
        Ok(t)
    }

    /// A DLPack / CUDA-array-interface exporter of plane `i` (also for
    /// host frames: `numpy.from_dlpack(frame.dlpack(0))`).
    fn dlpack(&self, py: Python<'_>, i: usize) -> PyResult<Py<Plane>> {
        self.plane_object(py, i)
    }

    /// An owned copy: the packed rawvideo layout (FFmpeg's), rows without
    /// padding. Shape (height + ceil(height/2), width) when both planes have
    /// the same row length (even widths), else 1-D; uint8, or uint16 for P010.
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let lease = self.lease()?;
        let bytes = lease
            .get()
            .with(|o| {
                let mut v = Vec::new();
                match o {
                    Owned::Host(f) => {
                        f.for_each_row(|r| v.extend_from_slice(r));
                        Ok(v)
                    }
                    Owned::Cuda(f) => f.copy_to_host(&mut v).map(|()| v),
                }
            })
            .ok_or_else(|| PyValueError::new_err("the frame has been released"))?
            // (The Python error is made after the lease's lock is dropped.)
            .map_err(|e| errors::cuda_error(py, e))?;
        let d = &self.info.desc;
        let (Some(y), Some(c)) = (plane_shape(d, 0), plane_shape(d, 1)) else {
            return Err(PyValueError::new_err("unknown pixel format"));
        };
        let flat = PyArray1::from_vec(py, bytes);
        let arr = if y.3 == 16 {
            flat.call_method1("view", ("<u2",))?
        } else {
            flat.into_any()
        };
        if y.1 == c.1 {
            arr.call_method1("reshape", ((y.0 + c.0, y.1),))
        } else {
            Ok(arr)
        }
    }

    /// Whether the frame is still in its slot: False once the publisher
    /// revoked the lease (held past its lease timeout); data read from it
    /// may then be torn. After release(), the value release() returned.
    fn is_valid(&self) -> bool {
        match (&self.lease, self.released) {
            (Some(l), _) => l.get().with(Owned::is_valid).unwrap_or(false),
            (None, r) => r.unwrap_or(false),
        }
    }

    /// Ends this frame's hold on the lease; see the module rule. `stream`
    /// (CUDA frames): an int `CUstream` (0 or 1: legacy default stream, 2:
    /// per-thread default) or an object with `cuda_stream` / `ptr` (torch,
    /// CuPy): the lease returns once the work queued on it so far is done.
    /// Returns whether the frame was valid until now (not revoked).
    #[pyo3(signature = (stream = None))]
    fn release(&mut self, py: Python<'_>, stream: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let Some(lease) = self.lease.take() else {
            return Ok(self.released.unwrap_or(false));
        };
        let stream = match stream {
            Some(s) if !s.is_none() => Some(crate::stream::raw_stream(s)?),
            _ => None,
        };
        self.planes = None;
        let l = lease.get();
        let valid;
        if ffi::refcount(lease.bind(py).as_any()) == 1 {
            // No view left: return the lease now.
            valid = match (l.take(), stream) {
                (Some(Owned::Cuda(f)), Some(s)) => {
                    let v = f.is_valid();
                    f.release_after(s).map_err(|e| errors::cuda_error(py, e))?;
                    v
                }
                (Some(o), _) => py.detach(|| o.release()),
                (None, _) => false,
            };
        } else {
            // Views hold the lease: it returns when the last one is gone.
            valid = l.with(Owned::is_valid).unwrap_or(false);
            *l.stream.lock().unwrap_or_else(|p| p.into_inner()) = stream;
        }
        drop(lease);
        self.released = Some(valid);
        Ok(valid)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&mut self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.release(py, None)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "<cuframes.Frame seq={} {}x{} {} {}{}>",
            self.info.seq,
            self.info.desc.width,
            self.info.desc.height,
            format_name(&self.info.desc),
            self.backend(),
            if self.lease.is_none() {
                " released"
            } else {
                ""
            }
        )
    }
}

/// One plane exported by DLPack (and `__cuda_array_interface__` for CUDA
/// frames). Holds the frame's lease while it lives.
#[pyclass(module = "cuframes._cuframes", name = "Plane", frozen)]
pub struct Plane {
    spec: PlaneSpec,
    lease: Py<Lease>,
}

#[pymethods]
impl Plane {
    /// (rows, elements per row).
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.spec.rows, self.spec.cols)
    }

    /// (pitch, element size), bytes.
    #[getter]
    fn strides(&self) -> (usize, usize) {
        let item = self.spec.bits as usize / 8;
        (self.spec.pitch * item, item)
    }

    /// "uint8" or "uint16".
    #[getter]
    fn dtype(&self) -> &'static str {
        if self.spec.bits == 16 {
            "uint16"
        } else {
            "uint8"
        }
    }

    /// Address of the first row (device address for CUDA frames).
    #[getter]
    fn ptr(&self) -> u64 {
        self.spec.ptr
    }

    /// (device type, device id): (1, 0) for host frames (kDLCPU), (2,
    /// ordinal) for CUDA frames (kDLCUDA).
    fn __dlpack_device__(&self) -> (i32, i32) {
        (self.spec.device.device_type, self.spec.device.device_id)
    }

    /// A DLPack capsule of the plane, without a copy (Python array API).
    /// `max_version` >= (1, 0): a versioned capsule ("dltensor_versioned",
    /// read-only flag set); otherwise a legacy one ("dltensor"). `stream`
    /// (CUDA): the consumer's stream, ordered after the frame is ready
    /// (None or 1: legacy default stream, 2: per-thread default, -1: no
    /// ordering). Raises BufferError for `copy=True` or another `dl_device`.
    #[pyo3(signature = (*, stream = None, max_version = None, dl_device = None, copy = None))]
    fn __dlpack__<'py>(
        &self,
        py: Python<'py>,
        stream: Option<&Bound<'py, PyAny>>,
        max_version: Option<(u32, u32)>,
        dl_device: Option<(i32, i32)>,
        copy: Option<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if copy == Some(true) {
            return Err(PyBufferError::new_err(
                "cuframes exports planes without a copy only (copy=True); use Frame.to_numpy()",
            ));
        }
        if let Some(d) = dl_device {
            if d != self.__dlpack_device__() {
                return Err(PyBufferError::new_err(format!(
                    "the plane lives on device {:?}, not {d:?}",
                    self.__dlpack_device__()
                )));
            }
        }
        let stream = stream.filter(|s| !s.is_none());
        if self.spec.device.device_type == KDL_CUDA {
            let s = match stream {
                None => Some(RawStream::DEFAULT),
                Some(s) => {
                    let v: i64 = s.extract()?;
                    match v {
                        -1 => None,
                        // DLPack disallows 0 as ambiguous; taken as the
                        // default stream, as CUDA itself does.
                        _ => Some(crate::stream::from_int(v)?),
                    }
                }
            };
            if let Some(s) = s {
                self.lease
                    .get()
                    .with(|o| match o {
                        Owned::Cuda(f) => f.wait_in(s),
                        Owned::Host(_) => Ok(()),
                    })
                    .transpose()
                    .map_err(|e| errors::cuda_error(py, e))?;
            }
        } else if stream.is_some() {
            return Err(PyBufferError::new_err(
                "stream must be None for host memory",
            ));
        }
        let versioned = max_version.is_some_and(|(major, _)| major >= 1);
        let owner = self.lease.clone_ref(py).into_any();
        // The lease object owns the mapping or device slot `spec` points into.
        ffi::capsule(py, self.spec, owner, versioned)
    }

    /// CUDA Array Interface v3 (CUDA frames only). `data` is read-only;
    /// `stream` is None: the data is complete when this returns (an
    /// IpcEvent publisher's event is waited for on the host first).
    #[getter]
    fn __cuda_array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        if self.spec.device.device_type != KDL_CUDA {
            return Err(pyo3::exceptions::PyAttributeError::new_err(
                "__cuda_array_interface__: host-memory plane",
            ));
        }
        self.lease
            .get()
            .with(|o| match o {
                Owned::Cuda(f) => f.memory().wait_host(),
                Owned::Host(_) => Ok(()),
            })
            .transpose()
            .map_err(|e| errors::cuda_error(py, e))?;
        let d = PyDict::new(py);
        let item = self.spec.bits as usize / 8;
        d.set_item("shape", (self.spec.rows, self.spec.cols))?;
        d.set_item("typestr", if item == 2 { "<u2" } else { "|u1" })?;
        d.set_item("data", (self.spec.ptr, true))?;
        d.set_item("strides", (self.spec.pitch * item, item))?;
        d.set_item("version", 3)?;
        d.set_item("stream", py.None())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "<cuframes.Plane {}x{} {} on {:?} at {:#x}>",
            self.spec.rows,
            self.spec.cols,
            self.dtype(),
            self.__dlpack_device__(),
            self.spec.ptr
        )
    }
}
