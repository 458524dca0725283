//! Reconnect delays: capped exponential backoff.

use std::time::Duration;

/// Capped exponential backoff between reconnect attempts to a camera: the
/// first retry after [`Backoff::initial`], each next one after twice the
/// previous delay, never more than [`Backoff::max`]. A source that delivered
/// frames again starts over at `initial` ([`Backoff::reset`]).
///
/// The defaults (1 s doubling to 30 s) retry a camera that dropped for a
/// moment within a second, and one that is down for good about twice a
/// minute — close to what NVRs do (go2rtc: 1 s ×5, 5 s ×5, 10 s ×10, then
/// 60 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay between retries.
    pub max: Duration,
    next: Duration,
    attempts: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A schedule from `initial` doubling to `max` (`max` is raised to
    /// `initial` if smaller).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            attempts: 0,
        }
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.attempts += 1;
        d
    }

    /// Attempts since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Starts the schedule over (the source works again).
    pub fn reset(&mut self) {
        self.next = self.initial;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(b.attempts(), 5);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn a_cap_below_the_first_delay_is_raised() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }
}
