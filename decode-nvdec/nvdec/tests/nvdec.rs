//! NVDEC decode on a real GPU, frame by frame against FFmpeg's software
//! reference MD5s. `#[ignore]`d: CI has no GPU; `scripts/gpu-tests.sh` runs
//! them with `--ignored` on the GPU machine, where a missing driver or
//! libnvcuvid is a failure, not a silent pass.

use cuframes_core::layout::StreamDesc;
use cuframes_core::runtime::Exporter;
use cuframes_cuda::{CudaBackend, CudaConfig, CudaStream};
use cuframes_media::{AnnexB, Demuxer};
use cuframes_nvdec::{nvdec_available, NvdecDecoder};
use md5::{Digest, Md5};

use cuframes_testkit::{framemd5_hashes, media};
use std::time::Instant;

/// Decodes `clip` with NVDEC, checks every frame's MD5 against
/// `media/CLIP.framemd5`, and returns the distinct frame sizes in order.
fn decode_and_check(clip: &str) -> Vec<(u32, u32)> {
    assert!(
        nvdec_available(),
        "no NVDEC here: GPU tests must run on the GPU machine (scripts/gpu-tests.sh)"
    );
    let want = framemd5_hashes(&format!("{clip}.framemd5"));
    let mut demux = Demuxer::open(&media(clip)).unwrap();
    let info = demux.info().clone();
    let annexb = AnnexB::new(info.codec, &info.extradata).unwrap();
    let backend = CudaBackend::publisher(CudaConfig::default()).unwrap();
    let device = backend.device().unwrap().clone();
    let stream = CudaStream::new(&device).unwrap();
    let mut dec = NvdecDecoder::new(&device, info.codec, annexb.extradata()).unwrap();
    let mut slot = None;
    let mut desc: Option<StreamDesc> = None;
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    let mut host = Vec::new();
    let mut buf = Vec::new();
    let mut eof = false;
    let t0 = Instant::now();
    loop {
        if let Some(f) = dec.next_frame(stream.raw()).unwrap() {
            let si = f.info();
            // A new size or format mid-stream: a new layout and slot, as the
            // publisher re-creates its ring.
            let geometry = |d: &StreamDesc| {
                (d.width as u32, d.height as u32, d.format()) == (si.width, si.height, si.format)
            };
            if !desc.as_ref().is_some_and(geometry) {
                desc =
                    Some(StreamDesc::packed(si.width, si.height, si.format, info.codec).unwrap());
                slot = None;
                sizes.push((si.width, si.height));
            }
            let d = desc.unwrap();
            let s = slot.get_or_insert_with(|| backend.allocate(0, d.frame_size).unwrap());
            for i in 0..2 {
                let (p, pitch) = f.plane(i).unwrap();
                s.copy_plane_from_device(&d, i, p, pitch, stream.raw())
                    .unwrap();
            }
            stream.synchronize().unwrap();
            drop(f);
            host.clear();
            for i in 0..2 {
                let (row, rows) = d
                    .format()
                    .plane_extent(i as u32, d.width as u32, d.height as u32)
                    .unwrap();
                let at = host.len();
                host.resize(at + (row * rows) as usize, 0);
                s.copy_plane_to_host(&d, i, &mut host[at..]).unwrap();
            }
            let h: String = Md5::digest(&host)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            got.push(h);
            continue;
        }
        if dec.is_drained() {
            break;
        }
        match demux.read_packet().unwrap() {
            Some(p) => {
                annexb.convert(&p.data, &mut buf).unwrap();
                dec.send_packet(&buf, p.pts).unwrap();
            }
            None if !eof => {
                dec.send_eof().unwrap();
                eof = true;
            }
            None => break,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(got.len(), want.len(), "{clip}: frame count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g, w,
            "{clip}: frame {i} differs from FFmpeg's software decode"
        );
    }
    println!(
        "figure: NVDEC {clip}: {} frames bit-identical to FFmpeg, {:.0} fps including D2D + D2H copies and MD5",
        got.len(),
        got.len() as f64 / secs
    );
    sizes
}

#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC: run by scripts/gpu-tests.sh"]
fn nvdec_h264_mp4_matches_ffmpeg() {
    decode_and_check("sample-h264.mp4");
}

#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC: run by scripts/gpu-tests.sh"]
fn nvdec_hevc_mkv_matches_ffmpeg() {
    decode_and_check("sample-hevc.mkv");
}

#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC: run by scripts/gpu-tests.sh"]
fn nvdec_hevc_10bit_decodes_to_p010_matching_ffmpeg() {
    // The reference is `-pix_fmt p010le`: NVDEC's P016 output is the P010 layout.
    decode_and_check("sample-hevc10.mkv");
}

#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC: run by scripts/gpu-tests.sh"]
fn nvdec_raw_annexb_matches_ffmpeg() {
    decode_and_check("sample-h264.h264");
}

#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC: run by scripts/gpu-tests.sh"]
fn nvdec_resolution_change_mid_stream_matches_ffmpeg() {
    // 50 frames of 640x360 then 50 of 320x240; the reference keeps each
    // frame's decoded size (`-autoscale 0`). The second size fits the first
    // decoder's maximum: cuvidReconfigureDecoder when no picture is queued,
    // else a second decoder.
    let sizes = decode_and_check("sample-size-change.ts");
    assert_eq!(sizes, [(640, 360), (320, 240)]);
}

#[test]
#[ignore = "needs an NVIDIA GPU with NVDEC: run by scripts/gpu-tests.sh"]
fn nvdec_h264_1080p_matches_ffmpeg() {
    let sizes = decode_and_check("sample-1080p.mp4");
    assert_eq!(sizes, [(1920, 1080)]);
}
