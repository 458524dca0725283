//! What can go wrong opening and reading a [`Demuxer`](super::Demuxer), and
//! the mapping of libavformat's errors of a URL to what an operator can act
//! on.

#[cfg(doc)]
use super::{Demuxer, StopFlag, UrlOptions};
use ffmpeg_next as ffmpeg;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Errors of [`Demuxer::open`].
#[derive(Debug, Error)]
pub enum OpenError {
    /// The stop flag ([`StopFlag`]) was set while opening.
    #[error("{0}: opening was interrupted by the stop flag")]
    Interrupted(PathBuf),
    /// Nothing exists at the path.
    #[error("{0}: no such file")]
    NotFound(PathBuf),
    /// The path exists but cannot be inspected (e.g. permission denied).
    #[error("{path}: cannot access: {source}")]
    Io {
        /// The path given to [`Demuxer::open`].
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The path cannot be handed to FFmpeg, which takes a NUL-terminated
    /// UTF-8 string.
    #[error("{0}: path is not valid UTF-8 or contains a NUL byte")]
    UnsupportedPath(PathBuf),
    /// The path is a directory, libavformat cannot open the file, or the file
    /// holds no streams.
    #[error("{path}: not a media file: {reason}")]
    NotMedia {
        /// The path given to [`Demuxer::open`].
        path: PathBuf,
        /// What went wrong (FFmpeg's error text or this crate's).
        reason: String,
    },
    /// The file has streams, but none of them is video.
    #[error("{0}: no video stream")]
    NoVideoStream(PathBuf),
    /// The best video stream is not H.264 or HEVC.
    #[error("{path}: unsupported video codec {codec} (only h264 and hevc are supported)")]
    UnsupportedCodec {
        /// The path given to [`Demuxer::open`], or for [`Demuxer::open_url`]
        /// the URL with any credentials redacted.
        path: PathBuf,
        /// FFmpeg's short name of the codec (`avcodec_get_name`), e.g. `mpeg4`.
        codec: String,
    },
    /// [`Demuxer::open_url`]: the URL contains a NUL byte or has no
    /// `scheme://`.
    #[error("{url}: not a valid URL: {reason}")]
    InvalidUrl {
        /// The URL, credentials redacted.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// [`Demuxer::open_url`]: nothing listens at the URL's host and port
    /// (the TCP connection was refused: `ECONNREFUSED`).
    #[error("{url}: connection refused (is the camera or server up, and the port right?)")]
    Refused {
        /// The URL, credentials redacted.
        url: String,
    },
    /// [`Demuxer::open_url`]: the server answered, but has no stream at this
    /// path (RTSP / HTTP 404 Not Found: `AVERROR_HTTP_NOT_FOUND`).
    #[error("{url}: the server has no such stream (404 Not Found); check the path")]
    StreamNotFound {
        /// The URL, credentials redacted.
        url: String,
    },
    /// [`Demuxer::open_url`]: the server refused the credentials (401
    /// Unauthorized, 403 Forbidden).
    #[error("{url}: access denied by the server ({source}); check the user name and password")]
    Unauthorized {
        /// The URL, credentials redacted.
        url: String,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// [`Demuxer::open_url`]: opening (connection, RTSP DESCRIBE / SETUP /
    /// PLAY, reading enough packets to describe the stream) did not finish
    /// within [`UrlOptions::io_timeout`].
    #[error("{url}: no answer within {after:?} (the host or the camera does not respond)")]
    TimedOut {
        /// The URL, credentials redacted.
        url: String,
        /// The time allowed ([`UrlOptions::io_timeout`]).
        after: Duration,
    },
    /// [`Demuxer::open_url`]: libavformat failed to open the URL for another
    /// reason (unresolvable host, unsupported protocol, bad server reply...).
    #[error("{url}: cannot open: {source}")]
    Network {
        /// The URL, credentials redacted.
        url: String,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
}

/// Errors of [`Demuxer::read_packet`] and [`Demuxer::rewind`].
#[derive(Debug, Error)]
pub enum DemuxError {
    /// The stop flag ([`StopFlag`]) was set during a blocking read.
    #[error("{0}: reading was interrupted by the stop flag")]
    Interrupted(PathBuf),
    /// `av_read_frame` failed with something other than end of file.
    #[error("{path}: reading a packet failed: {source}")]
    Read {
        /// The demuxed file, or the URL with credentials redacted.
        path: PathBuf,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// A URL source ([`Demuxer::open_url`]) delivered no packet for
    /// [`UrlOptions::io_timeout`]: the camera or the network stopped. The
    /// demuxer is unusable afterwards; open the URL again to reconnect.
    #[error("{url}: no data for {after:?} (the source stalled or went away)")]
    Stalled {
        /// The URL, credentials redacted.
        url: String,
        /// How long the read waited ([`UrlOptions::io_timeout`]).
        after: Duration,
    },
    /// Seeking back to the start failed, and so did reopening the file.
    #[error("{path}: rewinding to the start failed: {reason}")]
    Rewind {
        /// The demuxed file.
        path: PathBuf,
        /// FFmpeg's seek error and the reopen error.
        reason: String,
    },
}

pub(super) fn is_errno(e: &ffmpeg::Error, errno: i32) -> bool {
    matches!(e, ffmpeg::Error::Other { errno: n } if *n == errno)
}

/// Maps `avformat_open_input` / `avformat_find_stream_info` failures of a
/// URL to the [`OpenError`] an operator can act on. `expired`: the interrupt
/// deadline had passed when the open returned.
pub(super) fn classify_open_error(
    source: ffmpeg::Error,
    expired: bool,
    url: String,
    io_timeout: Duration,
) -> OpenError {
    use ffmpeg::Error as E;
    match source {
        _ if is_errno(&source, ffmpeg::error::ECONNREFUSED) => OpenError::Refused { url },
        E::HttpNotFound | E::StreamNotFound => OpenError::StreamNotFound { url },
        E::HttpUnauthorized | E::HttpForbidden => OpenError::Unauthorized { url, source },
        _ if expired
            || matches!(source, E::Exit)
            || is_errno(&source, ffmpeg::error::ETIMEDOUT) =>
        {
            OpenError::TimedOut {
                url,
                after: io_timeout,
            }
        }
        source => OpenError::Network { url, source },
    }
}
