//! Validation: one stream's fields, defaults applied, into a
//! [`StreamSpec`].

use super::fields::{
    BackendArg, DecoderArg, MemoryArg, PolicyArg, StreamFields, SyncArg, TransportArg,
};
use super::ConfigError;
use crate::sink::PacketSettings;
use crate::source::{DecoderKind, InputSpec, SourceSpec};
use crate::stream::{BackendChoice, DecoderChoice, GpuChoice, StreamSpec};
use cuframes_core::backoff::BackoffPolicy;
use cuframes_core::runtime::PublisherConfig;
use cuframes_core::{PublishPolicy, StreamKey};
use cuframes_cuda::{CudaConfig, CudaMemory, CudaSync};
use cuframes_media::demux::{redact_url, RtspTransport, DEFAULT_IO_TIMEOUT};
use cuframes_vulkan::{DeviceSelect, VulkanConfig, VulkanSync};
use std::path::PathBuf;
use std::time::Duration;

/// `reconnect_initial_ms` / `reconnect_max_ms` by default: 1 s doubling to
/// 30 s, which retries a camera that dropped for a moment within a second,
/// and one that is down for good about twice a minute — close to what NVRs
/// do (go2rtc: 1 s ×5, 5 s ×5, 10 s ×10, then 60 s). Never gives up.
pub const DEFAULT_RECONNECT: BackoffPolicy =
    BackoffPolicy::new(Duration::from_secs(1), Duration::from_secs(30));

/// `io_timeout_ms` by default: cuframes-media's [`DEFAULT_IO_TIMEOUT`].
pub const DEFAULT_IO_TIMEOUT_MS: u64 = ms(DEFAULT_IO_TIMEOUT);
/// `lease_timeout_ms` by default: core's [`PublisherConfig::DEFAULT_LEASE_TIMEOUT`].
pub const DEFAULT_LEASE_TIMEOUT_MS: u64 = ms(PublisherConfig::DEFAULT_LEASE_TIMEOUT);
/// `wait_timeout_ms` by default: core's [`PublisherConfig::DEFAULT_WAIT_TIMEOUT`].
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = ms(PublisherConfig::DEFAULT_WAIT_TIMEOUT);
/// `handshake_timeout_ms` by default: core's
/// [`PublisherConfig::DEFAULT_HANDSHAKE_TIMEOUT`].
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = ms(PublisherConfig::DEFAULT_HANDSHAKE_TIMEOUT);
/// `reconnect_initial_ms` by default ([`DEFAULT_RECONNECT`]).
pub const DEFAULT_RECONNECT_INITIAL_MS: u64 = ms(DEFAULT_RECONNECT.initial);
/// `reconnect_max_ms` by default ([`DEFAULT_RECONNECT`]).
pub const DEFAULT_RECONNECT_MAX_MS: u64 = ms(DEFAULT_RECONNECT.max);

/// `d` in whole milliseconds (the defaults above are far below `u64::MAX` ms).
const fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
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
        s.io_timeout_ms.unwrap_or(DEFAULT_IO_TIMEOUT_MS),
        100,
        600_000,
    )?;
    let initial = range(
        "reconnect_initial_ms",
        s.reconnect_initial_ms
            .unwrap_or(DEFAULT_RECONNECT_INITIAL_MS),
        10,
        3_600_000,
    )?;
    let max = range(
        "reconnect_max_ms",
        s.reconnect_max_ms.unwrap_or(DEFAULT_RECONNECT_MAX_MS),
        10,
        3_600_000,
    )?;
    let wait_timeout = range(
        "wait_timeout_ms",
        s.wait_timeout_ms.unwrap_or(DEFAULT_WAIT_TIMEOUT_MS),
        1,
        3_600_000,
    )?;
    let lease_timeout = range(
        "lease_timeout_ms",
        s.lease_timeout_ms.unwrap_or(DEFAULT_LEASE_TIMEOUT_MS),
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
        s.handshake_timeout_ms
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_MS),
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
        reconnect: BackoffPolicy::new(Duration::from_millis(initial), Duration::from_millis(max)),
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
