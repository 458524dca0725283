//! Regression tests for a subscriber reading a hostile publisher's region,
//! found by the `control_region` fuzz target (`docs/verification.md`).

use cuframes_core::layout::{ControlLayout, SEQ_WRITING};
use cuframes_core::ring::{Acquire, ControlWords, Cursor, LeaseWords, RingReader};
use cuframes_core::sync::{AtomicU32, AtomicU64, Ordering};
use cuframes_core::DeliveryMode;

/// Word indices (§3.2, §3.4): `latest_seq` and slot 0's `seq`.
const LATEST_SEQ: usize = 96 / 8;
const SLOT0_SEQ: usize = 384 / 8;

#[test]
fn latest_seq_with_the_writing_bit_is_not_leased() {
    let layout = ControlLayout::new(2).unwrap();
    let words: Vec<AtomicU64> = (0..layout.region_size() / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    let (wake, release_wake) = (AtomicU32::new(0), AtomicU32::new(0));
    let ctl = ControlWords::new(&words, &wake, &release_wake, layout).unwrap();
    let row: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
    let lw = LeaseWords::new(&row).unwrap();
    lw.init(0);
    let reader = RingReader::new(ctl, lw);
    for mode in [DeliveryMode::NewestOnly, DeliveryMode::InOrder] {
        // The hostile publisher "commits" WRITING|5 everywhere it matters.
        words[LATEST_SEQ].store(SEQ_WRITING | 5, Ordering::SeqCst);
        words[SLOT0_SEQ].store(SEQ_WRITING | 5, Ordering::SeqCst);
        assert_eq!(reader.acquire(mode, Cursor::default(), 0), Acquire::Empty);
        assert_eq!(lw.snapshot().leases, [0; 4], "no lease left behind");
        // The same region with a real sequence number is served.
        words[LATEST_SEQ].store(5, Ordering::SeqCst);
        words[SLOT0_SEQ].store(5, Ordering::SeqCst);
        match reader.acquire(mode, Cursor::default(), 0) {
            Acquire::Frame(l) => {
                assert_eq!((l.slot, l.seq, l.skipped), (0, 5, 4));
                assert!(reader.still_valid(&l));
                reader.release(&l, mode);
            }
            Acquire::Empty => panic!("frame 5 not served"),
        }
    }
}
