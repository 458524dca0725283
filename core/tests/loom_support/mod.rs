//! Shared memory for the loom models: one control region of 2 slots, lease
//! rows, per-slot payload words and a futex stand-in, all loom objects.
//!
//! Frame payloads are atomic words (relaxed), not bytes, so the model checker
//! sees every read and write of frame data: a reader that observes a payload
//! other than its lease's frame has read a slot the publisher was rewriting.
#![allow(dead_code)]

use cuframes_core::layout::{ControlLayout, StreamDesc, LEASES_PER_ROW};
use cuframes_core::ring::{
    Acquire, Claim, ControlWords, Cursor, FrameMeta, Lease, LeaseWords, ReaderRef, RingReader,
    RingWriter,
};
use cuframes_core::sync::{AtomicU32, AtomicU64, Ordering};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, SyncKind};
use loom::sync::{Condvar, Mutex};

/// `loom::model(f)`, printing how many executions loom explored (shown with
/// `--nocapture`; recorded in `docs/verification.md`).
pub fn model<F: Fn() + Sync + Send + 'static>(name: &str, f: F) {
    // A process-local counter outside the model, not a shared-memory word.
    let runs = std::sync::Arc::new(std::sync::Mutex::new(0u64));
    let counter = runs.clone();
    loom::model(move || {
        *counter.lock().unwrap() += 1;
        f();
    });
    println!("{name}: {} executions", runs.lock().unwrap());
}

/// Slots in the modelled ring (the protocol's minimum).
pub const SLOTS: u32 = 2;
/// Payload words per slot.
pub const PAYLOAD_WORDS: usize = 2;
/// Words of a lease row.
const ROW_WORDS: usize = 16;

/// The payload word `k` of frame `seq`.
pub fn payload(seq: u64, k: usize) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64
}

/// `futex(2)` as the kernel gives it: `wait` sleeps only while the word
/// still holds `expected`, checked under the same lock `wake` takes.
pub struct Futex {
    lock: Mutex<()>,
    cv: Condvar,
}

impl Futex {
    fn new() -> Self {
        Futex {
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    /// FUTEX_WAIT(word, expected) without a timeout: a lost wake-up hangs,
    /// which loom reports as a deadlock.
    pub fn wait(&self, word: &AtomicU32, expected: u32) {
        let mut g = self.lock.lock().unwrap();
        while word.load(Ordering::SeqCst) == expected {
            g = self.cv.wait(g).unwrap();
        }
    }

    /// FUTEX_WAKE(word, all).
    pub fn wake(&self) {
        let _g = self.lock.lock().unwrap();
        self.cv.notify_all();
    }
}

/// Everything the processes share.
pub struct Shm {
    ctl: Vec<AtomicU64>,
    wake: AtomicU32,
    release_wake: AtomicU32,
    rows: Vec<Vec<AtomicU64>>,
    payload: Vec<AtomicU64>,
    /// Ghost state, not part of the protocol: `overwritten[s]` is set by the
    /// publisher right after it claimed the slot that held frame `s`.
    overwritten: Vec<AtomicU64>,
    /// Ghost: the lease value the publisher revoked (0: none).
    pub revoked: AtomicU64,
    pub futex: Futex,
}

fn words(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Shm {
    /// A region initialised by the publisher, `readers` zeroed lease rows,
    /// room for frames up to `max_seq`.
    pub fn new(readers: usize, max_seq: u64) -> Self {
        let layout = ControlLayout::new(SLOTS).unwrap();
        let shm = Shm {
            ctl: words((layout.slot_offset(SLOTS) / 8) as usize),
            wake: AtomicU32::new(0),
            release_wake: AtomicU32::new(0),
            rows: (0..readers).map(|_| words(ROW_WORDS)).collect(),
            payload: words(SLOTS as usize * PAYLOAD_WORDS),
            overwritten: words(max_seq as usize + 1),
            revoked: AtomicU64::new(0),
            futex: Futex::new(),
        };
        let s = StreamDesc::packed(16, 16, PixelFormat::Nv12, Codec::H264).unwrap();
        let h = layout.header(
            s.frame_size,
            MemoryKind::HostMemfd,
            SyncKind::HostFence,
            [0; 16],
        );
        shm.writer().init(&h, &s);
        for r in 0..readers {
            shm.row(r).init(0);
        }
        shm
    }

    pub fn ctl(&self) -> ControlWords<'_> {
        ControlWords::new(
            &self.ctl,
            &self.wake,
            &self.release_wake,
            ControlLayout::new(SLOTS).unwrap(),
        )
        .unwrap()
    }

    pub fn writer(&self) -> RingWriter<'_> {
        RingWriter::new(self.ctl())
    }

    pub fn row(&self, r: usize) -> LeaseWords<'_> {
        LeaseWords::new(&self.rows[r]).unwrap()
    }

    pub fn reader(&self, r: usize) -> RingReader<'_> {
        RingReader::new(self.ctl(), self.row(r))
    }

    /// The publisher's view of reader `r` (`in_order`: an InOrder subscriber
    /// admitted at `start_seq` 0).
    pub fn reader_ref(&self, r: usize, in_order: bool) -> ReaderRef<'_> {
        ReaderRef {
            row: self.row(r),
            unread_floor: in_order.then_some(0),
            revoked: [0; LEASES_PER_ROW],
        }
    }

    /// One publish attempt: claim, write the payload, commit, wake. `None`
    /// when every slot is busy (DropFrame: counted as a drop).
    pub fn try_publish(&self, readers: &[ReaderRef<'_>], honour_unread: bool) -> Option<u64> {
        let w = self.writer();
        match w.claim(readers, honour_unread) {
            Claim::Claimed(c) => {
                if c.prev_seq != 0 {
                    self.overwritten[c.prev_seq as usize].store(1, Ordering::SeqCst);
                }
                let seq = w.next_seq();
                for k in 0..PAYLOAD_WORDS {
                    self.payload[c.slot as usize * PAYLOAD_WORDS + k]
                        .store(payload(seq, k), Ordering::Relaxed);
                }
                let meta = FrameMeta {
                    source_index: seq,
                    ..Default::default()
                };
                assert_eq!(w.commit(c, &meta), seq);
                self.futex.wake();
                Some(seq)
            }
            Claim::Busy { .. } => {
                w.count_drop();
                None
            }
        }
    }

    /// Claims a slot, writes only the first payload word of the next frame
    /// (a write that fails half way), then abandons the claim.
    pub fn failed_publish(&self, readers: &[ReaderRef<'_>]) {
        let w = self.writer();
        if let Claim::Claimed(c) = w.claim(readers, false) {
            self.payload[c.slot as usize * PAYLOAD_WORDS]
                .store(payload(w.next_seq(), 0), Ordering::Relaxed);
            w.abandon(c);
        }
    }

    /// Whether frame `seq`'s slot was claimed for a newer frame.
    pub fn was_overwritten(&self, seq: u64) -> bool {
        self.overwritten[seq as usize].load(Ordering::SeqCst) != 0
    }

    /// Reads the leased frame's payload and metadata, then post-checks.
    /// Returns whether the lease was still valid; a valid lease must have
    /// shown exactly its frame.
    pub fn read(&self, r: &RingReader<'_>, l: &Lease) -> bool {
        let meta = r.meta(l);
        let data: Vec<u64> = (0..PAYLOAD_WORDS)
            .map(|k| self.payload[l.slot as usize * PAYLOAD_WORDS + k].load(Ordering::Relaxed))
            .collect();
        let valid = r.still_valid(l);
        if valid {
            assert_eq!(meta.source_index, l.seq, "metadata of another frame");
            for (k, d) in data.iter().enumerate() {
                assert_eq!(
                    *d,
                    payload(l.seq, k),
                    "frame {} torn in slot {}",
                    l.seq,
                    l.slot
                );
            }
        }
        valid
    }
}

/// One subscriber's acquire + read + release; updates `cursor`. Returns the
/// lease and whether it was valid, or `None` on Empty.
pub fn take(shm: &Shm, r: usize, mode: DeliveryMode, cursor: &mut Cursor) -> Option<(Lease, bool)> {
    let reader = shm.reader(r);
    match reader.acquire(mode, *cursor, 0) {
        Acquire::Frame(l) => {
            assert!(
                l.seq > cursor.last_seq,
                "went back from {} to {}",
                cursor.last_seq,
                l.seq
            );
            assert_eq!(l.skipped, l.seq - cursor.last_seq - 1, "skip count");
            let valid = shm.read(&reader, &l);
            reader.release(&l, mode);
            cursor.last_seq = l.seq;
            Some((l, valid))
        }
        Acquire::Empty => None,
    }
}
