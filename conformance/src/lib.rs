//! cuframes-conformance (skeleton): the vocabulary of the black-box suite.
//!
//! The suite (a later issue) connects to a publisher, or serves a subscriber,
//! and runs named cases against `docs/protocol.md`. Each case has an id, a
//! one-line description and the section it checks; a run yields one
//! [`Outcome`] per case.
#![deny(unsafe_code)]

pub mod vectors;

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
