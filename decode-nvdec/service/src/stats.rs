//! Per-stream counters and state, shared between a stream's thread and
//! whoever reports on it (the stats line of `cuframes-publish`).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a stream is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Opening its input (first time or after a gap).
    Connecting,
    /// Frames are flowing.
    Streaming,
    /// The input failed; the next attempt is due in this long from the
    /// moment the state was set.
    Backoff(Duration),
    /// The input ended (end of file without `loop`, or `max_frames`).
    Ended,
    /// Stopped on request (SIGTERM / [`Service::stop`](super::Service::stop)).
    Stopped,
    /// Gave up: an error that retrying cannot fix (see `last_error`).
    Failed,
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamState::Connecting => f.write_str("connecting"),
            StreamState::Streaming => f.write_str("streaming"),
            StreamState::Backoff(d) => write!(f, "retry in {:.1} s", d.as_secs_f64()),
            StreamState::Ended => f.write_str("ended"),
            StreamState::Stopped => f.write_str("stopped"),
            StreamState::Failed => f.write_str("failed"),
        }
    }
}

/// A snapshot of one stream's counters.
#[derive(Debug, Clone)]
pub struct StreamStats {
    /// The stream key.
    pub key: String,
    /// Current state.
    pub state: StreamState,
    /// Frames committed to the ring.
    pub frames: u64,
    /// Frames dropped because every slot was leased.
    pub dropped: u64,
    /// Packets published in the packet ring.
    pub packets: u64,
    /// Packets skipped (not convertible to Annex B, or refused by the ring).
    pub packets_skipped: u64,
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Leases the publisher revoked (held past `lease_timeout`).
    pub revoked_leases: u64,
    /// Times the input was reopened after it failed or stalled.
    pub reconnects: u64,
    /// Resolution or pixel-format changes (each a new ring + STREAM_CHANGED).
    pub stream_changes: u64,
    /// Times a file input started over (`loop`).
    pub loops: u64,
    /// Packets the decoder refused as corrupt: skipped with a warning, the
    /// next frame flagged DISCONTINUITY.
    pub corrupt_packets: u64,
    /// Current geometry, `(width, height)` in pixels, once known.
    pub size: Option<(u32, u32)>,
    /// The last error of the input or decoder, with when it happened.
    pub last_error: Option<(Instant, String)>,
    /// When the last frame was committed.
    pub last_frame: Option<Instant>,
    /// When the stream started.
    pub started: Instant,
}

impl StreamStats {
    /// Zeroed counters for `key`, state [`StreamState::Connecting`].
    pub fn new(key: &str) -> Self {
        StreamStats {
            key: key.to_owned(),
            state: StreamState::Connecting,
            frames: 0,
            dropped: 0,
            packets: 0,
            packets_skipped: 0,
            subscribers: 0,
            revoked_leases: 0,
            reconnects: 0,
            stream_changes: 0,
            loops: 0,
            corrupt_packets: 0,
            size: None,
            last_error: None,
            last_frame: None,
            started: Instant::now(),
        }
    }

    /// Time since the last committed frame, if any.
    pub fn since_last_frame(&self) -> Option<Duration> {
        self.last_frame.map(|t| t.elapsed())
    }
}

/// A stream's stats behind a lock, cloned cheaply between threads.
#[derive(Debug, Clone)]
pub struct SharedStats(Arc<Mutex<StreamStats>>);

impl SharedStats {
    /// New counters for `key`.
    pub fn new(key: &str) -> Self {
        SharedStats(Arc::new(Mutex::new(StreamStats::new(key))))
    }

    /// The counters, locked (a poisoned lock still gives them).
    pub fn lock(&self) -> MutexGuard<'_, StreamStats> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> StreamStats {
        self.lock().clone()
    }

    /// Records an input or decoder error (also logged by the caller).
    pub fn error(&self, text: String) {
        self.lock().last_error = Some((Instant::now(), text));
    }

    /// Sets the state.
    pub fn set_state(&self, state: StreamState) {
        self.lock().state = state;
    }
}

/// Formats one stats line: `now` and `prev` (the snapshot of the previous
/// line, if any) give the frame rate over the interval.
pub fn stats_line(now: &StreamStats, prev: Option<(&StreamStats, Instant)>) -> String {
    let fps = match prev {
        Some((p, at)) => {
            let dt = at.elapsed().as_secs_f64();
            if dt > 0.0 {
                now.frames.saturating_sub(p.frames) as f64 / dt
            } else {
                0.0
            }
        }
        None => {
            let dt = now.started.elapsed().as_secs_f64();
            if dt > 0.0 {
                now.frames as f64 / dt
            } else {
                0.0
            }
        }
    };
    let mut line = format!(
        "{}: {}, {:.1} fps, {} frames, {} dropped, {} subscriber(s), {} reconnect(s)",
        now.key, now.state, fps, now.frames, now.dropped, now.subscribers, now.reconnects
    );
    if let Some((w, h)) = now.size {
        line.push_str(&format!(", {w}x{h}"));
    }
    if now.stream_changes > 0 {
        line.push_str(&format!(", {} stream change(s)", now.stream_changes));
    }
    if now.corrupt_packets > 0 {
        line.push_str(&format!(
            ", {} corrupt packet(s) skipped",
            now.corrupt_packets
        ));
    }
    if now.packets > 0 || now.packets_skipped > 0 {
        line.push_str(&format!(
            ", {} packets ({} skipped)",
            now.packets, now.packets_skipped
        ));
    }
    match now.since_last_frame() {
        Some(d) => line.push_str(&format!(", last frame {:.1} s ago", d.as_secs_f64())),
        None => line.push_str(", no frame yet"),
    }
    if let Some((at, e)) = &now.last_error {
        line.push_str(&format!(
            ", last error {:.0} s ago: {e}",
            at.elapsed().as_secs_f64()
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_state_reconnects_and_the_last_error() {
        let s = SharedStats::new("cam7");
        {
            let mut g = s.lock();
            g.frames = 50;
            g.reconnects = 2;
            g.size = Some((640, 360));
        }
        s.error("rtsp://cam/x: Connection refused".into());
        s.set_state(StreamState::Backoff(Duration::from_secs(4)));
        let line = stats_line(&s.snapshot(), None);
        for want in [
            "cam7: retry in 4.0 s",
            "50 frames",
            "2 reconnect(s)",
            "640x360",
            "no frame yet",
            "Connection refused",
        ] {
            assert!(line.contains(want), "{want:?} missing from {line:?}");
        }
    }
}
