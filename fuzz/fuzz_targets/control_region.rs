//! Arbitrary bytes as a control region a subscriber mapped from a hostile
//! publisher (`docs/protocol.md` §3.2, §3.3, §5.3): the bytes become the
//! region's u64 words (LE), the first 8 bytes the mapped length. The header
//! and stream snapshots go through `ControlLayout::validate`; if it accepts,
//! a `RingReader` then runs acquire / meta / still_valid / release over the
//! same hostile words in both delivery modes. Nothing may panic, and a
//! frame it hands out must be a slot of the validated geometry whose `seq`
//! is newer than the cursor.
#![no_main]

use cuframes_core::layout::{ControlLayout, LEASE_MAGIC};
use cuframes_core::ring::{Acquire, ControlWords, Cursor, LeaseWords, RingReader};
use cuframes_core::sync::{AtomicU32, AtomicU64};
use cuframes_core::DeliveryMode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let mapped = u64::from_le_bytes(data[..8].try_into().unwrap()) % 16384;
    let cursor_start = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let body = &data[16..];
    // At least one page of words, hostile bytes first, zero after.
    let n = (body.len().div_ceil(8)).max(4096 / 8);
    let words: Vec<AtomicU64> = (0..n)
        .map(|i| {
            let mut w = [0u8; 8];
            for (k, b) in w.iter_mut().enumerate() {
                *b = body.get(i * 8 + k).copied().unwrap_or(0);
            }
            AtomicU64::new(u64::from_le_bytes(w))
        })
        .collect();
    let wake = AtomicU32::new(0);
    let release_wake = AtomicU32::new(0);
    // The subscriber only knows the real geometry after validation; take the
    // smallest to snapshot the header and stream description.
    let probe = ControlLayout::new(2).unwrap();
    let Ok(ctl) = ControlWords::new(&words, &wake, &release_wake, probe) else {
        return;
    };
    let (h, s) = (ctl.snapshot_header(), ctl.snapshot_stream());
    let Ok(layout) = ControlLayout::validate(&h, &s, mapped) else {
        return;
    };
    assert_eq!(u64::from(layout.slot_count), h.slot_count);
    assert!(layout.region_size() <= mapped);
    let Ok(ctl) = ControlWords::new(&words, &wake, &release_wake, layout) else {
        return;
    };
    let row: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
    let lw = LeaseWords::new(&row).unwrap();
    lw.init(cursor_start);
    assert_eq!(lw.snapshot().magic, LEASE_MAGIC);
    let reader = RingReader::new(ctl, lw);
    for mode in [DeliveryMode::NewestOnly, DeliveryMode::InOrder] {
        let mut cursor = Cursor {
            last_seq: cursor_start,
        };
        for entry in 0..3 {
            match reader.acquire(mode, cursor, entry) {
                Acquire::Frame(l) => {
                    assert!(l.slot < layout.slot_count);
                    assert!(l.seq > cursor.last_seq);
                    let _ = reader.meta(&l);
                    assert!(reader.still_valid(&l));
                    reader.release(&l, mode);
                    cursor.last_seq = l.seq;
                }
                Acquire::Empty => break,
            }
        }
    }
    let _ = ctl.is_closed();
    let _ = ctl.latest_seq();
});
