#!/usr/bin/env bash
# The C ABI end to end: C and C++ programs compiled with cc / c++ against an
# installed libcuframes (`cargo cinstall --prefix=PREFIX`), through
# pkg-config, run against the real tools on the bundled clips.
#
#   bindings/c/tests/run.sh PREFIX [BIN_DIR]
#
# PREFIX: the cargo-c install prefix (its cuframes.pc is found under it).
# BIN_DIR: where cuframes-publish and cuframes-subscribe are (default
# target/debug). With CUFRAMES_CAPI_ASAN=1 every program is built with
# -fsanitize=address (leak checks on) and any report fails the run.
#
# Checks (each fails the script):
#  1. frames.c: every frame of sample-h264.mp4 (NV12) and sample-hevc10.mkv
#     (P010) from cuframes-publish hashes like media/*.framemd5 (FFmpeg);
#     then, with CUFRAMES_BACKEND_AUTO, every frame of sample-h264.mp4 from
#     `cuframes-publish --backend vulkan` (lavapipe on a machine without a
#     GPU) is read as CUFRAMES_MEMORY_VULKAN through
#     cuframes_frame_copy_to_host and hashes like the reference (skipped with
#     CUFRAMES_CAPI_VULKAN=0, or where an NVIDIA driver makes Auto pick CUDA);
#  2. packets.c: every packet of sample-h264.h264 hashes like its
#     `-c copy -f framemd5` reference, and the recorded elementary streams
#     (extradata + packets) of it and of sample-hevc.mkv decode to the
#     reference frames;
#  3. errors.c: the documented codes on the error paths;
#  4. publish.c: a C publisher's frames, read by `cuframes-subscribe
#     --framemd5`, hash like the reference;
#  5. frames.cpp (cuframes.hpp): as 1 for sample-hevc.mkv, plus the
#     wrapper's RAII and exceptions;
#  6. the examples of docs/c-api.md compile as written (C and C++), and the
#     C one runs against a publisher;
#  7. (ASan only) a deliberate use after free of packet data is reported,
#     so the sanitizer demonstrably watches libcuframes' allocations.
set -euo pipefail

prefix=${1:?usage: run.sh PREFIX [BIN_DIR]}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin=${2:-$root/target/debug}
media=$root/media
publish=$bin/cuframes-publish
subscribe=$bin/cuframes-subscribe
[ -x "$publish" ] && [ -x "$subscribe" ] || {
  echo "run.sh: $publish / $subscribe missing (cargo build -p cuframes-tools --bins)" >&2
  exit 1
}

pc=$(find "$prefix" -name cuframes.pc -print -quit)
[ -n "$pc" ] || { echo "run.sh: no cuframes.pc under $prefix" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir cuframes)
cflags=$(pkg-config --cflags cuframes)
libs="$(pkg-config --libs cuframes) -Wl,-rpath,$libdir"

work=$(mktemp -d "${TMPDIR:-/tmp}/cuframes-capi.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

san=""
if [ "${CUFRAMES_CAPI_ASAN:-0}" = 1 ]; then
  san="-fsanitize=address -fno-omit-frame-pointer -g"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
  echo ">> capi: AddressSanitizer build"
fi
CC=${CC:-cc}
CXX=${CXX:-c++}

build_c() { # SRC OUT
  # shellcheck disable=SC2086
  $CC -std=c11 -Wall -Wextra -Werror $san $cflags "$1" -o "$2" $libs
}
build_cxx() { # SRC OUT
  # shellcheck disable=SC2086
  $CXX -std=c++17 -Wall -Wextra -Werror $san $cflags "$1" -o "$2" $libs -pthread
}

fail() { echo "run.sh: FAILED: $*" >&2; exit 1; }

# The hash column of a framemd5 file.
ref_hashes() { grep -v '^#' "$1" | awk -F', *' '{print $6}'; }

# Starts cuframes-publish in a fresh runtime directory ($dir) for one
# waiting subscriber; extra args follow. Host memory unless $pub_backend.
start_publisher() { # KEY INPUT [ARGS...]
  local key=$1 input=$2
  shift 2
  dir=$(mktemp -d "$work/rt.XXXX")
  "$publish" --runtime-dir "$dir" --backend "${pub_backend:-host}" --input "$input" --key "$key" \
    --policy wait --wait-subscribers 1 --stats-interval 0 "$@" >/dev/null 2>"$dir/publish.log" &
  pids+=($!)
}

wait_publisher() { # DIR
  wait "${pids[-1]}" || fail "cuframes-publish failed: $(cat "$1/publish.log")"
  unset 'pids[-1]'
}

echo ">> capi: building the C and C++ programs with pkg-config ($(pkg-config --modversion cuframes), $libdir)"
for t in frames packets errors publish; do build_c "$here/c/$t.c" "$work/$t"; done
build_cxx "$here/cpp/frames.cpp" "$work/frames_cpp"

echo ">> capi 1: C subscriber, frame MD5s against FFmpeg's"
for clip in sample-h264.mp4 sample-hevc10.mkv; do
  start_publisher f1 "$media/$clip"
  "$work/frames" f1 "$dir" "$work/frames.txt" || fail "frames.c on $clip"
  wait_publisher "$dir"
  diff <(awk '{print $3}' "$work/frames.txt") <(ref_hashes "$media/$clip.framemd5") >/dev/null ||
    fail "frames.c: $clip frame MD5s differ from $clip.framemd5"
  echo "   $clip: $(wc -l <"$work/frames.txt") frames equal the reference"
done
if [ "${CUFRAMES_CAPI_VULKAN:-1}" = 0 ]; then
  echo "   Vulkan publisher: skipped (CUFRAMES_CAPI_VULKAN=0)"
elif nvidia-smi -L >/dev/null 2>&1; then
  echo "   Vulkan publisher: skipped (an NVIDIA driver is present: Auto reads a host-fenced Vulkan publisher with CUDA)"
else
  clip=sample-h264.mp4
  lsan=()
  if [ -n "$san" ]; then
    # The Vulkan driver (mesa) keeps a one-time allocation made while
    # vkEnumeratePhysicalDevices runs and is unloaded at exit, so LeakSanitizer
    # reports it from an unknown module; suppressed by its caller (full
    # unwinding through the driver, which has no frame pointers).
    printf 'leak:ash::instance::Instance::enumerate_physical_devices\n' >"$work/lsan-vulkan.supp"
    lsan=(env "ASAN_OPTIONS=$ASAN_OPTIONS:fast_unwind_on_malloc=0"
      "LSAN_OPTIONS=suppressions=$work/lsan-vulkan.supp")
  fi
  pub_backend=vulkan start_publisher f2 "$media/$clip"
  "${lsan[@]}" "$work/frames" f2 "$dir" "$work/frames.txt" auto vulkan ||
    fail "frames.c (auto) on a Vulkan publisher of $clip"
  wait_publisher "$dir"
  diff <(awk '{print $3}' "$work/frames.txt") <(ref_hashes "$media/$clip.framemd5") >/dev/null ||
    fail "frames.c: $clip frame MD5s from the Vulkan publisher differ from $clip.framemd5"
  echo "   $clip, Vulkan publisher, CUFRAMES_BACKEND_AUTO: $(wc -l <"$work/frames.txt") frames (CUFRAMES_MEMORY_VULKAN, copy_to_host) equal the reference"
fi

echo ">> capi 2: C packet recorder against the source's packets"
start_publisher p1 "$media/sample-h264.h264" --packets
"$work/packets" p1 "$dir" "$work/packets.txt" "$work/rec.h264" || fail "packets.c on sample-h264.h264"
wait_publisher "$dir"
diff <(awk '{print $2, $4}' "$work/packets.txt") \
  <(grep -v '^#' "$media/sample-h264.h264.packets.framemd5" | awk -F', *' '{print $5, $6}') >/dev/null ||
  fail "packets.c: packet sizes / MD5s differ from sample-h264.h264.packets.framemd5"
diff <(ffmpeg -v error -i "$work/rec.h264" -f framemd5 -pix_fmt nv12 - | awk -F', *' '!/^#/ {print $6}') \
  <(ref_hashes "$media/sample-h264.h264.framemd5") >/dev/null ||
  fail "the recorded H.264 stream does not decode to the reference frames"
echo "   sample-h264.h264: $(wc -l <"$work/packets.txt") packets equal the source's; the recording decodes to the reference"
start_publisher p2 "$media/sample-hevc.mkv" --packets
"$work/packets" p2 "$dir" "$work/packets.txt" "$work/rec.hevc" || fail "packets.c on sample-hevc.mkv"
wait_publisher "$dir"
diff <(ffmpeg -v error -f hevc -i "$work/rec.hevc" -f framemd5 -pix_fmt nv12 - | awk -F', *' '!/^#/ {print $6}') \
  <(ref_hashes "$media/sample-hevc.mkv.framemd5") >/dev/null ||
  fail "the recorded HEVC stream does not decode to the reference frames"
echo "   sample-hevc.mkv: $(wc -l <"$work/packets.txt") packets; the recording decodes to the reference"

echo ">> capi 3: error paths"
"$work/errors" "$(mktemp -d "$work/rt.XXXX")" || fail "errors.c"

echo ">> capi 4: C publisher, Rust subscriber"
dir=$(mktemp -d "$work/rt.XXXX")
ffmpeg -v error -i "$media/sample-h264.mp4" -f rawvideo -pix_fmt nv12 - >"$work/frames.nv12"
"$work/publish" cpub "$dir" 1280 720 <"$work/frames.nv12" 2>"$dir/publish.log" &
pids+=($!)
"$subscribe" --runtime-dir "$dir" --key cpub --wait-publisher-ms 10000 --no-reconnect \
  --framemd5 "$work/rust.framemd5" 2>"$dir/subscribe.log" || fail "cuframes-subscribe: $(cat "$dir/subscribe.log")"
wait_publisher "$dir"
diff <(ref_hashes "$work/rust.framemd5") <(ref_hashes "$media/sample-h264.mp4.framemd5") >/dev/null ||
  fail "the C publisher's frames differ from sample-h264.mp4.framemd5"
rm -f "$work/frames.nv12"
echo "   100 frames published from C equal the reference in cuframes-subscribe --framemd5"

echo ">> capi 5: C++ (cuframes.hpp)"
start_publisher x1 "$media/sample-hevc.mkv"
"$work/frames_cpp" x1 "$dir" "$work/cpp.txt" || fail "frames.cpp"
wait_publisher "$dir"
diff <(awk '{print $3}' "$work/cpp.txt") <(ref_hashes "$media/sample-hevc.mkv.framemd5") >/dev/null ||
  fail "frames.cpp: frame MD5s differ from sample-hevc.mkv.framemd5"
echo "   sample-hevc.mkv: 100 frames equal the reference"

echo ">> capi 6: the examples of docs/c-api.md, as written"
# Each example is the fenced block after a `<!-- example: NAME -->` line.
awk -v out="$work" '
  /^<!-- example: / { name = $3; next }
  name != "" && /^```/ { if (inside) { close(out "/" name); name = ""; inside = 0 } else inside = 1; next }
  inside { print > (out "/" name) }
' "$root/docs/c-api.md"
for ex in subscribe.c record_packets.c publish.c; do
  [ -s "$work/$ex" ] || fail "docs/c-api.md has no example $ex"
  build_c "$work/$ex" "$work/${ex%.c}_ex"
done
for ex in worker.cpp; do
  [ -s "$work/$ex" ] || fail "docs/c-api.md has no example $ex"
  build_cxx "$work/$ex" "$work/${ex%.cpp}_ex"
done
start_publisher cam1 "$media/sample-h264.mp4"
CUFRAMES_RUNTIME_DIR=$dir "$work/subscribe_ex" >"$work/ex.log" 2>&1 || fail "the docs' subscribe.c: $(cat "$work/ex.log")"
wait_publisher "$dir"
echo "   examples built; subscribe.c ran: $(tail -1 "$work/ex.log")"

if [ -n "$san" ]; then
  echo ">> capi 7: AddressSanitizer sees libcuframes' memory (a deliberate use after free)"
  build_c "$here/c/asan_canary.c" "$work/asan_canary"
  rc=0
  "$work/asan_canary" "$(mktemp -d "$work/rt.XXXX")" >/dev/null 2>"$work/canary.log" || rc=$?
  [ "$rc" = 86 ] && grep -q "heap-use-after-free" "$work/canary.log" ||
    fail "AddressSanitizer did not report the canary's use after free (exit $rc)"
  echo "   reported: heap-use-after-free"
fi

echo ">> capi: all passed${san:+ (AddressSanitizer: no reports)}"
