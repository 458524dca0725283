//! Software decoding with libavcodec, output converted to NV12 in host memory.

use cuframes_core::PixelFormat;
use ffmpeg::format::Pixel;
use ffmpeg_next as ffmpeg;

use crate::decoder::{DecodeError, Decoded, Decoder};
use crate::demux::{init_ffmpeg, Demuxer, Packet};
use crate::frame::{HostFrame, PlaneLayout};
use crate::time::{rescale_to_ns, FrameClock};

/// libavcodec decoder (`avcodec_send_packet` / `avcodec_receive_frame`) for
/// the stream of a [`Demuxer`], with frame threading (`FF_THREAD_FRAME`,
/// thread count chosen by FFmpeg), producing NV12 [`HostFrame`]s for 8-bit
/// streams and P010 ones for 10-bit 4:2:0 streams.
///
/// Conversion to NV12 gives the bytes `ffmpeg -pix_fmt nv12` produces:
/// `yuv420p` / `yuvj420p` frames are interleaved directly (U and V samples
/// alternate in the CbCr plane, bit-identical to libswscale's
/// `yuv420p -> nv12`); `nv12` is copied; other 8-bit formats (4:2:2, 4:4:4,
/// gray, `gbrp`, ...) go through libswscale with `SWS_BICUBIC`, the
/// `ffmpeg` CLI's default flags. `yuv420p10le` becomes P010 with the bytes of
/// `ffmpeg -pix_fmt p010le` (each 10-bit sample shifted left by 6, Cb and Cr
/// interleaved), `p010le` is copied; other formats above 8 bits (4:2:2 or
/// 4:4:4 10-bit, 12-bit) give [`DecodeError::UnsupportedPixelFormat`].
///
/// Every frame carries its own size and format, so a mid-stream resolution
/// change (a new SPS) yields frames of the new size.
///
/// Frame times are libavcodec's best-effort timestamps
/// (`AVFrame::best_effort_timestamp`); streams without any (raw Annex B) get
/// times from the frame rate via [`FrameClock`], as the `ffmpeg` CLI does.
///
/// `Send`, so it can run on a decode thread.
pub struct SoftwareDecoder {
    decoder: ffmpeg::decoder::Video,
    frame: ffmpeg::frame::Video,
    time_base: (i32, i32),
    clock: FrameClock,
    eof_sent: bool,
}

impl std::fmt::Debug for SoftwareDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareDecoder")
            .field("codec", &self.decoder.id().name())
            .field("time_base", &self.time_base)
            .field("eof_sent", &self.eof_sent)
            .finish_non_exhaustive()
    }
}

fn is_eagain(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == ffmpeg::error::EAGAIN)
}

impl SoftwareDecoder {
    /// Opens a libavcodec decoder for `demuxer`'s stream
    /// (`avcodec_parameters_to_context` with [`Demuxer::decoder_parameters`],
    /// frame threading, `pkt_timebase` = the stream time base, `avcodec_open2`).
    pub fn new(demuxer: &Demuxer) -> Result<SoftwareDecoder, DecodeError> {
        init_ffmpeg();
        let info = demuxer.info();
        let params = demuxer.decoder_parameters();
        let codec_name = params.id().name().to_owned();
        let Some(codec) = ffmpeg::decoder::find(params.id()) else {
            return Err(DecodeError::DecoderNotFound { codec: codec_name });
        };
        let mut context = ffmpeg::codec::Context::from_parameters(params).map_err(|source| {
            DecodeError::Open {
                codec: codec_name.clone(),
                source,
            }
        })?;
        context.set_threading(ffmpeg::threading::Config::kind(
            ffmpeg::threading::Type::Frame,
        ));
        let mut decoder = context.decoder();
        decoder.set_packet_time_base(info.time_base);
        let decoder = decoder
            .open_as(codec)
            .and_then(|opened| opened.video())
            .map_err(|source| DecodeError::Open {
                codec: codec_name,
                source,
            })?;
        Ok(SoftwareDecoder {
            decoder,
            frame: ffmpeg::frame::Video::empty(),
            time_base: info.time_base,
            clock: FrameClock::new(info.frame_rate),
            eof_sent: false,
        })
    }

    fn host_frame(&mut self) -> Result<HostFrame, DecodeError> {
        let src = &self.frame;
        // Stamped first so a frame that fails to convert still takes its
        // place in the timeline.
        let best_effort = src
            .timestamp()
            .and_then(|t| rescale_to_ns(t, self.time_base));
        let pts_ns = self.clock.stamp(best_effort);
        // Size and format are read from every frame: libavcodec reconfigures
        // itself on a new SPS, so frames after a resolution change arrive
        // with their new size.
        let (width, height) = (src.width(), src.height());
        if width == 0 || height == 0 {
            return Err(bad(format!("{width}x{height} is empty")));
        }
        let format = match src.format() {
            Pixel::YUV420P10LE | Pixel::P010LE => PixelFormat::P010,
            _ => PixelFormat::Nv12,
        };
        let Some((planes, total)) = PlaneLayout::packed(format, width, height) else {
            return Err(bad(format!("{width}x{height} is too large")));
        };
        let mut data = vec![0u8; total];
        let (luma, chroma) = data.split_at_mut(planes[1].offset);
        match src.format() {
            Pixel::YUV420P | Pixel::YUVJ420P => {
                copy_plane(src, 0, luma, &planes[0])?;
                interleave_uv(src, chroma, &planes[1])?;
            }
            Pixel::NV12 | Pixel::P010LE => {
                copy_plane(src, 0, luma, &planes[0])?;
                copy_plane(src, 1, chroma, &planes[1])?;
            }
            Pixel::YUV420P10LE => {
                shift_plane_10(src, 0, luma, &planes[0])?;
                interleave_uv_10(src, chroma, &planes[1])?;
            }
            format if is_other_8bit(format) => {
                let converted = swscale_to_nv12(src)?;
                copy_plane(&converted, 0, luma, &planes[0])?;
                copy_plane(&converted, 1, chroma, &planes[1])?;
            }
            format => {
                return Err(DecodeError::UnsupportedPixelFormat {
                    format: pixel_name(format),
                })
            }
        }
        Ok(HostFrame {
            width,
            height,
            format,
            data,
            planes,
            pts_ns,
            keyframe: src.is_key(),
        })
    }
}

impl Decoder for SoftwareDecoder {
    fn send_packet(&mut self, packet: &Packet) -> Result<(), DecodeError> {
        if self.eof_sent {
            return Err(DecodeError::AfterEof);
        }
        if packet.data.is_empty() {
            return Ok(());
        }
        let mut raw = ffmpeg::Packet::copy(&packet.data);
        raw.set_pts(packet.pts);
        raw.set_dts(packet.dts);
        raw.set_duration(packet.duration);
        if packet.keyframe {
            raw.set_flags(ffmpeg::packet::Flags::KEY);
        }
        match self.decoder.send_packet(&raw) {
            Ok(()) => Ok(()),
            Err(e) if is_eagain(&e) => Err(DecodeError::InputFull),
            Err(ffmpeg::Error::Eof) => Err(DecodeError::AfterEof),
            Err(e) => Err(DecodeError::Send(e)),
        }
    }

    fn send_eof(&mut self) -> Result<(), DecodeError> {
        if self.eof_sent {
            return Ok(());
        }
        match self.decoder.send_eof() {
            Ok(()) | Err(ffmpeg::Error::Eof) => {
                self.eof_sent = true;
                Ok(())
            }
            Err(e) if is_eagain(&e) => Err(DecodeError::InputFull),
            Err(e) => Err(DecodeError::Send(e)),
        }
    }

    fn receive_frame(&mut self) -> Result<Decoded, DecodeError> {
        match self.decoder.receive_frame(&mut self.frame) {
            Ok(()) => {
                let frame = self.host_frame();
                // Release the decoder's reference to the picture buffer now.
                self.frame = ffmpeg::frame::Video::empty();
                frame.map(Decoded::Frame)
            }
            Err(e) if is_eagain(&e) => Ok(Decoded::NeedInput),
            Err(ffmpeg::Error::Eof) => Ok(Decoded::Eof),
            Err(e) => Err(DecodeError::Receive(e)),
        }
    }

    fn flush(&mut self) {
        self.decoder.flush();
        self.clock.reset();
        self.eof_sent = false;
    }

    fn name(&self) -> &'static str {
        "libavcodec"
    }
}

fn bad(reason: String) -> DecodeError {
    DecodeError::BadFrame { reason }
}

fn pixel_name(format: Pixel) -> String {
    format
        .descriptor()
        .map_or_else(|| format!("{format:?}"), |d| d.name().to_owned())
}

/// 8-bit formats libavcodec's H.264 / HEVC decoders can output, other than
/// the ones converted directly.
fn is_other_8bit(format: Pixel) -> bool {
    matches!(
        format,
        Pixel::YUV422P
            | Pixel::YUVJ422P
            | Pixel::YUV444P
            | Pixel::YUVJ444P
            | Pixel::YUV440P
            | Pixel::YUVJ440P
            | Pixel::YUV411P
            | Pixel::YUV410P
            | Pixel::GRAY8
            | Pixel::GBRP
            | Pixel::NV21
            | Pixel::NV16
            | Pixel::NV24
            | Pixel::NV42
    )
}

/// `(pitch, bytes)` of plane `index` of `frame`, or an error if the frame has
/// no such plane.
fn source_plane(frame: &ffmpeg::frame::Video, index: usize) -> Result<(usize, &[u8]), DecodeError> {
    if index >= frame.planes() {
        return Err(bad(format!("plane {index} missing")));
    }
    Ok((frame.stride(index), frame.data(index)))
}

/// Copies `dst_layout.rows` rows of `dst_layout.row_bytes` from plane `index`
/// of `src` into the tightly packed `dst`.
fn copy_plane(
    src: &ffmpeg::frame::Video,
    index: usize,
    dst: &mut [u8],
    dst_layout: &PlaneLayout,
) -> Result<(), DecodeError> {
    let (pitch, bytes) = source_plane(src, index)?;
    let row_bytes = dst_layout.row_bytes;
    if row_bytes == 0 {
        return Ok(());
    }
    for (row, out) in dst
        .chunks_exact_mut(row_bytes)
        .take(dst_layout.rows)
        .enumerate()
    {
        let line = row
            .checked_mul(pitch)
            .and_then(|start| bytes.get(start..start.checked_add(row_bytes)?))
            .ok_or_else(|| bad(format!("plane {index} row {row} is out of bounds")))?;
        out.copy_from_slice(line);
    }
    Ok(())
}

/// Interleaves the U (plane 1) and V (plane 2) planes of a 4:2:0 planar frame
/// into the CbCr plane `dst` (`U0 V0 U1 V1 ...` per row), as libswscale does
/// for `yuv420p -> nv12`.
fn interleave_uv(
    src: &ffmpeg::frame::Video,
    dst: &mut [u8],
    dst_layout: &PlaneLayout,
) -> Result<(), DecodeError> {
    let (u_pitch, u) = source_plane(src, 1)?;
    let (v_pitch, v) = source_plane(src, 2)?;
    let samples = dst_layout.row_bytes / 2;
    if samples == 0 {
        return Ok(());
    }
    fn row_of(plane: &[u8], pitch: usize, row: usize, samples: usize) -> Option<&[u8]> {
        let start = row.checked_mul(pitch)?;
        plane.get(start..start.checked_add(samples)?)
    }
    for (row, out) in dst
        .chunks_exact_mut(dst_layout.row_bytes)
        .take(dst_layout.rows)
        .enumerate()
    {
        let (Some(u_row), Some(v_row)) = (
            row_of(u, u_pitch, row, samples),
            row_of(v, v_pitch, row, samples),
        ) else {
            return Err(bad(format!("chroma row {row} is out of bounds")));
        };
        for ((pair, &cb), &cr) in out.chunks_exact_mut(2).zip(u_row).zip(v_row) {
            pair[0] = cb;
            pair[1] = cr;
        }
    }
    Ok(())
}

/// Row `row` (its first `samples` little-endian `u16` samples) of a plane
/// with `pitch` bytes per row.
fn sample_row(plane: &[u8], pitch: usize, row: usize, samples: usize) -> Option<&[u8]> {
    let start = row.checked_mul(pitch)?;
    plane.get(start..start.checked_add(samples.checked_mul(2)?)?)
}

/// Writes the 10-bit sample `v` (low 10 bits of a little-endian `u16`) as
/// P010's little-endian `u16` with the value in the high 10 bits.
fn put_p010(out: &mut [u8], le: &[u8]) {
    let v = u16::from_le_bytes([le[0], le[1]]) << 6;
    out.copy_from_slice(&v.to_le_bytes());
}

/// Copies plane `index` of a planar 10-bit frame (`yuv420p10le`: one
/// little-endian `u16` per sample, value in the low 10 bits) into the packed
/// P010 plane `dst`, shifting every sample left by 6 as libswscale does for
/// `yuv420p10le -> p010le`.
fn shift_plane_10(
    src: &ffmpeg::frame::Video,
    index: usize,
    dst: &mut [u8],
    dst_layout: &PlaneLayout,
) -> Result<(), DecodeError> {
    let (pitch, bytes) = source_plane(src, index)?;
    let samples = dst_layout.row_bytes / 2;
    if samples == 0 {
        return Ok(());
    }
    for (row, out) in dst
        .chunks_exact_mut(dst_layout.row_bytes)
        .take(dst_layout.rows)
        .enumerate()
    {
        let line = sample_row(bytes, pitch, row, samples)
            .ok_or_else(|| bad(format!("plane {index} row {row} is out of bounds")))?;
        for (o, i) in out.chunks_exact_mut(2).zip(line.chunks_exact(2)) {
            put_p010(o, i);
        }
    }
    Ok(())
}

/// Interleaves the U (plane 1) and V (plane 2) planes of a `yuv420p10le`
/// frame into the P010 CbCr plane `dst` (`U0 V0 U1 V1 ...` as shifted
/// little-endian `u16`s).
fn interleave_uv_10(
    src: &ffmpeg::frame::Video,
    dst: &mut [u8],
    dst_layout: &PlaneLayout,
) -> Result<(), DecodeError> {
    let (u_pitch, u) = source_plane(src, 1)?;
    let (v_pitch, v) = source_plane(src, 2)?;
    let samples = dst_layout.row_bytes / 4;
    if samples == 0 {
        return Ok(());
    }
    for (row, out) in dst
        .chunks_exact_mut(dst_layout.row_bytes)
        .take(dst_layout.rows)
        .enumerate()
    {
        let (Some(u_row), Some(v_row)) = (
            sample_row(u, u_pitch, row, samples),
            sample_row(v, v_pitch, row, samples),
        ) else {
            return Err(bad(format!("chroma row {row} is out of bounds")));
        };
        for ((pair, cb), cr) in out
            .chunks_exact_mut(4)
            .zip(u_row.chunks_exact(2))
            .zip(v_row.chunks_exact(2))
        {
            let (first, second) = pair.split_at_mut(2);
            put_p010(first, cb);
            put_p010(second, cr);
        }
    }
    Ok(())
}

/// Converts `src` to NV12 of the same size with libswscale (`SWS_BICUBIC`).
///
/// The scaler context is made per frame (this path is rare: H.264 / HEVC in
/// 4:2:2, 4:4:4 or RGB) so that [`SoftwareDecoder`] stays `Send`.
fn swscale_to_nv12(src: &ffmpeg::frame::Video) -> Result<ffmpeg::frame::Video, DecodeError> {
    let convert_err = |source| DecodeError::Convert {
        format: pixel_name(src.format()),
        source,
    };
    let mut scaler = ffmpeg::software::scaling::Context::get(
        src.format(),
        src.width(),
        src.height(),
        Pixel::NV12,
        src.width(),
        src.height(),
        ffmpeg::software::scaling::Flags::BICUBIC,
    )
    .map_err(convert_err)?;
    let mut out = ffmpeg::frame::Video::empty();
    scaler.run(src, &mut out).map_err(convert_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn decoder_and_demuxer_are_send() {
        assert_send::<SoftwareDecoder>();
        assert_send::<Demuxer>();
    }

    #[test]
    fn interleaves_odd_sized_yuv420p_like_swscale() {
        init_ffmpeg();
        let (w, h) = (5u32, 3u32);
        let mut src = ffmpeg::frame::Video::new(Pixel::YUV420P, w, h);
        for plane in 0..3 {
            let stride = src.stride(plane);
            let rows = src.plane_height(plane) as usize;
            let cols = src.plane_width(plane) as usize;
            let data = src.data_mut(plane);
            for r in 0..rows {
                for c in 0..cols {
                    data[r * stride + c] = (plane * 100 + r * 10 + c) as u8;
                }
            }
        }
        let (planes, total) = PlaneLayout::nv12(w, h).unwrap();
        let mut ours = vec![0u8; total];
        let (luma, chroma) = ours.split_at_mut(planes[1].offset);
        copy_plane(&src, 0, luma, &planes[0]).unwrap();
        interleave_uv(&src, chroma, &planes[1]).unwrap();

        // The CbCr plane of a 5x3 frame: 2 rows of 3 (Cb, Cr) pairs.
        assert_eq!(
            &ours[planes[1].offset..],
            &[100, 200, 101, 201, 102, 202, 110, 210, 111, 211, 112, 212]
        );

        let theirs = swscale_to_nv12(&src).unwrap();
        let mut reference = vec![0u8; total];
        let (luma, chroma) = reference.split_at_mut(planes[1].offset);
        copy_plane(&theirs, 0, luma, &planes[0]).unwrap();
        copy_plane(&theirs, 1, chroma, &planes[1]).unwrap();
        assert_eq!(ours, reference);
    }
}
