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

use crate::driver::{self, RawStream};
use crate::slot::plane_span;
use crate::slot::CudaImported;
use crate::{CudaBackend, CudaError};
use cuframes_core::layout::StreamDesc;
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

/// CUDA access to a leased [`Frame`] or [`OwnedFrame`] of a [`CudaBackend`]
/// subscriber.
pub trait CudaFrameExt {
    /// Plane `i` (NV12 / P010: 0 = Y, 1 = interleaved CbCr) in device memory.
    fn device_plane(&self, i: usize) -> Result<DevicePlane, CudaError>;

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

        fn wait_in(&self, stream: RawStream) -> Result<(), CudaError> {
            self.memory().wait_in(stream)
        }

        fn copy_to_host(&self, out: &mut Vec<u8>) -> Result<(), CudaError> {
            copy_to_host(self.memory(), self.stream(), out)
        }

        fn release_after(self, stream: RawStream) -> Result<(), CudaError> {
            let device = self.memory().device.clone();
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
    let (off, pitch, row_bytes, rows) = plane_span(desc, i, mem.size())?;
    Ok(DevicePlane {
        ptr: mem.device_ptr() + off,
        pitch,
        row_bytes,
        rows,
    })
}

fn copy_to_host(mem: &CudaImported, desc: &StreamDesc, out: &mut Vec<u8>) -> Result<(), CudaError> {
    mem.wait_host()?;
    out.clear();
    for i in 0..2 {
        let Ok((_, _, row, rows)) = plane_span(desc, i, mem.size()) else {
            continue;
        };
        let at = out.len();
        out.resize(at + row * rows, 0);
        mem.copy_plane_to_host(desc, i, &mut out[at..])?;
    }
    Ok(())
}
