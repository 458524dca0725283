//! The frame loop: receive, hold, read, post-check, hash / write, count;
//! then the summary line.

use super::args::Args;
use super::ending;
use super::output::{Md5Writer, RawOutput};
use super::packets::{run_packets, PacketSink};
use super::stats::Latencies;
use anyhow::{bail, Context, Result};
use cuframes::{Frame, Subscriber};
use cuframes_media::rawvideo::Geometry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receives from `sub` until the stream ends, a limit is reached or a
/// signal arrives, reading each frame with `read` when its bytes are
/// wanted (`--framemd5`, `--rawvideo`); prints the summary line. With
/// `--packets-only`, receives packets instead.
pub(crate) fn receive(
    args: &Args,
    sub: Subscriber,
    mut read: impl FnMut(&Frame<'_>, &mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut sink = PacketSink::create(args, &sub)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("subscriber-{}", sub.id()));
    let s = sub.stream();
    eprintln!(
        "{name}: connected to {:?}: {}x{} {:?} ({:?} source), mode {:?}, {:?} memory, pid {} here",
        args.key,
        s.width,
        s.height,
        s.format(),
        s.codec(),
        args.mode,
        sub.offer().memory_kind(),
        std::process::id()
    );
    // SIGINT / SIGTERM end the run cleanly: the framemd5 file and the
    // recording are completed, the summary printed.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    if args.packets_only {
        let Some(mut sink) = sink else {
            bail!("the publisher has no packet ring");
        };
        let end = run_packets(args, &sub, &mut sink, &stop)?;
        match &end {
            Ok(e) => eprintln!("{name}: {e}"),
            Err(e) => eprintln!("{name}: {e}"),
        }
        sink.finish(&name, &sub)?;
        return end.map(|_| ());
    }
    let mut md5 = args
        .framemd5
        .as_ref()
        .map(|p| Md5Writer::create(p, &sub))
        .transpose()?;
    let mut raw = args
        .rawvideo
        .as_ref()
        .map(|p| RawOutput::new(p, args.rawvideo_format));
    let mut packed = Vec::new();
    let timeout = Duration::from_millis(args.timeout_ms);
    let started = Instant::now();
    let mut last_stats = Instant::now();
    let mut latencies = Latencies::default();
    let mut torn = 0u64;
    let end: Result<&'static str>;
    let mut reconnects = 0u64;
    let slice = timeout.min(Duration::from_millis(100));
    let mut last_frame = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            end = Ok("stopped by signal");
            break;
        }
        if args
            .max_frames
            .is_some_and(|m| latencies.len() as u64 + torn >= m)
        {
            end = Ok("frame limit reached");
            break;
        }
        if let Some(s) = sink.as_mut() {
            s.drain(&sub, args)?;
        }
        let frame = match sub.next_frame(slice) {
            Ok(f) => f,
            Err(e) if e.is_disconnected() => {
                end = ending(&sub, args);
                break;
            }
            Err(e) if e.is_timeout() && last_frame.elapsed() < timeout => continue,
            Err(e) if e.is_timeout() && args.no_reconnect => {
                bail!("no frame for {timeout:?} (is the publisher stalled?)")
            }
            Err(e) if e.is_timeout() => {
                // Reconnecting: a publisher that is away is waited for.
                eprintln!(
                    "{name}: no frame for {timeout:?}; waiting for the publisher of {:?}",
                    args.key
                );
                last_frame = Instant::now();
                continue;
            }
            Err(e) => return Err(e).context("receiving a frame"),
        };
        last_frame = Instant::now();
        let now = cuframes::core::runtime::clock::monotonic_ns();
        let meta = *frame.meta();
        let st = sub.stats();
        if st.reconnects > reconnects {
            reconnects = st.reconnects;
            eprintln!(
                "{name}: reconnected to {:?} (reconnect {reconnects})",
                args.key
            );
        }
        if frame.stream_changed() {
            let s = frame.stream();
            eprintln!(
                "{name}: stream changed: {}x{} {:?} (generation {})",
                s.width,
                s.height,
                s.format(),
                s.generation
            );
        }
        // Hold the frame first, then read it: a slot rewritten while the
        // lease was held (or after a revocation) then shows in the hash,
        // and the post-check below must catch every such frame.
        if args.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.sleep_ms));
        }
        let reading = md5.is_some() || raw.is_some();
        if reading {
            read(&frame, &mut packed)?;
        }
        let geometry = {
            let s = frame.stream();
            Geometry {
                width: s.width as u32,
                height: s.height as u32,
                format: s.format(),
            }
        };
        // Post-check: a lease revoked mid-read means the bytes may be torn.
        if !frame.release() {
            torn += 1;
            continue;
        }
        latencies.push(now, meta.publish_ns);
        if let Some(w) = md5.as_mut() {
            w.frame(meta.source_index, &packed)?;
        }
        if let Some(r) = raw.as_mut() {
            match r.write(&name, geometry, &packed, sub.stream()) {
                Ok(true) => {}
                Ok(false) => {
                    end = Ok("the raw video reader closed its input");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if args.stats_interval > 0.0 && last_stats.elapsed().as_secs_f64() >= args.stats_interval {
            last_stats = Instant::now();
            let st = sub.stats();
            eprintln!(
                "{name}: {} frames, {} dropped, {} reconnects, {} stream changes, {:.1} fps",
                st.received,
                st.dropped,
                st.reconnects,
                st.stream_changes,
                st.received as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(w) = md5 {
        w.finish()?;
    }
    if let Some(r) = raw {
        r.finish(&name)?;
    }
    if let Some(mut s) = sink {
        // Packets still in the ring after the last frame.
        if sub.end_reason().is_some() {
            let deadline = Instant::now() + timeout;
            while s.drain(&sub, args)? && !s.done(args) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        s.finish(&name, &sub)?;
    }
    let st = sub.stats();
    let secs = started.elapsed().as_secs_f64();
    let what = match &end {
        Ok(e) => e.to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!(
        "{name}: {what}: received {} frames, dropped {}, revoked {}, {:.1} fps; publish-to-receive latency p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        latencies.len(),
        st.dropped,
        torn,
        latencies.len() as f64 / secs.max(1e-9),
        latencies.percentile_us(0.5),
        latencies.percentile_us(0.99),
        latencies.percentile_us(1.0)
    );
    end.map(|_| ())
}
