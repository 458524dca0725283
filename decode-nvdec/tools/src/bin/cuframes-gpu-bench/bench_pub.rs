//! The publishing side both hand-off benchmarks share (`handoff`,
//! `cross-gpu`): their frame arguments, and a CUDA publisher of paced,
//! kernel-filled NV12 frames.

use crate::kernels::Kernels;
use anyhow::{Context, Result};
use cudarc::driver::{CudaContext, CudaStream};
use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::clock::monotonic_ns;
use cuframes_core::runtime::{Publisher, PublisherConfig};
use cuframes_core::{Codec, PixelFormat, PublishPolicy};
use cuframes_cuda::{CudaBackend, CudaConfig, RawStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames of a hand-off run and their pace (`handoff`, `cross-gpu`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FrameArgs {
    /// Frames to hand off, per mode in `cross-gpu` (the first 50 of each
    /// run are warm-up, not counted).
    #[arg(long, default_value_t = 2000)]
    pub frames: u64,
    /// Frame width, pixels (NV12).
    #[arg(long, default_value_t = 1920)]
    pub width: u32,
    /// Frame height, pixels.
    #[arg(long, default_value_t = 1080)]
    pub height: u32,
    /// Time between frames, µs.
    #[arg(long, default_value_t = 1000)]
    pub interval_us: u64,
}

/// A 4-slot `Wait` publisher of NV12 frames on GPU `config.device`, with a
/// stream and the benchmark kernels of that GPU to fill its slots.
pub struct BenchPublisher {
    /// The ring's publisher.
    pub publisher: Publisher<CudaBackend>,
    /// The frames' layout.
    pub desc: StreamDesc,
    /// The private runtime directory holding its socket.
    pub dir: PathBuf,
    stream: Arc<CudaStream>,
    kernels: Kernels,
    _ctx: Arc<CudaContext>,
}

impl BenchPublisher {
    /// Opens the GPU, loads the kernels, and creates the publisher of
    /// `frames`' size on `key` in a runtime directory of this process
    /// (`<tmp>/cuframes-gpu-bench-<tag><pid>`).
    pub fn create(config: CudaConfig, key: &str, tag: &str, frames: &FrameArgs) -> Result<Self> {
        let gpu = config.device;
        let backend = CudaBackend::publisher(config)
            .with_context(|| format!("opening GPU {gpu} for the publisher"))?;
        let ctx = CudaContext::new(gpu as usize).context("cudarc context")?;
        let stream = ctx.new_stream()?;
        let kernels = Kernels::load(&ctx)?;
        let desc = StreamDesc::packed(frames.width, frames.height, PixelFormat::Nv12, Codec::H264)?;
        let dir =
            std::env::temp_dir().join(format!("cuframes-gpu-bench-{tag}{}", std::process::id()));
        let mut pc = PublisherConfig::new(key);
        pc.runtime_dir = Some(dir.clone());
        pc.policy = PublishPolicy::Wait;
        pc.slots = 4;
        let publisher = Publisher::create(backend, pc, desc)?;
        Ok(BenchPublisher {
            publisher,
            desc,
            dir,
            stream,
            kernels,
            _ctx: ctx,
        })
    }

    /// Publishes `frames.frames` frames on a spin-paced schedule, one every
    /// `frames.interval_us` µs: each slot filled on this publisher's stream
    /// by the `fill` kernel with the 32-bit word `index + 1`, fenced
    /// (`CudaSlot::fence`) and committed, with the CLOCK_MONOTONIC ns taken
    /// just before the fill in `pts_ns` (the subscriber's latency starts
    /// there) and the index in `source_index`.
    pub fn publish_filled(&mut self, frames: &FrameArgs) -> Result<()> {
        let words = self.desc.frame_size / 4;
        let raw = RawStream::from_raw(self.stream.cu_stream());
        let (k, stream) = (&self.kernels, &self.stream);
        let start = Instant::now();
        for i in 0..frames.frames {
            let due = start + Duration::from_micros(frames.interval_us * i);
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            let t0 = monotonic_ns();
            let meta = FrameMeta {
                pts_ns: Some(t0 as i64),
                source_index: i,
                ..Default::default()
            };
            self.publisher.publish(meta, |slot, _| {
                k.fill(stream, slot.device_ptr(), words, i as u32 + 1)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                slot.fence(raw).map_err(std::io::Error::other)
            })?;
        }
        Ok(())
    }
}
