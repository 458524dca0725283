#!/usr/bin/env bash
# Builds a minimal FFmpeg with the cuframes inputs (`-f cuframes`,
# `-f cuframes_packets`): installs libcuframes (cargo cinstall) into a
# prefix, fetches Debian 12's FFmpeg 5.1 source (apt-get source; needs
# deb-src, which this script adds on Debian if missing), applies
# plugins/ffmpeg/*.patch and configures with --enable-libcuframes.
#
# Usage: plugins/ffmpeg/build.sh [OUT]   (default OUT: target/ffmpeg-cuframes)
# Result: OUT/prefix/bin/ffmpeg (libcuframes.so in OUT/prefix/lib, found
# through its RUNPATH). FFMPEG_SRC=DIR uses an unpacked FFmpeg tree instead
# of Debian's (to try the patch on another release).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/target/ffmpeg-cuframes}
mkdir -p "$out"
out=$(cd "$out" && pwd)
prefix=$out/prefix
jobs=$(nproc)

step() { echo ">> $*"; }

# 1. libcuframes, its header and cuframes.pc.
step "installing libcuframes into $prefix"
(cd "$root" && cargo cinstall --release --locked -p cuframes-capi --prefix="$prefix" --libdir="$prefix/lib" >/dev/null)
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists cuframes || { echo "cuframes.pc not found under $prefix/lib/pkgconfig" >&2; exit 1; }

# 2. FFmpeg source.
src=$out/src
if [ -n "${FFMPEG_SRC:-}" ]; then
  step "using FFmpeg source in $FFMPEG_SRC"
  rm -rf "$src" && cp -a "$FFMPEG_SRC" "$src"
elif [ ! -f "$src/.cuframes-source" ]; then
  step "fetching Debian's FFmpeg source (apt-get source)"
  if ! apt-get source --download-only --print-uris ffmpeg >/dev/null 2>&1; then
    if [ -f /etc/apt/sources.list.d/debian.sources ] && ! grep -q deb-src /etc/apt/sources.list.d/debian.sources; then
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
      $sudo sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
      $sudo apt-get update -qq
    fi
  fi
  rm -rf "$out/dl" "$src" && mkdir -p "$out/dl" "$src"
  (cd "$out/dl" && apt-get source --download-only ffmpeg >/dev/null)
  tar xf "$out"/dl/ffmpeg_*.orig.tar.xz -C "$src" --strip-components=1
  touch "$src/.cuframes-source"
fi

# 3. The patch (idempotent: a tree that has it already is left alone).
cd "$src"
for p in "$here"/*.patch; do
  if patch -p1 -R --dry-run -s -f <"$p" >/dev/null 2>&1; then
    step "$(basename "$p"): already applied"
  else
    step "applying $(basename "$p")"
    patch -p1 -s -f <"$p"
  fi
done

# 4. A minimal FFmpeg: what the tests and the Frigate recipe use.
step "configuring FFmpeg $(cat VERSION 2>/dev/null || git describe 2>/dev/null || echo '?')"
./configure --prefix="$prefix" --disable-doc --disable-debug \
  --disable-autodetect --disable-everything \
  --enable-libcuframes \
  --enable-demuxer=cuframes,cuframes_packets,rawvideo,mov,matroska,h264,hevc \
  --enable-muxer=mp4,mov,matroska,framemd5,rawvideo,null,segment,mpegts \
  --enable-decoder=rawvideo,h264,hevc,wrapped_avframe \
  --enable-encoder=rawvideo,wrapped_avframe \
  --enable-parser=h264,hevc \
  --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,null \
  --enable-protocol=file,pipe \
  --enable-filter=scale,format,null,fps,hwdownload,hwupload \
  --enable-swscale \
  --extra-ldflags="-Wl,-rpath,$prefix/lib" >"$out/configure.log" 2>&1 \
  || { tail -30 "$out/configure.log"; exit 1; }
grep -q "cuframes" ffbuild/config.mak 2>/dev/null || true
step "building FFmpeg ($jobs jobs)"
make -j"$jobs" >"$out/make.log" 2>&1 || { tail -40 "$out/make.log"; exit 1; }
make install >/dev/null
"$prefix/bin/ffmpeg" -hide_banner -h demuxer=cuframes | head -3
step "done: $prefix/bin/ffmpeg"
