//! The subscriber engine (`docs/protocol.md` §5, §6).
//!
//! [`Subscriber::connect`] sends HELLO with a fresh lease-row memfd, checks
//! WELCOME, maps the publisher's control region read-only, validates it and
//! imports the slots through the backend. [`Subscriber::next_frame`] leases
//! the next frame for its delivery mode and returns a [`Frame`] guard whose
//! drop releases the lease.
//!
//! A publisher may change its stream mid-connection (STREAM_CHANGED, then a
//! WELCOME for a new ring, §6): the subscriber imports the new ring through
//! the same checks as at connect, keeps delivering the old ring's frames
//! until the publisher closes it, then moves on; the first frame of the new
//! ring says so ([`Frame::stream_changed`]). With
//! [`SubscribeOptions::reconnect`] a subscriber whose publisher vanished
//! (crash, or GOODBYE Shutdown) connects again to the same key.
//!
//! Connecting has two phases the caller can see (`docs/protocol.md` §6):
//! [`Welcomed::handshake`] connects, says HELLO and checks WELCOME and the
//! control region — what the publisher offers ([`Offer`]: memory kind,
//! sync kind, GPU, stream) is then known, and nothing is imported yet;
//! [`Welcomed::import`] imports the slots with a backend chosen from that
//! offer. [`Subscriber::connect`] does both with a backend chosen up front.
//! An "auto" choice (the `cuframes` facade's `Backend::Auto`) is therefore
//! one connection, never a probe that connects twice.
//!
//! Files, each importing only downward: [`options`] and [`error`] (plain
//! types); `leases` (the lease row and book) → `ring` (one imported ring
//! generation) → `frame` (the guards) ; `connect` (both phases) → `engine`
//! (the [`Subscriber`] and its accessors) → `frames`, `packets`, `socket`,
//! `reconnect` (its behaviour, each an `impl` block of its own).

mod connect;
mod engine;
pub mod error;
mod frame;
mod frames;
mod leases;
pub mod options;
mod packet_ring;
mod packets;
mod reconnect;
mod ring;
mod socket;

pub use connect::{Offer, Welcomed};
pub use engine::Subscriber;
pub use error::{ConnectError, EndReason, RecvError, SubscriberStats};
pub use frame::{Frame, OwnedFrame};
pub use leases::PendingRelease;
pub use options::{PublisherUids, Reconnect, SubscribeOptions};
pub use packet_ring::{CodecParams, Packet, PacketRecvError, PacketStats};
