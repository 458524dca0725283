"""Packets read from Python hash like the source's demuxed packets
(media/*.packets.framemd5, written by `ffmpeg -c copy -f framemd5`)."""

import hashlib

import cuframes
from conftest import MEDIA


def reference(name):
    rows, extradata = [], None
    for line in (MEDIA / name).read_text().splitlines():
        if line.startswith("#extradata"):
            extradata = line.rsplit(",", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            cols = [c.strip() for c in line.split(",")]
            rows.append((int(cols[4]), cols[5]))
    return rows, extradata


def test_packets_hash_like_the_source(publish, runtime_dir):
    clip = "sample-h264.h264"
    pub = publish(clip, "pk", "--packets", "--wait-subscribers", "1", "--policy", "wait")
    sub = cuframes.Subscriber("pk", mode="in_order", frames=False, packets=True,
                              runtime_dir=runtime_dir, wait_publisher=10, reconnect=False,
                              timeout=30)
    params = sub.codec_params()
    got = []
    for p in sub.packets():
        assert not p.discontinuity and p.skipped == 0
        assert isinstance(p.data, bytes) and len(p) == len(p.data)
        got.append((len(p.data), hashlib.md5(p.data).hexdigest(), p.keyframe, p.seq))
    rows, extradata = reference(clip + ".packets.framemd5")
    assert [(n, h) for n, h, _, _ in got] == rows
    assert [s for *_, s in got] == list(range(len(rows)))
    assert got[0][2], "the first packet is a keyframe"
    assert params.codec == "h264" and params.codec_id == 27
    assert hashlib.md5(params.extradata).hexdigest() == extradata
    assert pub.wait()[0] == 0
