//! `cuframes-publish`: decode video inputs once — files or RTSP cameras, one
//! from flags or many from a TOML file — and share every frame (and, with
//! `packets`, every encoded packet) with any number of subscriber processes.
//! The flags become `cuframes_service` stream specs, validated like a config
//! file's; [`run`] runs them and prints per-stream stats.

use anyhow::{bail, Context, Result};
use clap::Parser;
use cuframes_core::StreamKey;
use cuframes_service::config::{
    parse_socket_mode, stream_spec, BackendArg, DecoderArg, MemoryArg, PolicyArg, StreamFields,
    SyncArg, TransportArg, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_IO_TIMEOUT_MS,
    DEFAULT_LEASE_TIMEOUT_MS, DEFAULT_RECONNECT_INITIAL_MS, DEFAULT_RECONNECT_MAX_MS,
    DEFAULT_WAIT_TIMEOUT_MS,
};
use cuframes_service::{stats_line, GpuChoice, Service, ServiceConfig, StreamOutcome, StreamStats};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Decode video once — a file, an RTSP camera, or many of them from a TOML
/// config — and share every frame with subscriber processes.
#[derive(Debug, Parser)]
#[command(
    name = "cuframes-publish",
    version,
    long_about = None,
    args_override_self = true
)]
pub struct Args {
    /// Many streams from a TOML file (format: docs/cameras.md); the
    /// per-stream flags below are then refused (set them in the file);
    /// --stats-interval and --runtime-dir still apply.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "url", "key"])]
    config: Option<PathBuf>,
    /// Input file: MP4, Matroska, MPEG-TS or raw Annex B .h264/.h265 (H.264
    /// or HEVC). A URL (scheme://...) is taken as if given with --url.
    #[arg(long, conflicts_with = "url", required_unless_present_any = ["config", "url"])]
    input: Option<PathBuf>,
    /// Input URL, e.g. rtsp://user:pass@10.0.0.5:554/stream1: reopened with
    /// backoff when it fails or stalls.
    #[arg(long)]
    url: Option<String>,
    /// Stream key subscribers connect with ([A-Za-z0-9_-]{1,63}).
    #[arg(long, required_unless_present = "config")]
    key: Option<String>,
    /// --url: RTSP transport.
    #[arg(conflicts_with = "config", long, value_enum, default_value = "auto")]
    transport: TransportArg,
    /// --url: a camera whose connection, or next packet, takes longer than this fails (stall detection).
    #[arg(conflicts_with = "config", long, default_value_t = DEFAULT_IO_TIMEOUT_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=600_000))]
    io_timeout_ms: u64,
    /// --url: first delay before reconnecting (doubling up to --reconnect-max-ms).
    #[arg(conflicts_with = "config", long, default_value_t = DEFAULT_RECONNECT_INITIAL_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    reconnect_initial_ms: u64,
    /// --url: longest delay between reconnect attempts.
    #[arg(conflicts_with = "config", long, default_value_t = DEFAULT_RECONNECT_MAX_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    reconnect_max_ms: u64,
    /// Memory backend for the frame ring.
    #[arg(conflicts_with = "config", long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// Decoder.
    #[arg(conflicts_with = "config", long, value_enum, default_value = "auto")]
    decoder: DecoderArg,
    /// --backend cuda: how slots are shared.
    #[arg(conflicts_with = "config", long, value_enum, default_value = "vmm-fd")]
    memory: MemoryArg,
    /// --backend cuda / vulkan: how subscribers learn a frame is complete
    /// (vulkan: host-fence or timeline).
    #[arg(
        conflicts_with = "config",
        long,
        value_enum,
        default_value = "host-fence"
    )]
    sync: SyncArg,
    /// --backend cuda / auto: the GPU of the NVDEC decoder and the ring, a
    /// CUDA device ordinal (as numbered after CUDA_VISIBLE_DEVICES), or
    /// `auto` (one stream: GPU 0). An ordinal this host lacks is an error
    /// before anything starts.
    #[arg(conflicts_with = "config", long, visible_alias = "device", default_value = "auto", value_name = "N|auto", value_parser = clap::builder::ValueParser::new(parse_gpu))]
    gpu: GpuChoice,
    /// --backend vulkan: Vulkan physical device index (default: the most
    /// capable device: a discrete GPU before an integrated one, before a
    /// CPU implementation such as lavapipe).
    #[arg(conflicts_with = "config", long)]
    vulkan_device: Option<u32>,
    /// Frame slots in the ring.
    #[arg(conflicts_with = "config", long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(2..=64))]
    ring: u32,
    /// What to do when no slot may be rewritten.
    #[arg(
        conflicts_with = "config",
        long,
        value_enum,
        default_value = "drop-frame"
    )]
    policy: PolicyArg,
    /// --policy wait: longest wait for a slot before frames are overwritten or dropped.
    #[arg(conflicts_with = "config", long, default_value_t = DEFAULT_WAIT_TIMEOUT_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    wait_timeout_ms: u64,
    /// Revoke a lease a subscriber holds longer than this.
    #[arg(conflicts_with = "config", long, default_value_t = DEFAULT_LEASE_TIMEOUT_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    lease_timeout_ms: u64,
    /// Start again at the beginning at the end of the input (files).
    #[arg(conflicts_with = "config", long = "loop")]
    looping: bool,
    /// Pace frames by their timestamps (as a camera would) instead of as fast as possible.
    #[arg(conflicts_with = "config", long)]
    realtime: bool,
    /// Stop after publishing this many frames.
    #[arg(conflicts_with = "config", long)]
    max_frames: Option<u64>,
    /// Wait until this many subscribers are connected before the first frame.
    #[arg(conflicts_with = "config", long, default_value_t = 0)]
    wait_subscribers: usize,
    /// Give up waiting for --wait-subscribers after this long (then publish anyway).
    #[arg(
        conflicts_with = "config",
        long,
        default_value_t = 30_000,
        value_name = "MS"
    )]
    wait_subscribers_timeout_ms: u64,
    /// Seconds between stats lines on stderr, one per stream (0: only the summary).
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    stats_interval: Option<f64>,
    /// Also publish every demuxed packet (Annex B, parameter sets as
    /// extradata) in a packet ring, before decoding it, for recorders.
    #[arg(conflicts_with = "config", long)]
    packets: bool,
    /// --packets: bytes of the packet ring's data area, MiB.
    #[arg(conflicts_with = "config", long, default_value_t = 8, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=2047))]
    packet_ring_mib: u32,
    /// --packets: packet slots: how many packets a reader may lag.
    #[arg(conflicts_with = "config", long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    packet_slots: u32,
    /// --packets: largest packet published, KiB (default: a quarter of the
    /// ring); larger ones are skipped with a warning.
    #[arg(conflicts_with = "config", long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(1..))]
    max_packet_kib: Option<u32>,
    /// The socket file's mode, octal (e.g. 0660: the owner and its group may
    /// connect; 0600: the owner only). The runtime directory's own mode
    /// also limits who reaches it.
    #[arg(conflicts_with = "config", long, default_value = "0660", value_name = "OCTAL", value_parser = parse_socket_mode)]
    socket_mode: u32,
    /// Admit subscribers of this uid (SO_PEERCRED; repeatable). With no
    /// --allow-uid and no --allow-gid, anyone who can open the socket is
    /// admitted; root always is. Others get ERROR AccessDenied.
    #[arg(conflicts_with = "config", long = "allow-uid", value_name = "UID")]
    allow_uids: Vec<u32>,
    /// Admit subscribers whose primary gid is this (repeatable).
    #[arg(conflicts_with = "config", long = "allow-gid", value_name = "GID")]
    allow_gids: Vec<u32>,
    /// Close a connection that has not completed its handshake (HELLO
    /// answered) within this long.
    #[arg(conflicts_with = "config", long, default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_MS, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=600_000))]
    handshake_timeout_ms: u64,
    /// --policy wait: demote an InOrder subscriber to losing frames (as
    /// under drop-frame) once it has kept the publisher waiting
    /// --wait-timeout-ms this many times (default: never).
    #[arg(conflicts_with = "config", long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_lag_events: Option<u32>,
    /// Runtime directory for the sockets (default: $CUFRAMES_RUNTIME_DIR,
    /// /run/cuframes, $XDG_RUNTIME_DIR/cuframes, /tmp/cuframes-UID); with
    /// --config, the file's `runtime_dir` wins.
    #[arg(long)]
    runtime_dir: Option<PathBuf>,
}

fn parse_gpu(s: &str) -> Result<GpuChoice, String> {
    s.parse()
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds ≥ 0")),
    }
}

/// `--input` as a URL when it is one: `scheme://...` with a scheme as RFC
/// 3986 spells it (a letter, then letters, digits, `+`, `-`, `.`). A file
/// path never starts so unless written that way on purpose (`./rtsp://x`
/// is a path).
fn input_url(input: &Path) -> Option<&str> {
    let text = input.to_str()?;
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok.then_some(text)
}

/// The one stream the flags describe, validated like a config file's.
fn from_flags(a: &Args) -> Result<ServiceConfig> {
    let key = a.key.clone().unwrap_or_default();
    StreamKey::new(&key).with_context(|| format!("invalid --key {key:?}"))?;
    let (url, file) = match (&a.url, &a.input) {
        (None, Some(input)) => match input_url(input) {
            Some(url) => (Some(url.to_owned()), None),
            None => (None, Some(input.clone())),
        },
        (url, input) => (url.clone(), input.clone()),
    };
    let fields = StreamFields {
        key: Some(key),
        url,
        file,
        transport: Some(a.transport),
        io_timeout_ms: Some(a.io_timeout_ms),
        reconnect_initial_ms: Some(a.reconnect_initial_ms),
        reconnect_max_ms: Some(a.reconnect_max_ms),
        decoder: Some(a.decoder),
        backend: Some(a.backend),
        memory: Some(a.memory),
        sync: Some(a.sync),
        gpu: Some(a.gpu),
        vulkan_device: a.vulkan_device,
        ring: Some(a.ring),
        policy: Some(a.policy),
        wait_timeout_ms: Some(a.wait_timeout_ms),
        lease_timeout_ms: Some(a.lease_timeout_ms),
        max_subscribers: None,
        socket_mode: Some(format!("{:04o}", a.socket_mode)),
        allow_uids: Some(a.allow_uids.clone()),
        allow_gids: Some(a.allow_gids.clone()),
        handshake_timeout_ms: Some(a.handshake_timeout_ms),
        max_lag_events: a.max_lag_events,
        packets: Some(a.packets),
        packet_ring_mib: Some(a.packet_ring_mib),
        packet_slots: Some(a.packet_slots),
        max_packet_kib: a.max_packet_kib,
        looping: Some(a.looping),
        realtime: Some(a.realtime),
        max_frames: a.max_frames,
        wait_subscribers: Some(a.wait_subscribers),
        wait_subscribers_timeout_ms: Some(a.wait_subscribers_timeout_ms),
    };
    let spec = stream_spec(fields, a.runtime_dir.clone(), 0)?;
    Ok(ServiceConfig {
        stats_interval: 5.0,
        streams: vec![spec],
    })
}

/// Runs the streams the flags (or `--config`) describe until every one has
/// ended, been stopped by SIGINT / SIGTERM, or failed; an error names the
/// streams that failed.
pub fn run(args: Args) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            ServiceConfig::load(path).with_context(|| format!("--config {}", path.display()))?
        }
        None => from_flags(&args)?,
    };
    if let Some(s) = args.stats_interval {
        config.stats_interval = s;
    }
    if let (Some(dir), Some(_)) = (&args.runtime_dir, &args.config) {
        for s in &mut config.streams {
            s.config.runtime_dir.get_or_insert_with(|| dir.clone());
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let started = Instant::now();
    let service = Service::start_with_stop(config.streams, Arc::clone(&stop))?;
    let interval = config.stats_interval;
    let mut prev: Option<(Vec<StreamStats>, Instant)> = None;
    let mut next_stats = Instant::now() + Duration::from_secs_f64(interval.max(0.0));
    while !service.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
        if interval > 0.0 && Instant::now() >= next_stats {
            next_stats += Duration::from_secs_f64(interval);
            let now = service.stats();
            for (i, s) in now.iter().enumerate() {
                let before = prev.as_ref().and_then(|(p, at)| p.get(i).map(|p| (p, *at)));
                tracing::info!("{}", stats_line(s, before));
            }
            prev = Some((now, Instant::now()));
        }
    }
    let stats = service.stats();
    let outcomes = service.join();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let mut failed = Vec::new();
    for ((key, outcome), st) in outcomes.iter().zip(&stats) {
        let why = match outcome {
            StreamOutcome::Ended { .. } => "end of input",
            StreamOutcome::Stopped { .. } => "stopped by signal",
            StreamOutcome::Failed(e) => {
                failed.push(format!("stream {key}: {e}"));
                "failed"
            }
        };
        eprintln!(
            "cuframes-publish: {key}: {why}: {} frames published, {} dropped, {} revoked lease(s), {:.1} fps, {} reconnect(s), {} stream change(s)",
            st.frames, st.dropped, st.revoked_leases, st.frames as f64 / secs, st.reconnects, st.stream_changes
        );
        if st.corrupt_packets > 0 {
            eprintln!(
                "cuframes-publish: {key}: {} corrupt packet(s) skipped",
                st.corrupt_packets
            );
        }
        if st.packets > 0 || st.packets_skipped > 0 {
            eprintln!(
                "cuframes-publish: {key}: {} packets published, {} skipped",
                st.packets, st.packets_skipped
            );
        }
    }
    match failed.len() {
        0 => Ok(()),
        1 => bail!("{}", failed[0]),
        n => bail!("{n} streams failed: {}", failed.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_url_needs_a_scheme_and_two_slashes() {
        for url in [
            "rtsp://cam/x",
            "rtsps://u:p@cam:322/x",
            "srt://h:9000",
            "a+b.c-d://h",
        ] {
            assert_eq!(input_url(Path::new(url)), Some(url), "{url}");
        }
        for path in [
            "media/sample-h264.mp4",
            "./rtsp://cam/x",
            "/tmp/rtsp://x",
            "1tp://h",
            "://h",
            "rtsp:/cam",
            "c:\\x",
        ] {
            assert_eq!(input_url(Path::new(path)), None, "{path}");
        }
    }

    #[test]
    fn a_url_given_to_input_is_the_stream_url() {
        let a = Args::try_parse_from([
            "cuframes-publish",
            "--input",
            "rtsp://127.0.0.1:8554/cam",
            "--key",
            "k",
        ])
        .unwrap();
        let config = from_flags(&a).unwrap();
        let input = &config.streams[0].source.input;
        assert_eq!(
            input,
            &cuframes_service::InputSpec::Url("rtsp://127.0.0.1:8554/cam".into())
        );
    }
}
