//! One options type per role, with the defaults of `cuframes-core`'s
//! config types ([`SubscribeOptions::new`], [`PublisherConfig::new`]).

use crate::backend::Backend;
use cuframes_core::runtime::{PublisherConfig, SubscribeOptions};
use cuframes_core::DeliveryMode;
use std::time::Duration;

/// How to subscribe: the backend, core's [`SubscribeOptions`] (delivery
/// mode, consumer name, runtime directory, handshake timeout, frames and/or
/// packets, reconnection, accepted publisher uids, wait strategy) and how
/// long to wait for a publisher that is not up yet.
///
/// `SubscriberOptions::default()` is `new(DeliveryMode::NewestOnly)`.
#[derive(Debug, Clone)]
pub struct SubscriberOptions {
    /// Which backend imports the slots (default [`Backend::Auto`]: chosen
    /// from the publisher's offer).
    pub backend: Backend,
    /// The engine's options; their defaults are core's.
    pub subscribe: SubscribeOptions,
    /// Keep trying while nobody publishes the key (no socket, or nobody
    /// listening), at most this long (default zero: fail at once with
    /// `ConnectError::NoPublisher`).
    pub wait_publisher: Duration,
    /// The CUDA subscriber's device and cross-GPU policy (default: the
    /// publisher's GPU, found by its UUID).
    #[cfg(feature = "cuda")]
    pub cuda: cuframes_cuda::SubscriberConfig,
    /// Legacy CUDA IPC handles are trusted ([`SubscriberOptions::allow_legacy_ipc`]).
    pub(crate) legacy_ipc: bool,
}

impl SubscriberOptions {
    /// Defaults for `mode`.
    pub fn new(mode: DeliveryMode) -> Self {
        SubscriberOptions {
            backend: Backend::Auto,
            subscribe: SubscribeOptions::new(mode),
            wait_publisher: Duration::ZERO,
            #[cfg(feature = "cuda")]
            cuda: cuframes_cuda::SubscriberConfig::default(),
            legacy_ipc: false,
        }
    }

    /// Whether legacy CUDA IPC handles will be imported.
    pub fn legacy_ipc_allowed(&self) -> bool {
        self.legacy_ipc
    }
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        SubscriberOptions::new(DeliveryMode::NewestOnly)
    }
}

/// How to publish: the backend, core's [`PublisherConfig`] (key, slots,
/// policy, timeouts, access control, packet ring) and each GPU backend's
/// settings.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Which backend allocates the slots (default [`Backend::Auto`]: CUDA
    /// when built and usable, else host memory).
    pub backend: Backend,
    /// The engine's configuration; its defaults are core's.
    pub config: PublisherConfig,
    /// CUDA memory kind, sync kind and device.
    #[cfg(feature = "cuda")]
    pub cuda: cuframes_cuda::CudaConfig,
    /// Vulkan device and sync kind.
    #[cfg(feature = "vulkan")]
    pub vulkan: cuframes_vulkan::VulkanConfig,
}

impl PublisherOptions {
    /// Defaults for the stream `key`.
    pub fn new(key: &str) -> Self {
        PublisherOptions {
            backend: Backend::Auto,
            config: PublisherConfig::new(key),
            #[cfg(feature = "cuda")]
            cuda: cuframes_cuda::CudaConfig::default(),
            #[cfg(feature = "vulkan")]
            vulkan: cuframes_vulkan::VulkanConfig::default(),
        }
    }
}
