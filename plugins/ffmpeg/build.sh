#!/usr/bin/env bash
# Builds a minimal FFmpeg with the cuframes inputs (`-f cuframes`,
# `-f cuframes_packets`): installs libcuframes (cargo cinstall) into a
# prefix, fetches Debian 12's FFmpeg 5.1 source (apt-get source; needs
# deb-src, which this script adds on Debian if missing), applies
# plugins/ffmpeg/*.patch and configures with --enable-libcuframes.
#
# Usage: plugins/ffmpeg/build.sh [--cuda] [OUT]
#   (default OUT: target/ffmpeg-cuframes, with --cuda target/ffmpeg-cuframes-cuda)
# Result: OUT/prefix/bin/ffmpeg (libcuframes.so in OUT/prefix/lib, found
# through its RUNPATH; set LD_LIBRARY_PATH where the prefix was moved).
# --cuda adds FFmpeg's CUDA support for the GPU machine: the CUDA hwcontext
# and NVENC / NVDEC through the ffnvcodec headers (Debian's
# libffmpeg-nvenc-dev; the driver is loaded at run time) and scale_cuda,
# compiled to PTX by clang (--enable-cuda-llvm); no CUDA toolkit needed.
# FFMPEG_SRC=DIR uses an unpacked FFmpeg tree instead of Debian's (to try
# the patch on another release).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cuda=0
if [ "${1:-}" = --cuda ]; then cuda=1; shift; fi
default_out=$root/target/ffmpeg-cuframes
[ "$cuda" = 1 ] && default_out=$root/target/ffmpeg-cuframes-cuda
out=${1:-$default_out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
prefix=$out/prefix
jobs=$(nproc)

step() { echo ">> $*"; }

# 1. libcuframes, its header and cuframes.pc.
step "installing libcuframes into $prefix"
# CUFRAMES_CINSTALL_DEBUG=1: a debug libcuframes (CI: reuses what .ci/capi built).
profile=--release
[ -n "${CUFRAMES_CINSTALL_DEBUG:-}" ] && profile=--debug
(cd "$root" && cargo cinstall "$profile" --locked -p cuframes-capi --prefix="$prefix" --libdir="$prefix/lib" >/dev/null)
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists cuframes || { echo "cuframes.pc not found under $prefix/lib/pkgconfig" >&2; exit 1; }

# 2. FFmpeg source, patched. The tree is made again when the patches change.
src=$out/src
stamp=$(cat "$here"/*.patch | sha256sum | cut -c1-16)
if [ -n "${FFMPEG_SRC:-}" ]; then
  step "using FFmpeg source in $FFMPEG_SRC"
  rm -rf "$src" && cp -a "$FFMPEG_SRC" "$src"
elif [ "$(cat "$src/.cuframes-patches" 2>/dev/null)" != "$stamp" ]; then
  if [ ! -f "$out"/dl/ffmpeg_*.orig.tar.xz ]; then
    step "fetching Debian's FFmpeg source (apt-get source)"
    # Source packages need deb-src entries (Debian 12 images have none):
    # deb822 (debian.sources) or one-line (sources.list) format.
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    added=0
    if [ -f /etc/apt/sources.list.d/debian.sources ] && ! grep -q deb-src /etc/apt/sources.list.d/debian.sources; then
      $sudo sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
      added=1
    elif [ -f /etc/apt/sources.list ] && grep -q '^deb ' /etc/apt/sources.list && ! grep -q '^deb-src ' /etc/apt/sources.list; then
      sed -n 's/^deb /deb-src /p' /etc/apt/sources.list | $sudo tee -a /etc/apt/sources.list >/dev/null
      added=1
    fi
    [ "$added" = 1 ] && $sudo apt-get update -qq
    rm -rf "$out/dl" && mkdir -p "$out/dl"
    (cd "$out/dl" && apt-get source --download-only ffmpeg >"$out/apt-source.log" 2>&1) || {
      tail -5 "$out/apt-source.log" >&2
      echo "apt-get source ffmpeg failed: are deb-src entries enabled in /etc/apt/sources.list*?" >&2
      exit 1
    }
  fi
  rm -rf "$src" && mkdir -p "$src"
  tar xf "$out"/dl/ffmpeg_*.orig.tar.xz -C "$src" --strip-components=1
fi
cd "$src"
if [ "$(cat .cuframes-patches 2>/dev/null)" != "$stamp" ]; then
  for p in "$here"/*.patch; do
    step "applying $(basename "$p")"
    patch -p1 -s -f <"$p"
  done
  echo "$stamp" > .cuframes-patches
fi

# 4. A minimal FFmpeg: what the tests and the Frigate recipe use.
extra=()
if [ "$cuda" = 1 ]; then
  pkg-config --exists ffnvcodec || { echo "--cuda needs the ffnvcodec headers (apt-get install libffmpeg-nvenc-dev)" >&2; exit 1; }
  extra=(--enable-ffnvcodec --enable-cuda-llvm --enable-nvenc --enable-nvdec --enable-cuvid
         --enable-encoder=h264_nvenc,hevc_nvenc --enable-decoder=h264_cuvid,hevc_cuvid
         --enable-hwaccel=h264_nvdec,hevc_nvdec --enable-filter=scale_cuda,hwupload_cuda)
fi
step "configuring FFmpeg $(cat VERSION 2>/dev/null || git describe 2>/dev/null || echo '?')${extra:+ with CUDA}"
./configure --prefix="$prefix" --disable-doc --disable-debug \
  --disable-autodetect --disable-everything "${extra[@]}" \
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
step "building FFmpeg ($jobs jobs)"
make -j"$jobs" >"$out/make.log" 2>&1 || { tail -40 "$out/make.log"; exit 1; }
make install >/dev/null
"$prefix/bin/ffmpeg" -hide_banner -h demuxer=cuframes | head -3
step "done: $prefix/bin/ffmpeg"
