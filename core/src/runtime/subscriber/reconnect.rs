//! Automatic reconnection (`docs/protocol.md` §5.6, [`Reconnect`]): once a
//! connection ended and its rings are drained, connect again with backoff.

use super::connect::Attach;
use super::connect::Welcomed;
use super::engine::Subscriber;
use super::error::ConnectError;
#[cfg(doc)]
use super::options::Reconnect;
use super::ring::same_geometry;
use crate::backoff::Next;
use crate::ring::Cursor;
use crate::runtime::backend::Importer;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

/// What to do once a connection has ended and its rings are drained.
pub(super) enum Recovery {
    /// A new connection is up: read again.
    Reconnected,
    /// Not yet: wait until this instant (or the caller's deadline).
    Wait(Instant),
    /// The end is final.
    Disconnected,
}

impl<B: Importer> Subscriber<B> {
    /// After the connection ended (or its ring closed) and everything was
    /// delivered: reconnect, wait, or give up.
    pub(super) fn recover(&self, deadline: Instant) -> Recovery {
        let end = self.conn.borrow().end;
        let now = Instant::now();
        let Some(end) = end else {
            // Closed region, no GOODBYE or EOF yet: wait for the reason (a
            // publisher closes its ring, then says GOODBYE, §5.6), so that
            // `end_reason` can tell a clean end from a crash.
            return Recovery::Wait(now + Duration::from_millis(10));
        };
        if self.opts.reconnect.is_none() || !end.reconnects() {
            return Recovery::Disconnected;
        }
        let mut retry = self.retry.get();
        let had_given_up = retry.has_given_up();
        match retry.poll(now) {
            Next::GiveUp => {
                self.retry.set(retry);
                if !had_given_up {
                    tracing::warn!(key = %self.key, "publisher did not come back; giving up");
                }
                return Recovery::Disconnected;
            }
            Next::RetryAt(t) if t > now => {
                self.retry.set(retry);
                return Recovery::Wait(t);
            }
            Next::RetryAt(_) => {}
        }
        // One attempt; its handshake wait is bounded by the caller's deadline
        // (at least 50 ms, so a live publisher can answer).
        let wait = deadline
            .saturating_duration_since(now)
            .max(Duration::from_millis(50))
            .min(self.opts.handshake_timeout);
        let attempt = Welcomed::start(&self.key, self.opts.clone(), wait, self.backend.gpu_uuid())
            .and_then(|w| w.into_conn(Attach::Again(&self.backend, &self.peer), &self.revoked));
        match attempt {
            Ok((conn, _, start)) => {
                let old_stream = self.conn.borrow().ring.stream;
                let new_stream = conn.ring.stream;
                {
                    let mut c = self.conn.borrow_mut();
                    let stats = c.packets.as_ref().map(|p| p.stats.get());
                    *c = conn;
                    if let (Some(p), Some(s)) = (&c.packets, stats) {
                        p.stats.set(s);
                        p.gap.set(true);
                    }
                }
                self.cursor.set(Cursor { last_seq: start });
                retry.on_success();
                self.retry.set(retry);
                self.announce_gap.set(true);
                let mut st = self.stats.get();
                st.reconnects += 1;
                if !same_geometry(&old_stream, &new_stream) {
                    self.announce_change.set(true);
                    st.stream_changes += 1;
                }
                self.stats.set(st);
                tracing::info!(key = %self.key, "reconnected to the publisher");
                Recovery::Reconnected
            }
            Err(e) => {
                // Nobody listening yet is what waiting looks like; anything
                // else (another uid, memory kind or GPU, a refusal) would
                // be retried silently forever: say it, once per kind.
                let text = e.to_string();
                if matches!(e, ConnectError::NoPublisher { .. }) {
                    tracing::debug!(key = %self.key, "reconnect attempt failed: {text}");
                } else if *self.retry_warned.borrow() != text {
                    tracing::warn!(key = %self.key, "reconnect attempt refused, still retrying: {text}");
                    *self.retry_warned.borrow_mut() = text;
                }
                let next = retry.on_failure(Instant::now());
                self.retry.set(retry);
                match next {
                    Next::RetryAt(t) => Recovery::Wait(t),
                    Next::GiveUp => {
                        tracing::warn!(key = %self.key, "publisher did not come back; giving up");
                        Recovery::Disconnected
                    }
                }
            }
        }
    }

    /// After the packet ring is drained and the publisher gone: reconnect,
    /// wait or give up (as for frames).
    pub(super) fn recover_packets(&self, deadline: Instant) -> Option<Option<Instant>> {
        match self.recover(deadline) {
            Recovery::Reconnected => Some(None),
            Recovery::Wait(t) => Some(Some(t)),
            Recovery::Disconnected => None,
        }
    }
}
