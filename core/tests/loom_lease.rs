//! loom model of the lease protocol (`docs/protocol.md` §5.2–5.4): one
//! publisher (the model's main thread) and two subscribers (threads).
//!
//! Run with `.ci/loom` (`RUSTFLAGS="--cfg cuframes_loom"`, release,
//! `LOOM_MAX_PREEMPTIONS=2`). Checked in every interleaving loom explores:
//! - a slot is never rewritten while a lease on its frame is held (a leased
//!   frame's payload and metadata are exactly its own, and the post-check
//!   `still_valid` holds at release);
//! - a lease the publisher revoked is the only one that can fail the
//!   post-check, and data read under it is never accepted, also when the
//!   publisher's write into that slot fails half way and is abandoned;
//! - NewestOnly never returns a frame older than (or equal to) one it
//!   already returned;
//! - InOrder never skips silently: every skipped frame is counted and its
//!   slot had been claimed for a newer frame.
#![cfg(cuframes_loom)]

mod loom_support;

use cuframes_core::layout::LEASES_PER_ROW;
use cuframes_core::ring::Cursor;
use cuframes_core::sync::Ordering;
use cuframes_core::DeliveryMode;
use loom::sync::Arc;
use loom::thread;
use loom_support::{take, Shm};

#[test]
fn newest_only_leases_are_never_overwritten() {
    loom_support::model("newest_only_leases_are_never_overwritten", || {
        let shm = Arc::new(Shm::new(2, 3));
        let subs: Vec<_> = (0..2)
            .map(|r| {
                let shm = shm.clone();
                thread::spawn(move || {
                    let mut cursor = Cursor::default();
                    for _ in 0..2 {
                        if let Some((_, valid)) =
                            take(&shm, r, DeliveryMode::NewestOnly, &mut cursor)
                        {
                            assert!(valid, "a lease nobody revoked failed its post-check");
                        }
                    }
                })
            })
            .collect();
        let refs = [shm.reader_ref(0, false), shm.reader_ref(1, false)];
        for _ in 0..3 {
            shm.try_publish(&refs, false);
        }
        for s in subs {
            s.join().unwrap();
        }
    });
}

#[test]
fn in_order_never_skips_silently() {
    loom_support::model("in_order_never_skips_silently", || {
        let shm = Arc::new(Shm::new(2, 3));
        let in_order = {
            let shm = shm.clone();
            thread::spawn(move || {
                let mut cursor = Cursor::default();
                for _ in 0..2 {
                    let want = cursor.last_seq + 1;
                    if let Some((l, valid)) = take(&shm, 0, DeliveryMode::InOrder, &mut cursor) {
                        assert!(valid);
                        for lost in want..l.seq {
                            assert!(
                                shm.was_overwritten(lost),
                                "frame {lost} skipped but never overwritten"
                            );
                        }
                    }
                }
            })
        };
        let newest = {
            let shm = shm.clone();
            thread::spawn(move || {
                let mut cursor = Cursor::default();
                if let Some((_, valid)) = take(&shm, 1, DeliveryMode::NewestOnly, &mut cursor) {
                    assert!(valid);
                }
            })
        };
        // DropFrame: unread frames are not honoured, so InOrder may lose some.
        let refs = [shm.reader_ref(0, true), shm.reader_ref(1, false)];
        for _ in 0..3 {
            shm.try_publish(&refs, false);
        }
        in_order.join().unwrap();
        newest.join().unwrap();
    });
}

#[test]
fn wait_policy_delivers_every_frame_in_order() {
    loom_support::model("wait_policy_delivers_every_frame_in_order", || {
        const FRAMES: u64 = 3;
        let shm = Arc::new(Shm::new(1, FRAMES));
        let sub = {
            let shm = shm.clone();
            thread::spawn(move || {
                let mut cursor = Cursor::default();
                while cursor.last_seq < FRAMES {
                    let w = shm.ctl().wake().load(Ordering::SeqCst);
                    match take(&shm, 0, DeliveryMode::InOrder, &mut cursor) {
                        Some((l, valid)) => {
                            assert!(valid);
                            assert_eq!(l.skipped, 0, "Wait lost a frame");
                        }
                        None => shm.futex.wait(shm.ctl().wake(), w),
                    }
                }
            })
        };
        let refs = [shm.reader_ref(0, true)];
        for _ in 0..FRAMES {
            // Wait: retry until a slot is free of leases and unread frames.
            while shm.try_publish(&refs, true).is_none() {
                thread::yield_now();
            }
        }
        sub.join().unwrap();
    });
}

#[test]
fn only_a_revoked_lease_fails_the_post_check() {
    use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
    static SAW_REVOKED_READ: AtomicBool = AtomicBool::new(false);
    loom_support::model("only_a_revoked_lease_fails_the_post_check", || {
        let shm = Arc::new(Shm::new(1, 3));
        shm.try_publish(&[shm.reader_ref(0, false)], false);
        let sub = {
            let shm = shm.clone();
            thread::spawn(move || {
                let mut cursor = Cursor::default();
                for _ in 0..2 {
                    if let Some((l, valid)) = take(&shm, 0, DeliveryMode::NewestOnly, &mut cursor) {
                        if !valid {
                            assert_eq!(
                                l.seq,
                                shm.revoked.load(Ordering::SeqCst),
                                "an unrevoked lease failed its post-check"
                            );
                            SAW_REVOKED_READ.store(true, StdOrdering::Relaxed);
                        }
                    }
                }
            })
        };
        // The lease timeout expires once: whatever the row holds now is
        // revoked (what `expire_leases` records), then two more frames.
        let mut r = shm.reader_ref(0, false);
        let row = shm.row(0).snapshot();
        r.revoked = row.leases;
        debug_assert_eq!(r.revoked.len(), LEASES_PER_ROW);
        shm.revoked.store(row.leases[0], Ordering::SeqCst);
        shm.try_publish(&[r], false);
        shm.try_publish(&[r], false);
        sub.join().unwrap();
    });
    assert!(
        SAW_REVOKED_READ.load(StdOrdering::Relaxed),
        "no interleaving exercised a revoked lease: the model is too weak"
    );
}

#[test]
fn a_half_written_frame_is_never_accepted() {
    loom_support::model("a_half_written_frame_is_never_accepted", || {
        let shm = Arc::new(Shm::new(1, 3));
        let none = [shm.reader_ref(0, false)];
        shm.try_publish(&none, false);
        shm.try_publish(&none, false);
        let sub = {
            let shm = shm.clone();
            thread::spawn(move || {
                // InOrder from 0 leases frame 1, in the slot a claim takes first.
                let mut cursor = Cursor::default();
                if let Some((l, valid)) = take(&shm, 0, DeliveryMode::InOrder, &mut cursor) {
                    if !valid {
                        assert_eq!(l.seq, shm.revoked.load(Ordering::SeqCst));
                    }
                }
            })
        };
        // The lease timeout revokes what the row holds; the next write fails
        // after changing one word of the slot it claimed.
        let mut r = shm.reader_ref(0, true);
        r.revoked = shm.row(0).snapshot().leases;
        shm.revoked.store(r.revoked[0], Ordering::SeqCst);
        shm.failed_publish(&[r]);
        sub.join().unwrap();
    });
}
