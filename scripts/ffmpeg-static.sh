#!/usr/bin/env bash
# A minimal static FFmpeg (Debian's 5.1 source, the version the dev packages
# have) for binaries carried to machines without FFmpeg libraries: only the
# demuxers, parsers, decoders, bitstream filters and muxers cuframes uses.
# Needs deb-src in apt sources, nasm. Output: target/ffmpeg-static/prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/target/ffmpeg-static
mkdir -p "$root" && cd "$root"
if [ ! -d src ]; then
  apt-get source --download-only ffmpeg >/dev/null
  mkdir src && tar xf ffmpeg_*.orig.tar.xz -C src --strip-components=1
fi
cd src
./configure --prefix="$root/prefix" --enable-static --disable-shared --enable-pic \
  --disable-autodetect --disable-programs --disable-doc --disable-network \
  --disable-everything \
  --enable-protocol=file,pipe \
  --enable-demuxer=mov,matroska,h264,hevc,mpegts,avi \
  --enable-muxer=mp4,mov,matroska,framemd5,null \
  --enable-parser=h264,hevc \
  --enable-decoder=h264,hevc,mpeg4 \
  --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,extract_extradata,null \
  --enable-swscale --enable-avfilter --enable-avdevice --enable-swresample \
  --enable-filter=scale,null,format,buffer,buffersink
make -j"$(nproc)"
make install
