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

use super::backoff::Backoff;
use super::sink::PacketSettings;
use super::source::{DecoderKind, InputSpec, SourceSpec};
use super::stream::{BackendChoice, DecoderChoice, GpuChoice, StreamSpec};
use cuframes_core::runtime::PublisherConfig;
use cuframes_core::{PublishPolicy, StreamKey};
use cuframes_cuda::{CudaConfig, CudaMemory, CudaSync};
use cuframes_media::demux::{redact_url, RtspTransport};
use cuframes_vulkan::{DeviceSelect, VulkanConfig, VulkanSync};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// RTSP transport (FFmpeg `rtsp_transport`).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TransportArg {
    /// FFmpeg's default: UDP, then TCP when UDP fails.
    Auto,
    /// RTP interleaved in the RTSP TCP connection.
    Tcp,
    /// RTP over UDP.
    Udp,
}

/// Decoder.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DecoderArg {
    /// NVDEC with the CUDA backend when libnvcuvid loads, else software.
    Auto,
    /// FFmpeg's software decoder (libavcodec).
    Software,
    /// NVIDIA NVDEC (needs the CUDA backend).
    Nvdec,
}

/// Memory backend of the frame ring.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendArg {
    /// CUDA when a driver and a GPU are present, else host.
    Auto,
    /// Host memory (memfd): works on any Linux machine.
    Host,
    /// CUDA device memory (VRAM).
    Cuda,
    /// Vulkan device memory exported as opaque fds (experimental; software
    /// decode uploaded; docs/vulkan.md).
    Vulkan,
}

/// How CUDA slots are shared.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryArg {
    /// CUDA VMM allocations exported as file descriptors: works across containers and PID namespaces.
    VmmFd,
    /// Legacy CUDA IPC handles (cuIpcGetMemHandle): needs a shared PID namespace.
    LegacyIpc,
}

/// How CUDA subscribers learn a frame is complete.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SyncArg {
    /// Wait for each frame's copy before publishing it.
    HostFence,
    /// Publish at once; subscribers wait on a per-slot interprocess CUDA event.
    IpcEvent,
    /// --backend vulkan: publish once the upload is submitted; subscribers
    /// wait on per-slot timeline semaphores (VK_KHR_external_semaphore_fd).
    Timeline,
}

/// What to do when no slot may be rewritten.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyArg {
    /// Never block: overwrite unread frames, drop the new frame when every slot is leased.
    DropFrame,
    /// Block (up to the wait timeout) until InOrder subscribers have read a slot: lossless.
    Wait,
}

/// One stream's fields as written; `None`: not given (defaults apply).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFields {
    /// Stream key.
    pub key: Option<String>,
    /// Input URL.
    pub url: Option<String>,
    /// Input file.
    pub file: Option<PathBuf>,
    /// RTSP transport.
    pub transport: Option<TransportArg>,
    /// Open / next-packet timeout of a URL, ms.
    pub io_timeout_ms: Option<u64>,
    /// First reconnect delay, ms.
    pub reconnect_initial_ms: Option<u64>,
    /// Longest reconnect delay, ms.
    pub reconnect_max_ms: Option<u64>,
    /// Decoder.
    pub decoder: Option<DecoderArg>,
    /// Backend.
    pub backend: Option<BackendArg>,
    /// CUDA memory kind.
    pub memory: Option<MemoryArg>,
    /// CUDA sync kind.
    pub sync: Option<SyncArg>,
    /// The stream's GPU: a CUDA device ordinal or `auto` (TOML also
    /// accepts the older name `device`).
    #[serde(alias = "device")]
    pub gpu: Option<GpuChoice>,
    /// Vulkan physical device index (default: the most capable device).
    pub vulkan_device: Option<u32>,
    /// Frame slots.
    pub ring: Option<u32>,
    /// Publish policy.
    pub policy: Option<PolicyArg>,
    /// `wait`: longest wait for a slot, ms.
    pub wait_timeout_ms: Option<u64>,
    /// Lease timeout, ms.
    pub lease_timeout_ms: Option<u64>,
    /// Most subscribers.
    pub max_subscribers: Option<usize>,
    /// Socket file mode, octal digits (`"0660"`).
    pub socket_mode: Option<String>,
    /// Uids admitted (`docs/protocol.md` §2.1 access control).
    pub allow_uids: Option<Vec<u32>>,
    /// Primary gids admitted.
    pub allow_gids: Option<Vec<u32>>,
    /// Handshake deadline, ms.
    pub handshake_timeout_ms: Option<u64>,
    /// `wait`: lag events before an InOrder subscriber is demoted.
    pub max_lag_events: Option<u32>,
    /// Publish packets too.
    pub packets: Option<bool>,
    /// Packet ring data area, MiB.
    pub packet_ring_mib: Option<u32>,
    /// Packet slots.
    pub packet_slots: Option<u32>,
    /// Largest packet, KiB.
    pub max_packet_kib: Option<u32>,
    #[serde(rename = "loop")]
    /// Start a file over at its end.
    pub looping: Option<bool>,
    /// Pace a file by its timestamps.
    pub realtime: Option<bool>,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Subscribers to wait for before the first frame.
    pub wait_subscribers: Option<usize>,
    /// Longest wait for them, ms.
    pub wait_subscribers_timeout_ms: Option<u64>,
}

macro_rules! overlay {
    ($dst:ident, $src:ident, $($f:ident),*) => { $( if $dst.$f.is_none() { $dst.$f = $src.$f.clone(); } )* };
}

impl StreamFields {
    /// Fields of `base` fill what `self` leaves unset.
    fn or(mut self, base: &StreamFields) -> StreamFields {
        overlay!(
            self,
            base,
            key,
            url,
            file,
            transport,
            io_timeout_ms,
            reconnect_initial_ms,
            reconnect_max_ms,
            decoder,
            backend,
            memory,
            sync,
            gpu,
            vulkan_device,
            ring,
            policy,
            wait_timeout_ms,
            lease_timeout_ms,
            max_subscribers,
            socket_mode,
            allow_uids,
            allow_gids,
            handshake_timeout_ms,
            max_lag_events,
            packets,
            packet_ring_mib,
            packet_slots,
            max_packet_kib,
            looping,
            realtime,
            max_frames,
            wait_subscribers,
            wait_subscribers_timeout_ms
        );
        self
    }
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

/// A socket file mode in octal digits (`"660"`, `"0660"`, `"0o660"`): at
/// most `0o777` (no setuid, setgid or sticky bits on a socket).
///
/// Errors: a text saying what is wrong.
pub fn parse_socket_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err("expected 3 or 4 octal digits, e.g. 0660".into());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if mode > 0o777 {
        return Err(format!(
            "{mode:04o} sets setuid/setgid/sticky bits; expected 0000..=0777"
        ));
    }
    Ok(mode)
}

/// Validates one stream's fields (defaults already applied) into a spec.
/// `runtime_dir` is the socket directory (`None`: the default search).
pub fn stream_spec(
    s: StreamFields,
    runtime_dir: Option<PathBuf>,
    index: usize,
) -> Result<StreamSpec, ConfigError> {
    let key = s.key.clone().ok_or_else(|| ConfigError::Invalid {
        stream: format!("#{}", index + 1),
        what: "no `key`".into(),
    })?;
    let bad = |what: String| ConfigError::Invalid {
        stream: key.clone(),
        what,
    };
    StreamKey::new(&key).map_err(|e| bad(format!("invalid key: {e}")))?;
    let input = match (s.url, s.file) {
        (Some(_), Some(_)) => return Err(bad("give `url` or `file`, not both".into())),
        (None, None) => return Err(bad("no input: give `url` or `file`".into())),
        (Some(u), None) => {
            check_url(&u).map_err(|w| bad(format!("url {:?}: {w}", redact_url(&u))))?;
            InputSpec::Url(u)
        }
        (None, Some(f)) => {
            // O_NONBLOCK: a FIFO without a writer must not block here
            // (before the signal handlers exist); for files it is a no-op.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                .open(&f)
                .map_err(|e| bad(format!("file {}: {e}", f.display())))?;
            InputSpec::File(f)
        }
    };
    let range = |name: &str, v: u64, lo: u64, hi: u64| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(bad(format!("{name} {v} is outside {lo}..={hi}")))
        }
    };
    let ring = range("ring", s.ring.unwrap_or(8).into(), 2, 64)? as u32;
    let io_timeout = range(
        "io_timeout_ms",
        s.io_timeout_ms.unwrap_or(5000),
        100,
        600_000,
    )?;
    let initial = range(
        "reconnect_initial_ms",
        s.reconnect_initial_ms.unwrap_or(1000),
        10,
        3_600_000,
    )?;
    let max = range(
        "reconnect_max_ms",
        s.reconnect_max_ms.unwrap_or(30_000),
        10,
        3_600_000,
    )?;
    let wait_timeout = range(
        "wait_timeout_ms",
        s.wait_timeout_ms.unwrap_or(2000),
        1,
        3_600_000,
    )?;
    let lease_timeout = range(
        "lease_timeout_ms",
        s.lease_timeout_ms.unwrap_or(5000),
        1,
        3_600_000,
    )?;
    let max_subscribers = range(
        "max_subscribers",
        s.max_subscribers.unwrap_or(64) as u64,
        1,
        4096,
    )?;
    let cuda = CudaConfig {
        memory: match s.memory.unwrap_or(MemoryArg::VmmFd) {
            MemoryArg::VmmFd => CudaMemory::VmmFd,
            MemoryArg::LegacyIpc => CudaMemory::LegacyIpc,
        },
        sync: match s.sync.unwrap_or(SyncArg::HostFence) {
            SyncArg::HostFence => CudaSync::HostFence,
            SyncArg::IpcEvent => CudaSync::IpcEvent,
            // Checked below: only the Vulkan backend has it.
            SyncArg::Timeline => CudaSync::HostFence,
        },
        // `auto` is resolved by `assign_gpus` when the service starts.
        device: match s.gpu {
            Some(GpuChoice::Index(i)) => i,
            Some(GpuChoice::Auto) | None => 0,
        },
    };
    let backend =
        match s.backend.unwrap_or(BackendArg::Auto) {
            BackendArg::Auto => BackendChoice::Auto(cuda),
            BackendArg::Host => BackendChoice::Host,
            BackendArg::Cuda => BackendChoice::Cuda(cuda),
            BackendArg::Vulkan => BackendChoice::Vulkan(VulkanConfig {
                device: s
                    .vulkan_device
                    .map_or(DeviceSelect::Best, DeviceSelect::Index),
                sync: match s.sync {
                    Some(SyncArg::Timeline) => VulkanSync::Timeline,
                    Some(SyncArg::IpcEvent) => return Err(bad(
                        "sync \"ipc-event\" needs backend \"cuda\" (vulkan: host-fence, timeline)"
                            .into(),
                    )),
                    _ => VulkanSync::HostFence,
                },
            }),
        };
    if s.sync == Some(SyncArg::Timeline) && !matches!(backend, BackendChoice::Vulkan(_)) {
        return Err(bad("sync \"timeline\" needs backend \"vulkan\"".into()));
    }
    let decoder = match s.decoder.unwrap_or(DecoderArg::Auto) {
        DecoderArg::Auto => DecoderChoice::Auto,
        DecoderArg::Software => DecoderChoice::Software,
        DecoderArg::Nvdec => DecoderChoice::Nvdec,
    };
    if decoder == DecoderChoice::Nvdec
        && matches!(backend, BackendChoice::Host | BackendChoice::Vulkan(_))
    {
        return Err(bad(
            "decoder \"nvdec\" needs backend \"cuda\" or \"auto\"".into()
        ));
    }
    let packets = if s.packets.unwrap_or(false) {
        let mib = range(
            "packet_ring_mib",
            s.packet_ring_mib.unwrap_or(8).into(),
            1,
            2047,
        )? as u32;
        let slots = range("packet_slots", s.packet_slots.unwrap_or(64).into(), 1, 1024)? as u32;
        let data_size = mib << 20;
        let max_packet_size = match s.max_packet_kib {
            Some(k) => {
                range("max_packet_kib", k.into(), 1, u64::from(data_size / 1024))? as u32 * 1024
            }
            None => data_size / 4,
        };
        Some(PacketSettings {
            data_size,
            slots,
            max_packet_size,
        })
    } else {
        None
    };
    let mut config = PublisherConfig::new(&key);
    config.slots = ring;
    config.policy = match s.policy.unwrap_or(PolicyArg::DropFrame) {
        PolicyArg::DropFrame => PublishPolicy::DropFrame,
        PolicyArg::Wait => PublishPolicy::Wait,
    };
    config.wait_timeout = Duration::from_millis(wait_timeout);
    config.lease_timeout = Duration::from_millis(lease_timeout);
    config.max_subscribers = max_subscribers as usize;
    if let Some(m) = &s.socket_mode {
        config.socket_mode =
            parse_socket_mode(m).map_err(|w| bad(format!("socket_mode {m:?}: {w}")))?;
    }
    config.allowed_uids = s.allow_uids.clone().unwrap_or_default();
    config.allowed_gids = s.allow_gids.clone().unwrap_or_default();
    config.handshake_timeout = Duration::from_millis(range(
        "handshake_timeout_ms",
        s.handshake_timeout_ms.unwrap_or(3000),
        10,
        600_000,
    )?);
    config.max_lag_events = s
        .max_lag_events
        .map(|n| range("max_lag_events", n.into(), 1, 1_000_000).map(|v| v as u32))
        .transpose()?;
    config.runtime_dir = runtime_dir;
    Ok(StreamSpec {
        source: SourceSpec {
            input,
            transport: match s.transport.unwrap_or(TransportArg::Auto) {
                TransportArg::Auto => RtspTransport::Auto,
                TransportArg::Tcp => RtspTransport::Tcp,
                TransportArg::Udp => RtspTransport::Udp,
            },
            io_timeout: Duration::from_millis(io_timeout),
            decoder: DecoderKind::Software,
        },
        decoder,
        backend,
        gpu: s.gpu.unwrap_or_default(),
        config,
        packets,
        looping: s.looping.unwrap_or(false),
        realtime: s.realtime.unwrap_or(false),
        max_frames: s.max_frames,
        wait_subscribers: s.wait_subscribers.unwrap_or(0),
        wait_subscribers_timeout: Duration::from_millis(
            s.wait_subscribers_timeout_ms.unwrap_or(30_000),
        ),
        reconnect: Backoff::new(Duration::from_millis(initial), Duration::from_millis(max)),
    })
}

/// `scheme://host...` with a known scheme and no whitespace.
fn check_url(u: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return Err("not a URL (scheme://host/...)");
    };
    if !matches!(
        scheme,
        "rtsp" | "rtsps" | "rtmp" | "http" | "https" | "srt" | "udp" | "tcp"
    ) {
        return Err("unsupported scheme (rtsp, rtsps, rtmp, http, https, srt, udp, tcp)");
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters");
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("no host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match ServiceConfig::from_toml(text, None) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    /// The field table of these module docs and of docs/cameras.md are
    /// the same rows: a field added to one must reach the other.
    #[test]
    fn docs_cameras_md_has_this_field_table() {
        fn rows<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
            lines
                .map(str::trim)
                .skip_while(|l| !l.starts_with("| field | default | meaning |"))
                .skip(2)
                .take_while(|l| l.starts_with('|'))
                .map(str::to_owned)
                .collect()
        }
        let here = rows(
            include_str!("config.rs")
                .lines()
                .filter_map(|l| l.strip_prefix("//!")),
        );
        let doc = rows(include_str!("../../../docs/cameras.md").lines());
        assert!(here.len() > 20, "the module docs' table: {here:?}");
        assert_eq!(
            here, doc,
            "docs/cameras.md's field table differs from config.rs's"
        );
    }

    #[test]
    fn defaults_apply_and_a_stream_wins() {
        let c = ServiceConfig::from_toml(
            r#"
            stats_interval = 2.5
            [defaults]
            ring = 4
            transport = "tcp"
            [[stream]]
            key = "a"
            url = "rtsp://user:pw@127.0.0.1:8554/a"
            [[stream]]
            key = "b"
            url = "rtsp://127.0.0.1:8554/b"
            ring = 16
            transport = "udp"
            packets = true
            handshake_timeout_ms = 500
            max_lag_events = 3
            "#,
            None,
        )
        .unwrap();
        assert_eq!(c.stats_interval, 2.5);
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.streams[0].config.slots, 4);
        assert_eq!(c.streams[0].source.transport, RtspTransport::Tcp);
        assert_eq!(c.streams[1].config.slots, 16);
        assert_eq!(c.streams[1].source.transport, RtspTransport::Udp);
        assert!(c.streams[0].packets.is_none());
        assert_eq!(c.streams[1].packets.unwrap().data_size, 8 << 20);
        assert_eq!(
            c.streams[0].config.handshake_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(c.streams[0].config.max_lag_events, None);
        assert_eq!(
            c.streams[1].config.handshake_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(c.streams[1].config.max_lag_events, Some(3));
    }

    #[test]
    fn streams_are_spread_over_the_gpus_and_pinned_ones_checked() {
        use crate::stream::{assign_gpus, GpuChoice};
        let text = r#"
            [[stream]]
            key = "a"
            url = "rtsp://h/a"
            gpu = 1
            [[stream]]
            key = "b"
            url = "rtsp://h/b"
            [[stream]]
            key = "c"
            url = "rtsp://h/c"
            gpu = "auto"
            [[stream]]
            key = "d"
            url = "rtsp://h/d"
            backend = "host"
            [[stream]]
            key = "e"
            url = "rtsp://h/e"
            device = 1
            backend = "cuda"
            [[stream]]
            key = "f"
            url = "rtsp://h/f"
        "#;
        let c = ServiceConfig::from_toml(text, None).unwrap();
        assert_eq!(c.streams[0].gpu, GpuChoice::Index(1));
        assert_eq!(c.streams[1].gpu, GpuChoice::Auto);
        assert_eq!(c.streams[2].gpu, GpuChoice::Auto);
        // `device`, the older name, is the same field.
        assert_eq!(c.streams[4].gpu, GpuChoice::Index(1));
        let device = |s: &StreamSpec| s.cuda_config().map(|c| c.device);
        // Two GPUs: a and e pinned to 1, so b, c and f go 0, 0, then the
        // least loaded (0 with 2, 1 with 2: the lower ordinal).
        let mut two = c.streams.clone();
        assign_gpus(&mut two, Some(2)).unwrap();
        let got: Vec<_> = two.iter().map(device).collect();
        assert_eq!(
            got,
            [Some(1), Some(0), Some(0), None, Some(1), Some(0)],
            "{two:?}"
        );
        assert_eq!(two[1].gpu, GpuChoice::Index(0));
        // Four GPUs: the auto streams take the empty ones in order.
        let mut four = c.streams.clone();
        assign_gpus(&mut four, Some(4)).unwrap();
        let got: Vec<_> = four.iter().map(device).collect();
        assert_eq!(got, [Some(1), Some(0), Some(2), None, Some(1), Some(3)]);
        // One GPU: a's `gpu = 1` does not exist: one line naming it.
        let mut one = c.streams.clone();
        let e = assign_gpus(&mut one, Some(1)).unwrap_err().to_string();
        assert_eq!(
            e,
            "stream a: gpu 1 is out of range: this host has 1 CUDA device(s) (0..=0)"
        );
        // No driver: nothing to check or spread (backend auto falls back
        // to host memory; backend cuda fails when its stream starts).
        let mut none = c.streams.clone();
        assign_gpus(&mut none, None).unwrap();
        assert_eq!(none[1].gpu, GpuChoice::Auto);
        // No GPU but a driver: only an explicit `backend = "cuda"` fails.
        let mut zero = c.streams.clone();
        let e = assign_gpus(&mut zero, Some(0)).unwrap_err().to_string();
        assert!(e.starts_with("stream e: gpu 1"), "{e}");
        assert!(e.contains("has 0 CUDA device(s)"), "{e}");
    }

    #[test]
    fn bad_files_give_one_line_naming_the_problem() {
        let one = |t: &str, want: &str| {
            let e = err(t);
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains('\n'), "not one line: {e:?}");
        };
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nfps = 3\n",
            "unknown field `fps`",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\n[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/b\"\n",
            "\"a\" appears more than once",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp:/h/a\"\n",
            "not a URL",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"cuda\"\nsync = \"timeline\"\n",
            "sync \"timeline\" needs backend \"vulkan\"",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"vulkan\"\nsync = \"ipc-event\"\n",
            "sync \"ipc-event\" needs backend \"cuda\"",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"vulkan\"\ndecoder = \"nvdec\"\n",
            "decoder \"nvdec\" needs backend",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"gopher://h/a\"\n",
            "unsupported scheme",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://u:secret@/a\"\n",
            "no host",
        );
        assert!(!err("[[stream]]\nkey = \"a\"\nurl = \"rtsp://u:secret@/a\"\n").contains("secret"));
        one(
            "[[stream]]\nkey = \"a\"\nfile = \"/nonexistent/x.mp4\"\n",
            "/nonexistent/x.mp4",
        );
        one("[[stream]]\nkey = \"a\"\n", "no input");
        one("[[stream]]\nurl = \"rtsp://h/a\"\n", "stream #1: no `key`");
        one(
            "[[stream]]\nkey = \"a b\"\nurl = \"rtsp://h/a\"\n",
            "invalid key",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nring = 99\n",
            "ring 99 is outside 2..=64",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nmax_lag_events = 0\n",
            "max_lag_events 0 is outside",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ntransport = \"quic\"\n",
            "unknown variant `quic`",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"host\"\ndecoder = \"nvdec\"\n",
            "needs backend",
        );
        one(
            "stats_interval = nan\n[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\n",
            "stats_interval",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ngpu = -1\n",
            "gpu -1 is not a GPU ordinal",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ngpu = \"all\"\n",
            "gpu \"all\" is neither a GPU ordinal nor \"auto\"",
        );
        one(
            "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ngpu = 1\ndevice = 1\n",
            "duplicate field",
        );
        one("", "no [[stream]]");
    }
}
