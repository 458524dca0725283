//! Timestamp conversion between FFmpeg time bases and nanoseconds.

/// Nanoseconds per second.
pub const NS_PER_SECOND: i64 = 1_000_000_000;

/// Converts `ts` ticks of `time_base` (`(num, den)` seconds per tick) into
/// nanoseconds.
///
/// Same result as FFmpeg's `av_rescale_q(ts, time_base, (AVRational){1, 1000000000})`
/// (round to nearest, halves away from zero), computed in 128-bit integers so
/// it never overflows or panics. Returns `None` when the time base is not
/// positive (`num <= 0` or `den <= 0`) or the result does not fit an `i64`.
pub fn rescale_to_ns(ts: i64, time_base: (i32, i32)) -> Option<i64> {
    let (num, den) = time_base;
    if num <= 0 || den <= 0 {
        return None;
    }
    let n = i128::from(ts) * i128::from(num) * i128::from(NS_PER_SECOND);
    let d = i128::from(den);
    let half = d / 2;
    let q = if n >= 0 {
        (n + half) / d
    } else {
        -((-n + half) / d)
    };
    i64::try_from(q).ok()
}

/// Presentation times for decoded frames, filling in the ones the stream does
/// not carry.
///
/// Raw Annex B streams (`.h264` / `.h265`) have no timestamps at all:
/// `av_read_frame` gives neither pts nor dts, so libavcodec's best-effort
/// timestamp is unknown too. Like the `ffmpeg` CLI, a frame without a time is
/// given the previous frame's time plus one frame duration (`1 / frame_rate`),
/// and the first frame 0. Frames with a time keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameClock {
    frame_ns: Option<i64>,
    next_ns: Option<i64>,
    started: bool,
}

impl FrameClock {
    /// A clock for a stream of `frame_rate` `(num, den)` frames per second;
    /// with an unknown rate (`num <= 0` or `den <= 0`) missing times stay
    /// unknown.
    pub fn new(frame_rate: (i32, i32)) -> FrameClock {
        let (num, den) = frame_rate;
        FrameClock {
            frame_ns: rescale_to_ns(1, (den, num)).filter(|&ns| ns > 0),
            next_ns: None,
            started: false,
        }
    }

    /// Duration of one frame in nanoseconds, if the frame rate is known.
    pub fn frame_ns(&self) -> Option<i64> {
        self.frame_ns
    }

    /// The time of the next frame in presentation order: `pts_ns` if known,
    /// else the previous frame's time plus one frame (0 for the first frame
    /// since [`FrameClock::reset`]); `None` if that cannot be known.
    pub fn stamp(&mut self, pts_ns: Option<i64>) -> Option<i64> {
        let time = match (pts_ns, self.started) {
            (Some(t), _) => Some(t),
            (None, true) => self.next_ns,
            (None, false) => self.frame_ns.map(|_| 0),
        };
        self.started = true;
        self.next_ns = time.zip(self.frame_ns).and_then(|(t, d)| t.checked_add(d));
        time
    }

    /// Forgets the previous frame (after a seek or rewind): the next frame
    /// without a time gets 0.
    pub fn reset(&mut self) {
        self.next_ns = None;
        self.started = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_clock_fills_missing_times() {
        let mut clock = FrameClock::new((25, 1));
        assert_eq!(clock.frame_ns(), Some(40_000_000));
        assert_eq!(clock.stamp(None), Some(0));
        assert_eq!(clock.stamp(None), Some(40_000_000));
        assert_eq!(clock.stamp(Some(1_000_000_000)), Some(1_000_000_000));
        assert_eq!(clock.stamp(None), Some(1_040_000_000));
        clock.reset();
        assert_eq!(clock.stamp(None), Some(0));

        let mut ntsc = FrameClock::new((30000, 1001));
        assert_eq!(ntsc.frame_ns(), Some(33_366_667));

        let mut unknown = FrameClock::new((0, 1));
        assert_eq!(unknown.stamp(None), None);
        assert_eq!(unknown.stamp(Some(5)), Some(5));
        assert_eq!(unknown.stamp(None), None);
        let _ = ntsc.stamp(Some(i64::MAX));
        assert_eq!(ntsc.stamp(None), None);
    }

    #[test]
    fn rescales_common_time_bases() {
        assert_eq!(rescale_to_ns(0, (1, 12800)), Some(0));
        assert_eq!(rescale_to_ns(512, (1, 12800)), Some(40_000_000));
        assert_eq!(rescale_to_ns(-1024, (1, 12800)), Some(-80_000_000));
        assert_eq!(rescale_to_ns(1, (1, 25)), Some(40_000_000));
        assert_eq!(rescale_to_ns(3, (1, 90_000)), Some(33_333));
        assert_eq!(rescale_to_ns(48_000, (1, 1_200_000)), Some(40_000_000));
    }

    #[test]
    fn rounds_halves_away_from_zero_like_av_rescale_q() {
        // 1 tick of 1/2_000_000_000 s is 0.5 ns.
        assert_eq!(rescale_to_ns(1, (1, 2_000_000_000)), Some(1));
        assert_eq!(rescale_to_ns(-1, (1, 2_000_000_000)), Some(-1));
        assert_eq!(rescale_to_ns(3, (1, 2_000_000_000)), Some(2));
    }

    #[test]
    fn rejects_bad_time_bases_and_overflow() {
        assert_eq!(rescale_to_ns(1, (0, 1)), None);
        assert_eq!(rescale_to_ns(1, (1, 0)), None);
        assert_eq!(rescale_to_ns(1, (-1, 25)), None);
        assert_eq!(rescale_to_ns(i64::MAX, (1, 1)), None);
        assert_eq!(rescale_to_ns(i64::MIN, (i32::MAX, 1)), None);
        assert!(rescale_to_ns(i64::MAX, (1, i32::MAX)).is_some());
    }
}
