//! loom model of the wake-up path (`docs/protocol.md` §5.5, §5.6): a
//! subscriber loads `wake`, checks the ring, and sleeps on `wake` with the
//! value it loaded; the publisher commits, bumps `wake`, wakes. The futex is
//! modelled by `loom_support::Futex` (no timeout), so a lost wake-up leaves a
//! subscriber asleep forever and loom reports a deadlock.
//!
//! Checked: both subscribers (one NewestOnly, one InOrder) end with the last
//! frame delivered, and only after it see the publisher's close. Under
//! `--cfg cuframes_loom_mutation` the subscriber loads `wake` after checking
//! the ring instead of before (`.ci/loom mutation` requires loom to report
//! the lost wake-up).
#![cfg(cuframes_loom)]

mod loom_support;

use cuframes_core::ring::Cursor;
use cuframes_core::sync::Ordering;
use cuframes_core::DeliveryMode;
use loom::sync::Arc;
use loom::thread;
use loom_support::{take, Shm};

const FRAMES: u64 = 2;

fn subscriber(shm: &Shm, r: usize, mode: DeliveryMode) -> u64 {
    let mut cursor = Cursor::default();
    loop {
        // §5.5/§5.6 order: wake, then closed, then the ring. The mutation
        // loads `wake` only after the ring check, which loses wake-ups.
        let early =
            (!cfg!(cuframes_loom_mutation)).then(|| shm.ctl().wake().load(Ordering::SeqCst));
        let closed = shm.ctl().is_closed();
        let got = take(shm, r, mode, &mut cursor);
        let w = early.unwrap_or_else(|| shm.ctl().wake().load(Ordering::SeqCst));
        match got {
            Some((_, valid)) => assert!(valid),
            None if closed => return cursor.last_seq,
            None => shm.futex.wait(shm.ctl().wake(), w),
        }
    }
}

#[test]
fn no_wake_up_is_lost() {
    loom_support::model("no_wake_up_is_lost", || {
        let shm = Arc::new(Shm::new(2, FRAMES));
        let subs: Vec<_> = [DeliveryMode::NewestOnly, DeliveryMode::InOrder]
            .into_iter()
            .enumerate()
            .map(|(r, mode)| {
                let shm = shm.clone();
                thread::spawn(move || subscriber(&shm, r, mode))
            })
            .collect();
        let refs = [shm.reader_ref(0, false), shm.reader_ref(1, true)];
        let mut last = 0;
        while last < FRAMES {
            match shm.try_publish(&refs, true) {
                Some(s) => last = s,
                None => thread::yield_now(),
            }
        }
        shm.writer().close();
        shm.futex.wake();
        for s in subs {
            assert_eq!(s.join().unwrap(), FRAMES, "closed before the last frame");
        }
    });
}
