//! cuframes-media: the decoder-neutral media side of cuframes.
//!
//! cuframes shares decoded video frames between processes without copies: a
//! publisher decodes a stream into the slots of a ring (see `cuframes-core`)
//! and subscribers read them in place. This crate turns a media file or a
//! camera into packets and host-memory frames, and writes received packets
//! and frames back out; NVDEC is `cuframes-nvdec`, the camera service built
//! on both is `cuframes-service`:
//!
//! - [`demux`]: [`Demuxer`] reads the best video stream of a file (MP4,
//!   Matroska, MPEG-TS, raw Annex B) or of an RTSP camera
//!   ([`Demuxer::open_url`], [`UrlOptions`]) with libavformat, as
//!   [`Packet`]s with timestamps in the stream time base and in nanoseconds;
//! - [`decoder`]: the [`Decoder`] push/pull interface ([`Decoded`] says what
//!   to do next) and its [`DecodeError`];
//! - [`software`]: [`SoftwareDecoder`], libavcodec with frame threading,
//!   producing NV12 (8-bit) and P010 (10-bit) [`HostFrame`]s bit-identical
//!   to `ffmpeg -pix_fmt nv12` / `p010le`, whatever the size of each frame;
//! - [`frame`]: [`HostFrame`] and its [`PlaneLayout`]s;
//! - [`time`]: time-base to nanosecond conversion and [`FrameClock`] for
//!   streams without timestamps;
//! - [`annexb`]: length-prefixed MP4/Matroska samples and `avcC`/`hvcC`
//!   records to Annex B, as the packet ring carries them;
//! - [`record`]: [`Recorder`] writes received packets to MP4 or Matroska
//!   without re-encoding;
//! - [`rawvideo`]: [`RawVideoWriter`] writes received frames as packed raw
//!   video (NV12 / P010 / yuv420p) for stock FFmpeg's `-f rawvideo`.
//!
//! Only H.264 and HEVC are accepted.
//!
//! Nothing read from a file panics: every failure is an error value. `unsafe`
//! code lives in one private module, `codecpar`, which reads and writes the
//! `AVCodecParameters` fields `ffmpeg-next` has no accessor for (extradata,
//! width, height).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod annexb;
mod codecpar;
pub mod decoder;
pub mod demux;
pub mod frame;
pub mod rawvideo;
pub mod record;
pub mod software;
pub mod time;

pub use cuframes_core;
/// The `ffmpeg-next` version this crate is built against (for
/// [`Demuxer::decoder_parameters`]).
pub use ffmpeg_next as ffmpeg;

pub use annexb::{AnnexB, AnnexBError};
pub use decoder::{DecodeError, Decoded, Decoder};
pub use demux::{
    redact_url, DemuxError, Demuxer, OpenError, Packet, RtspTransport, StopFlag, StreamInfo,
    UrlOptions,
};
pub use frame::{HostFrame, PlaneLayout};
pub use rawvideo::{RawFormat, RawVideoError, RawVideoWriter};
pub use record::{RecordError, RecordStream, Recorder};
pub use software::SoftwareDecoder;
pub use time::{rescale_to_ns, FrameClock};
