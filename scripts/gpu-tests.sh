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

# The Vulkan backend dlopens libvulkan.so.1 (the loader); where the machine
# has none, use the one scripts/gpu-build.sh carried in lib/ (NVIDIA's ICD,
# installed with the driver, is what it loads).
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1 ' && [ -f "$PWD/lib/libvulkan.so.1" ]; then
  export LD_LIBRARY_PATH=$PWD/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  VK_LOADER_NOTE="carried lib/libvulkan.so.1"
fi

. ./vulkan-icd.sh
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
# run_clip NAME CLIP EXTRA_PUBLISHER_ARGS [PREFIX for subscriber 0] (also used by 3 and 9;
# SUB_BACKEND=vulkan makes the subscribers Vulkan ones)
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
    timeout 120 $pre "$BIN/cuframes-subscribe" --key "$name" --mode in-order --backend "${SUB_BACKEND:-cuda}" \
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

if want 2; then

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
    --wait-publisher-ms 20000 --no-reconnect --name steady > "$dir/steady.log" 2>&1 &
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
pubs_a=$(grep -o '[0-9]* frames, [0-9]* dropped' "$dir/publisher.log" | tail -1)
sleep 2
pubs_b=$(grep -o '[0-9]* frames, [0-9]* dropped' "$dir/publisher.log" | tail -1)
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

# --- 7. 32 streams in one publisher process (--config): 1080p30 NVDEC, one
# InOrder subscriber per stream under Wait, every MD5 vs FFmpeg, 30 fps each
if want 7; then
dir=$OUT/multi32; mkdir -p "$dir"
clip=$MEDIA/sample-1080p.mp4
if [ ! -f "$clip" ] || [ ! -f "$clip.framemd5" ]; then
  fail "32 streams in one publisher: $clip or its .framemd5 is missing"
else
frames=$(grep -vc '^#' "$clip.framemd5")   # 300
keys=$(seq -f 's%02g' 0 31)
# cameras.toml: 32 [[stream]]s of the 1080p clip, paced at its 30 fps, lossless
# (ring 16 and a 10 s wait: 32 subscribers copying and hashing 1080p on 16
# cores have hiccups longer than 8 frames and the default 2 s; with ring 8
# and 2 s, 3 of 32 lost 3-8 frames to lag and 7 fell to 27-28 fps).
{
  echo "stats_interval = 1.0"
  for k in $keys; do
    printf '\n[[stream]]\nkey = "%s"\nfile = '"'%s'"'\ndecoder = "nvdec"\nbackend = "cuda"\nrealtime = true\npolicy = "wait"\nwait_timeout_ms = 10000\nwait_subscribers = 1\nring = 16\n' "$k" "$clip"
  done
} > "$dir/cameras.toml"
v_idle=$(vram_used)
# One nvidia-smi sample a second: NVDEC %, GPU %, used MiB.
timeout 150 nvidia-smi --query-gpu=utilization.decoder,utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 \
    > "$dir/gpu.csv" 2>&1 &
mon=$!
# bash's `time` gives the publisher's CPU seconds (user, sys) and wall seconds.
( TIMEFORMAT='%3U %3S %3R'
  time RUST_LOG=info NO_COLOR=1 timeout 90 "$BIN/cuframes-publish" --config "$dir/cameras.toml" \
      > "$dir/publisher.log" 2>&1 ) 2> "$dir/publisher.time" &
pub=$!
subs=()
for k in $keys; do
  timeout 90 "$BIN/cuframes-subscribe" --key "$k" --mode in-order --backend cuda --framemd5 "$dir/$k.framemd5" \
      --max-frames "$frames" --wait-publisher-ms 20000 --no-reconnect --name "$k" > "$dir/$k.log" 2>&1 &
  subs+=($!)
done
# Once every subscriber is in: the publisher process's own VRAM, if nvidia-smi lists processes.
for _ in $(seq 60); do
  [ "$(grep -l ': connected to' "$dir"/s[0-9][0-9].log 2>/dev/null | wc -l)" -ge 32 ] && break
  kill -0 "$pub" 2>/dev/null || break
  sleep 0.5
done
sleep 3
timeout 30 nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits > "$dir/apps.csv" 2>&1
pub_rc=0; wait "$pub" || pub_rc=$?
sub_bad=0
for p in "${subs[@]}"; do wait "$p" || sub_bad=$((sub_bad + 1)); done
kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
sed 's/\x1b\[[0-9;]*m//g' "$dir/publisher.log" > "$dir/publisher.txt"

# (a) every subscriber: all frames, each MD5 equal to FFmpeg's.
good=0 detail=""
for k in $keys; do
  n=0 bad=0
  [ -f "$dir/$k.framemd5" ] && read -r n bad < <(compare "$dir/$k.framemd5" "$clip.framemd5")
  if [ "${n:-0}" -eq "$frames" ] && [ "${bad:-0}" -eq 0 ]; then good=$((good + 1)); else detail+=" $k=${n:-0}/${bad:-0}bad"; fi
done
if [ $good = 32 ] && [ $sub_bad = 0 ]; then
  pass "32 streams in one publisher: 32/32 InOrder subscribers got $frames/$frames frames equal to FFmpeg's MD5s"
else
  fail "32 streams in one publisher: $good/32 subscribers complete and equal, $sub_bad exited non-zero:$detail (see multi32/)"
  tail -n 1 "$dir"/s[0-9][0-9].log | grep -i error | head -3 | sed 's/^/    /' | tee -a "$SUMMARY"
fi

# (b) the publisher's summary lines (bin/cuframes-publish/main.rs), one per stream:
#   cuframes-publish: s07: end of input: 300 frames published, 0 dropped, 0 revoked lease(s), 25.3 fps, ...
read -r streams ended pframes pdrop prevoked < <(awk '
  match($0, /cuframes-publish: [A-Za-z0-9_-]+: [a-z ]+: [0-9]+ frames published, [0-9]+ dropped, [0-9]+ revoked/) {
    split(substr($0, RSTART, RLENGTH), p, ": "); split(p[4], q, ", ")
    n++; if (p[3] == "end of input") e++
    fr += q[1]; dr += q[2]; rv += q[3] }
  END { print n + 0, e + 0, fr + 0, dr + 0, rv + 0 }' "$dir/publisher.txt")
line="$streams summary lines, $ended end of input, $pframes frames published (want $((32 * frames))), $pdrop dropped, $prevoked revoked, exit $pub_rc"
if [ "$pub_rc" = 0 ] && [ "$streams" = 32 ] && [ "$ended" = 32 ] && [ "$pframes" = $((32 * frames)) ] \
   && [ "$pdrop" = 0 ] && [ "$prevoked" = 0 ]; then
  pass "32 streams in one publisher: $line"
else
  fail "32 streams in one publisher: $line"
  grep -hiE 'error|warn' "$dir/publisher.txt" | tail -n 3 | sed 's/^/    /' | tee -a "$SUMMARY"
fi

# (c) each stream published at 30 fps (29..31). From the periodic per-stream
# lines (service/stats.rs stats_line, tracing INFO, UTC timestamp first):
#   2026-11-22T01:02:03.123456Z  INFO cuframes_publish: s07: streaming, 30.0 fps, 123 frames, 0 dropped, 1 subscriber(s), ...
# The rate = frames between two lines / seconds between their timestamps,
# over the steady part: after the first "streaming" line (its interval holds
# the start-up) and after the last interval above 33 fps (realtime pacing
# catches up on the frames that fell due while the stream waited for its
# subscriber). At least 3 such intervals (3 s) per stream.
awk -v burst=33 '
  function days(y, m, d,   era, yoe, doy, doe) {
    if (m <= 2) y--
    era = int(y / 400); yoe = y - era * 400
    doy = int((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1
    doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
    return era * 146097 + doe - 719468
  }
  function epoch(s) {
    return days(substr(s, 1, 4) + 0, substr(s, 6, 2) + 0, substr(s, 9, 2) + 0) * 86400 \
      + substr(s, 12, 2) * 3600 + substr(s, 15, 2) * 60 + substr(s, 18) * 1
  }
  $1 ~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T/ &&
  match($0, /[A-Za-z0-9_-]+: [a-z][a-z0-9. ]*, [0-9.]+ fps, [0-9]+ frames, [0-9]+ dropped, [0-9]+ subscriber/) {
    split(substr($0, RSTART, RLENGTH), p, ", ")
    k = p[1]; sub(/: .*/, "", k); st = p[1]; sub(/^[^:]*: /, "", st)
    if (st != "streaming") next
    i = ++cnt[k]; if (i == 1) keys[++nk] = k
    t[k, i] = epoch($1); f[k, i] = p[3] + 0   # rate of the interval since the previous line:
    r[k, i] = (i > 1 && t[k, i] > t[k, i - 1]) ? (f[k, i] - f[k, i - 1]) / (t[k, i] - t[k, i - 1]) : 0
  }
  END {  # KEY INTERVALS FPS BURSTS
    for (j = 1; j <= nk; j++) {
      k = keys[j]; m = cnt[k]; a = 1; b = 0
      for (i = 2; i <= m; i++) if (r[k, i] > burst) { a = i; b++ }
      if (m - a < 1) { print k, 0, 0, b; continue }
      printf "%s %d %.2f %d\n", k, m - a, (f[k, m] - f[k, a]) / (t[k, m] - t[k, a]), b
    }
  }' "$dir/publisher.txt" > "$dir/fps.txt"
read -r nfps inrange fmin fmed fmax bursts < <(awk '
  { n++; v[n] = $3; b += $4; if ($2 >= 3 && $3 >= 29 && $3 <= 31) ok++ }
  END { for (x = 2; x <= n; x++) { y = v[x]; for (z = x - 1; z >= 1 && v[z] > y; z--) v[z + 1] = v[z]; v[z + 1] = y }
        if (!n) { print 0, 0, 0, 0, 0, 0; exit }
        printf "%d %d %.2f %.2f %.2f %d\n", n, ok + 0, v[1], v[int((n + 1) / 2)], v[n], b }' "$dir/fps.txt")
line="$inrange/32 streams at 29-31 fps over >= 3 s of steady publishing (min $fmin, median $fmed, max $fmax fps; $nfps streams with stats lines; $bursts catch-up intervals left out)"
if [ "$inrange" = 32 ]; then pass "32 streams in one publisher: $line"; else
  fail "32 streams in one publisher: $line"
  awk '$2 < 3 || $3 < 29 || $3 > 31' "$dir/fps.txt" | head -5 | sed 's/^/    stream intervals fps bursts: /' | tee -a "$SUMMARY"
fi

# Figures: NVDEC / GPU utilisation (samples while NVDEC was busy), VRAM, publisher CPU.
read -r dec_m dec_x gpu_m gpu_x mem_x < <(awk -F', *' '
  NF >= 3 && $1 ~ /^[0-9]+$/ { if ($3 > mx) mx = $3; if ($1 > 0) { n++; ds += $1; gs += $2; if ($1 > dx) dx = $1; if ($2 > gx) gx = $2 } }
  END { if (n) printf "%.1f %d %.1f %d %d\n", ds / n, dx, gs / n, gx, mx; else print "- - - - " mx + 0 }' "$dir/gpu.csv")
pub_mib=$(awk -F', *' '$2 ~ /cuframes-publish/ { s += $3; n++ } END { if (n) printf "%d MiB (%.0f MiB per stream)", s, s / 32; else printf "not listed by nvidia-smi" }' "$dir/apps.csv")
read -r cu cs cr < "$dir/publisher.time" || true
cpu=$(awk -v u="${cu:-0}" -v s="${cs:-0}" -v r="${cr:-0}" 'BEGIN {
  if (r > 0) printf "%.1f s user + %.1f s sys over %.1f s = %.2f cores (%.1f%% of a core per stream)", u, s, r, (u + s) / r, 100 * (u + s) / r / 32
  else printf "not measured" }')
say "figure: 32 x 1080p30 H.264 in one publisher (NVDEC, CUDA, InOrder subscribers copying + hashing every frame): NVDEC util mean $dec_m% (max $dec_x%), GPU util mean $gpu_m% (max $gpu_x%) over the 1 s samples while decoding; VRAM used $v_idle MiB idle -> $mem_x MiB max (rings, decoders and 32 subscriber contexts); publisher process $pub_mib; publisher CPU $cpu"
fi

fi

# --- 8. Python bindings (scripts/gpu-python.py): torch / CuPy DLPack of NVDEC
# frames without a copy, MD5s, release(stream) after real work, a torch
# producer verified by cuframes-subscribe; then the per-frame overhead
# benchmark (figures). Needs python3 with torch, cupy and numpy.
if want 8; then
py_log=$OUT/python.log
PYTHONPATH="$PWD/python" BIN=$BIN MEDIA=$MEDIA OUT=$OUT python3 gpu-python.py > "$py_log" 2>&1
grep -E '^(PASS|FAIL) ' "$py_log" | tee -a "$SUMMARY"
FAILS=$((FAILS + $(grep -c '^FAIL ' "$py_log")))
grep -q '^# python failures' "$py_log" || fail "python: gpu-python.py did not finish (see python.log)"
for b in host cuda; do
  PYTHONPATH="$PWD/python" python3 overhead.py --backend "$b" --rust "$BIN/overhead_subscriber" \
      --rounds 50 2>>"$OUT/overhead.log" | sed 's/^/figure: python overhead: /' | tee -a "$SUMMARY"
done
fi

# --- 9. C and C++ consumers of CUDA frames through libcuframes
# (docs/c-api.md), compiled here with this machine's gcc / g++ against the
# carried library and headers (capi/) and CUDA's <cuda.h> ($CUDA_INC,
# default /usr/local/cuda/include); NVDEC publishers sharing VMM fds and
# legacy IPC handles, host-fence and IPC-event sync. cuda_frames.c copies
# each frame with cuMemcpy2D and releases synchronously;
# cuda_release_after.cpp copies with cuMemcpy2DAsync on its own stream and
# returns each lease with Frame::release_after. Every frame's MD5 must equal
# FFmpeg's. ONLY=9 runs just this section.
if want 9; then
CAPI=$PWD/capi
CUDA_INC=${CUDA_INC:-/usr/local/cuda/include}
dir=$OUT/capi; mkdir -p "$dir"
capi_cc() { # COMPILER STD SRC OUT
  "$1" -std="$2" -O2 -Wall -Wextra -I"$CAPI/include" -I"$CAPI/src" -I"$CUDA_INC" "$3" -o "$4" \
      -L"$CAPI/lib" -lcuframes -Wl,-rpath,"$CAPI/lib" -L/usr/local/cuda/lib64/stubs -lcuda -pthread
}
# capi_run NAME CLIP PUBLISHER_ARGS PROGRAM [legacy]
capi_run() {
  local name=$1 clip=$2 pubargs=$3 prog=$4 legacy=${5:-}
  timeout 120 "$BIN/cuframes-publish" --input "$MEDIA/$clip" --key "$name" --policy wait \
      --wait-subscribers 1 --stats-interval 0 $pubargs > "$dir/$name.publisher.log" 2>&1 &
  local pub=$! ok=1
  timeout 120 "$dir/$prog" "$name" "$dir/$name.txt" $legacy > "$dir/$name.log" 2>&1 || ok=0
  wait "$pub" || ok=0
  local n bad want
  want=$(grep -vc '^#' "$MEDIA/$clip.framemd5")
  read -r n bad < <(awk -F', *' 'NR==FNR { if ($0 !~ /^#/) ref[$3+0]=$6; next }
      { n++; split($0, c, " "); if (ref[c[1]+0] != c[3]) bad++ } END { printf "%d %d\n", n, bad+0 }' \
      "$MEDIA/$clip.framemd5" "$dir/$name.txt" 2>/dev/null || echo "0 0")
  { [ "$n" -eq "$want" ] && [ "$bad" -eq 0 ]; } || ok=0
  if [ $ok = 1 ]; then pass "$name: $prog $n/$want frames equal FFmpeg's ($pubargs)"; else
    fail "$name: $prog $n/$want frames, $bad differ ($pubargs; see capi/$name.log)"
    tail -n 3 "$dir/$name.log" "$dir/$name.publisher.log" | sed 's/^/    /' | tee -a "$SUMMARY"
  fi
}
if [ ! -f "$CUDA_INC/cuda.h" ]; then
  fail "capi: no $CUDA_INC/cuda.h (set CUDA_INC to CUDA's include directory)"
elif ! capi_cc gcc c11 "$CAPI/src/cuda_frames.c" "$dir/cuda_frames" > "$dir/build.log" 2>&1 ||
     ! capi_cc g++ c++17 "$CAPI/src/cuda_release_after.cpp" "$dir/cuda_release_after" >> "$dir/build.log" 2>&1; then
  fail "capi: building the C / C++ consumers (see capi/build.log)"
  tail -n 5 "$dir/build.log" | sed 's/^/    /' | tee -a "$SUMMARY"
else
  pass "capi: built with $(gcc --version | head -1) and $(g++ --version | head -1) against $(ls "$CAPI/lib")"
  nv="--backend cuda --decoder nvdec"
  capi_run capi-c-h264-vmm sample-h264.mp4 "$nv --memory vmm-fd --sync host-fence" cuda_frames
  capi_run capi-c-h264-legacy sample-h264.mp4 "$nv --memory legacy-ipc --sync host-fence" cuda_frames legacy
  capi_run capi-c-hevc-vmm-event sample-hevc.mkv "$nv --memory vmm-fd --sync ipc-event" cuda_frames legacy
  capi_run capi-c-hevc10-p010 sample-hevc10.mkv "$nv --memory vmm-fd" cuda_frames
  capi_run capi-cpp-hevc-vmm sample-hevc.mkv "$nv --memory vmm-fd --sync host-fence" cuda_release_after
  capi_run capi-cpp-h264-legacy sample-h264.mp4 "$nv --memory legacy-ipc --sync host-fence" cuda_release_after legacy
  capi_run capi-cpp-h264-legacy-event sample-h264.mp4 "$nv --memory legacy-ipc --sync ipc-event" cuda_release_after legacy
fi
fi

# --- 10. Vulkan (docs/vulkan.md): the NVIDIA Vulkan device of the CUDA UUID;
# Vulkan->Vulkan (host fence and timeline semaphores), NVDEC/CUDA->Vulkan and
# Vulkan->CUDA, 4 InOrder subscribers
# each, MD5 vs FFmpeg; VRAM per Vulkan subscriber. (The in-process interop
# tests, tests/vulkan_interop, run in section 1.)
if want 10; then
say "  Vulkan loader: ${VK_LOADER_NOTE:-the system loader}; ICDs: $(ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null | tr '\n' ' ')"
SUB_BACKEND=vulkan run_clip vk-h264-to-vulkan sample-h264.mp4 "--backend vulkan"
SUB_BACKEND=vulkan run_clip vk-hevc10-to-vulkan sample-hevc10.mkv "--backend vulkan"
SUB_BACKEND=vulkan run_clip vk-timeline-h264-to-vulkan sample-h264.mp4 "--backend vulkan --sync timeline"
SUB_BACKEND=vulkan run_clip vk-timeline-size-change-to-vulkan sample-size-change.ts "--backend vulkan --sync timeline"
SUB_BACKEND=vulkan run_clip nvdec-vmm-h264-to-vulkan sample-h264.mp4 "--backend cuda --decoder nvdec --memory vmm-fd --sync host-fence"
SUB_BACKEND=vulkan run_clip nvdec-vmm-hevc-to-vulkan sample-hevc.mkv "--backend cuda --decoder nvdec --memory vmm-fd --sync host-fence"
SUB_BACKEND=cuda run_clip vk-h264-to-cuda sample-h264.mp4 "--backend vulkan"
SUB_BACKEND=cuda run_clip vk-size-change-to-cuda sample-size-change.ts "--backend vulkan"
if grep -q "backend vulkan VulkanOpaqueFd/HostFence on NVIDIA" "$OUT/vk-h264-to-vulkan/publisher.log"; then
  pass "Vulkan publisher on the NVIDIA device: $(grep -o 'backend vulkan [^"]*' "$OUT/vk-h264-to-vulkan/publisher.log" | head -1)"
else
  fail "the Vulkan publisher did not pick the NVIDIA device: $(grep -h 'backend' "$OUT/vk-h264-to-vulkan/publisher.log" | head -1)"
fi
grep -h "Vulkan device" "$OUT/nvdec-vmm-h264-to-vulkan/sub0.log" | head -1 | sed 's/^/  CUDA->Vulkan subscriber: /' | tee -a "$SUMMARY"
# The compute-shader consumer reading shared frames in place on the GPU:
# an NVDEC (CUDA VMM) publisher and a Vulkan timeline-semaphore publisher,
# each converted by examples/nv12_to_png and checked against the CPU.
for pubargs in "--backend cuda --decoder nvdec" "--backend vulkan --sync timeline"; do
  dir=$OUT/vk-example-$(echo "$pubargs" | tr -c 'a-z0-9\n' '-' | tr -s '-'); mkdir -p "$dir"
  "$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key vkex $pubargs --loop --realtime \
      --stats-interval 0 > "$dir/publisher.log" 2>&1 &
  pub=$!
  for _ in $(seq 100); do [ -S "$RT/vkex.sock" ] && break; sleep 0.1; done
  if "$BIN/nv12_to_png" vkex "$dir/frame.png" --check > "$dir/example.log" 2>&1; then
    pass "compute shader on shared frames ($pubargs): $(tr '\n' ' ' < "$dir/example.log")"
  else
    fail "compute shader on shared frames ($pubargs): $(tail -n 2 "$dir/example.log" | tr '\n' ' ')"
  fi
  kill -INT "$pub"; wait "$pub"
done
# VRAM per Vulkan subscriber: a Vulkan publisher (8 slots of 1280x720 NV12,
# 2 MiB each), then 4 Vulkan subscribers one at a time.
dir=$OUT/vk-vram; mkdir -p "$dir"
v0=$(vram_used)
"$BIN/cuframes-publish" --input "$MEDIA/sample-h264.mp4" --key vkvram --backend vulkan \
    --loop --realtime --ring 8 --stats-interval 0 > "$dir/publisher.log" 2>&1 &
pub=$!
sleep 4; v1=$(vram_used)
subs=(); vs=""
for i in 1 2 3 4; do
  "$BIN/cuframes-subscribe" --key vkvram --mode newest-only --backend vulkan --timeout-ms 60000 \
      --name "vk$i" > "$dir/sub$i.log" 2>&1 &
  subs+=($!)
  sleep 3; vs+=" $(vram_used)"
done
for p in "${subs[@]}"; do kill -TERM "$p"; done
for p in "${subs[@]}"; do wait "$p"; done
kill -INT "$pub"; wait "$pub"
say "figure: Vulkan VRAM used (MiB): idle $v0, + Vulkan publisher (device, 8-slot ring) $v1, + 1..4 Vulkan subscribers:$vs"
fi

# --- 11. 64 subscribers on one NVDEC stream (the publisher's default
# max_subscribers): every one an InOrder CUDA subscriber process under Wait,
# each frame MD5 equal to FFmpeg's. SUB64_N overrides the count; MPS11=on runs
# it under an MPS daemon started (and quit) for the section.
if want 11; then
n64=${SUB64_N:-64}
dir=$OUT/sub64; mkdir -p "$dir"
clip=sample-h264.mp4
if [ "${MPS11:-off}" = on ]; then
  export CUDA_MPS_PIPE_DIRECTORY=$(mktemp -d /tmp/mps-pipe.XXXX) CUDA_MPS_LOG_DIRECTORY=$(mktemp -d /tmp/mps-log.XXXX)
  nvidia-cuda-mps-control -d && sleep 1
fi
t0=$(date +%s)
timeout 400 "$BIN/cuframes-publish" --input "$MEDIA/$clip" --key sub64 --backend cuda --decoder nvdec \
    --policy wait --wait-timeout-ms 60000 --wait-subscribers "$n64" --wait-subscribers-timeout-ms 240000 \
    --stats-interval 0 > "$dir/publisher.log" 2>&1 &
pub=$!
subs=()
for i in $(seq 1 "$n64"); do
  timeout 400 "$BIN/cuframes-subscribe" --key sub64 --mode in-order --backend cuda \
      --framemd5 "$dir/sub$i.framemd5" --wait-publisher-ms 60000 --name "s$i" > "$dir/sub$i.log" 2>&1 &
  subs+=($!)
done
ok=1; wait "$pub" || ok=0
good=0; detail=""
for i in $(seq 1 "$n64"); do wait "${subs[$((i - 1))]}" || ok=0; done
want_n=$(grep -vc '^#' "$MEDIA/$clip.framemd5")
for i in $(seq 1 "$n64"); do
  read -r n bad < <(compare "$dir/sub$i.framemd5" "$MEDIA/$clip.framemd5" 2>/dev/null || echo "0 0")
  if [ "$n" -eq "$want_n" ] && [ "$bad" -eq 0 ]; then good=$((good + 1)); else detail+=" s$i=$n/${bad}bad"; fi
done
line=$(grep -h "cuframes-publish:" "$dir/publisher.log" | tail -1)
if [ "${MPS11:-off}" = on ]; then echo quit | nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; fi
if [ $ok = 1 ] && [ $good -eq "$n64" ]; then
  pass "$n64 subscribers on one NVDEC stream (mps ${MPS11:-off}): $good/$n64 with $want_n/$want_n frames MD5-exact in $(( $(date +%s) - t0 )) s | $line"
else
  fail "$n64 subscribers on one NVDEC stream (mps ${MPS11:-off}): $good/$n64 exact;$detail | $line (see sub64/)"
  tail -n 3 "$dir/publisher.log" | sed 's/^/    /' | tee -a "$SUMMARY"
fi
fi

# --- 12. the cuframes facade (examples/subscribe.rs, built with --features
# cuda,vulkan) with Backend::Auto against an NVDEC publisher (CUDA memory)
# and a Vulkan one: one connection each, the backend the offer needs, every
# MD5 equal to FFmpeg's. (Its backend suite's CUDA instance runs in section 1.)
if want 12; then
dir="$OUT/facade"; mkdir -p "$dir"
for pubbackend in cuda vulkan; do
  bin/cuframes-publish --input "$MEDIA/sample-h264.mp4" --key "facade-$pubbackend" --backend "$pubbackend" \
    --policy wait --wait-subscribers 1 --runtime-dir "$RT" > "$dir/pub-$pubbackend.log" 2>&1 &
  pub=$!
  ok=1
  bin/subscribe "facade-$pubbackend" --runtime-dir "$RT" --name facade-example \
    > "$dir/$pubbackend.md5" 2> "$dir/sub-$pubbackend.log" || ok=0
  wait "$pub" || ok=0
  joins=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/pub-$pubbackend.log" | grep -c 'subscriber joined.*name=facade-example' || true)
  chosen=$(grep -o 'read with the [a-z]* backend' "$dir/sub-$pubbackend.log" || true)
  if [ $ok = 1 ] && [ "$joins" = 1 ] && diff <(grep -v '^#' "$MEDIA/sample-h264.mp4.framemd5" | cut -d, -f6 | tr -d ' ') \
       <(cut -d, -f2 "$dir/$pubbackend.md5" | tr -d ' ') > /dev/null; then
    pass "facade example, $pubbackend publisher: $(wc -l < "$dir/$pubbackend.md5") frames MD5-exact, $joins connection, $chosen"
  else
    fail "facade example, $pubbackend publisher: ok=$ok joins=$joins $chosen (see facade/)"
  fi
done
fi

say "# failures: $FAILS"
rm -rf "$RT"
# One archive of every log, so that a run's evidence travels as one file.
# (Written outside $OUT first: tar warns about an archive inside what it reads.)
tmp=$(mktemp /tmp/cuframes-logs.XXXX.tar.gz)
(cd "$OUT" && tar czf "$tmp" --exclude=logs.tar.gz --exclude=summary.txt --exclude=console.log . \
   && mv "$tmp" logs.tar.gz \
   && find . -mindepth 1 -not -name logs.tar.gz -not -name summary.txt -not -name console.log -delete)
exit $FAILS
