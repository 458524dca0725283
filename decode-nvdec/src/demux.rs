//! Demuxing: a file's best video stream as a sequence of encoded packets.
//!
//! Wraps libavformat (`avformat_open_input`, `avformat_find_stream_info`,
//! `av_find_best_stream`, `av_read_frame`, `avformat_seek_file`) through
//! `ffmpeg-next`.

use std::path::{Path, PathBuf};
use std::sync::Once;

use cuframes_core::Codec;
use ffmpeg_next as ffmpeg;
use thiserror::Error;

use crate::codecpar;
use crate::time::rescale_to_ns;

/// Errors of [`Demuxer::open`].
#[derive(Debug, Error)]
pub enum OpenError {
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
        /// The path given to [`Demuxer::open`].
        path: PathBuf,
        /// FFmpeg's short name of the codec (`avcodec_get_name`), e.g. `mpeg4`.
        codec: String,
    },
}

/// Errors of [`Demuxer::read_packet`] and [`Demuxer::rewind`].
#[derive(Debug, Error)]
pub enum DemuxError {
    /// `av_read_frame` failed with something other than end of file.
    #[error("{path}: reading a packet failed: {source}")]
    Read {
        /// The demuxed file.
        path: PathBuf,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
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
    path: PathBuf,
    input: ffmpeg::format::context::Input,
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
        init_ffmpeg();
        match std::fs::metadata(path) {
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
        let input = ffmpeg::format::input(&url).map_err(|e| OpenError::NotMedia {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
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
            input,
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

    /// The path this demuxer was opened from.
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
            match raw.read(&mut self.input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(source) => {
                    return Err(DemuxError::Read {
                        path: self.path.clone(),
                        source,
                    })
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
    pub fn rewind(&mut self) -> Result<(), DemuxError> {
        let seek_err = match self.input.seek(self.start_us, ..self.start_us) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match Demuxer::open(&self.path) {
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
