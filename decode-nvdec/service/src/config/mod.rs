//! `cameras.toml`: the streams one publisher process serves.
//!
//! ```toml
//! # Optional, for every stream:
//! runtime_dir = "/run/cuframes"
//! stats_interval = 10.0          # seconds between stats lines (0: none)
//!
//! [defaults]                     # any stream field; a stream's own value wins
//! backend = "auto"
//! ring = 8
//! packets = true
//!
//! [[stream]]
//! key = "cam1"
//! url = "rtsp://user:pass@10.0.0.5:554/stream1"
//! transport = "tcp"
//!
//! [[stream]]
//! key = "lobby-replay"
//! file = "media/sample-h264.mp4"
//! loop = true
//! realtime = true
//! ```
//!
//! Stream fields (all but `key` and one of `url` / `file` optional):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `key` | — | stream key, `[A-Za-z0-9_-]{1,63}`, unique in the file |
//! | `url` / `file` | — | an `rtsp://` (or other libavformat) URL, or a media file |
//! | `transport` | `auto` | RTSP transport: `auto`, `tcp`, `udp` |
//! | `io_timeout_ms` | 5000 | a URL whose open or next packet takes longer fails (stall detection) |
//! | `reconnect_initial_ms`, `reconnect_max_ms` | 1000, 30000 | backoff between reconnects (doubling, capped) |
//! | `decoder` | `auto` | `auto`, `software`, `nvdec` |
//! | `backend` | `auto` | `auto`, `host`, `cuda`, `vulkan` (software decode uploaded into Vulkan memory) |
//! | `memory` | `vmm-fd` | CUDA: `vmm-fd`, `legacy-ipc` |
//! | `sync` | `host-fence` | CUDA: `host-fence`, `ipc-event`; Vulkan: `host-fence`, `timeline` |
//! | `gpu` | `auto` | CUDA device ordinal of the stream's NVDEC decoder and ring (alias `device`), or `auto`: the GPU with the fewest CUDA streams of the file (spreads decoding over the GPUs) |
//! | `vulkan_device` | the most capable | Vulkan: physical device index (`vkEnumeratePhysicalDevices` order) |
//! | `ring` | 8 | frame slots, 2..=64 |
//! | `policy` | `drop-frame` | `drop-frame`, `wait` |
//! | `wait_timeout_ms` | 2000 | `wait`: longest wait for a slot |
//! | `lease_timeout_ms` | 5000 | revoke a lease held longer |
//! | `max_subscribers` | 64 | most subscribers |
//! | `socket_mode` | `"0660"` | the socket file's mode, octal (a string), `0000`..=`0777` |
//! | `allow_uids` | `[]` | uids admitted (SO_PEERCRED); with `allow_gids` empty too: anyone who can open the socket; root always |
//! | `allow_gids` | `[]` | (primary) gids admitted |
//! | `handshake_timeout_ms` | 3000 | a connection without a HELLO answered this long is closed |
//! | `max_lag_events` | none | `wait`: demote an InOrder subscriber that kept the publisher waiting `wait_timeout_ms` this many times |
//! | `packets` | false | also publish encoded packets |
//! | `packet_ring_mib` | 8 | packet ring data area, 1..=2047 MiB |
//! | `packet_slots` | 64 | packet slots, 1..=1024 |
//! | `max_packet_kib` | ring / 4 | larger packets are skipped |
//! | `loop` | false | files: start over at the end |
//! | `realtime` | false | files: pace by timestamps |
//! | `max_frames` | none | stop after this many frames |
//! | `wait_subscribers` | 0 | before the first frame, wait for this many subscribers |
//! | `wait_subscribers_timeout_ms` | 30000 | ... at most this long |
//!
//! Unknown fields, duplicate keys, a stream with no input or two, a file that
//! cannot be opened for reading, a URL that is not `scheme://host...`, and
//! values out of range are errors of [`ServiceConfig::from_toml`], before
//! anything starts.

mod fields;
mod spec;

pub use fields::{
    BackendArg, DecoderArg, MemoryArg, PolicyArg, StreamFields, SyncArg, TransportArg,
};
pub use spec::{
    parse_socket_mode, stream_spec, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_IO_TIMEOUT_MS,
    DEFAULT_LEASE_TIMEOUT_MS, DEFAULT_RECONNECT, DEFAULT_RECONNECT_INITIAL_MS,
    DEFAULT_RECONNECT_MAX_MS, DEFAULT_WAIT_TIMEOUT_MS,
};

use crate::stream::StreamSpec;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A config file could not be used. Each variant's text is one line that
/// names the stream and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown field, or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// No `[[stream]]`.
    #[error("no [[stream]] in the config")]
    NoStreams,
    /// Two streams share a key.
    #[error("stream key {0:?} appears more than once")]
    DuplicateKey(String),
    /// A stream's value is missing, malformed or out of range.
    #[error("stream {stream}: {what}")]
    Invalid {
        /// The stream's key (or its position when the key is missing).
        stream: String,
        /// What is wrong.
        what: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    runtime_dir: Option<PathBuf>,
    stats_interval: Option<f64>,
    #[serde(default)]
    defaults: StreamFields,
    #[serde(default)]
    stream: Vec<StreamFields>,
}

/// The validated streams of a publisher process, and what they share.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Seconds between stats lines (0: none); default 5.
    pub stats_interval: f64,
    /// The streams, in file order.
    pub streams: Vec<StreamSpec>,
}

impl ServiceConfig {
    /// Reads and validates a TOML file (format: the module docs).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path.parent())
    }

    /// Parses and validates TOML text; relative `file` paths are taken
    /// relative to `base_dir` when given.
    pub fn from_toml(text: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let file: FileToml = toml::from_str(text).map_err(|e| {
            ConfigError::Parse(
                e.to_string()
                    .lines()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_owned(),
            )
        })?;
        if file.stream.is_empty() {
            return Err(ConfigError::NoStreams);
        }
        let stats_interval = file.stats_interval.unwrap_or(5.0);
        if !stats_interval.is_finite() || stats_interval < 0.0 {
            return Err(ConfigError::Parse(format!(
                "stats_interval {stats_interval} is not a number of seconds ≥ 0"
            )));
        }
        let mut seen = HashSet::new();
        let mut streams = Vec::with_capacity(file.stream.len());
        for (i, s) in file.stream.into_iter().enumerate() {
            let mut s = s.or(&file.defaults);
            if let (Some(base), Some(f)) = (base_dir, s.file.as_ref()) {
                if f.is_relative() {
                    s.file = Some(base.join(f));
                }
            }
            let spec = stream_spec(s, file.runtime_dir.clone(), i)?;
            if !seen.insert(spec.key().to_owned()) {
                return Err(ConfigError::DuplicateKey(spec.key().to_owned()));
            }
            streams.push(spec);
        }
        Ok(ServiceConfig {
            stats_interval,
            streams,
        })
    }
}

#[cfg(test)]
mod tests;
