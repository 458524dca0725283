//! cuframes-service: the publisher as a library (the camera service): N
//! streams in one process, each a thread that demuxes, decodes and publishes
//! one input under one key, isolated from the others' failures. Demux and
//! software decode come from `cuframes-media`, NVDEC from `cuframes-nvdec`;
//! `cuframes-publish` (in `cuframes-tools`) is a thin shell over this crate.
//!
//! - [`StreamSpec`] describes one stream (input, decoder, backend,
//!   publisher settings, packets, pacing, reconnect backoff); a
//!   [`ServiceConfig`] is a validated list of them, read from TOML
//!   ([`config`]).
//! - [`Service::start`] runs them; [`Service::stats`] reports per-stream
//!   counters ([`StreamStats`]: fps, reconnects, last error, time since the
//!   last frame); [`Service::stop`] ends them (subscribers get GOODBYE
//!   shutdown and drain the ring); [`Service::join`] gives each
//!   [`StreamOutcome`].
//! - Underneath: [`MediaSource`] (file or `rtsp://` input and its decoder,
//!   pushing frames with keyframe flags and timestamps) feeds a
//!   [`FrameSink`] (publisher lifecycle: ring on the first frame, a new
//!   ring + STREAM_CHANGED on a geometry change, pacing, DISCONTINUITY after
//!   a gap, the packet ring). An application with its own frames uses a
//!   `FrameSink` directly.
//!
//! The CUDA streams of one device share the device's primary context (one
//! per device and process); each stream has its own decoder and ring, on
//! the GPU its `gpu` names, or spread over the GPUs present ([`assign_gpus`],
//! run by [`Service::start`]).
//!
//! ```no_run
//! use cuframes_service::{Service, ServiceConfig};
//! let config = ServiceConfig::load("cameras.toml".as_ref())?;
//! let service = Service::start(config.streams)?;
//! std::thread::sleep(std::time::Duration::from_secs(60));
//! for s in service.stats() {
//!     println!("{}: {} frames, {} reconnects", s.key, s.frames, s.reconnects);
//! }
//! service.stop();
//! let outcomes = service.join();
//! # let _ = outcomes;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod packets;
pub mod sink;
pub mod source;
pub mod stats;
pub mod stream;

pub use config::{ConfigError, ServiceConfig};
pub use sink::{FrameSink, Geometry, PacketSettings, SinkError, SinkSettings};
pub use source::{
    DecoderKind, InputSpec, MediaSource, PumpEnd, SlotWrite, SourceError, SourceSpec, WriteError,
};
pub use stats::{stats_line, SharedStats, StreamState, StreamStats};
pub use stream::{
    assign_gpus, run_stream, BackendChoice, DecoderChoice, GpuChoice, GpuError, StreamOutcome,
    StreamSpec,
};

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starting a [`Service`] failed; nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No streams were given.
    #[error("no streams to run")]
    NoStreams,
    /// Two streams share a key.
    #[error("stream key {0:?} appears more than once")]
    DuplicateKey(String),
    /// A stream's `gpu` names no GPU of this host.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A thread could not be spawned.
    #[error("cannot start the thread of stream {key:?}: {source}")]
    Spawn {
        /// The stream key.
        key: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

struct Running {
    key: String,
    stats: SharedStats,
    thread: Option<JoinHandle<StreamOutcome>>,
}

/// Streams running on their own threads.
pub struct Service {
    streams: Vec<Running>,
    stop: Arc<AtomicBool>,
}

impl Service {
    /// Starts one thread per stream.
    pub fn start(specs: Vec<StreamSpec>) -> Result<Service, StartError> {
        Self::start_with_stop(specs, Arc::new(AtomicBool::new(false)))
    }

    /// Starts one thread per stream; setting `stop` (e.g. from a signal
    /// handler) stops them all, like [`Service::stop`]. First puts the
    /// CUDA streams on GPUs ([`assign_gpus`] with the devices this process
    /// sees): an ordinal out of range is [`StartError::Gpu`] before any
    /// stream starts.
    pub fn start_with_stop(
        mut specs: Vec<StreamSpec>,
        stop: Arc<AtomicBool>,
    ) -> Result<Service, StartError> {
        if specs.is_empty() {
            return Err(StartError::NoStreams);
        }
        assign_gpus(&mut specs, cuda_device_count())?;
        for s in &specs {
            if let Some(c) = s.cuda_config() {
                tracing::debug!(key = %s.key(), gpu = c.device, "stream placed");
            }
        }
        let mut keys = HashSet::new();
        for s in &specs {
            if !keys.insert(s.key().to_owned()) {
                return Err(StartError::DuplicateKey(s.key().to_owned()));
            }
        }
        let mut service = Service {
            streams: Vec::with_capacity(specs.len()),
            stop,
        };
        for spec in specs {
            let key = spec.key().to_owned();
            let stats = SharedStats::new(&key);
            let (st, stop) = (stats.clone(), Arc::clone(&service.stop));
            let thread = std::thread::Builder::new()
                .name(format!("cuframes-{key}"))
                .spawn(move || run_stream(&spec, &stop, &st));
            match thread {
                Ok(t) => service.streams.push(Running {
                    key,
                    stats,
                    thread: Some(t),
                }),
                Err(source) => {
                    service.stop();
                    let _ = service.join_all();
                    return Err(StartError::Spawn { key, source });
                }
            }
        }
        Ok(service)
    }

    /// Each stream's counters now, in start order.
    pub fn stats(&self) -> Vec<StreamStats> {
        self.streams.iter().map(|r| r.stats.snapshot()).collect()
    }

    /// Asks every stream to stop (within a poll interval, or the input's
    /// I/O timeout while a camera read is blocked).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether every stream's thread has ended.
    pub fn is_finished(&self) -> bool {
        self.streams
            .iter()
            .all(|r| r.thread.as_ref().is_none_or(|t| t.is_finished()))
    }

    fn join_all(&mut self) -> Vec<(String, StreamOutcome)> {
        self.streams
            .iter_mut()
            .map(|r| {
                let outcome = match r.thread.take().map(|t| t.join()) {
                    Some(Ok(o)) => o,
                    Some(Err(_)) => StreamOutcome::Failed("the stream's thread panicked".into()),
                    None => StreamOutcome::Failed("not started".into()),
                };
                (r.key.clone(), outcome)
            })
            .collect()
    }

    /// Waits for every stream to end; each key with its outcome.
    pub fn join(mut self) -> Vec<(String, StreamOutcome)> {
        self.join_all()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.streams.iter().any(|r| r.thread.is_some()) {
            self.stop();
            let _ = self.join_all();
        }
    }
}

/// CUDA devices this process sees; `None` without a driver.
pub fn cuda_device_count() -> Option<u32> {
    if !cuframes_cuda::driver_present() {
        return None;
    }
    cuframes_cuda::CudaDevice::count().ok()
}
