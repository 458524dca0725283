//! The packet ring end to end with the real tools as separate processes:
//! `cuframes-publish --packets` and `cuframes-subscribe --record`.
//!
//! How recordings are compared with the source. The ring carries Annex B
//! (each 4-byte NAL length prefix replaced by a start code, parameter sets
//! as extradata); the MP4 and Matroska muxers turn the packets back into
//! 4-byte length-prefixed samples. So the recording's demuxed packets must be
//! byte-identical to the source's demuxed packets: the MD5 and size of every
//! packet are compared with `media/*.packets.framemd5`, which
//! `ffmpeg -i SOURCE -c copy -f framemd5 -` wrote (the MD5 of each packet's
//! data, as computed here with `md-5`). Timestamps are compared in ns: the
//! reference's ticks (its `#tb` line) against the recording's, which may
//! differ by at most one tick of the recording's time base (MP4: 1/90000,
//! Matroska: 1/1000) from rounding. Decode timestamps are compared where the
//! recording's demuxer reports one (Matroska stores none for the first
//! packets of a stream with B-frames; FFmpeg derives them). Each recording
//! must also decode to exactly the reference frames, and — with the `ffmpeg`
//! tool, which `.ci/setup-debian` installs — `ffmpeg -v error -i REC -f null -`
//! must print nothing.

use cuframes_media::{Decoded, Decoder, Demuxer, SoftwareDecoder};
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use cuframes_testkit::media;

/// A fresh runtime directory for one test of this file.
fn runtime_dir(test: &str) -> PathBuf {
    cuframes_testkit::runtime_dir("packets", test)
}

const PUBLISH: &str = env!("CARGO_BIN_EXE_cuframes-publish");
const SUBSCRIBE: &str = env!("CARGO_BIN_EXE_cuframes-subscribe");

fn publisher(dir: &Path, args: &[&str]) -> Child {
    Command::new(PUBLISH)
        .args(["--runtime-dir", dir.to_str().unwrap(), "--backend", "host"])
        .args(["--stats-interval", "0", "--packets"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn subscriber(dir: &Path, args: &[&str]) -> Child {
    Command::new(SUBSCRIBE)
        .args(["--runtime-dir", dir.to_str().unwrap()])
        .args(["--wait-publisher-ms", "10000"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One line of a `-c copy -f framemd5` file, timestamps in ns.
#[derive(Debug, Clone, PartialEq)]
struct RefPacket {
    dts_ns: Option<i64>,
    pts_ns: Option<i64>,
    size: usize,
    md5: String,
}

fn reference_packets(name: &str) -> Vec<RefPacket> {
    let text = std::fs::read_to_string(media(name)).unwrap();
    let tb = text
        .lines()
        .find_map(|l| l.strip_prefix("#tb 0: "))
        .expect("#tb line");
    let (num, den) = tb.split_once('/').unwrap();
    let (num, den): (i128, i128) = (num.parse().unwrap(), den.parse().unwrap());
    let ns = |t: i64| (t != i64::MIN).then(|| (t as i128 * num * 1_000_000_000 / den) as i64);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split(',').map(str::trim).collect();
            RefPacket {
                dts_ns: ns(c[1].parse().unwrap()),
                pts_ns: ns(c[2].parse().unwrap()),
                size: c[4].parse().unwrap(),
                md5: c[5].to_owned(),
            }
        })
        .collect()
}

/// One demuxed packet of a file.
struct Demuxed {
    md5: String,
    size: usize,
    pts_ns: Option<i64>,
    dts_ns: Option<i64>,
    key: bool,
}

/// Every packet of `path` as demuxed, and the time base's tick in ns.
fn demuxed_packets(path: &Path) -> (Vec<Demuxed>, i64) {
    let mut d = Demuxer::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (num, den) = d.info().time_base;
    let tick = (num as i64 * 1_000_000_000 + den as i64 - 1) / den as i64;
    let mut v = Vec::new();
    while let Some(p) = d.read_packet().unwrap() {
        v.push(Demuxed {
            md5: md5_hex(&p.data),
            size: p.data.len(),
            pts_ns: p.pts_ns,
            dts_ns: p.dts_ns,
            key: p.keyframe,
        });
    }
    (v, tick)
}

/// Decodes `path` fully; returns the MD5 of each frame's packed NV12 bytes.
fn decoded_frames(path: &Path) -> Vec<String> {
    let mut d = Demuxer::open(path).unwrap();
    let mut dec = SoftwareDecoder::new(&d).unwrap();
    let mut out = Vec::new();
    loop {
        match dec.receive_frame().expect("decoding the recording") {
            Decoded::Frame(f) => out.push(md5_hex(f.packed_bytes())),
            Decoded::NeedInput => match d.read_packet().unwrap() {
                Some(p) => dec.send_packet(&p).expect("decoding the recording"),
                None => dec.send_eof().unwrap(),
            },
            Decoded::Eof => return out,
        }
    }
}

fn reference_frames(name: &str) -> Vec<String> {
    std::fs::read_to_string(media(name))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// `ffmpeg -v error -i path -f null -` prints nothing.
fn ffmpeg_decodes_silently(path: &Path) {
    let out = match Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
    {
        Ok(o) => o,
        Err(e) => panic!("the ffmpeg tool is needed (.ci/setup-debian installs it): {e}"),
    };
    assert!(out.status.success(), "ffmpeg failed on {}", path.display());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "ffmpeg reported errors decoding {}",
        path.display()
    );
}

/// The recording equals the source packet for packet (module docs).
fn assert_same_packets(rec: &Path, reference: &str) {
    let want = reference_packets(reference);
    let (got, tick) = demuxed_packets(rec);
    assert_eq!(got.len(), want.len(), "packet count of {}", rec.display());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!((&g.md5, g.size), (&w.md5, w.size), "packet {i} bytes");
        let close = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= tick,
            _ => false,
        };
        assert!(
            close(g.pts_ns, w.pts_ns),
            "packet {i} pts {:?} vs {:?}",
            g.pts_ns,
            w.pts_ns
        );
        if g.dts_ns.is_some() {
            assert!(
                close(g.dts_ns, w.dts_ns),
                "packet {i} dts {:?} vs {:?}",
                g.dts_ns,
                w.dts_ns
            );
        }
    }
}

#[test]
fn h264_recording_through_the_ring_is_the_source_packet_for_packet() {
    let dir = runtime_dir("h264");
    let rec = dir.join("rec.mp4");
    let publ = publisher(
        &dir,
        &[
            "--input",
            media("sample-h264.mp4").to_str().unwrap(),
            "--key",
            "rec-h264",
            "--wait-subscribers",
            "1",
        ],
    );
    let sub = subscriber(
        &dir,
        &[
            "--key",
            "rec-h264",
            "--packets-only",
            "--record",
            rec.to_str().unwrap(),
        ],
    );
    let sub_out = finish(sub, "recorder");
    finish(publ, "publisher");
    let log = String::from_utf8_lossy(&sub_out.stderr);
    assert!(log.contains("recorded 100 packets"), "{log}");
    assert!(log.contains("lost 0, discontinuities 0"), "{log}");
    assert_same_packets(&rec, "sample-h264.mp4.packets.framemd5");
    assert_eq!(
        decoded_frames(&rec),
        reference_frames("sample-h264.mp4.framemd5")
    );
    ffmpeg_decodes_silently(&rec);
}

#[test]
fn hevc_frames_and_packets_read_by_one_subscriber_match_the_source() {
    let dir = runtime_dir("hevc");
    let rec = dir.join("rec.mkv");
    let frames = dir.join("frames.framemd5");
    let publ = publisher(
        &dir,
        &[
            "--input",
            media("sample-hevc.mkv").to_str().unwrap(),
            "--key",
            "rec-hevc",
            "--wait-subscribers",
            "1",
            "--policy",
            "wait",
        ],
    );
    // Frames (every one, InOrder) and packets on one connection.
    let sub = subscriber(
        &dir,
        &[
            "--key",
            "rec-hevc",
            "--record",
            rec.to_str().unwrap(),
            "--framemd5",
            frames.to_str().unwrap(),
        ],
    );
    let sub_out = finish(sub, "subscriber");
    finish(publ, "publisher");
    let log = String::from_utf8_lossy(&sub_out.stderr);
    assert!(log.contains("recorded 100 packets"), "{log}");
    let got_frames: Vec<String> = std::fs::read_to_string(&frames)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(got_frames, reference_frames("sample-hevc.mkv.framemd5"));
    assert_same_packets(&rec, "sample-hevc.mkv.packets.framemd5");
    assert_eq!(
        decoded_frames(&rec),
        reference_frames("sample-hevc.mkv.framemd5")
    );
    ffmpeg_decodes_silently(&rec);
}

/// Source packets of `clip` in order: (md5, keyframe).
fn source_packets(clip: &str) -> Vec<(String, bool)> {
    demuxed_packets(&media(clip))
        .0
        .into_iter()
        .map(|p| (p.md5, p.key))
        .collect()
}

/// Maps each recorded packet to its index in the source (hashes are unique
/// in the sample clips) and returns the runs of consecutive indices.
fn runs(rec: &Path, source: &[(String, bool)]) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for p in demuxed_packets(rec).0 {
        let i = source
            .iter()
            .position(|s| s.0 == p.md5)
            .expect("every recorded packet is a source packet");
        match runs.last_mut() {
            Some(r) if *r.last().unwrap() + 1 == i => r.push(i),
            _ => runs.push(vec![i]),
        }
    }
    runs
}

#[test]
fn a_subscriber_joining_mid_stream_starts_on_a_keyframe() {
    let dir = runtime_dir("join");
    let rec = dir.join("rec.mp4");
    let publ = publisher(
        &dir,
        &[
            "--input",
            media("sample-h264.mp4").to_str().unwrap(),
            "--key",
            "join",
            "--realtime",
        ],
    );
    // The clip lasts 4 s at 25 fps with keyframes every 25 packets; join
    // after about 2 s, well past packet 0 and before the end.
    std::thread::sleep(Duration::from_millis(2000));
    let sub = subscriber(
        &dir,
        &[
            "--key",
            "join",
            "--packets-only",
            "--record",
            rec.to_str().unwrap(),
        ],
    );
    let sub_out = finish(sub, "recorder");
    finish(publ, "publisher");
    let source = source_packets("sample-h264.mp4");
    let r = runs(&rec, &source);
    let log = String::from_utf8_lossy(&sub_out.stderr);
    assert_eq!(r.len(), 1, "one contiguous run: {r:?}\n{log}");
    let first = r[0][0];
    assert!(first > 0, "joined mid-stream, not at the start: {r:?}");
    assert!(source[first].1, "first packet {first} is a keyframe");
    assert_eq!(
        *r[0].last().unwrap(),
        source.len() - 1,
        "then every packet to the end"
    );
    assert!(
        demuxed_packets(&rec).0[0].key,
        "the recording starts with a keyframe"
    );
    ffmpeg_decodes_silently(&rec);
    assert!(!decoded_frames(&rec).is_empty());
}

#[test]
fn a_sleeping_subscriber_overruns_resumes_on_keyframes_and_still_records_a_decodable_file() {
    let dir = runtime_dir("slow");
    let rec = dir.join("rec.mkv");
    let publ = publisher(
        &dir,
        &[
            "--input",
            media("sample-hevc.mkv").to_str().unwrap(),
            "--key",
            "slow",
            "--wait-subscribers",
            "1",
            "--realtime",
            "--packet-slots",
            "8",
        ],
    );
    // 4 s of packets at 25/s into 8 slots; this reader takes 5 per second.
    let sub = subscriber(
        &dir,
        &[
            "--key",
            "slow",
            "--packets-only",
            "--sleep-ms",
            "200",
            "--record",
            rec.to_str().unwrap(),
        ],
    );
    let sub_out = finish(sub, "recorder");
    finish(publ, "publisher");
    let log = String::from_utf8_lossy(&sub_out.stderr);
    let stat = log
        .lines()
        .find(|l| l.contains("packets: received"))
        .unwrap_or_else(|| panic!("no packet stats in {log}"));
    let num = |key: &str| -> u64 {
        let at = stat.find(key).unwrap() + key.len();
        stat[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(num("lost") > 0 && num("discontinuities") > 0, "{stat}");
    let source = source_packets("sample-hevc.mkv");
    let r = runs(&rec, &source);
    assert!(r.len() > 1, "the overrun leaves a gap: {r:?}");
    assert_eq!(r.len() as u64, num("discontinuities") + 1, "{stat}: {r:?}");
    for run in &r {
        assert!(source[run[0]].1, "run {run:?} starts on a keyframe");
    }
    ffmpeg_decodes_silently(&rec);
    assert_eq!(
        decoded_frames(&rec).len(),
        r.iter().map(Vec::len).sum::<usize>(),
        "every recorded packet decodes to a frame"
    );
}

#[test]
fn oversized_packets_are_skipped_and_the_publisher_keeps_serving_frames() {
    let dir = runtime_dir("oversized");
    let frames = dir.join("frames.framemd5");
    // Keyframes of the clip are about 12 KiB; allow 8.
    let publ = publisher(
        &dir,
        &[
            "--input",
            media("sample-h264.mp4").to_str().unwrap(),
            "--key",
            "oversized",
            "--wait-subscribers",
            "1",
            "--policy",
            "wait",
            "--max-packet-kib",
            "8",
        ],
    );
    let sub = subscriber(
        &dir,
        &["--key", "oversized", "--framemd5", frames.to_str().unwrap()],
    );
    finish(sub, "subscriber");
    let out = finish(publ, "publisher");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("packet refused"), "{log}");
    assert!(log.contains("exceeds the 8192-byte limit"), "{log}");
    let skipped: u64 = log
        .lines()
        .find_map(|l| l.strip_suffix(" skipped"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet summary in {log}"));
    assert!(skipped >= 4, "at least the 4 IDR packets: {log}");
    let got: Vec<String> = std::fs::read_to_string(&frames)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(got, reference_frames("sample-h264.mp4.framemd5"));
}
