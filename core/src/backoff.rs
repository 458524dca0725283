//! Capped exponential backoff between retries (reconnects, a paused
//! `accept`), sans-IO in the quinn-proto style: time is always a parameter.
//! Nothing here reads a clock or sleeps; the caller passes `now` in and
//! waits itself until the instant it is given back.
//!
//! A [`Backoff`] is idle until something fails. An *episode* starts at the
//! first [`Backoff::on_failure`] (or at the first [`Backoff::poll`], for a
//! caller whose first retry is due at once); each failure schedules the next
//! attempt after a delay that starts at [`BackoffPolicy::initial`] and
//! doubles (saturating) up to [`BackoffPolicy::max`]. With
//! [`BackoffPolicy::give_up_after`], the first call at or after
//! `start + give_up_after` gives up, and every later call says so again,
//! until [`Backoff::on_success`] starts over.
//!
//! Call order: `poll(now)` (optional: when is the next attempt due, or give
//! up), attempt, then `on_success()` or `on_failure(now)` with the time the
//! attempt ended. Time is any [`Timestamp`]: `std::time::Instant` with the
//! `std` feature, or a `Duration` since an origin of the caller's choice
//! (tests, `no_std`).
//!
//! ```
//! use cuframes_core::backoff::{Backoff, BackoffPolicy, Next};
//! use core::time::Duration;
//!
//! let ms = Duration::from_millis;
//! let mut b = Backoff::new(BackoffPolicy::new(ms(50), ms(500)).give_up_after(ms(1_000)));
//! assert_eq!(b.on_failure(ms(0)), Next::RetryAt(ms(50)));
//! assert_eq!(b.on_failure(ms(50)), Next::RetryAt(ms(150)));
//! assert_eq!(b.on_failure(ms(150)), Next::RetryAt(ms(350)));
//! assert_eq!(b.on_failure(ms(350)), Next::RetryAt(ms(750)));
//! assert_eq!(b.on_failure(ms(750)), Next::RetryAt(ms(1_250)));
//! assert_eq!(b.poll(ms(1_250)), Next::GiveUp); // 1 s after the first failure
//! b.on_success();
//! assert_eq!(b.on_failure(ms(2_000)), Next::RetryAt(ms(2_050)));
//! ```

use core::time::Duration;

/// A point in time the backoff can compute with; no method panics.
pub trait Timestamp: Copy + Ord {
    /// `self + d`, or the latest instant the type can represent (for
    /// `Instant`: about 34 years after `self`) when that overflows.
    fn saturating_add(self, d: Duration) -> Self;

    /// `self − earlier`, or zero when `earlier` is later.
    fn saturating_duration_since(self, earlier: Self) -> Duration;
}

/// Time as a `Duration` since an origin the caller chose.
impl Timestamp for Duration {
    fn saturating_add(self, d: Duration) -> Self {
        Duration::saturating_add(self, d)
    }

    fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.saturating_sub(earlier)
    }
}

/// How far ahead an `Instant` is put when `now + d` does not fit: 2^30 s
/// (~34 years), which any `Instant` of a running system can hold.
#[cfg(feature = "std")]
pub(crate) const INSTANT_FOREVER: Duration = Duration::from_secs(1 << 30);

#[cfg(feature = "std")]
impl Timestamp for std::time::Instant {
    fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d)
            .or_else(|| self.checked_add(INSTANT_FOREVER))
            .unwrap_or(self)
    }

    fn saturating_duration_since(self, earlier: Self) -> Duration {
        std::time::Instant::saturating_duration_since(&self, earlier)
    }
}

/// The schedule of a [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay after the first failure of an episode.
    pub initial: Duration,
    /// Longest delay; each failure doubles the previous delay up to it. A
    /// `max` below `initial` counts as `initial`.
    pub max: Duration,
    /// Give up when no attempt succeeded this long after the episode
    /// started; `None`: never.
    pub give_up_after: Option<Duration>,
}

impl BackoffPolicy {
    /// `initial` doubling up to `max`, never giving up.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        BackoffPolicy {
            initial,
            max,
            give_up_after: None,
        }
    }

    /// The same schedule, giving up `budget` after an episode started.
    pub const fn give_up_after(self, budget: Duration) -> Self {
        BackoffPolicy {
            give_up_after: Some(budget),
            ..self
        }
    }

    /// The delay after the `n`-th failure of an episode (`n ≥ 1`; 0 is
    /// taken as 1): `min(initial · 2^(n−1), max)`, saturating.
    pub fn delay(&self, n: u64) -> Duration {
        let max = self.max_delay();
        let mut d = self.initial.min(max);
        // At most ~95 doublings take 1 ns past `Duration::MAX`.
        for _ in 1..n {
            if d >= max || d.is_zero() {
                break;
            }
            d = d.saturating_mul(2).min(max);
        }
        d
    }

    fn max_delay(&self) -> Duration {
        self.max.max(self.initial)
    }
}

/// What to do after a failure or a [`Backoff::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<I> {
    /// Attempt again at this instant (at once if it is not after `now`).
    RetryAt(I),
    /// The budget ([`BackoffPolicy::give_up_after`]) is spent: stop.
    GiveUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State<I> {
    /// No failure since the start or the last success.
    Idle,
    /// An episode of failures.
    Failing {
        /// When the episode started (the give-up budget counts from here).
        since: I,
        /// When the next attempt is due.
        next_try: I,
        /// The delay the next failure schedules.
        delay: Duration,
        /// Failures in this episode.
        failures: u64,
    },
    /// The budget was spent.
    GaveUp {
        /// Failures in the episode.
        failures: u64,
    },
}

/// Capped exponential backoff with an optional give-up time (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff<I> {
    policy: BackoffPolicy,
    state: State<I>,
}

impl<I: Timestamp> Backoff<I> {
    /// An idle backoff following `policy`.
    pub const fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            state: State::Idle,
        }
    }

    /// The schedule.
    pub const fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Records an attempt that failed at `now` and schedules the next:
    /// `RetryAt(now + delay)`, the delay doubling from
    /// [`BackoffPolicy::initial`] to [`BackoffPolicy::max`]; or `GiveUp`
    /// when `now` is at least `give_up_after` past the episode's start (the
    /// first failure, or the first [`Backoff::poll`]), and after that.
    pub fn on_failure(&mut self, now: I) -> Next<I> {
        let (since, delay, failures) = match self.state {
            State::Idle => (now, self.policy.initial, 0),
            State::Failing {
                since,
                delay,
                failures,
                ..
            } => (since, delay, failures),
            State::GaveUp { .. } => return Next::GiveUp,
        };
        let failures = failures.saturating_add(1);
        if self.spent(since, now) {
            self.state = State::GaveUp { failures };
            return Next::GiveUp;
        }
        let delay = delay.min(self.policy.max_delay());
        let next_try = now.saturating_add(delay);
        self.state = State::Failing {
            since,
            next_try,
            delay: delay.saturating_mul(2).min(self.policy.max_delay()),
            failures,
        };
        Next::RetryAt(next_try)
    }

    /// Records a success: back to idle, the next failure starts a new
    /// episode at [`BackoffPolicy::initial`].
    pub fn on_success(&mut self) {
        self.state = State::Idle;
    }

    /// Where the episode stands at `now`: `RetryAt(t)` (attempt at `t`, at
    /// once if `t ≤ now`) or `GiveUp` once `now` is `give_up_after` past
    /// the episode's start. When idle, starts an episode at `now` whose
    /// first attempt is due at once (for a caller that retries the first
    /// time without waiting, and counts its budget from when it noticed the
    /// loss).
    pub fn poll(&mut self, now: I) -> Next<I> {
        match self.state {
            State::Idle => {
                self.state = State::Failing {
                    since: now,
                    next_try: now,
                    delay: self.policy.initial,
                    failures: 0,
                };
                if self.spent(now, now) {
                    self.state = State::GaveUp { failures: 0 };
                    return Next::GiveUp;
                }
                Next::RetryAt(now)
            }
            State::Failing {
                since,
                next_try,
                failures,
                ..
            } => {
                if self.spent(since, now) {
                    self.state = State::GaveUp { failures };
                    Next::GiveUp
                } else {
                    Next::RetryAt(next_try)
                }
            }
            State::GaveUp { .. } => Next::GiveUp,
        }
    }

    /// When the next attempt is due; `None` when idle (no failure since the
    /// last success: attempt at will) or given up.
    pub fn next_try(&self) -> Option<I> {
        match self.state {
            State::Failing { next_try, .. } => Some(next_try),
            _ => None,
        }
    }

    /// Failures since the last success (saturating).
    pub fn failures(&self) -> u64 {
        match self.state {
            State::Idle => 0,
            State::Failing { failures, .. } | State::GaveUp { failures } => failures,
        }
    }

    /// Whether the budget is spent (until [`Backoff::on_success`]).
    pub fn has_given_up(&self) -> bool {
        matches!(self.state, State::GaveUp { .. })
    }

    /// Whether no failure happened since the start or the last success.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    fn spent(&self, since: I, now: I) -> bool {
        self.policy
            .give_up_after
            .is_some_and(|g| now.saturating_duration_since(since) >= g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::prelude::rust_2021::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_four_schedules_of_the_workspace() {
        // Subscriber reconnect: first attempt at once, 50 ms doubling to 500 ms.
        let mut b = Backoff::new(BackoffPolicy::new(ms(50), ms(500)));
        assert_eq!(b.poll(ms(7)), Next::RetryAt(ms(7)));
        let mut now = ms(7);
        let mut delays = Vec::new();
        for _ in 0..6 {
            let Next::RetryAt(t) = b.on_failure(now) else {
                core::panic!("gave up without a budget")
            };
            delays.push((t - now).as_millis());
            now = t;
        }
        assert_eq!(delays, [50, 100, 200, 400, 500, 500]);
        // Camera service: 1 s doubling to 30 s.
        let p = BackoffPolicy::new(ms(1_000), ms(30_000));
        let d: Vec<u128> = (1..=7).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(d, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        // accept(2) pause: 50 ms doubling to 1 s.
        let p = BackoffPolicy::new(ms(50), ms(1_000));
        assert_eq!(p.delay(5), ms(800));
        assert_eq!(p.delay(6), ms(1_000));
    }

    #[test]
    fn a_budget_counts_from_the_first_poll_and_is_checked_while_waiting() {
        let mut b = Backoff::new(BackoffPolicy::new(ms(50), ms(500)).give_up_after(ms(300)));
        assert_eq!(b.poll(ms(100)), Next::RetryAt(ms(100)));
        assert_eq!(b.on_failure(ms(110)), Next::RetryAt(ms(160)));
        assert_eq!(b.poll(ms(399)), Next::RetryAt(ms(160)));
        assert!(!b.has_given_up());
        assert_eq!(b.poll(ms(400)), Next::GiveUp);
        assert!(b.has_given_up());
        assert_eq!(b.on_failure(ms(401)), Next::GiveUp);
        assert_eq!(b.next_try(), None);
        assert_eq!(b.failures(), 1);
        b.on_success();
        assert!(b.is_idle());
        assert_eq!(b.on_failure(ms(1_000)), Next::RetryAt(ms(1_050)));
    }

    #[test]
    fn huge_values_saturate_instead_of_panicking() {
        let mut b = Backoff::new(BackoffPolicy::new(Duration::MAX, Duration::MAX));
        assert_eq!(b.on_failure(ms(5)), Next::RetryAt(Duration::MAX));
        assert_eq!(b.on_failure(Duration::MAX), Next::RetryAt(Duration::MAX));
        let p = BackoffPolicy::new(ms(1), Duration::MAX);
        assert_eq!(p.delay(u64::MAX), Duration::MAX);
        assert_eq!(p.delay(0), ms(1));
        assert_eq!(BackoffPolicy::new(ms(0), ms(10)).delay(100), ms(0));
        // A cap below the first delay is raised to it.
        let mut b = Backoff::new(BackoffPolicy::new(ms(200), ms(100)));
        assert_eq!(b.on_failure(ms(0)), Next::RetryAt(ms(200)));
        assert_eq!(b.on_failure(ms(200)), Next::RetryAt(ms(400)));
        let now = std::time::Instant::now();
        let mut b = Backoff::new(BackoffPolicy::new(Duration::MAX, Duration::MAX));
        assert!(matches!(b.on_failure(now), Next::RetryAt(t) if t > now));
    }

    proptest! {
        /// Delays never exceed the cap and never shrink within an episode,
        /// follow `BackoffPolicy::delay`, and a success starts over; the
        /// first call at or past the budget gives up, none before, and
        /// every later call gives up too.
        #[test]
        fn delays_are_capped_monotonic_and_the_budget_is_exact(
            initial in prop_oneof![0u64..100, any::<u64>()],
            max in prop_oneof![0u64..10_000, any::<u64>()],
            budget in proptest::option::of(0u64..100_000),
            steps in proptest::collection::vec((0u64..20_000, 0u8..10), 1..60),
        ) {
            let mut policy = BackoffPolicy::new(Duration::from_nanos(initial), Duration::from_nanos(max));
            if let Some(g) = budget {
                policy = policy.give_up_after(Duration::from_micros(g));
            }
            let cap = policy.max.max(policy.initial);
            let mut b = Backoff::new(policy);
            let mut now = Duration::from_secs(1);
            let mut start = None;
            let mut last_delay: Option<Duration> = None;
            let mut failures = 0u64;
            let mut gave_up = false;
            for (dt, action) in steps {
                now += Duration::from_micros(dt);
                let spent = |start: Option<Duration>| match (start, policy.give_up_after) {
                    (Some(s), Some(g)) => now - s >= g,
                    _ => false,
                };
                match action {
                    0 => {
                        b.on_success();
                        (start, last_delay, failures, gave_up) = (None, None, 0, false);
                    }
                    1..=2 => {
                        let r = b.poll(now);
                        if start.is_none() {
                            start = Some(now);
                        }
                        if gave_up || spent(start) {
                            prop_assert_eq!(r, Next::GiveUp);
                            gave_up = true;
                        } else {
                            prop_assert!(matches!(r, Next::RetryAt(_)));
                        }
                    }
                    _ => {
                        let r = b.on_failure(now);
                        if start.is_none() {
                            start = Some(now);
                        }
                        if !gave_up {
                            failures += 1;
                        }
                        if gave_up || spent(start) {
                            prop_assert_eq!(r, Next::GiveUp);
                            gave_up = true;
                        } else {
                            let Next::RetryAt(t) = r else {
                                return Err(TestCaseError::fail("gave up before the budget"));
                            };
                            let d = t - now;
                            prop_assert!(d <= cap);
                            prop_assert_eq!(d, policy.delay(failures));
                            if let Some(l) = last_delay {
                                prop_assert!(d >= l, "delay shrank: {:?} after {:?}", d, l);
                            }
                            last_delay = Some(d);
                            prop_assert_eq!(b.next_try(), Some(t));
                        }
                    }
                }
                prop_assert_eq!(b.has_given_up(), gave_up);
                prop_assert_eq!(b.failures(), failures);
            }
        }
    }
}
