//! Writing received packets to an MP4 or Matroska file without re-encoding
//! (what `ffmpeg -c copy` does), with libavformat through `ffmpeg-next`.
//!
//! The packets are Annex B with Annex B extradata, as the packet ring
//! carries them (`docs/protocol.md` §9.3); the MP4 and Matroska muxers turn
//! the extradata into an `avcC` / `hvcC` record and the packets back into
//! 4-byte length-prefixed samples. Timestamps arrive in nanoseconds and are
//! rounded to the nearest tick of the time base the muxer picks (MP4: the
//! 1/90000 requested here; Matroska: always 1/1000).
//!
//! Missing decode timestamps are filled in as the `ffmpeg` tool does for a
//! stream copy: demuxers such as Matroska's give none for the first packets
//! of a stream with B-frames, so packets without dts are held until the
//! first packet with one, then given `dts = that dts − k · frame duration`
//! (k packets back); later gaps get `previous dts + frame duration`.

use std::path::{Path, PathBuf};

use cuframes_core::Codec;
use ffmpeg_next as ffmpeg;
use thiserror::Error;

use crate::codecpar;
use crate::demux::init_ffmpeg;

/// Recording failed.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The output name has no extension FFmpeg knows, or the file cannot be created.
    #[error("{path}: cannot create the output: {source}")]
    Create {
        /// Output path.
        path: PathBuf,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// The codec cannot be recorded (only H.264 and HEVC).
    #[error("codec {0:?} cannot be recorded")]
    Codec(Codec),
    /// The extradata could not be attached.
    #[error("codec extradata: {0}")]
    Extradata(String),
    /// The muxer refused the stream header.
    #[error("{path}: writing the header failed: {source}")]
    Header {
        /// Output path.
        path: PathBuf,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// The muxer refused a packet.
    #[error("{path}: writing packet {index} failed: {source}")]
    Packet {
        /// Output path.
        path: PathBuf,
        /// Index of the packet in the recording (from 0).
        index: u64,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
    /// The muxer failed to finish the file.
    #[error("{path}: writing the trailer failed: {source}")]
    Trailer {
        /// Output path.
        path: PathBuf,
        /// FFmpeg's error.
        #[source]
        source: ffmpeg::Error,
    },
}

/// What a recording's single video stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStream {
    /// H.264 or HEVC.
    pub codec: Codec,
    /// Coded width, pixels.
    pub width: u32,
    /// Coded height, pixels.
    pub height: u32,
    /// Annex B parameter sets (SPS/PPS, VPS for HEVC).
    pub extradata: Vec<u8>,
    /// Duration of one frame, ns (from the frame rate), used to fill in
    /// missing decode timestamps; `None`: missing ones stay missing.
    pub frame_duration_ns: Option<i64>,
}

/// Packets held before the first decode timestamp; beyond this many the
/// recorder stops waiting and writes them without dts.
const MAX_HELD: usize = 32;

struct Held {
    data: Vec<u8>,
    pts_ns: Option<i64>,
    key: bool,
}

/// An output file receiving packets.
pub struct Recorder {
    path: PathBuf,
    out: ffmpeg::format::context::Output,
    time_base: ffmpeg::Rational,
    written: u64,
    /// Added to every timestamp so dts keeps growing across a source that
    /// restarts its clock (a looping publisher), ns.
    offset_ns: i64,
    last_dts_ns: Option<i64>,
    last_step_ns: i64,
    frame_ns: Option<i64>,
    held: Vec<Held>,
    seen_dts: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// `ns` in ticks of `tb`, rounded to nearest.
fn ns_to_ticks(ns: i64, tb: ffmpeg::Rational) -> i64 {
    let num = tb.numerator().max(1) as i128;
    let den = tb.denominator().max(1) as i128;
    let scaled = ns as i128 * den;
    let unit = num * 1_000_000_000;
    let q = if scaled >= 0 {
        (scaled + unit / 2) / unit
    } else {
        (scaled - unit / 2) / unit
    };
    q.clamp(i64::MIN as i128 + 1, i64::MAX as i128) as i64
}

/// Decode timestamps for `held` packets that precede one with `next_dts`:
/// `next_dts − k · step` for the packet k back, unless that would put a dts
/// after its pts (the reader lost packets in between); then `min(pts) −
/// k · step`, so dts still grows and never exceeds pts. `None`s without a step.
fn backfill(held: &[Held], next_dts: Option<i64>, step: Option<i64>) -> Vec<Option<i64>> {
    let (Some(step), n) = (step, held.len() as i64) else {
        return vec![None; held.len()];
    };
    let fill = |anchor: i64| -> Vec<i64> {
        (0..n)
            .map(|i| anchor.saturating_sub((n - i).saturating_mul(step)))
            .collect()
    };
    if let Some(d) = next_dts {
        let v = fill(d);
        if held
            .iter()
            .zip(&v)
            .all(|(h, &b)| h.pts_ns.is_some_and(|p| b <= p))
        {
            return v.into_iter().map(Some).collect();
        }
    }
    match held.iter().filter_map(|h| h.pts_ns).min() {
        Some(m) => fill(m).into_iter().map(Some).collect(),
        None => vec![None; held.len()],
    }
}

impl Recorder {
    /// Creates `path` (the container follows the extension: `.mp4`, `.mkv`,
    /// …) with one video stream and writes its header.
    ///
    /// Errors: [`RecordError::Create`], [`RecordError::Codec`],
    /// [`RecordError::Extradata`], [`RecordError::Header`].
    pub fn create(path: &Path, stream: &RecordStream) -> Result<Self, RecordError> {
        init_ffmpeg();
        let create = |source| RecordError::Create {
            path: path.to_path_buf(),
            source,
        };
        let id = match stream.codec {
            Codec::H264 => ffmpeg::codec::Id::H264,
            Codec::Hevc => ffmpeg::codec::Id::HEVC,
            c => return Err(RecordError::Codec(c)),
        };
        let mut out = ffmpeg::format::output(path).map_err(create)?;
        let mut params = ffmpeg::codec::Parameters::new();
        codecpar::write_video(
            &mut params,
            id,
            stream.width,
            stream.height,
            &stream.extradata,
        )
        .map_err(|e| RecordError::Extradata(e.to_string()))?;
        {
            let mut st = out.add_stream(None::<ffmpeg::Codec>).map_err(create)?;
            st.set_parameters(params);
            st.set_time_base(ffmpeg::Rational::new(1, 90_000));
        }
        out.write_header().map_err(|source| RecordError::Header {
            path: path.to_path_buf(),
            source,
        })?;
        let time_base = out
            .stream(0)
            .map_or(ffmpeg::Rational::new(1, 90_000), |s| s.time_base());
        Ok(Recorder {
            path: path.to_path_buf(),
            out,
            time_base,
            written: 0,
            offset_ns: 0,
            last_dts_ns: None,
            last_step_ns: 0,
            frame_ns: stream.frame_duration_ns.filter(|&d| d > 0),
            held: Vec::new(),
            seen_dts: false,
        })
    }

    /// The stream time base the muxer chose (timestamps are rounded to it).
    pub fn time_base(&self) -> (i32, i32) {
        (self.time_base.numerator(), self.time_base.denominator())
    }

    /// Packets written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one packet (Annex B access unit) with its timestamps in ns.
    ///
    /// Packets without dts before the first one with a dts are held and
    /// written with back-filled dts (module docs). If the source's clock
    /// jumps back (a publisher that loops its input flags this as a
    /// discontinuity), later timestamps are shifted so dts keeps increasing,
    /// as muxers require.
    ///
    /// Errors: [`RecordError::Packet`] (the muxer refused it).
    pub fn write(
        &mut self,
        data: &[u8],
        pts_ns: Option<i64>,
        dts_ns: Option<i64>,
        key: bool,
    ) -> Result<(), RecordError> {
        if !self.seen_dts {
            match (dts_ns, self.frame_ns) {
                (None, Some(_)) if self.held.len() < MAX_HELD => {
                    self.held.push(Held {
                        data: data.to_vec(),
                        pts_ns,
                        key,
                    });
                    return Ok(());
                }
                _ => {
                    self.seen_dts = true;
                    let held = std::mem::take(&mut self.held);
                    for (h, dts) in held.iter().zip(backfill(&held, dts_ns, self.frame_ns)) {
                        self.write_now(&h.data, h.pts_ns, dts, h.key)?;
                    }
                }
            }
        }
        let dts_ns = dts_ns.or_else(|| {
            let step = self.frame_ns?;
            Some(self.last_dts_ns? - self.offset_ns + step)
        });
        self.write_now(data, pts_ns, dts_ns, key)
    }

    fn write_now(
        &mut self,
        data: &[u8],
        pts_ns: Option<i64>,
        dts_ns: Option<i64>,
        key: bool,
    ) -> Result<(), RecordError> {
        if let (Some(d), Some(last)) = (dts_ns, self.last_dts_ns) {
            let d = d.saturating_add(self.offset_ns);
            if d <= last {
                self.offset_ns = self
                    .offset_ns
                    .saturating_add(last - d)
                    .saturating_add(self.last_step_ns.max(1));
            }
        }
        let shift = |t: Option<i64>| t.map(|t| t.saturating_add(self.offset_ns));
        let (pts_ns, dts_ns) = (shift(pts_ns), shift(dts_ns));
        if let Some(d) = dts_ns {
            if let Some(last) = self.last_dts_ns {
                self.last_step_ns = d - last;
            }
            self.last_dts_ns = Some(d);
        }
        let mut p = ffmpeg::Packet::copy(data);
        p.set_stream(0);
        p.set_pts(pts_ns.map(|t| ns_to_ticks(t, self.time_base)));
        p.set_dts(dts_ns.map(|t| ns_to_ticks(t, self.time_base)));
        if key {
            p.set_flags(ffmpeg::codec::packet::Flags::KEY);
        }
        p.write_interleaved(&mut self.out)
            .map_err(|source| RecordError::Packet {
                path: self.path.clone(),
                index: self.written,
                source,
            })?;
        self.written += 1;
        Ok(())
    }

    /// Writes the trailer (an MP4's index) and closes the file.
    ///
    /// Errors: [`RecordError::Trailer`].
    pub fn finish(mut self) -> Result<(), RecordError> {
        let held = std::mem::take(&mut self.held);
        for (h, dts) in held.iter().zip(backfill(&held, None, self.frame_ns)) {
            self.write_now(&h.data, h.pts_ns, dts, h.key)?;
        }
        self.out
            .write_trailer()
            .map_err(|source| RecordError::Trailer {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_round_to_the_nearest_tick() {
        let ms = ffmpeg::Rational::new(1, 1000);
        assert_eq!(ns_to_ticks(40_000_000, ms), 40);
        assert_eq!(ns_to_ticks(40_499_999, ms), 40);
        assert_eq!(ns_to_ticks(40_500_000, ms), 41);
        assert_eq!(ns_to_ticks(-80_000_000, ms), -80);
        let mp4 = ffmpeg::Rational::new(1, 90_000);
        // -1024/12800 s = -80 ms.
        assert_eq!(ns_to_ticks(-80_000_000, mp4), -7200);
        assert_eq!(
            ns_to_ticks(i64::MAX, ffmpeg::Rational::new(1, 1_000_000_000)),
            i64::MAX
        );
    }

    fn held(pts: &[i64]) -> Vec<Held> {
        pts.iter()
            .map(|&p| Held {
                data: vec![],
                pts_ns: Some(p),
                key: false,
            })
            .collect()
    }

    #[test]
    fn missing_dts_are_filled_back_from_the_first_known_one() {
        // Matroska, 2 B-frames deep: pts 0, 80 without dts, then dts 0.
        assert_eq!(
            backfill(&held(&[0, 80]), Some(0), Some(40)),
            [Some(-80), Some(-40)]
        );
        // Packets were lost before the known dts: anchored on the held pts.
        assert_eq!(
            backfill(&held(&[0, 80]), Some(880), Some(40)),
            [Some(-80), Some(-40)]
        );
        assert_eq!(backfill(&held(&[0]), Some(0), None), [None]);
    }
}
