#!/usr/bin/python3
"""A loopback RTSP server for cuframes' tests (GStreamer's gst-rtsp-server).

Serves media files, each from its start for every client (one pipeline per
client, not shared), in real time, over RTP/UDP or RTP/TCP (interleaved) as
the client asks:

    /usr/bin/python3 scripts/rtsp-server.py --port 0 \
        --mount /h264=media/sample-h264.mp4 --mount /hevc=media/sample-hevc.mkv

The container is chosen by extension (.mp4/.mov: qtdemux, .mkv: matroskademux,
.ts: tsdemux), the codec by the file name (`hevc` or `265` in it: H.265,
otherwise H.264); a mount may force it with a suffix: `/cam=clip.mkv:h265`.
The parser repeats SPS/PPS(/VPS) before every keyframe (config-interval=-1)
and the SDP carries them (sprop-parameter-sets), as cameras do.

Prints one line `ready rtsp://127.0.0.1:PORT` on stdout once listening
(`--port 0` picks a free port), then runs until SIGTERM or SIGINT, on which
it exits with status 0.

Needs Debian's python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad.
"""

import argparse
import os
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

DEMUXERS = {".mp4": "qtdemux", ".mov": "qtdemux", ".mkv": "matroskademux", ".ts": "tsdemux"}


def launch_line(path, codec):
    ext = os.path.splitext(path)[1].lower()
    demux = DEMUXERS.get(ext)
    if demux is None:
        raise ValueError(f"{path}: unknown container (expected {', '.join(DEMUXERS)})")
    if codec is None:
        name = os.path.basename(path).lower()
        codec = "h265" if ("hevc" in name or "265" in name) else "h264"
    if codec not in ("h264", "h265"):
        raise ValueError(f"{path}: codec must be h264 or h265, not {codec}")
    location = path.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'( filesrc location="{location}" ! {demux} ! {codec}parse config-interval=-1 '
        f"! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
    )


def hold_eos(_factory, media):
    """Delays the end of stream by 0.5 s at the payloader.

    On EOS gst-rtsp-server's RTP session sends an RTCP BYE at once, while the
    RTP sink, behind a queue and synchronised to the clock, still has the
    last frame to send; over UDP the BYE then overtakes it, and FFmpeg, which
    ends the stream at the BYE, loses the last frame. Holding EOS lets the
    last packets out first (a camera never ends its stream; this is for
    clips played once).
    """
    pay = media.get_element().get_by_name("pay0")
    if pay is None:
        return

    def probe(_pad, info):
        event = info.get_event()
        if event is not None and event.type == Gst.EventType.EOS:
            time.sleep(0.5)
        return Gst.PadProbeReturn.OK

    pay.get_static_pad("src").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, probe)


def parse_mount(text):
    mount, sep, path = text.partition("=")
    if not sep or not mount.startswith("/") or not path:
        raise argparse.ArgumentTypeError(f"expected /name=path/to/clip[:h264|:h265], got {text!r}")
    codec = None
    base, colon, suffix = path.rpartition(":")
    if colon and suffix in ("h264", "h265"):
        path, codec = base, suffix
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    return mount, os.path.abspath(path), codec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8554, help="TCP port (0: any free port)")
    ap.add_argument("--address", default="127.0.0.1", help="address to listen on")
    ap.add_argument(
        "--mount", type=parse_mount, action="append", required=True,
        help="/name=path/to/clip[:h264|:h265], repeatable",
    )
    args = ap.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for mount, path, codec in args.mount:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(path, codec))
        factory.set_shared(False)
        factory.connect("media-configure", hold_eos)
        mounts.add_factory(mount, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"error: cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1

    def stop(*_):
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, stop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, stop)
    print(f"ready rtsp://{args.address}:{server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
