//! Benchmark (not a test; needs an NVIDIA GPU and its Vulkan driver): the
//! hand-off latency of a CUDA publisher's frames to a Vulkan consumer in
//! another process, next to the same hand-off to a CUDA consumer
//! (docs/BENCHMARKS.md, "CUDA to Vulkan").
//!
//! ```text
//! cuda_to_vulkan [--consumer vulkan|cuda] [--frames N] [--width W] [--height H] [--interval-us US]
//! ```
//!
//! The publisher (this process) writes each 1080p NV12 frame with a CUDA
//! kernel (`fill`, the gpu-bench's) into a `CudaVmmFd` ring and commits it
//! after `cuStreamSynchronize` (`HostFence`). The consumer (this program
//! again, `sub`) receives the frame and copies all of it device-to-device
//! into a scratch buffer on its own GPU queue, waiting for the copy: Vulkan
//! imports the VMM fd as an opaque fd (`vkCmdCopyBuffer` + fence), CUDA
//! maps it (`cuMemcpyDtoDAsync` + `cuStreamSynchronize`). Latency: from
//! just before the `fill` launch to the end of the consumer's copy, both on
//! CLOCK_MONOTONIC. Frames are paced (`--interval-us`) so each hand-off is
//! measured alone. Every 50th frame, outside the timed part, the consumer
//! reads the frame back to host memory and counts words that differ from
//! what `fill` wrote.
#![allow(unsafe_code)]

#[path = "../../decode-nvdec/tools/src/bin/cuframes-gpu-bench/kernels.rs"]
#[allow(dead_code)]
mod kernels;

use cudarc::driver::CudaContext;
use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::clock::monotonic_ns;
use cuframes_core::runtime::{
    Backend, Frame, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat, PublishPolicy};
use cuframes_cuda::{CudaBackend, CudaConfig, CudaFrameExt, RawStream};
use cuframes_vulkan::ash::vk;
use cuframes_vulkan::{VulkanBackend, VulkanFrameExt};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const WARMUP: u64 = 50;
const CHECK_EVERY: u64 = 50;

struct Opts {
    consumer: String,
    frames: u64,
    width: u32,
    height: u32,
    interval_us: u64,
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let r = if a.first().map(String::as_str) == Some("sub") {
        sub(&a[1..]).map(|line| println!("{line}"))
    } else {
        opts(&a).and_then(|o| publish(&o))
    };
    if let Err(e) = r {
        eprintln!("cuda_to_vulkan: error: {e}");
        std::process::exit(1);
    }
}

fn opts(a: &[String]) -> Result<Opts, Error> {
    let mut o = Opts {
        consumer: "vulkan".into(),
        frames: 2000,
        width: 1920,
        height: 1080,
        interval_us: 1000,
    };
    let mut it = a.iter();
    while let Some(k) = it.next() {
        let v = it.next().ok_or(format!("{k} needs a value"))?;
        match k.as_str() {
            "--consumer" if v == "vulkan" || v == "cuda" => o.consumer = v.clone(),
            "--frames" => o.frames = v.parse()?,
            "--width" => o.width = v.parse()?,
            "--height" => o.height = v.parse()?,
            "--interval-us" => o.interval_us = v.parse()?,
            _ => return Err(format!("unknown option {k} {v}").into()),
        }
    }
    if o.frames <= WARMUP {
        return Err(format!("--frames must exceed the {WARMUP} warm-up frames").into());
    }
    Ok(o)
}

fn publish(o: &Opts) -> Result<(), Error> {
    let backend = CudaBackend::publisher(CudaConfig::default())?;
    let ctx = CudaContext::new(0)?;
    let stream = ctx.new_stream()?;
    let raw = RawStream::from_raw(stream.cu_stream());
    let k = kernels::Kernels::load(&ctx)?;
    let desc = StreamDesc::packed(o.width, o.height, PixelFormat::Nv12, Codec::H264)?;
    let words = desc.frame_size / 4;
    let dir = std::env::temp_dir().join(format!("cuframes-cu2vk-{}", std::process::id()));
    let key = "cu2vk";
    let mut pc = PublisherConfig::new(key);
    pc.runtime_dir = Some(dir.clone());
    pc.policy = PublishPolicy::Wait;
    pc.slots = 4;
    let mut publisher = Publisher::create(backend, pc, desc)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["sub", &o.consumer, key, &o.frames.to_string()])
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()?;
    if !publisher.wait_for_subscribers(1, Duration::from_secs(30)) {
        let _ = child.kill();
        return Err("the consumer did not connect".into());
    }
    let start = Instant::now();
    for i in 0..o.frames {
        let due = start + Duration::from_micros(o.interval_us * i);
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let t0 = monotonic_ns();
        let meta = FrameMeta {
            pts_ns: Some(t0 as i64),
            source_index: i,
            ..Default::default()
        };
        publisher.publish(meta, |slot, _| {
            k.fill(&stream, slot.device_ptr(), words, i as u32 + 1)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            slot.fence(raw).map_err(std::io::Error::other)
        })?;
    }
    let line = BufReader::new(child.stdout.take().ok_or("no consumer stdout")?)
        .lines()
        .next()
        .ok_or("no result from the consumer")??;
    let status = child.wait()?;
    publisher.finish();
    if !status.success() {
        return Err(format!("the consumer failed: {status}").into());
    }
    println!(
        "handoff CUDA VmmFd/HostFence -> {} consumer (process, device-to-device copy of the frame) frame={}x{} NV12 ({} B) frames={} interval={}us: {line}",
        o.consumer,
        o.width,
        o.height,
        desc.frame_size,
        o.frames - WARMUP,
        o.interval_us
    );
    Ok(())
}

/// Latencies and their parts, ns.
#[derive(Default)]
struct Times {
    total: Vec<u64>,
    publ: Vec<u64>,
    wake: Vec<u64>,
    work: Vec<u64>,
    errors: u64,
    checked: u64,
}

impl Times {
    fn record<B: Backend>(&mut self, f: &Frame<'_, B>, t_recv: u64, t1: u64) {
        if f.meta().source_index < WARMUP {
            return;
        }
        let t0 = f.meta().pts_ns.unwrap_or(0) as u64;
        self.total.push(t1.saturating_sub(t0));
        self.publ.push(f.meta().publish_ns.saturating_sub(t0));
        self.wake.push(t_recv.saturating_sub(f.meta().publish_ns));
        self.work.push(t1.saturating_sub(t_recv));
    }

    fn check(&mut self, host: &[u8], value: u32) {
        self.checked += 1;
        self.errors += host
            .chunks_exact(4)
            .filter(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) != value)
            .count() as u64;
    }

    fn line(mut self) -> String {
        let pct = |v: &mut Vec<u64>, p: f64| {
            v.sort_unstable();
            v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
                .map_or(0.0, |&n| n as f64 / 1000.0)
        };
        format!(
            "p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us (medians: publisher fill+fence {:.1} us, wake-up {:.1} us, consumer copy+wait {:.1} us); {} frames read back, words differing from the expected frame: {}",
            pct(&mut self.total, 0.5),
            pct(&mut self.total, 0.99),
            pct(&mut self.total, 0.999),
            pct(&mut self.total, 1.0),
            pct(&mut self.publ, 0.5),
            pct(&mut self.wake, 0.5),
            pct(&mut self.work, 0.5),
            self.checked,
            self.errors
        )
    }
}

fn sub(a: &[String]) -> Result<String, Error> {
    let [consumer, key, frames, dir] = a else {
        return Err("usage: cuda_to_vulkan sub CONSUMER KEY FRAMES DIR".into());
    };
    let frames: u64 = frames.parse()?;
    let mut opts = SubscribeOptions::new(DeliveryMode::InOrder);
    opts.runtime_dir = Some(PathBuf::from(dir));
    opts.name = format!("cu2vk-{consumer}");
    match consumer.as_str() {
        "vulkan" => {
            let s = Subscriber::connect(key, VulkanBackend::subscriber()?, opts)?;
            vulkan_consumer(&s, frames)
        }
        _ => {
            let s = Subscriber::connect(key, CudaBackend::subscriber()?, opts)?;
            cuda_consumer(&s, frames)
        }
    }
}

fn cuda_consumer(s: &Subscriber<CudaBackend>, frames: u64) -> Result<String, Error> {
    let ordinal = s.backend().device().ok_or("not attached")?.ordinal();
    let ctx = CudaContext::new(ordinal as usize)?;
    let stream = ctx.new_stream()?;
    let size = s.stream().frame_size as usize;
    // SAFETY: a plain allocation of `size` bytes in the current context
    // (`CudaContext::new` made it current), freed below.
    let scratch = unsafe { cudarc::driver::result::malloc_sync(size) }?;
    let mut t = Times::default();
    let mut host = Vec::new();
    for _ in 0..frames {
        let f = s.next_frame(Duration::from_secs(10))?;
        let t_recv = monotonic_ns();
        // SAFETY: the source is the leased frame's slot (at least `size`
        // bytes, mapped in this context while the frame lives), the
        // destination our own `size`-byte scratch; the stream is ours.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                scratch,
                f.memory().device_ptr(),
                size,
                stream.cu_stream(),
            )
        }?;
        stream.synchronize()?;
        let t1 = monotonic_ns();
        t.record(&f, t_recv, t1);
        if f.meta().source_index % CHECK_EVERY == 0 {
            f.copy_to_host(&mut host)?;
            t.check(&host, f.meta().source_index as u32 + 1);
        }
    }
    // SAFETY: allocated above; no work uses it any more (synchronised).
    unsafe { cudarc::driver::result::free_sync(scratch) }?;
    Ok(t.line())
}

/// A device-local scratch buffer, a command pool and buffer, and a fence on
/// the subscriber's Vulkan device.
struct VkScratch {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    fence: vk::Fence,
}

fn vulkan_consumer(s: &Subscriber<VulkanBackend>, frames: u64) -> Result<String, Error> {
    let device = s.backend().device().ok_or("not attached")?;
    let size = s.stream().frame_size;
    let scratch = device.with_queue(|q| -> Result<VkScratch, Error> {
        let d = q.device;
        // SAFETY: objects made on this device with valid create infos that
        // live for each call; destroyed at the end of `vulkan_consumer`.
        unsafe {
            let buffer = d.create_buffer(
                &vk::BufferCreateInfo::default()
                    .size(size)
                    .usage(vk::BufferUsageFlags::TRANSFER_DST),
                None,
            )?;
            let req = d.get_buffer_memory_requirements(buffer);
            let props = q
                .instance
                .get_physical_device_memory_properties(q.physical_device);
            let ty = (0..props.memory_type_count)
                .find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && props.memory_types[i as usize]
                            .property_flags
                            .contains(vk::MemoryPropertyFlags::DEVICE_LOCAL)
                })
                .ok_or("no device-local memory type")?;
            let memory = d.allocate_memory(
                &vk::MemoryAllocateInfo::default()
                    .allocation_size(req.size)
                    .memory_type_index(ty),
                None,
            )?;
            d.bind_buffer_memory(buffer, memory, 0)?;
            let pool = d.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(q.queue_family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )?;
            let cmd = d.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(pool)
                    .command_buffer_count(1),
            )?[0];
            let fence = d.create_fence(&vk::FenceCreateInfo::default(), None)?;
            Ok(VkScratch {
                buffer,
                memory,
                pool,
                cmd,
                fence,
            })
        }
    })?;
    let mut t = Times::default();
    let mut host = Vec::new();
    for _ in 0..frames {
        let f = s.next_frame(Duration::from_secs(10))?;
        let t_recv = monotonic_ns();
        let src = f.buffer();
        device.with_queue(|q| -> Result<(), Error> {
            let d = q.device;
            // SAFETY: the command buffer and fence are ours and idle (the
            // previous use was waited for); `src` is the leased frame's
            // buffer (alive while `f` lives, at least `size` bytes), the
            // destination our scratch buffer of `size` bytes; the queue is
            // locked for this closure.
            unsafe {
                d.reset_command_buffer(scratch.cmd, vk::CommandBufferResetFlags::empty())?;
                d.begin_command_buffer(
                    scratch.cmd,
                    &vk::CommandBufferBeginInfo::default()
                        .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
                )?;
                d.cmd_copy_buffer(
                    scratch.cmd,
                    src,
                    scratch.buffer,
                    &[vk::BufferCopy {
                        src_offset: 0,
                        dst_offset: 0,
                        size,
                    }],
                );
                d.end_command_buffer(scratch.cmd)?;
                let cmds = [scratch.cmd];
                d.queue_submit(
                    q.queue,
                    &[vk::SubmitInfo::default().command_buffers(&cmds)],
                    scratch.fence,
                )?;
                d.wait_for_fences(&[scratch.fence], true, 10_000_000_000)?;
                d.reset_fences(&[scratch.fence])?;
            }
            Ok(())
        })?;
        let t1 = monotonic_ns();
        t.record(&f, t_recv, t1);
        if f.meta().source_index % CHECK_EVERY == 0 {
            f.copy_to_host(&mut host)?;
            t.check(&host, f.meta().source_index as u32 + 1);
        }
    }
    device.with_queue(|q| {
        let d = q.device;
        // SAFETY: every submission was waited for; the objects are ours and
        // destroyed once.
        unsafe {
            d.destroy_fence(scratch.fence, None);
            d.destroy_command_pool(scratch.pool, None);
            d.destroy_buffer(scratch.buffer, None);
            d.free_memory(scratch.memory, None);
        }
    });
    Ok(t.line())
}
