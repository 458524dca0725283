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
use cuframes::core::layout::{FLAG_DISCONTINUITY, FLAG_KEY};
use cuframes::cuda::{CudaFrameExt, RawStream};
use cuframes::{BackendKind, FrameLayout, OwnedFrame, PixelFormat, StreamDesc};
use numpy::PyArray1;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::sync::Mutex;

/// Holds one frame's lease; see the module documentation.
#[pyclass(module = "cuframes._cuframes", name = "_Lease", frozen)]
pub struct Lease {
    frame: Mutex<Option<OwnedFrame>>,
    /// `release(stream=...)` while views were alive: release after this
    /// stream's work once the last view is gone.
    stream: Mutex<Option<RawStream>>,
    /// The subscriber (any Python object: this module does not depend on
    /// `subscriber`): its connection must outlive the lease.
    _sub: Py<PyAny>,
}

impl Lease {
    fn with<R>(&self, f: impl FnOnce(&OwnedFrame) -> R) -> Option<R> {
        let g = self.frame.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(f)
    }

    fn take(&self) -> Option<OwnedFrame> {
        self.frame.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let stream = *self.stream.lock().unwrap_or_else(|p| p.into_inner());
        match (self.take().map(OwnedFrame::into_cuda), stream) {
            (Some(Ok(f)), Some(s)) => {
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
    /// Where each plane lies in the slot, validated at import (the
    /// geometry every plane view, copy and shape is made from).
    layout: FrameLayout,
    /// The backend the frame lives in.
    kind: BackendKind,
    /// The CUDA device ordinal of a CUDA frame.
    cuda: Option<i32>,
}

/// A leased frame. See the type stub (`_cuframes.pyi`) for the Python API.
#[pyclass(module = "cuframes._cuframes", name = "Frame")]
pub struct Frame {
    lease: Option<Py<Lease>>,
    planes: Option<Py<PyTuple>>,
    /// `release()`'s result once released.
    released: Option<bool>,
    info: Info,
}

fn format_name(format: PixelFormat) -> &'static str {
    match format {
        PixelFormat::Nv12 => "nv12",
        PixelFormat::P010 => "p010",
        PixelFormat::Unknown(_) => "unknown",
    }
}

/// Bytes per element of the layout's format (1: NV12, 2: P010).
fn item_size(layout: &FrameLayout) -> usize {
    layout.format().bytes_per_sample().unwrap_or(1) as usize
}

/// `v` as a `usize`, or the error "plane `i`: `what` too large".
fn to_usize(v: u64, i: usize, what: &str) -> PyResult<usize> {
    usize::try_from(v)
        .map_err(|_| PyValueError::new_err(format!("plane {i}: {what} {v} does not fit a usize")))
}

/// Rows, elements per row and pitch in elements of plane `i` of `layout`;
/// an error when a row or the pitch is not a whole number of elements.
fn plane_shape(layout: &FrameLayout, i: usize) -> PyResult<(usize, usize, usize)> {
    let p = layout
        .plane(i)
        .ok_or_else(|| PyValueError::new_err(format!("no plane {i} in this format")))?;
    let item = item_size(layout);
    let rows = to_usize(p.rows(), i, "rows")?;
    let row_bytes = to_usize(p.row_bytes(), i, "row bytes")?;
    let pitch = to_usize(p.pitch(), i, "pitch")?;
    if !row_bytes.is_multiple_of(item) || !pitch.is_multiple_of(item) {
        return Err(PyValueError::new_err(format!(
            "plane {i}: row of {row_bytes} bytes, pitch {pitch}: not whole {item}-byte elements"
        )));
    }
    Ok((rows, row_bytes / item, pitch / item))
}

/// The frame as FFmpeg's packed rawvideo bytes (the facade's
/// `copy_to_host`: a host copy, or a device-to-host copy for CUDA and
/// Vulkan); an error unless every row of every plane was copied.
fn packed_bytes(py: Python<'_>, lease: &Lease) -> PyResult<Vec<u8>> {
    let (r, need) = lease
        .with(|o| {
            let mut v = Vec::new();
            (o.copy_to_host(&mut v).map(|()| v), o.packed_size())
        })
        .ok_or_else(|| PyValueError::new_err("the frame has been released"))?;
    // (The Python error is made after the lease's lock is dropped.)
    let v = r.map_err(|e| errors::facade_error(py, e))?;
    if v.len() != need {
        return Err(errors::error(
            py,
            "ProtocolError",
            format!(
                "the frame copied as {} bytes, its layout packs {need}: a row lies outside the slot",
                v.len()
            ),
        ));
    }
    Ok(v)
}

impl Frame {
    /// Wraps a frame just received by `sub`.
    pub fn new(
        py: Python<'_>,
        owned: OwnedFrame,
        sub: Py<PyAny>,
        cuda: Option<i32>,
    ) -> PyResult<Self> {
        let meta = *owned.meta();
        let info = Info {
            seq: meta.seq,
            pts_ns: meta.pts_ns,
            publish_ns: meta.publish_ns,
            flags: meta.flags,
            source_index: meta.source_index,
            skipped: owned.skipped(),
            stream_changed: owned.stream_changed(),
            desc: *owned.stream(),
            layout: *owned.layout(),
            kind: owned.backend(),
            cuda: cuda.filter(|_| owned.backend() == BackendKind::Cuda),
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
            info,
        })
    }

    fn lease(&self) -> PyResult<&Py<Lease>> {
        self.lease
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the frame has been released"))
    }

    /// Where plane `i` is: a host address inside the mapping, or a device
    /// address; its geometry is the frame's `layout()`. A plane whose last
    /// row does not lie inside the mapping is an error, never a shorter view.
    fn spec(&self, lease: &Lease, i: usize) -> PyResult<PlaneSpec> {
        let (rows, cols, pitch) = plane_shape(&self.info.layout, i)?;
        let item = item_size(&self.info.layout);
        let ptr = lease
            .with(|o| match o.plane(i) {
                Some(cuframes::Plane::Host { bytes, .. }) => {
                    let need = (pitch * rows.saturating_sub(1) + cols) * item;
                    if bytes.len() < need {
                        Err(format!(
                            "plane {i}: its rows span {need} bytes, {} are mapped",
                            bytes.len()
                        ))
                    } else {
                        Ok(bytes.as_ptr() as u64)
                    }
                }
                Some(cuframes::Plane::Cuda { ptr, .. }) => Ok(ptr),
                Some(cuframes::Plane::Vulkan { .. }) => Err(format!(
                    "plane {i} is Vulkan device memory, which is not mapped here: \
                     Frame.planes and Frame.to_numpy() give copies"
                )),
                None => Err(format!("plane {i} lies outside its slot")),
            })
            .ok_or_else(|| PyValueError::new_err("the frame has been released"))?
            .map_err(PyBufferError::new_err)?;
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
            bits: (item * 8) as u8,
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

    /// Read-only NumPy copies of the planes (Vulkan frames, whose device
    /// memory is not mapped here), shaped as the host views are.
    fn plane_copies<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let lease = self.lease()?;
        let bytes = packed_bytes(py, lease.get())?;
        let layout = &self.info.layout;
        let mut at = 0usize;
        let mut out = Vec::new();
        for (i, p) in layout.planes().iter().enumerate() {
            let (rows, cols, _) = plane_shape(layout, i)?;
            let n = to_usize(p.packed_size(), i, "packed size")?;
            let chunk = bytes.get(at..at + n).ok_or_else(|| {
                PyValueError::new_err(format!("plane {i} lies past the copied frame"))
            })?;
            at += n;
            let flat = PyArray1::from_slice(py, chunk);
            let typed = if item_size(layout) == 2 {
                flat.call_method1("view", ("<u2",))?
            } else {
                flat.into_any()
            };
            let a = typed.call_method1("reshape", ((rows, cols),))?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("write", false)?;
            a.call_method("setflags", (), Some(&kwargs))?;
            out.push(a);
        }
        Ok(out)
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
        format_name(self.info.layout.format())
    }

    /// Bytes between rows of each plane.
    #[getter]
    fn pitches(&self) -> (u64, u64) {
        (self.info.desc.plane_pitch[0], self.info.desc.plane_pitch[1])
    }

    /// "host", "cuda" or "vulkan".
    #[getter]
    fn backend(&self) -> &'static str {
        self.info.kind.name()
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
    /// Vulkan frames have no address here (ValueError).
    #[getter]
    fn memory_range(&self) -> PyResult<(u64, u64)> {
        self.lease()?
            .get()
            .with(|o| {
                if let Some(f) = o.as_host() {
                    let b = f.memory().bytes();
                    Some((b.as_ptr() as u64, b.as_ptr() as u64 + b.len() as u64))
                } else {
                    o.as_cuda().map(|f| {
                        let m = f.memory();
                        (m.device_ptr(), m.device_ptr() + m.size())
                    })
                }
            })
            .ok_or_else(|| PyValueError::new_err("the frame has been released"))?
            .ok_or_else(|| {
                PyValueError::new_err("a Vulkan frame's memory is not mapped in this process")
            })
    }

    /// The planes (Y, then interleaved CbCr). Host frames: read-only NumPy
    /// arrays over the shared memory; CUDA frames: `Plane` exporters;
    /// Vulkan frames: read-only NumPy copies (device memory is not mapped).
    #[getter]
    fn planes(&mut self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        if let Some(p) = &self.planes {
            return Ok(p.clone_ref(py));
        }
        let lease = self.lease()?.clone_ref(py);
        let count = self.info.layout.planes().len();
        let items: Vec<Bound<'_, PyAny>> = match self.info.kind {
            BackendKind::Vulkan => self.plane_copies(py)?,
            BackendKind::Cuda => (0..count)
                .map(|i| Ok(self.plane_object(py, i)?.into_bound(py).into_any()))
                .collect::<PyResult<_>>()?,
            BackendKind::Host => (0..count)
                .map(|i| {
                    let spec = self.spec(lease.get(), i)?;
                    let owner = lease.clone_ref(py).into_bound(py).into_any();
                    // The lease object owns the mapping `spec` points into.
                    Ok(if spec.bits == 16 {
                        ffi::host_view::<u16>(py, spec, owner)?.into_any()
                    } else {
                        ffi::host_view::<u8>(py, spec, owner)?.into_any()
                    })
                })
                .collect::<PyResult<_>>()?,
        };
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
    /// The facade's `copy_to_host`: host, CUDA and Vulkan frames alike.
    fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bytes = packed_bytes(py, self.lease()?.get())?;
        let layout = &self.info.layout;
        let y = plane_shape(layout, 0)?;
        let c = plane_shape(layout, 1)?;
        let flat = PyArray1::from_vec(py, bytes);
        let arr = if item_size(layout) == 2 {
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
            (Some(l), _) => l.get().with(OwnedFrame::is_valid).unwrap_or(false),
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
            valid = match (l.take().map(OwnedFrame::into_cuda), stream) {
                (Some(Ok(f)), Some(s)) => {
                    let v = f.is_valid();
                    f.release_after(s).map_err(|e| errors::cuda_error(py, e))?;
                    v
                }
                (Some(Ok(f)), None) => py.detach(|| f.release()),
                (Some(Err(o)), _) => py.detach(|| o.release()),
                (None, _) => false,
            };
        } else {
            // Views hold the lease: it returns when the last one is gone.
            valid = l.with(OwnedFrame::is_valid).unwrap_or(false);
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
            format_name(self.info.layout.format()),
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
                    .with(|o| o.as_cuda().map_or(Ok(()), |f| f.wait_in(s)))
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
            .with(|o| o.as_cuda().map_or(Ok(()), |f| f.memory().wait_host()))
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
