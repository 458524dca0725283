//! Leased frames of any backend: [`Frame`] (borrows its subscriber) and
//! [`OwnedFrame`] (does not). Both return the lease exactly once, on
//! `release` or drop (`docs/protocol.md` §5.2); see core's `Frame` for the
//! torn-data rule (check [`Frame::is_valid`] after reading).

use crate::error::Error;
use crate::kind::BackendKind;
use cuframes_core::layout::{FrameLayout, StreamDesc};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{self as rt, HostBackend};

/// One plane of a frame, where it lives. Rows are `pitch` bytes apart;
/// each has `row_bytes` bytes of pixels; there are `rows` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane<'a> {
    /// Host memory: the bytes from the plane's first row to the end of its
    /// last row (`pitch × (rows − 1) + row_bytes`), borrowed from the guard.
    Host {
        /// The plane's bytes in the shared mapping.
        bytes: &'a [u8],
        /// Bytes between rows.
        pitch: usize,
        /// Bytes of pixels per row.
        row_bytes: usize,
        /// Rows.
        rows: usize,
    },
    /// CUDA device memory: the device address of the first row, valid in
    /// this process on the frame's device (`CudaFrameExt::device`).
    Cuda {
        /// Device address (`CUdeviceptr`).
        ptr: u64,
        /// Bytes between rows.
        pitch: usize,
        /// Bytes of pixels per row.
        row_bytes: usize,
        /// Rows.
        rows: usize,
    },
    /// Vulkan: a range of the slot's `VkBuffer` (`VulkanFrameExt::buffer`).
    Vulkan {
        /// Byte offset of the first row in the buffer.
        offset: u64,
        /// Bytes between rows.
        pitch: usize,
        /// Bytes of pixels per row.
        row_bytes: usize,
        /// Rows.
        rows: usize,
    },
}

/// A borrowed guard of the backend in use.
enum FrameGuard<'a> {
    Host(rt::Frame<'a, HostBackend>),
    #[cfg(feature = "cuda")]
    Cuda(rt::Frame<'a, cuframes_cuda::CudaBackend>),
    #[cfg(feature = "vulkan")]
    Vulkan(rt::Frame<'a, cuframes_vulkan::VulkanBackend>),
}

/// An owned guard of the backend in use.
enum OwnedGuard {
    Host(rt::OwnedFrame<HostBackend>),
    #[cfg(feature = "cuda")]
    Cuda(rt::OwnedFrame<cuframes_cuda::CudaBackend>),
    #[cfg(feature = "vulkan")]
    Vulkan(rt::OwnedFrame<cuframes_vulkan::VulkanBackend>),
}

/// A leased frame of any backend, borrowed from its [`crate::Subscriber`];
/// dropping it releases the lease. Everything it hands out borrows from it,
/// so no plane outlives the lease: this fails to compile (E0597, `frame`
/// does not live long enough):
///
/// ```compile_fail,E0597
/// use cuframes::{Subscriber, SubscriberOptions};
/// use std::time::Duration;
///
/// let sub = Subscriber::connect("cam1", SubscriberOptions::default()).unwrap();
/// let plane = {
///     let frame = sub.next_frame(Duration::from_secs(1)).unwrap();
///     frame.plane(0).unwrap() // error: `frame` does not live long enough
/// };
/// println!("{plane:?}");
/// ```
pub struct Frame<'a> {
    g: FrameGuard<'a>,
}

/// A leased frame that does not borrow its subscriber ([`Frame::into_owned`]):
/// what C, Python and GStreamer handles hold. `Send` where its backend's
/// guard is (host and CUDA).
pub struct OwnedFrame {
    g: OwnedGuard,
}

/// The accessors of both guards.
macro_rules! guard_methods {
    ($G:ident) => {
        /// Sequence number, pts / publish time (ns), flags, source index.
        pub fn meta(&self) -> &FrameMeta {
            each!($G, &self.g, f => f.meta())
        }

        /// Frames skipped or lost between the previous frame and this one.
        pub fn skipped(&self) -> u64 {
            each!($G, &self.g, f => f.skipped())
        }

        /// Size (pixels), pixel format, plane offsets and pitches (bytes).
        pub fn stream(&self) -> &StreamDesc {
            each!($G, &self.g, f => f.stream())
        }

        /// Where each plane lies in the slot (offset, pitch, row bytes,
        /// rows; bytes), validated at import.
        pub fn layout(&self) -> &FrameLayout {
            each!($G, &self.g, f => f.layout())
        }

        /// Whether this is the first frame of a new stream description.
        pub fn stream_changed(&self) -> bool {
            each!($G, &self.g, f => f.stream_changed())
        }

        /// `false` once the publisher revoked the lease: data read before
        /// may be torn.
        pub fn is_valid(&self) -> bool {
            each!($G, &self.g, f => f.is_valid())
        }

        /// Releases now (after the backend's release-time sync); returns
        /// `is_valid()` as of the release.
        pub fn release(self) -> bool {
            each!($G, self.g, f => f.release())
        }

        /// Where the frame lives.
        pub fn backend(&self) -> BackendKind {
            match &self.g {
                $G::Host(_) => BackendKind::Host,
                #[cfg(feature = "cuda")]
                $G::Cuda(_) => BackendKind::Cuda,
                #[cfg(feature = "vulkan")]
                $G::Vulkan(_) => BackendKind::Vulkan,
            }
        }

        /// Bytes [`Self::copy_to_host`] writes: the planes packed, rows
        /// without pitch padding (NV12: w × h × 3/2; P010: twice that).
        pub fn packed_size(&self) -> usize {
            usize::try_from(self.layout().packed_size()).unwrap_or(usize::MAX)
        }

        /// Plane `i` (NV12 / P010: 0 = Y, 1 = interleaved CbCr) where it
        /// lives; `None` for a plane the format does not have or that does
        /// not fit the slot.
        pub fn plane(&self, i: usize) -> Option<Plane<'_>> {
            let p = self.layout().plane(i)?;
            let row_bytes = usize::try_from(p.row_bytes()).ok()?;
            let rows = usize::try_from(p.rows()).ok()?;
            match &self.g {
                $G::Host(f) => {
                    let (bytes, pitch) = f.plane(i)?;
                    Some(Plane::Host { bytes, pitch, row_bytes, rows })
                }
                #[cfg(feature = "cuda")]
                $G::Cuda(f) => {
                    use cuframes_cuda::CudaFrameExt;
                    let p = f.device_plane(i).ok()?;
                    Some(Plane::Cuda { ptr: p.ptr, pitch: p.pitch, row_bytes: p.row_bytes, rows: p.rows })
                }
                #[cfg(feature = "vulkan")]
                $G::Vulkan(f) => {
                    use cuframes_vulkan::VulkanFrameExt;
                    let p = f.buffer_plane(i).ok()?;
                    Some(Plane::Vulkan {
                        offset: p.offset,
                        pitch: usize::try_from(p.pitch).ok()?,
                        row_bytes,
                        rows,
                    })
                }
            }
        }

        /// Copies the frame into `out` as FFmpeg's packed rawvideo layout
        /// (planes in order, rows without pitch padding;
        /// [`Self::packed_size`] bytes): a host copy for host memory, a
        /// device-to-host copy after the publisher's writes for CUDA and
        /// Vulkan. What `-f framemd5 -pix_fmt nv12` hashes.
        ///
        /// Errors: `Error::Cuda` / `Error::Vulkan` (the copy failed).
        pub fn copy_to_host(&self, out: &mut Vec<u8>) -> Result<(), Error> {
            match &self.g {
                $G::Host(f) => {
                    out.clear();
                    out.reserve(usize::try_from(f.layout().packed_size()).unwrap_or(0));
                    f.for_each_row(|row| out.extend_from_slice(row));
                    Ok(())
                }
                #[cfg(feature = "cuda")]
                $G::Cuda(f) => {
                    use cuframes_cuda::CudaFrameExt;
                    Ok(f.copy_to_host(out)?)
                }
                #[cfg(feature = "vulkan")]
                $G::Vulkan(f) => {
                    use cuframes_vulkan::VulkanFrameExt;
                    Ok(f.copy_to_host(out)?)
                }
            }
        }
    };
}

impl<'a> Frame<'a> {
    pub(crate) fn host(f: rt::Frame<'a, HostBackend>) -> Self {
        Frame {
            g: FrameGuard::Host(f),
        }
    }

    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(f: rt::Frame<'a, cuframes_cuda::CudaBackend>) -> Self {
        Frame {
            g: FrameGuard::Cuda(f),
        }
    }

    #[cfg(feature = "vulkan")]
    pub(crate) fn vulkan(f: rt::Frame<'a, cuframes_vulkan::VulkanBackend>) -> Self {
        Frame {
            g: FrameGuard::Vulkan(f),
        }
    }

    guard_methods!(FrameGuard);

    /// The same lease without the borrow of the subscriber.
    pub fn into_owned(self) -> OwnedFrame {
        OwnedFrame {
            g: match self.g {
                FrameGuard::Host(f) => OwnedGuard::Host(f.into_owned()),
                #[cfg(feature = "cuda")]
                FrameGuard::Cuda(f) => OwnedGuard::Cuda(f.into_owned()),
                #[cfg(feature = "vulkan")]
                FrameGuard::Vulkan(f) => OwnedGuard::Vulkan(f.into_owned()),
            },
        }
    }

    /// The engine's host frame (for `for_each_row` and the like).
    pub fn as_host(&self) -> Option<&rt::Frame<'a, HostBackend>> {
        match &self.g {
            FrameGuard::Host(f) => Some(f),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The engine's CUDA frame, for `cuframes::cuda::CudaFrameExt`
    /// (device pointers, `wait_in`, `release_after`).
    #[cfg(feature = "cuda")]
    pub fn as_cuda(&self) -> Option<&rt::Frame<'a, cuframes_cuda::CudaBackend>> {
        match &self.g {
            FrameGuard::Cuda(f) => Some(f),
            _ => None,
        }
    }

    /// The engine's Vulkan frame, for `cuframes::vulkan::VulkanFrameExt`.
    #[cfg(feature = "vulkan")]
    pub fn as_vulkan(&self) -> Option<&rt::Frame<'a, cuframes_vulkan::VulkanBackend>> {
        match &self.g {
            FrameGuard::Vulkan(f) => Some(f),
            _ => None,
        }
    }
}

impl OwnedFrame {
    guard_methods!(OwnedGuard);

    /// The engine's host frame.
    pub fn as_host(&self) -> Option<&rt::OwnedFrame<HostBackend>> {
        match &self.g {
            OwnedGuard::Host(f) => Some(f),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The engine's CUDA frame, for `cuframes::cuda::CudaFrameExt`.
    #[cfg(feature = "cuda")]
    pub fn as_cuda(&self) -> Option<&rt::OwnedFrame<cuframes_cuda::CudaBackend>> {
        match &self.g {
            OwnedGuard::Cuda(f) => Some(f),
            _ => None,
        }
    }

    /// Takes the engine's CUDA frame out (e.g. for `release_after`).
    #[cfg(feature = "cuda")]
    pub fn into_cuda(self) -> Result<rt::OwnedFrame<cuframes_cuda::CudaBackend>, OwnedFrame> {
        match self.g {
            OwnedGuard::Cuda(f) => Ok(f),
            g => Err(OwnedFrame { g }),
        }
    }

    /// The engine's Vulkan frame, for `cuframes::vulkan::VulkanFrameExt`.
    #[cfg(feature = "vulkan")]
    pub fn as_vulkan(&self) -> Option<&rt::OwnedFrame<cuframes_vulkan::VulkanBackend>> {
        match &self.g {
            OwnedGuard::Vulkan(f) => Some(f),
            _ => None,
        }
    }
}
