#!/usr/bin/env bash
# Multi-GPU checks and benchmarks (docs/gpu.md, "Multi-GPU hosts"), run on a
# machine with two or more NVIDIA GPUs from the folder scripts/gpu-build.sh
# fills (gpu-carry/: bin/, tests-multi/, media/, this script). Writes its
# results to $OUT/multi-summary.txt, its benchmark lines to
# $OUT/multi-bench.txt and every log into $OUT/multi-logs.tar.gz. Every
# check prints PASS or FAIL; the exit code is the number of failures.
#
#   1. tests-multi/multi_gpu --ignored (peer map, copy, cuMemcpyPeer copy,
#      an absent device refused);
#   2. NVDEC publishers on GPU 0, subscriber processes on GPU 1 peer-mapped,
#      copying and auto, every frame's MD5 equal to FFmpeg's (media/*.framemd5);
#      also IpcEvent sync and LegacyIpc memory across the GPUs;
#   3. cuframes-gpu-bench cross-gpu (same-GPU, peer and copy hand-off in one
#      run; 1080p and 2160p frames for the bandwidth);
#   4. one publisher process with a cameras.toml putting streams on both GPUs
#      (pinned and auto), subscribers on each GPU, every MD5 checked.
#
# ONLY="2 4" runs just those sections (default: all).
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
BIN=$PWD/bin
MEDIA=$PWD/media
RT=$(mktemp -d /tmp/cuframes-mgpu.XXXX)
export CUFRAMES_RUNTIME_DIR=$RT
export RUST_LOG=${RUST_LOG:-info}
# CUDA ordinals in nvidia-smi's order (PCI bus), so "GPU 1" means the same
# device to both.
export CUDA_DEVICE_ORDER=PCI_BUS_ID
FAILS=0
SUMMARY=$OUT/multi-summary.txt
BENCH=$OUT/multi-bench.txt
: > "$SUMMARY"
: > "$BENCH"

say() { echo "$*" | tee -a "$SUMMARY"; }
pass() { say "PASS $*"; }
fail() { say "FAIL $*"; FAILS=$((FAILS + 1)); }
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# compare FILE.framemd5 REFERENCE: every frame line's hash equals the
# reference hash of its frame number (column 3). Prints "frames mismatches".
compare() {
  awk -F', *' 'NR==FNR { if ($0 !~ /^#/) ref[$3+0]=$6; next }
               $0 !~ /^#/ { n++; if (ref[$3+0] != $6) bad++ }
               END { printf "%d %d\n", n, bad+0 }' "$2" "$1"
}

say "# cuframes multi-GPU plan, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total --format=csv,noheader \
  | sed 's/^/# /' | tee -a "$SUMMARY"
say "# $(uname -r), $(nproc) cores"
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "${NGPU:-0}" -lt 2 ]; then
  fail "this machine has ${NGPU:-0} GPU(s); the multi-GPU plan needs 2"
  exit $FAILS
fi
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1
say "# nvidia-smi topo -m (GPU0 row): $(grep -E '^GPU0' "$OUT/topo.txt" | tr -s ' \t' ' ')"
LINK=$(awk '$1 == "GPU0" { print $3 }' "$OUT/topo.txt")
say "# GPU0 <-> GPU1: ${LINK:-unknown} (NV#: NVLink; PIX/PXB/PHB/NODE/SYS: PCIe paths)"
UUID0=$(nvidia-smi --query-gpu=uuid --format=csv,noheader -i 0)
UUID1=$(nvidia-smi --query-gpu=uuid --format=csv,noheader -i 1)

# --- 1. the cross-GPU tests of backend-cuda/tests/multi_gpu.rs
if want 1; then
for t in tests-multi/*; do
  name=$(basename "$t")
  if "$t" --ignored --test-threads=1 --nocapture > "$OUT/$name.log" 2>&1 \
     && ! grep -q '^skipped:' "$OUT/$name.log"; then
    pass "cargo test $name: $(grep -E '^test result' "$OUT/$name.log" | tail -1)"
  else
    fail "cargo test $name (see $name.log)"
  fi
  grep -E '^(figure|skipped):' "$OUT/$name.log" | tee -a "$SUMMARY"
done
fi

# --- 2. an NVDEC publisher on GPU 0, subscribers on GPU 1, MD5 vs FFmpeg
# cross NAME CLIP "PUBLISHER ARGS" "SUB0 ARGS" "SUB1 ARGS" ... (one subscriber per arg set)
cross() {
  local name=$1 clip=$2 pubargs=$3
  shift 3
  local dir=$OUT/$name n=$#
  mkdir -p "$dir"
  timeout 120 "$BIN/cuframes-publish" --input "$MEDIA/$clip" --key "$name" --policy wait \
      --backend cuda --decoder nvdec --wait-subscribers "$n" --stats-interval 0 $pubargs \
      > "$dir/publisher.log" 2>&1 &
  local pub=$! subs=() i=0
  for a in "$@"; do
    # --allow-legacy-ipc: the ipc-event / legacy-ipc runs share IPC
    # handles of this script's own publisher.
    timeout 120 "$BIN/cuframes-subscribe" --key "$name" --mode in-order --backend cuda \
        --allow-legacy-ipc $a --framemd5 "$dir/sub$i.framemd5" --wait-publisher-ms 20000 \
        --name "sub$i" > "$dir/sub$i.log" 2>&1 &
    subs+=($!); i=$((i + 1))
  done
  local ok=1
  wait "$pub" || ok=0
  for p in "${subs[@]}"; do wait "$p" || ok=0; done
  local detail="" want_n
  want_n=$(grep -vc '^#' "$MEDIA/$clip.framemd5")
  i=0
  for a in "$@"; do
    read -r got bad < <(compare "$dir/sub$i.framemd5" "$MEDIA/$clip.framemd5")
    local how; how=$(grep -o 'frames [A-Za-z]*' "$dir/sub$i.log" | head -1 | cut -d' ' -f2)
    detail+=" sub$i[${a// /}→${how:-?}]=$got/${bad}bad"
    { [ "$got" -eq "$want_n" ] && [ "$bad" -eq 0 ]; } || ok=0
    i=$((i + 1))
  done
  local line; line=$(grep -h "cuframes-publish:" "$dir/publisher.log" | tail -1)
  if [ $ok = 1 ]; then pass "$name:$detail | $line"; else
    fail "$name:$detail | $line (see $name/)"
    tail -n 2 "$dir"/sub*.log "$dir/publisher.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  fi
}

if want 2; then
P1="--gpu 1 --cross-gpu peer"
C1="--gpu 1 --cross-gpu copy"
A1="--gpu 1 --cross-gpu auto"
for clip in sample-h264.mp4 sample-hevc.mkv sample-hevc10.mkv; do
  cross "x-${clip%%.*}-${clip##*.}" "$clip" "--gpu 0" "$P1" "$P1" "$C1" "$A1"
done
# The publisher's own GPU next to GPU 1 on one stream.
cross x-h264-both sample-h264.mp4 "--gpu 0" "--gpu 0" "$P1" "$C1"
# Legacy IPC across GPUs: IpcEvent sync (events opened on GPU 1's context),
# then LegacyIpc memory (cuIpcOpenMemHandle with lazy peer access).
cross x-h264-ipcevent sample-h264.mp4 "--gpu 0 --sync ipc-event" "$P1" "$C1"
cross x-h264-legacy sample-h264.mp4 "--gpu 0 --memory legacy-ipc" "$P1" "$C1"
# A publisher on GPU 1, subscribers on GPU 0: the other direction.
cross x-h264-reverse sample-h264.mp4 "--gpu 1" "--gpu 0 --cross-gpu peer" "--gpu 0 --cross-gpu copy"
fi

# --- 3. cross-GPU hand-off latency and bandwidth, same-GPU baseline in the same run
if want 3; then
for size in "1920 1080" "3840 2160"; do
  set -- $size
  log=$OUT/bench-cross-$1x$2.txt
  if timeout 300 "$BIN/cuframes-gpu-bench" cross-gpu --publisher-gpu 0 --subscriber-gpu 1 \
       --frames 2000 --width "$1" --height "$2" > "$log" 2>&1; then
    grep -E '^cross-gpu' "$log" | tee -a "$BENCH" "$SUMMARY"
    if [ "$(grep -c 'differing from the expected frame: 0' "$log")" -eq 3 ]; then
      pass "cross-gpu bench $1x$2: every word of every frame as expected in all 3 modes"
    else
      fail "cross-gpu bench $1x$2: words differed (see bench-cross-$1x$2.txt)"
    fi
  else
    fail "cross-gpu bench $1x$2 (see bench-cross-$1x$2.txt)"
    tail -n 3 "$log" | sed 's/^/    /' | tee -a "$SUMMARY"
  fi
done
fi

# --- 4. one publisher process, streams on both GPUs, subscribers on each
if want 4; then
dir=$OUT/cameras; mkdir -p "$dir"
cat > "$dir/cameras.toml" <<EOF
stats_interval = 0
[defaults]
backend = "cuda"
decoder = "nvdec"
policy = "wait"
wait_subscribers = 2
[[stream]]
key = "g0"
file = "$MEDIA/sample-h264.mp4"
gpu = 0
[[stream]]
key = "g1"
file = "$MEDIA/sample-hevc.mkv"
gpu = 1
[[stream]]
key = "auto-a"
file = "$MEDIA/sample-h264.mp4"
gpu = "auto"
[[stream]]
key = "auto-b"
file = "$MEDIA/sample-hevc.mkv"
EOF
timeout 180 "$BIN/cuframes-publish" --config "$dir/cameras.toml" > "$dir/publisher.log" 2>&1 &
pub=$!
subs=()
declare -A CLIP=([g0]=sample-h264.mp4 [g1]=sample-hevc.mkv [auto-a]=sample-h264.mp4 [auto-b]=sample-hevc.mkv)
for key in g0 g1 auto-a auto-b; do
  for g in 0 1; do
    timeout 180 "$BIN/cuframes-subscribe" --key "$key" --mode in-order --backend cuda --gpu "$g" \
        --framemd5 "$dir/$key-gpu$g.framemd5" --wait-publisher-ms 20000 --name "$key-gpu$g" \
        > "$dir/$key-gpu$g.log" 2>&1 &
    subs+=($!)
  done
done
ok=1
wait "$pub" || ok=0
for p in "${subs[@]}"; do wait "$p" || ok=0; done
detail=""
for key in g0 g1 auto-a auto-b; do
  want_n=$(grep -vc '^#' "$MEDIA/${CLIP[$key]}.framemd5")
  for g in 0 1; do
    read -r got bad < <(compare "$dir/$key-gpu$g.framemd5" "$MEDIA/${CLIP[$key]}.framemd5")
    detail+=" $key→gpu$g=$got/${bad}bad"
    { [ "$got" -eq "$want_n" ] && [ "$bad" -eq 0 ]; } || ok=0
  done
done
# Where each stream ran: its backend line names the GPU's UUID.
where=""
for key in g0 g1 auto-a auto-b; do
  l=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/publisher.log" | grep -E "key=$key( |$)" \
      | grep -o 'GPU-[0-9a-f-]*' | head -1)
  case $l in "$UUID0") where+=" $key@GPU0" ;; "$UUID1") where+=" $key@GPU1" ;; *) where+=" $key@?" ;; esac
done
# g0 pinned to 0, g1 to 1; the auto streams then take GPU 0 and GPU 1 (least loaded, ties to 0).
case "$where" in *"g0@GPU0"*"g1@GPU1"*"auto-a@GPU0"*"auto-b@GPU1"*) ;; *) ok=0 ;; esac
if [ $ok = 1 ]; then pass "one publisher, streams on both GPUs:$where;$detail"; else
  fail "one publisher, streams on both GPUs:$where;$detail (see cameras/)"
  tail -n 3 "$dir/publisher.log" | sed 's/^/    /' | tee -a "$SUMMARY"
fi
# An ordinal this host lacks: one line, before anything starts.
printf '[[stream]]\nkey = "nogpu"\nfile = "%s"\nbackend = "cuda"\ngpu = %s\n' \
  "$MEDIA/sample-h264.mp4" "$NGPU" > "$dir/bad.toml"
if out=$("$BIN/cuframes-publish" --config "$dir/bad.toml" 2>&1); then
  fail "gpu = $NGPU was accepted"
else
  msg=$(echo "$out" | grep 'error' | tail -1)
  if [[ "$msg" == *"gpu $NGPU is out of range"* ]]; then pass "gpu = $NGPU refused: $msg"
  else fail "gpu = $NGPU: unexpected error: $msg"; fi
fi
fi

say "# failures: $FAILS"
rm -rf "$RT"
tmp=$(mktemp /tmp/cuframes-mlogs.XXXX.tar.gz)
(cd "$OUT" && tar czf "$tmp" --exclude=multi-logs.tar.gz --exclude=multi-summary.txt \
   --exclude=multi-bench.txt --exclude=console.log . && mv "$tmp" multi-logs.tar.gz)
exit $FAILS
