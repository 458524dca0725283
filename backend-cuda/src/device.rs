//! A CUDA device and its primary context, found by ordinal or GPU UUID.

use crate::driver::{self, OwnedStream, PrimaryContext, RawStream};
use crate::CudaError;
use std::sync::Arc;

/// A device's memory as the driver reports it (`cuMemGetInfo_v2`), bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryInfo {
    /// Free device memory.
    pub free: u64,
    /// Total device memory.
    pub total: u64,
}

#[derive(Debug)]
struct Inner {
    ctx: PrimaryContext,
    ordinal: u32,
    uuid: [u8; 16],
    name: String,
}

/// One CUDA device with its retained primary context (the context cudarc's
/// `CudaContext::new(ordinal)` also uses, so cudarc code in the same process
/// shares it). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

/// `cuInit`, or why it cannot run.
pub(crate) fn init() -> Result<(), CudaError> {
    match driver::init() {
        None => Err(CudaError::DriverMissing),
        Some(r) => Ok(r?),
    }
}

impl CudaDevice {
    /// Opens device `ordinal` (as numbered after `CUDA_VISIBLE_DEVICES`).
    ///
    /// Errors: [`CudaError::DriverMissing`], [`CudaError::NoDevice`], driver errors.
    pub fn open(ordinal: u32) -> Result<Self, CudaError> {
        init()?;
        let count = driver::device_count()?;
        if ordinal as i64 >= count as i64 {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let dev = driver::device_get(ordinal as i32)?;
        let inner = Inner {
            uuid: driver::device_uuid(dev)?,
            name: driver::device_name(dev)?,
            ctx: PrimaryContext::retain(dev)?,
            ordinal,
        };
        inner.ctx.make_current()?;
        Ok(CudaDevice {
            inner: Arc::new(inner),
        })
    }

    /// Opens the visible device whose UUID is `uuid`, whatever its ordinal
    /// here (containers may number GPUs differently).
    ///
    /// Errors: [`CudaError::UuidNotFound`] if no visible device has it.
    pub fn by_uuid(uuid: &[u8; 16]) -> Result<Self, CudaError> {
        let (ordinal, _) = find_uuid(uuid)?;
        Self::open(ordinal)
    }

    /// Opens the device `select` names: an ordinal here, or a GPU UUID
    /// (whatever its ordinal here).
    ///
    /// Errors: [`CudaError::NoDevice`], [`CudaError::UuidNotFound`],
    /// [`CudaError::DriverMissing`], driver errors.
    pub fn select(select: DeviceSelect) -> Result<Self, CudaError> {
        match select {
            DeviceSelect::Ordinal(o) => Self::open(o),
            DeviceSelect::Uuid(u) => Self::by_uuid(&u),
        }
    }

    /// How many CUDA devices this process sees (`cuDeviceGetCount`, after
    /// `CUDA_VISIBLE_DEVICES`). Opens no context.
    ///
    /// Errors: [`CudaError::DriverMissing`] without a driver, driver errors.
    pub fn count() -> Result<u32, CudaError> {
        init()?;
        Ok(driver::device_count()?.max(0) as u32)
    }

    /// Whether this device can read memory that lives on `peer`
    /// (`cuDeviceCanAccessPeer(self, peer)`: NVLink or PCIe peer-to-peer).
    /// A device "reaches" itself.
    pub fn can_access_peer(&self, peer: &CudaDevice) -> Result<bool, CudaError> {
        if peer.ordinal() == self.ordinal() {
            return Ok(true);
        }
        Ok(driver::can_access_peer(
            self.raw_device(),
            peer.raw_device(),
        )?)
    }

    /// Ordinal in this process.
    pub fn ordinal(&self) -> u32 {
        self.inner.ordinal
    }

    /// The GPU UUID (16 bytes, as `cuDeviceGetUuid_v2` gives it).
    pub fn uuid(&self) -> [u8; 16] {
        self.inner.uuid
    }

    /// Device name, e.g. `NVIDIA H200`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The device's primary context (`CUcontext`), for handing to another
    /// CUDA library that works in it (FFmpeg's `AVCUDADeviceContext.cuda_ctx`).
    /// Valid while this `CudaDevice` (or a clone) lives; using it is up to
    /// that library.
    pub fn raw_context(&self) -> *mut std::ffi::c_void {
        self.inner.ctx.raw().cast()
    }

    /// Makes the primary context current on the calling thread
    /// (`cuCtxSetCurrent`).
    pub fn make_current(&self) -> Result<(), CudaError> {
        Ok(self.inner.ctx.make_current()?)
    }

    /// Free and total device memory (`cuMemGetInfo_v2`).
    pub fn memory_info(&self) -> Result<MemoryInfo, CudaError> {
        self.make_current()?;
        let (free, total) = driver::mem_info()?;
        Ok(MemoryInfo { free, total })
    }

    /// Waits for all work of the context (`cuCtxSynchronize`).
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.make_current()?;
        Ok(driver::ctx_synchronize()?)
    }

    pub(crate) fn raw_device(&self) -> cudarc::driver::sys::CUdevice {
        self.inner.ctx.device()
    }

    pub(crate) fn context(&self) -> &PrimaryContext {
        &self.inner.ctx
    }
}

/// The visible device whose UUID is `uuid`: its ordinal and handle, without
/// opening a context on it.
///
/// Errors: [`CudaError::UuidNotFound`] if no visible device has it (a
/// publisher's announced UUID is only trusted once found here).
pub(crate) fn find_uuid(
    uuid: &[u8; 16],
) -> Result<(u32, cudarc::driver::sys::CUdevice), CudaError> {
    init()?;
    for i in 0..driver::device_count()?.max(0) {
        let d = driver::device_get(i)?;
        if driver::device_uuid(d)? == *uuid {
            return Ok((i as u32, d));
        }
    }
    Err(CudaError::UuidNotFound(*uuid))
}

/// A device named by ordinal or by GPU UUID (`nvidia-smi -L`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSelect {
    /// Ordinal in this process (after `CUDA_VISIBLE_DEVICES`).
    Ordinal(u32),
    /// GPU UUID, 16 bytes as `cuDeviceGetUuid_v2` gives them.
    Uuid([u8; 16]),
}

/// A [`DeviceSelect`] text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither a device ordinal nor a GPU UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
)]
pub struct DeviceSelectError(pub String);

impl std::str::FromStr for DeviceSelect {
    type Err = DeviceSelectError;

    /// `"1"` (an ordinal), or a UUID as `nvidia-smi -L` prints it
    /// (`GPU-` and 32 hex digits, dashes anywhere after the prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || DeviceSelectError(s.to_owned());
        if let Ok(o) = s.parse::<u32>() {
            return Ok(DeviceSelect::Ordinal(o));
        }
        let hex = s.strip_prefix("GPU-").ok_or_else(bad)?;
        let digits: Vec<u8> = hex.bytes().filter(|&b| b != b'-').collect();
        if digits.len() != 32 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad());
        }
        let mut u = [0u8; 16];
        for (i, pair) in digits.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| bad())?;
            u[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
        }
        Ok(DeviceSelect::Uuid(u))
    }
}

/// A non-blocking CUDA stream of a [`CudaDevice`] (`cuStreamCreate`),
/// destroyed on drop.
#[derive(Debug)]
pub struct CudaStream {
    stream: OwnedStream,
    device: CudaDevice,
}

impl CudaStream {
    /// Creates a stream on `device`.
    pub fn new(device: &CudaDevice) -> Result<Self, CudaError> {
        device.make_current()?;
        Ok(CudaStream {
            stream: OwnedStream::new()?,
            device: device.clone(),
        })
    }

    /// The raw handle, for the slot and frame operations.
    pub fn raw(&self) -> RawStream {
        self.stream.raw()
    }

    /// Waits for the stream's work (`cuStreamSynchronize`).
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.device.make_current()?;
        Ok(driver::stream_synchronize(self.raw())?)
    }
}
