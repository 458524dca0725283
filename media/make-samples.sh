#!/usr/bin/env bash
# Regenerates the sample media and their FFmpeg reference hashes.
#
# Usage: media/make-samples.sh            (from anywhere; writes next to itself)
#
# Encoders are deterministic for a given build (x264/x265 without
# non-deterministic threading options), but a different FFmpeg / x264 / x265
# version may produce different bytes. The committed files are the reference;
# the .framemd5 files must always be regenerated together with their clip.
set -euo pipefail
cd "$(dirname "$0")"

FF=(ffmpeg -hide_banner -loglevel error -y)
# No Lavf/Lavc version strings, creation times or source metadata in the
# containers (x264 and x265 still write their own version/options SEI).
BITEXACT=(-fflags +bitexact -flags:v +bitexact -map_metadata -1)
# 1280x720, 25 fps, 100 frames (4 s) of synthetic content with motion.
SRC=(-f lavfi -i "testsrc2=size=1280x720:rate=25,format=yuv420p" -frames:v 100)

# H.264 High, default B-frames (so decode order != presentation order),
# closed GOP of 25 frames: an IDR every second (frames 0, 25, 50, 75).
"${FF[@]}" "${SRC[@]}" \
  -c:v libx264 -preset medium -crf 32 -pix_fmt yuv420p \
  -x264-params keyint=25:min-keyint=25:scenecut=0 \
  "${BITEXACT[@]}" -movflags +faststart sample-h264.mp4

# HEVC Main, same shape; closed GOP so every keyframe is an IDR.
"${FF[@]}" "${SRC[@]}" \
  -c:v libx265 -preset medium -crf 34 -pix_fmt yuv420p \
  -x265-params keyint=25:min-keyint=25:scenecut=0:open-gop=0:log-level=error \
  "${BITEXACT[@]}" sample-hevc.mkv

# HEVC Main 10 (10-bit 4:2:0), 640x360, 30 frames: the P010 path (NVDEC
# decodes it to P016, the P010 layout). Its reference hashes are P010.
"${FF[@]}" -f lavfi -i "testsrc2=size=640x360:rate=25,format=yuv420p10le" -frames:v 30 \
  -c:v libx265 -preset medium -crf 34 -pix_fmt yuv420p10le \
  -x265-params keyint=25:min-keyint=25:scenecut=0:open-gop=0:log-level=error \
  "${BITEXACT[@]}" sample-hevc10.mkv

# Raw Annex B elementary stream: the same H.264 bitstream as the mp4.
"${FF[@]}" -i sample-h264.mp4 -map 0:v:0 -c copy -bsf:v h264_mp4toannexb \
  "${BITEXACT[@]}" -f h264 sample-h264.h264

# MPEG-4 Part 2 (a codec the crate does not support), 10 frames of 160x120.
"${FF[@]}" -f lavfi -i "testsrc2=size=160x120:rate=25" -frames:v 10 \
  -c:v mpeg4 -pix_fmt yuv420p "${BITEXACT[@]}" unsupported-mpeg4.avi

# Not a media file: 512 pseudo-random bytes from a fixed seed (AES-CTR keystream).
head -c 512 /dev/zero | openssl enc -aes-128-ctr -nosalt \
  -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 > not-video.bin

# A resolution change mid-stream: 50 frames of 640x360 testsrc2, then 50 of
# 320x240 smptebars, each H.264 in MPEG-TS with SPS/PPS before every IDR
# (repeat-headers), joined by the concat demuxer (-c copy), which shifts the
# second part's timestamps to follow the first (pts 0..99 at 1/25 s).
XP=keyint=25:min-keyint=25:scenecut=0:repeat-headers=1
"${FF[@]}" -f lavfi -i "testsrc2=size=640x360:rate=25,format=yuv420p" -frames:v 50 \
  -c:v libx264 -preset medium -crf 32 -pix_fmt yuv420p -x264-params "$XP" \
  "${BITEXACT[@]}" -f mpegts change-part1.ts
"${FF[@]}" -f lavfi -i "smptebars=size=320x240:rate=25,format=yuv420p" -frames:v 50 \
  -c:v libx264 -preset medium -crf 32 -pix_fmt yuv420p -x264-params "$XP" \
  "${BITEXACT[@]}" -f mpegts change-part2.ts
printf 'file change-part1.ts\nfile change-part2.ts\n' > change-list.txt
"${FF[@]}" -f concat -safe 0 -i change-list.txt -c copy "${BITEXACT[@]}" -f mpegts sample-size-change.ts
rm change-part1.ts change-part2.ts change-list.txt

# 1080p H.264 for GPU scale tests: 10 s at 30 fps, IDR every 30 frames,
# low quality (crf 36) to stay small.
"${FF[@]}" -f lavfi -i "testsrc2=size=1920x1080:rate=30,format=yuv420p" -frames:v 300 \
  -c:v libx264 -preset medium -crf 36 -pix_fmt yuv420p \
  -x264-params keyint=30:min-keyint=30:scenecut=0 \
  "${BITEXACT[@]}" -movflags +faststart sample-1080p.mp4

# Reference NV12 frame hashes (decoded frames) and packet hashes.
for clip in sample-h264.mp4 sample-hevc.mkv sample-h264.h264 unsupported-mpeg4.avi sample-1080p.mp4; do
  ffmpeg -i "$clip" -f framemd5 -pix_fmt nv12 - > "$clip.framemd5" 2>/dev/null
done
# Frames at their decoded sizes: without -autoscale 0 the CLI scales every
# frame after the change back to the first size (640x360).
ffmpeg -i sample-size-change.ts -autoscale 0 -f framemd5 -pix_fmt nv12 - > sample-size-change.ts.framemd5 2>/dev/null
for clip in sample-h264.mp4 sample-hevc.mkv sample-h264.h264; do
  ffmpeg -i "$clip" -c copy -f framemd5 - > "$clip.packets.framemd5" 2>/dev/null
done

ffmpeg -fflags +bitexact -i sample-hevc10.mkv -f framemd5 -pix_fmt p010le sample-hevc10.mkv.framemd5 2>/dev/null

ls -l
