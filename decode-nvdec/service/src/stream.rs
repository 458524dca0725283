//! One stream's life on its own thread: pick the backend and decoder, open
//! the input, pump frames into the sink, start a file over (`loop`), reopen
//! a failed camera with backoff, and end the stream cleanly.

use super::sink::{FrameSink, PacketSettings, SinkSettings};
use super::source::{DecoderKind, MediaSource, PumpEnd, SlotWrite, SourceError, SourceSpec};
use super::stats::{SharedStats, StreamState};
use cuframes::BackendKind;
use cuframes_core::backoff::{Backoff, BackoffPolicy, Next};
use cuframes_core::runtime::{HostBackend, PublisherConfig};
use cuframes_cuda::{CudaBackend, CudaConfig};
use cuframes_nvdec::nvdec_available;
use cuframes_vulkan::{VulkanBackend, VulkanConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which memory the ring lives in, with each GPU backend's settings; the
/// choice itself is the facade's ([`BackendChoice::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// CUDA when a driver and a GPU are present, else host memory
    /// (`cuframes::Backend::resolve_publisher`); a CUDA device that then
    /// fails to open also falls back to host memory.
    Auto(CudaConfig),
    /// Host memory (memfd).
    Host,
    /// CUDA device memory with these settings; failing to open the GPU fails the stream.
    Cuda(CudaConfig),
    /// Vulkan device memory (opaque fds), filled by the software decoder;
    /// failing to open the device fails the stream.
    Vulkan(VulkanConfig),
}

impl BackendChoice {
    /// The facade's name for this choice.
    pub fn backend(&self) -> cuframes::Backend {
        match self {
            BackendChoice::Auto(_) => cuframes::Backend::Auto,
            BackendChoice::Host => cuframes::Backend::Host,
            BackendChoice::Cuda(_) => cuframes::Backend::Cuda,
            BackendChoice::Vulkan(_) => cuframes::Backend::Vulkan,
        }
    }
}

/// The GPU a stream's NVDEC decoder and CUDA ring are on (`gpu` in
/// `cameras.toml`, `--gpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuChoice {
    /// Resolved by [`assign_gpus`]: the GPU with the fewest CUDA streams
    /// so far (explicit ones counted first, then these in order; ties to
    /// the lowest ordinal): spreads NVDEC decoding and rings over the GPUs.
    #[default]
    Auto,
    /// This CUDA device ordinal (as numbered after `CUDA_VISIBLE_DEVICES`).
    Index(u32),
}

impl std::str::FromStr for GpuChoice {
    type Err = String;

    /// `auto` or a device ordinal.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuChoice::Auto),
            _ => s
                .parse()
                .map(GpuChoice::Index)
                .map_err(|_| format!("{s:?} is neither a GPU ordinal nor \"auto\"")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for GpuChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = GpuChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a GPU ordinal (0, 1, ...) or \"auto\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<GpuChoice, E> {
                u32::try_from(v)
                    .map(GpuChoice::Index)
                    .map_err(|_| E::custom(format!("gpu {v} is not a GPU ordinal (0, 1, ...)")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<GpuChoice, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GpuChoice, E> {
                match v {
                    "auto" => Ok(GpuChoice::Auto),
                    _ => Err(E::custom(format!(
                        "gpu {v:?} is neither a GPU ordinal nor \"auto\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A stream's `gpu` names no GPU of this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {key}: gpu {gpu} is out of range: this host has {count} CUDA device(s){}", if *count > 0 { format!(" (0..={})", count - 1) } else { String::new() })]
pub struct GpuError {
    /// The stream's key.
    pub key: String,
    /// The ordinal asked for.
    pub gpu: u32,
    /// CUDA devices visible to this process.
    pub count: u32,
}

/// Puts each stream that may use CUDA (backend `cuda` or `auto`) on a GPU:
/// checks explicit ordinals against `count` (the CUDA devices this process
/// sees; `None`: no driver, nothing to check or spread) and resolves
/// [`GpuChoice::Auto`] to the GPU with the fewest such streams so far.
/// The result is in each stream's CUDA config (`device`) and `gpu`.
///
/// Errors: the first stream whose ordinal is `>= count`.
pub fn assign_gpus(specs: &mut [StreamSpec], count: Option<u32>) -> Result<(), GpuError> {
    let Some(count) = count else { return Ok(()) };
    let mut load = vec![0usize; count as usize];
    for s in specs.iter().filter(|s| s.cuda_config().is_some()) {
        if let GpuChoice::Index(i) = s.gpu {
            // Only an explicit `backend = "cuda"` needs a GPU; `auto`
            // falls back to host memory when there is none.
            if i >= count && (count > 0 || matches!(s.backend, BackendChoice::Cuda(_))) {
                return Err(GpuError {
                    key: s.key().to_owned(),
                    gpu: i,
                    count,
                });
            }
            if let Some(l) = load.get_mut(i as usize) {
                *l += 1;
            }
        }
    }
    for s in specs.iter_mut() {
        let gpu = match s.gpu {
            GpuChoice::Index(i) => i,
            GpuChoice::Auto if s.cuda_config().is_none() || count == 0 => continue,
            GpuChoice::Auto => {
                // The least loaded, the lowest ordinal among equals.
                let Some((i, l)) = load.iter_mut().enumerate().min_by_key(|(i, l)| (**l, *i))
                else {
                    continue;
                };
                *l += 1;
                s.gpu = GpuChoice::Index(i as u32);
                i as u32
            }
        };
        if let BackendChoice::Auto(c) | BackendChoice::Cuda(c) = &mut s.backend {
            c.device = gpu;
        }
    }
    Ok(())
}

/// Which decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderChoice {
    /// NVDEC with the CUDA backend when libnvcuvid loads, else software.
    Auto,
    /// libavcodec.
    Software,
    /// NVDEC (needs the CUDA backend).
    Nvdec,
}

/// Everything one stream needs: the input, how to decode it, and how to
/// publish it.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Input, transport, stall timeout; its `decoder` is replaced by the
    /// resolution of [`StreamSpec::decoder`].
    pub source: SourceSpec,
    /// Decoder choice.
    pub decoder: DecoderChoice,
    /// Backend choice; with CUDA, its `device` is the stream's GPU.
    pub backend: BackendChoice,
    /// The GPU of the decoder and ring (CUDA backends); [`assign_gpus`]
    /// (called by `Service::start`) resolves `Auto` into the backend's
    /// `device`. [`run_stream`] alone uses the backend's `device`.
    pub gpu: GpuChoice,
    /// Publisher settings; `config.key` is the stream key.
    pub config: PublisherConfig,
    /// Publish encoded packets too.
    pub packets: Option<PacketSettings>,
    /// Files: start over at the end (the next frame carries DISCONTINUITY).
    pub looping: bool,
    /// Pace frames by their timestamps (files).
    pub realtime: bool,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Before the first frame, wait for this many subscribers.
    pub wait_subscribers: usize,
    /// ... at most this long.
    pub wait_subscribers_timeout: Duration,
    /// Delays between attempts to reopen a failed live input (core's
    /// capped doubling; `config::DEFAULT_RECONNECT` unless set).
    pub reconnect: BackoffPolicy,
}

impl StreamSpec {
    /// The stream key.
    pub fn key(&self) -> &str {
        &self.config.key
    }

    /// The CUDA settings when the stream may use CUDA (backend `cuda` or `auto`).
    pub fn cuda_config(&self) -> Option<&CudaConfig> {
        match &self.backend {
            BackendChoice::Auto(c) | BackendChoice::Cuda(c) => Some(c),
            BackendChoice::Host | BackendChoice::Vulkan(_) => None,
        }
    }
}

/// How a stream's thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutcome {
    /// The input ended (or `max_frames`); subscribers got GOODBYE end-of-stream.
    Ended {
        /// Frames published.
        frames: u64,
    },
    /// Stopped on request; subscribers got GOODBYE shutdown (they may
    /// reconnect to the next publisher of the key).
    Stopped {
        /// Frames published.
        frames: u64,
    },
    /// An error retrying cannot fix (bad input file, GPU failure, key taken).
    Failed(String),
}

/// Runs `spec` until its input ends, it fails for good, or `stop` is set.
/// Never panics on anything from the input; every failure is in the outcome
/// and `stats.last_error`.
///
/// `stop` also interrupts blocking reads of the input (a FIFO, a device, a
/// camera that stopped sending), so a stop takes effect within milliseconds.
pub fn run_stream(spec: &StreamSpec, stop: &Arc<AtomicBool>, stats: &SharedStats) -> StreamOutcome {
    let key = spec.key().to_owned();
    if let BackendChoice::Vulkan(c) = spec.backend {
        if spec.decoder == DecoderChoice::Nvdec {
            return fail(
                stats,
                &key,
                "the NVDEC decoder needs the CUDA backend".into(),
            );
        }
        let mut source = spec.source.clone();
        source.decoder = DecoderKind::Software;
        return match VulkanBackend::publisher(c) {
            Ok(b) => drive(spec, &source, b, stop, stats),
            Err(e) => fail(stats, &key, format!("cannot open the Vulkan device: {e}")),
        };
    }
    let cuda = match spec.backend {
        BackendChoice::Host | BackendChoice::Vulkan(_) => None,
        BackendChoice::Cuda(c) => match CudaBackend::publisher(c) {
            Ok(b) => Some(b),
            Err(e) => return fail(stats, &key, format!("cannot open the GPU: {e}")),
        },
        BackendChoice::Auto(c) => match spec.backend.backend().resolve_publisher() {
            Ok(BackendKind::Cuda) => match CudaBackend::publisher(c) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::info!(%key, "CUDA unusable ({e}); using host memory");
                    None
                }
            },
            _ => {
                tracing::info!(%key, "no CUDA driver or GPU; using host memory");
                None
            }
        },
    };
    let nvdec = match (spec.decoder, &cuda) {
        (DecoderChoice::Software, _) => false,
        (DecoderChoice::Nvdec, None) => {
            return fail(
                stats,
                &key,
                "the NVDEC decoder needs the CUDA backend".into(),
            )
        }
        (DecoderChoice::Nvdec, Some(_)) => {
            if !nvdec_available() {
                return fail(
                    stats,
                    &key,
                    "NVDEC: libnvcuvid.so.1 cannot be loaded".into(),
                );
            }
            true
        }
        (DecoderChoice::Auto, c) => c.is_some() && nvdec_available(),
    };
    let mut source = spec.source.clone();
    source.decoder = if nvdec {
        DecoderKind::Nvdec
    } else {
        DecoderKind::Software
    };
    match cuda {
        None => drive(spec, &source, HostBackend, stop, stats),
        Some(b) => drive(spec, &source, b, stop, stats),
    }
}

fn fail(stats: &SharedStats, key: &str, why: String) -> StreamOutcome {
    tracing::error!(%key, "stream failed: {why}");
    stats.error(why.clone());
    stats.set_state(StreamState::Failed);
    StreamOutcome::Failed(why)
}

/// Sleeps `d` in short slices; `false` if `stop` was set meanwhile.
fn sleep_unless_stopped<B: SlotWrite>(d: Duration, stop: &AtomicBool, sink: &FrameSink<B>) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        sink.refresh_stats();
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::Relaxed)
}

fn drive<B: SlotWrite>(
    spec: &StreamSpec,
    source: &SourceSpec,
    backend: B,
    stop: &Arc<AtomicBool>,
    stats: &SharedStats,
) -> StreamOutcome {
    let key = spec.key().to_owned();
    let device = backend.cuda_device().cloned();
    let backend_name = backend.describe();
    let vram_free = device.clone().map(|d| {
        Box::new(move || d.memory_info().ok().map(|m| m.free))
            as Box<dyn Fn() -> Option<u64> + Send>
    });
    let settings = SinkSettings {
        config: spec.config.clone(),
        packets: spec.packets,
        wait_subscribers: spec.wait_subscribers,
        wait_subscribers_timeout: spec.wait_subscribers_timeout,
        realtime: spec.realtime,
        vram_free,
    };
    let mut sink = FrameSink::new(backend, settings, stats.clone());
    let live = source.input.is_live();
    let name = source.input.redacted();
    let mut backoff = Backoff::<Instant>::new(spec.reconnect);
    let mut opened_before = false;

    // `Err(e)`: the input failed; retried with backoff when live.
    let outcome: Result<PumpEnd, SourceError> = 'stream: loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(PumpEnd::Stopped);
        }
        stats.set_state(StreamState::Connecting);
        let result = MediaSource::open(source, device.as_ref(), Some(stop)).and_then(|mut src| {
            if opened_before {
                sink.discontinuity();
                stats.lock().reconnects += 1;
                tracing::info!(%key, input = %name, "input reopened; the next frame carries DISCONTINUITY");
            } else {
                let i = src.info();
                tracing::info!(%key, input = %name, codec = %i.codec_name,
                    "{}x{} at {}/{} fps, decoder {}, backend {backend_name}", i.width, i.height,
                    i.frame_rate.0, i.frame_rate.1, src.decoder_name());
            }
            opened_before = true;
            sink.input_opened(src.info());
            loop {
                let end = src.pump(&mut sink, stop, spec.max_frames);
                if src.frames() > 0 {
                    backoff.on_success();
                }
                match end? {
                    PumpEnd::EndOfInput if live => {
                        return Err(SourceError::LiveEnded {
                            input: name.clone(),
                            frames: src.frames(),
                        });
                    }
                    PumpEnd::EndOfInput if spec.looping => {
                        src.rewind()?;
                        sink.discontinuity();
                        stats.lock().loops += 1;
                    }
                    PumpEnd::EndOfInput if src.frames() == 0 && sink.total() == 0 => {
                        return Err(SourceError::NoFrames(name.clone()));
                    }
                    end => return Ok(end),
                }
            }
        });
        match result {
            Ok(end) => break Ok(end),
            // The stop flag interrupted a blocking open or read.
            Err(e) if e.is_stop() || stop.load(Ordering::Relaxed) => break Ok(PumpEnd::Stopped),
            Err(e) if live && e.is_input_error() => {
                let now = Instant::now();
                // The policy never gives up (no `give_up_after`).
                let Next::RetryAt(at) = backoff.on_failure(now) else {
                    break Err(e);
                };
                let delay = at.saturating_duration_since(now);
                tracing::warn!(%key, input = %name, "{e}; reconnecting in {:.1} s (attempt {})",
                    delay.as_secs_f64(), backoff.failures());
                stats.error(e.to_string());
                stats.set_state(StreamState::Backoff(delay));
                if !sleep_unless_stopped(delay, stop, &sink) {
                    break 'stream Ok(PumpEnd::Stopped);
                }
            }
            Err(e) => break Err(e),
        }
    };
    let frames = sink.total();
    match outcome {
        Ok(PumpEnd::Stopped) => {
            stats.set_state(StreamState::Stopped);
            sink.shut_down();
            StreamOutcome::Stopped { frames }
        }
        Ok(PumpEnd::EndOfInput | PumpEnd::Limit) => {
            stats.set_state(StreamState::Ended);
            sink.finish();
            StreamOutcome::Ended { frames }
        }
        Err(e) => {
            // GOODBYE shutdown, not end of stream: subscribers that
            // reconnect wait for a publisher that works again (the operator
            // fixes the input and restarts the service).
            sink.shut_down();
            fail(stats, &key, e.to_string())
        }
    }
}
