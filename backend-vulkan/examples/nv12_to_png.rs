//! A Vulkan consumer of shared frames: subscribes to a stream with the
//! Vulkan backend, converts one NV12 frame to RGBA in a compute shader that
//! reads the shared slot buffer directly (no copy), and writes a PNG.
//!
//! ```text
//! cargo run -p cuframes-vulkan --example nv12_to_png -- KEY OUT.png [--runtime-dir DIR] [--check]
//! ```
//!
//! `--check` also copies the frame to host memory, converts it on the CPU
//! with the same formula and fails (exit 1) if any channel differs by more
//! than 1. The shader is `examples/shaders/nv12_to_rgba.comp`, compiled to
//! the committed `nv12_to_rgba.spv` (the command is in the shader's header).
//! BT.601 limited-range coefficients, whatever the stream's colour says.
#![allow(unsafe_code)]

use ash::vk;
use cuframes_core::runtime::{SubscribeOptions, Subscriber};
use cuframes_core::{DeliveryMode, PixelFormat};
use cuframes_vulkan::{QueueAccess, VulkanBackend, VulkanFrameExt};
use std::path::PathBuf;
use std::time::Duration;

const SPIRV: &[u8] = include_bytes!("shaders/nv12_to_rgba.spv");

type Error = Box<dyn std::error::Error>;

/// The shader's push constants (`Params` in the GLSL), 6 × u32.
#[derive(Clone, Copy)]
struct Params {
    width: u32,
    height: u32,
    y_offset: u32,
    y_pitch: u32,
    uv_offset: u32,
    uv_pitch: u32,
}

impl Params {
    fn bytes(&self) -> Vec<u8> {
        [
            self.width,
            self.height,
            self.y_offset,
            self.y_pitch,
            self.uv_offset,
            self.uv_pitch,
        ]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nv12_to_png: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (mut key, mut out, mut dir, mut check) = (None, None, None, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runtime-dir" => dir = Some(PathBuf::from(args.next().ok_or("--runtime-dir DIR")?)),
            "--check" => check = true,
            _ if key.is_none() => key = Some(a),
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a:?}").into()),
        }
    }
    let (Some(key), Some(out)) = (key, out) else {
        return Err("usage: nv12_to_png KEY OUT.png [--runtime-dir DIR] [--check]".into());
    };
    let mut opts = SubscribeOptions::new(DeliveryMode::NewestOnly);
    opts.runtime_dir = dir;
    let sub = Subscriber::connect(&key, VulkanBackend::subscriber()?, opts)?;
    let frame = sub.next_frame(Duration::from_secs(10))?;
    let s = *frame.stream();
    if s.format() != PixelFormat::Nv12 {
        return Err(format!("the stream is {:?}; this example converts NV12", s.format()).into());
    }
    let (y, uv) = (frame.buffer_plane(0)?, frame.buffer_plane(1)?);
    let u32_of = |v: u64| u32::try_from(v).map_err(|_| "frame too large for 32-bit offsets");
    let params = Params {
        width: u32_of(s.width)?,
        height: u32_of(s.height)?,
        y_offset: u32_of(y.offset)?,
        y_pitch: u32_of(y.pitch)?,
        uv_offset: u32_of(uv.offset)?,
        uv_pitch: u32_of(uv.pitch)?,
    };
    let device = frame.device();
    let info = device.info().clone();
    let (buffer, wait) = (frame.buffer(), frame.wait_semaphore());
    let rgba = device.with_queue(|q| convert(q, buffer, wait, params))?;
    let nv12 = if check {
        let mut v = Vec::new();
        frame.copy_to_host(&mut v)?;
        Some(v)
    } else {
        None
    };
    let seq = frame.meta().seq;
    drop(frame); // waits for the queue, then returns the lease

    let file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let mut enc = png::Encoder::new(file, params.width, params.height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgba)?;
    println!(
        "frame {seq} ({}x{}) of {key:?} converted on {} ({}) to {}",
        params.width,
        params.height,
        info.name,
        info.device_type,
        out.display()
    );
    if let Some(nv12) = nv12 {
        let worst = compare(&nv12, &rgba, params.width as usize, params.height as usize);
        println!(
            "check: max channel difference {worst} against the CPU conversion over {} pixels",
            params.width * params.height
        );
        if worst > 1 {
            return Err("the GPU conversion differs from the CPU one".into());
        }
    }
    Ok(())
}

/// The same conversion on the CPU from packed NV12; the largest channel
/// difference to `rgba`.
fn compare(nv12: &[u8], rgba: &[u8], w: usize, h: usize) -> u8 {
    let cw = w.div_ceil(2) * 2;
    let mut worst = 0u8;
    for row in 0..h {
        for x in 0..w {
            let yv = nv12[row * w + x] as f32;
            let c = w * h + (row / 2) * cw + (x / 2) * 2;
            let (u, v) = (nv12[c] as f32 - 128.0, nv12[c + 1] as f32 - 128.0);
            let l = 1.164383 * (yv - 16.0);
            let rgb = [
                l + 1.596027 * v,
                l - 0.391762 * u - 0.812968 * v,
                l + 2.017232 * u,
            ];
            for (ch, f) in rgb.iter().enumerate() {
                let want = (f + 0.5).clamp(0.0, 255.0) as u8;
                let got = rgba[(row * w + x) * 4 + ch];
                worst = worst.max(want.abs_diff(got));
            }
        }
    }
    worst
}

/// Runs the shader over the frame in `src` (waiting for `wait` first when
/// the publisher uses timeline semaphores) and returns the RGBA bytes.
fn convert(
    q: QueueAccess<'_>,
    src: vk::Buffer,
    wait: Option<(vk::Semaphore, u64)>,
    p: Params,
) -> Result<Vec<u8>, Error> {
    let d = q.device;
    let len = p.width as u64 * p.height as u64 * 4;
    let words = ash::util::read_spv(&mut std::io::Cursor::new(SPIRV))?;
    // SAFETY: `q` gives this device, its physical device and its queue,
    // locked for this closure. Every object below is created here, used
    // only by the one submission, waited for (fence) and destroyed before
    // returning; create infos and the arrays they point to live across
    // each call; `src` is the leased frame's buffer, alive while the frame
    // guard (held by the caller) lives, and only read; the output memory is
    // host-visible and coherent, mapped whole, read after the fence.
    unsafe {
        let module =
            d.create_shader_module(&vk::ShaderModuleCreateInfo::default().code(&words), None)?;
        let bindings = [0, 1].map(|b| {
            vk::DescriptorSetLayoutBinding::default()
                .binding(b)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .descriptor_count(1)
                .stage_flags(vk::ShaderStageFlags::COMPUTE)
        });
        let set_layout = d.create_descriptor_set_layout(
            &vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings),
            None,
        )?;
        let ranges = [vk::PushConstantRange::default()
            .stage_flags(vk::ShaderStageFlags::COMPUTE)
            .size(24)];
        let layouts = [set_layout];
        let layout = d.create_pipeline_layout(
            &vk::PipelineLayoutCreateInfo::default()
                .set_layouts(&layouts)
                .push_constant_ranges(&ranges),
            None,
        )?;
        let stage = vk::PipelineShaderStageCreateInfo::default()
            .stage(vk::ShaderStageFlags::COMPUTE)
            .module(module)
            .name(c"main");
        let pipeline = d
            .create_compute_pipelines(
                vk::PipelineCache::null(),
                &[vk::ComputePipelineCreateInfo::default()
                    .stage(stage)
                    .layout(layout)],
                None,
            )
            .map_err(|(_, e)| e)?[0];
        // The output buffer, host-visible.
        let out = d.create_buffer(
            &vk::BufferCreateInfo::default()
                .size(len)
                .usage(vk::BufferUsageFlags::STORAGE_BUFFER),
            None,
        )?;
        let req = d.get_buffer_memory_requirements(out);
        let props = q
            .instance
            .get_physical_device_memory_properties(q.physical_device);
        let want = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        let ty = (0..props.memory_type_count)
            .find(|&i| {
                req.memory_type_bits & (1 << i) != 0
                    && props.memory_types[i as usize].property_flags.contains(want)
            })
            .ok_or("no host-visible memory type")?;
        let mem = d.allocate_memory(
            &vk::MemoryAllocateInfo::default()
                .allocation_size(req.size)
                .memory_type_index(ty),
            None,
        )?;
        d.bind_buffer_memory(out, mem, 0)?;
        let pool = d.create_descriptor_pool(
            &vk::DescriptorPoolCreateInfo::default()
                .max_sets(1)
                .pool_sizes(&[vk::DescriptorPoolSize::default()
                    .ty(vk::DescriptorType::STORAGE_BUFFER)
                    .descriptor_count(2)]),
            None,
        )?;
        let set = d.allocate_descriptor_sets(
            &vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(pool)
                .set_layouts(&layouts),
        )?[0];
        let infos = [
            [vk::DescriptorBufferInfo::default()
                .buffer(src)
                .range(vk::WHOLE_SIZE)],
            [vk::DescriptorBufferInfo::default()
                .buffer(out)
                .range(vk::WHOLE_SIZE)],
        ];
        let writes = [0usize, 1].map(|b| {
            vk::WriteDescriptorSet::default()
                .dst_set(set)
                .dst_binding(b as u32)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&infos[b])
        });
        d.update_descriptor_sets(&writes, &[]);
        let cpool = d.create_command_pool(
            &vk::CommandPoolCreateInfo::default().queue_family_index(q.queue_family),
            None,
        )?;
        let cmd = d.allocate_command_buffers(
            &vk::CommandBufferAllocateInfo::default()
                .command_pool(cpool)
                .command_buffer_count(1),
        )?[0];
        d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())?;
        d.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, pipeline);
        d.cmd_bind_descriptor_sets(cmd, vk::PipelineBindPoint::COMPUTE, layout, 0, &[set], &[]);
        d.cmd_push_constants(cmd, layout, vk::ShaderStageFlags::COMPUTE, 0, &p.bytes());
        d.cmd_dispatch(cmd, p.width.div_ceil(16), p.height.div_ceil(16), 1);
        let barrier = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ);
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::COMPUTE_SHADER,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[barrier],
            &[],
            &[],
        );
        d.end_command_buffer(cmd)?;
        let fence = d.create_fence(&vk::FenceCreateInfo::default(), None)?;
        let cmds = [cmd];
        let (sems, values): (Vec<_>, Vec<_>) = wait.into_iter().unzip();
        let stages = vec![vk::PipelineStageFlags::COMPUTE_SHADER; sems.len()];
        let mut tl = vk::TimelineSemaphoreSubmitInfo::default().wait_semaphore_values(&values);
        let mut submit = vk::SubmitInfo::default()
            .command_buffers(&cmds)
            .wait_semaphores(&sems)
            .wait_dst_stage_mask(&stages);
        if !sems.is_empty() {
            submit = submit.push_next(&mut tl);
        }
        d.queue_submit(q.queue, &[submit], fence)?;
        let waited = d.wait_for_fences(&[fence], true, 10_000_000_000);
        if waited.is_err() {
            d.queue_wait_idle(q.queue)?;
        }
        let rgba = match waited {
            Ok(()) => {
                let ptr = d.map_memory(mem, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())?;
                let v = std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize).to_vec();
                d.unmap_memory(mem);
                Ok(v)
            }
            Err(e) => Err(e.into()),
        };
        d.destroy_fence(fence, None);
        d.destroy_command_pool(cpool, None);
        d.destroy_descriptor_pool(pool, None);
        d.destroy_buffer(out, None);
        d.free_memory(mem, None);
        d.destroy_pipeline(pipeline, None);
        d.destroy_pipeline_layout(layout, None);
        d.destroy_descriptor_set_layout(set_layout, None);
        d.destroy_shader_module(module, None);
        rgba
    }
}
