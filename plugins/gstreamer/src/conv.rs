//! Type mapping between cuframes and GStreamer, in one place: pixel formats,
//! caps and video info from a stream description and back, colour codes,
//! and the live sources' timestamp mapping.

use cuframes_core::layout::StreamDesc;
use cuframes_core::{Codec, PixelFormat};

/// The GStreamer format of a cuframes pixel format (`P010` is
/// `P010_10LE`: 16-bit little-endian words, value in the high 10 bits, as
/// in cuframes). `None` for a format GStreamer cannot carry.
pub fn video_format(f: PixelFormat) -> Option<gst_video::VideoFormat> {
    match f {
        PixelFormat::Nv12 => Some(gst_video::VideoFormat::Nv12),
        PixelFormat::P010 => Some(gst_video::VideoFormat::P01010le),
        PixelFormat::Unknown(_) => None,
    }
}

/// The cuframes pixel format of a GStreamer format (NV12, P010_10LE only).
pub fn pixel_format(f: gst_video::VideoFormat) -> Option<PixelFormat> {
    match f {
        gst_video::VideoFormat::Nv12 => Some(PixelFormat::Nv12),
        gst_video::VideoFormat::P01010le => Some(PixelFormat::P010),
        _ => None,
    }
}

/// A stream description GStreamer cannot represent.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// The pixel format has no GStreamer equivalent.
    #[error("pixel format {0:?} has no GStreamer video format")]
    Format(PixelFormat),
    /// The video info could not be built (e.g. a size GStreamer refuses).
    #[error("video info for {width}x{height}: {source}")]
    Info {
        /// Width, pixels.
        width: u64,
        /// Height, pixels.
        height: u64,
        /// GStreamer's reason.
        source: gst::glib::BoolError,
    },
}

/// The frame rate of a description (`0/1` when unknown, as GStreamer writes
/// a variable or unknown rate).
pub fn framerate(s: &StreamDesc) -> gst::Fraction {
    match (i32::try_from(s.fps_num), i32::try_from(s.fps_den)) {
        (Ok(n), Ok(d)) if n > 0 && d > 0 => gst::Fraction::new(n, d),
        _ => gst::Fraction::new(0, 1),
    }
}

/// The colorimetry of the description's H.273 codes (`StreamDesc::colour`:
/// `matrix | primaries << 8 | transfer << 16 | range << 24`), `None` when
/// every field is unknown (0).
pub fn colorimetry(colour: u64) -> Option<gst_video::VideoColorimetry> {
    if colour == 0 {
        return None;
    }
    let byte = |shift: u32| ((colour >> shift) & 0xff) as u32;
    let range = match byte(24) {
        1 => gst_video::VideoColorRange::Range16_235,
        2 => gst_video::VideoColorRange::Range0_255,
        _ => gst_video::VideoColorRange::Unknown,
    };
    Some(gst_video::VideoColorimetry::new(
        range,
        gst_video::VideoColorMatrix::from_iso(byte(0)),
        gst_video::VideoTransferFunction::from_iso(byte(16)),
        gst_video::VideoColorPrimaries::from_iso(byte(8)),
    ))
}

/// `StreamDesc::colour` of a GStreamer colorimetry (inverse of [`colorimetry`]).
pub fn colour_code(c: &gst_video::VideoColorimetry) -> u64 {
    let range = match c.range() {
        gst_video::VideoColorRange::Range16_235 => 1u64,
        gst_video::VideoColorRange::Range0_255 => 2,
        _ => 0,
    };
    let matrix = u64::from(c.matrix().to_iso() & 0xff);
    let primaries = u64::from(c.primaries().to_iso() & 0xff);
    let transfer = u64::from(c.transfer().to_iso() & 0xff);
    matrix | primaries << 8 | transfer << 16 | range << 24
}

/// The packed (GStreamer default strides) video info of frames of `s`:
/// format, size, frame rate, colorimetry.
pub fn video_info(s: &StreamDesc) -> Result<gst_video::VideoInfo, CapsError> {
    let format = video_format(s.format()).ok_or(CapsError::Format(s.format()))?;
    let info_err = |source| CapsError::Info {
        width: s.width,
        height: s.height,
        source,
    };
    let (w, h) = (
        u32::try_from(s.width).unwrap_or(u32::MAX),
        u32::try_from(s.height).unwrap_or(u32::MAX),
    );
    let b = gst_video::VideoInfo::builder(format, w, h).fps(framerate(s));
    match colorimetry(s.colour) {
        Some(c) => b.colorimetry(&c).build(),
        None => b.build(),
    }
    .map_err(info_err)
}

/// Whether a slot of `s` has GStreamer's default layout for `info` (plane
/// offsets and pitches equal its offsets and strides), so a buffer over the
/// slot needs no `GstVideoMeta` to be read correctly.
pub fn is_default_layout(s: &StreamDesc, info: &gst_video::VideoInfo) -> bool {
    s.frame_size == info.size() as u64
        && (0..2).all(|i| {
            info.offset().get(i).map(|&o| o as u64) == Some(s.plane_offset[i])
                && info.stride().get(i).map(|&p| p as u64) == Some(s.plane_pitch[i])
        })
}

/// The caps of a packet ring's codec (the ring carries FFmpeg's `AVCodecID`:
/// [`Codec::from_av_codec_id`]).
///
/// H.264: `stream-format=avc, alignment=au` with `codec_data` the
/// `AVCDecoderConfigurationRecord` made from the ring's Annex B extradata
/// ([`avcc_from_annexb`]; `None` when it has no SPS and PPS): samples carry
/// 4-byte length prefixes and no parameter sets, as in an MP4 file, so that
/// `h264parse ! mp4mux` writes the source's samples unchanged. HEVC:
/// `stream-format=byte-stream, alignment=au` (the source puts the
/// parameter sets in front of the first keyframe). `extradata` `None`: the
/// template caps.
pub fn packet_caps(codec: Codec, extradata: Option<&[u8]>) -> Option<gst::Caps> {
    match (codec, extradata) {
        (Codec::H264, None) => Some(
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        ),
        (Codec::H264, Some(x)) => Some(
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .field(
                    "codec_data",
                    gst::Buffer::from_mut_slice(avcc_from_annexb(x)?),
                )
                .build(),
        ),
        (Codec::Hevc, _) => Some(
            gst::Caps::builder("video/x-h265")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        ),
        _ => None,
    }
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes
/// removed; empty units skipped).
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut units = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        // A 4-byte start code leaves its leading zero at the end of the
        // previous unit (and trailing zero bytes are not part of a NAL).
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        if end > s {
            units.push(&data[s..end]);
        }
    }
    units
}

/// An Annex B access unit as AVC samples carry it: each NAL unit with a
/// 4-byte big-endian length instead of its start code.
pub fn annexb_to_avc(au: &[u8]) -> Vec<u8> {
    let units = annexb_nal_units(au);
    let mut out = Vec::with_capacity(au.len() + 4);
    for u in units {
        out.extend_from_slice(&(u.len() as u32).to_be_bytes());
        out.extend_from_slice(u);
    }
    out
}

/// The `AVCDecoderConfigurationRecord` (ISO/IEC 14496-15 §5.3.3.1) of H.264
/// parameter sets in Annex B form: profile, compatibility and level from the
/// first SPS, 4-byte NAL lengths, every SPS (type 7) and PPS (type 8).
/// `None` without an SPS and a PPS, or with a unit too long for the record.
pub fn avcc_from_annexb(extradata: &[u8]) -> Option<Vec<u8>> {
    let units = annexb_nal_units(extradata);
    let sps: Vec<&[u8]> = units.iter().copied().filter(|u| u[0] & 0x1f == 7).collect();
    let pps: Vec<&[u8]> = units.iter().copied().filter(|u| u[0] & 0x1f == 8).collect();
    let first = sps.first()?;
    if pps.is_empty() || first.len() < 4 || sps.len() > 31 || pps.len() > 255 {
        return None;
    }
    let mut out = vec![
        1,
        first[1],
        first[2],
        first[3],
        0xff,
        0xe0 | sps.len() as u8,
    ];
    for s in &sps {
        out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_be_bytes());
        out.extend_from_slice(s);
    }
    out.push(pps.len() as u8);
    for p in &pps {
        out.extend_from_slice(&u16::try_from(p.len()).ok()?.to_be_bytes());
        out.extend_from_slice(p);
    }
    Some(out)
}

/// The stream description a sink publishes for `info`: the publisher's
/// packed layout (pitches rounded up to 256 bytes), frame rate and colour;
/// the codec is unknown (raw video has none).
pub fn stream_desc(info: &gst_video::VideoInfo) -> Result<StreamDesc, SinkFormatError> {
    let format = pixel_format(info.format()).ok_or(SinkFormatError::Format(info.format()))?;
    let mut d = StreamDesc::packed(info.width(), info.height(), format, Codec::Unknown(0))?;
    let fps = info.fps();
    if fps.numer() > 0 && fps.denom() > 0 {
        d.fps_num = fps.numer() as u64;
        d.fps_den = fps.denom() as u64;
    }
    d.colour = colour_code(&info.colorimetry());
    Ok(d)
}

/// Caps a sink cannot publish.
#[derive(Debug, thiserror::Error)]
pub enum SinkFormatError {
    /// Only NV12 and P010_10LE are published.
    #[error("format {0:?} is not NV12 or P010_10LE")]
    Format(gst_video::VideoFormat),
    /// The size is outside cuframes' limits.
    #[error(transparent)]
    Stream(#[from] cuframes_core::layout::StreamError),
}

/// Maps a source's timestamps (ns, `pts_ns` of frames or packets) to
/// running time for a live source: the first frame — and the first after a
/// discontinuity, a stream change or a timestamp going backwards (a
/// publisher that looped or restarted) — is stamped with the running time
/// at which it arrived; later ones keep their distance from it in source
/// time. So buffers are spaced as the source spaced them, and the clock
/// only sets where the stream starts.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimeMap {
    /// `(source ns, running time ns)` of the anchor frame.
    anchor: Option<(i64, u64)>,
    /// Source time of the previous frame.
    last: Option<i64>,
}

impl TimeMap {
    /// Forgets the anchor: the next [`TimeMap::map`] sets a new one.
    pub fn reset(&mut self) {
        *self = TimeMap::default();
    }

    /// Running time (ns) of a frame with source time `ts` (ns) arriving at
    /// running time `now` (ns); `None` source time maps to `now` and sets
    /// a new anchor at the next timed frame.
    pub fn map(&mut self, ts: Option<i64>, now: u64) -> u64 {
        let Some(ts) = ts else {
            self.reset();
            return now;
        };
        if self.last.is_some_and(|l| ts < l) {
            self.anchor = None;
        }
        self.last = Some(ts);
        let (t0, r0) = *self.anchor.get_or_insert((ts, now));
        let d = ts.saturating_sub(t0);
        if d >= 0 {
            r0.saturating_add(d as u64)
        } else {
            r0.saturating_sub(d.unsigned_abs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_units_and_avc_samples() {
        let au = [
            0, 0, 0, 1, 0x65, 1, 2, 0, 0, 1, 0x41, 3, 0, 0, 0, 1, 0x06, 9,
        ];
        assert_eq!(
            annexb_nal_units(&au),
            vec![&[0x65, 1, 2][..], &[0x41, 3][..], &[0x06, 9][..]]
        );
        assert_eq!(
            annexb_to_avc(&au),
            [0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 2, 0x41, 3, 0, 0, 0, 2, 0x06, 9]
        );
        assert!(annexb_nal_units(&[0, 0, 0]).is_empty());
    }

    #[test]
    fn avcc_record_from_parameter_sets() {
        let x = [
            0, 0, 0, 1, 0x67, 100, 0, 31, 0xac, 0, 0, 1, 0x68, 0xee, 0x3c,
        ];
        assert_eq!(
            avcc_from_annexb(&x).unwrap(),
            [1, 100, 0, 31, 0xff, 0xe1, 0, 5, 0x67, 100, 0, 31, 0xac, 1, 0, 3, 0x68, 0xee, 0x3c]
        );
        // No PPS, or nothing at all: no record.
        assert_eq!(avcc_from_annexb(&x[..10]), None);
        assert_eq!(avcc_from_annexb(&[]), None);
    }

    #[test]
    fn time_map_keeps_source_spacing_and_reanchors_backwards() {
        let mut m = TimeMap::default();
        assert_eq!(m.map(Some(1_000), 50_000), 50_000);
        assert_eq!(m.map(Some(41_000), 99_999), 90_000);
        // Looped: time goes backwards, re-anchored at the arrival time.
        assert_eq!(m.map(Some(0), 200_000), 200_000);
        assert_eq!(m.map(Some(40_000), 200_001), 240_000);
        // Untimed frames take the arrival time.
        assert_eq!(m.map(None, 300_000), 300_000);
        assert_eq!(m.map(Some(5), 310_000), 310_000);
    }

    #[test]
    fn default_layout_only_when_pitches_match() {
        gst::init().unwrap();
        let s = StreamDesc::packed(1280, 720, PixelFormat::Nv12, Codec::H264).unwrap();
        assert!(is_default_layout(&s, &video_info(&s).unwrap()));
        // 640 bytes per row are padded to 768 by the publisher.
        let s = StreamDesc::packed(640, 360, PixelFormat::Nv12, Codec::H264).unwrap();
        assert!(!is_default_layout(&s, &video_info(&s).unwrap()));
    }

    #[test]
    fn colour_codes_round_trip() {
        gst::init().unwrap();
        // BT.709 matrix 1, primaries 1, transfer 1, limited range.
        let code = 1 | 1 << 8 | 1 << 16 | 1 << 24;
        let c = colorimetry(code).unwrap();
        assert_eq!(c.matrix(), gst_video::VideoColorMatrix::Bt709);
        assert_eq!(colour_code(&c), code);
        assert!(colorimetry(0).is_none());
    }
}
