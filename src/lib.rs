//! cuframes: zero-copy sharing of decoded video frames, and of the encoded
//! packets they came from, between processes on one host.
//!
//! This crate is the one dependency a Rust application adds. It puts one
//! [`Subscriber`], [`Frame`], [`Publisher`] and [`PacketReader`] over every
//! memory backend — host memory (always), CUDA (cargo feature `cuda`),
//! Vulkan (cargo feature `vulkan`) — with one options type per role whose
//! defaults come from `cuframes-core`, and one [`Error`]. The C ABI, the
//! Python package, the GStreamer elements, the camera service and the
//! command-line tools are all built on it.
//!
//! Connecting has two phases (`docs/protocol.md` §6): the handshake reports
//! what the publisher offers (memory kind, sync kind, GPU, stream), then the
//! slots are imported with a backend chosen from that offer. With
//! [`Backend::Auto`] that choice ([`Backend::resolve`]) is made from the
//! offer on the same connection: host memory for a host publisher, CUDA or
//! Vulkan for a GPU publisher, whichever this build and machine can import.
//!
//! ```no_run
//! use cuframes::{Subscriber, SubscriberOptions};
//! use std::time::Duration;
//!
//! let sub = Subscriber::connect("cam1", SubscriberOptions::default())?;
//! println!("{:?} frames from a {:?} publisher", sub.backend(), sub.offer().memory_kind());
//! let mut packed = Vec::new();
//! for _ in 0..10 {
//!     let frame = sub.next_frame(Duration::from_secs(5))?;
//!     // NV12 / P010 planes, rows without pitch padding (FFmpeg's rawvideo).
//!     frame.copy_to_host(&mut packed)?;
//!     println!("frame {} pts {:?} ns, {} bytes", frame.meta().seq, frame.meta().pts_ns, packed.len());
//! } // each frame's lease is returned when it is dropped
//! # Ok::<(), cuframes::Error>(())
//! ```
//!
//! Modules: [`backend`] (the choice), [`options`], [`error`],
//! [`subscriber`], [`frame`], [`packets`], [`publisher`]. The protocol
//! crate is re-exported as [`core`] for what the facade does not wrap.
#![deny(unsafe_code)]

/// Runs `$body` with `$x` bound to the value inside `$inner`, an enum `$E`
/// with one variant per backend of this build (`Host`, and `Cuda` /
/// `Vulkan` with their features): the facade's one dispatch.
macro_rules! each {
    ($E:ident, $inner:expr, $x:ident => $body:expr) => {
        match $inner {
            $E::Host($x) => $body,
            #[cfg(feature = "cuda")]
            $E::Cuda($x) => $body,
            #[cfg(feature = "vulkan")]
            $E::Vulkan($x) => $body,
        }
    };
}

pub mod backend;
pub mod error;
pub mod frame;
mod kind;
pub mod options;
pub mod packets;
pub mod publisher;
pub mod subscriber;
mod trust;

pub use backend::Backend;
pub use error::Error;
pub use frame::{Frame, OwnedFrame, Plane};
pub use kind::BackendKind;
pub use options::{PublisherOptions, SubscriberOptions};
pub use packets::PacketReader;
pub use publisher::Publisher;
pub use subscriber::Subscriber;

/// The protocol crate (layouts, wire messages, engines), for what the
/// facade does not wrap.
pub use cuframes_core as core;
pub use cuframes_core::layout::{FrameLayout, PlaneLayout, StreamDesc};
pub use cuframes_core::ring::FrameMeta;
pub use cuframes_core::runtime::{
    CodecParams, EndReason, Offer, Packet, PacketStats, PublishError, Published, PublisherConfig,
    PublisherStats, PublisherUids, Reconnect, SubscribeOptions, SubscriberStats, WaitStrategy,
};
pub use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, PublishPolicy, SyncKind};

/// The CUDA backend crate (feature `cuda`): [`cuda::CudaFrameExt`] for
/// device pointers, `wait_in` and `release_after` on a frame's
/// [`Frame::as_cuda`].
#[cfg(feature = "cuda")]
pub use cuframes_cuda as cuda;

/// The Vulkan backend crate (feature `vulkan`): [`vulkan::VulkanFrameExt`]
/// for the slot's `VkBuffer` on a frame's [`Frame::as_vulkan`].
#[cfg(feature = "vulkan")]
pub use cuframes_vulkan as vulkan;

/// The README's examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
