//! RTSP input (`Demuxer::open_url`) against a real RTSP server on the
//! loopback (`scripts/rtsp-server.py`, GStreamer; see decode-nvdec/testkit/src/rtsp.rs):
//! every frame decoded bit-exact with the file's FFmpeg reference, over TCP
//! and UDP, and the failures a camera service meets (refused, 404, a silent
//! host, a server dying mid-stream) reported as distinct errors within the
//! I/O timeout. Needs the GStreamer packages (`.ci/setup-debian`); fails, not
//! skips, without them.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cuframes_media::cuframes_core::Codec;
use cuframes_media::{
    Decoded, Decoder, DemuxError, Demuxer, OpenError, RtspTransport, SoftwareDecoder, UrlOptions,
};
use md5::{Digest, Md5};

use cuframes_testkit::framemd5_hashes;
use cuframes_testkit::rtsp::RtspServer;

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn opts(transport: RtspTransport, secs: u64) -> UrlOptions {
    UrlOptions {
        transport,
        io_timeout: Duration::from_secs(secs),
        ..UrlOptions::default()
    }
}

/// Plays `clip` from the server over `transport`, decodes it in software and
/// compares every frame with the file's reference.
fn play_and_check(transport: RtspTransport, clip: &str, codec: Codec) {
    let server = RtspServer::start(&[("/clip", clip)]);
    let mut demuxer = Demuxer::open_url(&server.url("/clip"), &opts(transport, 5))
        .unwrap_or_else(|e| panic!("open_url {clip} over {transport:?}: {e}"));
    let info = demuxer.info().clone();
    assert_eq!(info.codec, codec);
    assert_eq!((info.width, info.height), (1280, 720));
    // RTP video: a 90 kHz clock.
    assert_eq!(info.time_base, (1, 90000));
    // Parameter sets from the SDP (sprop-parameter-sets), as Annex B.
    assert!(
        info.extradata.starts_with(&[0, 0, 0, 1]) || info.extradata.starts_with(&[0, 0, 1]),
        "extradata is not Annex B: {:02x?}",
        &info.extradata[..info.extradata.len().min(8)]
    );
    let mut decoder = SoftwareDecoder::new(&demuxer).expect("decoder");
    let (mut packets, mut keyframes, mut frames) = (0, 0, Vec::new());
    let mut pts = Vec::new();
    let mut eof = false;
    loop {
        match decoder.receive_frame().expect("receive_frame") {
            Decoded::Frame(f) => {
                assert_eq!((f.width, f.height), (1280, 720));
                pts.push(f.pts_ns);
                frames.push(md5_hex(f.packed_bytes()));
            }
            Decoded::NeedInput if !eof => match demuxer.read_packet() {
                Ok(Some(p)) => {
                    packets += 1;
                    keyframes += usize::from(p.keyframe);
                    decoder.send_packet(&p).expect("send_packet");
                }
                Ok(None) => {
                    eof = true;
                    decoder.send_eof().expect("send_eof");
                }
                Err(e) => {
                    panic!("{clip} over {transport:?}: read_packet after {packets} packets: {e}")
                }
            },
            Decoded::NeedInput => unreachable!("NeedInput after send_eof"),
            Decoded::Eof => break,
        }
    }
    let expected = framemd5_hashes(&format!("{clip}.framemd5"));
    assert_eq!(
        packets,
        expected.len(),
        "{clip} over {transport:?}: packets"
    );
    assert_eq!(
        keyframes, 4,
        "{clip} over {transport:?}: one keyframe per GOP"
    );
    assert_eq!(
        frames.len(),
        expected.len(),
        "{clip} over {transport:?}: frames"
    );
    for (i, (got, want)) in frames.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "{clip} over {transport:?}: frame {i}");
    }
    // 25 fps in presentation order.
    for (i, w) in pts.windows(2).enumerate() {
        let (Some(a), Some(b)) = (w[0], w[1]) else {
            panic!("frame {i} has no pts");
        };
        assert_eq!(
            b - a,
            40_000_000,
            "{clip} over {transport:?}: frame {} time",
            i + 1
        );
    }
}

#[test]
fn h264_over_tcp_matches_the_file_reference() {
    play_and_check(RtspTransport::Tcp, "sample-h264.mp4", Codec::H264);
}

#[test]
fn h264_over_udp_matches_the_file_reference() {
    play_and_check(RtspTransport::Udp, "sample-h264.mp4", Codec::H264);
}

#[test]
fn hevc_over_tcp_matches_the_file_reference() {
    play_and_check(RtspTransport::Tcp, "sample-hevc.mkv", Codec::Hevc);
}

#[test]
fn refused_port_is_refused_quickly() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let err = Demuxer::open_url(
        &format!("rtsp://127.0.0.1:{port}/x"),
        &opts(RtspTransport::Tcp, 5),
    )
    .unwrap_err();
    assert!(matches!(err, OpenError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn unknown_mount_is_stream_not_found() {
    let server = RtspServer::start(&[("/h264", "sample-h264.mp4")]);
    let url = server
        .url("/nope")
        .replace("rtsp://", "rtsp://admin:hunter2@");
    let err = Demuxer::open_url(&url, &opts(RtspTransport::Tcp, 5)).unwrap_err();
    assert!(matches!(err, OpenError::StreamNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("404") && text.contains("/nope"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn silent_host_times_out_within_the_io_timeout() {
    // Accepts the TCP connection (the kernel does, from the backlog) and
    // never answers DESCRIBE.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    for transport in [RtspTransport::Tcp, RtspTransport::Auto] {
        let io_timeout = Duration::from_secs(1);
        let t0 = Instant::now();
        let err = Demuxer::open_url(
            &format!("rtsp://127.0.0.1:{port}/cam"),
            &UrlOptions {
                transport,
                io_timeout,
                ..UrlOptions::default()
            },
        )
        .unwrap_err();
        let took = t0.elapsed();
        assert!(matches!(err, OpenError::TimedOut { .. }), "{err:?}");
        assert!(err.to_string().contains("no answer"), "{err}");
        assert!(took < 3 * io_timeout, "took {took:?}");
    }
    drop(listener);
}

/// Opens the clip over `transport` with a 1 s I/O timeout and reads 10
/// packets.
fn playing(transport: RtspTransport) -> (RtspServer, Demuxer, Duration) {
    let server = RtspServer::start(&[("/clip", "sample-h264.mp4")]);
    let io_timeout = Duration::from_secs(1);
    let mut demuxer = Demuxer::open_url(
        &server.url("/clip"),
        &UrlOptions {
            transport,
            io_timeout,
            ..UrlOptions::default()
        },
    )
    .expect("open_url");
    for _ in 0..10 {
        demuxer.read_packet().expect("read").expect("a packet");
    }
    (server, demuxer, io_timeout)
}

/// Reads until something other than a packet; fails if packets keep coming
/// for 3 x `io_timeout`. Returns the outcome and how long it took.
fn read_until_end(
    demuxer: &mut Demuxer,
    io_timeout: Duration,
) -> (Result<Option<cuframes_media::Packet>, DemuxError>, Duration) {
    let t0 = Instant::now();
    loop {
        match demuxer.read_packet() {
            // Packets already in flight or buffered.
            Ok(Some(_)) => assert!(t0.elapsed() < 3 * io_timeout, "packets keep coming"),
            other => return (other, t0.elapsed()),
        }
    }
}

fn killed_mid_stream(transport: RtspTransport) {
    let (mut server, mut demuxer, io_timeout) = playing(transport);
    server.kill();
    let (end, took) = read_until_end(&mut demuxer, io_timeout);
    assert!(took < 3 * io_timeout, "{transport:?}: took {took:?}");
    // The kernel closes the dead server's RTSP connection; FFmpeg reports
    // that as the end of the stream (AVERROR_EOF, as for an RTCP BYE), over
    // UDP too (it watches the RTSP connection while reading RTP). Anything
    // but a hang is right here.
    match end {
        Ok(None) | Err(DemuxError::Stalled { .. } | DemuxError::Read { .. }) => {}
        other => panic!("{transport:?}: expected the end or an error, got {other:?}"),
    }
}

#[test]
fn server_killed_mid_stream_over_tcp_ends_promptly() {
    killed_mid_stream(RtspTransport::Tcp);
}

#[test]
fn server_killed_mid_stream_over_udp_ends_promptly() {
    killed_mid_stream(RtspTransport::Udp);
}

/// A camera that stops sending but keeps its connection open (frozen, or
/// the network path dropping packets): `Stalled` after the I/O timeout.
fn frozen_mid_stream(transport: RtspTransport) {
    let (server, mut demuxer, io_timeout) = playing(transport);
    server.signal("-STOP");
    let (end, took) = read_until_end(&mut demuxer, io_timeout);
    server.signal("-CONT");
    assert!(took < 3 * io_timeout, "{transport:?}: took {took:?}");
    match end {
        Err(e @ DemuxError::Stalled { .. }) => {
            let DemuxError::Stalled { after, .. } = &e else {
                unreachable!()
            };
            assert_eq!(*after, io_timeout);
            assert!(e.to_string().contains("no data for"), "{e}");
        }
        other => panic!("{transport:?}: expected Stalled, got {other:?}"),
    }
}

#[test]
fn frozen_server_stalls_over_tcp() {
    frozen_mid_stream(RtspTransport::Tcp);
}

#[test]
fn frozen_server_stalls_over_udp() {
    frozen_mid_stream(RtspTransport::Udp);
}
