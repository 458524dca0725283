//! cuframes-conformance: runs the conformance suite against a publisher or a
//! subscriber implementation and reports each case (table on stdout, JSON and
//! JUnit XML on request). Exits 1 when any case fails. See
//! `docs/conformance.md`.

use clap::{Parser, Subcommand, ValueEnum};
use cuframes_conformance::harness::HarnessMemory;
use cuframes_conformance::publisher_check::{self, PublisherTarget};
use cuframes_conformance::subscriber_check::{self, SubscriberTarget};
use cuframes_conformance::{all_cases, Report};
use cuframes_core::runtime::PublisherConfig;
use cuframes_cuda::{CudaConfig, CudaMemory, CudaSync};
use cuframes_vulkan::{VulkanConfig, VulkanSync};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "cuframes protocol conformance suite (docs/conformance.md)"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args)]
struct Out {
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the report as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MemoryArg {
    /// Host memfds (`HostMemfd`, `HostFence`).
    Host,
    /// CUDA VMM allocations shared as fds (`CudaVmmFd`, `HostFence`).
    CudaVmm,
    /// CUDA legacy IPC handles (`CudaLegacyIpc`, `HostFence`).
    CudaLegacyIpc,
    /// CUDA VMM fds with per-slot IPC events (`CudaVmmFd`, `IpcEvent`).
    CudaVmmEvent,
    /// Vulkan device memory as opaque fds (`VulkanOpaqueFd`, `HostFence`),
    /// on the most capable Vulkan device (lavapipe without a GPU).
    Vulkan,
    /// Vulkan memory with per-slot timeline semaphores (`VulkanOpaqueFd`,
    /// `VulkanTimeline`; needs VK_KHR_external_semaphore_fd: NVIDIA).
    VulkanTimeline,
}

impl MemoryArg {
    fn harness(self) -> HarnessMemory {
        let cuda = |memory, sync| {
            HarnessMemory::Cuda(CudaConfig {
                memory,
                sync,
                device: 0,
            })
        };
        match self {
            MemoryArg::Host => HarnessMemory::Host,
            MemoryArg::CudaVmm => cuda(CudaMemory::VmmFd, CudaSync::HostFence),
            MemoryArg::CudaLegacyIpc => cuda(CudaMemory::LegacyIpc, CudaSync::HostFence),
            MemoryArg::CudaVmmEvent => cuda(CudaMemory::VmmFd, CudaSync::IpcEvent),
            MemoryArg::Vulkan => HarnessMemory::Vulkan(VulkanConfig::default()),
            MemoryArg::VulkanTimeline => HarnessMemory::Vulkan(VulkanConfig {
                sync: VulkanSync::Timeline,
                ..VulkanConfig::default()
            }),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Check a live publisher of KEY (it must be publishing host-memory
    /// frames). With a command after `--`, the suite starts it first
    /// (`{key}` and `{runtime_dir}` in its arguments are substituted), waits
    /// for its socket and first frame, and stops it afterwards.
    CheckPublisher {
        /// Stream key of the publisher under test.
        #[arg(long)]
        key: String,
        /// Runtime directory (default: $CUFRAMES_RUNTIME_DIR, /run/cuframes,
        /// $XDG_RUNTIME_DIR/cuframes, /tmp/cuframes-UID).
        #[arg(long)]
        runtime_dir: Option<PathBuf>,
        /// The publisher's lease timeout, ms (PUB-LEASE-005 waits past it).
        #[arg(long, default_value_t = PublisherConfig::DEFAULT_LEASE_TIMEOUT.as_millis() as u64)]
        lease_timeout_ms: u64,
        /// The publisher's handshake deadline, ms (PUB-HS-005 waits past it).
        #[arg(long, default_value_t = PublisherConfig::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64)]
        handshake_timeout_ms: u64,
        #[command(flatten)]
        out: Out,
        /// Publisher command to start (optional).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Serve a subscriber command as a publisher of synthetic frames, in
    /// several scenarios, and check it. `{key}` and `{runtime_dir}` in its
    /// arguments are substituted (also given as $CUFRAMES_KEY and
    /// $CUFRAMES_RUNTIME_DIR).
    CheckSubscriber {
        /// Where the suite makes its runtime directory.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        work_dir: PathBuf,
        /// Memory of the served slots: host memfds, or VRAM of CUDA device 0
        /// (needs an NVIDIA GPU and driver).
        #[arg(long, value_enum, default_value = "host")]
        memory: MemoryArg,
        #[command(flatten)]
        out: Out,
        /// The subscriber command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List every case: id, protocol section, description.
    List,
}

fn emit(r: &Report, out: &Out) -> ExitCode {
    print!("{}", r.table());
    for (path, text) in [(&out.json, r.json()), (&out.junit, r.junit())] {
        if let Some(p) = path {
            if let Err(e) = std::fs::write(p, text) {
                eprintln!("cuframes-conformance: cannot write {}: {e}", p.display());
                return ExitCode::from(2);
            }
        }
    }
    if r.failed().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn wait_socket(sock: &Path, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.cmd {
        Cmd::List => {
            for c in all_cases() {
                println!("{:<16} {:<6} {}", c.id, c.section, c.description);
            }
            ExitCode::SUCCESS
        }
        Cmd::CheckPublisher {
            key,
            runtime_dir,
            lease_timeout_ms,
            handshake_timeout_ms,
            out,
            command,
        } => {
            let runtime_dir = runtime_dir.unwrap_or_else(cuframes_core::runtime::dir::runtime_dir);
            let mut t = PublisherTarget::new(&key, runtime_dir);
            t.lease_timeout = std::time::Duration::from_millis(lease_timeout_ms);
            t.handshake_timeout = std::time::Duration::from_millis(handshake_timeout_ms);
            let mut child = None;
            if let Some((prog, rest)) = command.split_first() {
                let d = t.runtime_dir.to_string_lossy();
                let a: Vec<String> = rest
                    .iter()
                    .map(|x| x.replace("{key}", &t.key).replace("{runtime_dir}", &d))
                    .collect();
                let log_path = t.runtime_dir.join(format!("{}.publisher.log", t.key));
                let log = match std::fs::create_dir_all(&t.runtime_dir)
                    .and_then(|()| std::fs::File::create(&log_path))
                {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("cuframes-conformance: {}: {e}", log_path.display());
                        return ExitCode::from(2);
                    }
                };
                eprintln!(
                    "cuframes-conformance: starting {prog}; its stderr goes to {}",
                    log_path.display()
                );
                match Command::new(prog)
                    .args(&a)
                    .env("CUFRAMES_RUNTIME_DIR", &t.runtime_dir)
                    .env("CUFRAMES_KEY", &t.key)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                {
                    Ok(c) => child = Some(c),
                    Err(e) => {
                        eprintln!("cuframes-conformance: cannot run {prog}: {e}");
                        return ExitCode::from(2);
                    }
                }
                let sock = t.runtime_dir.join(format!("{}.sock", t.key));
                if !wait_socket(&sock, Duration::from_secs(20)) {
                    eprintln!("cuframes-conformance: {} did not appear", sock.display());
                    if let Some(mut c) = child {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return ExitCode::from(2);
                }
                // Let it publish a few frames first.
                std::thread::sleep(Duration::from_millis(500));
            }
            let r = publisher_check::run(&t);
            if let Some(mut c) = child {
                let pid = rustix::process::Pid::from_raw(c.id() as i32);
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end && matches!(c.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            emit(&r, &out)
        }
        Cmd::CheckSubscriber {
            work_dir,
            memory,
            out,
            command,
        } => {
            let Some((prog, rest)) = command.split_first() else {
                eprintln!("cuframes-conformance: no subscriber command given");
                return ExitCode::from(2);
            };
            let t = SubscriberTarget {
                program: prog.clone(),
                args: rest.to_vec(),
            };
            let memory = memory.harness();
            if let HarnessMemory::Cuda(c) = memory {
                // Fail early and clearly rather than in every case.
                if let Err(e) = cuframes_cuda::CudaBackend::publisher(c) {
                    eprintln!("cuframes-conformance: --memory cuda: {e}");
                    return ExitCode::from(2);
                }
            }
            if let HarnessMemory::Vulkan(c) = memory {
                if let Err(e) = cuframes_vulkan::VulkanBackend::publisher(c) {
                    eprintln!("cuframes-conformance: --memory vulkan: {e}");
                    return ExitCode::from(2);
                }
            }
            let r = subscriber_check::run(&t, &work_dir, memory);
            emit(&r, &out)
        }
    }
}
