//! The subscriber side: HELLO → WELCOME | ERROR, then liveness and notices.

use super::outgoing::{Outgoing, Queue};
use super::HandshakeError;
use crate::layout::{MAX_SLOTS, MIN_SLOTS};
use crate::version::Version;
use crate::wire::{ErrorMsg, GoodbyeReason, Hello, Message, Welcome};

/// Where the subscriber's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberState {
    /// HELLO not sent yet.
    Start,
    /// HELLO sent; waiting for WELCOME or ERROR.
    AwaitWelcome,
    /// WELCOME accepted at this version.
    Established(Version),
    /// STREAM_CHANGED received while established at this version: the next
    /// WELCOME describes the new ring (`docs/protocol.md` §6). The old ring
    /// stays readable meanwhile.
    AwaitRewelcome(Version),
    /// GOODBYE sent or received.
    Closed,
    /// Rejected or broken.
    Failed,
}

/// What a received message means to the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberEvent<'a> {
    /// Accepted: map the ring from this WELCOME and the fds that came with it
    /// (the first WELCOME, or the re-WELCOME after STREAM_CHANGED).
    Welcomed(Welcome<'a>),
    /// The publisher refused or reported a fatal error.
    Rejected(ErrorMsg<'a>),
    /// The stream description changed to this generation: a WELCOME for the
    /// new ring follows on the same connection.
    StreamChanged(u64),
    /// The publisher said goodbye.
    Goodbye(GoodbyeReason),
    /// A PONG arrived with this nonce.
    Pong(u64),
    /// Nothing for the caller (PING answered, unknown type skipped).
    Nothing,
}

/// The subscriber's state machine.
#[derive(Debug, Clone, Copy)]
pub struct SubscriberHandshake {
    state: SubscriberState,
    hello: Hello,
    queue: Queue,
}

impl SubscriberHandshake {
    /// A machine that will send `hello` first.
    pub fn new(hello: Hello) -> Self {
        let mut queue = Queue::default();
        queue.push(Outgoing::Plain(Message::Hello(hello)));
        SubscriberHandshake {
            state: SubscriberState::Start,
            hello,
            queue,
        }
    }

    /// Current state.
    pub fn state(&self) -> SubscriberState {
        self.state
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        let o = self.queue.pop()?;
        if self.state == SubscriberState::Start {
            self.state = SubscriberState::AwaitWelcome;
        }
        Some(o)
    }

    /// Queues GOODBYE and closes.
    pub fn close(&mut self) {
        if matches!(
            self.state,
            SubscriberState::Established(_) | SubscriberState::AwaitRewelcome(_)
        ) {
            self.queue
                .push(Outgoing::Plain(Message::Goodbye(GoodbyeReason::Normal)));
        }
        self.state = SubscriberState::Closed;
    }

    /// Feeds one received message.
    pub fn handle<'a>(&mut self, msg: Message<'a>) -> Result<SubscriberEvent<'a>, HandshakeError> {
        let unexpected = |state: &'static str| HandshakeError::Unexpected {
            kind: msg.kind(),
            state,
        };
        match (self.state, msg) {
            (SubscriberState::Closed | SubscriberState::Failed, _) => Err(HandshakeError::Closed),
            (_, Message::Unknown { .. }) => Ok(SubscriberEvent::Nothing),
            (_, Message::Error(e)) => {
                self.state = SubscriberState::Failed;
                Ok(SubscriberEvent::Rejected(e))
            }
            (SubscriberState::Start, _) => {
                self.state = SubscriberState::Failed;
                Err(unexpected("HELLO is not sent yet"))
            }
            (SubscriberState::AwaitWelcome, Message::Welcome(w)) => match self.check_welcome(&w) {
                Ok(()) => {
                    self.state = SubscriberState::Established(w.version);
                    Ok(SubscriberEvent::Welcomed(w))
                }
                Err(e) => {
                    self.state = SubscriberState::Failed;
                    Err(e)
                }
            },
            (SubscriberState::AwaitWelcome, _) => {
                self.state = SubscriberState::Failed;
                Err(unexpected("waiting for WELCOME"))
            }
            (
                SubscriberState::Established(_) | SubscriberState::AwaitRewelcome(_),
                Message::Ping(n),
            ) => {
                self.queue.push(Outgoing::Plain(Message::Pong(n)));
                Ok(SubscriberEvent::Nothing)
            }
            (
                SubscriberState::Established(_) | SubscriberState::AwaitRewelcome(_),
                Message::Pong(n),
            ) => Ok(SubscriberEvent::Pong(n)),
            // A second STREAM_CHANGED before the WELCOME supersedes the first.
            (
                SubscriberState::Established(v) | SubscriberState::AwaitRewelcome(v),
                Message::StreamChanged(g),
            ) => {
                self.state = SubscriberState::AwaitRewelcome(v);
                Ok(SubscriberEvent::StreamChanged(g))
            }
            (
                SubscriberState::Established(_) | SubscriberState::AwaitRewelcome(_),
                Message::Goodbye(r),
            ) => {
                self.state = SubscriberState::Closed;
                Ok(SubscriberEvent::Goodbye(r))
            }
            (SubscriberState::AwaitRewelcome(v), Message::Welcome(w)) => {
                let checked = self.check_welcome(&w).and_then(|()| {
                    if w.version == v {
                        Ok(())
                    } else {
                        Err(HandshakeError::BadWelcome(
                            "re-WELCOME changes the negotiated version",
                        ))
                    }
                });
                match checked {
                    Ok(()) => {
                        self.state = SubscriberState::Established(v);
                        Ok(SubscriberEvent::Welcomed(w))
                    }
                    Err(e) => {
                        self.state = SubscriberState::Failed;
                        Err(e)
                    }
                }
            }
            (SubscriberState::AwaitRewelcome(_), _) => {
                self.state = SubscriberState::Failed;
                Err(unexpected("waiting for the WELCOME after STREAM_CHANGED"))
            }
            (SubscriberState::Established(_), _) => {
                self.state = SubscriberState::Failed;
                Err(unexpected("established"))
            }
        }
    }

    fn check_welcome(&self, w: &Welcome<'_>) -> Result<(), HandshakeError> {
        if w.version < self.hello.version_min || w.version > self.hello.version_max {
            return Err(HandshakeError::BadWelcome(
                "version outside the range HELLO offered",
            ));
        }
        if w.slot_count < MIN_SLOTS || w.slot_count > MAX_SLOTS {
            return Err(HandshakeError::BadWelcome("slot count outside 2..=64"));
        }
        // Unknown memory kinds are left to W4.
        if w.memory_kind
            .handle_len(w.sync_kind)
            .is_some_and(|n| n != w.handle_len)
        {
            return Err(HandshakeError::BadWelcome(
                "handle size does not fit the memory and sync kinds",
            ));
        }
        Ok(())
    }
}
