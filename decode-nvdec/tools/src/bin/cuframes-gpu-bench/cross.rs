//! `cross-gpu`: the hand-off of `handoff` with the subscriber process on
//! another GPU than the publisher's (`docs/gpu.md`, "Multi-GPU hosts"), in
//! up to three modes measured in one run:
//!
//! - `local`: subscriber on the publisher's GPU (the baseline of the ratios);
//! - `peer`: subscriber on `--subscriber-gpu` with the slots peer-mapped
//!   (`CrossGpu::PeerMap`): its `check` kernel reads the frame over the link;
//! - `copy`: subscriber on `--subscriber-gpu` copying each frame into a
//!   `CudaFrameCopy` of its own (`CrossGpu::Copy`), releasing the lease once
//!   the copy is done, and checking the copy.
//!
//! Latency as in `handoff` (fill start on the publisher to check end on the
//! subscriber, CLOCK_MONOTONIC), plus two bandwidth figures taken on the
//! last frame while its lease is held: the `check` kernel reading the frame
//! as this mode reaches it (`read`), and `copy_into` a buffer on the
//! subscriber's GPU (`copy`), each `--bw-reps` times back to back, in GB/s
//! (10^9 bytes per second of frame bytes).

use crate::bench_pub::{BenchPublisher, FrameArgs};
use crate::kernels;
use crate::WARMUP;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use cudarc::driver::CudaContext;
use cuframes_core::runtime::clock::monotonic_ns;
use cuframes_core::runtime::{SubscribeOptions, Subscriber};
use cuframes_core::DeliveryMode;
use cuframes_cuda::{
    CrossGpu, CudaBackend, CudaConfig, CudaFrameCopy, CudaFrameExt, DeviceSelect, FrameAccess,
    RawStream, SubscriberConfig,
};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the subscriber works and how it reaches the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// On the publisher's GPU (the baseline).
    Local,
    /// On the subscriber GPU, slots peer-mapped: kernels read over the link.
    Peer,
    /// On the subscriber GPU, each frame copied to its own buffer first.
    Copy,
}

/// What `cross-gpu` was asked to run.
pub struct Run {
    pub publisher_gpu: u32,
    pub subscriber_gpu: u32,
    pub modes: Vec<Mode>,
    pub frames: FrameArgs,
    pub bw_reps: u32,
}

/// One mode's figures, as the subscriber process reports them.
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    p50: f64,
    read_gbps: f64,
    copy_gbps: f64,
}

/// Runs every mode in turn and prints one line each, then the ratios.
pub fn run(r: &Run) -> Result<()> {
    if r.frames.frames <= WARMUP {
        bail!("--frames must exceed the {WARMUP} warm-up frames");
    }
    if r.modes.is_empty() {
        bail!("--modes: give at least one of local, peer, copy");
    }
    let mut got = Vec::new();
    for &mode in &r.modes {
        got.push((mode, one(r, mode)?));
    }
    let find = |m| got.iter().find(|(g, _)| *g == m).map(|(_, f)| *f);
    if let Some(local) = find(Mode::Local) {
        for m in [Mode::Peer, Mode::Copy] {
            if let Some(f) = find(m) {
                println!(
                    "cross-gpu ratio {m:?}/Local (GPU {} -> {} vs GPU {} -> {}): latency p50 {:.2}x, read bandwidth {:.2}x, copy bandwidth {:.2}x",
                    r.publisher_gpu,
                    r.subscriber_gpu,
                    r.publisher_gpu,
                    r.publisher_gpu,
                    f.p50 / local.p50.max(1e-9),
                    f.read_gbps / local.read_gbps.max(1e-9),
                    f.copy_gbps / local.copy_gbps.max(1e-9)
                );
            }
        }
    }
    Ok(())
}

fn one(r: &Run, mode: Mode) -> Result<Figures> {
    let config = CudaConfig {
        device: r.publisher_gpu,
        ..CudaConfig::default()
    };
    let key = "crossgpu";
    let mut bench = BenchPublisher::create(config, key, "x", &r.frames)?;
    let sub_gpu = match mode {
        Mode::Local => r.publisher_gpu,
        Mode::Peer | Mode::Copy => r.subscriber_gpu,
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args(["cross-gpu-sub", "--key", key, "--frames"])
        .arg(r.frames.frames.to_string())
        .arg("--runtime-dir")
        .arg(&bench.dir)
        .arg("--gpu")
        .arg(sub_gpu.to_string())
        .arg("--mode")
        .arg(format!("{mode:?}").to_lowercase())
        .arg("--bw-reps")
        .arg(r.bw_reps.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the subscriber process")?;
    if !bench
        .publisher
        .wait_for_subscribers(1, Duration::from_secs(30))
    {
        let _ = child.kill();
        let _ = child.wait();
        bail!("the {mode:?} subscriber did not connect (see its error above)");
    }
    bench.publish_filled(&r.frames)?;
    let line = BufReader::new(child.stdout.take().context("child stdout")?)
        .lines()
        .next()
        .context("no result from the subscriber process")??;
    let status = child.wait()?;
    if !status.success() {
        bail!("the {mode:?} subscriber process failed: {status}");
    }
    let frame_size = bench.desc.frame_size;
    bench.publisher.finish();
    let (human, fig) = line
        .split_once(" | ")
        .context("malformed result from the subscriber process")?;
    let num = |name: &str| -> f64 {
        fig.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0.0)
    };
    println!(
        "cross-gpu mode={mode:?} publisher GPU {} subscriber GPU {sub_gpu} frame={}x{} NV12 ({frame_size} B) frames={} interval={}us: {human}",
        r.publisher_gpu,
        r.frames.width,
        r.frames.height,
        r.frames.frames - WARMUP,
        r.frames.interval_us
    );
    Ok(Figures {
        p50: num("p50_us"),
        read_gbps: num("read_gbps"),
        copy_gbps: num("copy_gbps"),
    })
}

/// The subscriber process of `cross-gpu`; returns its one result line:
/// a human part, ` | `, then `name=value` figures for the parent.
pub fn sub(
    key: &str,
    frames: u64,
    runtime_dir: PathBuf,
    gpu: u32,
    mode: Mode,
    bw_reps: u32,
) -> Result<String> {
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(runtime_dir);
    opts.name = format!("gpu-bench-{mode:?}");
    let backend = CudaBackend::subscriber_with(SubscriberConfig {
        device: Some(DeviceSelect::Ordinal(gpu)),
        cross_gpu: match mode {
            Mode::Local | Mode::Peer => CrossGpu::PeerMap,
            Mode::Copy => CrossGpu::Copy,
        },
    })?;
    let sub = Subscriber::connect(key, backend, opts)?;
    let access = sub.backend().frame_access();
    match (mode, access) {
        (Mode::Local, FrameAccess::Local)
        | (Mode::Peer, FrameAccess::PeerMapped { .. })
        | (Mode::Copy, FrameAccess::PeerMapped { .. } | FrameAccess::SourceMapped { .. }) => {}
        _ => bail!("mode {mode:?} on GPU {gpu} resolved to {access:?}: not what it measures (same GPU as the publisher?)"),
    }
    let dev = sub.backend().device().context("attached device")?.clone();
    let ctx = CudaContext::new(gpu as usize)?;
    let stream = ctx.new_stream()?;
    let raw = RawStream::from_raw(stream.cu_stream());
    let k = kernels::Kernels::load(&ctx)?;
    let err = stream.alloc_zeros::<u32>(1)?;
    let desc = sub.stream();
    let words = desc.frame_size / 4;
    let mut copy = CudaFrameCopy::new(&dev, &desc)?;
    let mut lat = Vec::with_capacity(frames as usize);
    let (mut read_gbps, mut copy_gbps) = (0.0, 0.0);
    for n in 0..frames {
        let f = sub.next_frame(Duration::from_secs(10))?;
        let meta = *f.meta();
        let val = meta.source_index as u32 + 1;
        f.wait_in(raw)?;
        let last = n + 1 == frames;
        if last {
            // Bandwidth, with the lease held: reads as this mode reaches the
            // frame (SourceMapped: not readable here, so not measured), and
            // copies to this GPU.
            let bytes = (desc.frame_size * u64::from(bw_reps)) as f64;
            if f.device().ordinal() == gpu {
                let t = monotonic_ns();
                for _ in 0..bw_reps {
                    k.check(&stream, f.memory().device_ptr(), words, val, &err)?;
                }
                stream.synchronize()?;
                read_gbps = bytes / (monotonic_ns() - t).max(1) as f64;
            }
            let t = monotonic_ns();
            for _ in 0..bw_reps {
                f.copy_into(&mut copy, raw)?;
            }
            stream.synchronize()?;
            copy_gbps = bytes / (monotonic_ns() - t).max(1) as f64;
        }
        let ptr = match mode {
            Mode::Copy => {
                f.copy_into(&mut copy, raw)?;
                f.release_after(raw)?;
                copy.device_ptr()
            }
            Mode::Local | Mode::Peer => {
                let p = f.memory().device_ptr();
                k.check(&stream, p, words, val, &err)?;
                f.release_after(raw)?;
                p
            }
        };
        if mode == Mode::Copy {
            k.check(&stream, ptr, words, val, &err)?;
        }
        stream.synchronize()?;
        let t1 = monotonic_ns();
        if meta.source_index >= WARMUP {
            lat.push(t1.saturating_sub(meta.pts_ns.unwrap_or(0) as u64));
        }
    }
    let errors = stream.clone_dtoh(&err)?[0];
    if lat.is_empty() {
        bail!("--frames must exceed the {WARMUP} warm-up frames");
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    let read = if read_gbps > 0.0 {
        format!("{read_gbps:.1} GB/s")
    } else {
        "not readable here".into()
    };
    Ok(format!(
        "{access:?}: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us; kernel read of the frame {read}, copy_into this GPU {copy_gbps:.1} GB/s ({bw_reps} reps); words differing from the expected frame: {errors} | p50_us={:.3} read_gbps={read_gbps:.3} copy_gbps={copy_gbps:.3} errors={errors}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        pct(0.5)
    ))
}
