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

/// `cuframessrc ! appsink` over a clip: returns each frame's MD5, caps,
/// flags and the mapping its bytes lie in, plus the source's stats.
fn subscribe_clip(
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
    let publ = publisher(&dir, &args);
    let pipeline = gst::parse::launch(&format!(
        "cuframessrc name=src key={key} runtime-dir={} mode=in-order reconnect=false timeout=20000 ! appsink name=sink sync=false",
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
