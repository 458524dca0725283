//! The publisher side, one machine per connection.

use super::outgoing::{Outgoing, Queue, TextBuf};
use super::HandshakeError;
use crate::version::Version;
use crate::wire::{
    ErrorCode, GoodbyeReason, Hello, Message, HELLO_WANTS_FRAMES, HELLO_WANTS_PACKETS,
};
use crate::DeliveryMode;
use core::fmt::Write;

/// Where one subscriber connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherState {
    /// Waiting for HELLO.
    AwaitHello,
    /// HELLO accepted at this version (WELCOME is the runtime's to send).
    Established(Version),
    /// GOODBYE received.
    Closed,
    /// An ERROR is queued; close after sending it.
    Failed,
}

/// What a received message means to the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublisherEvent {
    /// HELLO accepted at `version`: set up the subscriber and send WELCOME,
    /// or call [`PublisherHandshake::reject`].
    Accepted {
        /// The HELLO.
        hello: Hello,
        /// Negotiated version.
        version: Version,
    },
    /// The message was refused: send what `poll_transmit` yields, then close.
    Refused,
    /// The subscriber completed an asynchronous release of frame `seq`.
    Release(u64),
    /// The subscriber said goodbye: reclaim everything it held.
    Goodbye(GoodbyeReason),
    /// A PONG with this nonce.
    Pong(u64),
    /// Nothing for the caller.
    Nothing,
}

/// The publisher's state machine for one connection.
#[derive(Debug, Clone, Copy)]
pub struct PublisherHandshake {
    state: PublisherState,
    ours: Version,
    queue: Queue,
}

impl PublisherHandshake {
    /// A machine for a new connection of a publisher speaking `ours`.
    pub fn new(ours: Version) -> Self {
        PublisherHandshake {
            state: PublisherState::AwaitHello,
            ours,
            queue: Queue::default(),
        }
    }

    /// Current state.
    pub fn state(&self) -> PublisherState {
        self.state
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.queue.pop()
    }

    /// Refuses the subscriber with `code` and `text` (queued ERROR; state Failed).
    pub fn reject(&mut self, code: ErrorCode, text: core::fmt::Arguments<'_>) {
        let mut t = TextBuf::new();
        let _ = t.write_fmt(text);
        self.queue.push(Outgoing::Error { code, text: t });
        self.state = PublisherState::Failed;
    }

    /// Queues a PING.
    pub fn ping(&mut self, nonce: u64) {
        self.queue.push(Outgoing::Plain(Message::Ping(nonce)));
    }

    /// Feeds one received message. `Err` means the peer broke the protocol; an
    /// ERROR is queued in that case too.
    pub fn handle(&mut self, msg: Message<'_>) -> Result<PublisherEvent, HandshakeError> {
        match (self.state, msg) {
            (PublisherState::Closed | PublisherState::Failed, _) => Err(HandshakeError::Closed),
            (_, Message::Unknown { .. }) => Ok(PublisherEvent::Nothing),
            (PublisherState::AwaitHello, Message::Hello(h)) => Ok(self.on_hello(h)),
            (PublisherState::Established(_), Message::Ping(n)) => {
                self.queue.push(Outgoing::Plain(Message::Pong(n)));
                Ok(PublisherEvent::Nothing)
            }
            (PublisherState::Established(_), Message::Pong(n)) => Ok(PublisherEvent::Pong(n)),
            (PublisherState::Established(_), Message::Release(s)) => Ok(PublisherEvent::Release(s)),
            (_, Message::Error(_)) => {
                self.state = PublisherState::Closed;
                Ok(PublisherEvent::Goodbye(GoodbyeReason::Normal))
            }
            (_, Message::Goodbye(r)) => {
                self.state = PublisherState::Closed;
                Ok(PublisherEvent::Goodbye(r))
            }
            (state, m) => {
                let state = if state == PublisherState::AwaitHello {
                    "waiting for HELLO"
                } else {
                    "established"
                };
                self.reject(
                    ErrorCode::BadMessage,
                    format_args!("{:?} is not allowed while {state}", m.kind()),
                );
                Err(HandshakeError::Unexpected {
                    kind: m.kind(),
                    state,
                })
            }
        }
    }

    fn on_hello(&mut self, h: Hello) -> PublisherEvent {
        let Some(version) = Version::negotiate(self.ours, h.version_min, h.version_max) else {
            let ours = self.ours;
            self.reject(
                ErrorCode::VersionMismatch,
                format_args!(
                    "publisher speaks protocol {ours}, subscriber offered {}..={}",
                    h.version_min, h.version_max
                ),
            );
            return PublisherEvent::Refused;
        };
        if h.flags & (HELLO_WANTS_FRAMES | HELLO_WANTS_PACKETS) == 0 {
            self.reject(
                ErrorCode::Unsupported,
                format_args!("HELLO asks for neither frames nor packets"),
            );
            return PublisherEvent::Refused;
        }
        if h.flags & HELLO_WANTS_FRAMES != 0 {
            if let DeliveryMode::Unknown(c) = h.mode {
                self.reject(
                    ErrorCode::Unsupported,
                    format_args!("unknown delivery mode {c}"),
                );
                return PublisherEvent::Refused;
            }
        }
        self.state = PublisherState::Established(version);
        PublisherEvent::Accepted { hello: h, version }
    }
}
