#!/usr/bin/env python3
"""GPU checks of the Python bindings (issue 14; docs/python.md), run on the
GPU machine by scripts/gpu-tests.sh section 8 with the carried wheel on
PYTHONPATH (gpu-carry/python), torch and CuPy installed, BIN and MEDIA
pointing at the carried tools and clips. Prints PASS / FAIL lines and
`figure:` lines; exits with the number of failures.

1. NVDEC frames (cuframes-publish --backend cuda): torch.from_dlpack and
   cupy.from_dlpack of each plane point at the mapped slot (data_ptr ==
   Plane.ptr, inside Frame.memory_range: no copy); MD5s through torch (NV12)
   and CuPy (P010) equal FFmpeg's references; also with --sync ipc-event,
   where __dlpack__(stream=) orders the consumer's stream after the
   publisher's event.
2. release(stream=s) while s runs a long matmul loop: the lease stays in the
   publisher's lease table (Publisher.leases(), a Python CUDA publisher in
   this process) as long as s has not finished, and is gone after; the same
   with a tensor still alive at release (deferred until it is freed).
3. A torch producer (Publisher(backend="cuda") publishing CUDA tensors, and
   NumPy planes every other frame) whose frames cuframes-subscribe
   --backend cuda --framemd5 verifies.
4. __cuda_array_interface__ (cupy.asarray) and to_numpy() of a CUDA frame.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import traceback

import cupy
import numpy as np
import torch

import cuframes

BIN = os.environ.get("BIN", "bin")
MEDIA = os.environ.get("MEDIA", "media")
RT = tempfile.mkdtemp(prefix="cuframes-py-")
FAILS = 0


def check(name, fn):
    global FAILS
    try:
        detail = fn()
        print(f"PASS python: {name}{': ' + detail if detail else ''}", flush=True)
    except Exception:
        FAILS += 1
        print(f"FAIL python: {name}", flush=True)
        traceback.print_exc()


def reference(clip):
    return [line.rsplit(",", 1)[1].strip()
            for line in open(os.path.join(MEDIA, clip + ".framemd5"))
            if line.strip() and not line.startswith("#")]


def log(name):
    """A log file for a tool's stderr (a pipe could fill and block it)."""
    return open(os.path.join(os.environ.get("OUT", RT), f"python-{name}.log"), "w")


def tail(path, n=20):
    with open(path) as f:
        return "".join(f.readlines()[-n:])


def publisher(clip, key, *extra):
    return subprocess.Popen(
        [os.path.join(BIN, "cuframes-publish"), "--runtime-dir", RT, "--input",
         os.path.join(MEDIA, clip), "--key", key, "--backend", "cuda", "--decoder", "nvdec",
         "--policy", "wait", "--wait-subscribers", "1", "--stats-interval", "0", *extra],
        stderr=log(key))


def nvdec_frames(clip, key, extra=(), via="torch", legacy=False):
    pub = publisher(clip, key, *extra)
    pub.stderr_log = os.path.join(os.environ.get("OUT", RT), f"python-{key}.log")
    sub = cuframes.Subscriber(key, mode="in_order", backend="cuda", runtime_dir=RT,
                              wait_publisher=20, reconnect=False, timeout=30,
                              allow_legacy_ipc=legacy)
    got, n = [], 0
    for f in sub:
        with f:
            assert f.backend == "cuda" and f.device == torch.cuda.current_device(), f
            lo, hi = f.memory_range
            parts = []
            for p in f.planes:
                if via == "torch":
                    t = torch.from_dlpack(p)  # __dlpack__(stream=<torch's current stream>)
                    assert t.data_ptr() == p.ptr and lo <= p.ptr < hi, (hex(t.data_ptr()), p)
                    assert t.stride() == (p.strides[0] // p.strides[1], 1) and t.is_cuda
                    parts.append(t.contiguous().cpu().numpy())
                else:
                    a = cupy.from_dlpack(p)
                    assert a.data.ptr == p.ptr and lo <= p.ptr < hi, (hex(a.data.ptr), p)
                    parts.append(cupy.ascontiguousarray(a).get())
                del p
            h = hashlib.md5()
            for a in parts:
                h.update(a.tobytes())
            got.append(h.hexdigest())
            n += 1
    assert pub.wait(timeout=60) == 0, tail(pub.stderr_log)
    want = reference(clip)
    bad = sum(a != b for a, b in zip(got, want))
    assert len(got) == len(want) and bad == 0, f"{len(got)} frames, {bad} differ"
    return f"{n} frames bit-exact via {via}.from_dlpack, data pointers = the mapped slots"


def stream_release(deferred):
    w, h = 1280, 720
    key = "rel-deferred" if deferred else "rel"
    pub = cuframes.Publisher(key, w, h, backend="cuda", runtime_dir=RT, slots=4,
                             lease_timeout=60.0)
    sub = cuframes.Subscriber(key, backend="cuda", runtime_dir=RT, reconnect=False, timeout=10)
    assert pub.wait_for_subscribers(1, 10)
    seq = pub.publish(torch.full((h + h // 2, w), 7, dtype=torch.uint8, device="cuda"))
    f = sub.next()
    s = torch.cuda.Stream()
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    s.wait_stream(torch.cuda.current_stream())  # `a` was made on the current stream
    with torch.cuda.stream(s):
        y = torch.from_dlpack(f.planes[0])
        acc = y[:64, :64].float().sum()  # reads the frame on s
        for _ in range(100):  # ~0.1 TFLOP each: long enough to observe
            a = a @ a
            a = a / a.abs().max()
    if not deferred:
        del y
    # The work queued so far; the lease must outlive it. (s.query() itself is
    # False until the release's host callback has returned too, which runs
    # after this work: poll the event, not the stream.)
    work_done = torch.cuda.Event()
    work_done.record(s)
    t0 = time.monotonic()
    valid = f.release(stream=s)
    took = time.monotonic() - t0
    assert valid is True
    held_while_busy = 0
    if deferred:
        assert pub.leases() == [(sub.id, seq, False)]
        del y  # the last view: the release is queued on s now
    while not work_done.query():
        assert pub.leases() == [(sub.id, seq, False)], "lease returned before the stream's work"
        held_while_busy += 1
    assert held_while_busy > 0, "the stream finished before it could be observed: more work"
    deadline = time.monotonic() + 5
    while pub.leases() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert pub.leases() == [], pub.leases()
    assert acc.item() == 7 * 64 * 64
    sub.close()
    pub.close()
    return (f"release() returned in {took * 1e3:.2f} ms; the lease stayed in the publisher's "
            f"table over {held_while_busy} polls while the stream ran, gone after")


def torch_producer():
    clip, key = "sample-h264.mp4", "torch-prod"
    src = subprocess.Popen(
        [os.path.join(BIN, "cuframes-publish"), "--runtime-dir", RT, "--input",
         os.path.join(MEDIA, clip), "--key", "src", "--backend", "host", "--decoder",
         "software", "--policy", "wait", "--wait-subscribers", "1", "--stats-interval", "0"],
        stderr=log("torch-src"))
    sub = cuframes.Subscriber("src", mode="in_order", runtime_dir=RT, wait_publisher=20,
                              reconnect=False, timeout=30)
    out = os.path.join(RT, "torch.framemd5")
    first = sub.next()
    n = 0
    with cuframes.Publisher(key, first.width, first.height, backend="cuda", runtime_dir=RT,
                            policy="wait") as pub:
        rust = subprocess.Popen(
            [os.path.join(BIN, "cuframes-subscribe"), "--runtime-dir", RT, "--key", key,
             "--backend", "cuda", "--mode", "in-order", "--no-reconnect", "--framemd5", out],
            stderr=log("torch-sub"))
        assert pub.wait_for_subscribers(1, 20)
        f = first
        while f is not None:
            with f:
                if f.seq % 2:
                    t = torch.from_numpy(f.to_numpy()).cuda()
                    t = t + 0  # a kernel on the current stream produces the tensor
                    assert pub.publish(t, pts_ns=f.pts_ns,
                                       stream=torch.cuda.current_stream()) == f.seq
                else:  # every other frame from host memory (host-to-device copies)
                    assert pub.publish(f.planes, pts_ns=f.pts_ns) == f.seq
                n += 1
            try:
                f = sub.next()
            except cuframes.Disconnected:
                f = None
    assert rust.wait(timeout=60) == 0, "cuframes-subscribe failed (python-torch-sub.log)"
    got = [line.rsplit(",", 1)[1].strip() for line in open(out)
           if line.strip() and not line.startswith("#")]
    assert got == reference(clip), f"{sum(a != b for a, b in zip(got, reference(clip)))} differ"
    src.wait(timeout=60)
    return (f"{n} frames (odd: CUDA tensors, even: NumPy planes), verified by "
            "cuframes-subscribe --backend cuda")


def cai_and_copy():
    pub = publisher("sample-h264.mp4", "cai")
    sub = cuframes.Subscriber("cai", backend="cuda", mode="in_order", runtime_dir=RT,
                              wait_publisher=20, reconnect=False, timeout=30)
    with sub.next() as f:
        y = cupy.asarray(f.planes[0])  # __cuda_array_interface__
        assert y.data.ptr == f.planes[0].ptr and y.strides == f.planes[0].strides
        packed = f.to_numpy()
        assert np.array_equal(packed[: f.height], y.get())
        assert hashlib.md5(packed.tobytes()).hexdigest() == reference("sample-h264.mp4")[0]
    sub.close()
    pub.kill()
    pub.wait()
    return "cupy.asarray via CAI v3 aliases the slot; to_numpy() equals the reference"


def main():
    print(f"# torch {torch.__version__}, cupy {cupy.__version__}, cuframes "
          f"{cuframes.__version__}, DLPack {cuframes.DLPACK_VERSION}", flush=True)
    check("NVDEC H.264 frames via torch.from_dlpack",
          lambda: nvdec_frames("sample-h264.mp4", "t264"))
    check("NVDEC HEVC frames via cupy.from_dlpack",
          lambda: nvdec_frames("sample-hevc.mkv", "chevc", via="cupy"))
    check("NVDEC HEVC 10-bit (P010) via cupy.from_dlpack",
          lambda: nvdec_frames("sample-hevc10.mkv", "c10", via="cupy"))
    check("NVDEC H.264, --sync ipc-event, torch.from_dlpack on torch's stream",
          lambda: nvdec_frames("sample-h264.mp4", "tev",
                               ("--sync", "ipc-event", "--memory", "legacy-ipc"), legacy=True))
    check("release(stream) returns the lease only after the stream's work",
          lambda: stream_release(False))
    check("release(stream) with a tensor alive: deferred, then after the stream's work",
          lambda: stream_release(True))
    check("torch producer verified by the Rust subscriber", torch_producer)
    check("__cuda_array_interface__ and to_numpy()", cai_and_copy)
    print(f"# python failures: {FAILS}", flush=True)
    return FAILS


if __name__ == "__main__":
    sys.exit(main())
