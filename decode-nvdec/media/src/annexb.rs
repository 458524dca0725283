//! Length-prefixed (MP4 / Matroska) H.264 and HEVC samples to Annex B, as
//! the packet ring carries them (`docs/protocol.md` §9.3).
//!
//! What FFmpeg's `h264_mp4toannexb` / `hevc_mp4toannexb` bitstream filters
//! do, minus one thing: parameter sets are *not* inserted in front of
//! keyframes, because the ring carries them once, as extradata. Each NAL
//! unit's big-endian length prefix (1, 2 or 4 bytes, from the `avcC` /
//! `hvcC` record) becomes a 4-byte start code `00 00 00 01`; with 4-byte
//! prefixes (what x264, x265 and most cameras write) a packet keeps its size.
//!
//! Input from a file is untrusted: every length is checked and nothing panics.

use cuframes_core::Codec;
use thiserror::Error;

/// The start code put in front of every NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Converting extradata or a packet failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnnexBError {
    /// The `avcC` / `hvcC` record is cut short or malformed.
    #[error("{codec} decoder configuration record is malformed: {what}")]
    BadConfig {
        /// `avcC` or `hvcC`.
        codec: &'static str,
        /// What is wrong.
        what: &'static str,
    },
    /// A NAL length prefix runs past the end of the packet.
    #[error("NAL unit of {len} bytes at offset {at} runs past the {size}-byte packet")]
    Truncated {
        /// Offset of the length prefix.
        at: usize,
        /// Declared NAL length.
        len: usize,
        /// Packet bytes.
        size: usize,
    },
    /// The codec has no Annex B form here (only H.264 and HEVC).
    #[error("codec {0:?} cannot be converted to Annex B")]
    Codec(Codec),
}

/// Converts one stream's samples: built from its codec and extradata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnexB {
    /// NAL length prefix size, or `None` when the stream already is Annex B.
    length_size: Option<usize>,
    /// Parameter sets, Annex B.
    extradata: Vec<u8>,
}

fn starts_with_start_code(b: &[u8]) -> bool {
    b.starts_with(&[0, 0, 1]) || b.starts_with(&[0, 0, 0, 1])
}

/// Reads a big-endian u16 length and the bytes it covers at `*at`.
fn take_u16_prefixed<'a>(
    b: &'a [u8],
    at: &mut usize,
    codec: &'static str,
) -> Result<&'a [u8], AnnexBError> {
    let bad = |what| AnnexBError::BadConfig { codec, what };
    let len_bytes = b
        .get(*at..*at + 2)
        .ok_or(bad("parameter set length cut short"))?;
    let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
    let nal = b
        .get(*at + 2..*at + 2 + len)
        .ok_or(bad("parameter set runs past the record"))?;
    *at += 2 + len;
    Ok(nal)
}

impl AnnexB {
    /// A converter for a stream of `codec` with `extradata` (an `avcC` /
    /// `hvcC` record, Annex B parameter sets, or empty).
    ///
    /// Annex B or empty extradata means the packets already are Annex B
    /// (raw `.h264`, MPEG-TS): they pass through unchanged.
    ///
    /// Errors: [`AnnexBError::BadConfig`] for a malformed record (wrong
    /// version, cut short, length size 3), [`AnnexBError::Codec`].
    pub fn new(codec: Codec, extradata: &[u8]) -> Result<Self, AnnexBError> {
        if extradata.is_empty() || starts_with_start_code(extradata) {
            return Ok(AnnexB {
                length_size: None,
                extradata: extradata.to_vec(),
            });
        }
        let (name, (length_size, sets)) = match codec {
            Codec::H264 => ("avcC", Self::avcc(extradata)?),
            Codec::Hevc => ("hvcC", Self::hvcc(extradata)?),
            c => return Err(AnnexBError::Codec(c)),
        };
        if !matches!(length_size, 1 | 2 | 4) {
            return Err(AnnexBError::BadConfig {
                codec: name,
                what: "NAL length size is 3",
            });
        }
        Ok(AnnexB {
            length_size: Some(length_size),
            extradata: sets,
        })
    }

    /// `avcC` (ISO/IEC 14496-15 §5.3.3.1): length size and SPS+PPS, Annex B.
    fn avcc(b: &[u8]) -> Result<(usize, Vec<u8>), AnnexBError> {
        let bad = |what| AnnexBError::BadConfig {
            codec: "avcC",
            what,
        };
        if b.len() < 7 {
            return Err(bad("shorter than 7 bytes"));
        }
        if b[0] != 1 {
            return Err(bad("configurationVersion is not 1"));
        }
        let length_size = (b[4] & 3) as usize + 1;
        let mut out = Vec::new();
        let mut at = 5;
        let n_sps = (b[at] & 0x1f) as usize;
        at += 1;
        for _ in 0..n_sps {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(take_u16_prefixed(b, &mut at, "avcC")?);
        }
        let n_pps = *b.get(at).ok_or(bad("PPS count missing"))? as usize;
        at += 1;
        for _ in 0..n_pps {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(take_u16_prefixed(b, &mut at, "avcC")?);
        }
        Ok((length_size, out))
    }

    /// `hvcC` (ISO/IEC 14496-15 §8.3.3.1): length size and every parameter
    /// set array (VPS, SPS, PPS, SEI) in order, Annex B.
    fn hvcc(b: &[u8]) -> Result<(usize, Vec<u8>), AnnexBError> {
        let bad = |what| AnnexBError::BadConfig {
            codec: "hvcC",
            what,
        };
        if b.len() < 23 {
            return Err(bad("shorter than 23 bytes"));
        }
        if b[0] != 1 {
            return Err(bad("configurationVersion is not 1"));
        }
        let length_size = (b[21] & 3) as usize + 1;
        let arrays = b[22] as usize;
        let mut at = 23;
        let mut out = Vec::new();
        for _ in 0..arrays {
            let head = b.get(at..at + 3).ok_or(bad("NAL array header cut short"))?;
            let count = u16::from_be_bytes([head[1], head[2]]) as usize;
            at += 3;
            for _ in 0..count {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(take_u16_prefixed(b, &mut at, "hvcC")?);
            }
        }
        Ok((length_size, out))
    }

    /// The parameter sets in Annex B (the ring's extradata).
    pub fn extradata(&self) -> &[u8] {
        &self.extradata
    }

    /// Whether packets are converted (`false`: they already are Annex B).
    pub fn converts(&self) -> bool {
        self.length_size.is_some()
    }

    /// Writes `sample` as Annex B into `out` (cleared first).
    ///
    /// Errors: [`AnnexBError::Truncated`] when a length prefix runs past the
    /// end (nothing usable is left in `out`).
    pub fn convert(&self, sample: &[u8], out: &mut Vec<u8>) -> Result<(), AnnexBError> {
        out.clear();
        let Some(ls) = self.length_size else {
            out.extend_from_slice(sample);
            return Ok(());
        };
        let mut at = 0;
        while at < sample.len() {
            let prefix = sample.get(at..at + ls).ok_or(AnnexBError::Truncated {
                at,
                len: ls,
                size: sample.len(),
            })?;
            let len = prefix.iter().fold(0usize, |acc, &b| acc << 8 | b as usize);
            let nal = sample
                .get(at + ls..at + ls + len)
                .ok_or(AnnexBError::Truncated {
                    at,
                    len,
                    size: sample.len(),
                })?;
            if !nal.is_empty() {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(nal);
            }
            at += ls + len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal avcC: version 1, High profile, 4-byte lengths, one SPS, one PPS.
    fn avcc() -> Vec<u8> {
        let mut b = vec![1, 0x64, 0, 0x1f, 0xff, 0xe1];
        b.extend_from_slice(&[0, 3, 0x67, 0xaa, 0xbb]);
        b.push(1);
        b.extend_from_slice(&[0, 2, 0x68, 0xcc]);
        b
    }

    #[test]
    fn avcc_becomes_annexb_parameter_sets_and_samples_keep_their_size() {
        let a = AnnexB::new(Codec::H264, &avcc()).unwrap();
        assert_eq!(
            a.extradata(),
            &[0, 0, 0, 1, 0x67, 0xaa, 0xbb, 0, 0, 0, 1, 0x68, 0xcc]
        );
        let sample = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 3, 0x41, 2, 3];
        let mut out = Vec::new();
        a.convert(&sample, &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 1, 0, 0, 0, 1, 0x41, 2, 3]);
        assert_eq!(out.len(), sample.len());
    }

    #[test]
    fn short_length_prefixes_grow_to_start_codes() {
        let mut cfg = avcc();
        cfg[4] = 0xfd; // 2-byte lengths
        let a = AnnexB::new(Codec::H264, &cfg).unwrap();
        let mut out = Vec::new();
        a.convert(&[0, 1, 0x65, 0, 2, 0x41, 9], &mut out).unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 0, 0, 0, 1, 0x41, 9]);
    }

    #[test]
    fn hvcc_arrays_are_concatenated_in_order() {
        let mut b = vec![1];
        b.extend_from_slice(&[0; 20]);
        b.push(0x0f); // lengthSizeMinusOne = 3
        b.push(2); // two arrays
        b.extend_from_slice(&[0x20, 0, 1, 0, 2, 0x40, 1]); // VPS
        b.extend_from_slice(&[0x21, 0, 2, 0, 1, 0x42, 0, 1, 0x43]); // two SPS
        let a = AnnexB::new(Codec::Hevc, &b).unwrap();
        assert_eq!(
            a.extradata(),
            &[0, 0, 0, 1, 0x40, 1, 0, 0, 0, 1, 0x42, 0, 0, 0, 1, 0x43]
        );
        assert!(a.converts());
    }

    #[test]
    fn annexb_input_passes_through() {
        let a = AnnexB::new(Codec::H264, &[0, 0, 0, 1, 0x67]).unwrap();
        assert!(!a.converts());
        let mut out = Vec::new();
        a.convert(&[0, 0, 1, 0x65, 7], &mut out).unwrap();
        assert_eq!(out, [0, 0, 1, 0x65, 7]);
        assert!(!AnnexB::new(Codec::Hevc, &[]).unwrap().converts());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[2u8, 0, 0, 0, 0, 0, 0][..],
            &[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 9, 1],
            &[1, 2, 3],
        ] {
            assert!(matches!(
                AnnexB::new(Codec::H264, bad),
                Err(AnnexBError::BadConfig { codec: "avcC", .. })
            ));
        }
        let mut three = avcc();
        three[4] = 0xfe;
        assert!(AnnexB::new(Codec::H264, &three).is_err());
        assert!(matches!(
            AnnexB::new(Codec::Hevc, &[1; 10]),
            Err(AnnexBError::BadConfig { codec: "hvcC", .. })
        ));
        let a = AnnexB::new(Codec::H264, &avcc()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            a.convert(&[0, 0, 0, 9, 0x65], &mut out),
            Err(AnnexBError::Truncated {
                at: 0,
                len: 9,
                size: 5
            })
        );
        assert!(a.convert(&[0, 0], &mut out).is_err());
        // Every prefix of every input is handled without a panic.
        let cfg = avcc();
        for cut in 0..cfg.len() {
            let _ = AnnexB::new(Codec::H264, &cfg[..cut]);
        }
    }
}
