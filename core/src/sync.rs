//! The one place core takes its atomics from.
//!
//! Normal builds use `core::sync::atomic`; `RUSTFLAGS="--cfg cuframes_loom"`
//! swaps in loom's model-checked atomics. Everything in this crate that touches
//! shared memory goes through this module: the workspace `clippy.toml` bans
//! the integer atomics and `fence` of `core`/`std` everywhere else
//! (`disallowed-types`, `disallowed-methods`). The names below are aliases,
//! not re-exports, so that a use of `crate::sync::AtomicU64` resolves to this
//! module and is allowed while `core::sync::atomic::AtomicU64` is flagged.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(cuframes_loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(not(cuframes_loom))]
pub use core::sync::atomic::Ordering;

/// A 64-bit shared-memory word (`core::sync::atomic::AtomicU64`).
#[cfg(not(cuframes_loom))]
pub type AtomicU64 = core::sync::atomic::AtomicU64;

/// A 32-bit futex word (`core::sync::atomic::AtomicU32`).
#[cfg(not(cuframes_loom))]
pub type AtomicU32 = core::sync::atomic::AtomicU32;

/// A memory fence (`core::sync::atomic::fence`).
#[cfg(not(cuframes_loom))]
#[inline(always)]
pub fn fence(order: Ordering) {
    core::sync::atomic::fence(order)
}

/// One turn of a bounded spin-wait: a CPU spin hint, or under loom a yield so
/// the model checker runs the thread being waited for.
#[inline(always)]
pub fn spin_hint() {
    #[cfg(cuframes_loom)]
    loom::thread::yield_now();
    #[cfg(not(cuframes_loom))]
    core::hint::spin_loop();
}
