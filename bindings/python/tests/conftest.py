"""Helpers for the pytest suite: the cuframes-publish / cuframes-subscribe
tools (built by cargo; $CUFRAMES_BIN_DIR or the workspace's target/debug),
the bundled clips in media/ and their FFmpeg framemd5 references, and a
private runtime directory per test."""

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
MEDIA = Path(os.environ.get("CUFRAMES_MEDIA", ROOT / "media"))
BIN = Path(os.environ.get("CUFRAMES_BIN_DIR", ROOT / "target" / "debug"))


def tool(name):
    p = BIN / name
    if not p.exists():
        pytest.fail(f"{p} is missing: build it with `cargo build -p cuframes-tools --bins` "
                    "or point CUFRAMES_BIN_DIR at it")
    return str(p)


def framemd5(name):
    """The hash column of each frame line of media/NAME (FFmpeg's framemd5)."""
    return [line.rsplit(",", 1)[1].strip()
            for line in (MEDIA / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def framemd5_rows(path):
    """(column 3, hash) of each frame line of a framemd5 file."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            cols = [c.strip() for c in line.split(",")]
            rows.append((int(cols[2]), cols[5]))
    return rows


def frame_md5(frame):
    """MD5 of a frame's planes read through its NumPy views, rows without
    pitch padding: FFmpeg's packed rawvideo layout."""
    h = hashlib.md5()
    for p in frame.planes:
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


@pytest.fixture
def runtime_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    return str(d)


class Proc:
    """A tool process whose stderr is kept; killed at the end of the test."""

    def __init__(self, args):
        self.args = args
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env={**os.environ, "RUST_LOG": "warn"})

    def wait(self, timeout=60):
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def procs():
    started = []

    def start(args):
        pr = Proc(args)
        started.append(pr)
        return pr

    yield start
    for pr in started:
        pr.stop()


@pytest.fixture
def publish(procs, runtime_dir):
    """Starts cuframes-publish (host memory, software decoding) on a clip."""

    def start(clip, key, *extra):
        return procs([tool("cuframes-publish"), "--runtime-dir", runtime_dir,
                      "--backend", "host", "--decoder", "software", "--stats-interval", "0",
                      "--input", str(MEDIA / clip), "--key", key, *extra])

    return start


def wait_until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
