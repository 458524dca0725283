//! The flags of `cuframes-subscribe` (its `--help` is these doc comments).

use clap::{Parser, ValueEnum};
use cuframes::cuda::{CrossGpu, DeviceSelect, SubscriberConfig};
use cuframes::{DeliveryMode, PublisherUids, Reconnect, SubscribeOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Mode {
    /// Every frame in sequence; frames lost to a slow reader are reported as drops.
    InOrder,
    /// Always the newest frame; older ones are skipped and counted.
    NewestOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// Whatever the publisher shares: host memory, or VRAM through CUDA
    /// (Vulkan memory through Vulkan when CUDA cannot import it).
    Auto,
    /// Host memory (memfd) only.
    Host,
    /// CUDA memory only (VMM fds or legacy IPC handles, on the publisher's
    /// GPU; Vulkan publishers' opaque fds through cuImportExternalMemory).
    Cuda,
    /// Vulkan memory (experimental): Vulkan publishers' opaque fds, or CUDA
    /// VMM publishers' fds, imported on the device of the publisher's UUID.
    Vulkan,
}

/// The facade's backend, which makes the choice (`auto`: from the
/// publisher's offer, `cuframes::Backend::resolve`).
impl From<BackendArg> for cuframes::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => cuframes::Backend::Auto,
            BackendArg::Host => cuframes::Backend::Host,
            BackendArg::Cuda => cuframes::Backend::Cuda,
            BackendArg::Vulkan => cuframes::Backend::Vulkan,
        }
    }
}

/// How a CUDA subscriber on another GPU takes the frames (--cross-gpu).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CrossGpuArg {
    /// Peer-map when the GPUs can access each other, else copy.
    Auto,
    /// Map the publisher's slots for --gpu over NVLink / PCIe peer access
    /// (refused without it) and read them in place.
    Peer,
    /// Copy each frame into a buffer on --gpu first (cuMemcpyDtoDAsync over
    /// the peer link, or cuMemcpyPeerAsync staged through host memory).
    Copy,
}

/// One --publisher-uid value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PublisherUidArg {
    Any,
    Uid(u32),
}

fn parse_publisher_uid(s: &str) -> Result<PublisherUidArg, String> {
    match s {
        "any" => Ok(PublisherUidArg::Any),
        _ => s
            .parse()
            .map(PublisherUidArg::Uid)
            .map_err(|_| format!("{s:?} is neither a uid nor \"any\"")),
    }
}

fn parse_secs_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        // A year at most: Duration::from_secs_f64 must not overflow.
        Ok(v) if v.is_finite() && v > 0.0 && v <= 31_536_000.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds > 0 (at most a year)"
        )),
    }
}

fn parse_secs_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=31_536_000.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds ≥ 0 (at most a year)"
        )),
    }
}

/// Receive frames of a cuframes stream (host memory, CUDA VRAM or Vulkan memory).
///
/// Exit status: 0 on a clean end (GOODBYE end of stream, or GOODBYE
/// shutdown under --no-reconnect; --max-frames / --max-packets; SIGINT /
/// SIGTERM); 3 when the publisher died without GOODBYE and is not waited
/// for (--no-reconnect), or reconnecting gave up; 1 on other errors; 2 on
/// bad arguments.
#[derive(Debug, Parser)]
#[command(
    name = "cuframes-subscribe",
    version,
    long_about = None,
    args_override_self = true,
    after_help = "Exit status: 0 on a clean end (the publisher's GOODBYE end of stream, or its \
GOODBYE shutdown under --no-reconnect; --max-frames / --max-packets; SIGINT / SIGTERM; the \
--rawvideo reader closing its pipe); 3 when \
the publisher died without GOODBYE and is not waited for (--no-reconnect), or reconnecting gave \
up (--reconnect-give-up-secs); 1 on other errors; 2 on bad arguments."
)]
pub struct Args {
    /// Stream key to connect to ([A-Za-z0-9_-]{1,63}).
    #[arg(long)]
    pub(crate) key: String,
    /// Which memory to accept; `auto` follows the publisher.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) backend: BackendArg,
    /// Delivery mode.
    #[arg(long, value_enum, default_value = "in-order")]
    pub(crate) mode: Mode,
    /// Write the MD5 of each received frame (packed NV12/P010 rows, as
    /// `ffmpeg -f framemd5 -pix_fmt nv12`) to this file; `-` for stdout.
    /// CUDA and Vulkan frames are copied to host memory for it.
    #[arg(long, value_name = "FILE")]
    pub(crate) framemd5: Option<PathBuf>,
    /// Write the frames as packed raw video to this file; `-` for stdout
    /// (a pipe into stock FFmpeg). The matching FFmpeg input options are
    /// printed on stderr at the first frame, e.g. `-f rawvideo -pix_fmt
    /// nv12 -video_size 1280x720 -framerate 30/1`. A stream change ends the
    /// run (raw video has one geometry); a reader that closes the pipe ends
    /// it cleanly.
    #[arg(long, value_name = "FILE")]
    pub(crate) rawvideo: Option<PathBuf>,
    /// Pixel format of --rawvideo: as published (nv12 / p010le) or yuv420p
    /// (NV12 de-interleaved losslessly; P010 converted by libswscale).
    #[arg(long, value_enum, default_value = "published", requires = "rawvideo")]
    pub(crate) rawvideo_format: RawFormatArg,
    /// Stop after this many frames.
    #[arg(long)]
    pub(crate) max_frames: Option<u64>,
    /// Write the stream's encoded packets to this file without re-encoding
    /// (-c copy); the extension picks the container: .mp4 or .mkv. Needs a
    /// publisher started with --packets. The recording starts on a keyframe.
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
    /// Receive only packets (no frames): with --record, a recorder that
    /// never touches decoded frames.
    #[arg(long)]
    pub(crate) packets_only: bool,
    /// Stop after this many packets.
    #[arg(long)]
    pub(crate) max_packets: Option<u64>,
    /// Sleep this long per frame while holding it, before reading (hashing)
    /// it (per packet with --packets-only; simulates a slow consumer).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub(crate) sleep_ms: u64,
    /// With --no-reconnect, give up when no frame arrives for this long;
    /// otherwise say so on stderr and keep waiting for the publisher.
    #[arg(long, default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub(crate) timeout_ms: u64,
    /// Keep retrying the connection this long while no publisher is up.
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    pub(crate) wait_publisher_ms: u64,
    /// Seconds between periodic stats lines on stderr (0: only the summary).
    #[arg(long, default_value_t = 0.0, value_name = "SECS", value_parser = parse_secs_interval)]
    pub(crate) stats_interval: f64,
    /// CUDA: print how much VRAM importing the ring took beyond this
    /// process's CUDA context (free device memory before and after connecting).
    #[arg(long)]
    pub(crate) report_vram: bool,
    /// Name shown in the publisher's log.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Do not reconnect when the publisher goes away: a crash (no GOODBYE)
    /// exits with status 3, a publisher stopped by a signal (GOODBYE
    /// shutdown) with 0. By default the tool reconnects
    /// with backoff (50 ms doubling to 500 ms) and only a clean end of
    /// stream ends it.
    #[arg(long)]
    pub(crate) no_reconnect: bool,
    /// Give up reconnecting after this many seconds (default: never); then
    /// exit with status 3.
    #[arg(long, value_name = "SECS", value_parser = parse_secs_positive)]
    pub(crate) reconnect_give_up_secs: Option<f64>,
    /// Accept a publisher running as this uid (SO_PEERCRED of the socket;
    /// repeatable), or `any` to accept every publisher. Default: only this
    /// user's own uid or root, so another user cannot impersonate the stream.
    #[arg(long = "publisher-uid", value_name = "UID|any", value_parser = parse_publisher_uid)]
    pub(crate) publisher_uids: Vec<PublisherUidArg>,
    /// CUDA: accept publishers that share legacy CUDA IPC handles (--memory
    /// legacy-ipc or --sync ipc-event). Such handles cannot be validated:
    /// this trusts the publisher not to send forged ones (a forged handle
    /// may map another process's GPU memory). VMM fds need no such trust.
    #[arg(long)]
    pub(crate) allow_legacy_ipc: bool,
    /// CUDA: work on this GPU (an ordinal, or a UUID as `nvidia-smi -L`
    /// prints it) instead of the publisher's; frames of a publisher on
    /// another GPU are then taken as --cross-gpu says (docs/gpu.md,
    /// "Multi-GPU hosts").
    #[arg(long, value_name = "N|UUID")]
    pub(crate) gpu: Option<DeviceSelect>,
    /// CUDA, with --gpu naming another GPU than the publisher's: `peer` maps
    /// the slots for --gpu (reads cross NVLink / PCIe; refused without peer
    /// access), `copy` copies each frame to a buffer on --gpu before reading
    /// it, `auto` peer-maps when possible and copies otherwise.
    #[arg(long, value_enum, default_value = "auto", requires = "gpu")]
    pub(crate) cross_gpu: CrossGpuArg,
    /// Runtime directory holding the sockets (default: $CUFRAMES_RUNTIME_DIR,
    /// /run/cuframes, $XDG_RUNTIME_DIR/cuframes, /tmp/cuframes-UID).
    #[arg(long)]
    pub(crate) runtime_dir: Option<PathBuf>,
}

impl Args {
    /// The subscriber's options these flags ask for: delivery mode, name,
    /// runtime directory, accepted publisher uids, frames and / or packets,
    /// and reconnection unless `--no-reconnect`.
    pub fn subscribe_options(&self) -> SubscribeOptions {
        let mut opts = SubscribeOptions::new(match self.mode {
            Mode::InOrder => DeliveryMode::InOrder,
            Mode::NewestOnly => DeliveryMode::NewestOnly,
        });
        if let Some(n) = &self.name {
            opts.name = n.clone();
        }
        opts.runtime_dir = self.runtime_dir.clone();
        opts.publisher_uids = if self.publisher_uids.contains(&PublisherUidArg::Any) {
            PublisherUids::Any
        } else if self.publisher_uids.is_empty() {
            PublisherUids::SameUser
        } else {
            PublisherUids::Only(
                self.publisher_uids
                    .iter()
                    .filter_map(|u| match u {
                        PublisherUidArg::Uid(n) => Some(*n),
                        PublisherUidArg::Any => None,
                    })
                    .collect(),
            )
        };
        opts.frames = !self.packets_only;
        opts.packets = self.packets_only || self.record.is_some();
        if !self.no_reconnect {
            opts.reconnect = Some(Reconnect {
                give_up_after: self.reconnect_give_up_secs.map(Duration::from_secs_f64),
                ..Reconnect::default()
            });
        }
        opts
    }

    /// The CUDA subscriber's device and cross-GPU mode (`--gpu`, `--cross-gpu`).
    pub fn cuda_config(&self) -> SubscriberConfig {
        SubscriberConfig {
            device: self.gpu,
            cross_gpu: match self.cross_gpu {
                CrossGpuArg::Auto => CrossGpu::Auto,
                CrossGpuArg::Peer => CrossGpu::PeerMap,
                CrossGpuArg::Copy => CrossGpu::Copy,
            },
        }
    }
}

/// `--rawvideo-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RawFormatArg {
    /// NV12 or P010 (p010le), as the publisher shares them.
    Published,
    /// Planar 8-bit 4:2:0.
    Yuv420p,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flags: &[&str]) -> Args {
        Args::try_parse_from(["cuframes-subscribe", "--key", "k"].iter().chain(flags))
            .expect("valid flags")
    }

    #[test]
    fn flags_become_subscribe_options() {
        let o = args(&[]).subscribe_options();
        assert_eq!(o.mode, DeliveryMode::InOrder);
        assert_eq!(o.publisher_uids, PublisherUids::SameUser);
        assert!(o.frames && !o.packets && o.reconnect.is_some());

        let o = args(&[
            "--mode",
            "newest-only",
            "--packets-only",
            "--no-reconnect",
            "--publisher-uid",
            "7",
            "--publisher-uid",
            "any",
        ])
        .subscribe_options();
        assert_eq!(o.mode, DeliveryMode::NewestOnly);
        assert_eq!(o.publisher_uids, PublisherUids::Any);
        assert!(!o.frames && o.packets && o.reconnect.is_none());

        let o = args(&["--record", "x.mkv", "--publisher-uid", "7"]).subscribe_options();
        assert_eq!(o.publisher_uids, PublisherUids::Only(vec![7]));
        assert!(o.frames && o.packets);
    }
}
