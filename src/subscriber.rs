//! [`Subscriber`]: one connection to a publisher, over whichever backend
//! its offer needs (`docs/protocol.md` §5, §6).

use crate::error::Error;
use crate::frame::Frame;
use crate::kind::BackendKind;
use crate::options::SubscriberOptions;
use cuframes_core::layout::StreamDesc;
use cuframes_core::packet::PacketMeta;
use cuframes_core::runtime::{
    self as rt, CodecParams, ConnectError, EndReason, HostBackend, Offer, Packet, PacketStats,
    SubscriberStats, Welcomed,
};
use std::time::{Duration, Instant};

/// The engine's subscriber of the backend in use.
pub(crate) enum Inner {
    Host(rt::Subscriber<HostBackend>),
    #[cfg(feature = "cuda")]
    Cuda(rt::Subscriber<cuframes_cuda::CudaBackend>),
    #[cfg(feature = "vulkan")]
    Vulkan(rt::Subscriber<cuframes_vulkan::VulkanBackend>),
}

/// A connection to one publisher: frames and/or packets of one stream key.
///
/// Made by [`Subscriber::connect`] (one connection: the backend is chosen
/// from the publisher's offer, [`crate::Backend::resolve`]). Frames borrow
/// the subscriber ([`Frame`]); [`Frame::into_owned`] gives a guard that
/// does not. Not `Sync`: one thread reads at a time (wrap it in a `Mutex`
/// to share it).
pub struct Subscriber {
    inner: Inner,
    offer: Offer,
    kind: BackendKind,
}

impl core::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Subscriber")
            .field("backend", &self.kind)
            .field("offer", &self.offer)
            .finish_non_exhaustive()
    }
}

/// Phase one for `key`, retrying while nobody publishes it until
/// `opts.wait_publisher` has passed (every 20 ms).
pub(crate) fn handshake(key: &str, opts: &SubscriberOptions) -> Result<Welcomed, Error> {
    let deadline = Instant::now().checked_add(opts.wait_publisher);
    loop {
        match Welcomed::handshake(key, opts.subscribe.clone()) {
            Err(ConnectError::NoPublisher { .. })
                if deadline.is_some_and(|d| Instant::now() < d) =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.map_err(Error::from),
        }
    }
}

impl Subscriber {
    /// Connects to the publisher of `key`: the handshake, the backend chosen
    /// from what the publisher offers (`opts.backend`,
    /// [`crate::Backend::resolve`]), the slots imported with it — one
    /// connection. Waits up to `opts.wait_publisher` for a publisher that
    /// is not up yet.
    ///
    /// Errors: [`Error::Connect`] (no publisher, uid refused, refused,
    /// protocol, import), [`Error::NotBuilt`], [`Error::NoImporter`],
    /// `Error::Cuda` / `Error::Vulkan` (the backend could not start).
    pub fn connect(key: &str, opts: SubscriberOptions) -> Result<Self, Error> {
        let welcomed = handshake(key, &opts)?;
        Self::import(welcomed, &opts)
    }

    /// Phase two for a connection already welcomed (core's
    /// [`Welcomed::handshake`]): chooses the backend from its offer and
    /// imports the slots. `opts.subscribe` is not used (the connection was
    /// made with its own options).
    ///
    /// Errors: as [`Subscriber::connect`].
    pub fn import(welcomed: Welcomed, opts: &SubscriberOptions) -> Result<Self, Error> {
        let offer = welcomed.offer();
        let kind = opts.backend.resolve(&offer)?;
        let inner = match kind {
            BackendKind::Host => Inner::Host(welcomed.import(HostBackend)?),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => {
                Inner::Cuda(welcomed.import(crate::trust::cuda_subscriber(opts)?)?)
            }
            #[cfg(feature = "vulkan")]
            BackendKind::Vulkan => {
                Inner::Vulkan(welcomed.import(cuframes_vulkan::VulkanBackend::subscriber()?)?)
            }
            #[allow(unreachable_patterns)]
            other => return Err(Error::NotBuilt(other)),
        };
        tracing::debug!(
            id = each!(Inner, &inner, s => s.id()),
            backend = kind.name(),
            memory = ?offer.memory_kind(),
            "subscribed"
        );
        Ok(Subscriber { inner, offer, kind })
    }

    /// The backend the slots were imported with.
    pub fn backend(&self) -> BackendKind {
        self.kind
    }

    /// What the publisher offered at connect (memory kind, sync kind, GPU
    /// UUID, the first stream description, packets).
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// The stream description of the ring frames are read from now (size
    /// in pixels, pixel format, plane offsets and pitches in bytes).
    pub fn stream(&self) -> StreamDesc {
        each!(Inner, &self.inner, s => s.stream())
    }

    /// Publisher-assigned id of the current connection.
    pub fn id(&self) -> u32 {
        each!(Inner, &self.inner, s => s.id())
    }

    /// Slots in the ring frames are read from now (0 for packets only).
    pub fn slot_count(&self) -> u32 {
        each!(Inner, &self.inner, s => s.slot_count())
    }

    /// Frame counters so far.
    pub fn stats(&self) -> SubscriberStats {
        each!(Inner, &self.inner, s => s.stats())
    }

    /// Why the connection ended (`None` while it is up).
    pub fn end_reason(&self) -> Option<EndReason> {
        each!(Inner, &self.inner, s => s.end_reason())
    }

    /// The next frame for the delivery mode, waiting at most `timeout`
    /// (`Duration::ZERO`: a poll). See core's `Subscriber::next_frame` for
    /// the order after stream changes and reconnects.
    ///
    /// Errors: [`Error::Recv`] — `Timeout`, `Disconnected` (after every
    /// frame left was delivered), `TooManyLeases`, `Protocol`,
    /// `NotSubscribed`.
    pub fn next_frame(&self, timeout: Duration) -> Result<Frame<'_>, Error> {
        Ok(match &self.inner {
            Inner::Host(s) => Frame::host(s.next_frame(timeout)?),
            #[cfg(feature = "cuda")]
            Inner::Cuda(s) => Frame::cuda(s.next_frame(timeout)?),
            #[cfg(feature = "vulkan")]
            Inner::Vulkan(s) => Frame::vulkan(s.next_frame(timeout)?),
        })
    }

    /// The next encoded packet (one Annex B access unit), copied out of the
    /// packet ring, waiting at most `timeout` (`docs/protocol.md` §9.5).
    ///
    /// Errors: [`Error::Packet`] — `NotSubscribed`, `Timeout`,
    /// `Disconnected`, `Corrupt`, `Control`.
    pub fn next_packet(&self, timeout: Duration) -> Result<Packet, Error> {
        Ok(each!(Inner, &self.inner, s => s.next_packet(timeout))?)
    }

    /// [`Subscriber::next_packet`] into `buf` (its capacity reused).
    pub fn next_packet_into(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<PacketMeta, Error> {
        Ok(each!(Inner, &self.inner, s => s.next_packet_into(buf, timeout))?)
    }

    /// The codec id and Annex B parameter sets of the packet ring.
    pub fn codec_params(&self) -> Result<CodecParams, Error> {
        Ok(each!(Inner, &self.inner, s => s.codec_params())?)
    }

    /// Packet counters (zero without a packet subscription).
    pub fn packet_stats(&self) -> PacketStats {
        each!(Inner, &self.inner, s => s.packet_stats())
    }

    /// Whether this subscriber reads the packet ring.
    pub fn has_packets(&self) -> bool {
        each!(Inner, &self.inner, s => s.has_packets())
    }

    /// The engine's host-memory subscriber, when that is the backend.
    pub fn as_host(&self) -> Option<&rt::Subscriber<HostBackend>> {
        match &self.inner {
            Inner::Host(s) => Some(s),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The engine's CUDA subscriber, when that is the backend.
    #[cfg(feature = "cuda")]
    pub fn as_cuda(&self) -> Option<&rt::Subscriber<cuframes_cuda::CudaBackend>> {
        match &self.inner {
            Inner::Cuda(s) => Some(s),
            _ => None,
        }
    }

    /// The engine's Vulkan subscriber, when that is the backend.
    #[cfg(feature = "vulkan")]
    pub fn as_vulkan(&self) -> Option<&rt::Subscriber<cuframes_vulkan::VulkanBackend>> {
        match &self.inner {
            Inner::Vulkan(s) => Some(s),
            _ => None,
        }
    }
}
