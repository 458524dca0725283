//! cuframes-core: the cuframes protocol.
//!
//! Zero-copy sharing of decoded video frames between processes: one publisher
//! per stream writes frames into slots of a ring it owns, any number of
//! subscribers lease them in place. This crate is the protocol, normative in
//! `docs/protocol.md`:
//!
//! - [`layout`]: `#[repr(C)]` shared-memory structures (control header, stream
//!   description, slot table, lease rows) with size/offset assertions;
//! - [`wire`]: TLV control messages encoded into and decoded from caller buffers;
//! - [`handshake`]: sans-IO state machines for both ends of a connection;
//! - [`ring`]: the lease protocol and delivery modes over atomic words;
//! - [`backoff`]: the retry schedule (capped exponential backoff, optional
//!   give-up), with time as a parameter.
//!
//! Without the `std` feature the crate is `#![no_std]` and never allocates.
//! With `std` (default), [`runtime`] adds the Linux runtime on rustix: the Unix
//! socket control plane, memfd regions passed with SCM_RIGHTS, futex
//! wake-ups, the [`runtime::Publisher`] and [`runtime::Subscriber`] engines
//! generic over a [`runtime::Backend`], and the host-memory backend.
//!
//! Contract for untrusted input: everything read from a socket or from a
//! mapping another process can write is validated before use; no decoder or
//! validator panics on any input.
//!
//! Memory model of shared frames: a subscriber reads frame bytes in memory
//! the publisher owns and may write. The lease protocol (`docs/protocol.md`
//! §5.2) keeps the publisher off a leased slot, but a lease held too long is
//! revoked and the slot may then be rewritten while the subscriber reads it.
//! Data read from a frame whose `Frame::is_valid()` / `Frame::release()`
//! reports the lease revoked may be **torn** (a mix of frames) and must be
//! discarded; reading it is never a memory error (every byte value is
//! valid, mappings stay in place and cannot shrink). References to frame
//! data borrow from the frame guard, so none outlives its lease. With the
//! `std` runtime, a safe `Subscriber::connect` never imports memory on the
//! publisher's word alone: backends validate what they import or need an
//! explicit `unsafe` opt-in (legacy CUDA IPC in `cuframes-cuda`).
#![no_std]
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
#[macro_use]
extern crate std;

pub mod backoff;
pub mod format;
pub mod handshake;
pub mod key;
pub mod kinds;
pub mod layout;
pub mod packet;
pub mod ring;
pub mod sync;
pub mod version;
pub mod wire;

#[cfg(all(feature = "std", target_os = "linux", not(cuframes_loom)))]
pub mod runtime;

pub use format::{Codec, PixelFormat};
pub use key::{KeyError, StreamKey};
pub use kinds::{DeliveryMode, MemoryKind, PublishPolicy, SyncKind, GPU_ALLOCATION_ALIGN};
pub use version::{Version, PROTOCOL_VERSION};
