//! Test subjects for the suite's own tests (`tests/suite.rs`): our library
//! subscriber, and deliberately broken subscribers the suite must catch.
//!
//! `conformance-subject MODE KEY RUNTIME_DIR [in-order|newest-only]`, MODE:
//! - `good`: `cuframes_core::runtime::Subscriber` (host backend), holding
//!   each frame 3 ms, then releasing it; exits 0 when the publisher ends
//!   its stream (GOODBYE EndOfStream), 1 when it goes away otherwise;
//! - `good-cuda`: the same with the CUDA backend (the publisher's GPU);
//! - `good-vulkan`: the same with the Vulkan backend (the device of the
//!   publisher's UUID), copying each frame to host memory while holding it;
//! - `never-release`: the library subscriber, keeping every frame it gets;
//! - `scribble`: a hand-written subscriber that writes a reserved word of its
//!   lease row after its first frame;
//! - `ignore-version`: a hand-written subscriber that skips the WELCOME
//!   checks (W1-W7) and leases from whatever it is given.

use cuframes_core::layout::header::{RELEASE_WAKE_OFFSET, WAKE_OFFSET};
use cuframes_core::layout::{ControlLayout, LEASE_REGION_SIZE};
use cuframes_core::ring::{Acquire, ControlWords, Cursor, LeaseWords, RingReader};
use cuframes_core::runtime::channel::{Channel, ChannelError};
use cuframes_core::runtime::shm::{self, Access, Mapping};
use cuframes_core::runtime::{futex, RecvError, SubscribeOptions, Subscriber};
use cuframes_core::sync::Ordering;
use cuframes_core::wire::{decode, Hello, Message, Name, HELLO_WANTS_FRAMES};
use cuframes_core::{DeliveryMode, PROTOCOL_VERSION};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long each frame is held: long enough for the suite's lease-row
/// sampling (every ~0.5 ms) to see it (`docs/conformance.md`).
const HOLD: Duration = Duration::from_millis(3);

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        eprintln!("usage: conformance-subject MODE KEY RUNTIME_DIR [in-order|newest-only]");
        return ExitCode::from(2);
    }
    let mode = match a.get(3).map(String::as_str) {
        Some("newest-only") => DeliveryMode::NewestOnly,
        _ => DeliveryMode::InOrder,
    };
    let dir = PathBuf::from(&a[2]);
    let r = match a[0].as_str() {
        "good" => library(&a[1], dir, mode, false),
        "good-cuda" => cuda(&a[1], dir, mode),
        "good-vulkan" => vulkan(&a[1], dir, mode),
        "never-release" => library(&a[1], dir, mode, true),
        "scribble" => raw(&a[1], dir, mode, true, true),
        "ignore-version" => raw(&a[1], dir, mode, false, false),
        m => Err(format!("unknown mode {m}")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance-subject: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 only after GOODBYE EndOfStream (SUB-DISC-001, SUB-END-001).
fn clean_end<B: cuframes_core::runtime::Importer>(sub: &Subscriber<B>) -> Result<(), String> {
    match sub.end_reason() {
        Some(cuframes_core::runtime::EndReason::EndOfStream) => Ok(()),
        r => Err(format!(
            "the publisher went away before the end of its stream ({r:?})"
        )),
    }
}

fn library(key: &str, dir: PathBuf, mode: DeliveryMode, hold: bool) -> Result<(), String> {
    let mut opts = SubscribeOptions::new(mode);
    opts.runtime_dir = Some(dir);
    opts.name = "conformance-subject".into();
    let sub = Subscriber::connect_host(key, opts).map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        match sub.next_frame(Duration::from_millis(100)) {
            Ok(f) if hold => held.push(f),
            Ok(f) => {
                std::thread::sleep(HOLD);
                f.release();
            }
            Err(RecvError::Disconnected) => return clean_end(&sub),
            Err(RecvError::Timeout(_)) => {}
            Err(_) if hold => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("gave up after 20 s".into())
}

fn cuda(key: &str, dir: PathBuf, mode: DeliveryMode) -> Result<(), String> {
    let mut opts = SubscribeOptions::new(mode);
    opts.runtime_dir = Some(dir);
    opts.name = "conformance-subject-cuda".into();
    let backend = cuframes_cuda::CudaBackend::subscriber().map_err(|e| e.to_string())?;
    // SAFETY: the publisher is the suite's harness (check-subscriber
    // --memory cuda-legacy-ipc / cuda-vmm-event), run by the same test, which
    // sends handles from cuIpcGetMemHandle / cuIpcGetEventHandle for its own
    // slots of the announced size.
    #[allow(unsafe_code)]
    let backend = unsafe { backend.allow_legacy_ipc() };
    let sub = Subscriber::connect(key, backend, opts).map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        match sub.next_frame(Duration::from_millis(100)) {
            Ok(f) => {
                std::thread::sleep(HOLD);
                f.release();
            }
            Err(RecvError::Disconnected) => return clean_end(&sub),
            Err(RecvError::Timeout(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("gave up after 20 s".into())
}

fn vulkan(key: &str, dir: PathBuf, mode: DeliveryMode) -> Result<(), String> {
    use cuframes_vulkan::VulkanFrameExt;
    let mut opts = SubscribeOptions::new(mode);
    opts.runtime_dir = Some(dir);
    opts.name = "conformance-subject-vulkan".into();
    let backend = cuframes_vulkan::VulkanBackend::subscriber().map_err(|e| e.to_string())?;
    let sub = Subscriber::connect(key, backend, opts).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        match sub.next_frame(Duration::from_millis(100)) {
            Ok(f) => {
                f.copy_to_host(&mut buf).map_err(|e| e.to_string())?;
                std::thread::sleep(HOLD);
                f.release();
            }
            Err(RecvError::Disconnected) => return clean_end(&sub),
            Err(RecvError::Timeout(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("gave up after 20 s".into())
}

fn raw(
    key: &str,
    dir: PathBuf,
    mode: DeliveryMode,
    check: bool,
    scribble: bool,
) -> Result<(), String> {
    let s = UnixStream::connect(dir.join(format!("{key}.sock"))).map_err(|e| e.to_string())?;
    let mut chan = Channel::new(s);
    let (row_fd, row) =
        shm::create_shared("cuframes-lease-row", LEASE_REGION_SIZE).map_err(|e| e.to_string())?;
    let lw = LeaseWords::new(row.words()).map_err(|e| e.to_string())?;
    lw.init(0);
    let hello = Hello {
        version_min: PROTOCOL_VERSION,
        version_max: PROTOCOL_VERSION,
        flags: HELLO_WANTS_FRAMES,
        mode,
        gpu_uuid: [0; 16],
        name: Name::truncated("conformance-subject"),
    };
    chan.send(&Message::Hello(hello), &[row_fd.as_fd()])
        .map_err(|e| e.to_string())?;
    let (version, slot_count, start_seq) = loop {
        let raw = chan
            .recv(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?
            .ok_or("no WELCOME")?;
        match decode(&raw).map_err(|e| e.to_string())?.map(|d| d.message) {
            Some(Message::Welcome(w)) => break (w.version, w.slot_count, w.start_seq),
            Some(Message::Unknown { .. }) => continue,
            m => return Err(format!("expected WELCOME, got {m:?}")),
        }
    };
    if check && version != PROTOCOL_VERSION {
        return Err(format!("WELCOME version {version}"));
    }
    // Without the checks, a nonsense slot count still needs some geometry.
    let layout = ControlLayout::new(slot_count.clamp(2, 64)).ok_or("slot count")?;
    let fds = chan.take_fds(1).map_err(|e| e.to_string())?;
    chan.discard_fds();
    let control = Mapping::map(
        fds[0].as_fd(),
        layout.region_size() as usize,
        Access::ReadOnly,
    )
    .map_err(|e| e.to_string())?;
    let wake = control.u32_at(WAKE_OFFSET).ok_or("wake")?;
    let rwake = control.u32_at(RELEASE_WAKE_OFFSET).ok_or("release_wake")?;
    let ctl = ControlWords::new(control.words(), wake, rwake, layout).map_err(|e| e.to_string())?;
    lw.init(start_seq);
    let reader = RingReader::new(ctl, lw);
    let mut cursor = Cursor {
        last_seq: start_seq,
    };
    let end = Instant::now() + Duration::from_secs(20);
    let mut gone = false;
    while Instant::now() < end {
        loop {
            match chan.recv(Some(Duration::ZERO)) {
                Ok(Some(raw)) => match decode(&raw).ok().flatten().map(|d| d.message) {
                    Some(Message::Ping(n)) => {
                        let _ = chan.send(&Message::Pong(n), &[]);
                    }
                    Some(Message::Goodbye(_)) => gone = true,
                    _ => {}
                },
                Ok(None) => break,
                Err(ChannelError::Closed) | Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        let w = wake.load(Ordering::SeqCst);
        match reader.acquire(mode, cursor, 0) {
            Acquire::Frame(l) => {
                cursor.last_seq = l.seq;
                std::thread::sleep(HOLD);
                if scribble {
                    row.words()[10].store(0xBAD, Ordering::SeqCst);
                }
                reader.release(&l, mode);
                futex::wake_all(rwake);
            }
            Acquire::Empty if gone => return Ok(()),
            Acquire::Empty => futex::wait(wake, w, Duration::from_millis(10)),
        }
    }
    Err("gave up after 20 s".into())
}
