//! Network sources: the options of [`Demuxer::open_url`](super::Demuxer::open_url),
//! the stop flag and I/O deadline that libavformat's interrupt callback
//! checks, and credentials kept out of errors and logs.

#[cfg(doc)]
use super::{DemuxError, Demuxer, OpenError};
use cuframes_core::sync::{AtomicU64, Ordering};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How an RTSP source is read: FFmpeg's `rtsp_transport` option of the RTSP
/// demuxer (`libavformat/rtsp.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// FFmpeg's default: RTP over UDP, falling back to RTP interleaved in the
    /// RTSP TCP connection when no UDP packet arrives.
    #[default]
    Auto,
    /// RTP interleaved in the RTSP TCP connection (`rtsp_transport=tcp`):
    /// no loss, works through NAT and firewalls.
    Tcp,
    /// RTP over UDP (`rtsp_transport=udp`): lowest latency; packets may be
    /// lost, and the decoder then conceals or drops pictures.
    Udp,
}

/// A flag that interrupts blocking demuxer calls once set (e.g. by a
/// SIGTERM handler): libavformat's interrupt callback (`AVIOInterruptCB`)
/// checks it, so an open or a read waiting on a FIFO, a device or the
/// network returns [`OpenError::Interrupted`] / [`DemuxError::Interrupted`]
/// within a few milliseconds. Two flags are equal when they share the atomic.
#[derive(Debug, Clone)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for StopFlag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StopFlag {}

/// The default of [`UrlOptions::io_timeout`]: a camera whose connection,
/// or next packet, takes longer than this fails (stall detection).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of [`Demuxer::open_url`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlOptions {
    /// Interrupts the open and every read at once when set (default none:
    /// only `io_timeout` bounds them).
    pub stop: Option<StopFlag>,
    /// RTSP transport (ignored for other protocols).
    pub transport: RtspTransport,
    /// Bound on the whole open (connection, RTSP DESCRIBE / SETUP / PLAY,
    /// `avformat_find_stream_info`), and on the wait for each packet in
    /// [`Demuxer::read_packet`]. Enforced with libavformat's interrupt
    /// callback (`AVIOInterruptCB`), and passed to the RTSP demuxer as its
    /// socket I/O `timeout` (microseconds). Default [`DEFAULT_IO_TIMEOUT`], 5 s.
    pub io_timeout: Duration,
}

impl Default for UrlOptions {
    fn default() -> Self {
        UrlOptions {
            stop: None,
            transport: RtspTransport::Auto,
            io_timeout: DEFAULT_IO_TIMEOUT,
        }
    }
}

/// `url` with the user information of its authority (`user:pass@`)
/// replaced by `***@`, for errors and logs: `rtsp://admin:secret@cam/x`
/// becomes `rtsp://***@cam/x`. Other URLs are returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}***{}", &url[..rest_start], &rest[at..]),
        None => url.to_owned(),
    }
}

/// The deadline the interrupt callback checks: nanoseconds after `base`,
/// `u64::MAX` for none.
#[derive(Debug)]
pub(super) struct Watchdog {
    base: Instant,
    deadline_ns: AtomicU64,
}

impl Watchdog {
    pub(super) fn new() -> Arc<Watchdog> {
        Arc::new(Watchdog {
            base: Instant::now(),
            deadline_ns: AtomicU64::new(u64::MAX),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Arms the deadline `timeout` from now.
    pub(super) fn arm(&self, timeout: Duration) {
        let t = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.deadline_ns
            .store(self.now_ns().saturating_add(t), Ordering::SeqCst);
    }

    pub(super) fn disarm(&self) {
        self.deadline_ns.store(u64::MAX, Ordering::SeqCst);
    }

    /// Whether the armed deadline has passed (what the callback returns:
    /// non-zero makes libavformat abort the blocking call with `AVERROR_EXIT`).
    pub(super) fn expired(&self) -> bool {
        self.now_ns() >= self.deadline_ns.load(Ordering::SeqCst)
    }
}

/// What a URL demuxer needs to reconnect on [`Demuxer::rewind`] and to time
/// out reads. `Debug` shows the redacted URL only.
pub(super) struct UrlSource {
    /// The URL as given, credentials included (never displayed).
    pub(super) url: String,
    /// The URL with credentials redacted, for errors.
    pub(super) redacted: String,
    pub(super) options: UrlOptions,
    pub(super) watchdog: Arc<Watchdog>,
}

impl std::fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlSource")
            .field("url", &self.redacted)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials_only() {
        assert_eq!(
            redact_url("rtsp://admin:s3cr@t@cam.local:554/live?x=1"),
            "rtsp://***@cam.local:554/live?x=1"
        );
        assert_eq!(redact_url("rtsp://user@cam/x"), "rtsp://***@cam/x");
        assert_eq!(redact_url("rtsp://cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(redact_url("rtsp://cam:554"), "rtsp://cam:554");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn watchdog_expires_after_its_timeout() {
        let w = Watchdog::new();
        assert!(!w.expired());
        w.arm(Duration::ZERO);
        assert!(w.expired());
        w.arm(Duration::from_secs(60));
        assert!(!w.expired());
        w.disarm();
        assert!(!w.expired());
    }
}
