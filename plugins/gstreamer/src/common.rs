//! What the subscribing elements share: the property enums, the facade's
//! subscriber options made from them, and the interruptible wait for a
//! publisher (core's backoff schedule).

use crate::trust;
use cuframes::{Backend, Error, Subscriber, SubscriberOptions};
use cuframes_core::backoff::{Backoff, BackoffPolicy, Next};
use cuframes_core::runtime::{ConnectError, PublisherUids, Reconnect};
use cuframes_core::DeliveryMode;
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

/// `backend` of the sources: which backend imports the slots; mapped to
/// [`cuframes::Backend`], whose [`cuframes::Backend::resolve`] makes the
/// `auto` choice from the publisher's offer on the same connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstCuframesSubscriberBackend")]
pub enum SourceBackend {
    /// Whatever reads the publisher's memory: host memory for a host
    /// publisher; CUDA, else Vulkan, for a GPU publisher.
    #[default]
    #[enum_value(
        name = "Follow the publisher: host memory for host slots; CUDA, else Vulkan, for GPU slots",
        nick = "auto"
    )]
    Auto = 0,
    /// Host memory (memfd slots) only.
    #[enum_value(name = "Host memory (memfd slots) only", nick = "host")]
    Host = 1,
    /// CUDA (VRAM slots, or Vulkan memory imported into CUDA) only.
    #[enum_value(name = "CUDA (VRAM slots) only", nick = "cuda")]
    Cuda = 2,
    /// Vulkan (opaque-fd slots of a Vulkan or CUDA VMM publisher) only.
    #[enum_value(name = "Vulkan (external-memory slots) only", nick = "vulkan")]
    Vulkan = 3,
}

impl From<SourceBackend> for Backend {
    fn from(b: SourceBackend) -> Self {
        match b {
            SourceBackend::Auto => Backend::Auto,
            SourceBackend::Host => Backend::Host,
            SourceBackend::Cuda => Backend::Cuda,
            SourceBackend::Vulkan => Backend::Vulkan,
        }
    }
}

/// Whether connecting failed because the publisher is simply not up (yet):
/// worth waiting for.
pub fn is_not_up(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect(ConnectError::NoPublisher { .. } | ConnectError::Timeout(_))
    )
}

/// What a subscribing element connects with.
#[derive(Debug, Clone)]
pub struct OpenSpec {
    /// Stream key.
    pub key: String,
    /// The facade's options: backend, core's subscribe options (mode,
    /// frames / packets, reconnect, runtime dir, publisher uids).
    pub opts: SubscriberOptions,
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
    /// Options for an element named `name`; everything not set here keeps
    /// the facade's (core's) default.
    pub fn new(
        key: &str,
        name: &str,
        mode: Mode,
        reconnect: bool,
        runtime_dir: Option<&str>,
    ) -> Self {
        let mut opts = SubscriberOptions::new(mode.delivery());
        opts.subscribe.name = format!("gst-{name}-{}", std::process::id());
        opts.subscribe.runtime_dir = runtime_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        opts.subscribe.reconnect = reconnect.then(Reconnect::default);
        OpenSpec {
            key: key.to_owned(),
            opts,
        }
    }

    /// Sets the `backend` and `allow-legacy-ipc` properties' values.
    pub fn backend(&mut self, backend: SourceBackend, allow_legacy_ipc: bool) {
        self.opts.backend = backend.into();
        if allow_legacy_ipc {
            trust::allow_legacy_ipc(&mut self.opts);
        }
    }

    /// One connection attempt: one handshake, the backend chosen from the
    /// publisher's offer by the facade.
    pub fn open(&self) -> Result<Subscriber, Error> {
        Subscriber::connect(&self.key, self.opts.clone())
    }

    /// Connects, waiting for a publisher that is not up when `wait` (on
    /// core's reconnect schedule, [`Reconnect::default`]: 50 ms doubling to
    /// 500 ms), until `flushing` is set (`Ok(None)`) or `deadline` passes
    /// (the last error).
    pub fn open_waiting(
        &self,
        wait: bool,
        flushing: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<Option<Subscriber>, Error> {
        let r = Reconnect::default();
        let mut backoff = Backoff::new(BackoffPolicy::new(r.first_delay, r.max_delay));
        loop {
            match self.open() {
                Ok(s) => return Ok(Some(s)),
                Err(e) if wait && is_not_up(&e) && deadline.is_none_or(|d| Instant::now() < d) => {
                    let now = Instant::now();
                    let Next::RetryAt(at) = backoff.on_failure(now) else {
                        return Err(e);
                    };
                    if !sleep_unless(flushing, at.saturating_duration_since(now)) {
                        return Ok(None);
                    }
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
