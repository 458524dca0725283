#!/usr/bin/env bash
# The GPU test plan (docs/gpu.md), run on the GPU machine from the folder
# scripts/gpu-build.sh fills (gpu-carry/: bin/, tests/, media/, this script).
# Writes a log and a summary under $OUT (default ./out). Every check prints
# PASS or FAIL; the exit code is the number of failures.
set -uo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
BIN=$PWD/bin
MEDIA=$PWD/media
RT=$(mktemp -d /tmp/cuframes-rt.XXXX)
export CUFRAMES_RUNTIME_DIR=$RT
export RUST_LOG=${RUST_LOG:-info}
FAILS=0
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
pass() { say "PASS $*"; }
fail() { say "FAIL $*"; FAILS=$((FAILS + 1)); }
vram_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }

say "# cuframes GPU test plan, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "# $(nvidia-smi --query-gpu=name,uuid,driver_version,memory.total --format=csv,noheader | head -1)"
say "# $(uname -r), $(nproc) cores"

# compare FILE.framemd5 REFERENCE: every frame line's hash equals the
# reference hash of its frame number (column 3). Prints "frames mismatches".
compare() {
  awk -F', *' 'NR==FNR { if ($0 !~ /^#/) ref[$3+0]=$6; next }
               $0 !~ /^#/ { n++; if (ref[$3+0] != $6) bad++ }
               END { printf "%d %d\n", n, bad+0 }' "$2" "$1"
}

# ONLY="2 5" runs just those sections (default: all).
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# --- 1. unit and integration tests that need the GPU (#[ignore]d in CI)
if want 1; then
for t in tests/*; do
  name=$(basename "$t")
  if "$t" --ignored --test-threads=1 --nocapture > "$OUT/$name.log" 2>&1; then
    pass "cargo test $name: $(grep -E '^test result' "$OUT/$name.log" | tail -1)"
  else
    fail "cargo test $name (see $name.log)"
  fi
  grep -E '^(figure|skipped):' "$OUT/$name.log" | tee -a "$SUMMARY"
done

fi

# --- 2. NVDEC publisher, 4 InOrder subscribers under Wait, MD5 vs FFmpeg
if want 2; then
# run_clip NAME CLIP EXTRA_PUBLISHER_ARGS [PREFIX for subscriber 0]
run_clip() {
  local name=$1 clip=$2 pubargs=$3 prefix0=${4:-}
  local dir=$OUT/$name
  mkdir -p "$dir"
  timeout 120 "$BIN/cuframes-publish" --input "$MEDIA/$clip" --key "$name" --policy wait \
      --wait-subscribers 4 --stats-interval 0 $pubargs > "$dir/publisher.log" 2>&1 &
  local pub=$!
  local subs=()
  for i in 0 1 2 3; do
    local pre=""
    [ "$i" = 0 ] && pre=$prefix0
    # --allow-legacy-ipc: the legacy-ipc / ipc-event runs share IPC handles,
    # which a subscriber imports only when told to trust its publisher
    # (this script's own); VMM-fd runs do not need it.
    timeout 120 $pre "$BIN/cuframes-subscribe" --key "$name" --mode in-order --backend cuda \
        --allow-legacy-ipc \
        --framemd5 "$dir/sub$i.framemd5" --wait-publisher-ms 20000 --name "sub$i" \
        --runtime-dir "$RT" > "$dir/sub$i.log" 2>&1 &
    subs+=($!)
  done
  local ok=1
  wait "$pub" || ok=0
  for p in "${subs[@]}"; do wait "$p" || ok=0; done
  local detail="" want
  want=$(grep -vc '^#' "$MEDIA/$clip.framemd5")
  for i in 0 1 2 3; do
    read -r n bad < <(compare "$dir/sub$i.framemd5" "$MEDIA/$clip.framemd5")
    detail+=" sub$i=$n/${bad}bad"
    { [ "$n" -eq "$want" ] && [ "$bad" -eq 0 ]; } || ok=0
  done
  local line; line=$(grep -h "cuframes-publish:" "$dir/publisher.log" | tail -1)
  if [ $ok = 1 ]; then pass "$name:$detail | $line"; else
    fail "$name:$detail | $line (see $name/)"
    tail -n 2 "$dir/sub0.log" "$dir/publisher.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  fi
  grep -h "decoder\|backend" "$dir/publisher.log" | head -1 >> "$dir/summary" || true
}

run_clip h264-vmm-fence sample-h264.mp4 "--backend cuda --decoder nvdec --memory vmm-fd --sync host-fence"
run_clip hevc-vmm-fence sample-hevc.mkv "--backend cuda --decoder nvdec --memory vmm-fd --sync host-fence"
run_clip h264-legacy-fence sample-h264.mp4 "--backend cuda --decoder nvdec --memory legacy-ipc --sync host-fence"
run_clip hevc-legacy-fence sample-hevc.mkv "--backend cuda --decoder nvdec --memory legacy-ipc --sync host-fence"
run_clip h264-vmm-event sample-h264.mp4 "--backend cuda --decoder nvdec --memory vmm-fd --sync ipc-event"
run_clip hevc-legacy-event sample-hevc.mkv "--backend cuda --decoder nvdec --memory legacy-ipc --sync ipc-event"
run_clip hevc10-p010-vmm-fence sample-hevc10.mkv "--backend cuda --decoder nvdec"
run_clip h264-annexb-auto sample-h264.h264 ""
if grep -q "decoder nvdec, backend cuda" "$OUT/h264-annexb-auto/publisher.log"; then
  pass "auto picks NVDEC + CUDA: $(grep -o 'decoder nvdec, backend cuda[^"]*' "$OUT/h264-annexb-auto/publisher.log" | head -1)"
else
  fail "auto did not pick NVDEC + CUDA: $(grep -h 'decoder' "$OUT/h264-annexb-auto/publisher.log" | head -1)"
fi
run_clip h264-software-upload sample-h264.mp4 "--backend cuda --decoder software"

fi

# --- 3. a subscriber in another PID namespace, CudaVmmFd
if want 3; then
if command -v unshare >/dev/null; then
  run_clip h264-vmm-pidns sample-h264.mp4 "--backend cuda --decoder nvdec --memory vmm-fd" \
      "unshare --pid --fork --mount-proc"
  grep -h "connected" "$OUT/h264-vmm-pidns/sub0.log" | head -1 | sed 's/^/  pid-ns subscriber: /' | tee -a "$SUMMARY"
else
  fail "unshare not available: PID-namespace case not run"
fi

fi

# --- 4. 10,000 frames (looped), 3 InOrder + 1 slow NewestOnly, every MD5 checked
if want 4; then
dir=$OUT/soak; mkdir -p "$dir"
"$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key soak --backend cuda --decoder nvdec \
    --policy wait --loop --max-frames 10000 --wait-subscribers 4 --stats-interval 5 > "$dir/publisher.log" 2>&1 &
pub=$!
subs=()
for i in 0 1 2; do
  "$BIN/cuframes-subscribe" --key soak --mode in-order --backend cuda --framemd5 "$dir/sub$i.framemd5" \
      --wait-publisher-ms 20000 --name "inorder$i" > "$dir/sub$i.log" 2>&1 &
  subs+=($!)
done
"$BIN/cuframes-subscribe" --key soak --mode newest-only --backend cuda --framemd5 "$dir/slow.framemd5" \
    --sleep-ms 20 --wait-publisher-ms 20000 --name slow > "$dir/slow.log" 2>&1 &
subs+=($!)
ok=1; wait "$pub" || ok=0
for p in "${subs[@]}"; do wait "$p" || ok=0; done
detail=""
for f in sub0 sub1 sub2 slow; do
  read -r n bad < <(compare "$dir/$f.framemd5" "$MEDIA/sample-h264.mp4.framemd5")
  detail+=" $f=$n/${bad}bad"
  [ "$bad" -eq 0 ] || ok=0
  case $f in sub*) [ "$n" -eq 10000 ] || ok=0 ;; slow) [ "$n" -gt 0 ] || ok=0 ;; esac
done
line=$(grep -h "cuframes-publish:" "$dir/publisher.log" | tail -1)
if [ $ok = 1 ]; then pass "soak 10000 frames:$detail | $line"; else fail "soak:$detail | $line"; fi
grep -h "received" "$dir/slow.log" | tail -1 | sed 's/^/  /' | tee -a "$SUMMARY"

fi

# --- 5. SIGKILL a subscriber holding a GPU frame: reclaim, go on, VRAM back
if want 5; then
dir=$OUT/kill; mkdir -p "$dir"
"$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key kill --backend cuda --decoder nvdec \
    --policy wait --wait-timeout-ms 60000 --lease-timeout-ms 60000 --loop --realtime --stats-interval 1 \
    > "$dir/publisher.log" 2>&1 &
pub=$!
"$BIN/cuframes-subscribe" --key kill --mode in-order --backend cuda --timeout-ms 60000 \
    --wait-publisher-ms 20000 --name steady > "$dir/steady.log" 2>&1 &
steady=$!
sleep 3
before=$(vram_used)
"$BIN/cuframes-subscribe" --key kill --mode in-order --backend cuda --sleep-ms 60000 \
    --wait-publisher-ms 20000 --name victim > "$dir/victim.log" 2>&1 &
victim=$!
sleep 3
during=$(vram_used)
kill -9 "$victim"; wait "$victim" 2>/dev/null
sleep 3
after=$(vram_used)
pubs_a=$(grep -o '[0-9]* frames published' "$dir/publisher.log" | tail -1)
sleep 2
pubs_b=$(grep -o '[0-9]* frames published' "$dir/publisher.log" | tail -1)
kill -INT "$pub"; wait "$pub"; wait "$steady"
say "  VRAM used (MiB): before victim $before, victim holding a frame $during, 3 s after SIGKILL $after; publisher: '$pubs_a' then '$pubs_b'"
if [ "$after" -le "$before" ] && [ "$pubs_a" != "$pubs_b" ]; then
  pass "SIGKILLed subscriber reclaimed: publisher went on, VRAM back to $after MiB (was $before)"
else
  fail "SIGKILL reclaim: before $before during $during after $after; '$pubs_a' -> '$pubs_b'"
fi

fi

# --- 6. figures: VRAM of the ring, per subscriber, NVDEC fps
if want 6; then
for clip in sample-h264.mp4 sample-hevc.mkv; do
  "$BIN/cuframes-publish" --input "$MEDIA/$clip" --key fps --backend cuda --decoder nvdec \
      --loop --max-frames 3000 --stats-interval 0 > "$OUT/fps-$clip.log" 2>&1
  say "figure: NVDEC publisher, no subscriber, $clip looped 3000 frames: $(grep -h 'cuframes-publish:' "$OUT/fps-$clip.log" | tail -1)"
done
dir=$OUT/vram; mkdir -p "$dir"
v0=$(vram_used)
"$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key vram --backend cuda --decoder nvdec \
    --loop --realtime --ring 8 --stats-interval 0 > "$dir/publisher.log" 2>&1 &
pub=$!
sleep 4; v1=$(vram_used)
subs=()
# One at a time: each measures free VRAM around its own imports, so no other
# process may create a context in between.
for i in 1 2 3 4; do
  "$BIN/cuframes-subscribe" --key vram --mode newest-only --backend cuda --report-vram --timeout-ms 60000 \
      --name "v$i" > "$dir/sub$i.log" 2>&1 &
  subs+=($!)
  sleep 3
done
sleep 5; v2=$(vram_used)
# SIGTERM: a non-interactive shell starts background jobs with SIGINT ignored.
for p in "${subs[@]}"; do kill -TERM "$p"; done
for p in "${subs[@]}"; do wait "$p"; done
kill -INT "$pub"; wait "$pub"
say "figure: VRAM used (MiB): idle $v0, + publisher (context, NVDEC, 8-slot ring) $v1, + 4 subscribers $v2"
grep -h "ring:" "$dir/publisher.log" | head -1 | sed 's/^.*ring:/figure: ring:/' | tee -a "$SUMMARY"
grep -h "VRAM" "$dir"/sub*.log | sed 's/^/figure: /' | tee -a "$SUMMARY"

fi

say "# failures: $FAILS"
rm -rf "$RT"
# One archive of every log, so that a run's evidence travels as one file.
(cd "$OUT" && tar czf logs.tar.gz --exclude=logs.tar.gz --exclude=summary.txt --exclude=console.log . \
   && find . -mindepth 1 -not -name logs.tar.gz -not -name summary.txt -not -name console.log -delete)
exit $FAILS
