//! cuframes-subscribe: connect to a stream key, receive frames, report fps,
//! drops and publish-to-receive latency, optionally write each frame's MD5 in
//! FFmpeg's framemd5 format; with `--record`, write the encoded packets of a
//! publisher started with `--packets` to an MP4 or Matroska file without
//! re-encoding; with `--rawvideo`, write the frames as packed raw video for
//! stock FFmpeg (`-f rawvideo`, the options printed on stderr).
//!
//! Exit status: 0 on a clean end (the publisher's GOODBYE EndOfStream, or
//! its GOODBYE shutdown under --no-reconnect; --max-frames / --max-packets
//! reached; SIGINT / SIGTERM; the --rawvideo reader closing its pipe); 3 when the publisher died (its connection
//! closed without GOODBYE) and no reconnection followed (--no-reconnect), or
//! reconnecting gave up (--reconnect-give-up-secs); 1 on any other error; 2
//! on bad arguments.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use cuframes_core::packet::{AV_CODEC_ID_H264, AV_CODEC_ID_HEVC};
use cuframes_core::runtime::{
    Backend, ConnectError, EndReason, Frame, HostBackend, Packet, PacketRecvError, PublisherUids,
    Reconnect, RecvError, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, MemoryKind};
use cuframes_cuda::{
    CrossGpu, CudaBackend, CudaDevice, CudaFrameCopy, CudaFrameExt, CudaStream, DeviceSelect,
    FrameAccess, SubscriberConfig,
};
use cuframes_media::rawvideo::Geometry;
use cuframes_media::{RawFormat, RawVideoError, RawVideoWriter, RecordStream, Recorder};
use cuframes_vulkan::{VulkanBackend, VulkanFrameExt};
use md5::{Digest, Md5};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Every frame in sequence; frames lost to a slow reader are reported as drops.
    InOrder,
    /// Always the newest frame; older ones are skipped and counted.
    NewestOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Whatever the publisher shares: host memory, or VRAM through CUDA.
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

/// How a CUDA subscriber on another GPU takes the frames (--cross-gpu).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CrossGpuArg {
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
enum PublisherUidArg {
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
    version,
    long_about = None,
    args_override_self = true,
    after_help = "Exit status: 0 on a clean end (the publisher's GOODBYE end of stream, or its \
GOODBYE shutdown under --no-reconnect; --max-frames / --max-packets; SIGINT / SIGTERM; the \
--rawvideo reader closing its pipe); 3 when \
the publisher died without GOODBYE and is not waited for (--no-reconnect), or reconnecting gave \
up (--reconnect-give-up-secs); 1 on other errors; 2 on bad arguments."
)]
struct Args {
    /// Stream key to connect to ([A-Za-z0-9_-]{1,63}).
    #[arg(long)]
    key: String,
    /// Which memory to accept; `auto` follows the publisher.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Delivery mode.
    #[arg(long, value_enum, default_value = "in-order")]
    mode: Mode,
    /// Write the MD5 of each received frame (packed NV12/P010 rows, as
    /// `ffmpeg -f framemd5 -pix_fmt nv12`) to this file; `-` for stdout.
    /// CUDA and Vulkan frames are copied to host memory for it.
    #[arg(long, value_name = "FILE")]
    framemd5: Option<PathBuf>,
    /// Write the frames as packed raw video to this file; `-` for stdout
    /// (a pipe into stock FFmpeg). The matching FFmpeg input options are
    /// printed on stderr at the first frame, e.g. `-f rawvideo -pix_fmt
    /// nv12 -video_size 1280x720 -framerate 30/1`. A stream change ends the
    /// run (raw video has one geometry); a reader that closes the pipe ends
    /// it cleanly.
    #[arg(long, value_name = "FILE")]
    rawvideo: Option<PathBuf>,
    /// Pixel format of --rawvideo: as published (nv12 / p010le) or yuv420p
    /// (NV12 de-interleaved losslessly; P010 converted by libswscale).
    #[arg(long, value_enum, default_value = "published", requires = "rawvideo")]
    rawvideo_format: RawFormatArg,
    /// Stop after this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Write the stream's encoded packets to this file without re-encoding
    /// (-c copy); the extension picks the container: .mp4 or .mkv. Needs a
    /// publisher started with --packets. The recording starts on a keyframe.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Receive only packets (no frames): with --record, a recorder that
    /// never touches decoded frames.
    #[arg(long)]
    packets_only: bool,
    /// Stop after this many packets.
    #[arg(long)]
    max_packets: Option<u64>,
    /// Sleep this long per frame while holding it, before reading (hashing)
    /// it (per packet with --packets-only; simulates a slow consumer).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    sleep_ms: u64,
    /// With --no-reconnect, give up when no frame arrives for this long;
    /// otherwise say so on stderr and keep waiting for the publisher.
    #[arg(long, default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    timeout_ms: u64,
    /// Keep retrying the connection this long while no publisher is up.
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=86_400_000))]
    wait_publisher_ms: u64,
    /// Seconds between periodic stats lines on stderr (0: only the summary).
    #[arg(long, default_value_t = 0.0, value_name = "SECS", value_parser = parse_secs_interval)]
    stats_interval: f64,
    /// CUDA: print how much VRAM importing the ring took beyond this
    /// process's CUDA context (free device memory before and after connecting).
    #[arg(long)]
    report_vram: bool,
    /// Name shown in the publisher's log.
    #[arg(long)]
    name: Option<String>,
    /// Do not reconnect when the publisher goes away: a crash (no GOODBYE)
    /// exits with status 3, a publisher stopped by a signal (GOODBYE
    /// shutdown) with 0. By default the tool reconnects
    /// with backoff (50 ms doubling to 500 ms) and only a clean end of
    /// stream ends it.
    #[arg(long)]
    no_reconnect: bool,
    /// Give up reconnecting after this many seconds (default: never); then
    /// exit with status 3.
    #[arg(long, value_name = "SECS", value_parser = parse_secs_positive)]
    reconnect_give_up_secs: Option<f64>,
    /// Accept a publisher running as this uid (SO_PEERCRED of the socket;
    /// repeatable), or `any` to accept every publisher. Default: only this
    /// user's own uid or root, so another user cannot impersonate the stream.
    #[arg(long = "publisher-uid", value_name = "UID|any", value_parser = parse_publisher_uid)]
    publisher_uids: Vec<PublisherUidArg>,
    /// CUDA: accept publishers that share legacy CUDA IPC handles (--memory
    /// legacy-ipc or --sync ipc-event). Such handles cannot be validated:
    /// this trusts the publisher not to send forged ones (a forged handle
    /// may map another process's GPU memory). VMM fds need no such trust.
    #[arg(long)]
    allow_legacy_ipc: bool,
    /// CUDA: work on this GPU (an ordinal, or a UUID as `nvidia-smi -L`
    /// prints it) instead of the publisher's; frames of a publisher on
    /// another GPU are then taken as --cross-gpu says (docs/gpu.md,
    /// "Multi-GPU hosts").
    #[arg(long, value_name = "N|UUID")]
    gpu: Option<DeviceSelect>,
    /// CUDA, with --gpu naming another GPU than the publisher's: `peer` maps
    /// the slots for --gpu (reads cross NVLink / PCIe; refused without peer
    /// access), `copy` copies each frame to a buffer on --gpu before reading
    /// it, `auto` peer-maps when possible and copies otherwise.
    #[arg(long, value_enum, default_value = "auto", requires = "gpu")]
    cross_gpu: CrossGpuArg,
    /// Runtime directory holding the sockets (default: $CUFRAMES_RUNTIME_DIR,
    /// /run/cuframes, $XDG_RUNTIME_DIR/cuframes, /tmp/cuframes-UID).
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
}

/// `--rawvideo-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RawFormatArg {
    /// NV12 or P010 (p010le), as the publisher shares them.
    Published,
    /// Planar 8-bit 4:2:0.
    Yuv420p,
}

/// The publisher went away before the end of its stream and is not waited
/// for: exit status 3.
#[derive(Debug)]
struct PublisherGone(String);

impl std::fmt::Display for PublisherGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PublisherGone {}

/// What ended the stream, for the summary line and the exit status.
fn ending<B: Backend>(sub: &Subscriber<B>, args: &Args) -> Result<&'static str> {
    let gave_up = if args.no_reconnect {
        ""
    } else {
        "; gave up reconnecting"
    };
    let why = match sub.end_reason() {
        Some(EndReason::EndOfStream) => return Ok("publisher ended the stream"),
        // A publisher stopped by a signal said GOODBYE: a clean end for a
        // subscriber that was told not to wait for the next one.
        Some(EndReason::Shutdown) if args.no_reconnect => {
            return Ok("the publisher shut down (GOODBYE shutdown)")
        }
        Some(EndReason::Shutdown) => "the publisher shut down before the end of its stream",
        Some(EndReason::Vanished) | None => {
            "the publisher vanished (its connection closed without GOODBYE: crashed or killed)"
        }
        Some(EndReason::Refused) => "the publisher sent ERROR and closed the connection",
        Some(EndReason::ProtocolError) => "the publisher broke the protocol",
    };
    Err(PublisherGone(format!("{why}{gave_up}")).into())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!(
            "cuframes-subscribe: error: {}",
            cuframes_tools::error_chain(e.as_ref())
        );
        let code = if e.downcast_ref::<PublisherGone>().is_some() {
            3
        } else {
            1
        };
        std::process::exit(code);
    }
}

fn connect<B: Backend>(args: &Args, backend: impl Fn() -> Result<B>) -> Result<Subscriber<B>> {
    let mut opts = SubscribeOptions::new(match args.mode {
        Mode::InOrder => DeliveryMode::InOrder,
        Mode::NewestOnly => DeliveryMode::NewestOnly,
    });
    if let Some(n) = &args.name {
        opts.name = n.clone();
    }
    opts.runtime_dir = args.runtime_dir.clone();
    opts.publisher_uids = if args.publisher_uids.contains(&PublisherUidArg::Any) {
        PublisherUids::Any
    } else if args.publisher_uids.is_empty() {
        PublisherUids::SameUser
    } else {
        PublisherUids::Only(
            args.publisher_uids
                .iter()
                .filter_map(|u| match u {
                    PublisherUidArg::Uid(n) => Some(*n),
                    PublisherUidArg::Any => None,
                })
                .collect(),
        )
    };
    opts.frames = !args.packets_only;
    opts.packets = args.packets_only || args.record.is_some();
    if !args.no_reconnect {
        opts.reconnect = Some(Reconnect {
            give_up_after: args.reconnect_give_up_secs.map(Duration::from_secs_f64),
            ..Reconnect::default()
        });
    }
    let deadline = Instant::now() + Duration::from_millis(args.wait_publisher_ms);
    loop {
        match Subscriber::connect(&args.key, backend()?, opts.clone()) {
            Err(ConnectError::NoPublisher { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.with_context(|| format!("cannot subscribe to {:?}", args.key)),
        }
    }
}

struct Md5Writer {
    out: Box<dyn Write>,
}

impl Md5Writer {
    fn create<B: Backend>(path: &PathBuf, sub: &Subscriber<B>) -> Result<Self> {
        let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ))
        };
        let s = sub.stream();
        let (num, den) = if s.fps_num > 0 && s.fps_den > 0 {
            (s.fps_num, s.fps_den)
        } else {
            (25, 1)
        };
        write!(
            out,
            "#format: frame checksums\n#version: 2\n#hash: MD5\n#tb 0: {den}/{num}\n#media_type 0: video\n\
             #codec_id 0: rawvideo\n#dimensions 0: {}x{}\n#sar 0: 1/1\n#stream#, dts,        pts, duration,     size, hash\n",
            s.width, s.height
        )?;
        Ok(Md5Writer { out })
    }

    fn frame(&mut self, index: u64, size: usize, hash: &str) -> Result<()> {
        writeln!(
            self.out,
            "0, {index:>10}, {index:>10}, {:>8}, {size:>8}, {hash}",
            1
        )?;
        Ok(())
    }
}

fn hex(h: Md5) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A host frame's rows without pitch padding (FFmpeg's packed layout).
fn host_packed(f: &Frame<'_>, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    f.for_each_row(|row| out.extend_from_slice(row));
    Ok(())
}

/// --rawvideo: the writer, opened at the first frame (its geometry).
struct RawOutput {
    path: PathBuf,
    format: RawFormat,
    writer: Option<RawVideoWriter<Box<dyn Write>>>,
}

impl RawOutput {
    fn new(path: &Path, format: RawFormatArg) -> Self {
        RawOutput {
            path: path.to_path_buf(),
            format: match format {
                RawFormatArg::Published => RawFormat::Published,
                RawFormatArg::Yuv420p => RawFormat::Yuv420p,
            },
            writer: None,
        }
    }

    /// Writes one packed frame; `false` once the reader closed the pipe.
    fn write(
        &mut self,
        name: &str,
        g: Geometry,
        packed: &[u8],
        stream: cuframes_core::layout::StreamDesc,
    ) -> Result<bool> {
        if self.writer.is_none() {
            let out: Box<dyn Write> = if self.path.as_os_str() == "-" {
                Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
            } else {
                Box::new(std::io::BufWriter::new(
                    std::fs::File::create(&self.path)
                        .with_context(|| format!("creating {}", self.path.display()))?,
                ))
            };
            let w = RawVideoWriter::new(out, g, self.format)?;
            let fps = (stream.fps_num > 0 && stream.fps_den > 0)
                .then_some((stream.fps_num, stream.fps_den));
            eprintln!(
                "{name}: raw video to {}: read it with ffmpeg {} -i {}",
                self.path.display(),
                w.ffmpeg_input_args(fps),
                if self.path.as_os_str() == "-" {
                    "pipe:".to_string()
                } else {
                    self.path.display().to_string()
                }
            );
            self.writer = Some(w);
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(false);
        };
        match w.write_frame(g, packed) {
            Ok(()) => Ok(true),
            Err(RawVideoError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn finish(self, name: &str) -> Result<()> {
        if let Some(w) = self.writer {
            let n = w.frames();
            match w.finish() {
                Ok(_) => {}
                Err(RawVideoError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e.into()),
            }
            eprintln!("{name}: wrote {n} raw video frames");
        }
        Ok(())
    }
}

/// The packet side: an optional recording and counters.
struct PacketSink {
    record: Option<PathBuf>,
    recorder: Option<Recorder>,
    received: u64,
}

impl PacketSink {
    fn create<B: Backend>(args: &Args, sub: &Subscriber<B>) -> Result<Option<Self>> {
        if !sub.has_packets() {
            return Ok(None);
        }
        Ok(Some(PacketSink {
            record: args.record.clone(),
            recorder: None,
            received: 0,
        }))
    }

    /// Opens the recording at the first packet: by then the publisher has
    /// stored the codec extradata (§9.3), even one that sets it late.
    fn open_recorder<B: Backend>(path: &Path, sub: &Subscriber<B>) -> Result<Recorder> {
        let cp = sub
            .codec_params()
            .context("reading the packet ring's codec")?;
        let codec = match cp.codec_id {
            AV_CODEC_ID_H264 => Codec::H264,
            AV_CODEC_ID_HEVC => Codec::Hevc,
            other => bail!("cannot record codec id {other} (only H.264 and HEVC)"),
        };
        if cp.extradata.is_empty() {
            bail!("the publisher's packet ring has no codec extradata to record with");
        }
        let s = sub.stream();
        let stream = RecordStream {
            codec,
            width: s.width as u32,
            height: s.height as u32,
            extradata: cp.extradata,
            frame_duration_ns: (s.fps_num > 0 && s.fps_den > 0)
                .then(|| (s.fps_den as i64).saturating_mul(1_000_000_000) / s.fps_num as i64),
        };
        Ok(Recorder::create(path, &stream)?)
    }

    fn take<B: Backend>(&mut self, p: &Packet, sub: &Subscriber<B>) -> Result<()> {
        self.received += 1;
        if let (None, Some(path)) = (&self.recorder, &self.record) {
            self.recorder = Some(Self::open_recorder(path, sub)?);
        }
        if let Some(r) = self.recorder.as_mut() {
            r.write(&p.data, p.meta.pts_ns, p.meta.dts_ns, p.meta.is_key())?;
        }
        Ok(())
    }

    /// Reads every packet available now; `false` once the publisher is gone.
    fn drain<B: Backend>(&mut self, sub: &Subscriber<B>, args: &Args) -> Result<bool> {
        loop {
            if self.done(args) {
                return Ok(true);
            }
            match sub.next_packet(Duration::ZERO) {
                Ok(p) => self.take(&p, sub)?,
                Err(PacketRecvError::Timeout(_)) => return Ok(true),
                Err(PacketRecvError::Disconnected) => return Ok(false),
                Err(e) => return Err(e).context("receiving a packet"),
            }
        }
    }

    fn done(&self, args: &Args) -> bool {
        args.max_packets.is_some_and(|m| self.received >= m)
    }

    fn finish<B: Backend>(self, name: &str, sub: &Subscriber<B>) -> Result<()> {
        if let Some(r) = self.recorder {
            let written = r.written();
            r.finish()?;
            eprintln!("{name}: recorded {written} packets");
        }
        let st = sub.packet_stats();
        eprintln!(
            "{name}: packets: received {}, {} bytes, lost {}, discontinuities {}",
            st.received, st.bytes, st.lost, st.discontinuities
        );
        Ok(())
    }
}

/// --packets-only: every packet until the publisher ends (or --max-packets).
/// `Ok(Err(_))`: the publisher went away before the end of its stream.
fn run_packets<B: Backend>(
    args: &Args,
    sub: &Subscriber<B>,
    sink: &mut PacketSink,
    stop: &AtomicBool,
) -> Result<Result<&'static str, anyhow::Error>> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let slice = timeout.min(Duration::from_millis(100));
    let mut last = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Ok("stopped by signal"));
        }
        if sink.done(args) {
            return Ok(Ok("packet limit reached"));
        }
        match sub.next_packet(slice) {
            Ok(p) => {
                last = Instant::now();
                sink.take(&p, sub)?
            }
            Err(PacketRecvError::Disconnected) => return Ok(ending(sub, args)),
            Err(PacketRecvError::Timeout(_)) if last.elapsed() < timeout => {}
            Err(PacketRecvError::Timeout(_)) if args.no_reconnect => {
                bail!("no packet for {timeout:?} (is the publisher stalled?)")
            }
            Err(PacketRecvError::Timeout(_)) => {
                eprintln!(
                    "no packet for {timeout:?}; waiting for the publisher of {:?}",
                    args.key
                );
                last = Instant::now();
            }
            Err(e) => return Err(e).context("receiving a packet"),
        }
        if args.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.sleep_ms));
        }
    }
}

fn run(args: Args) -> Result<()> {
    match args.backend {
        BackendArg::Host => receive(&args, connect(&args, || Ok(HostBackend))?, host_packed),
        BackendArg::Cuda => receive(&args, connect_cuda(&args)?, cuda_reader(&args)),
        BackendArg::Vulkan => receive(&args, connect_vulkan(&args)?, vulkan_packed),
        BackendArg::Auto => match connect(&args, || Ok(HostBackend)) {
            Ok(sub) => receive(&args, sub, host_packed),
            Err(e) if is_cuda_publisher(&e) => {
                receive(&args, connect_cuda(&args)?, cuda_reader(&args))
            }
            Err(e) if publisher_kind(&e) == Some(MemoryKind::VulkanOpaqueFd) => {
                receive(&args, connect_vulkan(&args)?, vulkan_packed)
            }
            Err(e) => Err(e),
        },
    }
}

/// Connects with the CUDA backend; with --report-vram, measures the imports.
fn connect_cuda(args: &Args) -> Result<Subscriber<CudaBackend>> {
    let config = SubscriberConfig {
        device: args.gpu,
        cross_gpu: match args.cross_gpu {
            CrossGpuArg::Auto => CrossGpu::Auto,
            CrossGpuArg::Peer => CrossGpu::PeerMap,
            CrossGpuArg::Copy => CrossGpu::Copy,
        },
    };
    let cuda = || {
        let b = CudaBackend::subscriber_with(config).context("--backend cuda")?;
        Ok(if args.allow_legacy_ipc {
            // SAFETY: the operator passed --allow-legacy-ipc, whose help
            // says it trusts the publisher's IPC handles (the `# Safety` of
            // `allow_legacy_ipc`); the publisher's uid is still checked.
            #[allow(unsafe_code)]
            unsafe {
                b.allow_legacy_ipc()
            }
        } else {
            b
        })
    };
    if !args.report_vram {
        let sub = connect(args, cuda)?;
        if let (Some(d), Some(_)) = (sub.backend().device(), args.gpu) {
            eprintln!(
                "{}: CUDA device {} ({}), frames {:?}",
                args.name.as_deref().unwrap_or("subscriber"),
                d.ordinal(),
                d.name(),
                sub.backend().frame_access()
            );
        }
        return Ok(sub);
    }
    // The context first (--gpu's, else device 0: without --gpu the
    // measurement is meant for one-GPU hosts).
    let dev = CudaDevice::select(args.gpu.unwrap_or(DeviceSelect::Ordinal(0)))
        .context("--report-vram: opening the device")?;
    let before = dev.memory_info()?.free;
    let sub = connect(args, cuda)?;
    let after = dev.memory_info()?.free;
    eprintln!(
        "{}: VRAM: importing {} slots took {:.2} MiB beyond this process's CUDA context (free {} -> {} MiB)",
        args.name.as_deref().unwrap_or("subscriber"),
        sub.slot_count(),
        before.saturating_sub(after) as f64 / 1048576.0,
        before >> 20,
        after >> 20
    );
    Ok(sub)
}

/// Connects with the Vulkan backend (the device of the publisher's UUID).
fn connect_vulkan(args: &Args) -> Result<Subscriber<VulkanBackend>> {
    let sub = connect(args, || {
        VulkanBackend::subscriber().context("--backend vulkan")
    })?;
    if let Some(d) = sub.backend().device() {
        let i = d.info();
        eprintln!(
            "{}: Vulkan device {} ({}, {})",
            args.name.as_deref().unwrap_or("subscriber"),
            i.name,
            i.device_type,
            cuframes_vulkan::uuid_string(&i.device_uuid)
        );
    }
    Ok(sub)
}

/// The memory kind of a publisher a connection was refused for.
fn publisher_kind(e: &anyhow::Error) -> Option<MemoryKind> {
    match e.downcast_ref::<ConnectError>() {
        Some(ConnectError::MemoryKind { theirs, .. }) => Some(*theirs),
        _ => None,
    }
}

/// A Vulkan frame's packed bytes: copied to host through a staging buffer
/// (after the publisher's timeline semaphore, if any).
fn vulkan_packed(f: &Frame<'_, VulkanBackend>, out: &mut Vec<u8>) -> Result<()> {
    f.copy_to_host(out)
        .context("copying a frame to host memory")
}

/// Whether connecting with host memory failed because the publisher shares VRAM.
fn is_cuda_publisher(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<ConnectError>(),
        Some(ConnectError::MemoryKind {
            theirs: MemoryKind::CudaVmmFd | MemoryKind::CudaLegacyIpc,
            ..
        })
    )
}

/// How CUDA frames are read: copied to host memory in FFmpeg's packed
/// layout (after the publisher's event, if any), straight from the slot,
/// or with --cross-gpu copy (and under auto without peer access) through a
/// copy on --gpu first, which is what is then hashed.
fn cuda_reader(args: &Args) -> impl FnMut(&Frame<'_, CudaBackend>, &mut Vec<u8>) -> Result<()> {
    let copy_mode = args.gpu.is_some() && args.cross_gpu == CrossGpuArg::Copy;
    let mut copy: Option<(CudaStream, CudaFrameCopy)> = None;
    move |f, out| {
        let via_copy = copy_mode || matches!(f.memory().access(), FrameAccess::SourceMapped { .. });
        if !via_copy {
            return f
                .copy_to_host(out)
                .context("copying a frame to host memory");
        }
        let dev = f.memory().consumer().clone();
        let fits = copy
            .as_ref()
            .is_some_and(|(_, c)| c.capacity() >= f.stream().frame_size);
        if !fits {
            let stream = CudaStream::new(&dev)?;
            let c = CudaFrameCopy::new(&dev, f.stream())
                .context("allocating the frame copy on --gpu")?;
            copy = Some((stream, c));
        }
        let Some((stream, c)) = copy.as_mut() else {
            bail!("no frame copy buffer");
        };
        f.copy_into(c, stream.raw())
            .context("copying a frame to --gpu")?;
        c.copy_to_host(stream.raw(), out)
            .context("copying the frame copy to host memory")
    }
}

fn receive<B: Backend>(
    args: &Args,
    sub: Subscriber<B>,
    mut read: impl FnMut(&Frame<'_, B>, &mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut sink = PacketSink::create(args, &sub)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("subscriber-{}", sub.id()));
    let s = sub.stream();
    eprintln!(
        "{name}: connected to {:?}: {}x{} {:?} ({:?} source), mode {:?}, {:?} memory, pid {} here",
        args.key,
        s.width,
        s.height,
        s.format(),
        s.codec(),
        args.mode,
        sub.backend().memory_kind(),
        std::process::id()
    );
    // SIGINT / SIGTERM end the run cleanly: the framemd5 file and the
    // recording are completed, the summary printed.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    if args.packets_only {
        let Some(mut sink) = sink else {
            bail!("the publisher has no packet ring");
        };
        let end = run_packets(args, &sub, &mut sink, &stop)?;
        match &end {
            Ok(e) => eprintln!("{name}: {e}"),
            Err(e) => eprintln!("{name}: {e}"),
        }
        sink.finish(&name, &sub)?;
        return end.map(|_| ());
    }
    let mut md5 = args
        .framemd5
        .as_ref()
        .map(|p| Md5Writer::create(p, &sub))
        .transpose()?;
    let mut raw = args
        .rawvideo
        .as_ref()
        .map(|p| RawOutput::new(p, args.rawvideo_format));
    let mut packed = Vec::new();
    let timeout = Duration::from_millis(args.timeout_ms);
    let started = Instant::now();
    let mut last_stats = Instant::now();
    let mut latencies_ns: Vec<u64> = Vec::new();
    let mut torn = 0u64;
    let end: Result<&'static str>;
    let mut reconnects = 0u64;
    let slice = timeout.min(Duration::from_millis(100));
    let mut last_frame = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            end = Ok("stopped by signal");
            break;
        }
        if args
            .max_frames
            .is_some_and(|m| latencies_ns.len() as u64 + torn >= m)
        {
            end = Ok("frame limit reached");
            break;
        }
        if let Some(s) = sink.as_mut() {
            s.drain(&sub, args)?;
        }
        let frame = match sub.next_frame(slice) {
            Ok(f) => f,
            Err(RecvError::Disconnected) => {
                end = ending(&sub, args);
                break;
            }
            Err(RecvError::Timeout(_)) if last_frame.elapsed() < timeout => continue,
            Err(RecvError::Timeout(_)) if args.no_reconnect => {
                bail!("no frame for {timeout:?} (is the publisher stalled?)")
            }
            Err(RecvError::Timeout(_)) => {
                // Reconnecting: a publisher that is away is waited for.
                eprintln!(
                    "{name}: no frame for {timeout:?}; waiting for the publisher of {:?}",
                    args.key
                );
                last_frame = Instant::now();
                continue;
            }
            Err(e) => return Err(e).context("receiving a frame"),
        };
        last_frame = Instant::now();
        let now = cuframes_core::runtime::clock::monotonic_ns();
        let meta = *frame.meta();
        let st = sub.stats();
        if st.reconnects > reconnects {
            reconnects = st.reconnects;
            eprintln!(
                "{name}: reconnected to {:?} (reconnect {reconnects})",
                args.key
            );
        }
        if frame.stream_changed() {
            let s = frame.stream();
            eprintln!(
                "{name}: stream changed: {}x{} {:?} (generation {})",
                s.width,
                s.height,
                s.format(),
                s.generation
            );
        }
        // Hold the frame first, then read it: a slot rewritten while the
        // lease was held (or after a revocation) then shows in the hash,
        // and the post-check below must catch every such frame.
        if args.sleep_ms > 0 {
            std::thread::sleep(Duration::from_millis(args.sleep_ms));
        }
        let reading = md5.is_some() || raw.is_some();
        if reading {
            read(&frame, &mut packed)?;
        }
        let geometry = {
            let s = frame.stream();
            Geometry {
                width: s.width as u32,
                height: s.height as u32,
                format: s.format(),
            }
        };
        // Post-check: a lease revoked mid-read means the bytes may be torn.
        if !frame.release() {
            torn += 1;
            continue;
        }
        latencies_ns.push(now.saturating_sub(meta.publish_ns));
        if let Some(w) = md5.as_mut() {
            let mut h = Md5::new();
            h.update(&packed);
            w.frame(meta.source_index, packed.len(), &hex(h))?;
        }
        if let Some(r) = raw.as_mut() {
            match r.write(&name, geometry, &packed, sub.stream()) {
                Ok(true) => {}
                Ok(false) => {
                    end = Ok("the raw video reader closed its input");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if args.stats_interval > 0.0 && last_stats.elapsed().as_secs_f64() >= args.stats_interval {
            last_stats = Instant::now();
            let st = sub.stats();
            eprintln!(
                "{name}: {} frames, {} dropped, {} reconnects, {} stream changes, {:.1} fps",
                st.received,
                st.dropped,
                st.reconnects,
                st.stream_changes,
                st.received as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(mut w) = md5 {
        w.out.flush()?;
    }
    if let Some(r) = raw {
        r.finish(&name)?;
    }
    if let Some(mut s) = sink {
        // Packets still in the ring after the last frame.
        if sub.end_reason().is_some() {
            let deadline = Instant::now() + timeout;
            while s.drain(&sub, args)? && !s.done(args) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        s.finish(&name, &sub)?;
    }
    let st = sub.stats();
    let secs = started.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let pct = |p: f64| {
        latencies_ns
            .get(((latencies_ns.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |&n| n as f64 / 1000.0)
    };
    let what = match &end {
        Ok(e) => e.to_string(),
        Err(e) => e.to_string(),
    };
    eprintln!(
        "{name}: {what}: received {} frames, dropped {}, revoked {}, {:.1} fps; publish-to-receive latency p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        latencies_ns.len(),
        st.dropped,
        torn,
        latencies_ns.len() as f64 / secs.max(1e-9),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    end.map(|_| ())
}
