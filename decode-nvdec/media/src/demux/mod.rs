//! Demuxing: the best video stream of a file or a network source (RTSP, or
//! any URL libavformat opens) as a sequence of encoded packets.
//!
//! Wraps libavformat (`avformat_open_input`, `avformat_find_stream_info`,
//! `av_find_best_stream`, `av_read_frame`, `avformat_seek_file`, and for
//! URLs the `AVIOInterruptCB` interrupt callback) through `ffmpeg-next`.

use rustix::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use cuframes_core::Codec;
use ffmpeg_next as ffmpeg;

use crate::codecpar;
use crate::time::rescale_to_ns;

mod error;
mod url;

use error::{classify_open_error, is_errno};
pub use error::{DemuxError, OpenError};
pub use url::{redact_url, RtspTransport, StopFlag, UrlOptions, DEFAULT_IO_TIMEOUT};
use url::{UrlSource, Watchdog};

/// Description of the demuxed video stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Codec of the stream (only [`Codec::H264`] or [`Codec::Hevc`]: other
    /// codecs are refused by [`Demuxer::open`]).
    pub codec: Codec,
    /// Coded picture width in pixels from the codec parameters
    /// (`AVCodecParameters::width`), 0 if unknown.
    pub width: u32,
    /// Coded picture height in pixels (`AVCodecParameters::height`), 0 if unknown.
    pub height: u32,
    /// Stream time base `(num, den)`: seconds per tick of packet timestamps
    /// (`AVStream::time_base`), e.g. `(1, 12800)` for the sample MP4.
    pub time_base: (i32, i32),
    /// Frame rate `(num, den)` in frames per second: `AVStream::avg_frame_rate`,
    /// else `AVStream::r_frame_rate`, else `(0, 1)` when unknown.
    pub frame_rate: (i32, i32),
    /// Codec extradata (`AVCodecParameters::extradata`): the `avcC` / `hvcC`
    /// record for MP4 / Matroska, Annex B parameter sets or empty for raw
    /// streams.
    pub extradata: Vec<u8>,
    /// FFmpeg's short codec name (`avcodec_get_name`): `h264` or `hevc`.
    pub codec_name: String,
}

/// One encoded access unit of the chosen video stream, as returned by
/// `av_read_frame`, copied out of FFmpeg's buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Packet {
    /// Encoded bytes: length-prefixed NAL units for MP4 / Matroska (per the
    /// extradata's `avcC` / `hvcC`), Annex B start codes for raw streams and TS.
    pub data: Vec<u8>,
    /// Presentation timestamp in ticks of [`StreamInfo::time_base`].
    pub pts: Option<i64>,
    /// Decode timestamp in ticks of [`StreamInfo::time_base`].
    pub dts: Option<i64>,
    /// [`Packet::pts`] in nanoseconds (`None` if unknown or not representable).
    pub pts_ns: Option<i64>,
    /// [`Packet::dts`] in nanoseconds (`None` if unknown or not representable).
    pub dts_ns: Option<i64>,
    /// Duration in ticks of [`StreamInfo::time_base`], 0 if unknown.
    pub duration: i64,
    /// The packet starts a keyframe (`AV_PKT_FLAG_KEY`).
    pub keyframe: bool,
}

static FFMPEG_INIT: Once = Once::new();

/// Initialises FFmpeg once per process (`ffmpeg::init`); later calls do nothing.
pub(crate) fn init_ffmpeg() {
    FFMPEG_INIT.call_once(|| {
        // With FFmpeg >= 4 there is nothing to register; `init` cannot fail in
        // a way that matters for demuxing or decoding, so its result is unused.
        let _ = ffmpeg::init();
    });
}

/// Reader of the best video stream of a media file (MP4, Matroska, MPEG-TS,
/// raw Annex B `.h264` / `.h265`, anything libavformat probes).
///
/// Owns an `AVFormatContext`. The stream is the one `av_find_best_stream`
/// picks for video; packets of other streams are skipped.
pub struct Demuxer {
    /// The file, or the URL with credentials redacted.
    path: PathBuf,
    /// Set for [`Demuxer::open_url`].
    url: Option<UrlSource>,
    /// Interrupts blocking calls ([`Demuxer::open_interruptible`]).
    stop: Option<StopFlag>,
    input: ffmpeg::format::context::Input,
    /// A FIFO or device opened here (non-blocking) and read by libavformat
    /// as `pipe:<fd>`; declared after `input`, so it is closed after it.
    _pipe: Option<OwnedFd>,
    stream_index: usize,
    params: ffmpeg::codec::Parameters,
    info: StreamInfo,
    /// Start of the stream in `AV_TIME_BASE` (microseconds), the rewind target.
    start_us: i64,
}

impl std::fmt::Debug for Demuxer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demuxer")
            .field("path", &self.path)
            .field("stream_index", &self.stream_index)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn valid_rational(r: ffmpeg::Rational) -> Option<(i32, i32)> {
    (r.numerator() > 0 && r.denominator() > 0).then_some((r.numerator(), r.denominator()))
}

impl Demuxer {
    /// Opens `path` with libavformat (`avformat_open_input` +
    /// `avformat_find_stream_info`) and selects its best video stream
    /// (`av_find_best_stream`).
    ///
    /// The path is checked first so a missing file gives
    /// [`OpenError::NotFound`] and a directory [`OpenError::NotMedia`] rather
    /// than an FFmpeg error code. Only H.264 and HEVC streams are accepted.
    pub fn open(path: &Path) -> Result<Demuxer, OpenError> {
        Demuxer::open_interruptible(path, None)
    }

    /// [`Demuxer::open`], with blocking calls interrupted by `stop`.
    ///
    /// A FIFO or a character device is opened here without blocking
    /// (`O_NONBLOCK`: a FIFO without a writer does not hang `open(2)`),
    /// waited on with poll(2) until it has data, and handed to libavformat
    /// as `pipe:<fd>`; its reads then return `EAGAIN` instead of blocking,
    /// and libavformat retries them, checking the interrupt callback each
    /// millisecond. So a SIGTERM that sets `stop` ends a stream waiting on
    /// a FIFO or device within milliseconds ([`OpenError::Interrupted`],
    /// [`DemuxError::Interrupted`]). Regular files are read through `file:`
    /// with the same callback.
    pub fn open_interruptible(path: &Path, stop: Option<StopFlag>) -> Result<Demuxer, OpenError> {
        use std::os::unix::fs::FileTypeExt;
        init_ffmpeg();
        match std::fs::metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() || meta.file_type().is_char_device() => {
                return Demuxer::open_pipe(path, stop)
            }
            Ok(meta) if meta.is_dir() => {
                return Err(OpenError::NotMedia {
                    path: path.to_path_buf(),
                    reason: "it is a directory".into(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OpenError::NotFound(path.to_path_buf()))
            }
            Err(e) => {
                return Err(OpenError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
        let utf8 = match path.to_str() {
            Some(s) if !s.contains('\0') => s,
            _ => return Err(OpenError::UnsupportedPath(path.to_path_buf())),
        };
        // The `file:` protocol prefix keeps a local name containing `:` from
        // being taken for another protocol (e.g. a file named `http:x`).
        let url = format!("file:{utf8}");
        Demuxer::open_input(&url, path, stop, None)
    }

    /// Opens `url` (a `file:` or `pipe:` URL for `path`) with the stop flag
    /// as interrupt callback.
    fn open_input(
        url: &str,
        path: &Path,
        stop: Option<StopFlag>,
        pipe: Option<OwnedFd>,
    ) -> Result<Demuxer, OpenError> {
        let opened = match &stop {
            Some(flag) => {
                let flag = flag.clone();
                ffmpeg::format::input_with_interrupt_and_dictionary(
                    url,
                    move || flag.is_set(),
                    ffmpeg::Dictionary::new(),
                )
            }
            None => ffmpeg::format::input(&url),
        };
        let input = opened.map_err(|e| match &stop {
            Some(f) if f.is_set() => OpenError::Interrupted(path.to_path_buf()),
            _ => OpenError::NotMedia {
                path: path.to_path_buf(),
                reason: e.to_string(),
            },
        })?;
        let mut d = Demuxer::from_input(input, path.to_path_buf(), None)?;
        d.stop = stop;
        d._pipe = pipe;
        Ok(d)
    }

    /// A FIFO or character device: opened non-blocking, polled (checking
    /// `stop` every 50 ms) until it has data or its writer left, then read
    /// by libavformat as `pipe:<fd>`.
    fn open_pipe(path: &Path, stop: Option<StopFlag>) -> Result<Demuxer, OpenError> {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use rustix::fs::{Mode, OFlags};
        let io = |source: rustix::io::Errno| OpenError::Io {
            path: path.to_path_buf(),
            source: source.into(),
        };
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(io)?;
        loop {
            if stop.as_ref().is_some_and(StopFlag::is_set) {
                return Err(OpenError::Interrupted(path.to_path_buf()));
            }
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            let slice = Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            match poll(&mut fds, Some(&slice)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => break,
                Err(e) => return Err(io(e)),
            }
        }
        let url = format!("pipe:{}", fd.as_raw_fd());
        Demuxer::open_input(&url, path, stop, Some(fd))
    }

    /// Opens a network source: `rtsp://[user:pass@]host[:port]/path` (RTSP
    /// over UDP or TCP as `opts.transport` says), or any URL libavformat
    /// opens (`http://`, `udp://`, `srt://`... as this FFmpeg build
    /// supports), and selects its best video stream like [`Demuxer::open`].
    ///
    /// The whole open (`avformat_open_input` + `avformat_find_stream_info`)
    /// must finish within `opts.io_timeout`, and every
    /// [`Demuxer::read_packet`] then waits at most that long for a packet:
    /// a camera that accepts the connection and never answers gives
    /// [`OpenError::TimedOut`] (or [`DemuxError::Stalled`] mid-stream)
    /// instead of blocking. For RTSP the H.264 / HEVC parameter sets come
    /// from the SDP (`sprop-parameter-sets`), so [`StreamInfo::extradata`] is
    /// Annex B and packets are Annex B access units; timestamps are in the
    /// stream's time base (90 kHz for RTP video).
    ///
    /// Errors tell the causes apart ([`OpenError::Refused`],
    /// [`OpenError::StreamNotFound`], [`OpenError::Unauthorized`],
    /// [`OpenError::TimedOut`], [`OpenError::UnsupportedCodec`], ...); every
    /// error, and this demuxer's [`Demuxer::path`] and `Debug`, show the URL
    /// with its credentials redacted ([`redact_url`]).
    pub fn open_url(url: &str, opts: &UrlOptions) -> Result<Demuxer, OpenError> {
        init_ffmpeg();
        let redacted = redact_url(url);
        if url.contains('\0') {
            return Err(OpenError::InvalidUrl {
                url: redacted,
                reason: "contains a NUL byte",
            });
        }
        if !url.contains("://") {
            return Err(OpenError::InvalidUrl {
                url: redacted,
                reason: "expected scheme://host/path (for a file use Demuxer::open)",
            });
        }
        let mut dict = ffmpeg::Dictionary::new();
        match opts.transport {
            RtspTransport::Auto => {}
            RtspTransport::Tcp => dict.set("rtsp_transport", "tcp"),
            RtspTransport::Udp => dict.set("rtsp_transport", "udp"),
        }
        // The RTSP demuxer's socket I/O timeout in microseconds (FFmpeg 5.1:
        // `timeout`, formerly `stimeout`); other protocols ignore it or read
        // it as their own I/O timeout. The interrupt callback is the bound
        // that always holds.
        let timeout_us = opts.io_timeout.as_micros().clamp(1, i64::MAX as u128);
        if url.starts_with("rtsp") {
            dict.set("timeout", &timeout_us.to_string());
        }
        let watchdog = Watchdog::new();
        let callback = {
            let watchdog = Arc::clone(&watchdog);
            let stop = opts.stop.clone();
            move || watchdog.expired() || stop.as_ref().is_some_and(StopFlag::is_set)
        };
        watchdog.arm(opts.io_timeout);
        let opened = ffmpeg::format::input_with_interrupt_and_dictionary(url, callback, dict);
        let expired = watchdog.expired();
        watchdog.disarm();
        if opened.is_err() && opts.stop.as_ref().is_some_and(StopFlag::is_set) {
            return Err(OpenError::Interrupted(PathBuf::from(&redacted)));
        }
        let input = opened.map_err(|source| {
            classify_open_error(source, expired, redacted.clone(), opts.io_timeout)
        })?;
        let stop = opts.stop.clone();
        let mut d = Demuxer::from_input(
            input,
            PathBuf::from(&redacted),
            Some(UrlSource {
                url: url.to_owned(),
                redacted,
                options: opts.clone(),
                watchdog,
            }),
        )?;
        d.stop = stop;
        Ok(d)
    }

    /// Selects the best video stream of an opened input.
    fn from_input(
        input: ffmpeg::format::context::Input,
        path: PathBuf,
        url: Option<UrlSource>,
    ) -> Result<Demuxer, OpenError> {
        let path = path.as_path();
        if input.nb_streams() == 0 {
            return Err(OpenError::NotMedia {
                path: path.to_path_buf(),
                reason: "no streams found".into(),
            });
        }

        let stream = input
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| OpenError::NoVideoStream(path.to_path_buf()))?;
        // An owned copy (`avcodec_parameters_copy`), independent of `input`.
        let params = stream.parameters().clone();
        let id = params.id();
        let codec = match id {
            ffmpeg::codec::Id::H264 => Codec::H264,
            ffmpeg::codec::Id::HEVC => Codec::Hevc,
            other => {
                return Err(OpenError::UnsupportedCodec {
                    path: path.to_path_buf(),
                    codec: other.name().to_owned(),
                })
            }
        };
        let raw = codecpar::read(&params);
        let tb = stream.time_base();
        let time_base = (tb.numerator(), tb.denominator());
        let frame_rate = valid_rational(stream.avg_frame_rate())
            .or_else(|| valid_rational(stream.rate()))
            .unwrap_or((0, 1));
        let start_us = match stream.start_time() {
            ffmpeg::ffi::AV_NOPTS_VALUE => 0,
            // Rounded up, so the seek's upper bound is not before the start.
            t => rescale_to_ns(t, time_base)
                .map(|ns| ns.div_euclid(1000) + i64::from(ns.rem_euclid(1000) != 0))
                .unwrap_or(0),
        };
        let stream_index = stream.index();
        let info = StreamInfo {
            codec,
            width: raw.width,
            height: raw.height,
            time_base,
            frame_rate,
            extradata: raw.extradata,
            codec_name: id.name().to_owned(),
        };
        Ok(Demuxer {
            path: path.to_path_buf(),
            url,
            stop: None,
            input,
            _pipe: None,
            stream_index,
            params,
            info,
            start_us,
        })
    }

    /// The chosen video stream.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The path this demuxer was opened from; for [`Demuxer::open_url`] the
    /// URL with credentials redacted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the chosen stream in the container (`AVStream::index`).
    pub fn stream_index(&self) -> usize {
        self.stream_index
    }

    /// A copy of the stream's `AVCodecParameters` (`avcodec_parameters_copy`),
    /// from which a libavcodec decoder is configured
    /// (`avcodec_parameters_to_context`).
    pub fn decoder_parameters(&self) -> ffmpeg::codec::Parameters {
        self.params.clone()
    }

    /// Reads the next packet of the chosen stream (`av_read_frame`, skipping
    /// other streams' packets). `Ok(None)` at end of file.
    pub fn read_packet(&mut self) -> Result<Option<Packet>, DemuxError> {
        loop {
            let mut raw = ffmpeg::Packet::empty();
            if let Some(u) = &self.url {
                u.watchdog.arm(u.options.io_timeout);
            }
            let read = raw.read(&mut self.input);
            let expired = self.url.as_ref().is_some_and(|u| {
                let expired = u.watchdog.expired();
                u.watchdog.disarm();
                expired
            });
            match read {
                Ok(()) => {}
                Err(_) if self.stop.as_ref().is_some_and(StopFlag::is_set) => {
                    return Err(DemuxError::Interrupted(self.path.clone()))
                }
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(source) => {
                    return Err(match &self.url {
                        // Our interrupt (`AVERROR_EXIT`), or the RTSP
                        // demuxer's own socket timeout.
                        Some(u)
                            if expired
                                || matches!(source, ffmpeg::Error::Exit)
                                || is_errno(&source, ffmpeg::error::ETIMEDOUT) =>
                        {
                            DemuxError::Stalled {
                                url: u.redacted.clone(),
                                after: u.options.io_timeout,
                            }
                        }
                        _ => DemuxError::Read {
                            path: self.path.clone(),
                            source,
                        },
                    });
                }
            }
            if raw.stream() != self.stream_index {
                continue;
            }
            let pts = raw.pts();
            let dts = raw.dts();
            let tb = self.info.time_base;
            return Ok(Some(Packet {
                data: raw.data().map(<[u8]>::to_vec).unwrap_or_default(),
                pts,
                dts,
                pts_ns: pts.and_then(|t| rescale_to_ns(t, tb)),
                dts_ns: dts.and_then(|t| rescale_to_ns(t, tb)),
                duration: raw.duration().max(0),
                keyframe: raw.is_key(),
            }));
        }
    }

    /// Goes back to the first packet of the file, for looping playback.
    ///
    /// Seeks like `ffmpeg -stream_loop` (`avformat_seek_file(ctx, -1,
    /// INT64_MIN, start, start, 0)` with `start` the stream's start time in
    /// microseconds); if the demuxer cannot seek (e.g. some raw streams), the
    /// file is reopened instead. A decoder fed from this demuxer must be
    /// flushed ([`crate::Decoder::flush`]) after a rewind.
    ///
    /// A URL source ([`Demuxer::open_url`]) cannot seek: it is opened again
    /// (a live camera then continues from now, not from a start).
    pub fn rewind(&mut self) -> Result<(), DemuxError> {
        let seek_err = match &self.url {
            Some(_) => ffmpeg::Error::Other {
                errno: ffmpeg::error::ESPIPE,
            },
            None => match self.input.seek(self.start_us, ..self.start_us) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            },
        };
        let reopened = match &self.url {
            Some(u) => Demuxer::open_url(&u.url, &u.options),
            None => Demuxer::open_interruptible(&self.path, self.stop.clone()),
        };
        match reopened {
            Ok(fresh) if fresh.stream_index == self.stream_index => {
                *self = fresh;
                Ok(())
            }
            Ok(_) => Err(DemuxError::Rewind {
                path: self.path.clone(),
                reason: format!(
                    "seek failed ({seek_err}) and the reopened file has another layout"
                ),
            }),
            Err(open_err) => Err(DemuxError::Rewind {
                path: self.path.clone(),
                reason: format!("seek failed ({seek_err}); reopening failed ({open_err})"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn url_errors_never_show_credentials() {
        let opts = UrlOptions {
            transport: RtspTransport::Tcp,
            io_timeout: Duration::from_secs(2),
            ..UrlOptions::default()
        };
        // Nothing listens on port 1 of the loopback.
        let err = Demuxer::open_url("rtsp://admin:hunter2@127.0.0.1:1/x", &opts).unwrap_err();
        assert!(matches!(err, OpenError::Refused { .. }), "{err:?}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains("hunter2") && !text.contains("admin"),
                "{text}"
            );
            assert!(text.contains("***@127.0.0.1:1/x"), "{text}");
        }
        let err = Demuxer::open_url("rtsp://a:b@x\0", &opts).unwrap_err();
        assert!(matches!(err, OpenError::InvalidUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("a:b"), "{err}");
    }
}
