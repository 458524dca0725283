//! `CLOCK_MONOTONIC` in ns: the clock of `publish_ns`, shared by all processes
//! of a host (outside time namespaces).

/// Nanoseconds of `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// `now + d`, or ~34 years after `now` when `d` is past what `Instant` can
/// hold: a caller's `Duration::MAX` timeout (Python, C, config) means
/// "forever", never an overflow panic.
pub(crate) fn deadline_from(now: std::time::Instant, d: std::time::Duration) -> std::time::Instant {
    crate::backoff::Timestamp::saturating_add(now, d)
}

/// [`deadline_from`] the present.
pub(crate) fn deadline_after(d: std::time::Duration) -> std::time::Instant {
    deadline_from(std::time::Instant::now(), d)
}

/// A `Duration` as the `Timespec` of poll(2) and futex(2) timeouts
/// (seconds saturate at `i64::MAX`).
pub(crate) fn timespec(d: std::time::Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::INSTANT_FOREVER as FOREVER;
    use std::time::{Duration, Instant};

    #[test]
    fn a_timeout_too_long_for_instant_is_forever_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            deadline_from(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = deadline_from(now, Duration::MAX);
        assert_eq!(far, now + FOREVER);
        assert!(deadline_after(Duration::from_secs(u64::MAX)) > now + Duration::from_secs(1 << 29));
    }
}
