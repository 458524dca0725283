//! The one place core takes its atomics from.
//!
//! Normal builds use `core::sync::atomic`; `RUSTFLAGS="--cfg cuframes_loom"`
//! swaps in loom's model-checked atomics. Everything in this crate that touches
//! shared memory goes through this module (clippy's `disallowed-types` keeps
//! direct `core::sync::atomic` uses out).
#![allow(clippy::disallowed_types)]

#[cfg(cuframes_loom)]
pub use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(cuframes_loom))]
pub use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
