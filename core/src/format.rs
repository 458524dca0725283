//! Pixel formats and codecs named on the wire (`docs/protocol.md` §3.3).

/// Layout of a decoded frame in a slot.
///
/// Codes are the `pixel_format` field of the stream description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// 8-bit 4:2:0, two planes: Y (`height` rows of `width` bytes) then
    /// interleaved CbCr (`ceil(height/2)` rows of `2*ceil(width/2)` bytes).
    Nv12,
    /// 10-bit 4:2:0 in 16-bit little-endian words (value in the high 10 bits),
    /// planes as NV12 with two bytes per sample.
    P010,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl PixelFormat {
    /// Wire code of the format.
    pub const fn code(self) -> u32 {
        match self {
            PixelFormat::Nv12 => 1,
            PixelFormat::P010 => 2,
            PixelFormat::Unknown(c) => c,
        }
    }

    /// Format of a wire code; never fails (unknown codes map to `Unknown`).
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => PixelFormat::Nv12,
            2 => PixelFormat::P010,
            c => PixelFormat::Unknown(c),
        }
    }

    /// Bytes per sample of each plane (1 for NV12, 2 for P010), `None` if unknown.
    pub const fn bytes_per_sample(self) -> Option<u32> {
        match self {
            PixelFormat::Nv12 => Some(1),
            PixelFormat::P010 => Some(2),
            PixelFormat::Unknown(_) => None,
        }
    }

    /// Number of planes (2 for NV12 and P010), `None` if unknown.
    pub const fn plane_count(self) -> Option<u32> {
        match self {
            PixelFormat::Nv12 | PixelFormat::P010 => Some(2),
            PixelFormat::Unknown(_) => None,
        }
    }

    /// `(row bytes, rows)` of plane `plane` for a `width` × `height` frame
    /// (pixels), without pitch padding. `None` for an unknown format or plane.
    pub const fn plane_extent(self, plane: u32, width: u32, height: u32) -> Option<(u64, u64)> {
        let bps = match self.bytes_per_sample() {
            Some(b) => b as u64,
            None => return None,
        };
        let cw = (width as u64).div_ceil(2);
        let ch = (height as u64).div_ceil(2);
        match plane {
            0 => Some((width as u64 * bps, height as u64)),
            1 => Some((2 * cw * bps, ch)),
            _ => None,
        }
    }
}

/// FFmpeg's `AV_CODEC_ID_NONE`: what [`Codec::av_codec_id`] gives a codec
/// FFmpeg has no id for here.
pub const AV_CODEC_ID_NONE: u32 = 0;
/// FFmpeg's `AV_CODEC_ID_H264`, [`Codec::H264`] (the packet ring's
/// `codec_id`, `docs/protocol.md` §9.2).
pub const AV_CODEC_ID_H264: u32 = 27;
/// FFmpeg's `AV_CODEC_ID_HEVC`, [`Codec::Hevc`] (the packet ring's
/// `codec_id`, `docs/protocol.md` §9.2).
pub const AV_CODEC_ID_HEVC: u32 = 173;

/// Codec of the source's encoded video.
///
/// Two numberings: the wire code of the stream description
/// ([`Codec::code`], §3.3) and FFmpeg's `AVCodecID`, used by the packet
/// ring (§9) and the front-ends ([`Codec::av_codec_id`],
/// [`Codec::from_av_codec_id`]); both are converted here only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    Hevc,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl Codec {
    /// Wire code of the codec.
    pub const fn code(self) -> u32 {
        match self {
            Codec::H264 => 1,
            Codec::Hevc => 2,
            Codec::Unknown(c) => c,
        }
    }

    /// Codec of a wire code; never fails.
    pub const fn from_code(code: u32) -> Self {
        match code {
            1 => Codec::H264,
            2 => Codec::Hevc,
            c => Codec::Unknown(c),
        }
    }

    /// The codec of an FFmpeg `AVCodecID` ([`AV_CODEC_ID_H264`],
    /// [`AV_CODEC_ID_HEVC`]); `None` for any other id (an `AVCodecID` is
    /// not a wire code, so it never becomes [`Codec::Unknown`]).
    pub const fn from_av_codec_id(id: u32) -> Option<Self> {
        match id {
            AV_CODEC_ID_H264 => Some(Codec::H264),
            AV_CODEC_ID_HEVC => Some(Codec::Hevc),
            _ => None,
        }
    }

    /// FFmpeg's `AVCodecID` of the codec; [`AV_CODEC_ID_NONE`] (0) for
    /// [`Codec::Unknown`].
    pub const fn av_codec_id(self) -> u32 {
        match self {
            Codec::H264 => AV_CODEC_ID_H264,
            Codec::Hevc => AV_CODEC_ID_HEVC,
            Codec::Unknown(_) => AV_CODEC_ID_NONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nv12_plane_extents_round_odd_sizes_up() {
        assert_eq!(
            PixelFormat::Nv12.plane_extent(0, 641, 361),
            Some((641, 361))
        );
        assert_eq!(
            PixelFormat::Nv12.plane_extent(1, 641, 361),
            Some((642, 181))
        );
        assert_eq!(
            PixelFormat::P010.plane_extent(1, 640, 360),
            Some((1280, 180))
        );
        assert_eq!(PixelFormat::Nv12.plane_extent(2, 640, 360), None);
    }

    #[test]
    fn av_codec_ids_round_trip() {
        for c in [Codec::H264, Codec::Hevc] {
            assert_eq!(Codec::from_av_codec_id(c.av_codec_id()), Some(c));
        }
        assert_eq!(Codec::H264.av_codec_id(), 27);
        assert_eq!(Codec::Hevc.av_codec_id(), 173);
        assert_eq!(Codec::Unknown(1).av_codec_id(), AV_CODEC_ID_NONE);
        for id in [0, 1, 2, 26, 28, 172, 174, u32::MAX] {
            assert_eq!(Codec::from_av_codec_id(id), None);
        }
    }

    #[test]
    fn codes_round_trip() {
        for c in 0..8 {
            assert_eq!(PixelFormat::from_code(c).code(), c);
            assert_eq!(Codec::from_code(c).code(), c);
        }
    }
}
