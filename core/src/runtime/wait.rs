//! How a blocked subscriber waits for the next commit (`docs/protocol.md`
//! §5.5): a bounded busy-wait on the ring's `wake` word, then the futex.
//!
//! A futex wake-up costs a cross-process syscall, a scheduler pass and, on
//! an idle core, the exit from a CPU idle state: 4–7 µs on a small VM,
//! ~22 µs median on the H200 host (docs/BENCHMARKS.md). A subscriber that is
//! spinning when the commit lands sees it in the time of one cache-line
//! transfer. So `next_frame` with a timeout first spins (bounded by
//! [`WaitStrategy::spin`]), then sleeps. Video is periodic, so with
//! [`WaitStrategy::anticipate`] the subscriber also learns the stream's pace
//! from the frames' commit stamps ([`Pace`]): between frames it sleeps on the
//! futex (any commit still wakes it at once) until shortly before the next
//! commit is due, then spins across the expected moment. The CPU this costs
//! is bounded per frame (the spin plus the lead in [`Pace::spin_from`]); a
//! late, early or irregular stream only loses the gain, never a frame, since
//! every sleep is on the futex a commit wakes.

use crate::sync::AtomicU32;
use core::sync::atomic::Ordering;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

/// How [`Subscriber::next_frame`](super::Subscriber::next_frame) waits when
/// no frame is ready and its timeout is not zero
/// ([`SubscribeOptions::wait`](super::SubscribeOptions::wait)).
///
/// A zero timeout never waits: it is a poll. [`WaitStrategy::FUTEX_ONLY`]
/// sleeps at once (the behaviour before 2026-11-28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStrategy {
    /// Busy-wait (with `spin_loop` hints and a `yield_now` every 64 rounds)
    /// this long for a commit before sleeping on the futex. Default 50 µs;
    /// zero: sleep at once.
    pub spin: Duration,
    /// Learn the stream's pace from the frames' `publish_ns` and spin across
    /// the expected time of the next commit (default `true`). Costs at most
    /// `spin` + [`Pace::spin_from`]'s lead of CPU per frame.
    pub anticipate: bool,
}

impl WaitStrategy {
    /// Sleep on the futex at once, never spin.
    pub const FUTEX_ONLY: WaitStrategy = WaitStrategy {
        spin: Duration::ZERO,
        anticipate: false,
    };
}

impl Default for WaitStrategy {
    fn default() -> Self {
        WaitStrategy {
            spin: Duration::from_micros(50),
            anticipate: true,
        }
    }
}

/// How late a futex sleep with a timeout may end: Linux's default timer
/// slack for a normal thread (50 µs) plus the wake-up itself.
pub const SLEEP_LATENESS: Duration = Duration::from_micros(70);

/// Longest commit interval taken as a pace (1 s): beyond it the stream is
/// treated as irregular and nothing is anticipated.
const MAX_PERIOD_NS: u64 = 1_000_000_000;

/// The most the stream's jitter widens the spin window (2 × the deviation,
/// capped): a stream that irregular gains little from anticipation, and the
/// cap bounds what it costs.
const MAX_JITTER_LEAD_NS: u64 = 200_000;

/// A spin that finds more than this between two of its clock checks (32
/// rounds, well under a microsecond when it has a core) was descheduled: the
/// CPU is contended, and spinning on would take it from the publisher. It
/// stops and the caller sleeps on the futex.
const PREEMPTED: Duration = Duration::from_micros(30);

/// The pace of a stream, learned from the commit stamps (`publish_ns`,
/// CLOCK_MONOTONIC ns, written by the publisher: untrusted — a wrong value
/// only moves when this subscriber spins, bounded by the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pace {
    /// Commit stamp of the newest frame seen (0: none).
    last_ns: u64,
    /// Moving average of the commit interval (0: unknown), ns.
    period_ns: u64,
    /// Moving average of the deviation from `period_ns`, ns.
    jitter_ns: u64,
}

impl Pace {
    /// Takes the commit stamp of a received frame. Frames received out of
    /// stamp order, or after a gap over 1 s, restart the estimate.
    pub fn observe(&mut self, publish_ns: u64) {
        if publish_ns <= self.last_ns {
            // A new publisher, a clock from elsewhere, or garbage.
            *self = Pace {
                last_ns: publish_ns,
                ..Pace::default()
            };
            return;
        }
        let d = publish_ns - self.last_ns;
        let had_last = self.last_ns != 0;
        self.last_ns = publish_ns;
        if !had_last || d > MAX_PERIOD_NS {
            self.period_ns = 0;
            self.jitter_ns = 0;
            return;
        }
        if self.period_ns == 0 {
            self.period_ns = d;
            return;
        }
        let err = d.abs_diff(self.period_ns);
        // EWMA: 1/8 for the period, 1/4 for the deviation (as TCP's RTT).
        self.jitter_ns = self.jitter_ns - self.jitter_ns / 4 + err / 4;
        self.period_ns = self.period_ns - self.period_ns / 8 + d / 8;
    }

    /// The stream's commit interval as learned (`None` before two frames).
    pub fn period(&self) -> Option<Duration> {
        (self.period_ns != 0).then(|| Duration::from_nanos(self.period_ns))
    }

    /// When (CLOCK_MONOTONIC ns) to stop sleeping and start spinning for the
    /// next commit, and until when to spin, given the clock `now_ns` and the
    /// configured `spin`: `None` when the pace is unknown or the prediction
    /// is not believable (already past by more than a period, or more than
    /// two periods ahead). The spin window opens `spin` + 2 × jitter (at
    /// most 200 µs) + [`SLEEP_LATENESS`] before the expected commit and
    /// closes `spin` after it.
    pub fn spin_from(&self, now_ns: u64, spin: Duration) -> Option<(u64, u64)> {
        if self.period_ns == 0 {
            return None;
        }
        let expected = self.last_ns.checked_add(self.period_ns)?;
        if now_ns > expected.saturating_add(self.period_ns)
            || expected > now_ns.saturating_add(self.period_ns.saturating_mul(2))
        {
            return None;
        }
        let spin_ns = spin.as_nanos().min(u64::MAX as u128) as u64;
        let lead = spin_ns
            .saturating_add(self.jitter_ns.saturating_mul(2).min(MAX_JITTER_LEAD_NS))
            .saturating_add(SLEEP_LATENESS.as_nanos() as u64);
        Some((
            expected.saturating_sub(lead),
            expected.saturating_add(spin_ns),
        ))
    }
}

/// Busy-waits until `word` differs from `seen` or `until` passes (checked
/// every 32 rounds). `true` if the word changed. Gives up early, `false`,
/// when it finds it was descheduled (a gap over 30 µs between two clock
/// checks): on a contended CPU a spin only delays the publisher.
pub fn spin_until_changed(word: &AtomicU32, seen: u32, until: Instant) -> bool {
    let mut round: u32 = 0;
    let mut checked = Instant::now();
    loop {
        if word.load(Ordering::Acquire) != seen {
            return true;
        }
        round = round.wrapping_add(1);
        if round % 64 == 0 {
            // Lets another thread of this core run (a publisher on a busy
            // 2-core machine); returns at once on an idle one.
            std::thread::yield_now();
        } else {
            core::hint::spin_loop();
        }
        if round % 32 == 0 {
            let now = Instant::now();
            if now >= until || now.saturating_duration_since(checked) > PREEMPTED {
                return word.load(Ordering::Acquire) != seen;
            }
            checked = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn paced(stamps: &[u64]) -> Pace {
        let mut p = Pace::default();
        for &s in stamps {
            p.observe(s);
        }
        p
    }

    #[test]
    fn learns_a_steady_period() {
        let p = paced(&(1..=20).map(|i| i * 33 * MS).collect::<Vec<_>>());
        assert_eq!(p.period(), Some(Duration::from_millis(33)));
        let (from, until) = p
            .spin_from(20 * 33 * MS + MS, Duration::from_micros(50))
            .unwrap();
        let expected = 21 * 33 * MS;
        assert_eq!(until, expected + 50_000);
        // No jitter: the window opens spin + lateness before.
        assert_eq!(expected - from, 50_000 + SLEEP_LATENESS.as_nanos() as u64);
    }

    #[test]
    fn jitter_widens_the_window() {
        let stamps: Vec<u64> = (1..=40)
            .map(|i| i * 10 * MS + if i % 2 == 0 { MS / 2 } else { 0 })
            .collect();
        let p = paced(&stamps);
        let (from, _) = p
            .spin_from(*stamps.last().unwrap(), Duration::ZERO)
            .unwrap();
        let expected = stamps.last().unwrap() + p.period_ns;
        let lead = expected - from;
        // Deviation ~0.5 ms: 2 × it exceeds the cap, so the lead is capped.
        assert!(p.jitter_ns > MS / 4, "jitter {}", p.jitter_ns);
        assert_eq!(lead, SLEEP_LATENESS.as_nanos() as u64 + MAX_JITTER_LEAD_NS);
        // A small deviation widens it by 2 × the deviation.
        let stamps: Vec<u64> = (1..=40)
            .map(|i| i * 10 * MS + if i % 2 == 0 { 20_000 } else { 0 })
            .collect();
        let p = paced(&stamps);
        let (from, _) = p
            .spin_from(*stamps.last().unwrap(), Duration::ZERO)
            .unwrap();
        let lead = stamps.last().unwrap() + p.period_ns - from;
        assert_eq!(lead, SLEEP_LATENESS.as_nanos() as u64 + 2 * p.jitter_ns);
        assert!(p.jitter_ns > 5_000);
    }

    #[test]
    fn needs_two_intervals_and_restarts_on_disorder() {
        assert_eq!(paced(&[]).spin_from(5, Duration::ZERO), None);
        assert_eq!(paced(&[10 * MS]).period(), None);
        assert!(paced(&[10 * MS, 20 * MS]).period().is_some());
        // A stamp going back (a new publisher): unknown again.
        assert_eq!(paced(&[10 * MS, 20 * MS, 30 * MS, 5 * MS]).period(), None);
        // A gap over a second: unknown again.
        assert_eq!(
            paced(&[MS, 2 * MS, 3 * MS, 3 * MS + 2_000 * MS]).period(),
            None
        );
    }

    #[test]
    fn hostile_stamps_do_not_overflow_or_predict_far_away() {
        let p = paced(&[u64::MAX - 3, u64::MAX - 2, u64::MAX - 1]);
        let (from, until) = p.spin_from(u64::MAX - 1, Duration::MAX).unwrap();
        assert!(from <= until);
        let p = paced(&[MS, 2 * MS, 3 * MS]);
        // The clock is far past the prediction: not believable.
        assert_eq!(p.spin_from(100 * MS, Duration::ZERO), None);
        // Far before it (a stamp from the future): not believable either.
        let p = paced(&[1000 * MS, 1001 * MS, 1002 * MS]);
        assert_eq!(p.spin_from(10 * MS, Duration::ZERO), None);
        assert!(p.spin_from(1002 * MS, Duration::MAX).is_some());
    }

    #[test]
    fn spin_sees_a_change_and_times_out() {
        let w = AtomicU32::new(7);
        assert!(!spin_until_changed(
            &w,
            7,
            Instant::now() + Duration::from_micros(200)
        ));
        assert!(spin_until_changed(&w, 6, Instant::now()));
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(2));
                w.store(8, Ordering::Release);
            });
            // A spin may give up early when descheduled (a busy machine):
            // spin again until the change is seen.
            let give_up = Instant::now() + Duration::from_secs(10);
            while !spin_until_changed(&w, 7, give_up) {
                assert!(Instant::now() < give_up, "the change was never seen");
            }
        });
    }
}
