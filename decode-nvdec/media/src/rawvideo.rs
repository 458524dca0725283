//! Packed raw video for stock FFmpeg: the frames a subscriber receives,
//! written as FFmpeg's `rawvideo` demuxer reads them
//! (`ffmpeg -f rawvideo -pix_fmt FMT -video_size WxH -framerate N -i pipe:`),
//! for consumers that cannot use a patched FFmpeg (Frigate's detect role,
//! `docs/ffmpeg.md`).
//!
//! Input is a frame in FFmpeg's packed layout (the planes in order, rows
//! without pitch padding: what `for_each_row` / `copy_to_host` give). Output
//! is the same bytes ([`RawFormat::Published`]: `nv12` or `p010le`) or
//! planar `yuv420p` ([`RawFormat::Yuv420p`], what most NVR pipelines read):
//! from NV12 the CbCr plane is de-interleaved (lossless, the bytes of
//! `ffmpeg -pix_fmt yuv420p` from the same decode); from P010 libswscale
//! converts (`sws_scale`, `SWS_BICUBIC`, the CLI's default flags; 10 to 8
//! bits, so not bit-exact with any other path).
//!
//! A rawvideo stream has one size and format: a frame of another geometry
//! is refused ([`RawVideoError::GeometryChanged`]), and the caller ends the
//! stream (FFmpeg would misread every later byte).

use crate::demux::init_ffmpeg;
use cuframes_core::PixelFormat;
use ffmpeg::format::Pixel;
use ffmpeg_next as ffmpeg;
use std::io::Write;

/// Pixel format of the written frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// As published: NV12 stays `nv12`, P010 stays `p010le`.
    Published,
    /// Planar 8-bit 4:2:0 (`yuv420p`).
    Yuv420p,
}

/// Size and format of the frames a [`RawVideoWriter`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Format of the input frames (NV12 or P010).
    pub format: PixelFormat,
}

impl Geometry {
    /// Bytes of one packed input frame: Y rows then interleaved CbCr rows.
    pub fn packed_size(&self) -> usize {
        let bps = self.bytes_per_sample();
        let (w, h) = (self.width as usize, self.height as usize);
        let chroma_rows = h.div_ceil(2);
        let chroma_row = w.div_ceil(2) * 2 * bps;
        w * bps * h + chroma_row * chroma_rows
    }

    fn bytes_per_sample(&self) -> usize {
        if self.format == PixelFormat::P010 {
            2
        } else {
            1
        }
    }
}

/// What [`RawVideoWriter`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RawVideoError {
    /// The stream's pixel format has no rawvideo mapping here.
    #[error("cannot write {0:?} frames as raw video (only NV12 and P010)")]
    Format(PixelFormat),
    /// A frame whose size or format differs from the stream's first.
    #[error(
        "the stream changed from {from_w}x{from_h} {from_f:?} to {to_w}x{to_h} {to_f:?}: a raw \
         video stream cannot change geometry (restart the reader with the new arguments)"
    )]
    GeometryChanged {
        /// Width the output was started with.
        from_w: u32,
        /// Height the output was started with.
        from_h: u32,
        /// Format the output was started with.
        from_f: PixelFormat,
        /// Width of the refused frame.
        to_w: u32,
        /// Height of the refused frame.
        to_h: u32,
        /// Format of the refused frame.
        to_f: PixelFormat,
    },
    /// A packed frame of the wrong length.
    #[error("a packed frame of {got} bytes, expected {want} for the stream's geometry")]
    Length {
        /// Bytes given.
        got: usize,
        /// Bytes of one packed frame ([`Geometry::packed_size`]).
        want: usize,
    },
    /// libswscale could not convert (`sws_getContext` / `sws_scale`).
    #[error("converting P010 to yuv420p with libswscale: {0}")]
    Convert(#[source] ffmpeg::Error),
    /// Writing the output failed (a closed pipe: the reader exited).
    #[error("writing raw video: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes packed frames of one geometry as raw video.
pub struct RawVideoWriter<W: Write> {
    out: W,
    geometry: Geometry,
    format: RawFormat,
    /// Output bytes of one frame, reused.
    scratch: Vec<u8>,
    scaler: Option<Scaler>,
    frames: u64,
}

/// libswscale state for P010 → yuv420p.
struct Scaler {
    ctx: ffmpeg::software::scaling::Context,
    src: ffmpeg::frame::Video,
    dst: ffmpeg::frame::Video,
}

impl<W: Write> RawVideoWriter<W> {
    /// A writer for frames of `geometry`, converted to `format`.
    ///
    /// Errors: [`RawVideoError::Format`] for formats other than NV12 / P010,
    /// [`RawVideoError::Convert`] when libswscale cannot be set up.
    pub fn new(out: W, geometry: Geometry, format: RawFormat) -> Result<Self, RawVideoError> {
        if !matches!(geometry.format, PixelFormat::Nv12 | PixelFormat::P010) {
            return Err(RawVideoError::Format(geometry.format));
        }
        let scaler = if format == RawFormat::Yuv420p && geometry.format == PixelFormat::P010 {
            init_ffmpeg();
            let (w, h) = (geometry.width, geometry.height);
            let ctx = ffmpeg::software::scaling::Context::get(
                Pixel::P010LE,
                w,
                h,
                Pixel::YUV420P,
                w,
                h,
                ffmpeg::software::scaling::Flags::BICUBIC,
            )
            .map_err(RawVideoError::Convert)?;
            Some(Scaler {
                ctx,
                src: ffmpeg::frame::Video::new(Pixel::P010LE, w, h),
                dst: ffmpeg::frame::Video::empty(),
            })
        } else {
            None
        };
        Ok(RawVideoWriter {
            out,
            geometry,
            format,
            scratch: Vec::new(),
            scaler,
            frames: 0,
        })
    }

    /// FFmpeg's name of the output pixel format (`-pix_fmt`).
    pub fn pix_fmt(&self) -> &'static str {
        match (self.format, self.geometry.format) {
            (RawFormat::Yuv420p, _) => "yuv420p",
            (RawFormat::Published, PixelFormat::P010) => "p010le",
            (RawFormat::Published, _) => "nv12",
        }
    }

    /// The FFmpeg input options that read this output, e.g.
    /// `-f rawvideo -pix_fmt nv12 -video_size 1280x720 -framerate 30/1`;
    /// `fps` is the stream's nominal rate (numerator, denominator), 25 when
    /// unknown (FFmpeg's rawvideo default).
    pub fn ffmpeg_input_args(&self, fps: Option<(u64, u64)>) -> String {
        let rate = match fps {
            Some((n, d)) if n > 0 && d > 0 => format!("{n}/{d}"),
            _ => "25".to_string(),
        };
        format!(
            "-f rawvideo -pix_fmt {} -video_size {}x{} -framerate {rate}",
            self.pix_fmt(),
            self.geometry.width,
            self.geometry.height
        )
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes one packed frame of geometry `g` (which must equal the
    /// writer's).
    pub fn write_frame(&mut self, g: Geometry, packed: &[u8]) -> Result<(), RawVideoError> {
        let want = self.geometry;
        if g != want {
            return Err(RawVideoError::GeometryChanged {
                from_w: want.width,
                from_h: want.height,
                from_f: want.format,
                to_w: g.width,
                to_h: g.height,
                to_f: g.format,
            });
        }
        if packed.len() != want.packed_size() {
            return Err(RawVideoError::Length {
                got: packed.len(),
                want: want.packed_size(),
            });
        }
        match (self.format, want.format) {
            (RawFormat::Published, _) => self.out.write_all(packed)?,
            (RawFormat::Yuv420p, PixelFormat::P010) => {
                let Some(s) = self.scaler.as_mut() else {
                    return Err(RawVideoError::Format(want.format));
                };
                s.convert(want, packed, &mut self.scratch)?;
                self.out.write_all(&self.scratch)?;
            }
            (RawFormat::Yuv420p, _) => {
                nv12_to_yuv420p(want, packed, &mut self.scratch);
                self.out.write_all(&self.scratch)?;
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<W, RawVideoError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// De-interleaves packed NV12 (`packed_size` bytes) into packed yuv420p.
fn nv12_to_yuv420p(g: Geometry, packed: &[u8], out: &mut Vec<u8>) {
    let (w, h) = (g.width as usize, g.height as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (y, uv) = packed.split_at(w * h);
    out.clear();
    out.reserve(w * h + 2 * cw * ch);
    out.extend_from_slice(y);
    out.extend(uv.chunks_exact(2).map(|p| p[0]));
    out.extend(uv.chunks_exact(2).map(|p| p[1]));
}

impl Scaler {
    /// Copies packed P010 rows into the source frame (its own strides),
    /// converts, and packs the yuv420p result into `out`.
    fn convert(
        &mut self,
        g: Geometry,
        packed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RawVideoError> {
        let (w, h) = (g.width as usize, g.height as usize);
        let (luma_row, chroma_row) = (w * 2, w.div_ceil(2) * 4);
        let (y, uv) = packed.split_at(luma_row * h);
        copy_rows(&mut self.src, 0, y, luma_row, h);
        copy_rows(&mut self.src, 1, uv, chroma_row, h.div_ceil(2));
        self.ctx
            .run(&self.src, &mut self.dst)
            .map_err(RawVideoError::Convert)?;
        out.clear();
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        for (plane, row, rows) in [(0, w, h), (1, cw, ch), (2, cw, ch)] {
            let stride = self.dst.stride(plane);
            let data = self.dst.data(plane);
            for r in 0..rows {
                out.extend_from_slice(&data[r * stride..r * stride + row]);
            }
        }
        Ok(())
    }
}

/// Copies `rows` packed rows of `row` bytes into `plane` of `f`.
fn copy_rows(f: &mut ffmpeg::frame::Video, plane: usize, src: &[u8], row: usize, rows: usize) {
    let stride = f.stride(plane);
    let data = f.data_mut(plane);
    for r in 0..rows {
        data[r * stride..r * stride + row].copy_from_slice(&src[r * row..(r + 1) * row]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(w: u32, h: u32, format: PixelFormat) -> Geometry {
        Geometry {
            width: w,
            height: h,
            format,
        }
    }

    #[test]
    fn packed_sizes() {
        assert_eq!(geometry(4, 2, PixelFormat::Nv12).packed_size(), 8 + 4);
        assert_eq!(geometry(5, 3, PixelFormat::Nv12).packed_size(), 15 + 6 * 2);
        assert_eq!(geometry(4, 2, PixelFormat::P010).packed_size(), 16 + 8);
    }

    #[test]
    fn nv12_deinterleaves_to_yuv420p() {
        let g = geometry(4, 2, PixelFormat::Nv12);
        let packed = [0, 1, 2, 3, 4, 5, 6, 7, 10, 20, 11, 21];
        let mut w = RawVideoWriter::new(Vec::new(), g, RawFormat::Yuv420p).unwrap();
        w.write_frame(g, &packed).unwrap();
        assert_eq!(w.pix_fmt(), "yuv420p");
        assert_eq!(
            w.finish().unwrap(),
            [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 20, 21]
        );
    }

    #[test]
    fn published_is_passed_through() {
        let g = geometry(4, 2, PixelFormat::P010);
        let packed: Vec<u8> = (0..24).collect();
        let mut w = RawVideoWriter::new(Vec::new(), g, RawFormat::Published).unwrap();
        w.write_frame(g, &packed).unwrap();
        assert_eq!(w.pix_fmt(), "p010le");
        assert_eq!(
            w.ffmpeg_input_args(Some((30000, 1001))),
            "-f rawvideo -pix_fmt p010le -video_size 4x2 -framerate 30000/1001"
        );
        assert_eq!(w.finish().unwrap(), packed);
    }

    #[test]
    fn p010_converts_to_8_bit() {
        // Mid-grey and full-scale samples, 10 bits in the high bits.
        let g = geometry(4, 2, PixelFormat::P010);
        let mut packed = Vec::new();
        for _ in 0..8 {
            packed.extend_from_slice(&(512u16 << 6).to_le_bytes());
        }
        for _ in 0..4 {
            packed.extend_from_slice(&(1023u16 << 6).to_le_bytes());
        }
        let mut w = RawVideoWriter::new(Vec::new(), g, RawFormat::Yuv420p).unwrap();
        w.write_frame(g, &packed).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len(), 8 + 2 + 2);
        assert!(out[..8].iter().all(|&v| v == 128), "luma {:?}", &out[..8]);
        assert!(out[8..].iter().all(|&v| v == 255), "chroma {:?}", &out[8..]);
    }

    #[test]
    fn refuses_other_geometry_and_lengths() {
        let g = geometry(4, 2, PixelFormat::Nv12);
        let mut w = RawVideoWriter::new(Vec::new(), g, RawFormat::Published).unwrap();
        let e = w
            .write_frame(geometry(8, 2, PixelFormat::Nv12), &[0; 24])
            .unwrap_err();
        assert!(
            matches!(e, RawVideoError::GeometryChanged { to_w: 8, .. }),
            "{e}"
        );
        let e = w.write_frame(g, &[0; 11]).unwrap_err();
        assert!(
            matches!(e, RawVideoError::Length { got: 11, want: 12 }),
            "{e}"
        );
        assert_eq!(w.frames(), 0);
    }

    #[test]
    fn unknown_fps_is_ffmpegs_default() {
        let g = geometry(4, 2, PixelFormat::Nv12);
        let w = RawVideoWriter::new(Vec::new(), g, RawFormat::Published).unwrap();
        assert!(w.ffmpeg_input_args(None).ends_with("-framerate 25"));
        assert!(w.ffmpeg_input_args(Some((0, 1))).ends_with("-framerate 25"));
    }
}
