//! The Linux runtime (feature `std`): sockets, memfds, futexes, and the
//! publisher and subscriber engines on top of the protocol.

pub mod backend;
pub mod channel;
pub mod clock;
pub mod dir;
pub mod futex;
pub mod host;
mod peer;
pub mod publisher;
pub mod shm;
pub mod subscriber;
pub mod wait;

pub use backend::{
    Api, Backend, BackendError, BackendErrorKind, BackendFailure, Exporter, Importer, Peer,
    SlotExport,
};
pub use host::{HostBackend, HostError, HostImported, HostSlot};
pub use publisher::{
    ChangeError, CreateError, HeldLease, LeaseClock, LeaseScan, PacketError, PacketRingConfig,
    PeerName, PublishError, Published, Publisher, PublisherConfig, PublisherStats, SlotGuard,
};
pub use subscriber::{
    CodecParams, ConnectError, EndReason, Frame, Offer, OwnedFrame, Packet, PacketRecvError,
    PacketStats, PendingRelease, PublisherUids, Reconnect, RecvError, SubscribeOptions, Subscriber,
    SubscriberStats, Welcomed,
};
pub use wait::WaitStrategy;
