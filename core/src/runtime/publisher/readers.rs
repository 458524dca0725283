//! The publisher's table of connected subscribers and their lease rows.

use crate::layout::LEASES_PER_ROW;
use crate::ring::{LeaseWords, ReaderRef};
use crate::runtime::shm::Mapping;
use crate::DeliveryMode;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

/// One subscriber as the publisher tracks it.
#[derive(Debug)]
pub(crate) struct Reader {
    pub id: u32,
    pub name: String,
    pub mode: DeliveryMode,
    /// The subscriber's lease row, mapped read-only (hostile).
    pub row: Option<Mapping>,
    /// InOrder: frames above this (and above the row's `consumed_seq`) are unread.
    pub floor: u64,
    /// Lease values revoked after `lease_timeout`, per entry.
    pub revoked: [u64; LEASES_PER_ROW],
    /// Lease value first seen in each entry, and when.
    seen: [(u64, Instant); LEASES_PER_ROW],
}

impl Reader {
    pub fn new(
        id: u32,
        name: String,
        mode: DeliveryMode,
        row: Option<Mapping>,
        floor: u64,
    ) -> Self {
        let now = Instant::now();
        Reader {
            id,
            name,
            mode,
            row,
            floor,
            revoked: [0; LEASES_PER_ROW],
            seen: [(0, now); LEASES_PER_ROW],
        }
    }

    pub fn words(&self) -> Option<LeaseWords<'_>> {
        self.row
            .as_ref()
            .and_then(|m| LeaseWords::new(m.words()).ok())
    }

    /// The ring's view of this reader; `None` for packet-only subscribers.
    pub fn as_ref(&self, honour_unread: bool) -> Option<ReaderRef<'_>> {
        Some(ReaderRef {
            row: self.words()?,
            unread_floor: (honour_unread && self.mode == DeliveryMode::InOrder)
                .then_some(self.floor),
            revoked: self.revoked,
        })
    }

    /// Revokes leases held longer than `timeout`; returns how many were revoked now.
    pub fn expire_leases(&mut self, now: Instant, timeout: Duration) -> usize {
        let Some(row) = self.words().map(|w| w.snapshot()) else {
            return 0;
        };
        let mut revoked = 0;
        for (i, &v) in row.leases.iter().enumerate() {
            if v == 0 || v == self.revoked[i] {
                continue;
            }
            if self.seen[i].0 != v {
                self.seen[i] = (v, now);
            } else if now.duration_since(self.seen[i].1) > timeout {
                self.revoked[i] = v;
                revoked += 1;
            }
        }
        revoked
    }

    /// InOrder: the subscriber has not consumed frames above this.
    pub fn consumed(&self) -> u64 {
        self.words()
            .map_or(self.floor, |w| w.snapshot().consumed_seq.max(self.floor))
    }
}
