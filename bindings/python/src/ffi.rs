//! The unsafe edge of the bindings: NumPy arrays over shared memory
//! (`numpy::PyArray::borrow_from_array`) and DLPack capsules (the
//! `DLManagedTensor` / `DLManagedTensorVersioned` structs of dlpack.h v1.x
//! and `PyCapsule_New`).
//!
//! Both hand a pointer into a leased frame to Python together with a strong
//! reference to the object that owns the lease ([`crate::frame::Lease`]);
//! the lease, and with it the mapping, lives until that reference is dropped.

#![allow(unsafe_code)]

use numpy::ndarray::{ArrayView2, ShapeBuilder};
use numpy::{Element, PyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::ffi::{c_void, CStr};

/// A plane of a leased frame: where it is and how it is laid out.
#[derive(Debug, Clone, Copy)]
pub struct PlaneSpec {
    /// Address of the first row (host: this process's mapping; CUDA: a
    /// device address).
    pub ptr: u64,
    /// Rows.
    pub rows: usize,
    /// Elements per row.
    pub cols: usize,
    /// Elements between rows (pitch / element size).
    pub pitch: usize,
    /// Bits per element: 8 (NV12) or 16 (P010).
    pub bits: u8,
    /// DLPack device.
    pub device: DLDevice,
}

impl PlaneSpec {
    /// Bytes from the first row's start to the last row's end.
    pub fn span_bytes(&self) -> usize {
        let item = self.bits as usize / 8;
        (self.pitch * self.rows.saturating_sub(1) + self.cols) * item
    }
}

/// A read-only NumPy view of a host plane whose base object is `owner`.
///
/// The caller guarantees (and [`crate::frame`] keeps) that `spec.ptr ..
/// spec.ptr + spec.span_bytes()` lies inside a mapping owned, directly or
/// not, by `owner`, which is not unmapped before `owner` is dropped.
pub fn host_view<'py, T: Element>(
    py: Python<'py>,
    spec: PlaneSpec,
    owner: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let item = std::mem::size_of::<T>();
    if !(spec.ptr as usize).is_multiple_of(std::mem::align_of::<T>())
        || spec.bits as usize != item * 8
    {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "plane is not aligned for its element type",
        ));
    }
    let len = spec.span_bytes() / item;
    // SAFETY: `spec.ptr` is a live mapping of at least `span_bytes` bytes
    // (the caller's guarantee above), aligned for `T` (checked), and `T` is
    // u8 or u16, valid for any bits; the slice only lives for this call.
    let data: &[T] = unsafe { std::slice::from_raw_parts(spec.ptr as usize as *const T, len) };
    let view = ArrayView2::from_shape((spec.rows, spec.cols).strides((spec.pitch, 1)), data)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    // SAFETY: `owner` becomes the array's base object, so it outlives the
    // array; the memory behind `view` is the mapping `owner` keeps alive
    // and never reallocates (the caller's guarantee).
    let array = unsafe { PyArray2::borrow_from_array(&view, owner) };
    let kwargs = PyDict::new(py);
    kwargs.set_item("write", false)?;
    array.call_method("setflags", (), Some(&kwargs))?;
    Ok(array)
}

/// The reference count of `obj` (`Py_REFCNT`; PyO3 deprecated its own
/// accessor). Meaningful with the GIL held on a GIL-ful interpreter (abi3).
pub fn refcount(obj: &Bound<'_, PyAny>) -> isize {
    // SAFETY: `obj` is a live object (borrowed for this call) and the GIL is
    // held (`Bound`), as Py_REFCNT requires.
    unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) }
}

/// `DLDevice` (dlpack.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DLDevice {
    /// `DLDeviceType`: [`KDL_CPU`] or [`KDL_CUDA`].
    pub device_type: i32,
    /// Device ordinal (0 for the CPU).
    pub device_id: i32,
}

/// `kDLCPU`.
pub const KDL_CPU: i32 = 1;
/// `kDLCUDA`.
pub const KDL_CUDA: i32 = 2;
/// `kDLUInt`.
const KDL_UINT: u8 = 1;
/// `DLPACK_FLAG_BITMASK_READ_ONLY`.
const FLAG_READ_ONLY: u64 = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

/// What a capsule owns: the managed tensor first (so a pointer to it is a
/// pointer to this), its shape and strides, and the lease owner.
#[repr(C)]
struct Holder<M> {
    managed: M,
    shape: [i64; 2],
    strides: [i64; 2],
    owner: Option<Py<PyAny>>,
}

const DLTENSOR: &CStr = c"dltensor";
const USED_DLTENSOR: &CStr = c"used_dltensor";
const DLTENSOR_VERSIONED: &CStr = c"dltensor_versioned";
const USED_DLTENSOR_VERSIONED: &CStr = c"used_dltensor_versioned";

/// The DLPack version this module implements.
pub const DLPACK_VERSION: (u32, u32) = (1, 0);

fn tensor(spec: &PlaneSpec) -> DLTensor {
    DLTensor {
        data: spec.ptr as usize as *mut c_void,
        device: spec.device,
        ndim: 2,
        dtype: DLDataType {
            code: KDL_UINT,
            bits: spec.bits,
            lanes: 1,
        },
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    }
}

/// Frees a holder and drops its owner with the GIL, as NumPy's and CuPy's
/// deleters do (DLPack deleters may run on any thread, with or without the
/// GIL): the lease returns now rather than at PyO3's next pool update. If
/// the interpreter is gone, the owner is dropped as PyO3 does without it.
fn free_holder<M>(h: Box<Holder<M>>) {
    let mut h = h;
    let owner = h.owner.take();
    drop(h);
    if let Some(o) = owner {
        let _ = Python::try_attach(move |_py| drop(o));
    }
}

unsafe extern "C" fn delete_legacy(m: *mut DLManagedTensor) {
    if !m.is_null() {
        // SAFETY: `m` came from `Box::into_raw` of a `Holder<DLManagedTensor>`
        // in `capsule` (the managed tensor is its first field, repr(C)), and
        // DLPack calls the deleter exactly once.
        free_holder(unsafe { Box::from_raw(m.cast::<Holder<DLManagedTensor>>()) });
    }
}

unsafe extern "C" fn delete_versioned(m: *mut DLManagedTensorVersioned) {
    if !m.is_null() {
        // SAFETY: as in `delete_legacy`, for `Holder<DLManagedTensorVersioned>`.
        free_holder(unsafe { Box::from_raw(m.cast::<Holder<DLManagedTensorVersioned>>()) });
    }
}

unsafe extern "C" fn capsule_legacy(cap: *mut pyo3::ffi::PyObject) {
    // SAFETY: called by Python with the GIL held on a capsule made by
    // `capsule`. A consumer that took the tensor renamed it "used_dltensor"
    // and owns it; otherwise the pointer is our managed tensor, not yet
    // deleted (its deleter runs only here or by a consumer).
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(cap, USED_DLTENSOR.as_ptr()) == 1 {
            return;
        }
        let p = pyo3::ffi::PyCapsule_GetPointer(cap, DLTENSOR.as_ptr()).cast::<DLManagedTensor>();
        if p.is_null() {
            pyo3::ffi::PyErr_Clear();
            return;
        }
        if let Some(d) = (*p).deleter {
            d(p);
        }
    }
}

unsafe extern "C" fn capsule_versioned(cap: *mut pyo3::ffi::PyObject) {
    // SAFETY: as in `capsule_legacy`, for the versioned names.
    unsafe {
        if pyo3::ffi::PyCapsule_IsValid(cap, USED_DLTENSOR_VERSIONED.as_ptr()) == 1 {
            return;
        }
        let p = pyo3::ffi::PyCapsule_GetPointer(cap, DLTENSOR_VERSIONED.as_ptr())
            .cast::<DLManagedTensorVersioned>();
        if p.is_null() {
            pyo3::ffi::PyErr_Clear();
            return;
        }
        if let Some(d) = (*p).deleter {
            d(p);
        }
    }
}

fn into_capsule<'py, M>(
    py: Python<'py>,
    holder: Box<Holder<M>>,
    name: &'static CStr,
    destructor: unsafe extern "C" fn(*mut pyo3::ffi::PyObject),
) -> PyResult<Bound<'py, PyAny>> {
    let raw = Box::into_raw(holder);
    // SAFETY: `raw` is a valid, uniquely owned Holder; `name` is 'static as
    // the capsule API requires; the GIL is held (`py`).
    let cap = unsafe { pyo3::ffi::PyCapsule_New(raw.cast(), name.as_ptr(), Some(destructor)) };
    if cap.is_null() {
        // SAFETY: the capsule was not made, so nothing else owns `raw`.
        drop(unsafe { Box::from_raw(raw) });
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `cap` is a new, owned reference (checked non-null).
    Ok(unsafe { Bound::from_owned_ptr(py, cap) })
}

/// A DLPack capsule of `spec`: versioned ("dltensor_versioned", DLPack 1.0,
/// with the read-only flag) or legacy ("dltensor"). The capsule, or the
/// consumer that takes it, holds `owner` until the tensor is deleted.
///
/// The caller guarantees that `spec` describes memory that `owner` keeps
/// alive (as for [`host_view`]).
pub fn capsule<'py>(
    py: Python<'py>,
    spec: PlaneSpec,
    owner: Py<PyAny>,
    versioned: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = [spec.rows as i64, spec.cols as i64];
    let strides = [spec.pitch as i64, 1];
    if versioned {
        let mut h = Box::new(Holder {
            managed: DLManagedTensorVersioned {
                version: DLPackVersion {
                    major: DLPACK_VERSION.0,
                    minor: DLPACK_VERSION.1,
                },
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags: FLAG_READ_ONLY,
                dl_tensor: tensor(&spec),
            },
            shape,
            strides,
            owner: Some(owner),
        });
        // The box does not move: these pointers stay valid until it is freed.
        h.managed.dl_tensor.shape = h.shape.as_mut_ptr();
        h.managed.dl_tensor.strides = h.strides.as_mut_ptr();
        h.managed.manager_ctx = (&raw mut *h).cast();
        into_capsule(py, h, DLTENSOR_VERSIONED, capsule_versioned)
    } else {
        let mut h = Box::new(Holder {
            managed: DLManagedTensor {
                dl_tensor: tensor(&spec),
                manager_ctx: std::ptr::null_mut(),
                deleter: Some(delete_legacy),
            },
            shape,
            strides,
            owner: Some(owner),
        });
        h.managed.dl_tensor.shape = h.shape.as_mut_ptr();
        h.managed.dl_tensor.strides = h.strides.as_mut_ptr();
        h.managed.manager_ctx = (&raw mut *h).cast();
        into_capsule(py, h, DLTENSOR, capsule_legacy)
    }
}

// The struct layout of dlpack.h on 64-bit targets, checked at compile time.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<DLDevice>() == 8);
    assert!(size_of::<DLDataType>() == 4);
    assert!(offset_of!(DLTensor, device) == 8);
    assert!(offset_of!(DLTensor, ndim) == 16);
    assert!(offset_of!(DLTensor, dtype) == 20);
    assert!(offset_of!(DLTensor, shape) == 24);
    assert!(offset_of!(DLTensor, strides) == 32);
    assert!(offset_of!(DLTensor, byte_offset) == 40);
    assert!(size_of::<DLTensor>() == 48);
    assert!(offset_of!(DLManagedTensor, manager_ctx) == 48);
    assert!(offset_of!(DLManagedTensor, deleter) == 56);
    assert!(offset_of!(DLManagedTensorVersioned, manager_ctx) == 8);
    assert!(offset_of!(DLManagedTensorVersioned, deleter) == 16);
    assert!(offset_of!(DLManagedTensorVersioned, flags) == 24);
    assert!(offset_of!(DLManagedTensorVersioned, dl_tensor) == 32);
};
