//! libcuframes: the C ABI of cuframes (`include/cuframes/cuframes.h`, made
//! from this crate by cbindgen; `include/cuframes/cuframes.hpp` wraps it
//! for C++17). Guide: `docs/c-api.md`.
//!
//! Layout of the crate:
//! - [`types`]: the C structs, enums and constants;
//! - [`error`]: result codes, their texts, the thread-local last error;
//! - [`registry`]: handles as registry ids (stale and NULL handles are
//!   errors, not crashes);
//! - [`subscriber`], [`publisher`]: the objects behind the handles (safe
//!   Rust over the `cuframes` facade, imported as `cuframes_facade`: it
//!   connects, chooses the backend, holds the legacy-IPC opt-in and the
//!   option defaults; this crate converts C arguments and results);
//! - [`ffi`]: the `extern "C"` functions, the crate's only unsafe code
//!   (pointer reads and writes), each body behind `catch_unwind` so that no
//!   panic crosses the boundary.
#![deny(unsafe_code)]

pub mod error;
pub mod ffi;
pub mod publisher;
pub mod registry;
pub mod subscriber;
pub mod types;
