//! `cuframes-subscribe --rawvideo`: frames piped into stock FFmpeg
//! (`-f rawvideo`), read back by FFmpeg itself and hashed, equal FFmpeg's
//! own decode of the clip; the FFmpeg input options the tool prints are the
//! ones that read its output; a reader that stops early ends the tool
//! cleanly.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use cuframes_testkit::framemd5_text_hashes as hashes;
use cuframes_testkit::media;

const PUBLISH: &str = env!("CARGO_BIN_EXE_cuframes-publish");
const SUBSCRIBE: &str = env!("CARGO_BIN_EXE_cuframes-subscribe");

fn publisher(dir: &Path, clip: &str, key: &str) -> Child {
    Command::new(PUBLISH)
        .args(["--runtime-dir", dir.to_str().unwrap(), "--backend", "host"])
        .args([
            "--stats-interval",
            "0",
            "--policy",
            "wait",
            "--wait-subscribers",
            "1",
        ])
        .args(["--key", key, "--input", media(clip).to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn subscriber(dir: &Path, key: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(SUBSCRIBE);
    c.args([
        "--runtime-dir",
        dir.to_str().unwrap(),
        "--wait-publisher-ms",
        "10000",
    ])
    .args(["--no-reconnect", "--mode", "in-order", "--key", key])
    .args(extra);
    c
}

/// FFmpeg's per-frame MD5s of `args` (its input options and input).
fn ffmpeg_framemd5(args: &[&str], pix_fmt: &str) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(args)
        .args(["-f", "framemd5", "-pix_fmt", pix_fmt, "-"])
        .output()
        .expect("running ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hashes(&String::from_utf8_lossy(&out.stdout))
}

/// The options after "read it with ffmpeg " up to " -i", as printed.
fn printed_input_args(stderr: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .find(|l| l.contains("read it with ffmpeg "))
        .unwrap_or_else(|| panic!("no FFmpeg arguments printed:\n{stderr}"));
    let args = line.split("read it with ffmpeg ").nth(1).unwrap();
    let args = args.split(" -i ").next().unwrap();
    args.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn yuv420p_file_read_by_ffmpeg_equals_its_own_decode() {
    let dir = cuframes_testkit::runtime_dir("rawvideo", "file");
    let raw = dir.join("out.yuv");
    let publ = publisher(&dir, "sample-h264.mp4", "rawfile");
    let out = subscriber(&dir, "rawfile", &["--rawvideo", raw.to_str().unwrap()])
        .args(["--rawvideo-format", "yuv420p"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "subscriber: {err}");
    assert!(publ.wait_with_output().unwrap().status.success());
    let args = printed_input_args(&err);
    assert_eq!(
        args.join(" "),
        "-f rawvideo -pix_fmt yuv420p -video_size 1280x720 -framerate 25/1",
        "{err}"
    );
    let mut read: Vec<&str> = args.iter().map(String::as_str).collect();
    read.extend(["-i", raw.to_str().unwrap()]);
    let got = ffmpeg_framemd5(&read, "yuv420p");
    let want = ffmpeg_framemd5(
        &["-i", media("sample-h264.mp4").to_str().unwrap()],
        "yuv420p",
    );
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert!(
        err.contains(&format!("wrote {} raw video frames", want.len())),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nv12_pipe_into_ffmpeg_matches_the_reference() {
    let dir = cuframes_testkit::runtime_dir("rawvideo", "pipe");
    let publ = publisher(&dir, "sample-hevc.mkv", "rawpipe");
    let mut sub = subscriber(&dir, "rawpipe", &["--rawvideo", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = sub.stdout.take().unwrap();
    let ff = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "rawvideo", "-pix_fmt", "nv12"])
        .args(["-video_size", "1280x720", "-i", "pipe:"])
        .args(["-f", "framemd5", "-pix_fmt", "nv12", "-"])
        .stdin(pipe)
        .output()
        .unwrap();
    let mut err = String::new();
    sub.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(sub.wait().unwrap().success(), "subscriber: {err}");
    assert!(
        ff.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&ff.stderr)
    );
    assert!(publ.wait_with_output().unwrap().status.success());
    assert!(printed_input_args(&err)
        .join(" ")
        .starts_with("-f rawvideo -pix_fmt nv12 -video_size 1280x720"));
    let got = hashes(&String::from_utf8_lossy(&ff.stdout));
    assert_eq!(
        got,
        cuframes_testkit::framemd5_hashes("sample-hevc.mkv.framemd5")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reader_that_stops_early_ends_the_tool_cleanly() {
    let dir = cuframes_testkit::runtime_dir("rawvideo", "epipe");
    let publ = publisher(&dir, "sample-h264.mp4", "rawepipe");
    let mut sub = subscriber(&dir, "rawepipe", &["--rawvideo", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = sub.stdout.take().unwrap();
    let ff = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "rawvideo", "-pix_fmt", "nv12"])
        .args(["-video_size", "1280x720", "-i", "pipe:", "-frames:v", "3"])
        .args(["-f", "framemd5", "-"])
        .stdin(pipe)
        .output()
        .unwrap();
    assert!(ff.status.success());
    assert_eq!(hashes(&String::from_utf8_lossy(&ff.stdout)).len(), 3);
    let mut err = String::new();
    sub.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(sub.wait().unwrap().success(), "subscriber: {err}");
    assert!(
        err.contains("the raw video reader closed its input"),
        "{err}"
    );
    let _ = publ.wait_with_output();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rawvideo_format_needs_rawvideo() {
    let out = Command::new(SUBSCRIBE)
        .args(["--key", "k", "--rawvideo-format", "yuv420p"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rawvideo"));
}

#[test]
fn a_stream_change_ends_the_raw_stream_with_a_clear_error() {
    let dir = cuframes_testkit::runtime_dir("rawvideo", "change");
    let raw = dir.join("out.nv12");
    let publ = publisher(&dir, "sample-size-change.ts", "rawchange");
    let out = subscriber(&dir, "rawchange", &["--rawvideo", raw.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot change geometry"), "{err}");
    // Every frame of the first geometry was written before the change.
    let g = printed_input_args(&err);
    let size = g.iter().skip_while(|a| *a != "-video_size").nth(1).unwrap();
    let (w, h) = size.split_once('x').unwrap();
    let frame = w.parse::<u64>().unwrap() * h.parse::<u64>().unwrap() * 3 / 2;
    let len = std::fs::metadata(&raw).unwrap().len();
    assert!(len > 0 && len % frame == 0, "{len} bytes, frame {frame}");
    let _ = publ.wait_with_output();
    let _ = std::fs::remove_dir_all(&dir);
}
