//! Sans-IO control-plane state machines (`docs/protocol.md` §6).
//!
//! No sockets, clocks or allocation: feed every received message to
//! `handle`, act on the returned event, then send everything `poll_transmit`
//! yields, in order. File descriptors travel beside the bytes and are the
//! runtime's business.

mod outgoing;
mod publisher;
mod subscriber;

pub use outgoing::{Outgoing, TextBuf};
pub use publisher::{PublisherEvent, PublisherHandshake, PublisherState};
pub use subscriber::{SubscriberEvent, SubscriberHandshake, SubscriberState};

use crate::wire::MessageType;

/// A message the state machine cannot accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A message that is not allowed in the current state.
    #[error("{kind:?} is not allowed while {state}")]
    Unexpected {
        /// What arrived.
        kind: MessageType,
        /// The state, in words.
        state: &'static str,
    },
    /// WELCOME is inconsistent with HELLO or with itself.
    #[error("WELCOME rejected: {0}")]
    BadWelcome(&'static str),
    /// The connection is already closed or failed.
    #[error("the connection is closed")]
    Closed,
}

#[cfg(test)]
mod tests;
