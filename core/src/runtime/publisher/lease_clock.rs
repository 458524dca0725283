//! Lease revocation timing (`docs/protocol.md` §5.2 *Revocation*), as a pure
//! function of (the clock's own state, a snapshot of one lease row, the
//! sequence numbers alive in the slots, now). Time is a parameter, so the
//! rules are tested without sleeping.
//!
//! Only a value that **pins a slot** (equals the sequence number of a frame
//! alive in some slot) is timed; any other value is harmless and is neither
//! timed nor remembered, so no amount of meaningless values can push a real
//! pin out of the clock. A pinned frame's timer and a revocation are kept for
//! as long as the frame is alive in a slot, whatever the row does meanwhile
//! (moving the value between entries, clearing and rewriting it), so a row
//! pins any one frame for at most `timeout` in total, counted from when it
//! was first seen pinning it. The state is bounded by the number of frames
//! alive (at most 64 per ring).

use crate::layout::LEASES_PER_ROW;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

/// The revocation state of one lease row.
#[derive(Debug, Clone, Default)]
pub struct LeaseClock {
    /// Frames this row pins or pinned, with when it was first seen pinning
    /// each; kept while the frame is alive.
    pinned: Vec<(u64, Instant)>,
    /// Frames revoked from this row; kept while the frame is alive.
    revoked: Vec<u64>,
}

/// What one [`LeaseClock::scan`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaseScan {
    /// Per entry: the revoked frame it holds, which the ring must ignore
    /// ([`crate::ring::ReaderRef::revoked`]); 0 where nothing is revoked.
    pub ignore: [u64; LEASES_PER_ROW],
    /// Frames revoked by this scan.
    pub newly_revoked: usize,
}

impl LeaseClock {
    /// A clock that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates the clock from one snapshot of the row's `leases` taken at
    /// `now`, given the sequence numbers of the frames alive in the slots
    /// (`alive`; 0 and duplicates are ignored). A frame pinned for longer
    /// than `timeout` (first seen pinning it at `t`, `now - t > timeout`) is
    /// revoked for this row. `now` must not go backwards between calls.
    pub fn scan(
        &mut self,
        leases: &[u64; LEASES_PER_ROW],
        alive: &[u64],
        now: Instant,
        timeout: Duration,
    ) -> LeaseScan {
        let is_alive = |v: u64| v != 0 && alive.contains(&v);
        // An overwritten frame can never pin again (sequence numbers are
        // unique and grow): forget it. Nothing alive is forgotten.
        self.pinned.retain(|&(v, _)| is_alive(v));
        self.revoked.retain(|&v| is_alive(v));
        let mut newly_revoked = 0;
        for &v in leases {
            if !is_alive(v) || self.revoked.contains(&v) {
                continue;
            }
            let first = match self.pinned.iter().find(|(p, _)| *p == v) {
                Some(&(_, t)) => t,
                None => {
                    self.pinned.push((v, now));
                    now
                }
            };
            if now.saturating_duration_since(first) > timeout {
                self.pinned.retain(|&(p, _)| p != v);
                self.revoked.push(v);
                newly_revoked += 1;
            }
        }
        let mut ignore = [0; LEASES_PER_ROW];
        for (slot, &v) in ignore.iter_mut().zip(leases) {
            if v != 0 && self.revoked.contains(&v) {
                *slot = v;
            }
        }
        LeaseScan {
            ignore,
            newly_revoked,
        }
    }

    /// Frames remembered (pinned or revoked): never more than the frames alive.
    pub fn remembered(&self) -> usize {
        self.pinned.len() + self.revoked.len()
    }
}

/// A rate limit for one kind of log line about one peer: at most one line
/// per `every`, reporting how many events were suppressed since the last.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogGate {
    /// Records an event at `now`: `Some(suppressed)` if a line may be
    /// logged now (with the count of events not logged since the last
    /// line), `None` if this one is suppressed.
    pub fn admit(&mut self, now: Instant, every: Duration) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// A peer-supplied name, escaped wherever it is displayed: control
/// characters (newline, ESC, ...), quotes and backslashes come out as Rust
/// escapes (`\n`, `\u{1b}`), so a peer cannot forge or colour log lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerName(String);

impl PeerName {
    /// Wraps a name as the peer sent it.
    pub fn new(raw: &str) -> Self {
        PeerName(raw.to_owned())
    }

    /// The name as the peer sent it (unescaped: never log this).
    pub fn raw(&self) -> &str {
        &self.0
    }
}

impl core::fmt::Display for PeerName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for c in self.0.chars() {
            // Bidi controls and zero-width characters are not `is_control`,
            // and `escape_debug` leaves some of them as they are.
            if matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{}", c.escape_debug())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Duration = Duration::from_secs(5);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn fresh_values_cannot_evict_a_pinned_frame() {
        // The issue-12 attack: frames 7 and 8 pinned in entries 0 and 1,
        // a fresh meaningless value in entries 2 and 3 every millisecond.
        let mut c = LeaseClock::new();
        let t0 = Instant::now();
        let alive = [5, 6, 7, 8];
        let mut revoked_at = None;
        for ms in 0..6_000u64 {
            let row = [7, 8, 1_000_000 + 2 * ms, 1_000_001 + 2 * ms];
            let s = c.scan(&row, &alive, at(t0, ms), T);
            assert!(c.remembered() <= alive.len());
            if s.newly_revoked > 0 {
                assert_eq!(s.newly_revoked, 2);
                assert_eq!(s.ignore, [7, 8, 0, 0]);
                revoked_at = Some(ms);
                break;
            }
        }
        assert_eq!(revoked_at, Some(5_001), "revoked just past the timeout");
    }

    #[test]
    fn clearing_and_rewriting_does_not_restart_the_timer() {
        let mut c = LeaseClock::new();
        let t0 = Instant::now();
        let alive = [9];
        for ms in (0..=5_001u64).step_by(10) {
            let row = if ms % 20 == 0 {
                [9, 0, 0, 0]
            } else {
                [0, 0, 0, 0]
            };
            let s = c.scan(&row, &alive, at(t0, ms), T);
            assert_eq!(s.newly_revoked, 0);
        }
        let s = c.scan(&[0, 0, 9, 0], &alive, at(t0, 5_010), T);
        assert_eq!((s.newly_revoked, s.ignore), (1, [0, 0, 9, 0]));
        // Written again into another entry, it stays revoked.
        let s = c.scan(&[9, 0, 0, 9], &alive, at(t0, 9_000), T);
        assert_eq!((s.newly_revoked, s.ignore), (0, [9, 0, 0, 9]));
    }

    #[test]
    fn revoked_at_the_first_scan_past_the_timeout_in_virtual_time() {
        // Time is only ever passed in: t0 is an origin, no scan sleeps.
        let mut c = LeaseClock::new();
        let t0 = Instant::now();
        let ns = |n: u64| t0 + T + Duration::from_nanos(n);
        assert_eq!(c.scan(&[3, 0, 0, 0], &[3], t0, T).newly_revoked, 0);
        // Held exactly `lease_timeout`: not yet (the rule is `now − t > timeout`).
        assert_eq!(c.scan(&[3, 0, 0, 0], &[3], ns(0), T).newly_revoked, 0);
        let s = c.scan(&[3, 0, 0, 0], &[3], ns(1), T);
        assert_eq!((s.newly_revoked, s.ignore), (1, [3, 0, 0, 0]));
        // Once only.
        let s = c.scan(&[3, 0, 0, 0], &[3], ns(2), T);
        assert_eq!((s.newly_revoked, s.ignore), (0, [3, 0, 0, 0]));
    }

    #[test]
    fn values_pinning_nothing_are_not_timed() {
        let mut c = LeaseClock::new();
        let t0 = Instant::now();
        let s = c.scan(&[3, 4, 5, 6], &[1, 2], t0, T);
        assert_eq!(s, LeaseScan::default());
        let s = c.scan(&[3, 4, 5, 6], &[1, 2], at(t0, 60_000), T);
        assert_eq!(s, LeaseScan::default());
        assert_eq!(c.remembered(), 0);
        // Frame 3 appears in a slot now: its timer starts now, not at t0.
        let s = c.scan(&[3, 0, 0, 0], &[3], at(t0, 60_000), T);
        assert_eq!(s.newly_revoked, 0);
        let s = c.scan(&[3, 0, 0, 0], &[3], at(t0, 65_001), T);
        assert_eq!(s.newly_revoked, 1);
    }

    #[test]
    fn an_overwritten_frame_is_forgotten() {
        let mut c = LeaseClock::new();
        let t0 = Instant::now();
        c.scan(&[4, 0, 0, 0], &[4], t0, T);
        assert_eq!(c.remembered(), 1);
        c.scan(&[4, 0, 0, 0], &[12], at(t0, 1), T);
        assert_eq!(c.remembered(), 0);
    }

    #[test]
    fn log_gate_admits_one_line_per_interval_with_a_count() {
        let mut g = LogGate::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        assert_eq!(g.admit(t0, every), Some(0));
        for ms in 1..5_000 {
            assert_eq!(g.admit(at(t0, ms), every), None);
        }
        assert_eq!(g.admit(at(t0, 5_000), every), Some(4_999));
        assert_eq!(g.admit(at(t0, 5_001), every), None);
    }

    #[test]
    fn peer_names_are_escaped() {
        let n = PeerName::new("cam\nINFO forged line \u{1b}[31mred\u{202e}");
        let shown = n.to_string();
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        assert!(shown.contains("\\n") && shown.contains("\\u{1b}") && shown.contains("\\u{202e}"));
        assert_eq!(PeerName::new("nvr-1").to_string(), "nvr-1");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Frame 7 stays alive; the row holds it in any entry or not at
        /// all, beside anything else, at scans of arbitrary (virtual)
        /// times. It is revoked at exactly the first scan that sees it more
        /// than `timeout` after the scan that first saw it, never before,
        /// once, and stays revoked: no row contents reset its timer.
        #[test]
        fn no_row_contents_reset_the_timer(
            timeout_us in 1u64..5_000,
            steps in proptest::collection::vec(
                (0u64..2_000, proptest::option::of(0usize..4),
                 proptest::array::uniform4(prop_oneof![Just(0u64), 8u64..10, any::<u64>()])),
                1..150,
            ),
        ) {
            let timeout = Duration::from_micros(timeout_us);
            let alive = [7u64, 8, 9];
            let mut c = LeaseClock::new();
            let t0 = Instant::now();
            let mut now = t0;
            let mut first_seen = None;
            let mut revoked = false;
            for (dt, entry, mut row) in steps {
                now += Duration::from_micros(dt);
                for v in row.iter_mut() {
                    if *v == 7 {
                        *v = 0;
                    }
                }
                if let Some(e) = entry {
                    row[e] = 7;
                }
                let s = c.scan(&row, &alive, now, timeout);
                let held = entry.is_some();
                if held && first_seen.is_none() {
                    first_seen = Some(now);
                }
                let due = first_seen.is_some_and(|t| now - t > timeout);
                let expect_revoked = revoked || (held && due);
                for (i, &v) in row.iter().enumerate() {
                    if v == 7 {
                        prop_assert_eq!(s.ignore[i] == 7, expect_revoked, "scan at {:?}", now - t0);
                    }
                }
                revoked = expect_revoked;
            }
        }

        /// Whatever the row writes, a frame that stays alive and is seen
        /// pinned at two scans more than `timeout` apart is revoked (and
        /// ignored in every entry holding it) by the second; the state never
        /// outgrows the frames alive; nothing is revoked before `timeout`.
        #[test]
        fn a_pinned_frame_is_revoked_within_the_timeout(
            steps in proptest::collection::vec(
                (0u64..400, proptest::array::uniform4(prop_oneof![
                    Just(0u64), 1u64..6, 1_000u64..2_000, any::<u64>()
                ])),
                1..120,
            ),
        ) {
            let alive = [1u64, 2, 3, 4, 5];
            let timeout = Duration::from_millis(1_000);
            let mut c = LeaseClock::new();
            let t0 = Instant::now();
            let mut now = t0;
            let mut first_seen: Vec<(u64, Instant)> = Vec::new();
            let mut revoked: Vec<u64> = Vec::new();
            for (dt, row) in steps {
                now += Duration::from_millis(dt);
                let s = c.scan(&row, &alive, now, timeout);
                prop_assert!(c.remembered() <= alive.len());
                for &v in &row {
                    if v == 0 || !alive.contains(&v) {
                        continue;
                    }
                    let t = match first_seen.iter().find(|(p, _)| *p == v) {
                        Some(&(_, t)) => t,
                        None => { first_seen.push((v, now)); now }
                    };
                    if now - t > timeout {
                        revoked.push(v);
                    }
                }
                for (i, &v) in row.iter().enumerate() {
                    if alive.contains(&v) && revoked.contains(&v) {
                        prop_assert_eq!(s.ignore[i], v, "entry {} holds revoked {}", i, v);
                    } else {
                        prop_assert_eq!(s.ignore[i], 0, "entry {} not revoked", i);
                    }
                }
            }
        }
    }
}
