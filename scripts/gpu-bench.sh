#!/usr/bin/env bash
# The GPU half of the benchmark report (docs/BENCHMARKS.md), run on the GPU
# machine from the folder scripts/gpu-build.sh fills. Results: $OUT/bench.txt.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
BIN=$PWD/bin
MEDIA=$PWD/media
export CUFRAMES_RUNTIME_DIR=$(mktemp -d /tmp/cuframes-bench.XXXX)
RT=$CUFRAMES_RUNTIME_DIR
. ./vulkan-icd.sh
R=$OUT/bench.txt
: > "$R"
say() { echo "$*" | tee -a "$R"; }

say "# cuframes GPU benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "# $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1); $(nproc) cores"
say "# torch: $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1 | tail -1)"

# MPS (docs/gpu.md "MPS"): a control daemon started for the run, with its
# pipe and log directories private to the run; no compute-mode change (GPU
# settings are not ours to change). `mps_start` / `mps_stop`.
MPS_DIR=$(mktemp -d /tmp/cuframes-mps.XXXX)
mps_start() {
  export CUDA_MPS_PIPE_DIRECTORY=$MPS_DIR/pipe CUDA_MPS_LOG_DIRECTORY=$MPS_DIR/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  nvidia-cuda-mps-control -d && sleep 1
}
mps_stop() {
  echo quit | nvidia-cuda-mps-control 2>/dev/null
  sleep 1
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
trap 'mps_stop >/dev/null 2>&1' EXIT

if [ -z "${SKIP_HANDOFF:-}" ]; then
# 1. kernel-to-kernel hand-off latency, cuframes vs torch.multiprocessing,
# without and with MPS in the same run (MPS_MODES="off on" by default). Wait
# modes: the default blocking wait (spin + anticipation, then the futex),
# the plain futex (--futex-only) and polling (--poll).
for mps in ${MPS_MODES:-off on}; do
  if [ "$mps" = on ]; then
    if ! mps_start; then say "[mps on] could not start nvidia-cuda-mps-control: skipped"; continue; fi
  fi
  for sync in host-fence ipc-event; do
    for wait in "" --futex-only --poll; do
      say "[mps $mps] $("$BIN/cuframes-gpu-bench" handoff --sync "$sync" --memory vmm-fd --frames 2000 $wait 2>&1 | tail -1)"
    done
  done
  say "[mps $mps] $("$BIN/cuframes-gpu-bench" handoff --sync host-fence --memory legacy-ipc --frames 2000 2>&1 | tail -1)"
  # The same hand-off with the subscriber as a thread of the publisher (one
  # CUDA context): separates the cost of two processes sharing the GPU.
  # (IpcEvent cannot run in one process: CUDA refuses to open an IPC handle
  # there.)
  for wait in "" --poll; do
    say "[mps $mps] $("$BIN/cuframes-gpu-bench" handoff --sync host-fence --memory vmm-fd --frames 2000 --in-process $wait 2>&1 | tail -1)"
  done
  say "[mps $mps] $(timeout 120 python3 torch_handoff.py --frames 2000 2>&1 | tail -1)"
  [ "$mps" = on ] && mps_stop
done
fi

# 1b. CUDA -> Vulkan hand-off next to CUDA -> CUDA (docs/vulkan.md): a CUDA
# VMM-fd publisher, a consumer process copying each frame device-to-device
# on its own queue (Vulkan: the VMM fd imported as an opaque fd). The
# Vulkan loader: the system's, or the one gpu-build.sh carried in lib/.
if [ -z "${SKIP_VULKAN:-}" ]; then
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && [ -f "$PWD/lib/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
for consumer in cuda vulkan; do
  say "$(timeout 120 "$BIN/cuda_to_vulkan" --consumer "$consumer" --frames 2000 2>&1 | tail -1)"
done
fi

# 2. one NVDEC decode feeding N subscribers vs N independent decodes.
# Frames delivered per second, and per NVDEC-second. NVDEC-seconds: the
# integral of the decoder utilisation of `nvidia-smi dmon -s u` (1-second
# samples of GPU $BENCH_GPU, default 0; utilisation is of all the GPU's NVDEC
# engines: one decode session on an H200 shows ~14 %, one of 7 engines), so
# time the decoders sat idle (processes starting, subscribers connecting)
# is not counted. The earlier formula — delivered / (mean utilisation of the
# samples above 0 × wall time) — is printed beside it for comparison.
F=${FRAMES:-20000}
G=${BENCH_GPU:-0}
dec_stats() {  # "MEAN_OF_ACTIVE SUM" of GPU $G's dec column in a dmon log
  awk -v g="$G" '/^#/ { for (i = 1; i <= NF; i++) { if ($i == "dec") c = i - 1; if ($i == "gpu") gc = i - 1 } next }
       c && gc && $gc == g { v = $c + 0; s += v; if (v > 0) { a += v; n++ } }
       END { printf "%.1f %.1f", n ? a / n : 0, s }' "$1"
}
measure() {  # measure NAME N MODE ; MODE = independent | shared
  local name=$1 n=$2 mode=$3 dmon=$OUT/dmon-$1.txt
  nvidia-smi dmon -s u -d 1 > "$dmon" 2>&1 &
  local mon=$!
  sleep 1
  local t0; t0=$(date +%s.%N)
  local pids=()
  if [ "$mode" = independent ]; then
    for i in $(seq 1 "$n"); do
      "$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key "ind$i" --backend cuda --decoder nvdec \
          --loop --max-frames $F --stats-interval 0 > "$OUT/$name-pub$i.log" 2>&1 &
      pids+=($!)
    done
  else
    "$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key shared --backend cuda --decoder nvdec \
        --policy wait --wait-subscribers "$n" --loop --max-frames $F --stats-interval 0 > "$OUT/$name-pub.log" 2>&1 &
    pids+=($!)
    for i in $(seq 1 "$n"); do
      "$BIN/cuframes-subscribe" --key shared --mode in-order --backend cuda --wait-publisher-ms 20000 \
          --name "s$i" > "$OUT/$name-sub$i.log" 2>&1 &
      pids+=($!)
    done
  fi
  for p in "${pids[@]}"; do wait "$p"; done
  local t1; t1=$(date +%s.%N)
  kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
  local util sum; read -r util sum < <(dec_stats "$dmon")
  local delivered=$((n * F))
  local fails; fails=$(grep -l "error" "$OUT/$name"-*.log 2>/dev/null | wc -l)
  awk -v name="$name" -v n="$n" -v d="$delivered" -v t0="$t0" -v t1="$t1" -v u="$util" -v sum="$sum" -v f="$fails" -v m="${MPS2:-off}" 'BEGIN {
    w = t1 - t0; fps = d / w; per = (u > 0) ? d / (u / 100 * w) : 0; nsec = sum / 100; pint = (nsec > 0) ? d / nsec : 0
    printf "nvdec [mps %s] %s N=%d: %d frames delivered in %.2f s = %.0f fps; NVDEC busy %.2f NVDEC-s (integral of dmon dec) -> %.0f frames per NVDEC-second; [mean util of active samples %.1f%% x wall -> %.0f]; logs with errors: %d\n", m, name, n, d, w, fps, nsec, pint, u, per, f }' | tee -a "$R"
}
# MPS2=on: this section under an MPS daemon (started and quit here).
[ "${MPS2:-off}" = on ] && { mps_start || say "MPS2: could not start MPS"; }
for n in ${NS:-1 4 8 16}; do
  measure "independent-$n" "$n" independent
  measure "shared-$n" "$n" shared
done
[ "${MPS2:-off}" = on ] && mps_stop

rm -rf "$CUFRAMES_RUNTIME_DIR" "$MPS_DIR"
tmp=$(mktemp /tmp/cuframes-bench-logs.XXXX.tar.gz)
(cd "$OUT" && tar czf "$tmp" --exclude=bench-logs.tar.gz --exclude=bench.txt . \
   && mv "$tmp" bench-logs.tar.gz \
   && find . -mindepth 1 -not -name bench-logs.tar.gz -not -name bench.txt -not -name summary.txt \
      -not -name logs.tar.gz -not -name console.log -delete)
