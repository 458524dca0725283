//! Demux + software decode of the committed sample clips, checked frame by
//! frame against the MD5s `ffmpeg -f framemd5 -pix_fmt nv12` wrote
//! (`media/*.framemd5`, see `media/README.md`). CPU only.

use cuframes_media::cuframes_core::{Codec, PixelFormat};
use cuframes_media::{
    DecodeError, Decoded, Decoder, Demuxer, HostFrame, OpenError, PlaneLayout, SoftwareDecoder,
};
use md5::{Digest, Md5};

use cuframes_testkit::{framemd5_hashes, media};

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Pulls the next frame, feeding packets as the decoder asks; `None` at the
/// end of the stream.
fn next_frame(demuxer: &mut Demuxer, decoder: &mut SoftwareDecoder) -> Option<HostFrame> {
    loop {
        match decoder.receive_frame().expect("receive_frame") {
            Decoded::Frame(frame) => return Some(frame),
            Decoded::NeedInput => match demuxer.read_packet().expect("read_packet") {
                Some(packet) => decoder.send_packet(&packet).expect("send_packet"),
                None => decoder.send_eof().expect("send_eof"),
            },
            Decoded::Eof => return None,
        }
    }
}

fn check_against_reference(clip: &str, reference: &str, codec: Codec) {
    let expected = framemd5_hashes(reference);
    assert_eq!(expected.len(), 100, "{reference} should list 100 frames");

    let mut demuxer = Demuxer::open(&media(clip)).expect("open");
    let info = demuxer.info().clone();
    assert_eq!(info.codec, codec);
    assert_eq!((info.width, info.height), (1280, 720));
    assert_eq!(info.frame_rate, (25, 1));
    assert!(!info.extradata.is_empty() || clip.ends_with(".h264"));

    let mut decoder = SoftwareDecoder::new(&demuxer).expect("decoder");
    let mut got = Vec::new();
    while let Some(frame) = next_frame(&mut demuxer, &mut decoder) {
        assert_eq!(frame.format, PixelFormat::Nv12);
        assert_eq!((frame.width, frame.height), (1280, 720));
        assert_eq!(frame.packed_bytes().len(), 1280 * 720 * 3 / 2);
        assert_eq!(frame.plane(0).len(), 1280 * 720);
        assert_eq!(frame.plane(1).len(), 1280 * 360);
        if got.is_empty() {
            assert!(frame.keyframe, "{clip}: first frame must be a keyframe");
        }
        // Presentation order at 25 fps from 0, also for the raw stream, which
        // carries no timestamps (times come from the frame rate, as in the CLI).
        let i = got.len() as i64;
        assert_eq!(frame.pts_ns, Some(i * 40_000_000), "{clip}: frame {i} time");
        got.push(md5_hex(frame.packed_bytes()));
    }
    // Receiving again after the end stays at the end.
    assert!(matches!(decoder.receive_frame(), Ok(Decoded::Eof)));

    for (i, (ours, theirs)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(ours, theirs, "{clip}: frame {i} differs from {reference}");
    }
    assert_eq!(got.len(), expected.len(), "{clip}: frame count");
}

#[test]
fn h264_mp4_matches_ffmpeg_nv12_reference() {
    check_against_reference("sample-h264.mp4", "sample-h264.mp4.framemd5", Codec::H264);
}

#[test]
fn hevc_mkv_matches_ffmpeg_nv12_reference() {
    check_against_reference("sample-hevc.mkv", "sample-hevc.mkv.framemd5", Codec::Hevc);
}

#[test]
fn raw_annexb_h264_matches_the_mp4_reference() {
    check_against_reference("sample-h264.h264", "sample-h264.mp4.framemd5", Codec::H264);
}

#[test]
fn packets_match_ffmpeg_packet_reference() {
    for clip in ["sample-h264.mp4", "sample-hevc.mkv"] {
        let expected = framemd5_hashes(&format!("{clip}.packets.framemd5"));
        let mut demuxer = Demuxer::open(&media(clip)).expect("open");
        let mut got = Vec::new();
        let mut keyframes = 0;
        while let Some(packet) = demuxer.read_packet().expect("read_packet") {
            keyframes += usize::from(packet.keyframe);
            // Matroska stores no decode timestamps; MP4 has both.
            assert!(packet.pts_ns.is_some(), "{clip}: packet without pts");
            if clip.ends_with(".mp4") {
                assert!(packet.dts_ns.is_some(), "{clip}: packet without dts");
            }
            got.push(md5_hex(&packet.data));
        }
        assert_eq!(got, expected, "{clip}: packet payloads");
        assert_eq!(keyframes, 4, "{clip}: one keyframe per 25-frame GOP");
        // End of file is sticky.
        assert!(demuxer.read_packet().expect("read after eof").is_none());
    }
}

#[test]
fn mp4_packet_timestamps_in_ns() {
    let mut demuxer = Demuxer::open(&media("sample-h264.mp4")).expect("open");
    assert_eq!(demuxer.info().time_base, (1, 12800));
    let first = demuxer.read_packet().expect("read").expect("a packet");
    assert!(first.keyframe);
    assert_eq!(first.pts, Some(0));
    assert_eq!(first.pts_ns, Some(0));
    // B-frames: decoding starts two frame durations (80 ms) before display.
    assert_eq!(first.dts, Some(-1024));
    assert_eq!(first.dts_ns, Some(-80_000_000));
    assert_eq!(first.duration, 512);
}

#[test]
fn rewind_restarts_from_frame_zero() {
    for (clip, reference) in [
        ("sample-h264.mp4", "sample-h264.mp4.framemd5"),
        ("sample-hevc.mkv", "sample-hevc.mkv.framemd5"),
        ("sample-h264.h264", "sample-h264.mp4.framemd5"),
    ] {
        let expected = framemd5_hashes(reference);
        let mut demuxer = Demuxer::open(&media(clip)).expect("open");
        let mut decoder = SoftwareDecoder::new(&demuxer).expect("decoder");
        for (i, hash) in expected.iter().take(10).enumerate() {
            let frame = next_frame(&mut demuxer, &mut decoder).expect("10 frames");
            assert_eq!(&md5_hex(frame.packed_bytes()), hash, "{clip}: frame {i}");
        }
        demuxer.rewind().expect("rewind");
        decoder.flush();
        let frame = next_frame(&mut demuxer, &mut decoder).expect("a frame after rewind");
        assert_eq!(
            md5_hex(frame.packed_bytes()),
            expected[0],
            "{clip}: first frame after rewind"
        );
        assert!(frame.keyframe);

        // Rewinding after the end (the `--loop` case) works as well.
        while next_frame(&mut demuxer, &mut decoder).is_some() {}
        demuxer.rewind().expect("rewind at eof");
        decoder.flush();
        let mut count = 0;
        while let Some(frame) = next_frame(&mut demuxer, &mut decoder) {
            assert_eq!(
                md5_hex(frame.packed_bytes()),
                expected[count],
                "{clip}: loop 2 frame {count}"
            );
            count += 1;
        }
        assert_eq!(count, expected.len(), "{clip}: frames in the second loop");
    }
}

#[test]
fn decoder_contract_errors() {
    let mut demuxer = Demuxer::open(&media("sample-h264.mp4")).expect("open");
    let mut decoder = SoftwareDecoder::new(&demuxer).expect("decoder");
    assert_eq!(decoder.name(), "libavcodec");
    let packet = demuxer.read_packet().expect("read").expect("a packet");
    decoder.send_eof().expect("eof");
    decoder.send_eof().expect("second eof is a no-op");
    assert!(matches!(
        decoder.send_packet(&packet),
        Err(DecodeError::AfterEof)
    ));
    decoder.flush();
    decoder.send_packet(&packet).expect("send after flush");
}

#[test]
fn missing_file_is_not_found() {
    let path = media("does-not-exist.mp4");
    match Demuxer::open(&path) {
        Err(OpenError::NotFound(p)) => assert_eq!(p, path),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn random_bytes_are_not_media() {
    match Demuxer::open(&media("not-video.bin")) {
        Err(e @ OpenError::NotMedia { .. }) => {
            assert!(e.to_string().contains("not-video.bin"), "{e}");
        }
        other => panic!("expected NotMedia, got {other:?}"),
    }
}

#[test]
fn mpeg4_part2_is_unsupported() {
    match Demuxer::open(&media("unsupported-mpeg4.avi")) {
        Err(e @ OpenError::UnsupportedCodec { .. }) => {
            let OpenError::UnsupportedCodec { codec, .. } = &e else {
                unreachable!()
            };
            assert_eq!(codec, "mpeg4");
            assert!(e.to_string().contains("mpeg4"), "{e}");
        }
        other => panic!("expected UnsupportedCodec, got {other:?}"),
    }
}

#[test]
fn directory_is_a_clear_error() {
    let dir = media("");
    match Demuxer::open(&dir) {
        Err(e @ OpenError::NotMedia { .. }) => {
            assert!(e.to_string().contains("directory"), "{e}");
        }
        other => panic!("expected NotMedia, got {other:?}"),
    }
}

/// Decodes all of `clip` in software: (width, height, format, MD5, pts ns)
/// per frame.
fn decode_all(clip: &str, limit: usize) -> Vec<(u32, u32, PixelFormat, String, Option<i64>)> {
    let mut demuxer = Demuxer::open(&media(clip)).expect("open");
    let mut decoder = SoftwareDecoder::new(&demuxer).expect("decoder");
    let mut got = Vec::new();
    while got.len() < limit {
        let Some(frame) = next_frame(&mut demuxer, &mut decoder) else {
            break;
        };
        let (planes, total) =
            PlaneLayout::packed(frame.format, frame.width, frame.height).expect("layout");
        assert_eq!(frame.planes, planes, "{clip}: frame {} layout", got.len());
        assert_eq!(frame.packed_bytes().len(), total);
        got.push((
            frame.width,
            frame.height,
            frame.format,
            md5_hex(frame.packed_bytes()),
            frame.pts_ns,
        ));
    }
    got
}

#[test]
fn hevc_10bit_decodes_to_p010_matching_ffmpeg() {
    // The reference is `ffmpeg -pix_fmt p010le` (media/make-samples.sh).
    let expected = framemd5_hashes("sample-hevc10.mkv.framemd5");
    assert_eq!(expected.len(), 30);
    let got = decode_all("sample-hevc10.mkv", usize::MAX);
    assert_eq!(got.len(), expected.len(), "frame count");
    for (i, ((w, h, format, hash, _), want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            (*w, *h, *format),
            (640, 360, PixelFormat::P010),
            "frame {i}"
        );
        assert_eq!(hash, want, "frame {i} differs from the p010le reference");
    }
}

#[test]
fn resolution_change_mid_stream_gives_frames_of_the_new_size() {
    // 50 frames of 640x360, then 50 of 320x240; the reference keeps each
    // frame's decoded size (`-autoscale 0`, media/README.md).
    let expected = framemd5_hashes("sample-size-change.ts.framemd5");
    assert_eq!(expected.len(), 100);
    let got = decode_all("sample-size-change.ts", usize::MAX);
    assert_eq!(got.len(), expected.len(), "frame count");
    for (i, ((w, h, format, hash, pts), want)) in got.iter().zip(&expected).enumerate() {
        let size = if i < 50 { (640, 360) } else { (320, 240) };
        assert_eq!((*w, *h), size, "frame {i} size");
        assert_eq!(*format, PixelFormat::Nv12);
        assert_eq!(hash, want, "frame {i} differs from the reference");
        // One timeline across the change: 40 ms apart.
        if i > 0 {
            let prev = got[i - 1].4.expect("pts");
            assert_eq!(pts.expect("pts") - prev, 40_000_000, "frame {i} time");
        }
    }
}

#[test]
fn h264_1080p_first_gop_matches_ffmpeg() {
    // The whole clip (300 frames) is for the GPU scale tests; one GOP is
    // enough to check the sample and its reference here.
    let expected = framemd5_hashes("sample-1080p.mp4.framemd5");
    assert_eq!(expected.len(), 300);
    let got = decode_all("sample-1080p.mp4", 30);
    assert_eq!(got.len(), 30);
    for (i, ((w, h, _, hash, pts), want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!((*w, *h), (1920, 1080));
        assert_eq!(hash, want, "frame {i}");
        // i / 30 s, rounded to the nearest ns.
        let want_ns = (i as i64 * 2_000_000_000 + 30) / 60;
        assert_eq!(*pts, Some(want_ns), "frame {i} time");
    }
}
