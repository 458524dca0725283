//! Leasing frames ([`Subscriber::next_frame`], `docs/protocol.md` §5.2):
//! the ring read, the wait ([`WaitStrategy`]), moving to a new ring after a
//! stream change.

use super::engine::{Subscriber, SOCKET_POLL_EVERY};
use super::error::RecvError;
use super::frame::Frame;
use super::reconnect::Recovery;
use crate::layout::{FLAG_DISCONTINUITY, LEASES_PER_ROW};
use crate::ring::{Acquire, Cursor};
use crate::runtime::backend::Importer;
use crate::runtime::clock;
use crate::runtime::futex;
use crate::runtime::wait;
use std::prelude::rust_2021::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
#[cfg(doc)]
use {
    super::error::SubscriberStats, super::options::SubscribeOptions,
    crate::runtime::wait::WaitStrategy,
};

/// [`Subscriber::spin_plan`]'s answer.
enum SpinPlan {
    /// Busy-wait on `wake` until this instant.
    Spin(Instant),
    /// Napped until the spin window (or a commit): look at the ring again.
    Napped,
    /// Sleep on the futex.
    Sleep,
}

impl<B: Importer> Subscriber<B> {
    /// The next frame for this subscriber's delivery mode, waiting at most
    /// `timeout`.
    ///
    /// NewestOnly returns the newest committed frame newer than the last one
    /// returned; InOrder the next in sequence. Frames that were skipped or
    /// lost are counted in [`Frame::skipped`] and [`SubscriberStats::dropped`].
    /// After a stream change the old ring's frames come first, then the new
    /// ring's ([`Frame::stream_changed`] on its first). After the publisher
    /// is gone, the frames still in the ring are delivered, then
    /// [`RecvError::Disconnected`] — or, with [`SubscribeOptions::reconnect`],
    /// the frames of the next publisher on the key (the first one flagged
    /// `FLAG_DISCONTINUITY`).
    pub fn next_frame(&self, timeout: Duration) -> Result<Frame<'_, B>, RecvError> {
        if !self.opts.frames {
            return Err(RecvError::NotSubscribed);
        }
        // A poll's deadline is any instant already past (the last socket
        // read): it saves a clock read per empty poll.
        let now = Instant::now();
        // A timeout past what `Instant` can hold waits "forever".
        let deadline = clock::deadline_from(now, timeout);
        // The spin of `opts.wait` happens at most once per call.
        let mut spun = false;
        loop {
            let ring = Arc::clone(&self.conn.borrow().ring);
            let used = ring.leases.book().entries;
            let entry = (0..LEASES_PER_ROW)
                .find(|i| used & (1 << i) == 0)
                .ok_or(RecvError::TooManyLeases)?;
            let reader = ring.leases.reader();
            let wake = reader.words().wake().load(crate::sync::Ordering::SeqCst);
            // Read before acquiring: every frame committed before the close
            // (or before the socket EOF we saw) is visible to this acquire.
            let closed = reader.words().is_closed();
            let finished = closed || self.conn.borrow().end.is_some();
            if let Acquire::Frame(lease) =
                reader.acquire(ring.leases.mode(), self.cursor.get(), entry)
            {
                self.cursor.set(Cursor {
                    last_seq: lease.seq,
                });
                ring.leases.book().entries |= 1 << entry;
                let mut st = self.stats.get();
                st.received += 1;
                st.dropped = st.dropped.saturating_add(lease.skipped);
                self.stats.set(st);
                let mut meta = reader.meta(&lease);
                if self.opts.wait.anticipate {
                    let mut pace = self.pace.get();
                    pace.observe(meta.publish_ns);
                    self.pace.set(pace);
                }
                if self.announce_gap.replace(false) {
                    meta.flags |= FLAG_DISCONTINUITY;
                }
                let changed = self.announce_change.replace(false);
                return Ok(Frame::new(ring, lease, meta, changed));
            }
            if finished {
                // A WELCOME or GOODBYE sent before the close is in the socket.
                self.service_socket()?;
                if closed && self.switch_ring() {
                    continue;
                }
                match self.recover(deadline) {
                    Recovery::Reconnected => continue,
                    Recovery::Disconnected => return Err(RecvError::Disconnected),
                    Recovery::Wait(until) => {
                        if Instant::now() >= deadline {
                            return Err(RecvError::Timeout(timeout));
                        }
                        let until = until.min(deadline);
                        std::thread::sleep(
                            until
                                .saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(10)),
                        );
                        continue;
                    }
                }
            }
            // The ring is open and empty. Everything the socket can bring
            // that matters now (GOODBYE, STREAM_CHANGED, EOF) is followed or
            // preceded by the ring's close, seen above without a syscall, so
            // a polling caller (`timeout` zero) reads the socket at most
            // every SOCKET_POLL_EVERY: an empty poll is a few loads, not a
            // `recvmsg`.
            let mut now = Instant::now();
            if now.saturating_duration_since(self.socket_read_at.get()) >= SOCKET_POLL_EVERY
                || timeout > SOCKET_POLL_EVERY
            {
                self.service_socket()?;
                self.socket_read_at.set(now);
                now = Instant::now();
            }
            if now >= deadline {
                return Err(RecvError::Timeout(timeout));
            }
            let word = ring.leases.reader().words().wake();
            if !spun {
                match self.spin_plan(now, deadline, word, wake) {
                    SpinPlan::Spin(until) => {
                        spun = true;
                        if wait::spin_until_changed(word, wake, until) {
                            let mut st = self.stats.get();
                            st.spin_hits += 1;
                            self.stats.set(st);
                        }
                        continue;
                    }
                    SpinPlan::Napped => continue,
                    SpinPlan::Sleep => {}
                }
            }
            // Slices bound how late a dead publisher (socket EOF) is noticed.
            futex::wait(word, wake, (deadline - now).min(Duration::from_millis(10)));
        }
    }

    /// What [`WaitStrategy`] says to do now that the ring is empty: spin
    /// until an instant; or (anticipation, the next commit not yet due) nap
    /// on the futex until the spin window opens — done here, woken early by
    /// any commit — after which the caller looks at the ring again; or sleep
    /// on the futex (no spin configured, or the pace unknown and no spin).
    fn spin_plan(
        &self,
        now: Instant,
        deadline: Instant,
        word: &crate::sync::AtomicU32,
        seen: u32,
    ) -> SpinPlan {
        let w = self.opts.wait;
        let capped = |from: Instant, d: Duration| clock::deadline_from(from, d).min(deadline);
        if w.anticipate {
            let now_ns = clock::monotonic_ns();
            if let Some((from, until)) = self.pace.get().spin_from(now_ns, w.spin) {
                if from > now_ns {
                    let nap = Duration::from_nanos(from - now_ns)
                        .min(deadline.saturating_duration_since(now))
                        .min(Duration::from_millis(10));
                    futex::wait(word, seen, nap);
                    // Woken by a commit, a slice or the deadline ended, or
                    // the window is open: the caller looks at the ring (and
                    // the clock) again first.
                    return SpinPlan::Napped;
                }
                let left = Duration::from_nanos(until.saturating_sub(now_ns));
                return SpinPlan::Spin(capped(Instant::now(), left.max(w.spin)));
            }
        }
        if w.spin.is_zero() {
            SpinPlan::Sleep
        } else {
            SpinPlan::Spin(capped(now, w.spin))
        }
    }

    /// Moves to the next ring announced by a re-WELCOME, once the current
    /// one is closed and drained. `false` if there is none.
    fn switch_ring(&self) -> bool {
        let mut c = self.conn.borrow_mut();
        let Some(next) = c.next.pop_front() else {
            return false;
        };
        // Everything of the old rings is consumed or lost: tell the publisher
        // (it frees the old slots once no reader needs them, §5.6).
        next.leases.reader().mark_consumed(next.start_seq);
        tracing::info!(
            width = next.stream.width,
            height = next.stream.height,
            generation = next.stream.generation,
            "stream changed; reading the new ring"
        );
        c.ring = next;
        drop(c);
        self.announce_change.set(true);
        let mut st = self.stats.get();
        st.stream_changes += 1;
        self.stats.set(st);
        true
    }
}
