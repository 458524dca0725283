//! [`Publisher`]: a ring of frame slots on whichever backend was chosen,
//! and optionally a packet ring (`docs/protocol.md` §5, §9).

use crate::error::Error;
use crate::kind::BackendKind;
use crate::options::PublisherOptions;
use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{self as rt, HeldLease, HostBackend, PublisherStats};
use std::time::Duration;

/// The engine's publisher of the backend in use.
enum Inner {
    Host(rt::Publisher<HostBackend>),
    #[cfg(feature = "cuda")]
    Cuda(rt::Publisher<cuframes_cuda::CudaBackend>),
    #[cfg(feature = "vulkan")]
    Vulkan(rt::Publisher<cuframes_vulkan::VulkanBackend>),
}

/// Shares frames (and packets) under one stream key.
pub struct Publisher {
    inner: Inner,
}

impl core::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Publisher")
            .field("backend", &self.backend())
            .field("stream", self.stream())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates the publisher of `opts.config.key` for `stream` on
    /// `opts.backend` ([`crate::Backend::resolve_publisher`]). With
    /// [`crate::Backend::Auto`] a CUDA backend that fails to start (no
    /// device, a driver error) falls back to host memory, with a warning;
    /// an explicit backend's failure is an error.
    ///
    /// Errors: [`Error::Create`] (key, socket, stream description),
    /// [`Error::NotBuilt`], `Error::Cuda` / `Error::Vulkan`.
    pub fn create(opts: PublisherOptions, stream: StreamDesc) -> Result<Self, Error> {
        let kind = opts.backend.resolve_publisher()?;
        let inner = match kind {
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => match cuframes_cuda::CudaBackend::publisher(opts.cuda) {
                Ok(b) => Inner::Cuda(rt::Publisher::create(b, opts.config, stream)?),
                Err(e) if opts.backend == crate::Backend::Auto => {
                    tracing::warn!("CUDA unusable ({e}); publishing host memory");
                    Inner::Host(rt::Publisher::create(HostBackend, opts.config, stream)?)
                }
                Err(e) => return Err(e.into()),
            },
            #[cfg(feature = "vulkan")]
            BackendKind::Vulkan => {
                let b = cuframes_vulkan::VulkanBackend::publisher(opts.vulkan)?;
                Inner::Vulkan(rt::Publisher::create(b, opts.config, stream)?)
            }
            BackendKind::Host => {
                Inner::Host(rt::Publisher::create(HostBackend, opts.config, stream)?)
            }
            #[allow(unreachable_patterns)]
            other => return Err(Error::NotBuilt(other)),
        };
        Ok(Publisher { inner })
    }

    /// The backend holding the slots.
    pub fn backend(&self) -> BackendKind {
        match &self.inner {
            Inner::Host(_) => BackendKind::Host,
            #[cfg(feature = "cuda")]
            Inner::Cuda(_) => BackendKind::Cuda,
            #[cfg(feature = "vulkan")]
            Inner::Vulkan(_) => BackendKind::Vulkan,
        }
    }

    /// The current stream description.
    pub fn stream(&self) -> &StreamDesc {
        each!(Inner, &self.inner, p => p.stream())
    }

    /// The control socket's path.
    pub fn socket_path(&self) -> &std::path::Path {
        each!(Inner, &self.inner, p => p.socket_path())
    }

    /// Connected subscribers.
    pub fn subscriber_count(&self) -> usize {
        each!(Inner, &self.inner, p => p.subscriber_count())
    }

    /// Counters.
    pub fn stats(&self) -> PublisherStats {
        each!(Inner, &self.inner, p => p.stats())
    }

    /// The leases held now, from the publisher's lease table.
    pub fn leases(&self) -> Vec<HeldLease> {
        each!(Inner, &self.inner, p => p.leases())
    }

    /// Waits until `n` subscribers are connected, at most `timeout`.
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> bool {
        each!(Inner, &self.inner, p => p.wait_for_subscribers(n, timeout))
    }

    /// Publishes one frame from host memory: `planes[i]` is plane `i`
    /// (NV12 / P010: Y, then interleaved CbCr) as `(bytes from its first
    /// row, pitch in bytes)`. Copied into a free slot — a host copy, a
    /// `cuMemcpy2D` to the device (then fenced), or a Vulkan upload — and
    /// committed. Returns the frame's sequence number.
    ///
    /// Errors: [`Error::Dropped`] (every slot leased: the policy dropped
    /// it), [`Error::Write`] / `Error::Cuda` / `Error::Vulkan` (a plane
    /// shorter than its rows, a failed copy; the slot is given back).
    pub fn publish_planes(
        &mut self,
        meta: FrameMeta,
        planes: &[(&[u8], usize)],
    ) -> Result<u64, Error> {
        let published = match &mut self.inner {
            Inner::Host(p) => p.publish(meta, |slot, s| write_host(slot.bytes_mut(), s, planes)),
            #[cfg(feature = "cuda")]
            Inner::Cuda(p) => p.publish(meta, |slot, s| -> Result<(), Error> {
                for (i, (src, pitch)) in planes.iter().enumerate() {
                    slot.copy_plane_from_host(s, i, src, *pitch)?;
                }
                slot.fence(cuframes_cuda::RawStream::DEFAULT)?;
                Ok(())
            }),
            #[cfg(feature = "vulkan")]
            Inner::Vulkan(p) => p.publish(meta, |slot, s| -> Result<(), Error> {
                Ok(slot.write_from_host(s, planes)?)
            }),
        };
        match published {
            Ok(rt::Published::Committed(seq)) => Ok(seq),
            Ok(rt::Published::Dropped) => Err(Error::Dropped),
            Err(rt::PublishError::Write(e)) => Err(e),
        }
    }

    /// Publishes one encoded packet (Annex B access unit) to the packet ring.
    ///
    /// Errors: [`Error::PublishPacket`].
    pub fn publish_packet(
        &mut self,
        data: &[u8],
        pts_ns: Option<i64>,
        dts_ns: Option<i64>,
        flags: u32,
    ) -> Result<u64, Error> {
        Ok(each!(Inner, &mut self.inner, p => p.publish_packet(data, pts_ns, dts_ns, flags))?)
    }

    /// Sets the packet ring's codec extradata (Annex B parameter sets).
    pub fn set_codec_extradata(&self, extradata: &[u8]) -> Result<(), Error> {
        Ok(each!(Inner, &self.inner, p => p.set_codec_extradata(extradata))?)
    }

    /// Changes the stream (a new ring; STREAM_CHANGED to every subscriber).
    pub fn change_stream(&mut self, stream: StreamDesc) -> Result<(), Error> {
        Ok(each!(Inner, &mut self.inner, p => p.change_stream(stream))?)
    }

    /// Ends the stream: GOODBYE EndOfStream to every subscriber, which
    /// drains the ring and ends.
    pub fn finish(self) {
        each!(Inner, self.inner, p => p.finish())
    }

    /// The engine's host publisher, when that is the backend.
    pub fn as_host_mut(&mut self) -> Option<&mut rt::Publisher<HostBackend>> {
        match &mut self.inner {
            Inner::Host(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The engine's CUDA publisher, when that is the backend (NVDEC writes
    /// its surfaces device to device through it).
    #[cfg(feature = "cuda")]
    pub fn as_cuda_mut(&mut self) -> Option<&mut rt::Publisher<cuframes_cuda::CudaBackend>> {
        match &mut self.inner {
            Inner::Cuda(p) => Some(p),
            _ => None,
        }
    }

    /// The engine's Vulkan publisher, when that is the backend.
    #[cfg(feature = "vulkan")]
    pub fn as_vulkan_mut(&mut self) -> Option<&mut rt::Publisher<cuframes_vulkan::VulkanBackend>> {
        match &mut self.inner {
            Inner::Vulkan(p) => Some(p),
            _ => None,
        }
    }
}

/// Copies `planes` (first row, pitch) into a host slot laid out as `s`.
fn write_host(dst: &mut [u8], s: &StreamDesc, planes: &[(&[u8], usize)]) -> Result<(), Error> {
    let layout = s
        .validate(dst.len() as u64)
        .map_err(|e| Error::Write(e.to_string()))?;
    for (i, (src, src_pitch)) in planes.iter().enumerate() {
        layout
            .copy_plane_from(i, src, *src_pitch, dst)
            .map_err(|e| Error::Write(format!("plane {i}: {e}")))?;
    }
    Ok(())
}
