//! cuframes-publish: demux a video file, decode it once, and share every
//! frame with any number of subscriber processes; with `--packets`, share
//! every encoded packet too (Annex B, before it is decoded) for recorders.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use cuframes_core::layout::{StreamDesc, FLAG_DISCONTINUITY, FLAG_KEY};
use cuframes_core::packet::{
    av_codec_id, MAX_EXTRADATA, PACKET_DISCONTINUITY, PACKET_KEY, PACKET_LAST_IN_AU,
};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, HostSlot, PacketRingConfig, Published, Publisher, PublisherConfig,
};
use cuframes_core::{PublishPolicy, StreamKey};
use cuframes_nvdec::{AnnexB, Decoded, Decoder, Demuxer, HostFrame, Packet, SoftwareDecoder};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// Host in this build (will pick CUDA when a GPU is present once the CUDA backend lands).
    Auto,
    /// Host memory (memfd): works on any Linux machine.
    Host,
    /// CUDA device memory (not implemented in this build).
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DecoderArg {
    /// Software in this build (will pick NVDEC when present once it lands).
    Auto,
    /// FFmpeg's software decoder.
    Software,
    /// NVIDIA NVDEC (not implemented in this build).
    Nvdec,
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

/// Copies a packed host frame into a slot laid out by `stream` (pitched rows).
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

/// A converted packet waiting for the publisher: data, pts, dts (ns), flags.
type PendingPacket = (Vec<u8>, Option<i64>, Option<i64>, u32);

/// The packet side of the publisher: Annex B conversion, packets demuxed
/// before the publisher exists, and the flag for the next packet.
struct PacketFeed {
    annexb: AnnexB,
    pending: Vec<PendingPacket>,
    discontinuity: bool,
    buf: Vec<u8>,
    skipped: u64,
}

impl PacketFeed {
    /// Converts `p` and publishes it, or queues it while there is no
    /// publisher yet. A packet that cannot be converted or is refused is
    /// skipped with a warning; the next one carries DISCONTINUITY.
    fn feed(&mut self, p: &Packet, publisher: Option<&mut Publisher<HostBackend>>) {
        if let Err(e) = self.annexb.convert(&p.data, &mut self.buf) {
            tracing::warn!("skipping a packet that is not valid length-prefixed NAL units: {e}");
            self.skip();
            return;
        }
        let mut flags = PACKET_LAST_IN_AU;
        if p.keyframe {
            flags |= PACKET_KEY;
        }
        if std::mem::take(&mut self.discontinuity) {
            flags |= PACKET_DISCONTINUITY;
        }
        match publisher {
            Some(publ) => self.publish(publ, None, p.pts_ns, p.dts_ns, flags),
            None => self
                .pending
                .push((self.buf.clone(), p.pts_ns, p.dts_ns, flags)),
        }
    }

    fn publish(
        &mut self,
        publ: &mut Publisher<HostBackend>,
        data: Option<&[u8]>,
        pts: Option<i64>,
        dts: Option<i64>,
        flags: u32,
    ) {
        let data = data.unwrap_or(&self.buf);
        if let Err(e) = publ.publish_packet(data, pts, dts, flags) {
            tracing::warn!("packet refused: {e}; skipping it");
            self.skip();
        }
    }

    fn skip(&mut self) {
        self.skipped += 1;
        self.discontinuity = true;
    }

    /// Publishes what was demuxed before the publisher existed.
    fn flush(&mut self, publ: &mut Publisher<HostBackend>) {
        for (data, pts, dts, flags) in std::mem::take(&mut self.pending) {
            self.publish(publ, Some(&data), pts, dts, flags);
        }
    }
}

struct Pacer {
    start: Option<(Instant, i64)>,
}

impl Pacer {
    /// Sleeps until `pts_ns` is due relative to the first paced frame.
    fn wait(&mut self, pts_ns: Option<i64>) {
        let Some(pts) = pts_ns else { return };
        let (t0, p0) = *self.start.get_or_insert((Instant::now(), pts));
        if let Ok(ahead) = u64::try_from(pts - p0) {
            let due = t0 + Duration::from_nanos(ahead);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

fn run(args: Args) -> Result<()> {
    StreamKey::new(&args.key).with_context(|| format!("invalid --key {:?}", args.key))?;
    if !(2..=64).contains(&args.ring) {
        bail!("--ring {} is outside 2..=64", args.ring);
    }
    match args.backend {
        BackendArg::Cuda => {
            bail!("--backend cuda is not implemented in this build yet; use --backend host")
        }
        BackendArg::Auto | BackendArg::Host => {}
    }
    if args.decoder == DecoderArg::Nvdec {
        bail!("--decoder nvdec is not implemented in this build yet; use --decoder software");
    }

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }

    let mut demux = Demuxer::open(&args.input)
        .with_context(|| format!("cannot open --input {}", args.input.display()))?;
    let info = demux.info().clone();
    let mut decoder = SoftwareDecoder::new(&demux).context("cannot start the software decoder")?;
    let mut feed = if args.packets {
        if !(1..=2047).contains(&args.packet_ring_mib) {
            bail!(
                "--packet-ring-mib {} is outside 1..=2047",
                args.packet_ring_mib
            );
        }
        match AnnexB::new(info.codec, &info.extradata) {
            Ok(annexb) if annexb.extradata().len() > MAX_EXTRADATA => {
                tracing::warn!(
                    "--packets: the input's parameter sets take {} bytes, more than the packet ring's {MAX_EXTRADATA}; publishing frames without a packet ring",
                    annexb.extradata().len()
                );
                None
            }
            Ok(annexb) => Some(PacketFeed {
                annexb,
                pending: Vec::new(),
                discontinuity: false,
                buf: Vec::new(),
                skipped: 0,
            }),
            Err(e) => {
                tracing::warn!("--packets: the input's codec extradata is unusable ({e}); publishing frames without a packet ring");
                None
            }
        }
    } else {
        None
    };
    tracing::info!(
        input = %args.input.display(),
        codec = %info.codec_name,
        "{}x{} at {}/{} fps, decoder {}, backend host",
        info.width, info.height, info.frame_rate.0, info.frame_rate.1, decoder.name()
    );

    let mut config = PublisherConfig::new(&args.key);
    config.slots = args.ring;
    config.policy = match args.policy {
        PolicyArg::DropFrame => PublishPolicy::DropFrame,
        PolicyArg::Wait => PublishPolicy::Wait,
    };
    config.wait_timeout = Duration::from_millis(args.wait_timeout_ms);
    config.lease_timeout = Duration::from_millis(args.lease_timeout_ms);
    config.runtime_dir = args.runtime_dir.clone();
    if feed.is_some() {
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
            extradata: feed
                .as_ref()
                .map_or(Vec::new(), |f| f.annexb.extradata().to_vec()),
        });
    }

    let mut publisher: Option<Publisher<HostBackend>> = None;
    let mut pacer = Pacer { start: None };
    let mut source_index = 0u64;
    let mut loops = 0u64;
    let mut pending_discontinuity = false;
    let mut eof_sent = false;
    let started = Instant::now();
    let mut last_stats = Instant::now();
    let mut total = 0u64;

    'outer: while !stop.load(Ordering::Relaxed) {
        if args.max_frames.is_some_and(|m| total >= m) {
            break;
        }
        let frame = match decoder.receive_frame().context("decoding")? {
            Decoded::Frame(f) => f,
            Decoded::NeedInput => {
                match demux.read_packet().context("reading the input")? {
                    Some(p) => {
                        if let Some(f) = feed.as_mut() {
                            f.feed(&p, publisher.as_mut());
                        }
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
                if !args.looping {
                    break 'outer;
                }
                if source_index == 0 {
                    bail!("{} holds no decodable frame", args.input.display());
                }
                demux.rewind().context("rewinding the input for --loop")?;
                decoder.flush();
                eof_sent = false;
                source_index = 0;
                loops += 1;
                pending_discontinuity = true;
                if let Some(f) = feed.as_mut() {
                    f.discontinuity = true;
                }
                pacer.start = None;
                continue;
            }
        };

        let p = match publisher.as_mut() {
            Some(p) => p,
            None => {
                let mut stream =
                    StreamDesc::packed(frame.width, frame.height, frame.format, info.codec)
                        .context("unsupported frame geometry")?;
                if info.frame_rate.0 > 0 && info.frame_rate.1 > 0 {
                    stream.fps_num = info.frame_rate.0 as u64;
                    stream.fps_den = info.frame_rate.1 as u64;
                }
                let mut p = Publisher::create(HostBackend, config.clone(), stream)
                    .with_context(|| format!("cannot publish on key {:?}", args.key))?;
                if let Some(f) = feed.as_ref() {
                    tracing::info!(
                        slots = args.packet_slots,
                        mib = args.packet_ring_mib,
                        "packet ring on ({} bytes of Annex B extradata)",
                        f.annexb.extradata().len()
                    );
                }
                tracing::info!(socket = %p.socket_path().display(), slots = args.ring, policy = ?config.policy, "publishing");
                if args.wait_subscribers > 0 {
                    tracing::info!("waiting for {} subscriber(s)", args.wait_subscribers);
                    if !p.wait_for_subscribers(
                        args.wait_subscribers,
                        Duration::from_millis(args.wait_subscribers_timeout_ms),
                    ) {
                        bail!(
                            "only {} of {} subscribers connected within {} ms",
                            p.subscriber_count(),
                            args.wait_subscribers,
                            args.wait_subscribers_timeout_ms
                        );
                    }
                }
                if let Some(f) = feed.as_mut() {
                    f.flush(&mut p);
                }
                publisher.insert(p)
            }
        };
        let s = p.stream();
        if frame.width as u64 != s.width
            || frame.height as u64 != s.height
            || frame.format != s.format()
        {
            bail!(
                "the stream changed from {}x{} {:?} to {}x{} {:?} at frame {source_index}; resolution changes are not supported yet",
                s.width, s.height, s.format(), frame.width, frame.height, frame.format
            );
        }
        if args.realtime {
            pacer.wait(frame.pts_ns);
        }
        let mut flags = if frame.keyframe { FLAG_KEY } else { 0 };
        if pending_discontinuity {
            flags |= FLAG_DISCONTINUITY;
            pending_discontinuity = false;
        }
        let meta = FrameMeta {
            pts_ns: frame.pts_ns,
            flags,
            source_index,
            ..Default::default()
        };
        match p
            .publish(meta, |slot, stream| copy_frame(&frame, slot, stream))
            .context("publishing a frame")?
        {
            Published::Committed(_) | Published::Dropped => {}
        }
        source_index += 1;
        total += 1;
        if args.stats_interval > 0.0 && last_stats.elapsed().as_secs_f64() >= args.stats_interval {
            last_stats = Instant::now();
            let st = p.stats();
            tracing::info!(
                "{} frames published, {} dropped, {} subscriber(s), {:.1} fps, loop {}",
                st.published,
                st.dropped,
                st.subscribers,
                st.published as f64 / started.elapsed().as_secs_f64(),
                loops
            );
        }
    }

    let Some(p) = publisher else {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        bail!("{} holds no decodable frame", args.input.display());
    };
    let st = p.stats();
    let why = if stop.load(Ordering::Relaxed) {
        "stopped by signal"
    } else {
        "end of input"
    };
    eprintln!(
        "cuframes-publish: {why}: {} frames published, {} dropped, {} revoked lease(s), {:.1} fps",
        st.published,
        st.dropped,
        st.revoked_leases,
        st.published as f64 / started.elapsed().as_secs_f64()
    );
    if let Some(f) = &feed {
        eprintln!(
            "cuframes-publish: {} packets published, {} skipped",
            st.packets_published, f.skipped
        );
    }
    p.finish();
    Ok(())
}
