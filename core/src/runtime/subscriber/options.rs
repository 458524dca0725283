//! Subscriber settings ([`SubscribeOptions`]) and their parts.

use crate::backoff::BackoffPolicy;
#[cfg(doc)]
use crate::runtime::dir;
use crate::runtime::wait::WaitStrategy;
use crate::DeliveryMode;
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::time::Duration;
#[cfg(doc)]
use {
    super::engine::Subscriber,
    super::error::{ConnectError, RecvError},
};

/// Subscriber settings. `SubscribeOptions::new(mode)` gives the defaults.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Name shown in the publisher's logs (≤ 64 bytes, cut if longer).
    pub name: String,
    /// Runtime directory (default [`dir::runtime_dir`]).
    pub runtime_dir: Option<PathBuf>,
    /// Longest wait for WELCOME (default 5 s).
    pub handshake_timeout: Duration,
    /// Subscribe to decoded frames (default true).
    pub frames: bool,
    /// Subscribe to the encoded packet ring (default false; see
    /// [`Subscriber::next_packet`]). A publisher without one fails the
    /// connection with [`ConnectError::NoPacketRing`].
    pub packets: bool,
    /// Reconnect automatically when the publisher vanishes (default `None`:
    /// report [`RecvError::Disconnected`]). See [`Reconnect`].
    pub reconnect: Option<Reconnect>,
    /// Which publishers to accept, by the uid the kernel reports for the
    /// connected socket (`SO_PEERCRED`, `docs/protocol.md` §2.1). Default
    /// [`PublisherUids::SameUser`]: this process's uid or root. A refused
    /// publisher is [`ConnectError::PublisherUid`]; the check runs before
    /// HELLO, so nothing is sent to it.
    pub publisher_uids: PublisherUids,
    /// How [`Subscriber::next_frame`] waits when no frame is ready (default:
    /// spin 50 µs, anticipating the stream's pace, then the futex; see
    /// [`WaitStrategy`]).
    pub wait: WaitStrategy,
}

/// The publishers a subscriber accepts, by uid ([`SubscribeOptions::publisher_uids`]).
/// Root (uid 0) is always accepted: it could read this process's memory anyway.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PublisherUids {
    /// This process's real uid, or root.
    #[default]
    SameUser,
    /// These uids, or root.
    Only(Vec<u32>),
    /// Any publisher: the check is off (the socket's directory and mode are
    /// then the only protection, `docs/protocol.md` §2.1).
    Any,
}

impl PublisherUids {
    /// Whether a publisher running as `uid` is accepted by a subscriber
    /// running as `own` (both real uids).
    pub fn allows(&self, uid: u32, own: u32) -> bool {
        uid == 0
            || match self {
                PublisherUids::SameUser => uid == own,
                PublisherUids::Only(list) => list.contains(&uid),
                PublisherUids::Any => true,
            }
    }
}

impl core::fmt::Display for PublisherUids {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PublisherUids::SameUser => write!(
                f,
                "same uid ({}) or root",
                rustix::process::getuid().as_raw()
            ),
            PublisherUids::Only(l) => write!(f, "uids {l:?} or root"),
            PublisherUids::Any => f.write_str("any uid"),
        }
    }
}

impl SubscribeOptions {
    /// Default [`SubscribeOptions::handshake_timeout`]: 5 s for WELCOME. The
    /// one definition of this default: front-ends take theirs from here.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Defaults for `mode`.
    pub fn new(mode: DeliveryMode) -> Self {
        SubscribeOptions {
            mode,
            name: format!("pid-{}", std::process::id()),
            runtime_dir: None,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            frames: true,
            packets: false,
            reconnect: None,
            publisher_uids: PublisherUids::SameUser,
            wait: WaitStrategy::default(),
        }
    }
}

/// Automatic reconnection (`docs/protocol.md` §5.6): when the publisher
/// vanishes — socket EOF or reset without GOODBYE, or GOODBYE with reason
/// Shutdown or Normal — the subscriber first delivers what is left in its
/// rings, then connects to the same key again from inside
/// [`Subscriber::next_frame`] / [`Subscriber::next_packet`] (which return
/// `Timeout` while it waits). GOODBYE EndOfStream, an ERROR and a protocol
/// error still end with `Disconnected`.
///
/// Attempts follow a capped exponential backoff: the first at once, then
/// after `first_delay`, doubling up to `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// Wait before the second attempt (default 50 ms).
    pub first_delay: Duration,
    /// Longest wait between attempts (default 500 ms).
    pub max_delay: Duration,
    /// Give up (report `Disconnected`) when no attempt succeeded this long
    /// after the publisher was found gone (default `None`: never).
    pub give_up_after: Option<Duration>,
}

impl Reconnect {
    /// The backoff schedule these settings describe (core's one retry
    /// policy, [`crate::backoff`]).
    pub fn policy(&self) -> BackoffPolicy {
        let p = BackoffPolicy::new(self.first_delay, self.max_delay);
        match self.give_up_after {
            Some(g) => p.give_up_after(g),
            None => p,
        }
    }
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            give_up_after: None,
        }
    }
}
