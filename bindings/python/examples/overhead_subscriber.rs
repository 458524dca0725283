//! The Rust side of the Python subscriber's overhead benchmark
//! (`bench/overhead.py`, docs/BENCHMARKS.md "Python subscriber overhead"):
//! the same loop as the Python child, in Rust.
//!
//! Usage: `overhead_subscriber KEY RUNTIME_DIR FRAMES_PER_ROUND ROUNDS host|cuda`.
//! Per round it reads a line from stdin (the publisher has committed
//! FRAMES_PER_ROUND frames), then times each `next_frame`, touching plane 0
//! and the release over the backlog, and writes `done`. At the end it prints
//! the per-frame times in ns, one per line, after a `times` line.

use cuframes::core::runtime::{Backend, HostBackend, SubscribeOptions, Subscriber};
use cuframes::core::DeliveryMode;
use cuframes::cuda::{CudaBackend, CudaFrameExt};
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

fn run<B: Backend>(
    sub: Subscriber<B>,
    per_round: usize,
    rounds: usize,
    touch: impl Fn(&cuframes::core::runtime::Frame<'_, B>) -> u64,
) -> Result<Vec<u64>, Box<dyn std::error::Error>> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut times = Vec::with_capacity(per_round * rounds);
    let mut sink = 0u64;
    for _ in 0..rounds {
        lines.next().ok_or("stdin closed")??;
        for _ in 0..per_round {
            let t0 = Instant::now();
            let f = sub.next_frame(Duration::from_secs(5))?;
            sink = sink.wrapping_add(touch(&f));
            f.release();
            times.push(t0.elapsed().as_nanos() as u64);
        }
        writeln!(out, "done")?;
        out.flush()?;
    }
    eprintln!("checksum {sink}");
    Ok(times)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 6 {
        return Err(
            "usage: overhead_subscriber KEY RUNTIME_DIR FRAMES_PER_ROUND ROUNDS host|cuda".into(),
        );
    }
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(a[2].clone().into());
    let per_round: usize = a[3].parse()?;
    let rounds: usize = a[4].parse()?;
    let times = if a[5] == "cuda" {
        let sub = Subscriber::connect(&a[1], CudaBackend::subscriber()?, opts)?;
        run(sub, per_round, rounds, |f| {
            f.device_plane(0).map_or(0, |p| p.ptr)
        })?
    } else {
        let sub = Subscriber::connect(&a[1], HostBackend, opts)?;
        run(sub, per_round, rounds, |f| {
            f.plane(0).map_or(0, |(b, _)| u64::from(b[0]))
        })?
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "times")?;
    for t in times {
        writeln!(out, "{t}")?;
    }
    Ok(())
}
