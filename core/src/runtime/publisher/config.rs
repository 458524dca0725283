//! [`PublisherConfig`]: a publisher's settings and their defaults (the one
//! definition of each default the front-ends use).

use super::packets::PacketRingConfig;
use crate::PublishPolicy;
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::time::Duration;

/// Publisher settings. `PublisherConfig::new(key)` gives the defaults.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Stream key, `[A-Za-z0-9_-]{1,63}`.
    pub key: String,
    /// Frame slots, 2..=64 (default 8).
    pub slots: u32,
    /// What to do when no slot may be rewritten (default `DropFrame`).
    pub policy: PublishPolicy,
    /// `Wait`: longest wait for a slot before an unread frame is overwritten
    /// or the new frame is dropped (default
    /// [`PublisherConfig::DEFAULT_WAIT_TIMEOUT`], 2 s).
    pub wait_timeout: Duration,
    /// A lease held longer than this is revoked (default
    /// [`PublisherConfig::DEFAULT_LEASE_TIMEOUT`], 5 s).
    pub lease_timeout: Duration,
    /// Most simultaneous subscribers (default 64).
    pub max_subscribers: usize,
    /// Socket file mode (default 0o660).
    pub socket_mode: u32,
    /// SO_PEERCRED allow-list of uids (empty with `allowed_gids` empty: anyone
    /// who can open the socket; root is always allowed).
    pub allowed_uids: Vec<u32>,
    /// SO_PEERCRED allow-list of gids.
    pub allowed_gids: Vec<u32>,
    /// Runtime directory (default [`crate::runtime::dir::runtime_dir`]).
    pub runtime_dir: Option<PathBuf>,
    /// The encoded packet ring (`docs/protocol.md` §9); `None` (default):
    /// no ring, and HELLOs that want only packets are refused.
    pub packets: Option<PacketRingConfig>,
    /// A connection that has not completed its handshake (HELLO answered)
    /// this long after `accept` is closed (default
    /// [`PublisherConfig::DEFAULT_HANDSHAKE_TIMEOUT`], 3 s; §6).
    pub handshake_timeout: Duration,
    /// Most connections still in their handshake at once (default 256);
    /// they do not count against `max_subscribers`. When full, the oldest
    /// is closed to admit a new one.
    pub max_pending_handshakes: usize,
    /// Most messages handled per connection per round of the control
    /// thread (default 16), so no peer can starve the others (§6).
    pub messages_per_round: usize,
    /// Most bytes queued for one peer that does not read (default 256 KiB);
    /// a peer whose queue would grow past it is disconnected (§4.1).
    pub max_queued_bytes: usize,
    /// A message queued for a peer and not fully sent after this long
    /// disconnects the peer (default 1 s; §4.1). The control thread never
    /// blocks on a send.
    pub send_timeout: Duration,
    /// `Wait`: an InOrder subscriber that has kept the publisher waiting past
    /// `wait_timeout` this many times is demoted: its unread frames no
    /// longer hold slots (it loses frames as under `DropFrame`), with one
    /// log line. `None` (default): never demoted (§5.4).
    pub max_lag_events: Option<u32>,
    /// At most one warning per subscriber and kind (lease revoked, lagging)
    /// per this interval; the next one counts what was suppressed
    /// (default 5 s).
    pub warn_interval: Duration,
}

impl PublisherConfig {
    /// Default [`PublisherConfig::lease_timeout`]: a lease held longer than
    /// 5 s is revoked. The one definition of this default: front-ends (C,
    /// Python, GStreamer, the camera service) take theirs from here.
    pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`PublisherConfig::handshake_timeout`]: 3 s from `accept` to
    /// an answered HELLO.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default [`PublisherConfig::wait_timeout`]: 2 s for a slot under `Wait`.
    pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Defaults for `key`.
    pub fn new(key: &str) -> Self {
        PublisherConfig {
            key: key.to_owned(),
            slots: 8,
            policy: PublishPolicy::DropFrame,
            wait_timeout: Self::DEFAULT_WAIT_TIMEOUT,
            lease_timeout: Self::DEFAULT_LEASE_TIMEOUT,
            max_subscribers: 64,
            socket_mode: 0o660,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            runtime_dir: None,
            packets: None,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending_handshakes: 256,
            messages_per_round: 16,
            max_queued_bytes: 256 * 1024,
            send_timeout: Duration::from_secs(1),
            max_lag_events: None,
            warn_interval: Duration::from_secs(5),
        }
    }
}
