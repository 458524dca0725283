//! Frames as a CUDA consumer sees them: device pointers, plane pitches and
//! the ways to order work after the publisher's and to release.
//!
//! ```no_run
//! use cuframes_core::runtime::{SubscribeOptions, Subscriber};
//! use cuframes_core::DeliveryMode;
//! use cuframes_cuda::{CudaBackend, CudaFrameExt, CudaStream};
//! use std::time::Duration;
//!
//! let sub = Subscriber::connect(
//!     "cam1",
//!     CudaBackend::subscriber()?,
//!     SubscribeOptions::new(DeliveryMode::NewestOnly),
//! )?;
//! let device = sub.backend().device().expect("attached at connect").clone();
//! let stream = CudaStream::new(&device)?;
//! let frame = sub.next_frame(Duration::from_secs(1))?;
//! let y = frame.device_plane(0)?; // NV12 luma: y.ptr, y.pitch bytes per row
//! frame.wait_in(stream.raw())?; // IpcEvent: order after the publisher's copy
//! // ... launch kernels reading y.ptr / frame.device_plane(1)? on `stream` ...
//! frame.release_after(stream.raw())?; // returned once those kernels finish
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A subscriber on another GPU than its publisher's
//! ([`CudaBackend::subscriber_with`], `docs/gpu.md` "Multi-GPU hosts") either
//! reads peer-mapped frames in place (then [`CudaFrameExt::device`] is its
//! own GPU) or copies each frame into a [`CudaFrameCopy`] of its own and
//! returns the lease as soon as the copy is done:
//!
//! ```no_run
//! use cuframes_core::runtime::{SubscribeOptions, Subscriber};
//! use cuframes_core::DeliveryMode;
//! use cuframes_cuda::{
//!     CrossGpu, CudaBackend, CudaFrameCopy, CudaFrameExt, CudaStream, DeviceSelect,
//!     SubscriberConfig,
//! };
//! use std::time::Duration;
//!
//! let backend = CudaBackend::subscriber_with(SubscriberConfig {
//!     device: Some(DeviceSelect::Ordinal(1)),
//!     cross_gpu: CrossGpu::Copy,
//! })?;
//! let sub = Subscriber::connect("cam1", backend, SubscribeOptions::new(DeliveryMode::NewestOnly))?;
//! let gpu1 = sub.backend().device().expect("attached at connect").clone();
//! let stream = CudaStream::new(&gpu1)?;
//! let mut copy = CudaFrameCopy::new(&gpu1, &sub.stream())?;
//! let frame = sub.next_frame(Duration::from_secs(1))?;
//! frame.copy_into(&mut copy, stream.raw())?; // ordered after the publisher's writes
//! frame.release_after(stream.raw())?; // the lease returns when the copy is done
//! let y = copy.device_plane(0)?; // on GPU 1, valid until the next copy_into
//! // ... launch kernels reading y.ptr on `stream` ...
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::driver::{self, DeviceAlloc, RawStream};
use crate::slot::{frame_to_host, plane_layout, CudaImported};
use crate::{CudaBackend, CudaDevice, CudaError};
use cuframes_core::layout::{PlaneLayout, StreamDesc};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{Frame, OwnedFrame};

/// One plane of a frame in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevicePlane {
    /// Device address of the plane's first row (this process's mapping).
    pub ptr: u64,
    /// Bytes between rows.
    pub pitch: usize,
    /// Bytes of pixels per row (width × bytes per sample pair for chroma).
    pub row_bytes: usize,
    /// Rows.
    pub rows: usize,
}

impl DevicePlane {
    /// Plane `p` of a frame whose slot starts at device address `base`.
    fn at(base: u64, p: &PlaneLayout) -> Self {
        DevicePlane {
            ptr: base + p.offset(),
            pitch: p.pitch() as usize,
            row_bytes: p.row_bytes() as usize,
            rows: p.rows() as usize,
        }
    }
}

/// CUDA access to a leased [`Frame`] or [`OwnedFrame`] of a [`CudaBackend`]
/// subscriber.
pub trait CudaFrameExt {
    /// Plane `i` (NV12 / P010: 0 = Y, 1 = interleaved CbCr) in device
    /// memory; the pointer is valid on [`CudaFrameExt::device`].
    fn device_plane(&self, i: usize) -> Result<DevicePlane, CudaError>;

    /// The GPU whose kernels may use this frame's device pointers: the
    /// subscriber's own GPU when the publisher is on it or the slots are
    /// peer-mapped for it ([`crate::FrameAccess::PeerMapped`]: reads cross
    /// NVLink or PCIe), the publisher's GPU under
    /// [`crate::FrameAccess::SourceMapped`] (then copy the frame with
    /// [`CudaFrameExt::copy_into`]).
    fn device(&self) -> &CudaDevice;

    /// Queues a copy of this frame into `dst` (a buffer on any GPU of this
    /// process, typically the subscriber's) on `stream`, a stream of
    /// `dst.device()`, ordered after the publisher's writes (`wait_in`).
    /// One copy of the frame's `frame_size` bytes, planes keeping their
    /// offsets and pitches: `cuMemcpyDtoDAsync` when `dst`'s GPU is
    /// [`CudaFrameExt::device`] (over the peer link when the slot is
    /// peer-mapped), `cuMemcpyPeerAsync` otherwise (staged through host
    /// memory by the driver without peer access). `dst` then describes this
    /// frame ([`CudaFrameCopy::meta`], [`CudaFrameCopy::stream_desc`]).
    ///
    /// The lease may be returned as soon as the copy is done:
    /// `release_after(stream)` right after this call returns it without
    /// blocking, and work queued on `stream` afterwards reads the copy.
    ///
    /// Errors: [`CudaError::Layout`] when the frame is larger than `dst`;
    /// driver errors.
    fn copy_into(&self, dst: &mut CudaFrameCopy, stream: RawStream) -> Result<(), CudaError>;

    /// Orders work queued on `stream` after the publisher's writes of this
    /// frame (`cuStreamWaitEvent` under `IpcEvent`; nothing to do under
    /// `HostFence`). Call before launching work that reads the frame.
    fn wait_in(&self, stream: RawStream) -> Result<(), CudaError>;

    /// Copies the frame to host memory as FFmpeg's packed rawvideo layout
    /// (planes in order, rows without pitch padding), e.g. to hash it.
    fn copy_to_host(&self, out: &mut Vec<u8>) -> Result<(), CudaError>;

    /// Ends the guard and returns the lease once all work queued on `stream`
    /// so far has finished (`cuLaunchHostFunc`), without blocking the caller.
    /// The synchronous alternative is dropping the frame, which waits for
    /// the whole context (`cuCtxSynchronize`).
    fn release_after(self, stream: RawStream) -> Result<(), CudaError>;
}

/// The trait's methods, the same for both guards.
macro_rules! cuda_frame_methods {
    () => {
        fn device_plane(&self, i: usize) -> Result<DevicePlane, CudaError> {
            device_plane(self.memory(), self.stream(), i)
        }

        fn device(&self) -> &CudaDevice {
            self.memory().device()
        }

        fn copy_into(&self, dst: &mut CudaFrameCopy, stream: RawStream) -> Result<(), CudaError> {
            dst.copy_from(self.memory(), self.stream(), self.meta(), stream)
        }

        fn wait_in(&self, stream: RawStream) -> Result<(), CudaError> {
            self.memory().wait_in(stream)
        }

        fn copy_to_host(&self, out: &mut Vec<u8>) -> Result<(), CudaError> {
            copy_to_host(self.memory(), self.stream(), out)
        }

        fn release_after(self, stream: RawStream) -> Result<(), CudaError> {
            let device = self.memory().consumer().clone();
            let pending = self.release_later();
            device.make_current()?;
            // On error the closure (and with it the pending release) is
            // dropped, which releases at once: the lease is never leaked.
            driver::launch_host_fn(stream, Box::new(move || drop(pending)))?;
            Ok(())
        }
    };
}

impl CudaFrameExt for Frame<'_, CudaBackend> {
    cuda_frame_methods!();
}

impl CudaFrameExt for OwnedFrame<CudaBackend> {
    cuda_frame_methods!();
}

fn device_plane(mem: &CudaImported, desc: &StreamDesc, i: usize) -> Result<DevicePlane, CudaError> {
    let p = plane_layout(desc, i, mem.size())?;
    Ok(DevicePlane::at(mem.device_ptr(), &p))
}

fn copy_to_host(mem: &CudaImported, desc: &StreamDesc, out: &mut Vec<u8>) -> Result<(), CudaError> {
    mem.frame_to_host(desc, out)
}

/// A subscriber-owned copy of a frame in device memory
/// ([`CudaFrameExt::copy_into`]): `cuMemAlloc` on one GPU, laid out as the
/// stream's slots are (plane offsets and pitches of its [`StreamDesc`]).
/// It holds no lease: the publisher may rewrite the slot it came from while
/// the copy is in use. Reused from frame to frame; freed on drop.
#[derive(Debug)]
pub struct CudaFrameCopy {
    mem: DeviceAlloc,
    capacity: u64,
    desc: StreamDesc,
    meta: FrameMeta,
    device: CudaDevice,
}

impl CudaFrameCopy {
    /// A buffer on `device` for frames of `desc` (`desc.frame_size` bytes;
    /// frames of another layout that fit are accepted too).
    ///
    /// Errors: [`CudaError::Layout`] for an empty layout; driver errors
    /// (`cuMemAlloc_v2`: out of memory).
    pub fn new(device: &CudaDevice, desc: &StreamDesc) -> Result<Self, CudaError> {
        if desc.frame_size == 0 {
            return Err(CudaError::Layout("a frame copy of 0 bytes"));
        }
        device.make_current()?;
        Ok(CudaFrameCopy {
            mem: DeviceAlloc::new(desc.frame_size)?,
            capacity: desc.frame_size,
            desc: *desc,
            meta: FrameMeta::default(),
            device: device.clone(),
        })
    }

    /// The GPU the copy lives on (its pointers are valid there).
    pub fn device(&self) -> &CudaDevice {
        &self.device
    }

    /// Device address of the first byte.
    pub fn device_ptr(&self) -> u64 {
        self.mem.ptr()
    }

    /// Bytes allocated.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The layout of the frame last copied in (before any: the one given
    /// to [`CudaFrameCopy::new`]).
    pub fn stream_desc(&self) -> &StreamDesc {
        &self.desc
    }

    /// The metadata (sequence, pts, flags) of the frame last copied in
    /// (before any: all zero).
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// Plane `i` of the copied frame on [`CudaFrameCopy::device`]; valid
    /// once the copy's stream got past it, until the next copy into `self`.
    pub fn device_plane(&self, i: usize) -> Result<DevicePlane, CudaError> {
        let p = plane_layout(&self.desc, i, self.capacity)?;
        Ok(DevicePlane::at(self.mem.ptr(), &p))
    }

    /// Waits for `stream` (the one the copy was queued on), then copies the
    /// frame to host memory as FFmpeg's packed rawvideo layout (as
    /// [`CudaFrameExt::copy_to_host`]).
    pub fn copy_to_host(&self, stream: RawStream, out: &mut Vec<u8>) -> Result<(), CudaError> {
        self.device.make_current()?;
        driver::stream_synchronize(stream)?;
        let layout = self.desc.validate(self.capacity)?;
        frame_to_host(&self.device, self.mem.ptr(), &layout, out)
    }

    fn copy_from(
        &mut self,
        src: &CudaImported,
        desc: &StreamDesc,
        meta: &FrameMeta,
        stream: RawStream,
    ) -> Result<(), CudaError> {
        if desc.frame_size > self.capacity {
            return Err(CudaError::Layout(
                "the frame is larger than the copy buffer (make a new CudaFrameCopy after a stream change)",
            ));
        }
        src.copy_prefix_to(desc.frame_size, self.mem.ptr(), &self.device, stream)?;
        self.desc = *desc;
        self.meta = *meta;
        Ok(())
    }
}

impl Drop for CudaFrameCopy {
    fn drop(&mut self) {
        // `cuMemFree` of `mem` (dropped after this) in its own context.
        let _ = self.device.make_current();
    }
}
