#!/usr/bin/env bash
# Builds the executables carried to the GPU machine (docs/gpu.md): the tools,
# the GPU test binaries, and libcuframes with the sources of the C / C++ GPU
# tests (compiled there), release mode, FFmpeg linked statically from a
# minimal build (FFMPEG_DIR, made by scripts/ffmpeg-static.sh), so they run
# where no FFmpeg libraries are installed. Output: gpu-carry/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${FFMPEG_DIR:=$PWD/target/ffmpeg-static/prefix}"
export FFMPEG_DIR
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/gpu}"
[ -f "$FFMPEG_DIR/lib/libavcodec.a" ] || { echo "no static FFmpeg in $FFMPEG_DIR: run scripts/ffmpeg-static.sh" >&2; exit 1; }

cargo build --release --locked -p cuframes-tools --features static-ffmpeg --bins
cargo build --release --locked -p cuframes-cuda --example cuda_to_vulkan
cargo build --release --locked -p cuframes-vulkan --example nv12_to_png
# libcuframes (the C ABI) for gpu-tests.sh section capi, which compiles C /
# C++ consumers against it on the GPU machine.
cargo build --release --locked -p cuframes-capi
# The facade: its example (gpu-tests.sh section 12) and its backend suite,
# whose CUDA instance section 1 runs.
cargo build --release --locked -p cuframes --features cuda,vulkan --example subscribe
facade_json=$(cargo test --release --locked -p cuframes --features cuda,vulkan --test backends --no-run --message-format=json 2>/dev/null)
tests_json=$(cargo test --release --locked -p cuframes-cuda -p cuframes-nvdec --features cuframes-media/static-ffmpeg --no-run --message-format=json 2>/dev/null)

rm -rf gpu-carry && mkdir -p gpu-carry/bin gpu-carry/tests gpu-carry/tests-multi gpu-carry/media
cp "$CARGO_TARGET_DIR"/release/cuframes-publish "$CARGO_TARGET_DIR"/release/cuframes-subscribe \
   "$CARGO_TARGET_DIR"/release/cuframes-gpu-bench "$CARGO_TARGET_DIR"/release/examples/cuda_to_vulkan \
   "$CARGO_TARGET_DIR"/release/examples/nv12_to_png "$CARGO_TARGET_DIR"/release/examples/subscribe \
   gpu-carry/bin/
# Test executables: name each by its target (crate-test) without the hash.
printf '%s\n%s\n' "$tests_json" "$facade_json" | python3 -c '
import json, sys, shutil
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        name = m["target"]["name"]
        # Only the targets that hold GPU tests (#[ignore]d in CI); the
        # two-GPU ones apart (gpu-multi.sh runs them, gpu-tests.sh does not).
        if name == "multi_gpu":
            dst = "gpu-carry/tests-multi/" + name
        elif name in ("gpu", "nvdec", "vulkan_interop", "backends"):
            dst = "gpu-carry/tests/" + name
        else:
            continue
        shutil.copy(m["executable"], dst)
        print("test binary:", dst)
'
cp media/sample-h264.mp4 media/sample-hevc.mkv media/sample-h264.h264 media/sample-hevc10.mkv \
   media/sample-size-change.ts media/sample-1080p.mp4 \
   media/*.framemd5 gpu-carry/media/
mkdir -p gpu-carry/capi/lib gpu-carry/capi/include/cuframes gpu-carry/capi/src
cp "$CARGO_TARGET_DIR"/release/libcuframes.so gpu-carry/capi/lib/
strip --strip-debug gpu-carry/capi/lib/libcuframes.so
cp bindings/c/include/cuframes/cuframes.h bindings/c/include/cuframes/cuframes.hpp gpu-carry/capi/include/cuframes/
cp bindings/c/tests/gpu/cuda_frames.c bindings/c/tests/gpu/cuda_release_after.cpp bindings/c/tests/c/md5.h \
   gpu-carry/capi/src/
# The Vulkan loader (Debian's libvulkan1, no dependencies beyond libc), for a
# GPU machine without one: gpu-tests.sh uses it only when ldconfig finds none.
mkdir -p gpu-carry/lib
cp -L /usr/lib/x86_64-linux-gnu/libvulkan.so.1 gpu-carry/lib/ 2>/dev/null \
  || echo "note: no libvulkan.so.1 here to carry (apt-get install libvulkan1)"
cp scripts/gpu-tests.sh scripts/gpu-bench.sh scripts/vulkan-icd.sh scripts/gpu-scale.sh scripts/torch_handoff.py \
   scripts/gpu-multi.sh gpu-carry/
# The Python bindings (section 8 of gpu-tests.sh): the abi3 wheel, unpacked
# into gpu-carry/python for PYTHONPATH (no pip needed there), its GPU checks,
# and the overhead benchmark with its Rust counterpart. Needs maturin
# (`pip install maturin`; MATURIN=path to pick one).
"${MATURIN:-maturin}" build --release --locked -m bindings/python/Cargo.toml -o gpu-carry/wheels
python3 -m zipfile -e gpu-carry/wheels/cuframes-*-abi3-*.whl gpu-carry/python
# The unpacked wheel is what runs there; the wheel itself would only use up the carry.
rm -rf gpu-carry/wheels
find gpu-carry/python -name '*.so' -exec strip --strip-debug {} +
cargo build --release --locked -p cuframes-python --example overhead_subscriber
cp "$CARGO_TARGET_DIR"/release/examples/overhead_subscriber gpu-carry/bin/
cp scripts/gpu-python.py bindings/python/bench/overhead.py gpu-carry/
# The patched FFmpeg with CUDA (scripts/gpu-ffmpeg.sh): built by
# `plugins/ffmpeg/build.sh --cuda` into target/ffmpeg-cuframes-cuda, carried
# with its libcuframes; skipped (with a note) when not built.
ffcuda=${FFMPEG_CUFRAMES_CUDA:-$PWD/target/ffmpeg-cuframes-cuda/prefix}
if [ -x "$ffcuda/bin/ffmpeg" ]; then
  mkdir -p gpu-carry/ffmpeg/bin gpu-carry/ffmpeg/lib
  cp "$ffcuda/bin/ffmpeg" gpu-carry/ffmpeg/bin/
  cp -P "$ffcuda"/lib/libcuframes.so* gpu-carry/ffmpeg/lib/
  strip gpu-carry/ffmpeg/bin/ffmpeg
  strip --strip-debug gpu-carry/ffmpeg/lib/libcuframes.so.*.*.*
  cp scripts/gpu-ffmpeg.sh gpu-carry/
else
  echo "note: no $ffcuda/bin/ffmpeg (plugins/ffmpeg/build.sh --cuda): gpu-ffmpeg.sh not carried"
fi
strip gpu-carry/bin/* gpu-carry/tests/* gpu-carry/tests-multi/* 2>/dev/null || true
du -sh gpu-carry
