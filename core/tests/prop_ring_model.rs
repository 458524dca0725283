//! Model-based test of the frame ring (`docs/protocol.md` §5): random
//! sequences of publish / claim-and-hold / commit / abandon / connect /
//! acquire (NewestOnly, InOrder) / release / subscriber crash / lease
//! timeout / hostile lease-row writes run against `RingWriter` and
//! `RingReader` over plain atomic words, laid out as the runtime lays out
//! its memfds, and against a plain single-threaded model of the ring. Every
//! observable result is compared: claim outcome, committed sequence,
//! acquire outcome (slot, seq, skipped), post-check, every slot's `seq`,
//! `latest_seq`, `frames_published`, `frames_dropped`.
//!
//! Besides agreeing with the model, each step checks the properties the
//! model is meant to guarantee: a claim never takes a slot whose frame is
//! held under an unrevoked lease; NewestOnly never goes back; InOrder skips
//! only frames that are gone from the ring; a lease fails its post-check
//! only if it was revoked.
//!
//! Lease timeouts are an explicit operation here: the timer itself lives in
//! the runtime (`runtime/publisher/readers.rs`) and is not modelled.

use cuframes_core::layout::{ControlLayout, StreamDesc, LEASES_PER_ROW, LEASE_MAGIC, SEQ_WRITING};
use cuframes_core::ring::{
    Acquire, Claim, ControlWords, Cursor, FrameMeta, Lease, LeaseWords, ReaderRef, RingReader,
    RingWriter, SlotClaim,
};
use cuframes_core::sync::{AtomicU32, AtomicU64, Ordering};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, SyncKind};
use proptest::prelude::*;

/// Word index of lease entry 0 and of `consumed_seq` in a row (§3.5).
const LEASE_WORD: usize = 1;
const CONSUMED_WORD: usize = 5;
const ROW_WORDS: usize = 4096 / 8;

#[derive(Debug, Clone)]
enum Op {
    /// Claim, write, commit; on Busy count a drop. `wait`: honour unread frames.
    Publish {
        wait: bool,
    },
    /// Claim and keep the claim open (readers then see `WRITING`).
    ClaimHold {
        wait: bool,
    },
    /// Commit the open claim.
    Commit,
    /// Abandon the open claim (a failed write).
    Abandon,
    /// A new subscriber joins with `start_seq = latest_seq`.
    Connect {
        in_order: bool,
    },
    Acquire {
        reader: usize,
    },
    Release {
        reader: usize,
        which: usize,
    },
    /// The subscriber's socket closes: the publisher stops scanning its row.
    Crash {
        reader: usize,
    },
    /// `lease_timeout` passed: the publisher revokes the row's current leases.
    Timeout {
        reader: usize,
    },
    /// A hostile subscriber writes `value` into a free lease entry.
    ForgeLease {
        reader: usize,
        entry: usize,
        value: Forged,
    },
    /// A hostile subscriber writes `consumed_seq`.
    ForgeConsumed {
        reader: usize,
        value: Forged,
    },
}

/// A hostile value, relative to `latest_seq` where that makes it bite.
#[derive(Debug, Clone, Copy)]
enum Forged {
    Back(u64),
    Raw(u64),
}

impl Forged {
    fn value(self, latest: u64) -> u64 {
        match self {
            Forged::Back(b) => latest.saturating_sub(b),
            Forged::Raw(v) => v,
        }
    }
}

fn forged() -> impl Strategy<Value = Forged> {
    prop_oneof![
        4 => (0u64..4).prop_map(Forged::Back),
        1 => prop_oneof![Just(u64::MAX), Just(SEQ_WRITING), Just(SEQ_WRITING | 1), any::<u64>()]
            .prop_map(Forged::Raw),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0usize..4;
    prop_oneof![
        6 => any::<bool>().prop_map(|wait| Op::Publish { wait }),
        1 => any::<bool>().prop_map(|wait| Op::ClaimHold { wait }),
        1 => Just(Op::Commit),
        1 => Just(Op::Abandon),
        2 => any::<bool>().prop_map(|in_order| Op::Connect { in_order }),
        6 => r.clone().prop_map(|reader| Op::Acquire { reader }),
        5 => (r.clone(), 0usize..4).prop_map(|(reader, which)| Op::Release { reader, which }),
        1 => r.clone().prop_map(|reader| Op::Crash { reader }),
        1 => r.clone().prop_map(|reader| Op::Timeout { reader }),
        1 => (r.clone(), 0usize..LEASES_PER_ROW, forged())
            .prop_map(|(reader, entry, value)| Op::ForgeLease { reader, entry, value }),
        1 => (r, forged()).prop_map(|(reader, value)| Op::ForgeConsumed { reader, value }),
    ]
}

/// The reference model.
#[derive(Debug, Clone, Copy, Default)]
struct MSlot {
    /// Frame in the slot (0: empty); while `writing`, the frame it held.
    seq: u64,
    writing: bool,
}

#[derive(Debug, Clone)]
struct MReader {
    in_order: bool,
    connected: bool,
    floor: u64,
    consumed: u64,
    cursor: u64,
    /// Values in the row's lease entries.
    entries: [u64; LEASES_PER_ROW],
    /// Leases this subscriber holds (from acquire), by entry.
    held: [Option<Lease>; LEASES_PER_ROW],
    revoked: [u64; LEASES_PER_ROW],
}

struct World {
    layout: ControlLayout,
    ctl: Vec<AtomicU64>,
    wake: AtomicU32,
    release_wake: AtomicU32,
    rows: Vec<Vec<AtomicU64>>,
    // model
    slots: Vec<MSlot>,
    readers: Vec<MReader>,
    latest: u64,
    published: u64,
    dropped: u64,
    open: Option<SlotClaim>,
}

impl World {
    fn new(slot_count: u32) -> Self {
        let layout = ControlLayout::new(slot_count).unwrap();
        let w = World {
            layout,
            ctl: (0..layout.region_size() / 8)
                .map(|_| AtomicU64::new(0))
                .collect(),
            wake: AtomicU32::new(0),
            release_wake: AtomicU32::new(0),
            rows: Vec::new(),
            slots: vec![MSlot::default(); slot_count as usize],
            readers: Vec::new(),
            latest: 0,
            published: 0,
            dropped: 0,
            open: None,
        };
        let s = StreamDesc::packed(32, 16, PixelFormat::Nv12, Codec::Hevc).unwrap();
        let h = layout.header(
            s.frame_size,
            MemoryKind::HostMemfd,
            SyncKind::HostFence,
            [0; 16],
        );
        w.writer().init(&h, &s);
        w
    }

    fn ctl(&self) -> ControlWords<'_> {
        ControlWords::new(&self.ctl, &self.wake, &self.release_wake, self.layout).unwrap()
    }
    fn writer(&self) -> RingWriter<'_> {
        RingWriter::new(self.ctl())
    }
    fn row(&self, r: usize) -> LeaseWords<'_> {
        LeaseWords::new(&self.rows[r]).unwrap()
    }
    fn reader(&self, r: usize) -> RingReader<'_> {
        RingReader::new(self.ctl(), self.row(r))
    }
    fn mode(&self, r: usize) -> DeliveryMode {
        if self.readers[r].in_order {
            DeliveryMode::InOrder
        } else {
            DeliveryMode::NewestOnly
        }
    }

    /// A connected reader chosen by `i`.
    fn pick(&self, i: usize) -> Option<usize> {
        let live: Vec<usize> = (0..self.readers.len())
            .filter(|&r| self.readers[r].connected)
            .collect();
        (!live.is_empty()).then(|| live[i % live.len()])
    }

    fn refs(&self) -> Vec<ReaderRef<'_>> {
        (0..self.readers.len())
            .filter(|&r| self.readers[r].connected)
            .map(|r| ReaderRef {
                row: self.row(r),
                unread_floor: self.readers[r].in_order.then_some(self.readers[r].floor),
                revoked: self.readers[r].revoked,
            })
            .collect()
    }

    fn protected(&self, seq: u64) -> bool {
        self.readers
            .iter()
            .filter(|m| m.connected)
            .any(|m| (0..LEASES_PER_ROW).any(|e| m.entries[e] == seq && m.revoked[e] != seq))
    }

    fn unread(&self, seq: u64) -> bool {
        self.readers
            .iter()
            .filter(|m| m.connected && m.in_order)
            .any(|m| seq > m.floor.max(m.consumed))
    }

    fn model_claim(&self, wait: bool) -> Claim {
        // Warm first (§5.4): the newest frame older than the latest that no
        // InOrder reader has left unread, if not leased.
        let mut warm: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| {
                let s = self.slots[i as usize].seq;
                s != 0 && s < self.latest && !self.unread(s)
            })
            .collect();
        warm.sort_by_key(|&i| (std::cmp::Reverse(self.slots[i as usize].seq), i));
        if let Some(&i) = warm
            .iter()
            .find(|&&i| !self.protected(self.slots[i as usize].seq))
        {
            return Claim::Claimed(SlotClaim {
                slot: i,
                prev_seq: self.slots[i as usize].seq,
            });
        }
        let mut order: Vec<u32> = (0..self.slots.len() as u32).collect();
        order.sort_by_key(|&i| (self.slots[i as usize].seq, i));
        let mut blocked_by_unread = false;
        for i in order {
            let prev = self.slots[i as usize].seq;
            if prev != 0 && wait && self.unread(prev) {
                blocked_by_unread = true;
                continue;
            }
            if prev != 0 && self.protected(prev) {
                continue;
            }
            return Claim::Claimed(SlotClaim {
                slot: i,
                prev_seq: prev,
            });
        }
        Claim::Busy { blocked_by_unread }
    }

    fn claim(&mut self, wait: bool) -> Option<SlotClaim> {
        let want = self.model_claim(wait);
        let got = self.writer().claim(&self.refs(), wait);
        assert_eq!(got, want, "claim");
        match got {
            Claim::Claimed(c) => {
                // Safety property, independent of how the model picks.
                for m in self.readers.iter().filter(|m| m.connected) {
                    for l in m.held.iter().flatten() {
                        if l.slot == c.slot {
                            assert_eq!(
                                m.revoked[l.entry], l.seq,
                                "slot {} claimed under an unrevoked lease",
                                c.slot
                            );
                        }
                    }
                }
                self.slots[c.slot as usize].writing = true;
                Some(c)
            }
            Claim::Busy { .. } => None,
        }
    }

    fn commit(&mut self, c: SlotClaim) {
        let seq = self.writer().commit(
            c,
            &FrameMeta {
                source_index: self.latest + 1,
                ..Default::default()
            },
        );
        self.latest += 1;
        self.published += 1;
        assert_eq!(seq, self.latest, "commit seq");
        self.slots[c.slot as usize] = MSlot {
            seq,
            writing: false,
        };
    }

    fn model_acquire(&self, r: usize) -> Option<(u32, u64, u64)> {
        let m = &self.readers[r];
        let want = m.cursor.saturating_add(1);
        if self.latest < want || m.cursor == u64::MAX {
            return None;
        }
        let target = if m.in_order {
            if self.slots.iter().any(|s| s.writing && s.seq >= want) {
                return None;
            }
            self.slots
                .iter()
                .filter(|s| !s.writing && s.seq >= want && s.seq <= self.latest)
                .map(|s| s.seq)
                .min()?
        } else {
            self.latest
        };
        let slot = self
            .slots
            .iter()
            .position(|s| !s.writing && s.seq == target)?;
        Some((slot as u32, target, target - want))
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Publish { wait } => {
                if let Some(c) = self.open.take() {
                    self.commit(c);
                } else if let Some(c) = self.claim(wait) {
                    self.commit(c);
                } else {
                    self.writer().count_drop();
                    self.dropped += 1;
                }
            }
            Op::ClaimHold { wait } => {
                if self.open.is_none() {
                    self.open = self.claim(wait);
                }
            }
            Op::Commit => {
                if let Some(c) = self.open.take() {
                    self.commit(c);
                }
            }
            Op::Abandon => {
                if let Some(c) = self.open.take() {
                    self.writer().abandon(c);
                    self.slots[c.slot as usize] = MSlot::default();
                }
            }
            Op::Connect { in_order } => {
                if self.readers.len() < 6 {
                    let start = self.latest;
                    self.rows
                        .push((0..ROW_WORDS).map(|_| AtomicU64::new(0)).collect());
                    let r = self.rows.len() - 1;
                    self.row(r).init(start);
                    assert_eq!(self.row(r).snapshot().magic, LEASE_MAGIC);
                    self.readers.push(MReader {
                        in_order,
                        connected: true,
                        floor: start,
                        consumed: start,
                        cursor: start,
                        entries: [0; LEASES_PER_ROW],
                        held: [None; LEASES_PER_ROW],
                        revoked: [0; LEASES_PER_ROW],
                    });
                }
            }
            Op::Acquire { reader } => {
                let Some(r) = self.pick(reader) else { return };
                let Some(e) = (0..LEASES_PER_ROW).find(|&e| self.readers[r].entries[e] == 0) else {
                    return;
                };
                let want = self.model_acquire(r);
                let cursor = Cursor {
                    last_seq: self.readers[r].cursor,
                };
                let got = self.reader(r).acquire(self.mode(r), cursor, e);
                match (got, want) {
                    (Acquire::Empty, None) => {
                        assert_eq!(self.row(r).snapshot().leases[e], 0, "Empty left a lease");
                    }
                    (Acquire::Frame(l), Some((slot, seq, skipped))) => {
                        assert_eq!((l.slot, l.seq, l.skipped, l.entry), (slot, seq, skipped, e));
                        let m = &self.readers[r];
                        assert!(l.seq > m.cursor, "went back");
                        if m.in_order {
                            for lost in m.cursor + 1..l.seq {
                                assert!(
                                    !self.slots.iter().any(|s| s.seq == lost),
                                    "InOrder skipped frame {lost}, which is still in the ring"
                                );
                            }
                        }
                        assert_eq!(self.reader(r).meta(&l).source_index, l.seq);
                        assert!(self.reader(r).still_valid(&l));
                        let m = &mut self.readers[r];
                        m.cursor = l.seq;
                        m.entries[e] = l.seq;
                        m.held[e] = Some(l);
                    }
                    (got, want) => panic!("acquire: ring {got:?}, model {want:?}"),
                }
            }
            Op::Release { reader, which } => {
                let Some(r) = self.pick(reader) else { return };
                let held: Vec<Lease> = self.readers[r].held.iter().flatten().copied().collect();
                if held.is_empty() {
                    return;
                }
                let l = held[which % held.len()];
                let s = self.slots[l.slot as usize];
                let want_valid = s.seq == l.seq && !s.writing;
                let valid = self.reader(r).still_valid(&l);
                assert_eq!(valid, want_valid, "post-check of {l:?}");
                if !valid {
                    assert_eq!(
                        self.readers[r].revoked[l.entry], l.seq,
                        "unrevoked lease lost"
                    );
                }
                let mode = self.mode(r);
                self.reader(r).release(&l, mode);
                let m = &mut self.readers[r];
                if m.in_order {
                    m.consumed = m.consumed.max(l.seq);
                }
                m.entries[l.entry] = 0;
                m.held[l.entry] = None;
            }
            Op::Crash { reader } => {
                if let Some(r) = self.pick(reader) {
                    self.readers[r].connected = false;
                }
            }
            Op::Timeout { reader } => {
                if let Some(r) = self.pick(reader) {
                    let m = &mut self.readers[r];
                    for e in 0..LEASES_PER_ROW {
                        if m.entries[e] != 0 {
                            m.revoked[e] = m.entries[e];
                        }
                    }
                }
            }
            Op::ForgeLease {
                reader,
                entry,
                value,
            } => {
                let Some(r) = self.pick(reader) else { return };
                if self.readers[r].held[entry].is_some() {
                    return;
                }
                let v = value.value(self.latest);
                self.rows[r][LEASE_WORD + entry].store(v, Ordering::SeqCst);
                self.readers[r].entries[entry] = v;
            }
            Op::ForgeConsumed { reader, value } => {
                let Some(r) = self.pick(reader) else { return };
                let v = value.value(self.latest);
                self.rows[r][CONSUMED_WORD].store(v, Ordering::SeqCst);
                self.readers[r].consumed = v;
            }
        }
        self.compare();
    }

    fn compare(&self) {
        let h = self.ctl().snapshot_header();
        assert_eq!(h.latest_seq, self.latest, "latest_seq");
        assert_eq!(h.frames_published, self.published, "frames_published");
        assert_eq!(h.frames_dropped, self.dropped, "frames_dropped");
        for (i, s) in self.slots.iter().enumerate() {
            let want = if s.writing {
                SEQ_WRITING | s.seq
            } else {
                s.seq
            };
            assert_eq!(self.ctl().snapshot_slot(i as u32).seq, want, "slot {i} seq");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn ring_matches_model(slots in 2u32..=4, ops in prop::collection::vec(op(), 1..60)) {
        let mut w = World::new(slots);
        for op in &ops {
            w.step(op);
        }
    }
}
