//! Property tests of the shared-memory layouts (`docs/protocol.md` §3) and of
//! the publisher's lease-row scan (§5.2, §5.4): every layout round-trips
//! through bytes and through the atomic words the ring uses; the validators
//! never panic on hostile words, reject every change to a field they check,
//! and what they accept is safe to use; `RingWriter::claim` never panics on
//! hostile lease rows and never claims a leased or (when honoured) unread frame.

use cuframes_core::layout::{
    ControlHeader, ControlLayout, LeaseRow, SlotDesc, StreamDesc, CONTROL_MAGIC, LEASES_PER_ROW,
    SEQ_WRITING,
};
use cuframes_core::ring::{Claim, ControlWords, FrameMeta, LeaseWords, ReaderRef, RingWriter};
use cuframes_core::sync::{AtomicU32, AtomicU64};
use cuframes_core::{Codec, MemoryKind, PixelFormat, SyncKind};
use proptest::prelude::*;
use zerocopy::{FromBytes, IntoBytes};

fn region(layout: ControlLayout) -> (Vec<AtomicU64>, AtomicU32, AtomicU32) {
    let words = (0..layout.region_size() / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    (words, AtomicU32::new(0), AtomicU32::new(0))
}

fn words<const N: usize>() -> impl Strategy<Value = [u64; N]> {
    prop::array::uniform(prop_oneof![3 => 0u64..0x2_0000, 1 => any::<u64>()])
}

fn valid_config() -> impl Strategy<Value = (ControlLayout, ControlHeader, StreamDesc)> {
    (
        2u32..=64,
        1u32..=4096,
        1u32..=4096,
        prop::bool::ANY,
        0u64..1 << 20,
        any::<[u8; 16]>(),
    )
        .prop_map(|(n, w, h, p010, extra, uuid)| {
            let l = ControlLayout::new(n).unwrap();
            let fmt = if p010 {
                PixelFormat::P010
            } else {
                PixelFormat::Nv12
            };
            let s = StreamDesc::packed(w, h, fmt, Codec::H264).unwrap();
            let hd = l.header(
                s.frame_size + extra,
                MemoryKind::HostMemfd,
                SyncKind::HostFence,
                uuid,
            );
            (l, hd, s)
        })
}

/// Independent check of what `validate` promises on `Ok`.
fn assert_usable(h: &ControlHeader, s: &StreamDesc, mapped: u64, l: ControlLayout) {
    assert_eq!(h.magic, CONTROL_MAGIC);
    assert_eq!(u64::from(l.slot_count), h.slot_count);
    assert_eq!(mapped, l.region_size());
    assert!(l.slot_offset(l.slot_count) <= mapped);
    assert!(s.frame_size <= h.slot_size);
    let f = s.format();
    let mut spans = Vec::new();
    for p in 0..2 {
        let (row, rows) = f.plane_extent(p, s.width as u32, s.height as u32).unwrap();
        assert!(s.plane_pitch[p as usize] >= row);
        let end =
            s.plane_offset[p as usize] as u128 + s.plane_pitch[p as usize] as u128 * rows as u128;
        assert!(end <= s.frame_size as u128);
        spans.push((s.plane_offset[p as usize] as u128, end));
    }
    assert!(spans[0].1 <= spans[1].0 || spans[1].1 <= spans[0].0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn layouts_round_trip_through_bytes(h in words::<32>(), s in words::<16>(), d in words::<8>(), r in words::<16>()) {
        let hd: ControlHeader = zerocopy::transmute!(h);
        prop_assert_eq!(ControlHeader::read_from_bytes(hd.as_bytes()).unwrap(), hd);
        prop_assert_eq!(hd.as_bytes(), h.as_bytes());
        let sd: StreamDesc = zerocopy::transmute!(s);
        prop_assert_eq!(StreamDesc::read_from_bytes(sd.as_bytes()).unwrap(), sd);
        let sl: SlotDesc = zerocopy::transmute!(d);
        prop_assert_eq!(SlotDesc::read_from_bytes(sl.as_bytes()).unwrap(), sl);
        let lr: LeaseRow = zerocopy::transmute!(r);
        prop_assert_eq!(LeaseRow::read_from_bytes(lr.as_bytes()).unwrap(), lr);
        // Little-endian words at the offsets the tables give.
        prop_assert_eq!(&hd.as_bytes()[96..104], &hd.latest_seq.to_le_bytes()[..]);
        prop_assert_eq!(&sd.as_bytes()[40..48], &sd.frame_size.to_le_bytes()[..]);
        prop_assert_eq!(&lr.as_bytes()[40..48], &lr.consumed_seq.to_le_bytes()[..]);
    }

    #[test]
    fn layouts_round_trip_through_ring_words((l, h, s) in valid_config(), row in words::<16>()) {
        let (w, wake, rw) = region(l);
        let ctl = ControlWords::new(&w, &wake, &rw, l).unwrap();
        RingWriter::new(ctl).init(&h, &s);
        prop_assert_eq!(ctl.snapshot_header(), h);
        prop_assert_eq!(ctl.snapshot_stream(), s);
        for i in 0..l.slot_count {
            prop_assert_eq!(ctl.snapshot_slot(i), SlotDesc::default());
        }
        prop_assert_eq!(ControlLayout::validate(&h, &s, l.region_size()), Ok(l));
        let row_words: Vec<AtomicU64> = row.iter().map(|&v| AtomicU64::new(v)).collect();
        let lr: LeaseRow = zerocopy::transmute!(row);
        prop_assert_eq!(LeaseWords::new(&row_words).unwrap().snapshot(), lr);
        // Too few words is an error, not a panic.
        let need = (l.slot_offset(l.slot_count) / 8) as usize;
        prop_assert!(ControlWords::new(&w[..need - 1], &wake, &rw, l).is_err());
        prop_assert!(ControlWords::new(&w[..need], &wake, &rw, l).is_ok());
        prop_assert!(LeaseWords::new(&row_words[..15]).is_err());
    }

    #[test]
    fn validate_never_panics_on_hostile_words(h in words::<32>(), s in words::<16>(), mapped in prop_oneof![0u64..10_000, any::<u64>()]) {
        let hd: ControlHeader = zerocopy::transmute!(h);
        let sd: StreamDesc = zerocopy::transmute!(s);
        if let Ok(l) = ControlLayout::validate(&hd, &sd, mapped) {
            assert_usable(&hd, &sd, mapped, l);
        }
        let _ = sd.validate(hd.slot_size);
    }

    #[test]
    fn validate_catches_every_checked_header_field((l, h, s) in valid_config(), word in 0usize..32, value in any::<u64>()) {
        let mut raw: [u64; 32] = zerocopy::transmute!(h);
        let old = raw[word];
        raw[word] = value;
        let bad: ControlHeader = zerocopy::transmute!(raw);
        let r = ControlLayout::validate(&bad, &s, l.region_size());
        // magic, header_size, region_size, stream_offset, slot_table_offset, slot_stride
        if value != old && [0usize, 2, 3, 4, 5, 7].contains(&word) {
            prop_assert!(r.is_err(), "word {} = {:#x} accepted", word, value);
        }
        if let Ok(nl) = r {
            assert_usable(&bad, &s, l.region_size(), nl);
        }
    }

    #[test]
    fn validate_accepts_only_usable_streams((l, h, s) in valid_config(), word in 0usize..16, value in prop_oneof![0u64..100_000, any::<u64>()]) {
        let mut raw: [u64; 16] = zerocopy::transmute!(s);
        raw[word] = value;
        let bad: StreamDesc = zerocopy::transmute!(raw);
        if let Ok(nl) = ControlLayout::validate(&h, &bad, l.region_size()) {
            assert_usable(&h, &bad, l.region_size(), nl);
        }
    }

    #[test]
    fn claim_survives_hostile_rows(
        slots in 2u32..=8,
        frames in 0u64..20,
        rows in prop::collection::vec((prop::array::uniform16(prop_oneof![3 => 0u64..24, 1 => any::<u64>(), 1 => Just(SEQ_WRITING | 3)]), prop::option::of(0u64..24), prop::array::uniform4(prop_oneof![0u64..24, any::<u64>()])), 0..4),
        honour in any::<bool>(),
    ) {
        let l = ControlLayout::new(slots).unwrap();
        let (w, wake, rw) = region(l);
        let ctl = ControlWords::new(&w, &wake, &rw, l).unwrap();
        let wr = RingWriter::new(ctl);
        let s = StreamDesc::packed(16, 16, PixelFormat::Nv12, Codec::H264).unwrap();
        wr.init(&l.header(s.frame_size, MemoryKind::HostMemfd, SyncKind::HostFence, [0; 16]), &s);
        for _ in 0..frames {
            if let Claim::Claimed(c) = wr.claim(&[], false) {
                wr.commit(c, &FrameMeta::default());
            }
        }
        let row_words: Vec<Vec<AtomicU64>> = rows.iter().map(|(r, _, _)| r.iter().map(|&v| AtomicU64::new(v)).collect()).collect();
        let refs: Vec<ReaderRef<'_>> = rows.iter().zip(&row_words).map(|((_, floor, revoked), words)| ReaderRef {
            row: LeaseWords::new(words).unwrap(),
            unread_floor: *floor,
            revoked: *revoked,
        }).collect();
        let before: Vec<u64> = (0..slots).map(|i| ctl.snapshot_slot(i).seq).collect();
        let leased = |seq: u64| rows.iter().any(|(r, _, revoked)| (0..LEASES_PER_ROW).any(|e| r[1 + e] == seq && revoked[e] != seq));
        let unread = |seq: u64| rows.iter().any(|(r, floor, _)| floor.is_some_and(|f| seq > f.max(r[5])));
        match wr.claim(&refs, honour) {
            Claim::Claimed(c) => {
                prop_assert_eq!(c.prev_seq, before[c.slot as usize]);
                prop_assert_eq!(ctl.snapshot_slot(c.slot).seq, SEQ_WRITING | c.prev_seq);
                if c.prev_seq != 0 {
                    prop_assert!(!leased(c.prev_seq), "claimed leased frame {}", c.prev_seq);
                    prop_assert!(!(honour && unread(c.prev_seq)), "claimed unread frame {}", c.prev_seq);
                }
                // Warm first (§5.4): the newest frame below the latest that
                // no reader leases or has unread; else oldest first among
                // the slots it may take.
                let latest = ctl.latest_seq();
                let warm = before.iter().copied().filter(|&p| p != 0 && p < latest && !leased(p) && !unread(p)).max();
                if let Some(w) = warm {
                    prop_assert_eq!(c.prev_seq, w, "warm slot");
                } else {
                    for (i, &p) in before.iter().enumerate() {
                        let ok = p == 0 || !(leased(p) || honour && unread(p));
                        if ok {
                            prop_assert!(p >= c.prev_seq, "took {} while slot {} held older free {}", c.prev_seq, i, p);
                        }
                    }
                }
                // Every other slot is as it was (backed-off probes restored).
                for (i, &p) in before.iter().enumerate() {
                    if i as u32 != c.slot {
                        prop_assert_eq!(ctl.snapshot_slot(i as u32).seq, p);
                    }
                }
            }
            Claim::Busy { blocked_by_unread } => {
                for (i, &p) in before.iter().enumerate() {
                    prop_assert!(p != 0 && (leased(p) || honour && unread(p)), "slot {} was free", i);
                    prop_assert_eq!(ctl.snapshot_slot(i as u32).seq, p);
                }
                prop_assert_eq!(blocked_by_unread, honour && before.iter().any(|&p| unread(p)));
            }
        }
    }
}
