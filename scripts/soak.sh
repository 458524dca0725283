#!/usr/bin/env bash
# The long soak of the frame ring: no torn frame reaches a subscriber.
#
# NOT part of CI (it takes 2 x DURATION plus about a minute: 21 minutes by
# default); run it by hand, e.g. before a release:   bash scripts/soak.sh
# A quick check of the script itself:   DURATION=30 bash scripts/soak.sh
# docs/verification.md refers to it.
#
# One publisher (host memory, software decode) loops media/sample-h264.mp4 at
# real time (25 fps, 1280x720 NV12) into an 8-slot ring, key "soak", and four
# subscriber processes read it, each hashing every frame it keeps
# (--framemd5):
#   inorder-fast   in-order
#   inorder-slow   in-order, sleeps while holding each frame (slower than 25 fps)
#   newest-fast    newest-only
#   newest-slow    newest-only, sleeps while holding each frame
# Run A: --policy wait, the default lease timeout (5 s). The slow in-order
#   reader keeps the publisher waiting for a free slot, ~60 ms a frame, which
#   never reaches --wait-timeout-ms (2 s): no lag warning, the whole stream
#   just runs at that reader's pace (~16 fps instead of 25, for every reader;
#   the publisher's fps shows it).
# Run B: --policy drop-frame --lease-timeout-ms 5: every frame held past the
#   timeout is revoked. The publisher checks leases when it claims a slot, once
#   per frame here (every 40 ms), so a lease is revoked at the second check
#   after it is first seen: frames held longer than ~40-80 ms. The slow
#   readers' sleeps are picked so that a good part, but not all, of their
#   frames are revoked. The publisher's "revoked lease(s)" counts its
#   decisions; a subscriber's "revoked" only the frames whose slot was
#   actually rewritten before it released them (post-check), so it is smaller.
#
# What is checked, for every subscriber of both runs: each hashed frame's MD5
# equals FFmpeg's reference for its source index (media/sample-h264.mp4.framemd5,
# column 3 = index in the clip, which restarts at 0 on every loop; a frame
# whose lease was revoked while it was held is not hashed but counted as
# "revoked" by the subscriber), at least one frame was hashed, the framemd5
# holds as many frames as the subscriber's summary line says it received, and
# every process ended with status 0 after SIGTERM to the publisher (the
# subscribers, --no-reconnect, end on its GOODBYE shutdown). Run B must also
# have revoked leases (else it did not test what it claims).
# cuframes-subscribe holds each frame for its --sleep-ms and hashes it after,
# so in run B the slow readers hash slots the publisher may already be
# rewriting: a wrong MD5 means the publisher rewrote a slot that a valid lease
# still pinned, or a torn frame passed the post-check.
#
# Environment: DURATION (seconds per run, default 600), DURATION_B (run B,
# default DURATION), BIN (default target/release if built, else target/debug),
# OUT (logs, framemd5 files, summary.txt; default a new temp dir),
# SLEEP_INORDER_SLOW / SLEEP_NEWEST_SLOW (run A, ms, default 60 / 100),
# SLEEP_INORDER_SLOW_B / SLEEP_NEWEST_SLOW_B (run B, ms, default 60 / 50),
# GRACE (seconds a process may take to end after SIGTERM, default 30).
# Prints a table and PASS / FAIL lines; the exit status is the number of FAILs.
set -uo pipefail
case ${OUT:-} in "" | /*) ;; *) OUT=$PWD/$OUT ;; esac
cd "$(dirname "$0")/.." || exit 1

DURATION=${DURATION:-600}
DURATION_B=${DURATION_B:-$DURATION}
if [ -z "${BIN:-}" ]; then
  if [ -x target/release/cuframes-publish ] && [ -x target/release/cuframes-subscribe ]; then
    BIN=target/release
  else
    BIN=target/debug
  fi
fi
OUT=${OUT:-$(mktemp -d /tmp/cuframes-soak.XXXXXX)}
SLEEP_INORDER_SLOW=${SLEEP_INORDER_SLOW:-60}
SLEEP_NEWEST_SLOW=${SLEEP_NEWEST_SLOW:-100}
SLEEP_INORDER_SLOW_B=${SLEEP_INORDER_SLOW_B:-60}
SLEEP_NEWEST_SLOW_B=${SLEEP_NEWEST_SLOW_B:-50}
GRACE=${GRACE:-30}
CLIP=media/sample-h264.mp4
REF=$CLIP.framemd5
KEY=soak
SUBS="inorder-fast inorder-slow newest-fast newest-slow"
export NO_COLOR=1 # plain log lines (tracing-subscriber colours them otherwise)

mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
FAILS=0
say() { echo "$*" | tee -a "$SUMMARY"; }
pass() { say "PASS $*"; }
fail() { say "FAIL $*"; FAILS=$((FAILS + 1)); }

for f in "$BIN/cuframes-publish" "$BIN/cuframes-subscribe"; do
  if [ ! -x "$f" ]; then
    echo "soak: $f missing; build it: cargo build -p cuframes-tools --bins" >&2
    exit 1
  fi
done
[ -f "$REF" ] || { echo "soak: reference $REF missing" >&2; exit 1; }

RT=$(mktemp -d /tmp/cuframes-soak-rt.XXXXXX)

# Every process runs under `timeout`; PIDS holds the timeout processes.
# timeout puts its child in a process group of its own, so the child is
# signalled by its pid (pgrep -P): a signal to timeout itself would make it
# report 143 instead of the child's own status.
declare -a PIDS=()
declare -A PID=() RC=()
tool_pid() { pgrep -P "$1" 2>/dev/null | head -1; }
cleanup() {
  local p c left=()
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      left+=("$p")
      c=$(tool_pid "$p")
      [ -n "$c" ] && kill -TERM "$c" 2>/dev/null
      kill -TERM "$p" 2>/dev/null
    fi
  done
  if [ "${#left[@]}" -gt 0 ]; then
    sleep 2
    for p in "${left[@]}"; do
      if kill -0 "$p" 2>/dev/null; then
        c=$(tool_pid "$p")
        [ -n "$c" ] && kill -KILL "$c" 2>/dev/null
        kill -KILL "$p" 2>/dev/null
      fi
    done
  fi
  rm -rf "$RT"
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT
trap 'echo "soak: terminated" >&2; exit 143' TERM

# start NAME LIMIT_SECS LOG COMMAND...
start() {
  local name=$1 limit=$2 log=$3
  shift 3
  timeout -k 10 "$limit" "$@" >"$log" 2>&1 &
  PID[$name]=$!
  PIDS+=("$!")
}
alive() { kill -0 "${PID[$1]}" 2>/dev/null; }
# stop NAME: SIGTERM to the tool (or to timeout if the tool is not up yet).
stop() {
  local c
  alive "$1" || return 0
  c=$(tool_pid "${PID[$1]}")
  kill -TERM "${c:-${PID[$1]}}" 2>/dev/null
}
# reap NAME SECS: waits up to SECS for NAME to end, then SIGTERMs it (once,
# GRACE more seconds) and records its status in RC[NAME] ("hung" if it still
# would not end).
reap() {
  local name=$1 secs=$2 t=0
  while alive "$name" && [ "$t" -lt $((secs * 10)) ]; do
    sleep 0.1
    t=$((t + 1))
  done
  if alive "$name"; then
    say "  $name did not end within ${secs}s; SIGTERM"
    stop "$name"
    t=0
    while alive "$name" && [ "$t" -lt $((GRACE * 10)) ]; do
      sleep 0.1
      t=$((t + 1))
    done
  fi
  if alive "$name"; then
    RC[$name]=hung
  else
    wait "${PID[$name]}"
    RC[$name]=$?
  fi
}

# compare FILE.framemd5: "frames mismatches" against $REF by the index in
# column 3 (an index the reference lacks counts as a mismatch).
compare() {
  awk -F', *' 'NR==FNR { if ($0 !~ /^#/) ref[$3+0]=$6; next }
               $0 !~ /^#/ { n++; if (!(($3+0) in ref) || ref[$3+0] != $6) bad++ }
               END { printf "%d %d\n", n+0, bad+0 }' "$REF" "$1"
}

# The subscriber's summary line: "NAME: WHY: received N frames, dropped D,
# revoked R, ..." -> "N D R" (or "- - -").
sub_counts() {
  local l
  l=$(grep -E ': received [0-9]+ frames, dropped [0-9]+, revoked [0-9]+' "$1" | tail -1)
  if [ -z "$l" ]; then
    echo "- - -"
  else
    sed -E 's/.*: received ([0-9]+) frames, dropped ([0-9]+), revoked ([0-9]+).*/\1 \2 \3/' <<<"$l"
  fi
}

# The publisher's summary line -> "published dropped revoked fps" (or "- - - -").
pub_counts() {
  local l
  l=$(grep -E "cuframes-publish: $KEY: .*frames published" "$1" | tail -1)
  if [ -z "$l" ]; then
    echo "- - - -"
  else
    sed -E 's/.*: ([0-9]+) frames published, ([0-9]+) dropped, ([0-9]+) revoked lease\(s\), ([0-9.]+) fps.*/\1 \2 \3 \4/' <<<"$l"
  fi
}

# Warning lines of one kind and the events they stand for (each line plus the
# "(N more ... not logged)" it reports): "lines events".
warn_counts() {
  awk -v pat="$2" '$0 ~ pat { lines++; if (match($0, /\(([0-9]+) more/)) { s = substr($0, RSTART + 1); events += s + 0 } }
                   END { printf "%d %d\n", lines + 0, lines + events }' "$1"
}

# soak RUN DURATION POLICY SLEEP_INORDER_SLOW SLEEP_NEWEST_SLOW [publisher flags...]
soak() {
  local run=$1 dur=$2 policy=$3 s_io=$4 s_no=$5
  shift 5
  local dir=$OUT/run-$run limit=$((dur + 4 * GRACE + 60)) name mode sleep t
  mkdir -p "$dir"
  say ""
  say "## run $run: --policy $policy${*:+ $*}, ${dur}s; slow sleeps: in-order ${s_io} ms, newest-only ${s_no} ms"
  start "pub-$run" "$limit" "$dir/publisher.log" \
    "$BIN/cuframes-publish" --input "$CLIP" --key "$KEY" --backend host --loop --realtime \
    --policy "$policy" --ring 8 --stats-interval 10 --runtime-dir "$RT" \
    --wait-subscribers 4 --wait-subscribers-timeout-ms 30000 "$@"
  for name in $SUBS; do
    case $name in
      inorder-*) mode=in-order ;;
      *) mode=newest-only ;;
    esac
    case $name in
      inorder-slow) sleep=$s_io ;;
      newest-slow) sleep=$s_no ;;
      *) sleep=0 ;;
    esac
    start "$name-$run" "$limit" "$dir/$name.log" \
      "$BIN/cuframes-subscribe" --key "$KEY" --backend host --runtime-dir "$RT" --mode "$mode" \
      --sleep-ms "$sleep" --no-reconnect --stats-interval 10 --wait-publisher-ms 30000 \
      --name "$name" --framemd5 "$dir/$name.framemd5"
  done
  # DURATION seconds, or until a process ends early.
  t=0
  while [ "$t" -lt "$dur" ]; do
    sleep 1
    t=$((t + 1))
    for name in "pub-$run" $(printf "%s-$run " $SUBS); do
      if ! alive "$name"; then
        say "  $name ended early, after ${t}s"
        t=$dur
      fi
    done
  done
  say "  stopping after ${t}s: SIGTERM to the publisher"
  stop "pub-$run"
  reap "pub-$run" "$GRACE"
  for name in $SUBS; do
    reap "$name-$run" "$GRACE"
  done

  # Results.
  local prc=${RC[pub-$run]} pc published pdropped prevoked pfps lag dem rev
  read -r published pdropped prevoked pfps <<<"$(pub_counts "$dir/publisher.log")"
  read -r -a lag <<<"$(warn_counts "$dir/publisher.log" 'lagged past')"
  read -r -a dem <<<"$(warn_counts "$dir/publisher.log" 'demoted')"
  read -r -a rev <<<"$(warn_counts "$dir/publisher.log" 'revoked [0-9]+ lease')"
  say ""
  say "  publisher: exit $prc, $published frames published ($pfps fps), $pdropped dropped, $prevoked revoked lease(s);"
  say "    warnings: lagged $((lag[0])) line(s) for $((lag[1])) lag(s), demoted $((dem[0])), revoked $((rev[0])) line(s) for >= $((rev[1])) event(s); log $(wc -l <"$dir/publisher.log") lines"
  say ""
  say "$(printf '  %-13s %-11s %6s %5s %8s %9s %8s %8s %9s  %s' subscriber mode sleep_ms exit hashed wrong_md5 revoked dropped received log_lines)"
  local out=() n bad recv dropped revoked rc ok
  for name in $SUBS; do
    case $name in
      inorder-*) mode=in-order ;;
      *) mode=newest-only ;;
    esac
    case $name in
      inorder-slow) sleep=$s_io ;;
      newest-slow) sleep=$s_no ;;
      *) sleep=0 ;;
    esac
    rc=${RC[$name-$run]}
    if [ -f "$dir/$name.framemd5" ]; then
      read -r n bad <<<"$(compare "$dir/$name.framemd5")"
    else
      n=0 bad=0
    fi
    read -r recv dropped revoked <<<"$(sub_counts "$dir/$name.log")"
    say "$(printf '  %-13s %-11s %6s %5s %8s %9s %8s %8s %9s  %s' "$name" "$mode" "$sleep" "$rc" "$n" "$bad" "$revoked" "$dropped" "$recv" "$(wc -l <"$dir/$name.log")")"
    ok=1
    [ "$rc" = 0 ] || { ok=0; out+=("FAIL run $run $name: exit status $rc (0 expected)"); }
    [ "$n" -gt 0 ] || { ok=0; out+=("FAIL run $run $name: no frame hashed"); }
    [ "$bad" -eq 0 ] || { ok=0; out+=("FAIL run $run $name: $bad of $n frames with a wrong MD5 (torn or misplaced)"); }
    [ "$recv" = "$n" ] || { ok=0; out+=("FAIL run $run $name: summary line says received $recv, framemd5 holds $n"); }
    [ "$ok" = 1 ] && out+=("PASS run $run $name: $n frames, every MD5 equals the reference; $revoked revoked (not hashed), $dropped dropped")
  done
  if [ "$prc" = 0 ] && [ "$published" != - ]; then
    out+=("PASS run $run publisher: exit 0, $published frames published")
  else
    out+=("FAIL run $run publisher: exit status $prc (0 expected), frames published: $published")
  fi
  if [ "$run" = B ]; then
    if [ "$prevoked" != - ] && [ "$prevoked" -gt 0 ]; then
      out+=("PASS run B revocations: the publisher revoked $prevoked lease(s)")
    else
      out+=("FAIL run B revocations: the publisher revoked ${prevoked} lease(s); the run did not test revocation")
    fi
  fi
  say ""
  local line
  for line in "${out[@]}"; do
    case $line in
      PASS*) pass "${line#PASS }" ;;
      *) fail "${line#FAIL }" ;;
    esac
  done
}

say "# cuframes soak, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (modified tree)')"
say "# $BIN binaries, $CLIP ($(grep -vc '^#' "$REF") reference frames), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
say "# logs and framemd5 files: $OUT"

soak A "$DURATION" wait "$SLEEP_INORDER_SLOW" "$SLEEP_NEWEST_SLOW"
soak B "$DURATION_B" drop-frame "$SLEEP_INORDER_SLOW_B" "$SLEEP_NEWEST_SLOW_B" --lease-timeout-ms 5

say ""
if [ "$FAILS" -eq 0 ]; then
  say "PASS soak: 0 torn frames in both runs"
else
  say "FAIL soak: $FAILS failure(s)"
fi
say "# summary: $SUMMARY"
exit "$FAILS"
