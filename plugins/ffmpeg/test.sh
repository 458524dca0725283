#!/usr/bin/env bash
# Tests the patched FFmpeg's cuframes inputs against cuframes-publish on the
# bundled clips (docs/ffmpeg.md). Needs: the FFmpeg built by
# plugins/ffmpeg/build.sh (FFMPEG, default target/ffmpeg-cuframes/prefix/bin/ffmpeg),
# the tools (PUBLISH / SUBSCRIBE, default target/debug/cuframes-*), and
# Debian's stock ffmpeg on PATH for the raw pipe. Prints one line per
# check; exits non-zero when any fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
FFMPEG=${FFMPEG:-$root/target/ffmpeg-cuframes/prefix/bin/ffmpeg}
PUBLISH=${PUBLISH:-$root/target/debug/cuframes-publish}
SUBSCRIBE=${SUBSCRIBE:-$root/target/debug/cuframes-subscribe}
STOCK_FFMPEG=${STOCK_FFMPEG:-/usr/bin/ffmpeg}
media=$root/media
work=$(mktemp -d /tmp/cuframes-ffmpeg-test.XXXXXX)
export CUFRAMES_RUNTIME_DIR=$work/run
mkdir -p "$CUFRAMES_RUNTIME_DIR"
failures=0
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

for b in "$FFMPEG" "$PUBLISH" "$SUBSCRIBE" "$STOCK_FFMPEG"; do
  [ -x "$b" ] || { echo "FAIL: $b is missing (build it first)"; exit 1; }
done

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# The hash column of framemd5 output.
hashes() { grep -v '^#' "$1" | awk -F', *' '{print $NF}'; }
# A publisher in the background; waits for its socket.
publish() {
  local key=$1; shift
  # --wait-timeout-ms: under --policy wait an InOrder reader slower than the
  # ring for this long loses frames; a loaded CI machine must not.
  "$PUBLISH" --backend host --stats-interval 0 --wait-timeout-ms 60000 --key "$key" "$@" >"$work/$key.publish.log" 2>&1 &
  pids+=($!)
  last_pid=$!
  for _ in $(seq 200); do [ -S "$CUFRAMES_RUNTIME_DIR/$key.sock" ] && return 0; sleep 0.05; done
  echo "publisher for $key did not start:"; cat "$work/$key.publish.log"; return 1
}
same_hashes() { # what, got-file, want-file
  if diff <(hashes "$2") <(hashes "$3") >"$work/diff" && [ -s "$2" ] && [ "$(hashes "$2" | wc -l)" -gt 0 ]; then
    pass "$1 ($(hashes "$2" | wc -l) frames)"
  else
    fail "$1: $(wc -l <"$work/diff") differing lines; first: $(head -3 "$work/diff" | tr '\n' ' ')"
  fi
}

# 1. -f cuframes: decoded frames, every frame's MD5 equal to FFmpeg's reference.
for clip in sample-h264.mp4 sample-hevc.mkv sample-hevc10.mkv; do
  key=frames-${clip%%.*}; key=${key//_/-}
  pix=nv12; [ "$clip" = sample-hevc10.mkv ] && pix=p010le
  publish "$key" --input "$media/$clip" --policy wait --wait-subscribers 1 || { fail "$clip: publisher"; continue; }
  if "$FFMPEG" -v error -f cuframes -mode in_order -i "$key" -fps_mode passthrough -f framemd5 -pix_fmt "$pix" "$work/$key.framemd5" 2>"$work/$key.err"; then
    same_hashes "-f cuframes $clip (-pix_fmt $pix)" "$work/$key.framemd5" "$media/$clip.framemd5"
  else
    fail "-f cuframes $clip: ffmpeg failed: $(head -3 "$work/$key.err")"
  fi
  wait "$last_pid" 2>/dev/null
done

# 2. -f cuframes_packets -c copy to MP4 / Matroska: the file's packets hash like the source's.
for clip in sample-h264.mp4 sample-hevc.mkv; do
  key=packets-${clip%%.*}
  ext=mp4; [ "$clip" = sample-hevc.mkv ] && ext=mkv
  publish "$key" --input "$media/$clip" --packets --realtime --wait-subscribers 1 || { fail "$clip: publisher"; continue; }
  if "$FFMPEG" -v error -f cuframes_packets -i "$key" -c copy "$work/$key.$ext" 2>"$work/$key.err" \
     && "$STOCK_FFMPEG" -v error -i "$work/$key.$ext" -c copy -f framemd5 "$work/$key.framemd5" 2>>"$work/$key.err"; then
    same_hashes "-f cuframes_packets $clip -c copy .$ext" "$work/$key.framemd5" "$media/$clip.packets.framemd5"
  else
    fail "-f cuframes_packets $clip: $(head -3 "$work/$key.err")"
  fi
  wait "$last_pid" 2>/dev/null
done

# 3. A late start: joining a looping stream mid-way starts on a keyframe and decodes cleanly.
key=late
publish "$key" --input "$media/sample-h264.mp4" --packets --realtime --loop || fail "late: publisher"
sleep 1.3
if "$FFMPEG" -v error -f cuframes_packets -i "$key" -t 3 -c copy "$work/late.mkv" 2>"$work/late.err" \
   && "$STOCK_FFMPEG" -v error -xerror -i "$work/late.mkv" -f framemd5 "$work/late.framemd5" 2>>"$work/late.err"; then
  first_key=$("$STOCK_FFMPEG" -v error -i "$work/late.mkv" -c copy -f framemd5 - 2>/dev/null | grep -v '^#' | head -1)
  frames=$(hashes "$work/late.framemd5" | wc -l)
  if [ "$frames" -gt 10 ] && [ -n "$first_key" ]; then
    pass "late start: $frames frames decode without error"
  else
    fail "late start: only $frames frames"
  fi
else
  fail "late start: $(head -3 "$work/late.err")"
fi
kill "$last_pid" 2>/dev/null; wait "$last_pid" 2>/dev/null

# 4. Failures end FFmpeg with a clear error, never a hang past the timeout.
# -xerror: an input error after the start ends the FFmpeg CLI with status 0
# unless it is told to treat errors as fatal (FFmpeg's own rule).
expect_error() { # what, needle, ffmpeg args...
  local what=$1 needle=$2; shift 2
  local t0=$SECONDS
  if timeout 20 "$FFMPEG" -hide_banner -nostats -xerror "$@" -f null - >"$work/err.out" 2>&1; then
    fail "$what: ffmpeg succeeded"
  elif [ $((SECONDS - t0)) -ge 20 ]; then
    fail "$what: ffmpeg hung"
  elif grep -qi -- "$needle" "$work/err.out"; then
    pass "$what: $(grep -i -m1 -- "$needle" "$work/err.out" | cut -c1-120)"
  else
    fail "$what: no '$needle' in: $(tail -2 "$work/err.out" | tr '\n' ' ')"
  fi
}
expect_error "no publisher" "no publisher" -f cuframes -wait_publisher 500 -i nobody
expect_error "bad key" "key" -f cuframes -i 'bad/key'
publish frames-only --input "$media/sample-h264.mp4" --realtime --loop || fail "no packet ring: publisher"
expect_error "no packet ring" "packet ring" -f cuframes_packets -i frames-only
kill "$last_pid" 2>/dev/null; wait "$last_pid" 2>/dev/null
publish killed --input "$media/sample-h264.mp4" --realtime --loop || fail "kill: publisher"
( sleep 1.5; kill -9 "$last_pid" ) &
expect_error "publisher killed mid-stream (-timeout 2000)" "no frame for 2" -f cuframes -timeout 2000 -i killed

# 5. The raw pipe into Debian's stock FFmpeg (no patch).
key=rawpipe
publish "$key" --input "$media/sample-h264.mp4" --policy wait --wait-subscribers 1 || fail "raw pipe: publisher"
"$SUBSCRIBE" --key "$key" --no-reconnect --mode in-order --rawvideo - 2>"$work/raw.err" \
  | "$STOCK_FFMPEG" -v error -f rawvideo -pix_fmt nv12 -video_size 1280x720 -i pipe: -f framemd5 "$work/raw.framemd5"
same_hashes "cuframes-subscribe --rawvideo - | stock ffmpeg -f rawvideo" "$work/raw.framemd5" "$media/sample-h264.mp4.framemd5"
wait "$last_pid" 2>/dev/null

echo "== $failures failure(s)"
[ "$failures" -eq 0 ]
