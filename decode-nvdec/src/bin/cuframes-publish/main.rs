//! cuframes-publish: demux a video file, decode it once, and share every
//! frame with any number of subscriber processes; with `--packets`, share
//! every encoded packet too (Annex B, before it is decoded) for recorders.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use cuframes_core::layout::StreamDesc;
use cuframes_core::packet::{av_codec_id, MAX_EXTRADATA};
use cuframes_core::runtime::{Backend, HostBackend, HostSlot, PacketRingConfig, PublisherConfig};
use cuframes_core::{PublishPolicy, StreamKey};
use cuframes_cuda::{CudaBackend, CudaConfig, CudaMemory, CudaStream, CudaSync};
use cuframes_nvdec::nvdec::{nvdec_available, NvdecDecoder};
use cuframes_nvdec::{AnnexB, Decoded, Decoder, Demuxer, HostFrame, SoftwareDecoder};
use output::{Geometry, Output, Settings};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod output;
mod packets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// CUDA when a driver and a GPU are present, else host.
    Auto,
    /// Host memory (memfd): works on any Linux machine.
    Host,
    /// CUDA device memory (VRAM) shared as --memory handles.
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DecoderArg {
    /// NVDEC with the CUDA backend when libnvcuvid is present, else software.
    Auto,
    /// FFmpeg's software decoder.
    Software,
    /// NVIDIA NVDEC (needs --backend cuda).
    Nvdec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemoryArg {
    /// CUDA VMM allocations exported as file descriptors: works across containers and PID namespaces.
    VmmFd,
    /// Legacy CUDA IPC handles (cuIpcGetMemHandle): needs a shared PID namespace.
    LegacyIpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SyncArg {
    /// Wait for each frame's copy before publishing it.
    HostFence,
    /// Publish at once; subscribers wait on a per-slot interprocess CUDA event.
    IpcEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PolicyArg {
    /// Never block: overwrite unread frames, drop the new frame when every slot is leased.
    DropFrame,
    /// Block (up to --wait-timeout-ms) until InOrder subscribers have read a slot: lossless.
    Wait,
}

/// Decode a video file once and share its frames with subscriber processes.
#[derive(Debug, Parser)]
#[command(version, long_about = None, args_override_self = true)]
struct Args {
    /// Input file: MP4, Matroska, MPEG-TS or raw Annex B .h264/.h265 (H.264 or HEVC).
    #[arg(long)]
    input: PathBuf,
    /// Stream key subscribers connect with ([A-Za-z0-9_-]{1,63}).
    #[arg(long)]
    key: String,
    /// Memory backend for the frame ring.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Decoder.
    #[arg(long, value_enum, default_value = "auto")]
    decoder: DecoderArg,
    /// --backend cuda: how slots are shared.
    #[arg(long, value_enum, default_value = "vmm-fd")]
    memory: MemoryArg,
    /// --backend cuda: how subscribers learn a frame is complete.
    #[arg(long, value_enum, default_value = "host-fence")]
    sync: SyncArg,
    /// --backend cuda: CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: u32,
    /// Frame slots in the ring (2..=64).
    #[arg(long, default_value_t = 8)]
    ring: u32,
    /// What to do when no slot may be rewritten.
    #[arg(long, value_enum, default_value = "drop-frame")]
    policy: PolicyArg,
    /// --policy wait: longest wait for a slot before frames are overwritten or dropped.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    wait_timeout_ms: u64,
    /// Revoke a lease a subscriber holds longer than this.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    lease_timeout_ms: u64,
    /// Start again at the beginning at the end of the input.
    #[arg(long = "loop")]
    looping: bool,
    /// Pace frames by their timestamps (as a camera would) instead of as fast as possible.
    #[arg(long)]
    realtime: bool,
    /// Stop after publishing this many frames.
    #[arg(long)]
    max_frames: Option<u64>,
    /// Wait until this many subscribers are connected before the first frame.
    #[arg(long, default_value_t = 0)]
    wait_subscribers: usize,
    /// Give up waiting for --wait-subscribers after this long.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    wait_subscribers_timeout_ms: u64,
    /// Seconds between stats lines on stderr (0: only the summary).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    stats_interval: f64,
    /// Also publish every demuxed packet (Annex B, parameter sets as
    /// extradata) in a packet ring, before decoding it, for recorders.
    #[arg(long)]
    packets: bool,
    /// --packets: bytes of the packet ring's data area, MiB (1..=2047).
    #[arg(long, default_value_t = 8, value_name = "MIB")]
    packet_ring_mib: u32,
    /// --packets: packet slots (1..=1024): how many packets a reader may lag.
    #[arg(long, default_value_t = 64)]
    packet_slots: u32,
    /// --packets: largest packet published, KiB (default: a quarter of the
    /// ring); larger ones are skipped with a warning.
    #[arg(long, value_name = "KIB")]
    max_packet_kib: Option<u32>,
    /// Runtime directory for the socket (default: $CUFRAMES_RUNTIME_DIR,
    /// /run/cuframes, $XDG_RUNTIME_DIR/cuframes, /tmp/cuframes-UID).
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("cuframes-publish: error: {e:#}");
        std::process::exit(1);
    }
}

/// Copies a packed host frame into a host slot laid out by `stream` (pitched rows).
fn copy_frame(
    frame: &HostFrame,
    slot: &mut HostSlot,
    stream: &StreamDesc,
) -> Result<(), std::io::Error> {
    let dst = slot.bytes_mut();
    for (i, src) in frame.planes.iter().enumerate() {
        let pitch = stream.plane_pitch[i] as usize;
        let base = stream.plane_offset[i] as usize;
        for r in 0..src.rows {
            let from = src.offset + r * src.pitch;
            let to = base + r * pitch;
            let (Some(s), Some(d)) = (
                frame.data.get(from..from + src.row_bytes),
                dst.get_mut(to..to + src.row_bytes),
            ) else {
                return Err(std::io::Error::other("frame does not fit the slot layout"));
            };
            d.copy_from_slice(s);
        }
    }
    Ok(())
}

fn geometry(f: &HostFrame) -> Geometry {
    Geometry {
        width: f.width,
        height: f.height,
        format: f.format,
    }
}

/// What the run needs besides the output: input, stop flag, limits.
struct Input<'a> {
    args: &'a Args,
    demux: Demuxer,
    stop: Arc<AtomicBool>,
}

impl Input<'_> {
    fn done<B: Backend + Send + Sync + 'static>(&self, out: &Output<B>) -> bool {
        self.stop.load(Ordering::Relaxed) || self.args.max_frames.is_some_and(|m| out.total >= m)
    }

    /// At the end of the input: `Ok(false)` to stop, or (`--loop`) rewinds
    /// the demuxer, marks the next frame DISCONTINUITY and returns `Ok(true)`.
    fn rewind<B: Backend + Send + Sync + 'static>(&mut self, out: &mut Output<B>) -> Result<bool> {
        if !self.args.looping {
            return Ok(false);
        }
        if out.source_index == 0 {
            bail!("{} holds no decodable frame", self.args.input.display());
        }
        self.demux
            .rewind()
            .context("rewinding the input for --loop")?;
        out.restarted();
        Ok(true)
    }
}

/// Software decode; `write` puts each host frame into a slot.
fn run_software<B, E, W>(input: &mut Input<'_>, out: &mut Output<B>, mut write: W) -> Result<()>
where
    B: Backend + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
    W: FnMut(&HostFrame, &mut B::Slot, &StreamDesc) -> Result<(), E>,
{
    let mut decoder =
        SoftwareDecoder::new(&input.demux).context("cannot start the software decoder")?;
    let mut eof_sent = false;
    while !input.done(out) {
        let frame = match decoder.receive_frame().context("decoding")? {
            Decoded::Frame(f) => f,
            Decoded::NeedInput => {
                match input.demux.read_packet().context("reading the input")? {
                    Some(p) => {
                        out.packet(&p);
                        decoder.send_packet(&p).context("decoding")?
                    }
                    None if !eof_sent => {
                        decoder.send_eof().context("decoding")?;
                        eof_sent = true;
                    }
                    None => {}
                }
                continue;
            }
            Decoded::Eof => {
                if !input.rewind(out)? {
                    break;
                }
                decoder.flush();
                eof_sent = false;
                continue;
            }
        };
        out.publish(
            &geometry(&frame),
            frame.pts_ns,
            frame.keyframe,
            |slot, stream| write(&frame, slot, stream),
        )?;
    }
    Ok(())
}

/// NVDEC decode into VRAM; each surface is copied device to device into a slot.
fn run_nvdec(
    input: &mut Input<'_>,
    out: &mut Output<CudaBackend>,
    device: &cuframes_cuda::CudaDevice,
) -> Result<()> {
    let info = input.demux.info().clone();
    let annexb = AnnexB::new(info.codec, &info.extradata).context("reading the codec extradata")?;
    let mut dec = NvdecDecoder::new(device, info.codec, annexb.extradata())
        .context("cannot start the NVDEC decoder")?;
    let stream = CudaStream::new(device).context("creating a CUDA stream")?;
    let mut clock = cuframes_nvdec::FrameClock::new(info.frame_rate);
    // Keyframe flags by pts: NVDEC does not report them.
    let mut keys: HashMap<i64, bool> = HashMap::new();
    let mut buf = Vec::new();
    let mut eof_sent = false;
    let mut next_pts = 0i64;
    while !input.done(out) {
        if let Some(frame) = dec.next_frame(stream.raw()).context("NVDEC")? {
            let si = frame.info();
            let g = Geometry {
                width: si.width,
                height: si.height,
                format: si.format,
            };
            let (key, pts_ns) = match frame.pts() {
                Some(t) => (
                    keys.remove(&t).unwrap_or(false),
                    clock.stamp(cuframes_nvdec::rescale_to_ns(t, info.time_base)),
                ),
                None => (false, clock.stamp(None)),
            };
            let planes = [frame.plane(0), frame.plane(1)];
            let raw = stream.raw();
            out.publish(&g, pts_ns, key, |slot, desc| {
                for (i, p) in planes.iter().enumerate() {
                    let (ptr, pitch) = p.ok_or(cuframes_cuda::CudaError::Layout("plane"))?;
                    slot.copy_plane_from_device(desc, i, ptr, pitch, raw)?;
                }
                slot.fence(raw)
            })?;
            // The surface is unmapped when `frame` drops: the copy must be done.
            stream.synchronize().context("waiting for the frame copy")?;
            continue;
        }
        if dec.is_drained() {
            if !input.rewind(out)? {
                break;
            }
            dec.restart().context("restarting NVDEC")?;
            clock.reset();
            keys.clear();
            eof_sent = false;
            continue;
        }
        match input.demux.read_packet().context("reading the input")? {
            Some(p) => {
                out.packet(&p);
                annexb
                    .convert(&p.data, &mut buf)
                    .context("converting a packet to Annex B")?;
                // Raw streams may carry no pts: number them so keyframe
                // flags still find their frame.
                let pts = p.pts.unwrap_or_else(|| {
                    next_pts += 1;
                    next_pts
                });
                if keys.len() > 4096 {
                    keys.clear();
                }
                keys.insert(pts, p.keyframe);
                dec.send_packet(&buf, Some(pts)).context("NVDEC")?;
            }
            None if !eof_sent => {
                dec.send_eof().context("NVDEC")?;
                eof_sent = true;
            }
            None => {}
        }
    }
    Ok(())
}

/// `--packets`: the feed, or `None` (with a warning) when the input's
/// parameter sets cannot go into a packet ring.
fn packet_feed(
    args: &Args,
    info: &cuframes_nvdec::StreamInfo,
) -> Result<Option<packets::PacketFeed>> {
    if !args.packets {
        return Ok(None);
    }
    if !(1..=2047).contains(&args.packet_ring_mib) {
        bail!(
            "--packet-ring-mib {} is outside 1..=2047",
            args.packet_ring_mib
        );
    }
    Ok(match AnnexB::new(info.codec, &info.extradata) {
        Ok(annexb) if annexb.extradata().len() > MAX_EXTRADATA => {
            tracing::warn!(
                "--packets: the input's parameter sets take {} bytes, more than the packet ring's {MAX_EXTRADATA}; publishing frames without a packet ring",
                annexb.extradata().len()
            );
            None
        }
        Ok(annexb) => Some(packets::PacketFeed::new(annexb)),
        Err(e) => {
            tracing::warn!("--packets: the input's codec extradata is unusable ({e}); publishing frames without a packet ring");
            None
        }
    })
}

fn run(args: Args) -> Result<()> {
    StreamKey::new(&args.key).with_context(|| format!("invalid --key {:?}", args.key))?;
    if !(2..=64).contains(&args.ring) {
        bail!("--ring {} is outside 2..=64", args.ring);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let demux = Demuxer::open(&args.input)
        .with_context(|| format!("cannot open --input {}", args.input.display()))?;
    let info = demux.info().clone();

    let cuda_config = CudaConfig {
        memory: match args.memory {
            MemoryArg::VmmFd => CudaMemory::VmmFd,
            MemoryArg::LegacyIpc => CudaMemory::LegacyIpc,
        },
        sync: match args.sync {
            SyncArg::HostFence => CudaSync::HostFence,
            SyncArg::IpcEvent => CudaSync::IpcEvent,
        },
        device: args.device,
    };
    let cuda = match args.backend {
        BackendArg::Host => None,
        BackendArg::Cuda => Some(
            CudaBackend::publisher(cuda_config).context("--backend cuda: cannot open the GPU")?,
        ),
        BackendArg::Auto => match CudaBackend::publisher(cuda_config) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::info!("no CUDA backend ({e}); using host memory");
                None
            }
        },
    };
    let nvdec = match (args.decoder, &cuda) {
        (DecoderArg::Software, _) => false,
        (DecoderArg::Nvdec, None) => {
            bail!(
                "--decoder nvdec needs the CUDA backend (--backend cuda or auto on a GPU machine)"
            )
        }
        (DecoderArg::Nvdec, Some(_)) => {
            if !nvdec_available() {
                bail!("--decoder nvdec: libnvcuvid.so.1 cannot be loaded on this machine");
            }
            true
        }
        (DecoderArg::Auto, c) => c.is_some() && nvdec_available(),
    };
    let backend_name = match &cuda {
        Some(c) => format!(
            "cuda {:?}/{:?} on {} ({})",
            cuda_config.memory,
            cuda_config.sync,
            c.device().map_or("?", |d| d.name()),
            c.device()
                .map_or(String::new(), |d| cuframes_cuda::uuid_string(&d.uuid()))
        ),
        None => "host".into(),
    };
    tracing::info!(
        input = %args.input.display(),
        codec = %info.codec_name,
        "{}x{} at {}/{} fps, decoder {}, backend {backend_name}",
        info.width, info.height, info.frame_rate.0, info.frame_rate.1,
        if nvdec { "nvdec" } else { "software" }
    );

    let feed = packet_feed(&args, &info)?;
    let mut config = PublisherConfig::new(&args.key);
    config.slots = args.ring;
    config.policy = match args.policy {
        PolicyArg::DropFrame => PublishPolicy::DropFrame,
        PolicyArg::Wait => PublishPolicy::Wait,
    };
    config.wait_timeout = Duration::from_millis(args.wait_timeout_ms);
    config.lease_timeout = Duration::from_millis(args.lease_timeout_ms);
    config.runtime_dir = args.runtime_dir.clone();
    if let Some(f) = &feed {
        let data_size = args.packet_ring_mib << 20;
        let max = match args.max_packet_kib {
            Some(k) => k.saturating_mul(1024).min(data_size),
            None => data_size / 4,
        };
        config.packets = Some(PacketRingConfig {
            slots: args.packet_slots,
            data_size,
            max_packet_size: max.max(1),
            codec_id: av_codec_id(info.codec),
            extradata: f.annexb.extradata().to_vec(),
        });
    }
    let settings = Settings {
        config,
        codec: info.codec,
        frame_rate: info.frame_rate,
        wait_subscribers: args.wait_subscribers,
        wait_subscribers_timeout: Duration::from_millis(args.wait_subscribers_timeout_ms),
        realtime: args.realtime,
        stats_interval: args.stats_interval,
        vram_free: cuda.as_ref().and_then(|c| c.device()).map(|d| {
            let d = d.clone();
            Box::new(move || d.memory_info().ok().map(|m| m.free)) as Box<dyn Fn() -> Option<u64>>
        }),
        feed,
    };
    let mut input = Input {
        args: &args,
        demux,
        stop: Arc::clone(&stop),
    };
    let published = match cuda {
        None => {
            let mut out = Output::new(HostBackend, settings);
            run_software(&mut input, &mut out, copy_frame)?;
            out.finish(stop.load(Ordering::Relaxed))
        }
        Some(backend) => {
            let device = backend.device().context("CUDA device")?.clone();
            let mut out = Output::new(backend, settings);
            if nvdec {
                run_nvdec(&mut input, &mut out, &device)?;
            } else {
                run_software(&mut input, &mut out, |f, slot, desc| {
                    for (i, p) in f.planes.iter().enumerate() {
                        let src = f.data.get(p.offset..).unwrap_or(&[]);
                        slot.copy_plane_from_host(desc, i, src, p.pitch)?;
                    }
                    // Pageable uploads may still be in DMA when cuMemcpy2D returns.
                    slot.fence(cuframes_cuda::RawStream::DEFAULT)
                })?;
            }
            out.finish(stop.load(Ordering::Relaxed))
        }
    };
    if !published && !stop.load(Ordering::Relaxed) {
        bail!("{} holds no decodable frame", args.input.display());
    }
    Ok(())
}
