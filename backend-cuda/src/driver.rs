//! FFI boundary to the CUDA driver API, loaded at run time by cudarc
//! (`cudarc::driver::sys`). The only module of this crate with `unsafe`:
//! every other module calls the safe functions here, which take and return
//! plain handles (device pointers are `u64`, events and streams are raw
//! pointers wrapped in [`Event`] / [`RawStream`]).
//!
//! Each function names the driver call it wraps; errors carry that name and
//! the `CUresult`.
#![allow(unsafe_code)]

use cudarc::driver::sys as cu;
use rustix::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ffi::c_void;
use std::sync::OnceLock;

/// A failed driver call: which one, and what it returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call} failed: {result}")]
pub struct DriverError {
    /// The CUDA driver API function.
    pub call: &'static str,
    /// The `CUresult`, as its name (e.g. `CUDA_ERROR_OUT_OF_MEMORY`).
    pub result: String,
}

fn check(call: &'static str, r: cu::CUresult) -> Result<(), DriverError> {
    if r == cu::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(DriverError {
            call,
            result: format!("{r:?}"),
        })
    }
}

/// Whether `libcuda` can be loaded. Call before anything else in cudarc:
/// its loader panics when the library is absent.
pub fn driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the driver library and
    // reports whether that worked; it touches no CUDA state.
    unsafe { cu::is_culib_present() }
}

/// `cuInit(0)`, once per process. `None` when there is no driver at all.
pub(crate) fn init() -> Option<Result<(), DriverError>> {
    static INIT: OnceLock<Result<(), DriverError>> = OnceLock::new();
    if !driver_present() {
        return None;
    }
    // SAFETY: the driver library is present (checked), so cudarc's loader
    // does not panic; cuInit takes flags 0 and may be called repeatedly.
    Some(
        INIT.get_or_init(|| check("cuInit", unsafe { cu::cuInit(0) }))
            .clone(),
    )
}

/// `cuDeviceGetCount`.
pub(crate) fn device_count() -> Result<i32, DriverError> {
    let mut n = 0;
    // SAFETY: `n` is a valid out pointer; the driver is initialised by the
    // callers (every public entry point goes through `init`).
    check("cuDeviceGetCount", unsafe { cu::cuDeviceGetCount(&mut n) })?;
    Ok(n)
}

/// `cuDeviceGet`.
pub(crate) fn device_get(ordinal: i32) -> Result<cu::CUdevice, DriverError> {
    let mut d = 0;
    // SAFETY: valid out pointer; an out-of-range ordinal is an error result.
    check("cuDeviceGet", unsafe { cu::cuDeviceGet(&mut d, ordinal) })?;
    Ok(d)
}

/// `cuDeviceGetUuid_v2`: the 16-byte UUID `nvidia-smi -L` shows.
pub(crate) fn device_uuid(dev: cu::CUdevice) -> Result<[u8; 16], DriverError> {
    let mut u = cu::CUuuid { bytes: [0; 16] };
    // SAFETY: valid out pointer to a CUuuid; `dev` came from cuDeviceGet.
    check("cuDeviceGetUuid_v2", unsafe {
        cu::cuDeviceGetUuid_v2(&mut u, dev)
    })?;
    Ok(u.bytes.map(|b| b as u8))
}

/// `cuDeviceGetName`.
pub(crate) fn device_name(dev: cu::CUdevice) -> Result<String, DriverError> {
    let mut buf = [0 as std::ffi::c_char; 128];
    // SAFETY: the driver writes at most `len` bytes including the NUL.
    check("cuDeviceGetName", unsafe {
        cu::cuDeviceGetName(buf.as_mut_ptr(), buf.len() as i32, dev)
    })?;
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `cuDeviceCanAccessPeer(dev, peer)`: whether `dev` can read and write
/// memory that lives on `peer` (NVLink or PCIe peer-to-peer).
pub(crate) fn can_access_peer(dev: cu::CUdevice, peer: cu::CUdevice) -> Result<bool, DriverError> {
    let mut can = 0;
    // SAFETY: valid out pointer; both handles came from cuDeviceGet (an
    // invalid one is an error result, not undefined behaviour).
    check("cuDeviceCanAccessPeer", unsafe {
        cu::cuDeviceCanAccessPeer(&mut can, dev, peer)
    })?;
    Ok(can != 0)
}

/// A retained primary context of one device (`cuDevicePrimaryCtxRetain`),
/// released on drop. The same context cudarc's `CudaContext::new` uses.
#[derive(Debug)]
pub(crate) struct PrimaryContext {
    dev: cu::CUdevice,
    ctx: cu::CUcontext,
}

// SAFETY: a CUDA context handle may be used from any thread once made
// current there (`make_current`, called before every driver call that needs
// it); the handle itself is an opaque pointer the driver synchronises.
unsafe impl Send for PrimaryContext {}
// SAFETY: see `Send`; `&PrimaryContext` only reads the handle.
unsafe impl Sync for PrimaryContext {}

impl PrimaryContext {
    pub(crate) fn retain(dev: cu::CUdevice) -> Result<Self, DriverError> {
        let mut ctx = std::ptr::null_mut();
        // SAFETY: valid out pointer; `dev` came from cuDeviceGet.
        check("cuDevicePrimaryCtxRetain", unsafe {
            cu::cuDevicePrimaryCtxRetain(&mut ctx, dev)
        })?;
        Ok(PrimaryContext { dev, ctx })
    }

    /// `cuCtxSetCurrent`: binds the context to the calling thread.
    pub(crate) fn make_current(&self) -> Result<(), DriverError> {
        // SAFETY: `ctx` is a live retained context (released only in drop).
        check("cuCtxSetCurrent", unsafe { cu::cuCtxSetCurrent(self.ctx) })
    }

    pub(crate) fn device(&self) -> cu::CUdevice {
        self.dev
    }

    pub(crate) fn raw(&self) -> cu::CUcontext {
        self.ctx
    }
}

impl Drop for PrimaryContext {
    fn drop(&mut self) {
        // SAFETY: balances the retain in `retain`; the handle is not used after.
        let _ = unsafe { cu::cuDevicePrimaryCtxRelease_v2(self.dev) };
    }
}

/// `cuCtxSynchronize` of the current context.
pub(crate) fn ctx_synchronize() -> Result<(), DriverError> {
    // SAFETY: no arguments; with no current context it returns an error.
    check("cuCtxSynchronize", unsafe { cu::cuCtxSynchronize() })
}

/// `cuMemGetInfo_v2`: (free, total) bytes of the current context's device.
pub(crate) fn mem_info() -> Result<(u64, u64), DriverError> {
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: valid out pointers.
    check("cuMemGetInfo_v2", unsafe {
        cu::cuMemGetInfo_v2(&mut free, &mut total)
    })?;
    Ok((free as u64, total as u64))
}

fn vmm_prop(dev: cu::CUdevice) -> cu::CUmemAllocationProp {
    cu::CUmemAllocationProp {
        type_: cu::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED,
        requestedHandleTypes:
            cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
        location: cu::CUmemLocation {
            type_: cu::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: dev,
        },
        win32HandleMetaData: std::ptr::null_mut(),
        allocFlags: cu::CUmemAllocationProp_st__bindgen_ty_1 {
            compressionType: 0,
            gpuDirectRDMACapable: 0,
            usage: 0,
            reserved: [0; 4],
        },
    }
}

/// `cuMemGetAllocationGranularity` (minimum) for fd-shareable device memory.
pub(crate) fn vmm_granularity(dev: cu::CUdevice) -> Result<u64, DriverError> {
    let prop = vmm_prop(dev);
    let mut g = 0usize;
    // SAFETY: valid pointers to a filled-in prop and an out value.
    check("cuMemGetAllocationGranularity", unsafe {
        cu::cuMemGetAllocationGranularity(
            &mut g,
            &prop,
            cu::CUmemAllocationGranularity_flags::CU_MEM_ALLOC_GRANULARITY_MINIMUM,
        )
    })?;
    Ok(g as u64)
}

/// A physical VMM allocation (`cuMemCreate` / `cuMemImportFromShareableHandle`),
/// released on drop (`cuMemRelease`; the memory lives on while mapped).
#[derive(Debug)]
pub(crate) struct VmmHandle(cu::CUmemGenericAllocationHandle);

impl VmmHandle {
    /// `cuMemCreate` of `size` bytes (a multiple of the granularity),
    /// exportable as a POSIX fd.
    pub(crate) fn create(dev: cu::CUdevice, size: u64) -> Result<Self, DriverError> {
        let prop = vmm_prop(dev);
        let mut h = 0;
        // SAFETY: valid out pointer and prop; size is checked by the driver.
        check("cuMemCreate", unsafe {
            cu::cuMemCreate(&mut h, size as usize, &prop, 0)
        })?;
        Ok(VmmHandle(h))
    }

    /// `cuMemImportFromShareableHandle` of a POSIX fd (the fd stays ours).
    pub(crate) fn import(fd: BorrowedFd<'_>) -> Result<Self, DriverError> {
        let mut h = 0;
        // SAFETY: for POSIX fd handles the driver takes the fd *value* cast
        // to a pointer and does not take ownership of it; `fd` is open for
        // the duration of the call (borrowed).
        check("cuMemImportFromShareableHandle", unsafe {
            cu::cuMemImportFromShareableHandle(
                &mut h,
                fd.as_raw_fd() as usize as *mut c_void,
                cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
            )
        })?;
        Ok(VmmHandle(h))
    }

    /// `cuMemExportToShareableHandle`: a new fd for this allocation.
    pub(crate) fn export_fd(&self) -> Result<OwnedFd, DriverError> {
        let mut fd: i32 = -1;
        // SAFETY: for POSIX fd handles the out value is an `int`; `self.0` is
        // a live allocation handle created with that handle type requested.
        check("cuMemExportToShareableHandle", unsafe {
            cu::cuMemExportToShareableHandle(
                (&mut fd as *mut i32).cast(),
                self.0,
                cu::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                0,
            )
        })?;
        if fd < 0 {
            return Err(DriverError {
                call: "cuMemExportToShareableHandle",
                result: format!("returned fd {fd}"),
            });
        }
        // SAFETY: the driver returned a fresh fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl Drop for VmmHandle {
    fn drop(&mut self) {
        // SAFETY: balances create/import; mappings made from the handle keep
        // the memory alive until they are unmapped (driver semantics).
        let _ = unsafe { cu::cuMemRelease(self.0) };
    }
}

/// A reserved and mapped virtual range over a [`VmmHandle`]
/// (`cuMemAddressReserve` + `cuMemMap` + `cuMemSetAccess`), unmapped and
/// freed on drop.
#[derive(Debug)]
pub(crate) struct VmmMapping {
    va: u64,
    size: u64,
}

impl VmmMapping {
    /// Maps all `size` bytes of `handle` on `dev`, read-write or read-only.
    /// Returns the mapping and whether read-only access was granted (some
    /// drivers refuse read-only; then it falls back to read-write).
    pub(crate) fn map(
        handle: &VmmHandle,
        dev: cu::CUdevice,
        size: u64,
        read_only: bool,
    ) -> Result<(Self, bool), DriverError> {
        let mut va = 0;
        // SAFETY: valid out pointer; alignment 0 = granularity; no fixed address.
        check("cuMemAddressReserve", unsafe {
            cu::cuMemAddressReserve(&mut va, size as usize, 0, 0, 0)
        })?;
        let mapping = VmmMapping { va, size };
        // SAFETY: `va` is a fresh reservation of `size` bytes; `handle` is a
        // live allocation of at least `size` bytes (the driver checks).
        // On failure `mapping`'s drop frees the reservation (unmapping an
        // unmapped range is a harmless error).
        check("cuMemMap", unsafe {
            cu::cuMemMap(va, size as usize, 0, handle.0, 0)
        })?;
        let set = |flags| {
            let desc = cu::CUmemAccessDesc {
                location: cu::CUmemLocation {
                    type_: cu::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
                    id: dev,
                },
                flags,
            };
            // SAFETY: `va..va+size` is mapped above; one valid descriptor.
            check("cuMemSetAccess", unsafe {
                cu::cuMemSetAccess(va, size as usize, &desc, 1)
            })
        };
        let mut ro = false;
        if read_only && set(cu::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READ).is_ok() {
            ro = true;
        } else {
            set(cu::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE)?;
        }
        Ok((mapping, ro))
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.va
    }
}

impl Drop for VmmMapping {
    fn drop(&mut self) {
        if self.size == 0 {
            return;
        }
        // SAFETY: unmaps and frees exactly the range mapped in `map`; no
        // device pointer into it is used after the owner is dropped.
        unsafe {
            let _ = cu::cuMemUnmap(self.va, self.size as usize);
            let _ = cu::cuMemAddressFree(self.va, self.size as usize);
        }
    }
}

/// Memory of another API (a Vulkan opaque fd) imported with
/// `cuImportExternalMemory` and mapped whole as one buffer
/// (`cuExternalMemoryGetMappedBuffer`); unmapped (`cuMemFree`) and destroyed
/// (`cuDestroyExternalMemory`) on drop.
#[derive(Debug)]
pub(crate) struct ExternalMem {
    ext: cu::CUexternalMemory,
    ptr: u64,
}

// SAFETY: an external-memory handle and its device pointer are driver
// objects usable from any thread with the owning context current.
unsafe impl Send for ExternalMem {}
// SAFETY: see `Send`; `&ExternalMem` only reads the handle and pointer.
unsafe impl Sync for ExternalMem {}

impl ExternalMem {
    /// Imports `fd`, an opaque fd of an allocation of `size` bytes
    /// (`CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD`, `dedicated`: a Vulkan
    /// dedicated allocation), and maps all `size` bytes. The driver owns the
    /// fd on success; on failure it is leaked rather than closed, as the
    /// Vulkan backend does (never risk closing a number reused meanwhile).
    pub(crate) fn import_opaque_fd(
        fd: OwnedFd,
        size: u64,
        dedicated: bool,
    ) -> Result<Self, DriverError> {
        let raw = rustix::fd::IntoRawFd::into_raw_fd(fd);
        let desc = cu::CUDA_EXTERNAL_MEMORY_HANDLE_DESC {
            type_: cu::CUexternalMemoryHandleType::CU_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD,
            handle: cu::CUDA_EXTERNAL_MEMORY_HANDLE_DESC_st__bindgen_ty_1 { fd: raw },
            size,
            flags: if dedicated {
                cu::CUDA_EXTERNAL_MEMORY_DEDICATED
            } else {
                0
            },
            reserved: [0; 16],
        };
        let mut ext = std::ptr::null_mut();
        // SAFETY: valid out pointer and a filled-in descriptor naming an fd
        // we own (released from its OwnedFd above, handed to the driver);
        // the driver checks that the fd is an exportable allocation of
        // `size` bytes.
        check("cuImportExternalMemory", unsafe {
            cu::cuImportExternalMemory(&mut ext, &desc)
        })?;
        let mut me = ExternalMem { ext, ptr: 0 };
        let buf = cu::CUDA_EXTERNAL_MEMORY_BUFFER_DESC {
            offset: 0,
            size,
            flags: 0,
            reserved: [0; 16],
        };
        let mut ptr = 0;
        // SAFETY: valid out pointer; `ext` is the live import above and the
        // range is its whole size. On failure `me`'s drop destroys the
        // import (its `ptr` is 0: nothing to free).
        check("cuExternalMemoryGetMappedBuffer", unsafe {
            cu::cuExternalMemoryGetMappedBuffer(&mut ptr, me.ext, &buf)
        })?;
        me.ptr = ptr;
        Ok(me)
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
}

impl Drop for ExternalMem {
    fn drop(&mut self) {
        // SAFETY: frees the mapping and destroys the import made in
        // `import_opaque_fd` (the mapping first, as the driver requires);
        // no device pointer into it outlives the owner.
        unsafe {
            if self.ptr != 0 {
                let _ = cu::cuMemFree_v2(self.ptr);
            }
            let _ = cu::cuDestroyExternalMemory(self.ext);
        }
    }
}

/// `cuMemAlloc_v2` memory, freed on drop; shareable with legacy IPC.
#[derive(Debug)]
pub(crate) struct DeviceAlloc(u64);

impl DeviceAlloc {
    pub(crate) fn new(size: u64) -> Result<Self, DriverError> {
        let mut p = 0;
        // SAFETY: valid out pointer; a current context is set by the caller.
        check("cuMemAlloc_v2", unsafe {
            cu::cuMemAlloc_v2(&mut p, size as usize)
        })?;
        Ok(DeviceAlloc(p))
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.0
    }

    /// `cuIpcGetMemHandle`: the 64-byte handle another process opens.
    pub(crate) fn ipc_handle(&self) -> Result<[u8; 64], DriverError> {
        let mut h = cu::CUipcMemHandle { reserved: [0; 64] };
        // SAFETY: valid out pointer; `self.0` is a live cuMemAlloc pointer.
        check("cuIpcGetMemHandle", unsafe {
            cu::cuIpcGetMemHandle(&mut h, self.0)
        })?;
        Ok(h.reserved.map(|b| b as u8))
    }
}

impl Drop for DeviceAlloc {
    fn drop(&mut self) {
        // SAFETY: frees the allocation made in `new`, used by nobody after.
        let _ = unsafe { cu::cuMemFree_v2(self.0) };
    }
}

/// Memory of another process opened with `cuIpcOpenMemHandle_v2`, closed on drop.
#[derive(Debug)]
pub(crate) struct IpcMem(u64);

impl IpcMem {
    /// Opens a 64-byte `CUipcMemHandle`.
    ///
    /// # Safety
    /// The handle must come from `cuIpcGetMemHandle` in the publisher: the
    /// driver cannot tell a forged handle from a real one and may map
    /// unrelated memory of the peer.
    pub(crate) unsafe fn open(handle: &[u8; 64]) -> Result<Self, DriverError> {
        let h = cu::CUipcMemHandle {
            reserved: handle.map(|b| b as std::ffi::c_char),
        };
        let mut p = 0;
        // SAFETY: valid out pointer; the handle's origin is the caller's
        // obligation (see `# Safety`).
        check("cuIpcOpenMemHandle_v2", unsafe {
            cu::cuIpcOpenMemHandle_v2(
                &mut p,
                h,
                cu::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
            )
        })?;
        Ok(IpcMem(p))
    }

    pub(crate) fn ptr(&self) -> u64 {
        self.0
    }
}

impl Drop for IpcMem {
    fn drop(&mut self) {
        // SAFETY: closes what `open` opened; no pointer into it outlives self.
        let _ = unsafe { cu::cuIpcCloseMemHandle(self.0) };
    }
}

/// A CUDA event, destroyed on drop.
#[derive(Debug)]
pub(crate) struct Event(cu::CUevent);

// SAFETY: CUDA events are driver objects usable from any thread with the
// owning context current; the handle is an opaque pointer.
unsafe impl Send for Event {}
// SAFETY: see `Send`; record/wait through `&Event` are driver-synchronised.
unsafe impl Sync for Event {}

impl Event {
    /// `cuEventCreate(CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)`.
    pub(crate) fn interprocess() -> Result<Self, DriverError> {
        let mut e = std::ptr::null_mut();
        let flags = cu::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32
            | cu::CUevent_flags::CU_EVENT_INTERPROCESS as u32;
        // SAFETY: valid out pointer, documented flags.
        check("cuEventCreate", unsafe { cu::cuEventCreate(&mut e, flags) })?;
        Ok(Event(e))
    }

    /// `cuIpcGetEventHandle`.
    pub(crate) fn ipc_handle(&self) -> Result<[u8; 64], DriverError> {
        let mut h = cu::CUipcEventHandle { reserved: [0; 64] };
        // SAFETY: valid out pointer; the event was created interprocess.
        check("cuIpcGetEventHandle", unsafe {
            cu::cuIpcGetEventHandle(&mut h, self.0)
        })?;
        Ok(h.reserved.map(|b| b as u8))
    }

    /// `cuIpcOpenEventHandle`.
    ///
    /// # Safety
    /// The handle must come from `cuIpcGetEventHandle` in the publisher.
    pub(crate) unsafe fn open(handle: &[u8; 64]) -> Result<Self, DriverError> {
        let h = cu::CUipcEventHandle {
            reserved: handle.map(|b| b as std::ffi::c_char),
        };
        let mut e = std::ptr::null_mut();
        // SAFETY: valid out pointer; origin of the handle per `# Safety`.
        check("cuIpcOpenEventHandle", unsafe {
            cu::cuIpcOpenEventHandle(&mut e, h)
        })?;
        Ok(Event(e))
    }

    /// `cuEventRecord` on `stream`.
    pub(crate) fn record(&self, stream: RawStream) -> Result<(), DriverError> {
        // SAFETY: live event; `stream` is a live stream or null (legacy default).
        check("cuEventRecord", unsafe {
            cu::cuEventRecord(self.0, stream.0)
        })
    }

    /// `cuEventSynchronize`: blocks until the last recorded work completed.
    pub(crate) fn synchronize(&self) -> Result<(), DriverError> {
        // SAFETY: live event.
        check("cuEventSynchronize", unsafe {
            cu::cuEventSynchronize(self.0)
        })
    }

    /// `cuStreamWaitEvent(stream, event, 0)`.
    pub(crate) fn wait_in(&self, stream: RawStream) -> Result<(), DriverError> {
        // SAFETY: live event and stream (or null).
        check("cuStreamWaitEvent", unsafe {
            cu::cuStreamWaitEvent(stream.0, self.0, 0)
        })
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: destroys the event made or opened here; not used after.
        let _ = unsafe { cu::cuEventDestroy_v2(self.0) };
    }
}

/// A `CUstream` handle (not owned); null is the legacy default stream.
///
/// Streams of cudarc (`CudaStream::cu_stream()`) or of any other CUDA code
/// in the process can be wrapped with [`RawStream::from_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStream(pub(crate) cu::CUstream);

// SAFETY: a stream handle is an opaque driver pointer usable from any thread.
unsafe impl Send for RawStream {}
// SAFETY: see `Send`.
unsafe impl Sync for RawStream {}

impl RawStream {
    /// The legacy default stream (null).
    pub const DEFAULT: RawStream = RawStream(std::ptr::null_mut());

    /// Wraps a `CUstream` of this process (e.g. `cudarc`'s
    /// `CudaStream::cu_stream()`); it must outlive every use through this value.
    pub fn from_raw(stream: cu::CUstream) -> Self {
        RawStream(stream)
    }

    /// The raw `CUstream`.
    pub fn as_raw(self) -> cu::CUstream {
        self.0
    }
}

/// An owned non-blocking stream (`cuStreamCreate(CU_STREAM_NON_BLOCKING)`).
#[derive(Debug)]
pub(crate) struct OwnedStream(RawStream);

impl OwnedStream {
    pub(crate) fn new() -> Result<Self, DriverError> {
        let mut s = std::ptr::null_mut();
        // SAFETY: valid out pointer; flag documented.
        check("cuStreamCreate", unsafe {
            cu::cuStreamCreate(&mut s, cu::CUstream_flags::CU_STREAM_NON_BLOCKING as u32)
        })?;
        Ok(OwnedStream(RawStream(s)))
    }

    pub(crate) fn raw(&self) -> RawStream {
        self.0
    }
}

impl Drop for OwnedStream {
    fn drop(&mut self) {
        // SAFETY: destroys the stream created in `new`; pending work completes
        // first (driver semantics); the handle is not used after.
        let _ = unsafe { cu::cuStreamDestroy_v2(self.0 .0) };
    }
}

/// `cuStreamSynchronize`.
pub(crate) fn stream_synchronize(s: RawStream) -> Result<(), DriverError> {
    // SAFETY: live stream or null.
    check("cuStreamSynchronize", unsafe {
        cu::cuStreamSynchronize(s.0)
    })
}

/// Where one side of a 2-D copy lives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mem<'a> {
    /// Device memory at this address.
    Device(u64),
    /// Host bytes (source).
    Host(&'a [u8]),
}

/// `cuMemcpy2DAsync_v2`: `rows` rows of `width` bytes from `src` (pitch
/// `src_pitch`) to device memory `dst` (pitch `dst_pitch`) on `stream`.
///
/// The caller guarantees that `dst` addresses at least
/// `dst_pitch * (rows - 1) + width` bytes of device memory it may write;
/// host sources are bounds-checked here and copied synchronously.
pub(crate) fn copy_2d_to_device(
    src: Mem<'_>,
    src_pitch: usize,
    dst: u64,
    dst_pitch: usize,
    width: usize,
    rows: usize,
    stream: RawStream,
) -> Result<(), DriverError> {
    if rows == 0 || width == 0 {
        return Ok(());
    }
    let mut p = blank_copy();
    match src {
        Mem::Device(s) => {
            p.srcMemoryType = cu::CUmemorytype::CU_MEMORYTYPE_DEVICE;
            p.srcDevice = s;
        }
        Mem::Host(b) => {
            let need = src_pitch
                .checked_mul(rows - 1)
                .and_then(|n| n.checked_add(width));
            if need.is_none_or(|n| n > b.len()) {
                return Err(DriverError {
                    call: "cuMemcpy2D_v2",
                    result: "host source shorter than its rows".into(),
                });
            }
            p.srcMemoryType = cu::CUmemorytype::CU_MEMORYTYPE_HOST;
            p.srcHost = b.as_ptr().cast();
        }
    }
    p.srcPitch = src_pitch;
    p.dstMemoryType = cu::CUmemorytype::CU_MEMORYTYPE_DEVICE;
    p.dstDevice = dst;
    p.dstPitch = dst_pitch;
    p.WidthInBytes = width;
    p.Height = rows;
    match src {
        // SAFETY: device-to-device: both ranges are the caller's (see above);
        // the driver validates pointers it does not know.
        Mem::Device(_) => check("cuMemcpy2DAsync_v2", unsafe {
            cu::cuMemcpy2DAsync_v2(&p, stream.0)
        }),
        // SAFETY: the host source was bounds-checked above and is borrowed
        // for the whole (synchronous) copy; `dst` per the caller.
        Mem::Host(_) => check("cuMemcpy2D_v2", unsafe { cu::cuMemcpy2D_v2(&p) }),
    }
}

/// `cuMemcpyDtoDAsync_v2`: `len` bytes from device address `src` to `dst`
/// on `stream`, in the current context (under unified addressing either
/// side may be memory of a peer device mapped for the current one).
///
/// The caller guarantees that `dst..dst+len` is device memory it may write
/// and `src..src+len` memory it may read until the copy completes (the
/// driver rejects addresses it does not know, not short ranges).
pub(crate) fn copy_dtod_async(
    dst: u64,
    src: u64,
    len: u64,
    stream: RawStream,
) -> Result<(), DriverError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: both ranges are the caller's (above); `stream` is a live
    // stream of the current context or null.
    check("cuMemcpyDtoDAsync_v2", unsafe {
        cu::cuMemcpyDtoDAsync_v2(dst, src, len as usize, stream.0)
    })
}

/// `cuMemcpyPeerAsync`: `len` bytes from `src` (memory of `src_ctx`'s
/// device) to `dst` (memory of `dst_ctx`'s device) on `stream`. Without
/// peer access the driver stages the copy through host memory.
///
/// The caller guarantees the ranges as for [`copy_dtod_async`] and that
/// both contexts are live retained contexts.
pub(crate) fn copy_peer_async(
    dst: u64,
    dst_ctx: &PrimaryContext,
    src: u64,
    src_ctx: &PrimaryContext,
    len: u64,
    stream: RawStream,
) -> Result<(), DriverError> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: ranges per the caller; both contexts are borrowed live
    // `PrimaryContext`s (released only on drop); `stream` is live or null.
    check("cuMemcpyPeerAsync", unsafe {
        cu::cuMemcpyPeerAsync(dst, dst_ctx.ctx, src, src_ctx.ctx, len as usize, stream.0)
    })
}

/// `cuMemcpy2D_v2` device to host: `rows` rows of `width` bytes from device
/// `src` (pitch `src_pitch`) into `dst`, packed (pitch `width`). Synchronous.
pub(crate) fn copy_2d_to_host(
    src: u64,
    src_pitch: usize,
    dst: &mut [u8],
    width: usize,
    rows: usize,
) -> Result<(), DriverError> {
    if rows == 0 || width == 0 {
        return Ok(());
    }
    if width.checked_mul(rows).is_none_or(|n| n > dst.len()) {
        return Err(DriverError {
            call: "cuMemcpy2D_v2",
            result: "host destination shorter than its rows".into(),
        });
    }
    let mut p = blank_copy();
    p.srcMemoryType = cu::CUmemorytype::CU_MEMORYTYPE_DEVICE;
    p.srcDevice = src;
    p.srcPitch = src_pitch;
    p.dstMemoryType = cu::CUmemorytype::CU_MEMORYTYPE_HOST;
    p.dstHost = dst.as_mut_ptr().cast();
    p.dstPitch = width;
    p.WidthInBytes = width;
    p.Height = rows;
    // SAFETY: the host destination holds `width * rows` bytes (checked) and
    // is exclusively borrowed for the synchronous copy; the device source is
    // an imported slot the caller holds a lease on.
    check("cuMemcpy2D_v2", unsafe { cu::cuMemcpy2D_v2(&p) })
}

fn blank_copy() -> cu::CUDA_MEMCPY2D {
    // Built field by field: the memory-type fields are Rust enums without a
    // zero value, so `mem::zeroed` would be undefined behaviour.
    cu::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        srcHost: std::ptr::null(),
        srcDevice: 0,
        srcArray: std::ptr::null_mut(),
        srcPitch: 0,
        dstXInBytes: 0,
        dstY: 0,
        dstMemoryType: cu::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        dstHost: std::ptr::null_mut(),
        dstDevice: 0,
        dstArray: std::ptr::null_mut(),
        dstPitch: 0,
        WidthInBytes: 0,
        Height: 0,
    }
}

/// `cuLaunchHostFunc`: runs `f` on a driver thread once all work queued on
/// `stream` before this call has completed.
pub(crate) fn launch_host_fn(
    stream: RawStream,
    f: Box<dyn FnOnce() + Send + 'static>,
) -> Result<(), DriverError> {
    unsafe extern "C" fn trampoline(user: *mut c_void) {
        // SAFETY: `user` is the Box<Box<dyn FnOnce>> leaked below, handed to
        // exactly one invocation of this trampoline by the driver.
        let f = unsafe { Box::from_raw(user.cast::<Box<dyn FnOnce() + Send>>()) };
        // A panic must not unwind into the driver's thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || (*f)()));
    }
    let user = Box::into_raw(Box::new(f));
    // SAFETY: the trampoline matches CUhostFn; `user` stays valid until the
    // trampoline reclaims it; on failure the driver never calls it, so it is
    // reclaimed here.
    let r = unsafe { cu::cuLaunchHostFunc(stream.0, Some(trampoline), user.cast()) };
    if let Err(e) = check("cuLaunchHostFunc", r) {
        // SAFETY: not handed to the driver (the call failed): still ours.
        drop(unsafe { Box::from_raw(user) });
        return Err(e);
    }
    Ok(())
}
