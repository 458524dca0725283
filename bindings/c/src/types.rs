//! The types and constants of the C header (`include/cuframes/cuframes.h`,
//! generated from this file and `ffi/` by cbindgen). Names are the C names.
//!
//! Option and information structs start with `size_t struct_size`: the
//! caller sets it to `sizeof` of the struct it was compiled with (the
//! `*_init` functions do), so a library built with a longer struct reads
//! and writes only the fields the caller knows, and defaults the rest.
//! Enumerated option fields are plain `int32_t` (one of the `enum` values),
//! so an unknown value is an error, never undefined behaviour.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void};

/// A connection to one publisher (opaque handle; see
/// `cuframes_subscriber_create`).
pub struct cuframes_subscriber_t {
    _opaque: [u8; 0],
}

/// A leased frame (opaque handle; see `cuframes_subscriber_next`). Holding
/// it holds the frame's slot: release it quickly.
pub struct cuframes_frame_t {
    _opaque: [u8; 0],
}

/// One encoded packet, copied out of the packet ring (opaque handle; see
/// `cuframes_subscriber_next_packet`).
pub struct cuframes_packet_t {
    _opaque: [u8; 0],
}

/// A publisher of one stream key (opaque handle; see
/// `cuframes_publisher_create`).
pub struct cuframes_publisher_t {
    _opaque: [u8; 0],
}

/// Library version, major (as `cuframes_version()`).
pub const CUFRAMES_VERSION_MAJOR: u32 = 0;
/// Library version, minor.
pub const CUFRAMES_VERSION_MINOR: u32 = 1;
/// Library version, patch.
pub const CUFRAMES_VERSION_PATCH: u32 = 0;

/// Most planes a frame can have (NV12 and P010 have 2).
pub const CUFRAMES_MAX_PLANES: usize = 4;

/// "No timestamp" (pts or dts unknown), as in the packet ring.
pub const CUFRAMES_TS_NONE: i64 = i64::MIN;

/// Frame flag: a keyframe.
pub const CUFRAMES_FRAME_FLAG_KEY: u64 = 1;
/// Frame flag: frames before this one were lost at the source (a camera
/// reconnect), or this is the first frame after the subscriber reconnected.
pub const CUFRAMES_FRAME_FLAG_DISCONTINUITY: u64 = 2;

/// Packet flag: IDR / keyframe (as FFmpeg's `AV_PKT_FLAG_KEY`).
pub const CUFRAMES_PKT_FLAG_KEY: u32 = 1;
/// Packet flag: the source reported damage (as `AV_PKT_FLAG_CORRUPT`).
pub const CUFRAMES_PKT_FLAG_CORRUPT: u32 = 2;
/// Packet flag: packets before this one were lost (an overrun of this
/// reader, or a gap at the source); the packet is a keyframe.
pub const CUFRAMES_PKT_FLAG_DISCONTINUITY: u32 = 4;
/// Packet flag: last NAL unit of an access unit.
pub const CUFRAMES_PKT_FLAG_LAST_IN_AU: u32 = 8;

// Literals, not `Codec::H264.av_codec_id()`: cbindgen writes no const-fn
// calls. `subscriber::tests::av_codec_id_constants_are_cores` keeps them
// equal to cuframes-core's.
/// FFmpeg `AV_CODEC_ID_H264`, the packet ring's codec id for H.264.
pub const CUFRAMES_AV_CODEC_ID_H264: u32 = 27;
/// FFmpeg `AV_CODEC_ID_HEVC`, the packet ring's codec id for HEVC.
pub const CUFRAMES_AV_CODEC_ID_HEVC: u32 = 173;

/// `subscribe_flags` bit: receive decoded frames.
pub const CUFRAMES_SUBSCRIBE_FRAMES: u32 = 1;
/// `subscribe_flags` bit: receive encoded packets (the publisher needs a
/// packet ring).
pub const CUFRAMES_SUBSCRIBE_PACKETS: u32 = 2;

/// Delivery mode (`cuframes_subscriber_options_t::mode`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_mode {
    /// Always the newest frame; older ones are skipped and counted.
    CUFRAMES_MODE_NEWEST_ONLY = 0,
    /// Every frame in sequence; frames lost to a slow reader are counted
    /// as drops (`CUFRAMES_MODE_STRICT_ORDER` is the earlier name).
    CUFRAMES_MODE_IN_ORDER = 1,
}

/// Memory backend (`cuframes_subscriber_options_t::backend`,
/// `cuframes_publisher_options_t::backend`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_backend {
    /// Subscriber: chosen from what the publisher offers, on the one
    /// connection: host memory for a host publisher; CUDA for a CUDA
    /// publisher (or Vulkan when this machine has no CUDA driver); for a
    /// Vulkan publisher CUDA when a driver is present and its sync is a host
    /// fence, else Vulkan. Publisher: CUDA when a driver and a GPU are
    /// present, else host.
    CUFRAMES_BACKEND_AUTO = 0,
    /// Host memory (memfd): works on any Linux machine.
    CUFRAMES_BACKEND_HOST = 1,
    /// CUDA device memory (VRAM) on the publisher's GPU.
    CUFRAMES_BACKEND_CUDA = 2,
    /// Vulkan external memory (any Vulkan 1.1+ device with
    /// `VK_KHR_external_memory_fd`, lavapipe included). Subscribers read its
    /// frames with `cuframes_frame_copy_to_host`; a C publisher cannot
    /// write Vulkan slots (`cuframes_publisher_create` answers
    /// `CUFRAMES_ERR_UNSUPPORTED`).
    CUFRAMES_BACKEND_VULKAN = 3,
}

/// Where a frame's (or slot's) planes live.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_memory {
    /// Host memory: planes have host pointers (`data`).
    CUFRAMES_MEMORY_HOST = 1,
    /// CUDA device memory: planes have device pointers (`device_ptr`,
    /// a `CUdeviceptr` valid in this process's context for the GPU).
    CUFRAMES_MEMORY_CUDA = 2,
    /// Vulkan external memory: planes have neither pointer (`data` NULL,
    /// `device_ptr` 0; pitch, row bytes and rows are set); read the frame
    /// with `cuframes_frame_copy_to_host`.
    CUFRAMES_MEMORY_VULKAN = 3,
}

/// Pixel format of a frame (`docs/protocol.md` §3.3 codes).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_pixel_format {
    /// 8-bit 4:2:0: plane 0 Y (`height` rows of `width` bytes), plane 1
    /// interleaved CbCr (`ceil(height/2)` rows of `2*ceil(width/2)` bytes).
    CUFRAMES_FORMAT_NV12 = 1,
    /// 10-bit 4:2:0 in 16-bit little-endian words (value in the high 10
    /// bits); planes as NV12 with two bytes per sample.
    CUFRAMES_FORMAT_P010 = 2,
}

/// Codec of the publisher's source (stream description, `docs/protocol.md`
/// §3.3; not the packet ring's `AVCodecID`).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_codec {
    /// Unknown or raw.
    CUFRAMES_CODEC_UNKNOWN = 0,
    /// H.264 / AVC.
    CUFRAMES_CODEC_H264 = 1,
    /// H.265 / HEVC.
    CUFRAMES_CODEC_HEVC = 2,
}

/// What a publisher does when no slot may be rewritten.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_policy {
    /// Never block: overwrite unread frames; drop the new frame when every
    /// slot is leased.
    CUFRAMES_POLICY_DROP_FRAME = 0,
    /// Block up to `wait_timeout_ms` until InOrder subscribers have read a
    /// slot: lossless delivery.
    CUFRAMES_POLICY_WAIT = 1,
}

/// How a CUDA publisher shares its slots.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_cuda_memory {
    /// CUDA VMM allocations exported as file descriptors: works across
    /// containers and PID namespaces (default).
    CUFRAMES_CUDA_MEMORY_VMM_FD = 0,
    /// Legacy CUDA IPC handles (`cuIpcGetMemHandle`): needs a shared PID
    /// namespace; subscribers must opt in (`allow_legacy_ipc`).
    CUFRAMES_CUDA_MEMORY_LEGACY_IPC = 1,
}

/// How a CUDA publisher tells subscribers a frame is complete.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_cuda_sync {
    /// The publisher waits for each frame's copy before publishing it.
    CUFRAMES_CUDA_SYNC_HOST_FENCE = 0,
    /// Per-slot interprocess CUDA events the subscriber waits on in its
    /// stream (legacy IPC underneath: subscribers must opt in).
    CUFRAMES_CUDA_SYNC_IPC_EVENT = 1,
}

/// Why a subscriber's connection ended (`cuframes_subscriber_end_reason`).
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_end_reason {
    /// The connection has not ended.
    CUFRAMES_END_NONE = 0,
    /// GOODBYE end of stream: the publisher's input ended.
    CUFRAMES_END_OF_STREAM = 1,
    /// GOODBYE shutdown: the publisher stopped on purpose before its input
    /// ended.
    CUFRAMES_END_SHUTDOWN = 2,
    /// The socket closed without GOODBYE: the publisher crashed or was killed.
    CUFRAMES_END_VANISHED = 3,
    /// The publisher sent ERROR.
    CUFRAMES_END_REFUSED = 4,
    /// The publisher broke the protocol.
    CUFRAMES_END_PROTOCOL_ERROR = 5,
}

/// Subscriber settings for `cuframes_subscriber_create`. Fill with
/// `cuframes_subscriber_options_init`, then set `key` and what differs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_subscriber_options_t {
    /// `sizeof(cuframes_subscriber_options_t)` (set by the init function).
    pub struct_size: usize,
    /// Stream key, `[A-Za-z0-9_-]{1,63}` (required; copied).
    pub key: *const c_char,
    /// Name shown in the publisher's log (NULL: `pid-<pid>`; ≤ 64 bytes).
    pub consumer_name: *const c_char,
    /// Runtime directory holding the sockets (NULL: `$CUFRAMES_RUNTIME_DIR`,
    /// `/run/cuframes`, `$XDG_RUNTIME_DIR/cuframes`, `/tmp/cuframes-<uid>`).
    pub runtime_dir: *const c_char,
    /// A `cuframes_mode` (default `CUFRAMES_MODE_NEWEST_ONLY`).
    pub mode: i32,
    /// A `cuframes_backend` (default `CUFRAMES_BACKEND_AUTO`).
    pub backend: i32,
    /// `CUFRAMES_SUBSCRIBE_*` bits (default `CUFRAMES_SUBSCRIBE_FRAMES`).
    pub subscribe_flags: u32,
    /// Longest wait for the publisher's answer to HELLO, ms (default 5000).
    pub connect_timeout_ms: u32,
    /// Keep retrying this long while nobody publishes the key, ms (default
    /// 0: fail at once with `CUFRAMES_ERR_NO_PUBLISHER`).
    pub wait_publisher_ms: u32,
    /// Nonzero: reconnect by itself when the publisher vanishes or shuts
    /// down (`docs/protocol.md` §5.6); `next` returns `CUFRAMES_ERR_TIMEOUT`
    /// meanwhile. Default 0: report `CUFRAMES_ERR_DISCONNECTED`.
    pub reconnect: u32,
    /// Reconnect: wait before the second attempt, ms (default 50).
    pub reconnect_first_delay_ms: u32,
    /// Reconnect: longest wait between attempts, ms (default 500).
    pub reconnect_max_delay_ms: u32,
    /// Reconnect: give up (report `CUFRAMES_ERR_DISCONNECTED`) after this
    /// long without success, ms; negative: never (default -1).
    pub reconnect_give_up_ms: i64,
    /// Publisher uids accepted besides root (`SO_PEERCRED`); with
    /// `publisher_uid_count` 0 (default): this process's uid only.
    pub publisher_uids: *const u32,
    /// Entries in `publisher_uids`.
    pub publisher_uid_count: usize,
    /// Nonzero: accept a publisher of any uid (the socket's directory and
    /// mode are then the only protection). Default 0.
    pub accept_any_publisher_uid: u32,
    /// Nonzero: accept CUDA publishers that share legacy IPC handles
    /// (`CUFRAMES_CUDA_MEMORY_LEGACY_IPC` or `CUFRAMES_CUDA_SYNC_IPC_EVENT`).
    /// Such handles cannot be validated: this trusts every publisher the
    /// subscriber connects to not to send forged ones. Default 0.
    pub allow_legacy_ipc: u32,
    /// A blocking `next` with a timeout busy-waits this long, µs, for the
    /// next commit before sleeping on the futex (`docs/protocol.md` §5.5;
    /// default 50; 0: sleep at once). At most 1 000 000.
    pub wait_spin_us: u32,
    /// Nonzero (default 1): learn the stream's pace and spin across the
    /// expected moment of the next commit (§5.5); costs at most
    /// 2 × `wait_spin_us` + 270 µs of CPU per frame (and per `next` call).
    /// 0 with `wait_spin_us` 0: the plain futex wait.
    pub wait_anticipate: u32,
}

/// Bytes of the first published version of `cuframes_subscriber_options_t`
/// (through `allow_legacy_ipc`): the least `struct_size` accepted, and all
/// that `cuframes_subscriber_options_init` writes.
pub(crate) const SUBSCRIBER_OPTIONS_V1: usize =
    std::mem::offset_of!(cuframes_subscriber_options_t, allow_legacy_ipc)
        + std::mem::size_of::<u32>();

/// Largest `wait_spin_us` accepted (1 s): a longer busy-wait is a mistake.
pub const CUFRAMES_MAX_WAIT_SPIN_US: u32 = 1_000_000;

/// The stream a subscriber receives (`cuframes_subscriber_get_stream`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_stream_info_t {
    /// `sizeof(cuframes_stream_info_t)`, set by the caller.
    pub struct_size: usize,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// A `cuframes_pixel_format` (other values: a format this library does
    /// not know).
    pub pixel_format: u32,
    /// A `cuframes_codec` of the source.
    pub codec: u32,
    /// Nominal frame rate numerator (0 if unknown).
    pub fps_num: u32,
    /// Nominal frame rate denominator (0 if unknown).
    pub fps_den: u32,
    /// A `cuframes_memory`: where frames live.
    pub memory: i32,
    /// Planes of `pixel_format`.
    pub plane_count: u32,
    /// Stream description generation (bumped on every stream change).
    pub generation: u64,
    /// Bytes per frame in its slot (end of the last plane).
    pub frame_size: u64,
    /// Byte offset of each plane inside the slot.
    pub plane_offset: [u64; CUFRAMES_MAX_PLANES],
    /// Pitch (bytes between rows) of each plane.
    pub plane_pitch: [u64; CUFRAMES_MAX_PLANES],
}

/// One plane of a leased frame. Exactly one of `data` (host memory) and
/// `device_ptr` (CUDA) is set. Valid until the frame is released.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_plane_t {
    /// Host address of the plane's first row (read-only mapping: writing
    /// faults), or NULL for a frame in CUDA memory.
    pub data: *const c_void,
    /// `CUdeviceptr` of the plane's first row in this process, or 0 for a
    /// frame in host memory.
    pub device_ptr: u64,
    /// Bytes between the starts of two rows.
    pub pitch: usize,
    /// Bytes of pixels in a row (no padding).
    pub row_bytes: usize,
    /// Rows.
    pub rows: usize,
}

/// Everything about a leased frame (`cuframes_frame_get_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_frame_info_t {
    /// `sizeof(cuframes_frame_info_t)`, set by the caller.
    pub struct_size: usize,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// A `cuframes_pixel_format`.
    pub pixel_format: u32,
    /// A `cuframes_memory`.
    pub memory: i32,
    /// Sequence number (from 1, increasing).
    pub seq: u64,
    /// Presentation time, ns (`CUFRAMES_TS_NONE` if unknown).
    pub pts_ns: i64,
    /// `CLOCK_MONOTONIC` time of the publisher's commit, ns.
    pub publish_ns: u64,
    /// `CUFRAMES_FRAME_FLAG_*` bits.
    pub flags: u64,
    /// Index of the frame in the source's output order (restarts on loop).
    pub source_index: u64,
    /// Frames skipped or lost between the previous frame and this one.
    pub skipped: u64,
    /// Stream description generation of the frame.
    pub generation: u64,
    /// Nonzero: the first frame of a new stream description (size or
    /// format changed); the fields above describe the new one.
    pub stream_changed: u32,
    /// Planes in `planes`.
    pub plane_count: u32,
    /// The planes (entries past `plane_count` are zero).
    pub planes: [cuframes_plane_t; CUFRAMES_MAX_PLANES],
}

/// Subscriber counters (`cuframes_subscriber_get_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_subscriber_stats_t {
    /// `sizeof(cuframes_subscriber_stats_t)`, set by the caller.
    pub struct_size: usize,
    /// Frames handed out.
    pub received: u64,
    /// Frames skipped (NewestOnly) or lost (InOrder gaps).
    pub dropped: u64,
    /// Frames whose lease the publisher revoked before release.
    pub revoked: u64,
    /// Successful automatic reconnections.
    pub reconnects: u64,
    /// Stream description changes delivered.
    pub stream_changes: u64,
    /// Packets handed out.
    pub packets_received: u64,
    /// Packets lost to overruns.
    pub packets_lost: u64,
    /// Delivered packets marked as a discontinuity.
    pub packet_discontinuities: u64,
}

/// Publisher settings for `cuframes_publisher_create`. Fill with
/// `cuframes_publisher_options_init`, then set `key`, `width`, `height`
/// and what differs.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_publisher_options_t {
    /// `sizeof(cuframes_publisher_options_t)` (set by the init function).
    pub struct_size: usize,
    /// Stream key, `[A-Za-z0-9_-]{1,63}` (required; copied).
    pub key: *const c_char,
    /// Runtime directory (NULL: as for subscribers).
    pub runtime_dir: *const c_char,
    /// Frame width, pixels (1..=16384; required).
    pub width: u32,
    /// Frame height, pixels (1..=16384; required).
    pub height: u32,
    /// A `cuframes_pixel_format` (default `CUFRAMES_FORMAT_NV12`).
    pub pixel_format: u32,
    /// A `cuframes_codec`: the source's codec, for subscribers' information
    /// (default `CUFRAMES_CODEC_UNKNOWN`).
    pub codec: u32,
    /// Nominal frame rate numerator (0: unknown; default 0).
    pub fps_num: u32,
    /// Nominal frame rate denominator (0: unknown; default 0).
    pub fps_den: u32,
    /// Frame slots, 2..=64 (default 8).
    pub slots: u32,
    /// A `cuframes_policy` (default `CUFRAMES_POLICY_DROP_FRAME`).
    pub policy: i32,
    /// `CUFRAMES_POLICY_WAIT`: longest wait for a slot, ms (default 2000).
    pub wait_timeout_ms: u32,
    /// Revoke a lease held longer than this, ms (default 5000).
    pub lease_timeout_ms: u32,
    /// Most simultaneous subscribers (default 64).
    pub max_subscribers: u32,
    /// Socket file mode (default 0660).
    pub socket_mode: u32,
    /// A `cuframes_backend` (default `CUFRAMES_BACKEND_HOST`; AUTO picks
    /// CUDA when a driver and a GPU are present).
    pub backend: i32,
    /// CUDA: a `cuframes_cuda_memory` (default VMM fd).
    pub cuda_memory: i32,
    /// CUDA: a `cuframes_cuda_sync` (default host fence).
    pub cuda_sync: i32,
    /// CUDA: device ordinal (default 0).
    pub cuda_device: u32,
    /// Nonzero: also create an encoded packet ring (default 0).
    pub packets: u32,
    /// Packet ring: FFmpeg `AVCodecID` of the packets
    /// (`CUFRAMES_AV_CODEC_ID_H264`, `CUFRAMES_AV_CODEC_ID_HEVC`).
    pub packet_codec_id: u32,
    /// Packet ring: slots, 1..=1024 (default 64).
    pub packet_slots: u32,
    /// Packet ring: bytes of the data area, a multiple of 8 (default 8 MiB).
    pub packet_data_size: u32,
    /// Packet ring: largest packet accepted, bytes (default 2 MiB).
    pub max_packet_size: u32,
}

/// Bytes of the first published version of `cuframes_publisher_options_t`
/// (through `max_packet_size`): the least `struct_size` accepted, and all
/// that `cuframes_publisher_options_init` writes.
pub(crate) const PUBLISHER_OPTIONS_V1: usize =
    std::mem::offset_of!(cuframes_publisher_options_t, max_packet_size)
        + std::mem::size_of::<u32>();

/// One plane of an acquired slot, to write a frame into. Exactly one of
/// `data` (host memory) and `device_ptr` (CUDA) is set. Valid until
/// commit or abandon.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_slot_plane_t {
    /// Host address of the plane's first row (writable), or NULL for a
    /// CUDA slot.
    pub data: *mut c_void,
    /// `CUdeviceptr` of the plane's first row, or 0 for a host slot.
    pub device_ptr: u64,
    /// Bytes between the starts of two rows.
    pub pitch: usize,
    /// Bytes of pixels in a row.
    pub row_bytes: usize,
    /// Rows.
    pub rows: usize,
}

/// A slot claimed by `cuframes_publisher_acquire`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_slot_t {
    /// `sizeof(cuframes_slot_t)`, set by the caller.
    pub struct_size: usize,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// A `cuframes_pixel_format`.
    pub pixel_format: u32,
    /// A `cuframes_memory`.
    pub memory: i32,
    /// Planes in `planes`.
    pub plane_count: u32,
    /// The planes (entries past `plane_count` are zero).
    pub planes: [cuframes_slot_plane_t; CUFRAMES_MAX_PLANES],
}

/// Metadata of a committed frame (`cuframes_publisher_commit`). Fill with
/// `cuframes_frame_meta_init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct cuframes_frame_meta_t {
    /// `sizeof(cuframes_frame_meta_t)` (set by the init function).
    pub struct_size: usize,
    /// Presentation time, ns (default `CUFRAMES_TS_NONE`: unknown).
    pub pts_ns: i64,
    /// `CUFRAMES_FRAME_FLAG_*` bits (default 0).
    pub flags: u64,
    /// Index of the frame in the source's output order; negative (default
    /// -1): frames this publisher committed before it.
    pub source_index: i64,
}

/// Bytes of the first published version of `cuframes_frame_meta_t`
/// (through `source_index`): the least `struct_size` accepted, and all that
/// `cuframes_frame_meta_init` writes.
pub(crate) const FRAME_META_V1: usize =
    std::mem::offset_of!(cuframes_frame_meta_t, source_index) + std::mem::size_of::<i64>();
