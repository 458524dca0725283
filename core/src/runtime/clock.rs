//! `CLOCK_MONOTONIC` in ns: the clock of `publish_ns`, shared by all processes
//! of a host (outside time namespaces).

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
