//! The publisher's table of connected subscribers and their lease rows.

use crate::layout::LEASES_PER_ROW;
use crate::ring::{LeaseWords, ReaderRef};
use crate::runtime::shm::Mapping;
use crate::DeliveryMode;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

use super::lease_clock::{LeaseClock, LogGate, PeerName};

/// One subscriber as the publisher tracks it.
#[derive(Debug)]
pub(crate) struct Reader {
    pub id: u32,
    /// The HELLO name (peer-supplied: displays escaped).
    pub name: PeerName,
    pub mode: DeliveryMode,
    /// The subscriber's lease row, mapped read-only (hostile).
    pub row: Option<Mapping>,
    /// InOrder: frames above this (and above the row's `consumed_seq`) are unread.
    pub floor: u64,
    /// Generation of the ring this reader was first welcomed to.
    pub first_gen: u64,
    /// Per entry: the revoked frame it holds, ignored by claims (0: none).
    pub revoked: [u64; LEASES_PER_ROW],
    /// Revocation timers (§5.2).
    clock: LeaseClock,
    /// Times this InOrder reader kept a `Wait` publisher past `wait_timeout`.
    pub lag_events: u32,
    /// Demoted after `max_lag_events`: its unread frames no longer hold
    /// slots under `Wait` (it is served as NewestOnly would be).
    pub demoted: bool,
    /// Rate limits of the warnings about this reader.
    pub revoke_log: LogGate,
    pub lag_log: LogGate,
}

impl Reader {
    pub fn new(
        id: u32,
        name: PeerName,
        mode: DeliveryMode,
        row: Option<Mapping>,
        floor: u64,
    ) -> Self {
        Reader {
            id,
            name,
            mode,
            row,
            floor,
            first_gen: 1,
            revoked: [0; LEASES_PER_ROW],
            clock: LeaseClock::new(),
            lag_events: 0,
            demoted: false,
            revoke_log: LogGate::default(),
            lag_log: LogGate::default(),
        }
    }

    pub fn words(&self) -> Option<LeaseWords<'_>> {
        self.row
            .as_ref()
            .and_then(|m| LeaseWords::new(m.words()).ok())
    }

    /// The ring's view of this reader; `None` for packet-only subscribers.
    /// Its unread frames block claims only when the claim honours them
    /// (policy Wait); they are never taken as warm slots (§5.4).
    pub fn as_ref(&self) -> Option<ReaderRef<'_>> {
        Some(ReaderRef {
            row: self.words()?,
            unread_floor: (self.mode == DeliveryMode::InOrder && !self.demoted)
                .then_some(self.floor),
            revoked: self.revoked,
        })
    }

    /// Revokes leases that pinned a frame of `alive` (the sequence numbers
    /// in the slots) for longer than `timeout` ([`LeaseClock::scan`]);
    /// returns how many frames were revoked now.
    pub fn expire_leases(&mut self, alive: &[u64], now: Instant, timeout: Duration) -> usize {
        let Some(row) = self.words().map(|w| w.snapshot()) else {
            return 0;
        };
        let s = self.clock.scan(&row.leases, alive, now, timeout);
        self.revoked = s.ignore;
        s.newly_revoked
    }

    /// Whether this reader may still hold or read a frame of `first..=last`
    /// (a replaced ring, §6): its row's `consumed_seq` is below `last`, or an
    /// unrevoked lease entry holds a value in the range. Packet-only readers
    /// read no frames.
    pub fn needs(&self, first: u64, last: u64) -> bool {
        let Some(row) = self.words().map(|w| w.snapshot()) else {
            return false;
        };
        row.consumed_seq < last
            || row
                .leases
                .iter()
                .zip(self.revoked)
                .any(|(&v, rev)| v != rev && (first..=last).contains(&v))
    }

    /// InOrder: the subscriber has not consumed frames above this.
    pub fn consumed(&self) -> u64 {
        self.words()
            .map_or(self.floor, |w| w.snapshot().consumed_seq.max(self.floor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::shm;
    use crate::sync::Ordering;

    fn reader() -> (Reader, rustix::fd::OwnedFd, Mapping) {
        let (fd, rw) = shm::create_shared("row", crate::layout::LEASE_REGION_SIZE).unwrap();
        LeaseWords::new(rw.words()).unwrap().init(0);
        let ro = Mapping::map(
            rustix::fd::AsFd::as_fd(&fd),
            crate::layout::LEASE_REGION_SIZE as usize,
            shm::Access::ReadOnly,
        )
        .unwrap();
        (
            Reader::new(1, PeerName::new("t"), DeliveryMode::NewestOnly, Some(ro), 0),
            fd,
            rw,
        )
    }

    const ALIVE: &[u64] = &[7, 9, 10];

    fn set(rw: &Mapping, entry: usize, v: u64) {
        LeaseWords::new(rw.words())
            .unwrap()
            .lease(entry)
            .store(v, Ordering::SeqCst);
    }

    #[test]
    fn moving_a_lease_between_entries_does_not_restart_its_timer() {
        let (mut r, _fd, rw) = reader();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(5);
        set(&rw, 0, 7);
        assert_eq!(r.expire_leases(ALIVE, t0, timeout), 0);
        // The subscriber shuffles frame 7 through its entries.
        for (k, entry) in [1, 2, 3, 0].into_iter().enumerate() {
            set(&rw, (entry + 3) % 4, 0);
            set(&rw, entry, 7);
            let now = t0 + Duration::from_secs(2 * k as u64 + 2);
            let n = r.expire_leases(ALIVE, now, timeout);
            if now.duration_since(t0) > timeout {
                assert_eq!(n, 1, "revoked once held past the timeout, in entry {entry}");
                assert_eq!(r.revoked[entry], 7);
                return;
            }
            assert_eq!(n, 0);
        }
        core::panic!("frame 7 was never revoked");
    }

    #[test]
    fn a_revoked_frame_written_again_stays_revoked() {
        let (mut r, _fd, rw) = reader();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        set(&rw, 0, 9);
        r.expire_leases(ALIVE, t0, timeout);
        assert_eq!(
            r.expire_leases(ALIVE, t0 + Duration::from_secs(2), timeout),
            1
        );
        set(&rw, 0, 0);
        set(&rw, 3, 9);
        assert_eq!(
            r.expire_leases(ALIVE, t0 + Duration::from_secs(3), timeout),
            0
        );
        assert_eq!(r.revoked[3], 9, "the ring must ignore entry 3's lease");
        // A new frame in the freed entry gets its own timer.
        set(&rw, 0, 10);
        assert_eq!(
            r.expire_leases(ALIVE, t0 + Duration::from_secs(3), timeout),
            0
        );
        assert_eq!(r.revoked, [0, 0, 0, 9]);
    }
}
