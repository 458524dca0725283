//! cuframes-nvdec: the decode side of cuframes.
//!
//! cuframes shares decoded video frames between processes without copies: a
//! publisher decodes a stream into the slots of a ring (see `cuframes-core`)
//! and subscribers read them in place. This crate turns a media file into
//! those frames:
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
//! - [`nvdec`]: [`nvdec::NvdecDecoder`], NVIDIA's hardware decoder through
//!   `libnvcuvid.so.1` loaded at run time, producing NV12 / P010 surfaces in
//!   device memory (see `docs/gpu.md`).
//!
//! Only H.264 and HEVC are accepted.
//!
//! Nothing read from a file panics: every failure is an error value. `unsafe`
//! code lives in two private modules: one reads and writes
//! `AVCodecParameters` fields `ffmpeg-next` has no accessor for (extradata,
//! width, height); the other is the nvcuvid FFI (`nvdec/ffi.rs`, with the
//! callbacks in `nvdec/decoder.rs`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod annexb;
mod codecpar;
pub mod decoder;
pub mod demux;
pub mod frame;
pub mod nvdec;
pub mod rawvideo;
pub mod record;
pub mod service;
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

/// `e` and its sources joined by `": "`, like anyhow's `{:#}`, but without
/// a source whose text an outer error already printed (thiserror errors
/// that show `{source}` in their own text would otherwise print an OS error
/// twice: `cannot open x: No such file (os error 2): No such file (os error 2)`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {path}: {source}")]
    struct Shows {
        path: &'static str,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("while starting")]
    struct Outer(#[source] Shows);

    #[test]
    fn error_chain_prints_an_os_error_once() {
        let inner = || Shows {
            path: "x.mp4",
            source: std::io::Error::from_raw_os_error(2),
        };
        let once = super::error_chain(&inner());
        assert_eq!(once.matches("os error 2").count(), 1, "{once}");
        let outer = super::error_chain(&Outer(inner()));
        assert!(
            outer.starts_with("while starting: cannot open x.mp4"),
            "{outer}"
        );
        assert_eq!(outer.matches("os error 2").count(), 1, "{outer}");
        // anyhow's {:#} would have printed it twice.
        let any = format!("{:#}", anyhow::Error::new(inner()));
        assert_eq!(any.matches("os error 2").count(), 2, "{any}");
    }
}
