#!/usr/bin/env bash
# How many 1080p30 H.264 streams ONE cuframes-publish process sustains on this
# GPU without drops: a benchmark, not a test. Run on the GPU machine from the
# folder scripts/gpu-build.sh fills (bin/, media/sample-1080p.mp4, this script).
#
# For N in a ramp (NS, default 16 32 48 64 80 96 128 160 192), one publisher
# runs N streams from one cameras.toml: media/sample-1080p.mp4 (1920x1080,
# 30 fps, 300 frames) decoded by NVDEC into CUDA rings (8 slots), paced in
# real time (`realtime`), looped, policy drop-frame (the camera setting). Each
# stream has ONE NewestOnly CUDA subscriber process that only leases and
# releases frames (no copy, no hash). A step:
#   1. starts the subscribers (they wait for their key), then the publisher;
#   2. waits until every subscriber is connected (each makes its own CUDA
#      context: that takes a while for 100+ processes), at most CONNECT_MAX s;
#   3. lets it settle SETTLE_S s, then measures for MEASURE_S s: the window;
#   4. stops the publisher with SIGTERM (streams end "stopped by signal";
#      the subscribers, --no-reconnect, end on its GOODBYE).
# Over the window it reports:
#   - each stream's publishing rate: frames / seconds between the first and
#     last of its periodic stats lines inside the window (timestamps of the
#     lines), min and median over the streams;
#   - drops: the publisher's (its summary lines, whole run) and the
#     subscribers' (frames a NewestOnly subscriber skipped, i.e. it was late
#     by a frame or more; from its per-second lines, inside the window);
#   - NVDEC and GPU utilisation (nvidia-smi, one sample a second), mean / max;
#   - VRAM: used in the window minus idle before the step, in all and per
#     stream (ring + decoder + one subscriber process's CUDA context), and,
#     when nvidia-smi lists processes, the publisher's own VRAM per stream and
#     one subscriber's;
#   - CPU (from /proc): publisher cores = CPU seconds / wall seconds, its
#     share per stream, and the N subscribers' cores together.
# Sustained = every stream >= MIN_FPS (29.5) fps in the window, every
# subscriber connected, 0 publisher drops, 0 subscriber drops in the window,
# no process failed. The ramp stops at the first N not sustained, or before a
# step that would not fit the time budget or the free VRAM. Output: a table
# on stdout and in $OUT/scale.txt, ending with
#   figure: max sustained 1080p30 streams in one publisher: N
# and every log in $OUT/scale-logs.tar.gz.
#
# The machine's cores (16 on the H200 host) are shared by the publisher, the
# N subscriber processes and nvidia-smi: the subscribers' CPU is its own
# column, so that a limit of the host is not taken for one of the publisher.
#
# Knobs (environment): OUT, NS, MEASURE_S (15), SETTLE_S (2), CONNECT_MAX
# (60), STATS (2: s between the publisher's stats lines), MIN_FPS (29.5),
# BUDGET_S (420: no step starts that would end past this many seconds of the
# run), KEEP_NOFILE=1 (do not raise the open-files soft limit to the hard one).
set -uo pipefail
cd "$(dirname "$0")"
export LC_ALL=C
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"
BIN=$PWD/bin
MEDIA=$PWD/media
CLIP=$MEDIA/sample-1080p.mp4
NS=${NS:-16 32 48 64 80 96 128 160 192}
MEASURE_S=${MEASURE_S:-15}
SETTLE_S=${SETTLE_S:-2}
CONNECT_MAX=${CONNECT_MAX:-60}
STATS=${STATS:-2}
MIN_FPS=${MIN_FPS:-29.5}
BUDGET_S=${BUDGET_S:-420}
LIMIT=$((CONNECT_MAX + SETTLE_S + MEASURE_S + 60))   # `timeout` of every process of a step
RT=$(mktemp -d /tmp/cuframes-scale.XXXX)
export CUFRAMES_RUNTIME_DIR=$RT
export NO_COLOR=1               # plain log lines (they are also stripped of ANSI codes)
SCALE=$OUT/scale                # per-step logs, packed at the end
R=$OUT/scale.txt
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
rm -rf "$SCALE"; mkdir -p "$SCALE"
: > "$R"
say() { echo "$*" | tee -a "$R"; }
now() { if [ -n "${EPOCHREALTIME:-}" ]; then echo "$EPOCHREALTIME"; else date +%s.%N; fi; }
later() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }   # later A B: A >= B
smi() { timeout 30 nvidia-smi "$@"; }
vram_used() { smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; }
vram_free() { smi --query-gpu=memory.free --format=csv,noheader,nounits | head -1; }
key() { printf 'c%03d' "$1"; }

# --- Processes: every one runs under `timeout`; on exit, whatever is left of
# this script's descendants (found through /proc: no ps or job control
# needed) gets SIGTERM, then SIGKILL.
descendants() {  # descendants PID: every live descendant of PID, one a line
  # Not this function's own subshell (a command substitution) nor its cat and awk.
  local me=$BASHPID
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" -v self="$me" '
    { line = $0; sub(/.*\) /, "", line); split(line, f, " "); ppid[$1] = f[2] }
    END { q[n = 1] = root
          for (i = 1; i <= n; i++) for (p in ppid) if (ppid[p] == q[i] && p != self) { q[++n] = p; print p } }'
}
child_of() {  # child_of PID: a child of PID (timeout has one: the command it runs)
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v pp="$1" '
    { r = $0; sub(/.*\) /, "", r); split(r, f, " "); if (f[2] == pp) { print $1; exit } }'
}
kill_tree() {  # kill_tree PID...: SIGTERM to them and their descendants, SIGKILL 2 s later
  local p all=()
  for p in "$@"; do all+=("$p" $(descendants "$p")); done
  [ ${#all[@]} -gt 0 ] || return 0
  kill -TERM "${all[@]}" 2>/dev/null
  sleep 2
  kill -KILL "${all[@]}" 2>/dev/null
  return 0
}
cleanup() {
  trap - EXIT INT TERM
  local left; left=$(descendants $$)
  if [ -n "$left" ]; then
    kill -TERM $left 2>/dev/null; sleep 2
    left=$(descendants $$); [ -n "$left" ] && kill -KILL $left 2>/dev/null
  fi
  rm -rf "$RT"
}
trap cleanup EXIT
trap 'echo "gpu-scale: interrupted" >&2; exit 130' INT TERM

# --- Parsers (awk: mawk and gawk alike).
# Timestamps to Unix seconds: tracing's "2026-11-22T01:02:03.123456Z" (UTC)
# and nvidia-smi's "2026/11/22 01:02:03.456" share their field offsets.
AWK_TIME='
function days(y, m, d,   era, yoe, doy, doe) {   # days since 1970-01-01 (proleptic Gregorian)
  if (m <= 2) y--
  era = int(y / 400); yoe = y - era * 400
  doy = int((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5) + d - 1
  doe = yoe * 365 + int(yoe / 4) - int(yoe / 100) + doy
  return era * 146097 + doe - 719468
}
function epoch(s) {
  return days(substr(s, 1, 4) + 0, substr(s, 6, 2) + 0, substr(s, 9, 2) + 0) * 86400 \
    + substr(s, 12, 2) * 3600 + substr(s, 15, 2) * 60 + substr(s, 18) * 1
}'
# The publisher's periodic per-stream lines (service/stats.rs stats_line,
# logged by tracing at INFO, UTC timestamp first), e.g.
#   2026-11-22T01:02:03.123456Z  INFO cuframes_publish: c007: streaming, 30.0 fps, 123 frames, 0 dropped, 1 subscriber(s), 0 reconnect(s), 1920x1080, last frame 0.0 s ago
# Per key, over its "streaming" lines with timestamps in [ws, we], prints:
#   KEY INTERVALS SPAN_FPS MEDIAN_FPS MIN_FPS MAX_FPS MIN_SUBSCRIBERS DROPPED_IN_WINDOW
# SPAN_FPS = frames between the first and last of those lines / seconds
# between their timestamps; the others are per interval between two lines,
# also from frames and timestamps (the line's own fps is not used).
AWK_STEADY="$AWK_TIME"'
$1 ~ /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T/ &&
match($0, /[A-Za-z0-9_-]+: [a-z][a-z0-9. ]*, [0-9.]+ fps, [0-9]+ frames, [0-9]+ dropped, [0-9]+ subscriber/) {
  split(substr($0, RSTART, RLENGTH), p, ", ")
  k = p[1]; sub(/: .*/, "", k); st = p[1]; sub(/^[^:]*: /, "", st)
  if (!(k in cnt)) { cnt[k] = 0; keys[++nk] = k }
  if (st != "streaming") next
  tt = epoch($1); if (tt < ws || tt > we) next
  i = ++cnt[k]; t[k, i] = tt; f[k, i] = p[3] + 0; d[k, i] = p[4] + 0; s[k, i] = p[5] + 0
}
END {
  for (j = 1; j <= nk; j++) {
    k = keys[j]; m = cnt[k]
    if (m < 2) { print k, 0, 0, 0, 0, 0, 0, 0; continue }
    nv = 0; smin = s[k, 1]
    for (i = 2; i <= m; i++) {
      v[++nv] = (t[k, i] > t[k, i - 1]) ? (f[k, i] - f[k, i - 1]) / (t[k, i] - t[k, i - 1]) : 0
      if (s[k, i] < smin) smin = s[k, i]
    }
    for (x = 2; x <= nv; x++) { y = v[x]; for (z = x - 1; z >= 1 && v[z] > y; z--) v[z + 1] = v[z]; v[z + 1] = y }
    med = (nv % 2) ? v[(nv + 1) / 2] : (v[nv / 2] + v[nv / 2 + 1]) / 2
    printf "%s %d %.2f %.2f %.2f %.2f %d %d\n", k, m - 1,
      (f[k, m] - f[k, 1]) / (t[k, m] - t[k, 1]), med, v[1], v[nv], smin, d[k, m] - d[k, 1]
  }
}'
# The publisher's summary lines (bin/cuframes-publish/main.rs), one per stream:
#   cuframes-publish: c007: stopped by signal: 712 frames published, 0 dropped, 0 revoked lease(s), 29.1 fps, 0 reconnect(s), 0 stream change(s)
# Prints: STREAMS FAILED FRAMES DROPPED REVOKED
AWK_SUMMARY='
match($0, /cuframes-publish: [A-Za-z0-9_-]+: [a-z ]+: [0-9]+ frames published, [0-9]+ dropped, [0-9]+ revoked/) {
  split(substr($0, RSTART, RLENGTH), p, ": "); split(p[4], q, ", ")
  n++; if (p[3] == "failed") e++
  fr += q[1]; dr += q[2]; rv += q[3]
}
END { print n + 0, e + 0, fr + 0, dr + 0, rv + 0 }'
# A subscriber's per-second line (--stats-interval 1, bin/cuframes-subscribe.rs)
#   c007: 30 frames, 9 dropped, 0 reconnects, 0 stream changes, 29.8 fps
# ("dropped" of a NewestOnly subscriber: frames it skipped; its very first
# frame skips those committed while it imported the ring into its new CUDA
# context, after WELCOME fixed its start: a start-up artefact, left out by
# counting inside the window only). snap LOG...: per log "LOG LAST FIRST"
# dropped values so far.
snap() {
  awk 'match($0, /: [0-9]+ frames, [0-9]+ dropped/) {
         split(substr($0, RSTART, RLENGTH), q, " ")
         if (!(FILENAME in first)) first[FILENAME] = q[4]; last[FILENAME] = q[4] }
       END { for (f in last) print f, last[f], first[f] }' "$@"
}
# Drops in the window from two snaps (a log without a line at the start
# counts from its first line). Prints: DROPPED LOGS_AT_END
AWK_WINDOW_DROPS='
FNR == NR { base[$1] = $2; next }
{ n++; s += $2 - (($1 in base) ? base[$1] : $3) }
END { print s + 0, n + 0 }'
# A subscriber's last line, e.g.
#   c007: publisher ended the stream: received 431 frames, dropped 9, revoked 0, 29.9 fps; publish-to-receive latency p50 95 us, p99 410 us, max 2210 us
# Over all logs prints: FINAL_LINES RECEIVED DROPPED REVOKED WORST_P50_US WORST_P99_US WORST_MAX_US
AWK_SUBS='
match($0, /: received [0-9]+ frames, dropped [0-9]+, revoked [0-9]+/) {
  split(substr($0, RSTART, RLENGTH), p, " ")
  n++; rc += p[3]; dr += p[6]; rv += p[8]
  if (match($0, /p50 [0-9]+ us, p99 [0-9]+ us, max [0-9]+ us/)) {
    split(substr($0, RSTART, RLENGTH), l, " ")
    if (l[2] + 0 > p50) p50 = l[2] + 0; if (l[5] + 0 > p99) p99 = l[5] + 0; if (l[8] + 0 > mx) mx = l[8] + 0
  }
}
END { print n + 0, rc + 0, dr + 0, rv + 0, p50 + 0, p99 + 0, mx + 0 }'

# --- Checks and header
for f in "$BIN/cuframes-publish" "$BIN/cuframes-subscribe" "$CLIP"; do
  [ -e "$f" ] || { echo "gpu-scale: $f is missing (run scripts/gpu-build.sh)" >&2; exit 1; }
done
# A stream's rate needs at least 2 intervals between its stats lines in the window.
awk -v m="$MEASURE_S" -v s="$STATS" 'BEGIN { exit !(s > 0 && m >= 3 * s) }' ||
  { echo "gpu-scale: MEASURE_S ($MEASURE_S) must be at least 3 x STATS ($STATS)" >&2; exit 1; }
for c in nvidia-smi timeout; do
  command -v "$c" >/dev/null || { echo "gpu-scale: no $c" >&2; exit 1; }
done
# A publisher holds a dozen or more descriptors per stream (socket, slot
# exports, memfds, its subscriber's connection): raise the soft limit.
NOFILE_WAS=$(ulimit -n)
if [ -z "${KEEP_NOFILE:-}" ]; then
  hard=$(ulimit -Hn); [ "$hard" = unlimited ] && hard=1048576
  ulimit -n "$hard" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
fi
# nvidia-smi prints local time: its offset from UTC, in whole quarter hours.
SMI_OFF=$(TZ=UTC smi --query-gpu=timestamp --format=csv,noheader | head -1 |
  awk -v now="$(now)" "$AWK_TIME"'{ d = epoch($0) - now; printf "%d\n", (d < 0 ? -1 : 1) * int((d < 0 ? -d : d) / 900 + 0.5) * 900 }')
SMI_OFF=${SMI_OFF:-0}

say "# cuframes scale benchmark: 1080p30 H.264 streams in ONE cuframes-publish process, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "# $(smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1); $(uname -r); $(nproc) CPU cores"
say "# clip: $(basename "$CLIP") ($(stat -c %s "$CLIP") bytes), NVDEC -> CUDA ring (8 slots, vmm-fd, host-fence), realtime, looped, policy drop-frame"
say "# per stream: one NewestOnly CUDA subscriber process that leases and releases each frame (no copy, no hash)"
say "# window: ${MEASURE_S} s, from ${SETTLE_S} s after the last subscriber connected; the publisher's stats lines every $STATS s"
say "# open files limit: soft $(ulimit -n) (was $NOFILE_WAS), hard $(ulimit -Hn)"
say "# sustained = every stream >= $MIN_FPS fps in the window, every subscriber connected, 0 drops, no process failed"
say "# the $(nproc) cores are shared by the publisher, the N subscribers and nvidia-smi: subscriber CPU is its own column"
say "#"
say "# fps: per-stream publishing rate in the window, min / median over the streams"
say "# drops p/s: publisher (whole run) / subscribers (frames skipped in the window; start-up skips are in the notes)"
say "# NVDEC, GPU: nvidia-smi utilisation %, mean / max of the 1 s samples in the window"
say "# VRAM MiB/str: used in the window - idle before the step, all and per stream (ring + decoder + one subscriber's CUDA context)"
say "# pub/str, sub: VRAM MiB of the publisher per stream and of one subscriber process (nvidia-smi's process list; - when it lists none)"
say "# pub, %c/str, subs: CPU cores in the window (CPU s / wall s) of the publisher, its % of one core per stream, all subscribers"
say "# conn: s from the publisher's start until every subscriber was connected; p99ms: worst subscriber p99 publish-to-receive latency, whole run"
FMT='%5s %13s %11s %11s %11s %14s %7s %7s %5s %6s %6s %5s %6s  %s'
HDR=$(printf "$FMT" N "fps min/med" "drops p/s" "NVDEC %" "GPU %" "VRAM MiB/str" "pub/str" "sub" "pub" "%c/str" "subs" "conn" "p99ms" result)
say "$HDR"

# --- One step of the ramp: run_step N. Sets ROW (the table row), REASON
# (why not sustained; empty when sustained), PER_STREAM_MIB and STEP_S.
run_step() {
  local n=$1 dir=$SCALE/n$1 i k
  local rtd=$RT/n$n t_begin=$SECONDS
  mkdir -p "$dir" "$rtd"
  echo "gpu-scale: N=$n: starting, $SECONDS s into the run" >&2
  # cameras.toml: every stream from [defaults], keys c000...
  {
    echo "stats_interval = $STATS"
    echo
    echo "[defaults]"
    echo "file = '$CLIP'"
    echo 'decoder = "nvdec"'
    echo 'backend = "cuda"'
    echo 'realtime = true'
    echo 'loop = true'
    echo 'ring = 8'
    echo 'policy = "drop-frame"'
    for ((i = 0; i < n; i++)); do printf '\n[[stream]]\nkey = "%s"\n' "$(key "$i")"; done
  } > "$dir/cameras.toml"

  local idle; idle=$(vram_used)
  TZ=UTC timeout $((LIMIT + 30)) nvidia-smi --query-gpu=timestamp,utilization.decoder,utilization.gpu,memory.used \
      --format=csv,noheader,nounits -l 1 > "$dir/gpu.csv" 2>&1 &
  local mon=$!
  # Subscribers first: each retries until its key's socket appears.
  local subs=()
  for ((i = 0; i < n; i++)); do
    k=$(key "$i")
    CUFRAMES_RUNTIME_DIR=$rtd timeout "$LIMIT" "$BIN/cuframes-subscribe" --key "$k" --mode newest-only --backend cuda \
        --no-reconnect --timeout-ms 20000 --wait-publisher-ms $((CONNECT_MAX * 1000)) --stats-interval 1 --name "$k" \
        > "$dir/sub-$k.log" 2>&1 &
    subs+=($!)
  done
  local t0; t0=$(now)
  CUFRAMES_RUNTIME_DIR=$rtd RUST_LOG=info timeout "$LIMIT" "$BIN/cuframes-publish" --config "$dir/cameras.toml" \
      > "$dir/publisher.log" 2>&1 &
  local pub=$!

  # Every 0.5 s while the publisher runs: connected yet? then CPU ticks of
  # the publisher and of the subscribers (from /proc) with a timestamp;
  # snapshots of the subscribers' drops at both ends of the window; once,
  # 4 s into it, the per-process VRAM and the publisher's fds and threads.
  local ppid="" conn="" ws="" we="" sampled=0 c tn
  local spids=()
  : > "$dir/cpu.txt"
  while kill -0 "$pub" 2>/dev/null; do
    tn=$(now)
    [ -n "$ppid" ] || ppid=$(child_of "$pub")   # the publisher itself, under timeout
    if [ -z "$conn" ]; then
      c=$(grep -l ": connected to" "$dir"/sub-*.log 2>/dev/null | wc -l)
      if [ "$c" -ge "$n" ]; then
        conn=$(awk -v a="$t0" -v b="$tn" 'BEGIN { printf "%.1f", b - a }')
        ws=$(awk -v b="$tn" -v s="$SETTLE_S" 'BEGIN { printf "%.6f", b + s }')
        spids=($(grep -ho 'pid [0-9]* here' "$dir"/sub-*.log | awk '{ print $2 }'))
      elif later "$tn" "$(awk -v a="$t0" -v m="$CONNECT_MAX" 'BEGIN { printf "%.6f", a + m }')"; then
        echo "only $c of $n subscribers connected within $CONNECT_MAX s" > "$dir/connect-failed.txt"
        break
      fi
    fi
    if [ -n "$ppid" ] && [ ${#spids[@]} -gt 0 ]; then
      echo "$tn $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$ppid/stat" 2>/dev/null || echo x) $(
        cat $(printf '/proc/%s/stat ' "${spids[@]}") 2>/dev/null |
        awk '{ sub(/.*\) /, ""); s += $12 + $13; m++ } END { print s + 0, m + 0 }')" >> "$dir/cpu.txt"
    fi
    if [ -n "$ws" ] && [ ! -f "$dir/snap-start.txt" ] && later "$tn" "$ws"; then
      snap "$dir"/sub-*.log > "$dir/snap-start.txt"
    fi
    if [ -n "$ws" ] && [ $sampled = 0 ] && later "$tn" "$(awk -v a="$ws" 'BEGIN { printf "%.6f", a + 4 }')"; then
      sampled=1
      smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits > "$dir/apps.csv" 2>&1
      echo "publisher: $(ls "/proc/$ppid/fd" 2>/dev/null | wc -l) open fds, $(awk '/^Threads:/ { print $2 }' "/proc/$ppid/status" 2>/dev/null) threads" \
        > "$dir/proc.txt"
    fi
    if [ -n "$ws" ] && later "$tn" "$(awk -v a="$ws" -v m="$MEASURE_S" 'BEGIN { printf "%.6f", a + m }')"; then
      we=$tn
      snap "$dir"/sub-*.log > "$dir/snap-end.txt"
      break
    fi
    sleep 0.5
  done
  # Stop: SIGTERM to timeout, which passes it on to the publisher.
  kill -TERM "$pub" 2>/dev/null
  local pub_rc=0; wait "$pub" || pub_rc=$?
  # The subscribers end on the publisher's GOODBYE; give them 20 s, then stop them.
  local deadline=$((SECONDS + 20)) alive
  while :; do
    alive=0; for i in "${subs[@]}"; do kill -0 "$i" 2>/dev/null && alive=$((alive + 1)); done
    [ $alive -gt 0 ] && [ $SECONDS -lt $deadline ] || break
    sleep 0.5
  done
  [ $alive -gt 0 ] && kill_tree "${subs[@]}"
  local sub_bad=0
  for i in "${subs[@]}"; do wait "$i" || sub_bad=$((sub_bad + 1)); done
  kill "$mon" 2>/dev/null; wait "$mon" 2>/dev/null
  STEP_S=$((SECONDS - t_begin))
  ws=${ws:-0} we=${we:-0}

  # --- Parse
  sed 's/\x1b\[[0-9;]*m//g' "$dir/publisher.log" > "$dir/publisher.txt"
  awk -v ws="$ws" -v we="$we" "$AWK_STEADY" "$dir/publisher.txt" > "$dir/steady.txt"
  local streams failed frames pdrop revoked
  read -r streams failed frames pdrop revoked < <(awk "$AWK_SUMMARY" "$dir/publisher.txt")
  local finals received sdrop_all srevoked p50 p99 pmax
  read -r finals received sdrop_all srevoked p50 p99 pmax < <(awk "$AWK_SUBS" "$dir"/sub-*.log)
  local sdrop="-" snapped=0
  if [ -f "$dir/snap-start.txt" ] && [ -f "$dir/snap-end.txt" ]; then
    read -r sdrop snapped < <(awk "$AWK_WINDOW_DROPS" "$dir/snap-start.txt" "$dir/snap-end.txt")
  fi
  # Per-stream rates in the window.
  local fmin fmed slow reported
  read -r fmin fmed slow reported < <(awk -v min="$MIN_FPS" -v n="$n" '
    { reported++; if ($2 < 2 || $3 < min) slow++; v[reported] = $3 }
    END { for (x = 2; x <= reported; x++) { y = v[x]; for (z = x - 1; z >= 1 && v[z] > y; z--) v[z + 1] = v[z]; v[z + 1] = y }
          slow += n - reported
          if (!reported) { print "- -", slow, 0; exit }
          printf "%.1f %.1f %d %d\n", v[1], v[int((reported + 1) / 2)], slow, reported }' "$dir/steady.txt")
  # GPU samples in the window.
  local dec_m dec_x gpu_m gpu_x mem_x
  read -r dec_m dec_x gpu_m gpu_x mem_x < <(awk -F', *' -v ws="$ws" -v we="$we" -v off="$SMI_OFF" "$AWK_TIME"'
    NF >= 4 && $1 ~ /^[0-9][0-9][0-9][0-9]\// { t = epoch($1) - off
      if (t < ws || t > we) next
      n++; ds += $2; gs += $3; if ($2 + 0 > dx) dx = $2 + 0; if ($3 + 0 > gx) gx = $3 + 0; if ($4 + 0 > mx) mx = $4 + 0 }
    END { if (n) printf "%.0f %.0f %.0f %.0f %d\n", ds / n, dx, gs / n, gx, mx; else print "- - - - 0" }' "$dir/gpu.csv")
  local vram_all=$((mem_x > idle ? mem_x - idle : 0))
  PER_STREAM_MIB=$((vram_all / n))
  # Per-process VRAM, when nvidia-smi lists processes.
  local pub_mib sub_mib
  read -r pub_mib sub_mib < <(awk -F', *' -v n="$n" '
    $2 ~ /cuframes-publish/ { p += $3; pn++ } $2 ~ /cuframes-subscribe/ { s += $3; sn++ }
    END { printf "%s %s\n", pn ? sprintf("%.0f", p / n) : "-", sn ? sprintf("%.0f", s / sn) : "-" }' "$dir/apps.csv" 2>/dev/null || echo "- -")
  # CPU in the window, from the samples with every subscriber alive.
  local pcores scores
  read -r pcores scores < <(awk -v ws="$ws" -v we="$we" -v n="$n" -v hz="$HZ" '
    $2 != "x" && $4 == n && $1 >= ws && $1 <= we { k++; if (k == 1) { t0 = $1; p0 = $2; s0 = $3 } t1 = $1; p1 = $2; s1 = $3 }
    END { if (k >= 2 && t1 > t0) printf "%.2f %.2f\n", (p1 - p0) / hz / (t1 - t0), (s1 - s0) / hz / (t1 - t0); else print "- -" }' "$dir/cpu.txt")
  local pcs="-"; [ "$pcores" != "-" ] && pcs=$(awk -v c="$pcores" -v n="$n" 'BEGIN { printf "%.1f", 100 * c / n }')

  # --- Verdict
  REASON=""
  [ -f "$dir/connect-failed.txt" ] && REASON+=" $(cat "$dir/connect-failed.txt");"
  [ "$pub_rc" = 0 ] || REASON+=" publisher exit $pub_rc;"
  [ "$streams" = "$n" ] && [ "$failed" = 0 ] || REASON+=" $streams summary lines for $n streams, $failed failed;"
  [ "$slow" = 0 ] || REASON+=" $slow stream(s) below $MIN_FPS fps or without 2 stats intervals in the window;"
  [ "$pdrop" = 0 ] || REASON+=" publisher dropped $pdrop;"
  [ "$sdrop" = 0 ] || REASON+=" subscribers skipped $sdrop frames in the window;"
  [ "$finals" = "$n" ] && [ "$sub_bad" = 0 ] || REASON+=" $finals/$n subscribers finished, $sub_bad exited non-zero;"
  local result=sustained; [ -z "$REASON" ] || result="NOT sustained"
  ROW=$(printf "$FMT" \
    "$n" "$fmin/$fmed" "$pdrop/$sdrop" "$dec_m/$dec_x" "$gpu_m/$gpu_x" "$vram_all/$PER_STREAM_MIB" \
    "$pub_mib" "$sub_mib" "$pcores" "$pcs" "$scores" "${conn:--}" \
    "$(awk -v u="$p99" 'BEGIN { printf "%.1f", u / 1000 }')" "$result")
  {
    echo "n=$n: step ${STEP_S} s; window $(awk -v a="$ws" -v b="$we" 'BEGIN { printf "%.1f", b - a }') s; idle VRAM $idle MiB; $(cat "$dir/proc.txt" 2>/dev/null || echo 'publisher fds/threads not sampled')"
    echo "n=$n: publisher: exit $pub_rc; $streams summary lines, $failed failed, $frames frames published, $pdrop dropped, $revoked revoked; $reported streams with stats lines in the window"
    echo "n=$n: subscribers: $finals final lines, $received frames received, $sdrop_all skipped in all ($sdrop in the window, $snapped logs), $srevoked revoked, $sub_bad exited non-zero; worst p50 $p50 us, p99 $p99 us, max $pmax us"
    [ -z "$REASON" ] || echo "n=$n: not sustained:$REASON"
    # The publisher's last errors or warnings, if any (a failed stream, a full fd table, ...).
    grep -hiE 'error|warn' "$dir/publisher.txt" | tail -n 2 | sed "s/^/n=$n: publisher says: /"
  } > "$dir/notes.txt"
}

# --- The ramp
MAX=0 STOP="" LAST_N="" LAST_S=0 LAST_PER=0 DONE=()
for n in $NS; do
  # Would this step fit the time budget and the free VRAM (scaled from the last step)?
  if [ -n "$LAST_N" ]; then
    est=$((LAST_S * n / LAST_N))
    if [ $((SECONDS + est)) -gt "$BUDGET_S" ]; then STOP="time budget: N=$n would take ~$est s more (BUDGET_S=$BUDGET_S)"; break; fi
    need=$((LAST_PER * n)) free=$(vram_free)
    if [ "$need" -gt $((${free:-0} - 2048)) ]; then STOP="VRAM: N=$n needs ~$need MiB, ${free:-?} MiB free"; break; fi
  fi
  run_step "$n"
  DONE+=("$n")
  say "$ROW"
  LAST_N=$n LAST_S=$STEP_S LAST_PER=$PER_STREAM_MIB
  if [ -n "$REASON" ]; then STOP="N=$n not sustained:$REASON"; break; fi
  MAX=$n
done

say "#"
for n in "${DONE[@]}"; do sed 's/^/# /' "$SCALE/n$n/notes.txt"; done | tee -a "$R"
if [ -z "$STOP" ]; then
  say "# every step of the ramp ($NS) was sustained: $MAX is a lower bound, not the limit"
else
  say "# the ramp stopped: $STOP"
fi
say "figure: max sustained 1080p30 streams in one publisher: $MAX"

(cd "$OUT" && tar czf scale-logs.tar.gz scale && rm -rf scale)
