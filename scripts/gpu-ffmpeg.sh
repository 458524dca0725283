#!/usr/bin/env bash
# The patched FFmpeg on the GPU machine (docs/ffmpeg.md, docs/gpu.md): run
# from the folder scripts/gpu-build.sh fills (gpu-carry/), whose ffmpeg/
# holds the FFmpeg built by `plugins/ffmpeg/build.sh --cuda` and
# libcuframes. Against an NVDEC publisher (frames in VRAM):
#   1. -f cuframes (host rawvideo: libcuframes copies each frame to host):
#      every MD5 equals FFmpeg's reference decode;
#   2. -f cuframes -hwframes 1 (AV_PIX_FMT_CUDA frames copied
#      device-to-device into FFmpeg's pool) -> hwdownload: MD5s equal too;
#   3. -hwframes 1 -> scale_cuda=640:360 -> hwdownload: 100 frames of 640x360;
#   4. the same with -hwaccel cuda -hwaccel_output_format cuda on the input;
#   5. -hwframes 1 -> h264_nvenc where the GPU has NVENC (SKIP otherwise).
# Every check prints PASS or FAIL; the exit code is the number of failures.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT/ffmpeg"
BIN=$PWD/bin
MEDIA=$PWD/media
FF=$PWD/ffmpeg/bin/ffmpeg
export LD_LIBRARY_PATH=$PWD/ffmpeg/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
RT=$(mktemp -d /tmp/cuframes-ff.XXXX)
export CUFRAMES_RUNTIME_DIR=$RT
FAILS=0
SUMMARY=$OUT/ffmpeg-summary.txt
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
pass() { say "PASS $*"; }
fail() { say "FAIL $*"; FAILS=$((FAILS + 1)); }
hashes() { grep -v '^#' "$1" | awk -F', *' '{print $NF}'; }

say "# cuframes FFmpeg GPU checks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)"
say "# $("$FF" -hide_banner -version | head -1)"

publish() { # key, extra args...
  local key=$1; shift
  "$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key "$key" --backend cuda \
      --decoder nvdec --stats-interval 0 --wait-timeout-ms 60000 "$@" > "$OUT/ffmpeg/$key.publish.log" 2>&1 &
  PUB=$!
}

# 1. host rawvideo from CUDA frames
publish ff-host --policy wait --wait-subscribers 1
if timeout 120 "$FF" -v error -f cuframes -wait_publisher 20000 -i ff-host \
     -fps_mode passthrough -f framemd5 -pix_fmt nv12 "$OUT/ffmpeg/host.framemd5" 2> "$OUT/ffmpeg/host.err" \
   && diff <(hashes "$OUT/ffmpeg/host.framemd5") <(hashes "$MEDIA/sample-h264.mp4.framemd5") > /dev/null; then
  pass "ffmpeg -f cuframes (NVDEC publisher, frames copied to host by libcuframes): $(hashes "$OUT/ffmpeg/host.framemd5" | wc -l) frames, MD5s equal the reference"
else
  fail "ffmpeg -f cuframes host path: $(head -c 300 "$OUT/ffmpeg/host.err") $(hashes "$OUT/ffmpeg/host.framemd5" 2>/dev/null | wc -l) frames, $(diff <(hashes "$OUT/ffmpeg/host.framemd5") <(hashes "$MEDIA/sample-h264.mp4.framemd5") | grep -c '^[<>]') differing lines; first lines: $(grep -v '^#' "$OUT/ffmpeg/host.framemd5" 2>/dev/null | head -3 | tr '\n' ' ')"
fi
wait "$PUB"

# 2. CUDA frames, downloaded again: the device-to-device copy is exact
publish ff-hw --policy wait --wait-subscribers 1
if timeout 120 "$FF" -v error -f cuframes -hwframes 1 -wait_publisher 20000 -i ff-hw \
     -vf hwdownload,format=nv12 -fps_mode passthrough -f framemd5 "$OUT/ffmpeg/hw.framemd5" 2> "$OUT/ffmpeg/hw.err" \
   && diff <(hashes "$OUT/ffmpeg/hw.framemd5") <(hashes "$MEDIA/sample-h264.mp4.framemd5") > /dev/null; then
  pass "ffmpeg -f cuframes -hwframes 1 (AV_PIX_FMT_CUDA, D2D into FFmpeg's pool) -> hwdownload: $(hashes "$OUT/ffmpeg/hw.framemd5" | wc -l) frames, MD5s equal the reference"
else
  fail "ffmpeg -f cuframes -hwframes 1 -> hwdownload: $(head -c 300 "$OUT/ffmpeg/hw.err") $(hashes "$OUT/ffmpeg/hw.framemd5" 2>/dev/null | wc -l) frames, first lines: $(grep -v '^#' "$OUT/ffmpeg/hw.framemd5" 2>/dev/null | head -3 | tr '\n' ' ')"
fi
wait "$PUB"

# 3. and 4. scale_cuda on the CUDA frames, without and with -hwaccel cuda
n=3
for hwaccel in "" "-hwaccel cuda -hwaccel_output_format cuda"; do
  # (The first scale_cuda run JIT-compiles its PTX for seconds: the long
  # --wait-timeout-ms above keeps the InOrder reader from losing frames.)
  publish "ff-scale$n" --policy wait --wait-subscribers 1
  # shellcheck disable=SC2086
  if timeout 120 "$FF" -v error $hwaccel -f cuframes -hwframes 1 -wait_publisher 20000 -i "ff-scale$n" \
       -vf scale_cuda=640:360,hwdownload,format=nv12 -fps_mode passthrough -f framemd5 "$OUT/ffmpeg/scale$n.framemd5" \
       2> "$OUT/ffmpeg/scale$n.err"; then
    frames=$(hashes "$OUT/ffmpeg/scale$n.framemd5" | wc -l)
    dims=$(grep -m1 '^#dimensions' "$OUT/ffmpeg/scale$n.framemd5")
    if [ "$frames" = 100 ] && [[ "$dims" == *640x360* ]]; then
      pass "ffmpeg ${hwaccel:+$hwaccel }-f cuframes -hwframes 1 -vf scale_cuda=640:360: 100 frames, $dims"
    else
      fail "scale_cuda${hwaccel:+ ($hwaccel)}: $frames frames, $dims; $(grep -m2 -iE "warn|lag|error" "$OUT/ffmpeg/ff-scale$n.publish.log" | cut -c1-200)"
    fi
  else
    fail "scale_cuda${hwaccel:+ ($hwaccel)}: $(head -c 300 "$OUT/ffmpeg/scale$n.err")"
  fi
  wait "$PUB"
  n=$((n + 1))
done

# 5. NVENC takes the CUDA frames, where the GPU has an encoder (the H100 /
# H200 have none: NVDEC only).
publish ff-nvenc --policy wait --wait-subscribers 1
if timeout 120 "$FF" -v error -f cuframes -hwframes 1 -wait_publisher 20000 -i ff-nvenc \
     -c:v h264_nvenc -y "$OUT/ffmpeg/nvenc.mp4" 2> "$OUT/ffmpeg/nvenc.err"; then
  pass "ffmpeg -f cuframes -hwframes 1 -c:v h264_nvenc: $("$FF" -v error -i "$OUT/ffmpeg/nvenc.mp4" -c copy -f framemd5 - 2>/dev/null | grep -vc '^#') frames encoded"
elif grep -q "unsupported device" "$OUT/ffmpeg/nvenc.err"; then
  say "SKIP ffmpeg -c:v h264_nvenc: this GPU has no NVENC ($(grep -m1 -o 'OpenEncodeSessionEx failed: [^(]*' "$OUT/ffmpeg/nvenc.err"))"
else
  fail "ffmpeg -hwframes 1 -c:v h264_nvenc: $(head -c 300 "$OUT/ffmpeg/nvenc.err")"
fi
kill "$PUB" 2>/dev/null; wait "$PUB" 2>/dev/null

say "# failures: $FAILS"
rm -rf "$RT"
exit $FAILS
