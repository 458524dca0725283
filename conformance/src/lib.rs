//! cuframes-conformance: the black-box conformance suite of the cuframes
//! protocol (`docs/protocol.md`), and its golden vectors.
//!
//! - [`publisher_check`]: `check-publisher` connects to a live publisher as
//!   many subscribers with varied (and hostile) behaviour, speaking the wire
//!   protocol itself, and checks its answers and its shared memory.
//! - [`subscriber_check`]: `check-subscriber` serves a subscriber command as
//!   a publisher of synthetic frames ([`harness`]) and watches its lease row.
//! - [`report`]: the results as a table, JSON and JUnit XML.
//!
//! Each case has a stable id, a one-line description and the section of
//! `docs/protocol.md` it checks; a run yields one [`Outcome`] per case.
//! The implementation under test is hostile input: nothing it sends or
//! writes may make the suite panic.
#![deny(unsafe_code)]

pub mod harness;
pub mod publisher_check;
pub mod report;
pub mod subscriber_check;
pub mod vectors;

pub use report::{CaseResult, Report};

/// One conformance case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// Stable id, e.g. `"PUB-HANDSHAKE-001"`.
    pub id: &'static str,
    /// One line saying what is checked.
    pub description: &'static str,
    /// The `docs/protocol.md` section it checks, e.g. `"§4.3"`.
    pub section: &'static str,
}

/// Result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The implementation behaved as specified.
    Pass,
    /// It did not; the text says how.
    Fail(String),
    /// The case does not apply (e.g. no packet ring offered).
    Skip(String),
}

impl Outcome {
    /// `Pass` if `ok`, else `Fail(why())`.
    pub fn check(ok: bool, why: impl FnOnce() -> String) -> Self {
        if ok {
            Outcome::Pass
        } else {
            Outcome::Fail(why())
        }
    }

    /// Whether this is a failure.
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
}

/// Every case of both checks, in report order.
pub fn all_cases() -> Vec<Case> {
    let mut v = publisher_check::CASES.to_vec();
    v.extend_from_slice(subscriber_check::CASES);
    v
}

/// Word indices (byte offset / 8) of the shared-memory fields the suite
/// reads, taken from `docs/protocol.md` §3.2, §3.4 and §3.5.
pub(crate) mod word {
    /// Lease row: `magic` (byte 0).
    pub const ROW_MAGIC: usize = 0;
    /// Lease row: `leases[0]` (byte 8).
    pub const ROW_LEASES: usize = 1;
    /// Lease row: `consumed_seq` (byte 40).
    pub const ROW_CONSUMED: usize = 5;
    /// Header: `latest_seq` (byte 96).
    pub const LATEST_SEQ: usize = 12;
    /// Header: `frames_published` (byte 120).
    pub const FRAMES_PUBLISHED: usize = 15;
    /// Slot descriptor: `seq` (byte 0).
    pub const SLOT_SEQ: usize = 0;
    /// Slot descriptor: `flags` (byte 24).
    pub const SLOT_FLAGS: usize = 3;
    /// Slot descriptor: `generation` (byte 32).
    pub const SLOT_GENERATION: usize = 4;
}
