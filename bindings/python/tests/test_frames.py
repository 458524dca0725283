"""Host frames as NumPy views: bit-exact against FFmpeg's references,
read-only, zero-copy."""

import hashlib

import numpy as np
import pytest

import cuframes
from conftest import framemd5, frame_md5


@pytest.mark.parametrize("clip", ["sample-h264.mp4", "sample-hevc10.mkv"])
def test_numpy_views_hash_like_the_reference(publish, runtime_dir, clip):
    pub = publish(clip, "clip", "--wait-subscribers", "1", "--policy", "wait")
    sub = cuframes.Subscriber("clip", mode="in_order", runtime_dir=runtime_dir,
                              wait_publisher=10, reconnect=False, timeout=30)
    got, copies = [], []
    for frame in sub:
        with frame:
            got.append(frame_md5(frame))
            copies.append(hashlib.md5(frame.to_numpy().tobytes()).hexdigest())
    assert got == framemd5(clip + ".framemd5")
    assert copies == got
    rc, _, err = pub.wait()
    assert rc == 0, err


def test_views_are_read_only_zero_copy_and_shaped_by_the_pitch(publish, runtime_dir):
    publish("sample-hevc10.mkv", "p010", "--wait-subscribers", "1", "--policy", "wait")
    sub = cuframes.Subscriber("p010", mode="in_order", runtime_dir=runtime_dir,
                              wait_publisher=10, reconnect=False, timeout=30)
    with sub.next() as f:
        assert (f.format, f.backend, f.device) == ("p010", "host", None)
        lo, hi = f.memory_range
        y, uv = f.planes
        assert f.planes[0] is y, "planes are made once per frame"
        for plane, rows, pitch in ((y, f.height, f.pitches[0]),
                                   (uv, (f.height + 1) // 2, f.pitches[1])):
            assert plane.dtype == np.uint16
            assert plane.shape == (rows, 2 * ((f.width + 1) // 2) if plane is uv else f.width)
            assert plane.strides == (pitch, 2)
            assert not plane.flags.writeable and not plane.flags.owndata
            start = plane.ctypes.data
            end = start + pitch * (plane.shape[0] - 1) + plane.shape[1] * 2
            assert lo <= start and end <= hi, "the view lies inside the slot's mapping"
            with pytest.raises(ValueError, match="read-only"):
                plane[0, 0] = 1
            with pytest.raises(ValueError):
                plane.flags.writeable = True
        assert y.ctypes.data < uv.ctypes.data
        copy = f.to_numpy()
        assert copy.flags.writeable and not np.shares_memory(copy, y)
        assert copy.shape == (f.height + (f.height + 1) // 2, f.width)
        assert not (lo <= copy.ctypes.data < hi)
        assert np.array_equal(copy[: f.height], y)
