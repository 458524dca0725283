//! The decoder interface of the software decoder. (NVDEC, whose frames live
//! in device memory and borrow the decoder, has its own pull API:
//! `cuframes_nvdec::NvdecDecoder::next_frame`.)
//!
//! A decoder is a push/pull machine in the style of libavcodec's
//! `avcodec_send_packet` / `avcodec_receive_frame`. Driving it from a
//! [`Demuxer`](crate::Demuxer) reads as one loop:
//!
//! ```no_run
//! # use cuframes_media::{Decoded, Decoder, Demuxer, SoftwareDecoder};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut demuxer = Demuxer::open("media/sample-h264.mp4".as_ref())?;
//! let mut decoder = SoftwareDecoder::new(&demuxer)?;
//! loop {
//!     match decoder.receive_frame()? {
//!         Decoded::Frame(frame) => println!("{:?} ns", frame.pts_ns),
//!         Decoded::NeedInput => match demuxer.read_packet()? {
//!             Some(packet) => decoder.send_packet(&packet)?,
//!             None => decoder.send_eof()?,
//!         },
//!         Decoded::Eof => break,
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Calling [`Decoder::send_packet`] only after [`Decoded::NeedInput`] means it
//! is never refused for a full queue. To loop a file, call
//! [`Demuxer::rewind`](crate::Demuxer::rewind) and [`Decoder::flush`], then
//! continue the loop.

use ffmpeg_next as ffmpeg;
use thiserror::Error;

use crate::demux::Packet;
use crate::frame::HostFrame;

/// What [`Decoder::receive_frame`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<F = HostFrame> {
    /// A decoded frame, in presentation order.
    Frame(F),
    /// No frame is ready: send the next packet (or [`Decoder::send_eof`] at
    /// the end of the input), then ask again (libavcodec's `EAGAIN`).
    NeedInput,
    /// End of stream was signalled and every frame has been returned
    /// (libavcodec's `AVERROR_EOF`); it stays so until [`Decoder::flush`].
    Eof,
}

/// Errors of a [`Decoder`].
#[derive(Debug, Error)]
pub enum DecodeError {
    /// No decoder for the stream's codec is available in libavcodec
    /// (`avcodec_find_decoder` found none).
    #[error("no {codec} decoder available")]
    DecoderNotFound {
        /// FFmpeg's short codec name.
        codec: String,
    },
    /// Configuring or opening the decoder failed (`avcodec_parameters_to_context`
    /// or `avcodec_open2`).
    #[error("opening the {codec} decoder failed: {source}")]
    Open {
        /// FFmpeg's short codec name.
        codec: String,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// The decoder holds frames that must be received first: call
    /// [`Decoder::receive_frame`] until it returns [`Decoded::NeedInput`]
    /// (`avcodec_send_packet` returned `EAGAIN`). The packet was not consumed.
    #[error("decoder input is full: receive frames before sending more packets")]
    InputFull,
    /// A packet was sent after [`Decoder::send_eof`] without a
    /// [`Decoder::flush`] in between.
    #[error("packet sent after end of stream (flush the decoder first)")]
    AfterEof,
    /// The decoder rejected a packet (`avcodec_send_packet`), e.g. corrupt
    /// data. Recoverable: the packet is dropped and decoding may continue.
    #[error("decoding a packet failed: {0}")]
    Send(#[source] ffmpeg::Error),
    /// Decoding failed while producing a frame (`avcodec_receive_frame`),
    /// e.g. corrupt data under frame threading. Recoverable: decoding may
    /// continue with the next [`Decoder::receive_frame`].
    #[error("receiving a frame failed: {0}")]
    Receive(#[source] ffmpeg::Error),
    /// The decoder output a pixel format that cannot be delivered: above 8
    /// bits per sample, only 10-bit 4:2:0 (`yuv420p10le`, `p010le`) is
    /// converted (to P010).
    #[error("decoded pixel format {format} is not supported (8-bit formats convert to nv12, 10-bit 4:2:0 to p010)")]
    UnsupportedPixelFormat {
        /// FFmpeg's pixel format name (`av_get_pix_fmt_name`), e.g. `yuv420p10le`.
        format: String,
    },
    /// Converting a frame to NV12 with libswscale failed (`sws_getContext` /
    /// `sws_scale`).
    #[error("converting a {format} frame to nv12 failed: {source}")]
    Convert {
        /// FFmpeg's name of the source pixel format.
        format: String,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// A decoded frame's geometry is unusable (zero size, or planes smaller
    /// than their size implies).
    #[error("decoded frame is malformed: {reason}")]
    BadFrame {
        /// What is wrong with it.
        reason: String,
    },
}

/// A video decoder fed with demuxed [`Packet`]s and producing frames.
///
/// [`SoftwareDecoder`](crate::SoftwareDecoder) (libavcodec) implements it with
/// host-memory [`HostFrame`]s. See the [module docs](self) for the calling
/// loop.
pub trait Decoder {
    /// Queues one packet for decoding (`avcodec_send_packet`).
    ///
    /// Call it after [`Decoder::receive_frame`] returned
    /// [`Decoded::NeedInput`]; otherwise it may fail with
    /// [`DecodeError::InputFull`]. Packets with empty `data` are ignored
    /// (an empty packet would mean end of stream to libavcodec).
    fn send_packet(&mut self, packet: &Packet) -> Result<(), DecodeError>;

    /// Signals the end of the input so buffered (reordered) frames are
    /// drained (`avcodec_send_packet(ctx, NULL)`). Calling it again before
    /// [`Decoder::flush`] does nothing.
    fn send_eof(&mut self) -> Result<(), DecodeError>;

    /// Takes the next decoded frame, in presentation order
    /// (`avcodec_receive_frame`). See [`Decoded`] for what each outcome asks
    /// of the caller.
    fn receive_frame(&mut self) -> Result<Decoded, DecodeError>;

    /// Drops every buffered packet and frame and leaves the end-of-stream
    /// state (`avcodec_flush_buffers`), e.g. after
    /// [`Demuxer::rewind`](crate::Demuxer::rewind). The next packet must be a
    /// keyframe.
    fn flush(&mut self);

    /// Short name of the implementation, for logs (e.g. `"libavcodec"`).
    fn name(&self) -> &'static str;
}
