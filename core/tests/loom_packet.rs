//! loom model of the packet ring's seqlock (`docs/protocol.md` §9.4, §9.5).
//!
//! Run with:
//! `RUSTFLAGS="--cfg cuframes_loom" cargo test -p cuframes-core --release --test loom_packet`
//! (`LOOM_MAX_PREEMPTIONS` defaults to 3 here). Compiled only under that cfg.
//!
//! A writer publishes packets into a ring of 2 slots and 16 data bytes (so
//! both slot reuse and byte reclaim happen) while a reader reads. Checked in
//! every interleaving: a read that returns a packet returns exactly the bytes
//! and timestamps published under its sequence number (no torn read passes
//! the post-check), sequence numbers only grow, and a lost packet is reported
//! as a discontinuity with the right `skipped` count. The payload copies are
//! `Relaxed` atomic words under loom (`packet/bulk.rs`), so only the
//! seqlock's fences order them: under `--cfg cuframes_loom_mutation` the
//! reader's acquire fence is left out and loom must find a torn read
//! (`.ci/loom mutation`).
//!
//! `no_wake_up_is_lost` models the layout-3 wait (§9.5 *Waiting*): a reader
//! loads `wake`, reads, and sleeps on `wake` with the value it loaded; the
//! writer publishes, bumps `wake`, wakes, and finally closes. The futex has
//! no timeout here, so a lost wake-up leaves the reader asleep forever and
//! loom reports a deadlock.
#![cfg(cuframes_loom)]

use cuframes_core::packet::{
    PacketCursor, PacketGeometry, PacketRead, PacketReader, PacketRingInit, PacketWriter,
    AV_CODEC_ID_HEVC, PACKET_KEY,
};
use cuframes_core::sync::AtomicU64;
use loom::sync::{Arc, Condvar, Mutex};

/// Sizes of the packets the writer publishes (seq = index).
const SIZES: [usize; 3] = [6, 10, 7];

fn payload(seq: u64) -> Vec<u8> {
    (0..SIZES[seq as usize])
        .map(|i| (seq as u8).wrapping_mul(40).wrapping_add(i as u8 + 1))
        .collect()
}

struct Seen {
    last: Option<u64>,
}

impl Seen {
    fn check(&mut self, read: PacketRead, buf: &[u8]) -> bool {
        let PacketRead::Packet(m) = read else {
            return false;
        };
        assert_eq!(
            &buf[..m.len],
            payload(m.seq).as_slice(),
            "torn packet {}",
            m.seq
        );
        assert_eq!(m.pts_ns, Some(m.seq as i64 * 10));
        assert_eq!(m.dts_ns, Some(-(m.seq as i64)));
        if let Some(l) = self.last {
            assert!(m.seq > l);
            assert_eq!(m.discontinuity, m.seq > l + 1);
            assert_eq!(m.skipped, m.seq - l - 1);
        } else {
            assert!(!m.discontinuity);
        }
        self.last = Some(m.seq);
        true
    }
}

/// loom's model builder, `LOOM_MAX_PREEMPTIONS` defaulting to 3.
fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b
}

/// An initialised region of 2 slots and 16 data bytes, and the writer's
/// position for [`PacketWriter::at`] in another thread.
fn initialised_region() -> (PacketGeometry, Arc<Vec<AtomicU64>>, (u64, u64, u32)) {
    let geo = PacketGeometry::new(2, 16).unwrap();
    let words: Arc<Vec<AtomicU64>> = Arc::new(
        (0..geo.region_size() / 8)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let mut w = PacketWriter::new(&words, geo).unwrap();
    w.init(PacketRingInit {
        codec_id: AV_CODEC_ID_HEVC,
        producer_pid: 1,
    });
    let pos = w.position();
    (geo, words, pos)
}

fn model(reads_during: usize) {
    builder().check(move || {
        let (geo, words, pos) = initialised_region();
        let words2 = Arc::clone(&words);
        let writer = loom::thread::spawn(move || {
            // `at`, not `new`: the writer thread loads nothing (loom's DPOR
            // misses races hidden behind a thread's own earlier load).
            let mut w = PacketWriter::at(&words2, geo, pos).unwrap();
            for seq in 0..SIZES.len() as u64 {
                let s = w
                    .publish(
                        &payload(seq),
                        seq as i64 * 10,
                        -(seq as i64),
                        PACKET_KEY,
                        16,
                    )
                    .unwrap();
                assert_eq!(s, seq);
            }
        });
        let r = PacketReader::open(&words).unwrap();
        let mut c = PacketCursor::joining();
        let mut buf = [0u8; 16];
        let mut seen = Seen { last: None };
        for _ in 0..reads_during {
            let got = r.read(&mut c, &mut buf).unwrap();
            seen.check(got, &buf);
        }
        writer.join().unwrap();
        // Quiescent: the newest packet is always delivered, nothing after it.
        while seen.check(r.read(&mut c, &mut buf).unwrap(), &buf) {}
        assert_eq!(seen.last, Some(SIZES.len() as u64 - 1));
    });
}

#[test]
fn concurrent_reads_return_exactly_what_was_published() {
    model(1);
}

#[test]
fn two_concurrent_reads_detect_overruns() {
    model(2);
}

/// FUTEX_WAIT / FUTEX_WAKE on the ring's `wake` word, without a timeout.
struct Futex {
    lock: Mutex<()>,
    cv: Condvar,
}

impl Futex {
    /// Sleeps while `wake` still holds `expected` (the kernel's check is
    /// atomic with respect to FUTEX_WAKE, as the mutex makes it here).
    fn wait(&self, r: &PacketReader<'_>, expected: u32) {
        let mut g = self.lock.lock().unwrap();
        while r.wake_value() == Some(expected) {
            g = self.cv.wait(g).unwrap();
        }
    }

    fn wake(&self) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

#[test]
fn no_wake_up_is_lost() {
    builder().check(|| {
        // Two 8-byte-padded packets fill the 16-byte area exactly: none is
        // lost, so the reader must end on the last one.
        const LENS: [usize; 2] = [6, 7];
        let (geo, words, pos) = initialised_region();
        let futex = Arc::new(Futex {
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let (words2, futex2) = (Arc::clone(&words), Arc::clone(&futex));
        let writer = loom::thread::spawn(move || {
            let mut w = PacketWriter::at(&words2, geo, pos).unwrap();
            for (seq, len) in LENS.iter().enumerate() {
                let data = vec![seq as u8 + 1; *len];
                w.publish(&data, 0, 0, PACKET_KEY, 16).unwrap();
                futex2.wake();
            }
            w.close();
            futex2.wake();
        });
        let r = PacketReader::open(&words).unwrap();
        let mut c = PacketCursor::joining();
        let mut buf = [0u8; 16];
        let mut last = None;
        loop {
            // `wake` before the ring (and the closed state before the ring,
            // so every packet published before the close is read).
            let seen = r.wake_value().unwrap();
            let closed = r.is_closed();
            match r.read(&mut c, &mut buf).unwrap() {
                PacketRead::Packet(m) => {
                    assert_eq!(
                        &buf[..m.len],
                        &vec![m.seq as u8 + 1; LENS[m.seq as usize]][..]
                    );
                    assert!(!m.discontinuity);
                    last = Some(m.seq);
                }
                PacketRead::Empty if closed => break,
                PacketRead::Empty => futex.wait(&r, seen),
            }
        }
        writer.join().unwrap();
        assert_eq!(
            last,
            Some(LENS.len() as u64 - 1),
            "closed before the last packet"
        );
    });
}
