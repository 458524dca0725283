//! The Linux runtime (feature `std`): sockets, memfds, futexes, and the
//! publisher and subscriber engines on top of the protocol.

pub mod backend;
pub mod channel;
pub mod clock;
pub mod dir;
mod frame;
pub mod futex;
pub mod host;
mod leases;
pub mod packets;
mod peer;
pub mod publisher;
pub mod shm;
pub mod subscriber;
pub mod wait;

pub use backend::{Backend, Peer, SlotExport};
pub use frame::{Frame, OwnedFrame};
pub use host::{HostBackend, HostError, HostImported, HostSlot};
pub use leases::PendingRelease;
pub use packets::{CodecParams, Packet, PacketRecvError, PacketStats};
pub use publisher::{
    ChangeError, CreateError, HeldLease, LeaseClock, LeaseScan, PacketError, PacketRingConfig,
    PeerName, PublishError, Published, Publisher, PublisherConfig, PublisherStats, SlotGuard,
};
pub use subscriber::{
    ConnectError, EndReason, PublisherUids, Reconnect, RecvError, SubscribeOptions, Subscriber,
    SubscriberStats,
};
pub use wait::WaitStrategy;
