//! `CLOCK_MONOTONIC` in ns: the clock of `publish_ns`, shared by all processes
//! of a host (outside time namespaces).

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A `Duration` as the `Timespec` of poll(2) and futex(2) timeouts
/// (seconds saturate at `i64::MAX`).
pub(crate) fn timespec(d: std::time::Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    }
}
