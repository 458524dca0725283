//! The packet side: `--record` (the encoded packets to MP4 / Matroska
//! without re-encoding, opened at the first packet) and `--packets-only`.

use super::args::Args;
use super::ending;
use anyhow::{bail, Context, Result};
use cuframes::{Codec, Packet, Subscriber};
use cuframes_media::{RecordStream, Recorder};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The packet side: an optional recording and counters.
pub(crate) struct PacketSink {
    record: Option<PathBuf>,
    recorder: Option<Recorder>,
    received: u64,
}

impl PacketSink {
    /// The packet side of `sub`, if its publisher has a packet ring.
    pub(crate) fn create(args: &Args, sub: &Subscriber) -> Result<Option<Self>> {
        if !sub.has_packets() {
            return Ok(None);
        }
        Ok(Some(PacketSink {
            record: args.record.clone(),
            recorder: None,
            received: 0,
        }))
    }

    /// Opens the recording at the first packet: by then the publisher has
    /// stored the codec extradata (§9.3), even one that sets it late.
    fn open_recorder(path: &Path, sub: &Subscriber) -> Result<Recorder> {
        let cp = sub
            .codec_params()
            .context("reading the packet ring's codec")?;
        let Some(codec) = Codec::from_av_codec_id(cp.codec_id) else {
            bail!(
                "cannot record codec id {} (only H.264 and HEVC)",
                cp.codec_id
            );
        };
        if cp.extradata.is_empty() {
            bail!("the publisher's packet ring has no codec extradata to record with");
        }
        let s = sub.stream();
        let stream = RecordStream {
            codec,
            width: s.width as u32,
            height: s.height as u32,
            extradata: cp.extradata,
            frame_duration_ns: (s.fps_num > 0 && s.fps_den > 0)
                .then(|| (s.fps_den as i64).saturating_mul(1_000_000_000) / s.fps_num as i64),
        };
        Ok(Recorder::create(path, &stream)?)
    }

    fn take(&mut self, p: &Packet, sub: &Subscriber) -> Result<()> {
        self.received += 1;
        if let (None, Some(path)) = (&self.recorder, &self.record) {
            self.recorder = Some(Self::open_recorder(path, sub)?);
        }
        if let Some(r) = self.recorder.as_mut() {
            r.write(&p.data, p.meta.pts_ns, p.meta.dts_ns, p.meta.is_key())?;
        }
        Ok(())
    }

    /// Reads every packet available now; `false` once the publisher is gone.
    pub(crate) fn drain(&mut self, sub: &Subscriber, args: &Args) -> Result<bool> {
        loop {
            if self.done(args) {
                return Ok(true);
            }
            match sub.next_packet(Duration::ZERO) {
                Ok(p) => self.take(&p, sub)?,
                Err(e) if e.is_timeout() => return Ok(true),
                Err(e) if e.is_disconnected() => return Ok(false),
                Err(e) => return Err(e).context("receiving a packet"),
            }
        }
    }

    pub(crate) fn done(&self, args: &Args) -> bool {
        args.max_packets.is_some_and(|m| self.received >= m)
    }

    pub(crate) fn finish(self, name: &str, sub: &Subscriber) -> Result<()> {
        if let Some(r) = self.recorder {
            let written = r.written();
            r.finish()?;
            eprintln!("{name}: recorded {written} packets");
        }
        let st = sub.packet_stats();
        eprintln!(
            "{name}: packets: received {}, {} bytes, lost {}, discontinuities {}",
            st.received, st.bytes, st.lost, st.discontinuities
        );
        Ok(())
    }
}

/// --packets-only: every packet until the publisher ends (or --max-packets).
/// `Ok(Err(_))`: the publisher went away before the end of its stream.
pub(crate) fn run_packets(
    args: &Args,
    sub: &Subscriber,
    sink: &mut PacketSink,
    stop: &AtomicBool,
) -> Result<Result<&'static str, anyhow::Error>> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let slice = timeout.min(Duration::from_millis(100));
    let mut last = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Ok("stopped by signal"));
        }
        if sink.done(args) {
            return Ok(Ok("packet limit reached"));
        }
        match sub.next_packet(slice) {
            Ok(p) => {
                last = Instant::now();
                sink.take(&p, sub)?
            }
            Err(e) if e.is_disconnected() => return Ok(ending(sub, args)),
            Err(e) if e.is_timeout() && last.elapsed() < timeout => {}
            Err(e) if e.is_timeout() && args.no_reconnect => {
                bail!("no packet for {timeout:?} (is the publisher stalled?)")
            }
            Err(e) if e.is_timeout() => {
                eprintln!(
                    "no packet for {timeout:?}; waiting for the publisher of {:?}",
                    args.key
                );
                last = Instant::now();
            }
            Err(e) => return Err(e).context("receiving a packet"),
        }
        if args.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.sleep_ms));
        }
    }
}
