//! Connecting: the wait for a publisher (`--wait-publisher-ms`) and the
//! backend (`--backend auto` follows the memory kind the publisher refused
//! a host subscriber for).
//!
//! The one `unsafe` call of the `cuframes_tools` library is here:
//! `allow_legacy_ipc`, made only when the operator passed
//! `--allow-legacy-ipc`.

use super::args::Args;
use anyhow::{Context, Result};
use cuframes_core::runtime::{Backend, ConnectError, Subscriber};
use cuframes_core::MemoryKind;
use cuframes_cuda::{CudaBackend, CudaDevice, DeviceSelect};
use cuframes_vulkan::VulkanBackend;
use std::time::{Duration, Instant};

/// Connects with the backend `backend` makes, retrying while no publisher
/// is up (until `--wait-publisher-ms`).
pub(crate) fn connect<B: Backend>(
    args: &Args,
    backend: impl Fn() -> Result<B>,
) -> Result<Subscriber<B>> {
    let opts = args.subscribe_options();
    let deadline = Instant::now() + Duration::from_millis(args.wait_publisher_ms);
    loop {
        match Subscriber::connect(&args.key, backend()?, opts.clone()) {
            Err(ConnectError::NoPublisher { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.with_context(|| format!("cannot subscribe to {:?}", args.key)),
        }
    }
}

/// Connects with the CUDA backend; with --report-vram, measures the imports.
pub(crate) fn connect_cuda(args: &Args) -> Result<Subscriber<CudaBackend>> {
    let config = args.cuda_config();
    let cuda = || {
        let b = CudaBackend::subscriber_with(config).context("--backend cuda")?;
        Ok(if args.allow_legacy_ipc {
            // SAFETY: the operator passed --allow-legacy-ipc, whose help
            // says it trusts the publisher's IPC handles (the `# Safety` of
            // `allow_legacy_ipc`); the publisher's uid is still checked.
            #[allow(unsafe_code)]
            unsafe {
                b.allow_legacy_ipc()
            }
        } else {
            b
        })
    };
    if !args.report_vram {
        let sub = connect(args, cuda)?;
        if let (Some(d), Some(_)) = (sub.backend().device(), args.gpu) {
            eprintln!(
                "{}: CUDA device {} ({}), frames {:?}",
                args.name.as_deref().unwrap_or("subscriber"),
                d.ordinal(),
                d.name(),
                sub.backend().frame_access()
            );
        }
        return Ok(sub);
    }
    // The context first (--gpu's, else device 0: without --gpu the
    // measurement is meant for one-GPU hosts).
    let dev = CudaDevice::select(args.gpu.unwrap_or(DeviceSelect::Ordinal(0)))
        .context("--report-vram: opening the device")?;
    let before = dev.memory_info()?.free;
    let sub = connect(args, cuda)?;
    let after = dev.memory_info()?.free;
    eprintln!(
        "{}: VRAM: importing {} slots took {:.2} MiB beyond this process's CUDA context (free {} -> {} MiB)",
        args.name.as_deref().unwrap_or("subscriber"),
        sub.slot_count(),
        before.saturating_sub(after) as f64 / 1048576.0,
        before >> 20,
        after >> 20
    );
    Ok(sub)
}

/// Connects with the Vulkan backend (the device of the publisher's UUID).
pub(crate) fn connect_vulkan(args: &Args) -> Result<Subscriber<VulkanBackend>> {
    let sub = connect(args, || {
        VulkanBackend::subscriber().context("--backend vulkan")
    })?;
    if let Some(d) = sub.backend().device() {
        let i = d.info();
        eprintln!(
            "{}: Vulkan device {} ({}, {})",
            args.name.as_deref().unwrap_or("subscriber"),
            i.name,
            i.device_type,
            cuframes_vulkan::uuid_string(&i.device_uuid)
        );
    }
    Ok(sub)
}

/// The memory kind of a publisher a connection was refused for.
pub(crate) fn publisher_kind(e: &anyhow::Error) -> Option<MemoryKind> {
    match e.downcast_ref::<ConnectError>() {
        Some(ConnectError::MemoryKind { theirs, .. }) => Some(*theirs),
        _ => None,
    }
}

/// Whether connecting with host memory failed because the publisher shares VRAM.
pub(crate) fn is_cuda_publisher(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ConnectError>(),
        Some(ConnectError::MemoryKind {
            theirs: MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc,
            ..
        })
    )
}
