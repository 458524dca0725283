//! What the subscribing elements share: the property enums, opening a
//! subscriber with the chosen backend, and the interruptible wait for a
//! publisher.

use crate::trust;
use cuframes_core::runtime::{
    ConnectError, EndReason, HostBackend, PublisherUids, Reconnect, SubscribeOptions, Subscriber,
};
use cuframes_core::{DeliveryMode, MemoryKind};
use cuframes_cuda::{CudaBackend, CudaError};
use gst::glib;
use gst::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `mode` of the sources: which frames a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstCuframesMode")]
pub enum Mode {
    /// NewestOnly: the newest frame each time; frames the pipeline was too
    /// slow for are skipped (the publisher never waits for this source).
    #[default]
    #[enum_value(
        name = "Newest frame only: frames the pipeline is too slow for are skipped",
        nick = "newest"
    )]
    Newest = 0,
    /// InOrder: every frame in sequence (a `policy=wait` publisher waits
    /// for this source; under `drop-frame` a slow one loses frames).
    #[enum_value(
        name = "In order: every frame, in sequence (a wait-policy publisher waits for it)",
        nick = "in-order"
    )]
    InOrder = 1,
}

impl Mode {
    /// The core's delivery mode.
    pub fn delivery(self) -> DeliveryMode {
        match self {
            Mode::Newest => DeliveryMode::NewestOnly,
            Mode::InOrder => DeliveryMode::InOrder,
        }
    }
}

/// `backend` of the sources: how slots are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstCuframesSubscriberBackend")]
pub enum BackendChoice {
    /// Host memory, or CUDA when the publisher shares VRAM.
    #[default]
    #[enum_value(
        name = "Follow the publisher: host memory, or CUDA when it shares VRAM",
        nick = "auto"
    )]
    Auto = 0,
    /// Host memory (memfd slots) only.
    #[enum_value(name = "Host memory (memfd slots) only", nick = "host")]
    Host = 1,
    /// CUDA (VRAM slots) only.
    #[enum_value(name = "CUDA (VRAM slots) only", nick = "cuda")]
    Cuda = 2,
}

/// A subscriber of either backend.
pub enum Sub {
    /// Host-memory slots.
    Host(Subscriber<HostBackend>),
    /// VRAM slots.
    Cuda(Subscriber<CudaBackend>),
}

impl Sub {
    /// Why the connection ended, if it did.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self {
            Sub::Host(s) => s.end_reason(),
            Sub::Cuda(s) => s.end_reason(),
        }
    }
}

/// Opening a subscriber failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The connection failed (no publisher, refused, wrong memory kind...).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The CUDA backend could not start (no driver, no device).
    #[error("CUDA backend: {0}")]
    Cuda(#[from] CudaError),
}

impl OpenError {
    /// Whether the publisher is simply not up (yet): worth waiting for.
    pub fn is_not_up(&self) -> bool {
        matches!(
            self,
            OpenError::Connect(ConnectError::NoPublisher { .. } | ConnectError::Timeout(_))
        )
    }
}

/// What a subscribing element connects with.
#[derive(Debug, Clone)]
pub struct OpenSpec {
    /// Stream key.
    pub key: String,
    /// Subscriber options (mode, frames / packets, reconnect, runtime dir).
    pub opts: SubscribeOptions,
    /// Backend choice.
    pub backend: BackendChoice,
    /// Import legacy CUDA IPC handles (`allow-legacy-ipc`).
    pub allow_legacy_ipc: bool,
}

/// The subscriber's publisher-uid rule of a `publisher-uids` property value:
/// empty = this process's uid or root (the default).
pub fn publisher_uids(uids: &[u32]) -> PublisherUids {
    if uids.is_empty() {
        PublisherUids::SameUser
    } else {
        PublisherUids::Only(uids.to_vec())
    }
}

impl OpenSpec {
    /// Options for an element named `name`.
    pub fn new(
        key: &str,
        name: &str,
        mode: Mode,
        reconnect: bool,
        runtime_dir: Option<&str>,
    ) -> Self {
        let mut opts = SubscribeOptions::new(mode.delivery());
        opts.name = format!("gst-{name}-{}", std::process::id());
        opts.runtime_dir = runtime_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        opts.reconnect = reconnect.then(Reconnect::default);
        OpenSpec {
            key: key.to_owned(),
            opts,
            backend: BackendChoice::Auto,
            allow_legacy_ipc: false,
        }
    }

    /// One connection attempt.
    pub fn open(&self) -> Result<Sub, OpenError> {
        let cuda = || -> Result<Sub, OpenError> {
            let b = CudaBackend::subscriber()?;
            let b = if self.allow_legacy_ipc {
                trust::allow_legacy_ipc(b)
            } else {
                b
            };
            Ok(Sub::Cuda(Subscriber::connect(
                &self.key,
                b,
                self.opts.clone(),
            )?))
        };
        match self.backend {
            BackendChoice::Host => Ok(Sub::Host(Subscriber::connect_host(
                &self.key,
                self.opts.clone(),
            )?)),
            BackendChoice::Cuda => cuda(),
            BackendChoice::Auto => match Subscriber::connect_host(&self.key, self.opts.clone()) {
                Ok(s) => Ok(Sub::Host(s)),
                Err(ConnectError::MemoryKind {
                    theirs: MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc,
                    ..
                }) => cuda(),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Connects, waiting for a publisher that is not up when `wait` (with
    /// the subscriber's reconnect backoff: 50 ms doubling to 500 ms), until
    /// `flushing` is set (`Ok(None)`) or `deadline` passes (the last error).
    pub fn open_waiting(
        &self,
        wait: bool,
        flushing: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<Option<Sub>, OpenError> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.open() {
                Ok(s) => return Ok(Some(s)),
                Err(e) if wait && e.is_not_up() && deadline.is_none_or(|d| Instant::now() < d) => {
                    if !sleep_unless(flushing, delay) {
                        return Ok(None);
                    }
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A `GstValueArray` property of uids / gids (`"<1000, 1001>"` on the
/// gst-launch command line).
pub fn id_list_spec(name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    gst::ParamSpecArray::builder(name)
        .element_spec(&glib::ParamSpecUInt::builder("id").build())
        .nick(nick)
        .blurb(blurb)
        .mutable_ready()
        .build()
}

/// The uids / gids of an id-list property value (elements that are not
/// `guint` are ignored).
pub fn id_list(value: &glib::Value) -> Vec<u32> {
    value
        .get::<gst::Array>()
        .map(|a| a.iter().filter_map(|v| v.get::<u32>().ok()).collect())
        .unwrap_or_default()
}

/// The property value of an id list.
pub fn id_list_value(ids: &[u32]) -> glib::Value {
    gst::Array::new(ids.iter().copied()).to_value()
}

/// Sleeps `d` in steps of at most 10 ms; `false` (early) once `flushing` is set.
pub fn sleep_unless(flushing: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if flushing.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(10)));
    }
}

/// The current running time of `element` (clock time minus base time), ns;
/// 0 without a clock.
pub fn running_time_now(element: &gst::Element) -> u64 {
    match (element.clock(), element.base_time()) {
        (Some(clock), Some(base)) => clock.time().saturating_sub(base).nseconds(),
        _ => 0,
    }
}
