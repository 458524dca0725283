//! The fields of a `[[stream]]` (and of `[defaults]`) as written, before
//! validation; their value enums are also the flags of `cuframes-publish`.

use crate::stream::GpuChoice;
use serde::Deserialize;
use std::path::PathBuf;

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
    pub(super) fn or(mut self, base: &StreamFields) -> StreamFields {
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
