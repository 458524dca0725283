//! Connecting: `cuframes::Subscriber::connect` with the options the flags
//! ask for — the backend (`--backend`, resolved by the facade from the
//! publisher's offer on one connection), the wait for a publisher
//! (`--wait-publisher-ms`), reconnection, the CUDA device — then what the
//! backend in use has to say (`--gpu`, `--report-vram`, the Vulkan device).
//!
//! The one `unsafe` call of the `cuframes_tools` library is here: the
//! facade's `SubscriberOptions::allow_legacy_ipc`, made only when the
//! operator passed `--allow-legacy-ipc`.

use super::args::Args;
use anyhow::{Context, Result};
use cuframes::cuda::{CudaDevice, DeviceSelect};
use cuframes::{Backend, Subscriber, SubscriberOptions};

/// The facade's options for these flags.
pub(crate) fn options(args: &Args) -> SubscriberOptions {
    let subscribe = args.subscribe_options();
    let mut opts = SubscriberOptions::new(subscribe.mode);
    opts.backend = args.backend.into();
    opts.subscribe = subscribe;
    opts.wait_publisher = std::time::Duration::from_millis(args.wait_publisher_ms);
    opts.cuda = args.cuda_config();
    if args.allow_legacy_ipc {
        // SAFETY: the operator passed --allow-legacy-ipc, whose help says
        // it trusts the publisher's IPC handles (the `# Safety` of
        // `allow_legacy_ipc`); the publisher's uid is still checked.
        #[allow(unsafe_code)]
        unsafe {
            opts.allow_legacy_ipc()
        }
    }
    opts
}

/// Connects (one connection: the facade chooses the backend from the
/// publisher's offer), retrying while no publisher is up (until
/// `--wait-publisher-ms`); with --report-vram, measures a CUDA import.
pub(crate) fn connect(args: &Args) -> Result<Subscriber> {
    let name = args.name.as_deref().unwrap_or("subscriber");
    // --report-vram: the context first (--gpu's, else device 0: without
    // --gpu the measurement is meant for one-GPU hosts). Only where a CUDA
    // import can happen: an explicit `cuda`, or `auto` with a driver.
    let measure = args.report_vram
        && match Backend::from(args.backend) {
            Backend::Cuda => true,
            Backend::Auto => cuframes::cuda::driver_present(),
            Backend::Host | Backend::Vulkan => false,
        };
    let vram = if measure {
        let dev = CudaDevice::select(args.gpu.unwrap_or(DeviceSelect::Ordinal(0)))
            .context("--report-vram: opening the device")?;
        let free = dev.memory_info()?.free;
        Some((dev, free))
    } else {
        None
    };
    let sub = Subscriber::connect(&args.key, options(args))
        .with_context(|| format!("cannot subscribe to {:?}", args.key))?;
    if let Some(c) = sub.as_cuda() {
        match &vram {
            Some((dev, before)) => {
                let after = dev.memory_info()?.free;
                eprintln!(
                    "{name}: VRAM: importing {} slots took {:.2} MiB beyond this process's CUDA context (free {} -> {} MiB)",
                    sub.slot_count(),
                    before.saturating_sub(after) as f64 / 1048576.0,
                    before >> 20,
                    after >> 20
                );
            }
            None => {
                if let (Some(d), Some(_)) = (c.backend().device(), args.gpu) {
                    eprintln!(
                        "{name}: CUDA device {} ({}), frames {:?}",
                        d.ordinal(),
                        d.name(),
                        c.backend().frame_access()
                    );
                }
            }
        }
    }
    if let Some(d) = sub.as_vulkan().and_then(|v| v.backend().device()) {
        let i = d.info();
        eprintln!(
            "{name}: Vulkan device {} ({}, {})",
            i.name,
            i.device_type,
            cuframes::vulkan::uuid_string(&i.device_uuid)
        );
    }
    Ok(sub)
}
