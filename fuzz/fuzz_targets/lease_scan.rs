//! The publisher's scan of hostile lease rows (`docs/protocol.md` §5.2,
//! §5.4): a ring of 2..=64 slots holding some committed frames, then up to 8
//! subscriber rows whose 16 words, revoked values and InOrder floors all
//! come from the input, then `RingWriter::claim`. It must never panic, never
//! claim a frame some row leases (unrevoked) or, when unread frames are
//! honoured, one an InOrder row has not consumed, and leave every other
//! slot as it was.
#![no_main]

use cuframes_core::layout::{ControlLayout, StreamDesc, LEASES_PER_ROW, SEQ_WRITING};
use cuframes_core::ring::{Claim, ControlWords, FrameMeta, LeaseWords, ReaderRef, RingWriter};
use cuframes_core::sync::{AtomicU32, AtomicU64};
use cuframes_core::{Codec, MemoryKind, PixelFormat, SyncKind};
use libfuzzer_sys::fuzz_target;

const ROW: usize = 16;

fuzz_target!(|data: &[u8]| {
    let [slots, frames, flags, ref rest @ ..] = *data else {
        return;
    };
    let slot_count = 2 + u32::from(slots) % 63;
    let layout = ControlLayout::new(slot_count).unwrap();
    let words: Vec<AtomicU64> = (0..layout.region_size() / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    let (wake, release_wake) = (AtomicU32::new(0), AtomicU32::new(0));
    let ctl = ControlWords::new(&words, &wake, &release_wake, layout).unwrap();
    let w = RingWriter::new(ctl);
    let s = StreamDesc::packed(16, 16, PixelFormat::Nv12, Codec::H264).unwrap();
    w.init(
        &layout.header(
            s.frame_size,
            MemoryKind::HostMemfd,
            SyncKind::HostFence,
            [0; 16],
        ),
        &s,
    );
    for _ in 0..frames {
        if let Claim::Claimed(c) = w.claim(&[], false) {
            w.commit(c, &FrameMeta::default());
        }
    }
    // Hostile words: small values mostly, so they hit real sequence numbers.
    let mut vals = rest.chunks(2).map(|c| match c {
        [0xFF, b] => u64::from(*b) << 56 | SEQ_WRITING,
        [a, b] => u64::from(u16::from_le_bytes([*a, *b]) % 300),
        [a] => u64::from(*a),
        _ => 0,
    });
    let mut rows: Vec<(Vec<AtomicU64>, Option<u64>, [u64; LEASES_PER_ROW])> = Vec::new();
    for _ in 0..8 {
        let Some(kind) = vals.next() else { break };
        let row: Vec<AtomicU64> = (0..ROW)
            .map(|_| AtomicU64::new(vals.next().unwrap_or(0)))
            .collect();
        let mut revoked = [0; LEASES_PER_ROW];
        for r in revoked.iter_mut() {
            *r = vals.next().unwrap_or(0);
        }
        let floor = (kind & 1 != 0).then(|| vals.next().unwrap_or(0));
        rows.push((row, floor, revoked));
    }
    let refs: Vec<ReaderRef<'_>> = rows
        .iter()
        .map(|(row, floor, revoked)| ReaderRef {
            row: LeaseWords::new(row).unwrap(),
            unread_floor: *floor,
            revoked: *revoked,
        })
        .collect();
    let honour = flags & 1 != 0;
    let before: Vec<u64> = (0..slot_count).map(|i| ctl.snapshot_slot(i).seq).collect();
    let leased = |seq: u64| {
        rows.iter().any(|(row, _, revoked)| {
            (0..LEASES_PER_ROW).any(|e| {
                let v = row[1 + e].load(cuframes_core::sync::Ordering::Relaxed);
                v == seq && revoked[e] != seq
            })
        })
    };
    let unread = |seq: u64| {
        rows.iter().any(|(row, floor, _)| {
            floor.is_some_and(|f| seq > f.max(row[5].load(cuframes_core::sync::Ordering::Relaxed)))
        })
    };
    match w.claim(&refs, honour) {
        Claim::Claimed(c) => {
            assert_eq!(c.prev_seq, before[c.slot as usize]);
            if c.prev_seq != 0 {
                assert!(!leased(c.prev_seq));
                assert!(!(honour && unread(c.prev_seq)));
            }
            for (i, &p) in before.iter().enumerate() {
                if i as u32 != c.slot {
                    assert_eq!(ctl.snapshot_slot(i as u32).seq, p);
                }
            }
            if flags & 2 != 0 {
                w.abandon(c);
            } else {
                w.commit(c, &FrameMeta::default());
            }
        }
        Claim::Busy { .. } => {
            for (i, &p) in before.iter().enumerate() {
                assert!(p != 0 && (leased(p) || honour && unread(p)));
                assert_eq!(ctl.snapshot_slot(i as u32).seq, p);
            }
        }
    }
});
