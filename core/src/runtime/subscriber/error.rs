//! What connecting and receiving report: [`ConnectError`], [`RecvError`],
//! [`EndReason`], and the counters [`SubscriberStats`].

use super::options::PublisherUids;
use crate::handshake::HandshakeError;
use crate::layout::{LayoutError, LEASES_PER_ROW};
use crate::runtime::backend::BackendFailure;
use crate::runtime::channel::ChannelError;
use crate::runtime::dir::DirError;
use crate::runtime::shm::ShmError;
use crate::wire::ErrorCode;
use crate::MemoryKind;
use std::path::PathBuf;
use std::prelude::rust_2021::*;
use std::time::Duration;
#[cfg(doc)]
use {
    super::engine::Subscriber, super::frame::Frame, super::options::SubscribeOptions,
    crate::runtime::WaitStrategy,
};

/// Why a connection to a publisher ended ([`Subscriber::end_reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// GOODBYE EndOfStream: the publisher's input ended; the stream is over.
    EndOfStream,
    /// GOODBYE with another reason (Shutdown, Normal...): the publisher
    /// stopped on purpose before its input ended (e.g. SIGTERM).
    Shutdown,
    /// Socket EOF or reset without GOODBYE: the publisher died (crash,
    /// SIGKILL) or stopped answering sensibly.
    Vanished,
    /// The publisher sent ERROR.
    Refused,
    /// The publisher broke the protocol (e.g. a bad re-WELCOME).
    ProtocolError,
}

impl EndReason {
    /// Whether automatic reconnection follows this end (§6 *Reconnection*):
    /// [`EndReason::Shutdown`] and [`EndReason::Vanished`].
    pub fn reconnects(self) -> bool {
        matches!(self, EndReason::Shutdown | EndReason::Vanished)
    }

    /// Whether the publisher ended the stream cleanly (GOODBYE EndOfStream).
    pub fn is_end_of_stream(self) -> bool {
        self == EndReason::EndOfStream
    }
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Bad key.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// Nobody publishes this key (no socket, or nobody listening on it).
    #[error("no publisher on key {key:?} (socket {path}): {source}")]
    NoPublisher {
        /// Key.
        key: String,
        /// Socket path tried.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The process listening on the key's socket runs as a uid this
    /// subscriber does not accept ([`SubscribeOptions::publisher_uids`]): it
    /// may be another user impersonating the publisher.
    #[error("the publisher of {key:?} runs as uid {uid}, which this subscriber does not accept (it accepts {allowed}); to trust it, allow uid {uid} (cuframes-subscribe --publisher-uid {uid}, SubscribeOptions::publisher_uids)")]
    PublisherUid {
        /// Key.
        key: String,
        /// The publisher's uid (`SO_PEERCRED`).
        uid: u32,
        /// What was accepted.
        allowed: PublisherUids,
    },
    /// The publisher's credentials could not be read (`SO_PEERCRED`), so its
    /// uid could not be checked (fail closed).
    #[error("cannot read the credentials of the publisher of {key:?} (SO_PEERCRED): {source}")]
    PeerCred {
        /// Key.
        key: String,
        /// OS error.
        source: rustix::io::Errno,
    },
    /// The publisher refused the HELLO.
    #[error("publisher refused: {code:?}: {text}")]
    Rejected {
        /// Its code.
        code: ErrorCode,
        /// Its text.
        text: String,
    },
    /// The publisher broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] HandshakeError),
    /// A socket or message error.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// No WELCOME in time.
    #[error("no answer from the publisher within {0:?}")]
    Timeout(Duration),
    /// The publisher's memory kind is not this backend's.
    #[error("publisher shares {theirs:?} memory, this subscriber's backend imports {ours:?}")]
    MemoryKind {
        /// Announced kind.
        theirs: MemoryKind,
        /// This backend's kind.
        ours: MemoryKind,
    },
    /// A later ring (re-WELCOME after STREAM_CHANGED, or a reconnect) differs
    /// from the first in memory kind, sync kind, GPU, subscriber id or packet
    /// ring (§6): the backend stays attached to the first publisher's.
    #[error("the new ring differs from the attached one in {0}")]
    PeerChanged(&'static str),
    /// The control region failed validation.
    #[error("control region: {0}")]
    Layout(#[from] LayoutError),
    /// Mapping failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The backend could not import a slot.
    #[error("slot import: {0}")]
    Import(BackendFailure),
    /// Packets were asked for, but the publisher has no packet ring.
    #[error("the publisher has no packet ring (start it with packets enabled)")]
    NoPacketRing,
    /// Neither frames nor packets were asked for.
    #[error("SubscribeOptions asks for neither frames nor packets")]
    NothingWanted,
    /// The packet region failed validation.
    #[error("packet ring: {0}")]
    PacketLayout(#[from] crate::packet::PacketLayoutError),
}

/// Receiving a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// No new frame within the timeout (also while reconnecting).
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The publisher is gone (socket closed, GOODBYE, or region closed) and
    /// every frame left in the ring has been delivered; with
    /// [`SubscribeOptions::reconnect`], only after GOODBYE EndOfStream, a
    /// protocol failure, or the give-up duration.
    #[error("publisher disconnected")]
    Disconnected,
    /// All lease entries are held by live [`Frame`]s.
    #[error("all {LEASES_PER_ROW} leases are held; drop a frame first")]
    TooManyLeases,
    /// The publisher broke the protocol (e.g. a bad re-WELCOME after
    /// STREAM_CHANGED); the connection is failed, later calls deliver what
    /// is left, then `Disconnected`.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// This subscriber did not ask for frames (`SubscribeOptions::frames`).
    #[error("this subscriber did not subscribe to frames")]
    NotSubscribed,
}

/// Subscriber counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Frames handed out.
    pub received: u64,
    /// Frames skipped (NewestOnly) or lost (InOrder gaps).
    pub dropped: u64,
    /// Frames whose lease the publisher revoked before release.
    pub revoked: u64,
    /// Successful automatic reconnections ([`SubscribeOptions::reconnect`]).
    pub reconnects: u64,
    /// Stream changes delivered: switches to a new ring generation, and
    /// reconnects to a publisher with a different stream description.
    pub stream_changes: u64,
    /// Times a blocked `next_frame` saw the commit while spinning
    /// ([`WaitStrategy`]) rather than after a futex wake-up: how often the
    /// spin paid off.
    pub spin_hits: u64,
}
