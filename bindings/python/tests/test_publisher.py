"""A Python publisher's frames, verified by the Rust subscriber tool
(cuframes-subscribe --framemd5) against FFmpeg's references."""

import cuframes
from conftest import framemd5, framemd5_rows, tool


def republish(publish, procs, runtime_dir, tmp_path, clip, as_planes):
    """Frames of `clip` (read from cuframes-publish) published again by a
    Python Publisher and hashed by cuframes-subscribe."""
    src = publish(clip, "src", "--wait-subscribers", "1", "--policy", "wait")
    sub = cuframes.Subscriber("src", mode="in_order", runtime_dir=runtime_dir,
                              wait_publisher=10, reconnect=False, timeout=30)
    first = sub.next()
    out = tmp_path / "out.framemd5"
    with cuframes.Publisher("py", first.width, first.height, first.format,
                            runtime_dir=runtime_dir, policy="wait", fps=(25, 1)) as pub:
        rust = procs([tool("cuframes-subscribe"), "--runtime-dir", runtime_dir, "--key", "py",
                      "--mode", "in-order", "--no-reconnect", "--framemd5", str(out)])
        assert pub.wait_for_subscribers(1, timeout=10)
        frame = first
        while frame is not None:
            with frame:
                data = frame.planes if as_planes else frame.to_numpy()
                assert pub.publish(data, pts_ns=frame.pts_ns) == frame.seq
            try:
                frame = sub.next()
            except cuframes.Disconnected:
                frame = None
    rc, _, err = rust.wait()
    assert rc == 0, err
    assert src.wait()[0] == 0
    return [h for _, h in framemd5_rows(out)]


def test_packed_nv12_frames(publish, procs, runtime_dir, tmp_path):
    got = republish(publish, procs, runtime_dir, tmp_path, "sample-h264.mp4", as_planes=False)
    assert got == framemd5("sample-h264.mp4.framemd5")


def test_p010_planes(publish, procs, runtime_dir, tmp_path):
    got = republish(publish, procs, runtime_dir, tmp_path, "sample-hevc10.mkv", as_planes=True)
    assert got == framemd5("sample-hevc10.mkv.framemd5")
