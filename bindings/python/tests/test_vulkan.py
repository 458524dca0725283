"""Frames of a Vulkan publisher (`cuframes-publish --backend vulkan`) read
from Python with backend="auto": the facade imports the Vulkan memory
(or, on a machine with a CUDA driver, imports it into CUDA), and the
pixels arrive as NumPy copies bit-exact against FFmpeg's reference.

Runs on any Vulkan device with VK_KHR_external_memory_fd (lavapipe, Mesa's
CPU driver, in CI). Without one the test is skipped with the publisher's
reason, unless CUFRAMES_REQUIRE_VULKAN=1, which makes that a failure."""

import hashlib
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

import cuframes
from conftest import MEDIA, framemd5, tool

CLIP = "sample-h264.mp4"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def vulkan_publisher(procs, runtime_dir, key):
    """Starts a Vulkan publisher of CLIP and waits for its socket; skips
    (or fails under CUFRAMES_REQUIRE_VULKAN=1) when it cannot start."""
    pub = procs([tool("cuframes-publish"), "--runtime-dir", runtime_dir,
                 "--backend", "vulkan", "--stats-interval", "0",
                 "--policy", "wait", "--wait-subscribers", "1",
                 "--input", str(MEDIA / CLIP), "--key", key])
    sock = Path(runtime_dir) / f"{key}.sock"
    deadline = time.monotonic() + 60
    while not sock.exists():
        if pub.p.poll() is not None:
            _, _, err = pub.wait()
            lines = [ANSI.sub("", line) for line in err.splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {pub.p.returncode}"
            if "Vulkan" not in err:
                pytest.fail(f"the Vulkan publisher failed: {err}")
            why = f"no usable Vulkan device: {last}"
            if os.environ.get("CUFRAMES_REQUIRE_VULKAN") == "1":
                pytest.fail(f"CUFRAMES_REQUIRE_VULKAN=1 but {why}")
            pytest.skip(why)
        if time.monotonic() > deadline:
            pytest.fail("the Vulkan publisher made no socket within 60 s")
        time.sleep(0.02)
    return pub


def test_vulkan_publisher_frames_hash_like_the_reference(procs, runtime_dir):
    pub = vulkan_publisher(procs, runtime_dir, "vk")
    sub = cuframes.Subscriber("vk", mode="in_order", backend="auto", runtime_dir=runtime_dir,
                              wait_publisher=10, reconnect=False, timeout=60)
    assert sub.backend in ("vulkan", "cuda"), sub.backend
    got = []
    for frame in sub:
        with frame:
            assert frame.backend == sub.backend
            packed = frame.to_numpy()
            got.append(hashlib.md5(packed.tobytes()).hexdigest())
            if frame.backend != "vulkan":
                continue
            # Vulkan device memory is not mapped here: the planes are
            # read-only copies, shaped like host views, equal to to_numpy().
            y, uv = frame.planes
            assert frame.planes[0] is y
            assert y.shape == (frame.height, frame.width) and y.dtype == np.uint8
            assert uv.shape == ((frame.height + 1) // 2, 2 * ((frame.width + 1) // 2))
            assert not y.flags.writeable and not uv.flags.writeable
            assert np.array_equal(packed[: frame.height], y)
            assert np.array_equal(packed[frame.height:], uv)
            with pytest.raises(BufferError, match="Vulkan"):
                frame.dlpack(0)
            with pytest.raises(ValueError, match="Vulkan"):
                frame.memory_range
    assert got == framemd5(CLIP + ".framemd5")
    rc, _, err = pub.wait()
    assert rc == 0, err


def test_a_python_vulkan_publisher_round_trips(runtime_dir):
    """Publisher(backend="vulkan") uploads NumPy frames into Vulkan memory
    (the facade's publish_planes); backend="auto" reads them back."""
    W, H = 64, 48
    try:
        pub = cuframes.Publisher("vkpy", W, H, backend="vulkan", runtime_dir=runtime_dir)
    except cuframes.VulkanError as e:
        if os.environ.get("CUFRAMES_REQUIRE_VULKAN") == "1":
            pytest.fail(f"CUFRAMES_REQUIRE_VULKAN=1 but {e}")
        pytest.skip(f"no usable Vulkan device: {e}")
    with pub:
        assert "vulkan" in repr(pub) and pub.device is None
        sub = cuframes.Subscriber("vkpy", runtime_dir=runtime_dir, reconnect=False, timeout=10)
        assert pub.wait_for_subscribers(1, timeout=10)
        src = (np.arange((H + H // 2) * W) % 251).astype(np.uint8).reshape(H + H // 2, W)
        assert pub.publish(src) == 1
        with sub.next() as f:
            assert f.backend == sub.backend
            assert np.array_equal(f.to_numpy(), src)
            if f.backend == "vulkan":
                y, uv = f.planes
                assert np.array_equal(y, src[:H]) and np.array_equal(uv, src[H:])
        with pytest.raises(ValueError, match="expected"):
            pub.publish(np.zeros((10, 10), np.uint8))
        sub.close()
