//! The elements in real pipelines against the real cuframes tools (separate
//! processes), checked against FFmpeg's references in `media/`.

use gst::prelude::*;
use std::time::Duration;

mod common;
use common::*;

/// `gst-inspect-1.0` finds each element through `GST_PLUGIN_PATH` and
/// documents every property the element defines (with its default).
#[test]
fn gst_inspect_documents_every_element() {
    init();
    for (element, own) in [
        (
            "cuframessrc",
            &[
                "key",
                "mode",
                "reconnect",
                "backend",
                "allow-legacy-ipc",
                "publisher-uids",
                "runtime-dir",
                "timeout",
                "max-leased-buffers",
                "stats",
            ][..],
        ),
        (
            "cuframessink",
            &[
                "key",
                "slots",
                "policy",
                "wait-timeout",
                "lease-timeout",
                "runtime-dir",
                "backend",
                "cuda-device",
                "wait-subscribers",
                "socket-mode",
                "allow-uids",
                "allow-gids",
                "stats",
            ][..],
        ),
        (
            "cuframespacketsrc",
            &[
                "key",
                "reconnect",
                "runtime-dir",
                "timeout",
                "backend",
                "allow-legacy-ipc",
                "publisher-uids",
            ][..],
        ),
    ] {
        let out = gst_tool("gst-inspect-1.0").arg(element).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "gst-inspect-1.0 {element}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("libgstcuframes.so"), "{text}");
        // Every property of the element class itself has a blurb line.
        let factory = gst::ElementFactory::find(element).unwrap();
        let e = factory.create().build().unwrap();
        let declared: Vec<String> = e
            .list_properties()
            .iter()
            .filter(|p| p.owner_type() == e.type_())
            .map(|p| p.name().to_string())
            .collect();
        let mut want: Vec<String> = own.iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut got = declared.clone();
        got.sort();
        assert_eq!(got, want, "{element}'s properties");
        for p in own {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{p} ")))
                .unwrap_or_else(|| panic!("{element}: no line for {p} in\n{text}"));
            let blurb = line.split_once(':').map(|x| x.1.trim()).unwrap_or("");
            assert!(blurb.len() > 20, "{element} {p}: blurb too short: {line:?}");
        }
    }
}

/// `cuframessrc ! appsink` over a clip published in host memory: returns
/// each frame's MD5, caps, flags and the mapping its bytes lie in, plus the
/// source's stats.
fn subscribe_clip(
    test: &str,
    clip: &str,
    video_meta: bool,
    extra: &[&str],
) -> (Vec<Pulled>, gst::Structure) {
    subscribe_clip_on("host", test, clip, video_meta, extra)
}

/// [`subscribe_clip`] with `cuframes-publish --backend BACKEND`; the source
/// has `backend=auto` (its default): the facade picks the importer from
/// the publisher's offer.
fn subscribe_clip_on(
    backend: &str,
    test: &str,
    clip: &str,
    video_meta: bool,
    extra: &[&str],
) -> (Vec<Pulled>, gst::Structure) {
    init();
    let dir = runtime_dir(test);
    let key = test;
    let input = media(clip);
    let mut args = vec![
        "--input",
        input.to_str().unwrap(),
        "--key",
        key,
        "--policy",
        "wait",
        "--wait-subscribers",
        "1",
    ];
    args.extend_from_slice(extra);
    let publ = publisher_on(&dir, backend, &args);
    // max-buffers=1: appsink queues one sample while the test holds
    // another, so no more than max-leased-buffers (3) are ever alive and
    // every frame can go out zero-copy (a longer queue makes copies).
    let pipeline = gst::parse::launch(&format!(
        "cuframessrc name=src key={key} runtime-dir={} backend=auto mode=in-order reconnect=false timeout=20000 ! appsink name=sink sync=false max-buffers=1",
        dir.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    if video_meta {
        accept_video_meta(&sink);
    }
    let appsink = sink.downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    pull_until(&appsink, Duration::from_secs(60), |s| {
        let buffer = s.buffer().unwrap();
        let caps = s.caps().unwrap().to_owned();
        let info = gst_video::VideoInfo::from_caps(&caps).unwrap();
        let map = buffer.map_readable().unwrap();
        frames.push(Pulled {
            md5: frame_md5(buffer, &info),
            caps,
            flags: buffer.flags(),
            pts: buffer.pts(),
            mapping: mapping_of(map.as_ptr() as usize, map.len()),
        });
        true
    });
    check_bus(&pipeline);
    let stats = pipeline
        .by_name("src")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    finish(publ, "cuframes-publish");
    (frames, stats)
}

fn assert_reference(frames: &[Pulled], clip: &str) {
    let reference = framemd5_hashes(&format!("{clip}.framemd5"));
    assert_eq!(frames.len(), reference.len(), "frame count of {clip}");
    for (i, (f, r)) in frames.iter().zip(&reference).enumerate() {
        assert_eq!(&f.md5, r, "{clip} frame {i}");
    }
}

/// Every frame of the H.264 clip, bit-exact with FFmpeg's decode, each
/// buffer's bytes inside the subscriber's read-only mapping of the
/// publisher's slot memfd (`/memfd:cuframes-slot-N`): no copy was made.
#[test]
fn src_frames_match_ffmpeg_and_wrap_the_slot() {
    let (frames, stats) = subscribe_clip("src_h264", "sample-h264.mp4", true, &[]);
    assert_reference(&frames, "sample-h264.mp4");
    let caps = frames[0].caps.structure(0).unwrap();
    assert_eq!(caps.get::<&str>("format").unwrap(), "NV12");
    assert_eq!(caps.get::<i32>("width").unwrap(), 1280);
    assert_eq!(
        caps.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(25, 1)
    );
    for (i, f) in frames.iter().enumerate() {
        let m = f.mapping.as_deref().unwrap_or("(none)");
        assert!(
            m.starts_with("r--s") && m.contains("/memfd:cuframes-slot-"),
            "frame {i}: buffer memory lies in {m:?}, not a read-only slot mapping"
        );
    }
    assert!(frames[0].flags.contains(gst::BufferFlags::DISCONT));
    assert!(!frames[1].flags.contains(gst::BufferFlags::DISCONT));
    // 25 fps: buffers 40 ms apart, as the source's timestamps.
    let d = frames[1].pts.unwrap() - frames[0].pts.unwrap();
    assert_eq!(d, gst::ClockTime::from_mseconds(40));
    assert_eq!(stats.get::<u64>("zero-copy").unwrap(), 100, "{stats}");
    assert_eq!(stats.get::<u64>("copied").unwrap(), 0, "{stats}");
}

/// A clip whose size changes mid-stream (640x360 then 320x240, pitches
/// padded to 768 / 512 bytes) into an appsink that does not read
/// `GstVideoMeta`: the caps are renegotiated at the change, and every frame
/// is repacked to GStreamer's default layout, still bit-exact.
#[test]
fn src_renegotiates_on_stream_change_and_repacks_without_video_meta() {
    let (frames, stats) = subscribe_clip("src_size_change", "sample-size-change.ts", false, &[]);
    assert_reference(&frames, "sample-size-change.ts");
    let width = |f: &Pulled| f.caps.structure(0).unwrap().get::<i32>("width").unwrap();
    assert_eq!(width(&frames[0]), 640);
    assert_eq!(width(&frames[49]), 640);
    assert_eq!(width(&frames[50]), 320);
    assert_eq!(width(&frames[99]), 320);
    // Repacked: the bytes are in this process's heap, not a slot mapping.
    assert!(frames.iter().all(|f| !f
        .mapping
        .as_deref()
        .unwrap_or("")
        .contains("memfd:cuframes-slot")));
    assert_eq!(stats.get::<u64>("copied").unwrap(), 100, "{stats}");
    assert_eq!(stats.get::<u64>("stream-changes").unwrap(), 1, "{stats}");
}

/// A Vulkan publisher (`cuframes-publish --backend vulkan`: software
/// decode uploaded into exportable Vulkan memory) read by `cuframessrc
/// backend=auto`: the facade imports the opaque fds (with Vulkan, or CUDA
/// where a driver is present), every frame is copied to host memory once
/// and equals FFmpeg's decode. Prints `SKIP:` without a Vulkan device
/// (lavapipe will do) unless `CUFRAMES_REQUIRE_VULKAN=1`.
#[test]
fn src_reads_a_vulkan_publisher_with_backend_auto() {
    if !vulkan_or_skip("src_reads_a_vulkan_publisher_with_backend_auto") {
        return;
    }
    let (frames, stats) = subscribe_clip_on("vulkan", "src_vulkan", "sample-h264.mp4", true, &[]);
    assert_reference(&frames, "sample-h264.mp4");
    // GPU memory is never wrapped: each frame is a host copy.
    assert_eq!(stats.get::<u64>("copied").unwrap(), 100, "{stats}");
    assert_eq!(stats.get::<u64>("zero-copy").unwrap(), 0, "{stats}");
    assert!(frames.iter().all(|f| !f
        .mapping
        .as_deref()
        .unwrap_or("")
        .contains("memfd:cuframes-slot")));
}

/// 10-bit HEVC as P010_10LE, zero-copy (its 1280-byte rows need no padding).
#[test]
fn src_p010_frames_match_ffmpeg() {
    let (frames, stats) = subscribe_clip("src_p010", "sample-hevc10.mkv", false, &[]);
    assert_reference(&frames, "sample-hevc10.mkv");
    let caps = frames[0].caps.structure(0).unwrap();
    assert_eq!(caps.get::<&str>("format").unwrap(), "P010_10LE");
    assert_eq!(stats.get::<u64>("zero-copy").unwrap(), 30, "{stats}");
}

/// max-leased-buffers=0 copies every frame and returns its lease at once.
#[test]
fn src_copies_when_no_buffer_may_hold_a_lease() {
    init();
    let dir = runtime_dir("src_copy_all");
    let input = media("sample-h264.mp4");
    let publ = publisher(
        &dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--key",
            "copyall",
            "--policy",
            "wait",
        ]
        .into_iter()
        .chain(["--wait-subscribers", "1"])
        .collect::<Vec<_>>(),
    );
    let pipeline = launch(&format!(
        "cuframessrc name=src key=copyall runtime-dir={} mode=in-order reconnect=false timeout=20000 max-leased-buffers=0 ! appsink name=sink sync=false",
        dir.display()
    ));
    let appsink = appsink(&pipeline);
    pipeline.set_state(gst::State::Playing).unwrap();
    let reference = framemd5_hashes("sample-h264.mp4.framemd5");
    let mut held = Vec::new();
    pull_until(&appsink, Duration::from_secs(60), |s| {
        let caps = s.caps().unwrap();
        let info = gst_video::VideoInfo::from_caps(caps).unwrap();
        held.push(frame_md5(s.buffer().unwrap(), &info));
        true
    });
    check_bus(&pipeline);
    let stats = pipeline
        .by_name("src")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    finish(publ, "cuframes-publish");
    assert_eq!(held, reference);
    assert_eq!(stats.get::<u64>("copied").unwrap(), 100, "{stats}");
    assert_eq!(stats.get::<u64>("zero-copy").unwrap(), 0, "{stats}");
}

fn launch(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

fn appsink(p: &gst::Pipeline) -> gst_app::AppSink {
    p.by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap()
}

/// Runs `p` to EOS (or fails on an error or after 60 s), then stops it.
fn run_to_eos(p: &gst::Pipeline) {
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS within 60 s");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{}: {:?}", e.error(), e.debug());
    }
    p.set_state(gst::State::Null).unwrap();
}

/// The per-frame MD5s of a file of back-to-back raw frames of `frame` bytes.
fn chunk_md5s(path: &std::path::Path, frame: usize) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(
        data.len() % frame,
        0,
        "{} is not whole frames",
        path.display()
    );
    data.chunks(frame).map(md5_hex).collect()
}

/// `videotestsrc ! cuframessink` is a publisher: `cuframes-subscribe
/// --framemd5` receives exactly the frames the same pipeline writes to a
/// file, for NV12 1280x720 and for P010_10LE 320x240 (rows padded in the
/// slot: 640 bytes to a 768-byte pitch).
#[test]
fn sink_publishes_what_filesink_writes() {
    init();
    for (n, (format, w, h, bytes)) in [
        ("NV12", 1280, 720, 1280 * 720 * 3 / 2),
        ("P010_10LE", 320, 240, 320 * 240 * 3),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = runtime_dir(&format!("sink{n}"));
        let key = format!("sink{n}");
        let src = format!(
            "videotestsrc num-buffers=100 pattern=ball ! video/x-raw,format={format},width={w},height={h},framerate=25/1"
        );
        let out = dir.join("sub.framemd5");
        let sub = std::process::Command::new(tool("cuframes-subscribe"))
            .args(["--runtime-dir", dir.to_str().unwrap(), "--key", &key])
            .args([
                "--mode",
                "in-order",
                "--no-reconnect",
                "--wait-publisher-ms",
                "20000",
            ])
            .args(["--framemd5", out.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let publishing = launch(&format!(
            "{src} ! cuframessink name=pub key={key} runtime-dir={} policy=wait wait-subscribers=1 sync=false",
            dir.display()
        ));
        run_to_eos(&publishing);
        let stats = publishing
            .by_name("pub")
            .unwrap()
            .property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u64>("published").unwrap(), 100, "{stats}");
        assert_eq!(stats.get::<u64>("dropped").unwrap(), 0, "{stats}");
        finish(sub, "cuframes-subscribe");
        let raw = dir.join("frames.raw");
        run_to_eos(&launch(&format!(
            "{src} ! filesink location={}",
            raw.display()
        )));
        let want = chunk_md5s(&raw, bytes);
        let got: Vec<String> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
            .collect();
        assert_eq!(want.len(), 100);
        assert_eq!(got, want, "{format}");
    }
}

/// The publisher is killed (SIGKILL) and started again: with
/// reconnect=true the source keeps producing frames of the new publisher,
/// the first of them flagged DISCONT, with no error on the bus.
#[test]
fn src_resumes_after_the_publisher_restarts() {
    init();
    let dir = runtime_dir("src_reconnect");
    let input = media("sample-h264.mp4");
    let args = [
        "--input",
        input.to_str().unwrap(),
        "--key",
        "restart",
        "--loop",
        "--realtime",
    ];
    let mut first = publisher(&dir, &args);
    let pipeline = launch(&format!(
        "cuframessrc name=src key=restart runtime-dir={} reconnect=true timeout=20000 ! appsink name=sink sync=false",
        dir.display()
    ));
    let appsink = appsink(&pipeline);
    pipeline.set_state(gst::State::Playing).unwrap();
    let reference = framemd5_hashes("sample-h264.mp4.framemd5");
    let md5 = |s: &gst::Sample| {
        let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        frame_md5(s.buffer().unwrap(), &info)
    };
    let mut before = 0;
    pull_until(&appsink, Duration::from_secs(30), |s| {
        assert!(reference.contains(&md5(s)));
        before += 1;
        before < 10
    });
    assert_eq!(before, 10, "frames from the first publisher");
    first.kill().unwrap();
    first.wait().unwrap();
    // Frames already pulled into appsink's queue may still come; the
    // restart's first frame is the one flagged DISCONT.
    let mut second = publisher(&dir, &args);
    let (mut after, mut resumed) = (0, false);
    pull_until(&appsink, Duration::from_secs(30), |s| {
        assert!(
            reference.contains(&md5(s)),
            "a frame that is no frame of the clip"
        );
        if s.buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
        {
            resumed = true;
        }
        if resumed {
            after += 1;
        }
        after < 10
    });
    check_bus(&pipeline);
    let stats = pipeline
        .by_name("src")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(resumed, "no DISCONT buffer after the restart");
    assert_eq!(after, 10, "frames after the restart");
    assert!(stats.get::<u64>("reconnects").unwrap() >= 1, "{stats}");
}

/// One line of an `ffmpeg -c copy -f framemd5` listing: (size, md5).
fn packet_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split(',').map(str::trim).collect();
            (c[4].parse().unwrap(), c[5].to_owned())
        })
        .collect()
}

fn ffmpeg(args: &[&str]) -> String {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .output()
        .expect("ffmpeg (.ci/setup-debian installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cuframespacketsrc ! h264parse ! mp4mux` (and HEVC into Matroska)
/// records the publisher's packets: `ffmpeg -c copy -f framemd5` of the
/// recording equals the source's for every packet after the first, the
/// first carries the parameter sets in band in front of the source's
/// keyframe, only the source's keyframes are keyframes in the recording, and
/// the recording decodes to exactly FFmpeg's reference frames.
#[test]
fn packet_src_records_the_source_packets() {
    init();
    for (clip, parse, mux, ext) in [
        ("sample-h264.mp4", "h264parse", "mp4mux", "mp4"),
        ("sample-hevc.mkv", "h265parse", "matroskamux", "mkv"),
    ] {
        let key = ext;
        let dir = runtime_dir(&format!("packets_{ext}"));
        let input = media(clip);
        let publ = publisher(
            &dir,
            &[
                "--input",
                input.to_str().unwrap(),
                "--key",
                key,
                "--packets",
            ]
            .into_iter()
            .chain(["--policy", "wait", "--wait-subscribers", "1"])
            .collect::<Vec<_>>(),
        );
        let rec = dir.join(format!("rec.{ext}"));
        run_to_eos(&launch(&format!(
            "cuframespacketsrc key={key} runtime-dir={} reconnect=false timeout=20000 ! {parse} ! {mux} ! filesink location={}",
            dir.display(),
            rec.display()
        )));
        finish(publ, "cuframes-publish");
        let rec = rec.to_str().unwrap();
        let got = packet_lines(&ffmpeg(&["-i", rec, "-c", "copy", "-f", "framemd5", "-"]));
        let want = packet_lines(
            &std::fs::read_to_string(media(&format!("{clip}.packets.framemd5"))).unwrap(),
        );
        assert_eq!(got.len(), want.len(), "{clip}: packet count");
        if parse == "h264parse" {
            // AVC samples with the parameter sets in codec_data: the MP4
            // holds the source's samples, every one.
            assert_eq!(got, want, "{clip}: packets");
        } else {
            // HEVC goes out as a byte stream with the parameter sets in
            // front of the first keyframe: that sample is larger.
            assert_eq!(got[1..], want[1..], "{clip}: packets after the first");
            assert!(
                got[0].0 > want[0].0,
                "{clip}: first packet without its parameter sets"
            );
        }
        // Keyframes stay keyframes (DELTA_UNIT on the others): the clips'
        // IDRs are frames 0, 25, 50, 75.
        let probe = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "packet=flags",
            ])
            .args(["-of", "csv=p=0", rec])
            .output()
            .unwrap();
        let keys: Vec<usize> = String::from_utf8_lossy(&probe.stdout)
            .lines()
            .enumerate()
            .filter(|(_, f)| f.starts_with('K'))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(keys, [0, 25, 50, 75], "{clip}: keyframes of the recording");
        let frames: Vec<String> = ffmpeg(&["-i", rec, "-pix_fmt", "nv12", "-f", "framemd5", "-"])
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
            .collect();
        assert_eq!(
            frames,
            framemd5_hashes(&format!("{clip}.framemd5")),
            "{clip}: decoded frames"
        );
    }
}

/// A downstream element that holds a zero-copy buffer past the publisher's
/// lease timeout (100 ms here) does not stall the publisher: the lease is
/// revoked, frames keep coming (copied while three buffers are held: the
/// lease limit), and the source counts the revoked buffer when it is freed.
#[test]
fn src_buffer_held_past_the_lease_timeout_is_revoked() {
    init();
    let dir = runtime_dir("src_revoke");
    let input = media("sample-h264.mp4");
    let publ = publisher(
        &dir,
        &[
            "--input",
            input.to_str().unwrap(),
            "--key",
            "revoke",
            "--realtime",
        ]
        .into_iter()
        .chain(["--lease-timeout-ms", "100"])
        .collect::<Vec<_>>(),
    );
    let pipeline = launch(&format!(
        "cuframessrc name=src key=revoke runtime-dir={} reconnect=false timeout=20000 ! appsink name=sink sync=false",
        dir.display()
    ));
    let appsink = appsink(&pipeline);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut held = Vec::new();
    let mut n = 0;
    // Hold the first three buffers while 50 more frames (2 s of the
    // realtime source) pass, then free them.
    pull_until(&appsink, Duration::from_secs(30), |s| {
        n += 1;
        if held.len() < 3 {
            held.push(s.clone());
        }
        n < 53
    });
    assert_eq!(n, 53, "frames kept coming while buffers were held");
    drop(held);
    let src = pipeline.by_name("src").unwrap();
    let stats = src.property::<gst::Structure>("stats");
    check_bus(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    finish(publ, "cuframes-publish");
    assert!(stats.get::<u64>("revoked").unwrap() >= 1, "{stats}");
    assert!(stats.get::<u64>("copied").unwrap() >= 1, "{stats}");
}

/// New caps of another size on `cuframessink` make a new ring and
/// STREAM_CHANGED: `cuframes-subscribe` follows it and receives every frame
/// of both sizes, bit-exact.
#[test]
fn sink_follows_caps_changes_with_a_new_ring() {
    init();
    let dir = runtime_dir("sink_change");
    let out = dir.join("sub.framemd5");
    let sub = std::process::Command::new(tool("cuframes-subscribe"))
        .args(["--runtime-dir", dir.to_str().unwrap(), "--key", "change"])
        .args([
            "--mode",
            "in-order",
            "--no-reconnect",
            "--wait-publisher-ms",
            "20000",
        ])
        .args(["--framemd5", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pipeline = launch(&format!(
        "appsrc name=src format=time ! cuframessink name=pub key=change runtime-dir={} policy=wait wait-subscribers=1 sync=false socket-mode=384",
        dir.display()
    ));
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut want = Vec::new();
    let mut n = 0u64;
    for (w, h) in [(320usize, 240usize), (160, 120)] {
        let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Nv12, w as u32, h as u32)
            .fps(gst::Fraction::new(25, 1))
            .build()
            .unwrap()
            .to_caps()
            .unwrap();
        src.set_caps(Some(&caps));
        for _ in 0..5 {
            // Packed NV12 (width a multiple of 4: GStreamer's default strides).
            let data: Vec<u8> = (0..w * h * 3 / 2)
                .map(|i| (i as u64 * 7 + n * 13) as u8)
                .collect();
            want.push(md5_hex(&data));
            let mut b = gst::Buffer::from_mut_slice(data);
            b.get_mut()
                .unwrap()
                .set_pts(gst::ClockTime::from_mseconds(40 * n));
            src.push_buffer(b).unwrap();
            n += 1;
        }
    }
    // socket-mode=384 (0600) reached the publisher's socket.
    use std::os::unix::fs::PermissionsExt;
    let sock = dir.join("change.sock");
    // The sink makes its publisher when the first caps reach its streaming
    // thread (appsrc queues what it is pushed).
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while !sock.exists() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", sock.display());
    src.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS within 60 s");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{}: {:?}", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    finish(sub, "cuframes-subscribe");
    let got: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(got, want);
}
