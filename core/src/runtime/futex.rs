//! Futex wake-ups on shared words (futex(2), shared — not PRIVATE — since the
//! waiters live in other processes).

use crate::sync::AtomicU32;
use rustix::thread::futex;
use std::prelude::rust_2021::*;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout`. Spurious returns,
/// `EAGAIN` (value already changed), `EINTR` and `ETIMEDOUT` all just return:
/// callers re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = super::clock::timespec(timeout);
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
}

/// Wakes every waiter on `word`. Works on read-only mappings (FUTEX_WAKE
/// needs no write access).
pub fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}
