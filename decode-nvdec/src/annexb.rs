//! Length-prefixed (MP4 / Matroska) H.264 and HEVC access units to Annex B,
//! the byte-stream form NVDEC's parser (and the packet ring) take.
//!
//! The `avcC` record is ISO/IEC 14496-15 §5.3.3.1, `hvcC` §8.3.3.1: a
//! NAL-length size and the parameter sets (SPS/PPS; VPS/SPS/PPS for HEVC),
//! which become the stream's Annex B header.

use cuframes_core::Codec;

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Extradata or a packet that is not what its container promised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnexBError {
    /// The `avcC` / `hvcC` record is cut short or malformed.
    #[error("malformed {record} extradata at byte {at}")]
    Extradata {
        /// `avcC` or `hvcC`.
        record: &'static str,
        /// Offset where parsing stopped.
        at: usize,
    },
    /// A NAL length runs past the end of the packet.
    #[error("NAL unit of {len} bytes at byte {at} runs past the {size}-byte packet")]
    Packet {
        /// Offset of the length field.
        at: usize,
        /// Length read.
        len: usize,
        /// Packet size.
        size: usize,
    },
}

/// How a stream's packets are framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnexB {
    /// NAL length-field size in bytes (1, 2 or 4); `None`: already Annex B.
    length_size: Option<usize>,
    /// Parameter sets as Annex B (start code before each).
    header: Vec<u8>,
}

fn take<'a>(
    b: &'a [u8],
    at: &mut usize,
    n: usize,
    record: &'static str,
) -> Result<&'a [u8], AnnexBError> {
    let s = b
        .get(*at..at.saturating_add(n))
        .ok_or(AnnexBError::Extradata { record, at: *at })?;
    *at += n;
    Ok(s)
}

fn u16_at(b: &[u8], at: &mut usize, record: &'static str) -> Result<usize, AnnexBError> {
    let s = take(b, at, 2, record)?;
    Ok(u16::from_be_bytes([s[0], s[1]]) as usize)
}

impl AnnexB {
    /// Reads `extradata` of a `codec` stream: an `avcC` / `hvcC` record
    /// (version byte 1) means length-prefixed packets; empty or Annex B
    /// extradata means packets are Annex B already.
    pub fn new(codec: Codec, extradata: &[u8]) -> Result<Self, AnnexBError> {
        if extradata.first() != Some(&1) {
            return Ok(AnnexB {
                length_size: None,
                header: extradata.to_vec(),
            });
        }
        let mut header = Vec::new();
        let mut push = |nal: &[u8]| {
            header.extend_from_slice(&START_CODE);
            header.extend_from_slice(nal);
        };
        let b = extradata;
        match codec {
            Codec::H264 => {
                let r = "avcC";
                let mut at = 4;
                let length_size = (take(b, &mut at, 1, r)?[0] & 3) as usize + 1;
                let n_sps = take(b, &mut at, 1, r)?[0] & 0x1f;
                for _ in 0..n_sps {
                    let n = u16_at(b, &mut at, r)?;
                    push(take(b, &mut at, n, r)?);
                }
                let n_pps = take(b, &mut at, 1, r)?[0];
                for _ in 0..n_pps {
                    let n = u16_at(b, &mut at, r)?;
                    push(take(b, &mut at, n, r)?);
                }
                Self::checked(length_size, header, r)
            }
            Codec::Hevc => {
                let r = "hvcC";
                let mut at = 21;
                let length_size = (take(b, &mut at, 1, r)?[0] & 3) as usize + 1;
                let arrays = take(b, &mut at, 1, r)?[0];
                for _ in 0..arrays {
                    take(b, &mut at, 1, r)?; // completeness + NAL type
                    let nalus = u16_at(b, &mut at, r)?;
                    for _ in 0..nalus {
                        let n = u16_at(b, &mut at, r)?;
                        push(take(b, &mut at, n, r)?);
                    }
                }
                Self::checked(length_size, header, r)
            }
            // Other codecs: nothing to convert.
            Codec::Unknown(_) => Ok(AnnexB {
                length_size: None,
                header: extradata.to_vec(),
            }),
        }
    }

    fn checked(len: usize, header: Vec<u8>, record: &'static str) -> Result<Self, AnnexBError> {
        if len == 3 {
            return Err(AnnexBError::Extradata { record, at: 4 });
        }
        Ok(AnnexB {
            length_size: Some(len),
            header,
        })
    }

    /// The parameter sets as Annex B (empty if the extradata had none).
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Whether packets need converting.
    pub fn is_length_prefixed(&self) -> bool {
        self.length_size.is_some()
    }

    /// Appends `packet` to `out` as Annex B (a copy if it already is).
    pub fn convert(&self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), AnnexBError> {
        let Some(ls) = self.length_size else {
            out.extend_from_slice(packet);
            return Ok(());
        };
        let mut at = 0;
        while at < packet.len() {
            let len_bytes = packet.get(at..at + ls).ok_or(AnnexBError::Packet {
                at,
                len: ls,
                size: packet.len(),
            })?;
            let len = len_bytes.iter().fold(0usize, |a, &b| a << 8 | b as usize);
            let nal = packet
                .get(at + ls..(at + ls).saturating_add(len))
                .ok_or(AnnexBError::Packet {
                    at,
                    len,
                    size: packet.len(),
                })?;
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(nal);
            at += ls + len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc() -> Vec<u8> {
        let mut b = vec![1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9];
        b.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]); // high-profile tail, ignored
        b
    }

    #[test]
    fn avcc_gives_sps_pps_and_converts_packets() {
        let a = AnnexB::new(Codec::H264, &avcc()).unwrap();
        assert_eq!(a.header(), &[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 9]);
        let mut out = Vec::new();
        a.convert(&[0, 0, 0, 2, 0x65, 7, 0, 0, 0, 1, 0x06], &mut out)
            .unwrap();
        assert_eq!(out, [0, 0, 0, 1, 0x65, 7, 0, 0, 0, 1, 0x06]);
    }

    #[test]
    fn hvcc_gives_vps_sps_pps() {
        let mut b = vec![1u8; 21];
        b.push(0x0f); // length size 4
        b.push(2); // arrays
        b.extend_from_slice(&[0x20, 0, 1, 0, 2, 0x40, 1]); // VPS
        b.extend_from_slice(&[0x21, 0, 1, 0, 1, 0x42]); // SPS
        let a = AnnexB::new(Codec::Hevc, &b).unwrap();
        assert_eq!(a.header(), &[0, 0, 0, 1, 0x40, 1, 0, 0, 0, 1, 0x42]);
        assert!(a.is_length_prefixed());
    }

    #[test]
    fn annex_b_extradata_passes_through() {
        let a = AnnexB::new(Codec::H264, &[0, 0, 0, 1, 0x67]).unwrap();
        assert!(!a.is_length_prefixed());
        let mut out = Vec::new();
        a.convert(&[0, 0, 1, 0x65], &mut out).unwrap();
        assert_eq!(out, [0, 0, 1, 0x65]);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let full = avcc();
        for n in 1..16 {
            assert!(AnnexB::new(Codec::H264, &full[..n]).is_err(), "cut at {n}");
        }
        let a = AnnexB::new(Codec::H264, &full).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            a.convert(&[0, 0, 0, 9, 0x65], &mut out),
            Err(AnnexBError::Packet { len: 9, .. })
        ));
        assert!(a.convert(&[0, 0], &mut out).is_err());
        assert!(AnnexB::new(Codec::Hevc, &[1; 30]).is_err());
    }
}
