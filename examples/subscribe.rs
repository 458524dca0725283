//! Subscribe to a stream with `Backend::Auto` and print each frame's MD5:
//! the facade's whole subscriber path in one program.
//!
//! ```sh
//! cargo run --example subscribe --features vulkan -- cam1 --frames 100
//! ```
//!
//! The backend is chosen from the publisher's offer on the one connection
//! (host memory, CUDA or Vulkan, whichever this build and machine can
//! import). Each frame is copied to host memory packed (FFmpeg's rawvideo
//! layout) and hashed, so the output's MD5 column equals that of
//! `ffmpeg -i CLIP -f framemd5 -pix_fmt nv12 -` (P010: `-pix_fmt p010le`).
//! `.ci/facade` runs it against a host and a Vulkan publisher.

use clap::Parser;
use cuframes::{Backend, DeliveryMode, Error, Subscriber, SubscriberOptions};
use md5::{Digest, Md5};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Subscribe with the cuframes facade and print each frame's MD5")]
struct Args {
    /// Stream key.
    key: String,
    /// Runtime directory (default: $CUFRAMES_RUNTIME_DIR, /run/cuframes, ...).
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
    /// auto, host, cuda or vulkan.
    #[arg(long, default_value = "auto")]
    backend: Backend,
    /// Stop after this many frames (default: until the stream ends).
    #[arg(long)]
    frames: Option<u64>,
    /// Name shown in the publisher's log.
    #[arg(long, default_value = "facade-example")]
    name: String,
    /// Wait this long for a publisher that is not up yet, ms.
    #[arg(long, default_value_t = 10_000)]
    wait_publisher_ms: u64,
}

fn run(args: Args) -> Result<u64, Error> {
    let mut opts = SubscriberOptions::new(DeliveryMode::InOrder);
    opts.backend = args.backend;
    opts.subscribe.name = args.name;
    opts.subscribe.runtime_dir = args.runtime_dir;
    opts.wait_publisher = Duration::from_millis(args.wait_publisher_ms);
    let sub = Subscriber::connect(&args.key, opts)?;
    let offer = sub.offer();
    eprintln!(
        "connected to {:?}: {}x{} {:?} in {:?} memory, read with the {} backend",
        args.key,
        offer.stream.width,
        offer.stream.height,
        offer.stream.format(),
        offer.memory_kind(),
        sub.backend()
    );
    let mut packed = Vec::new();
    let mut n = 0u64;
    while args.frames.is_none_or(|max| n < max) {
        let frame = match sub.next_frame(Duration::from_secs(10)) {
            Ok(f) => f,
            Err(e) if e.is_disconnected() => break,
            Err(e) => return Err(e),
        };
        frame.copy_to_host(&mut packed)?;
        // Only now is it known that the bytes were not rewritten meanwhile.
        if !frame.release() {
            eprintln!("frame {n}: the lease was revoked while it was read; skipped");
            continue;
        }
        let md5: String = Md5::digest(&packed)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("{n}, {md5}");
        n += 1;
    }
    eprintln!("{n} frames, {:?}", sub.stats());
    Ok(n)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
