//! cuframes-gpu-bench: GPU hand-off latency of cuframes between two
//! processes, for the benchmark report (docs/BENCHMARKS.md, "GPU").
//!
//! `handoff` publishes frames written by a CUDA kernel (`fill`) into a
//! CUDA-backend ring and starts a subscriber process (itself, `handoff-sub`)
//! that waits for each frame (`wait_in`: a stream wait under `IpcEvent`),
//! reads every word of it with a kernel (`check`), synchronises, and records
//! the time from just before the publisher's `fill` launch to the end of its
//! own `check`, both on CLOCK_MONOTONIC. Frames are paced (`--interval-us`)
//! so each hand-off is measured alone, not behind a queue.
//!
//! `cross-gpu` runs the same hand-off with the subscriber on another GPU
//! (peer-mapped or copying each frame) next to the same-GPU baseline, with
//! read and copy bandwidth (`cross.rs`).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use cudarc::driver::CudaContext;
use cuframes_core::runtime::clock::monotonic_ns;
use cuframes_core::runtime::{SubscribeOptions, Subscriber, WaitStrategy};
use cuframes_core::DeliveryMode;
use cuframes_cuda::{CudaBackend, CudaConfig, CudaFrameExt, CudaMemory, CudaSync, RawStream};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod bench_pub;
mod cross;
mod kernels;

use bench_pub::{BenchPublisher, FrameArgs};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SyncArg {
    /// The publisher synchronises its stream before committing.
    HostFence,
    /// Per-slot interprocess events; the subscriber's stream waits on them.
    IpcEvent,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MemoryArg {
    /// VMM allocations exported as fds.
    VmmFd,
    /// Legacy CUDA IPC handles.
    LegacyIpc,
}

/// GPU hand-off benchmarks of cuframes (needs an NVIDIA GPU).
#[derive(Debug, Parser)]
#[command(name = "cuframes-gpu-bench", version, long_about = None)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Kernel-to-kernel publish-to-subscriber latency between two processes.
    Handoff {
        /// How the subscriber learns a frame is complete.
        #[arg(long, value_enum, default_value = "host-fence")]
        sync: SyncArg,
        /// How slots are shared.
        #[arg(long, value_enum, default_value = "vmm-fd")]
        memory: MemoryArg,
        #[command(flatten)]
        frames: FrameArgs,
        /// The subscriber polls (`next_frame` with a zero timeout) instead of
        /// sleeping on the futex.
        #[arg(long)]
        poll: bool,
        /// The blocking subscriber sleeps on the futex at once
        /// (`WaitStrategy::FUTEX_ONLY`) instead of the default wait (spin,
        /// anticipating the stream's pace, then the futex).
        #[arg(long, conflicts_with = "poll")]
        futex_only: bool,
        /// The default wait's spin, µs (`WaitStrategy::spin`; default 50).
        #[arg(long, default_value_t = 50)]
        spin_us: u64,
        /// Run the subscriber as a thread of this process instead of a
        /// second process (same CUDA context: no GPU context switch).
        #[arg(long)]
        in_process: bool,
    },
    /// The hand-off across GPUs: publisher on one GPU, the subscriber
    /// process on the same GPU (`local`), on another with the slots
    /// peer-mapped (`peer`), or copying each frame to its own GPU (`copy`);
    /// the modes run one after the other, then their ratios to `local`.
    CrossGpu {
        /// The publisher's GPU (ordinal).
        #[arg(long, default_value_t = 0)]
        publisher_gpu: u32,
        /// The GPU of the `peer` and `copy` subscribers (ordinal).
        #[arg(long, default_value_t = 1)]
        subscriber_gpu: u32,
        /// Modes to run, in this order.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "local,peer,copy"
        )]
        modes: Vec<cross::Mode>,
        #[command(flatten)]
        frames: FrameArgs,
        /// Back-to-back kernel reads and copies of the last frame for the
        /// bandwidth figures.
        #[arg(long, default_value_t = 200)]
        bw_reps: u32,
    },
    /// The subscriber side of `cross-gpu` (started by it).
    CrossGpuSub {
        #[arg(long)]
        key: String,
        #[arg(long)]
        frames: u64,
        #[arg(long)]
        runtime_dir: PathBuf,
        #[arg(long)]
        gpu: u32,
        #[arg(long, value_enum)]
        mode: cross::Mode,
        #[arg(long)]
        bw_reps: u32,
    },
    /// The subscriber side of `handoff` (started by it).
    HandoffSub {
        #[arg(long)]
        key: String,
        #[arg(long)]
        frames: u64,
        #[arg(long)]
        runtime_dir: PathBuf,
        #[arg(long)]
        poll: bool,
        #[arg(long)]
        futex_only: bool,
        #[arg(long, default_value_t = 50)]
        spin_us: u64,
    },
}

/// Frames at the start of a run that are not counted.
pub(crate) const WARMUP: u64 = 50;

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("cuframes-gpu-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Handoff {
            sync,
            memory,
            frames,
            poll,
            futex_only,
            spin_us,
            in_process,
        } => handoff(
            sync,
            memory,
            &frames,
            Waiting {
                poll,
                futex_only,
                spin_us,
            },
            in_process,
        ),
        Cmd::CrossGpu {
            publisher_gpu,
            subscriber_gpu,
            modes,
            frames,
            bw_reps,
        } => cross::run(&cross::Run {
            publisher_gpu,
            subscriber_gpu,
            modes,
            frames,
            bw_reps,
        }),
        Cmd::CrossGpuSub {
            key,
            frames,
            runtime_dir,
            gpu,
            mode,
            bw_reps,
        } => {
            println!(
                "{}",
                cross::sub(&key, frames, runtime_dir, gpu, mode, bw_reps)?
            );
            Ok(())
        }
        Cmd::HandoffSub {
            key,
            frames,
            runtime_dir,
            poll,
            futex_only,
            spin_us,
        } => {
            let w = Waiting {
                poll,
                futex_only,
                spin_us,
            };
            println!("{}", handoff_sub(&key, frames, runtime_dir, w)?);
            Ok(())
        }
    }
}

/// How the hand-off subscriber waits for a frame.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    /// `next_frame(Duration::ZERO)` in a loop.
    poll: bool,
    /// `WaitStrategy::FUTEX_ONLY`.
    futex_only: bool,
    /// `WaitStrategy::spin`, µs.
    spin_us: u64,
}

impl Waiting {
    fn strategy(self) -> WaitStrategy {
        if self.futex_only {
            WaitStrategy::FUTEX_ONLY
        } else {
            WaitStrategy {
                spin: Duration::from_micros(self.spin_us),
                ..WaitStrategy::default()
            }
        }
    }

    fn name(self) -> String {
        if self.poll {
            "poll".into()
        } else if self.futex_only {
            "futex-only".into()
        } else {
            format!("blocking(spin {} us, anticipate)", self.spin_us)
        }
    }

    fn args(self) -> Vec<String> {
        let mut a = vec!["--spin-us".to_owned(), self.spin_us.to_string()];
        if self.poll {
            a.push("--poll".into());
        }
        if self.futex_only {
            a.push("--futex-only".into());
        }
        a
    }
}

fn handoff(
    sync: SyncArg,
    memory: MemoryArg,
    frames: &FrameArgs,
    waiting: Waiting,
    in_process: bool,
) -> Result<()> {
    if frames.frames <= WARMUP {
        bail!("--frames must exceed the {WARMUP} warm-up frames");
    }
    let config = CudaConfig {
        memory: match memory {
            MemoryArg::VmmFd => CudaMemory::VmmFd,
            MemoryArg::LegacyIpc => CudaMemory::LegacyIpc,
        },
        sync: match sync {
            SyncArg::HostFence => CudaSync::HostFence,
            SyncArg::IpcEvent => CudaSync::IpcEvent,
        },
        device: 0,
    };
    let key = "handoff";
    let mut bench = BenchPublisher::create(config, key, "", frames)?;
    let n = frames.frames;
    let mut sub = if in_process {
        let d = bench.dir.clone();
        Sub::Thread(std::thread::spawn(move || {
            handoff_sub(key, n, d, waiting).map_err(|e| format!("{e:#}"))
        }))
    } else {
        Sub::Process(
            Command::new(std::env::current_exe()?)
                .args(["handoff-sub", "--key", key, "--frames"])
                .arg(n.to_string())
                .arg("--runtime-dir")
                .arg(&bench.dir)
                .args(waiting.args())
                .stdout(Stdio::piped())
                .spawn()
                .context("starting the subscriber process")?,
        )
    };
    if !bench
        .publisher
        .wait_for_subscribers(1, Duration::from_secs(30))
    {
        if let Sub::Process(c) = &mut sub {
            let _ = c.kill();
        }
        bail!("the subscriber did not connect");
    }
    bench.publish_filled(frames)?;
    let line = match sub {
        Sub::Process(mut child) => {
            let line = BufReader::new(child.stdout.take().context("child stdout")?)
                .lines()
                .next()
                .context("no result from the subscriber process")??;
            let status = child.wait()?;
            if !status.success() {
                bail!("the subscriber process failed: {status}");
            }
            line
        }
        Sub::Thread(t) => t
            .join()
            .map_err(|_| anyhow::anyhow!("the subscriber thread panicked"))?
            .map_err(|e| anyhow::anyhow!(e))?,
    };
    let frame_size = bench.desc.frame_size;
    bench.publisher.finish();
    println!(
        "handoff sync={sync:?} memory={memory:?} wait={} subscriber={} frame={}x{} NV12 ({frame_size} B) frames={} interval={}us: {line}",
        waiting.name(),
        if in_process { "thread" } else { "process" },
        frames.width,
        frames.height,
        n - WARMUP,
        frames.interval_us
    );
    Ok(())
}

/// The subscriber: a second process, or a thread of the publisher's.
enum Sub {
    Process(std::process::Child),
    Thread(std::thread::JoinHandle<Result<String, String>>),
}

fn handoff_sub(key: &str, frames: u64, runtime_dir: PathBuf, waiting: Waiting) -> Result<String> {
    let poll = waiting.poll;
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.wait = waiting.strategy();
    opts.runtime_dir = Some(runtime_dir);
    opts.name = "gpu-bench".into();
    // SAFETY: the publisher is this benchmark's own (the parent process or
    // a thread of this one), exporting handles from cuIpcGetMemHandle /
    // cuIpcGetEventHandle for slots of the announced size; the socket is in
    // its private runtime directory and the default uid check holds.
    #[allow(unsafe_code)]
    let backend = unsafe { CudaBackend::subscriber()?.allow_legacy_ipc() };
    let sub = Subscriber::connect(key, backend, opts)?;
    let ordinal = sub.backend().device().context("attached device")?.ordinal();
    let ctx = CudaContext::new(ordinal as usize)?;
    let stream = ctx.new_stream()?;
    let raw = RawStream::from_raw(stream.cu_stream());
    let k = kernels::Kernels::load(&ctx)?;
    let err = stream.alloc_zeros::<u32>(1)?;
    let words = sub.stream().frame_size / 4;
    let mut lat = Vec::with_capacity(frames as usize);
    // Where the time goes: publisher (fill + fence + commit), wake-up
    // (commit to next_frame returning), subscriber (wait + check + sync).
    let (mut publ, mut wake, mut work) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..frames {
        let f = if poll {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match sub.next_frame(Duration::ZERO) {
                    Ok(f) => break f,
                    Err(cuframes_core::runtime::RecvError::Timeout(_))
                        if Instant::now() < deadline => {}
                    Err(e) => return Err(e.into()),
                }
            }
        } else {
            sub.next_frame(Duration::from_secs(10))?
        };
        let t_recv = monotonic_ns();
        f.wait_in(raw)?;
        let val = f.meta().source_index as u32 + 1;
        k.check(&stream, f.memory().device_ptr(), words, val, &err)?;
        stream.synchronize()?;
        let t1 = monotonic_ns();
        if f.meta().source_index >= WARMUP {
            let t0 = f.meta().pts_ns.unwrap_or(0) as u64;
            let committed = f.meta().publish_ns;
            lat.push(t1.saturating_sub(t0));
            publ.push(committed.saturating_sub(t0));
            wake.push(t_recv.saturating_sub(committed));
            work.push(t1.saturating_sub(t_recv));
        }
        f.release_after(raw)?;
    }
    let errors = stream.clone_dtoh(&err)?[0];
    let pct = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
    };
    Ok(format!(
        "p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us (medians: publisher fill+fence {:.1} us, wake-up {:.1} us, subscriber wait+check+sync {:.1} us); words differing from the expected frame: {errors}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 0.999),
        pct(&mut lat, 1.0),
        pct(&mut publ, 0.5),
        pct(&mut wake, 0.5),
        pct(&mut work, 0.5)
    ))
}
