//! The frame ring over shared words (`docs/protocol.md` §5).
//!
//! The ring logic works on slices of atomic words, never on raw memory, so the
//! same code runs over a `mmap`ed control region and over loom's model-checked
//! atomics. [`RingWriter`] is the publisher's half, [`RingReader`] a
//! subscriber's.
//!
//! The lease handshake (a Dekker pair: SeqCst accesses and a SeqCst fence
//! between each side's store and load, `docs/protocol.md` §5.2):
//! - publisher: `slot.seq := WRITING | old`, fence, then load every lease
//!   entry; if one equals `old`, restore `slot.seq := old` and try another slot;
//! - subscriber: `lease := s`, fence, then load `slot.seq`; if it is not `s`,
//!   clear the lease and retry.
//!
//! At least one side sees the other's store, so a slot is never rewritten
//! while a lease on its frame is held (unless the publisher revoked the lease
//! after `lease_timeout`, which the reader detects with [`RingReader::still_valid`]).

mod meta;
mod reader;
mod words;
mod writer;

pub use meta::FrameMeta;
pub use reader::{Acquire, Cursor, Lease, RingReader, PROBE_SPINS};
pub use words::{ControlWords, LeaseWords, WordsError};
pub use writer::{Claim, ReaderRef, RingWriter, SlotClaim};
