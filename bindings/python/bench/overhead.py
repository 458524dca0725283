#!/usr/bin/env python3
"""Per-frame overhead of the Python subscriber against the Rust one
(docs/BENCHMARKS.md, "Python subscriber overhead"). Not a test.

A Python Publisher (this process; 1920x1080 NV12, 64 slots) commits a
backlog of FRAMES frames per round; a subscriber child process (Python:
this script with --child; Rust: the overhead_subscriber example) then
times, for each frame of the backlog, next() + touching plane 0 + release:
what a consumer pays per frame beyond its own work, without waiting for
the publisher. Host: touching = reading one byte through the NumPy view
(Python) / the plane slice (Rust). CUDA (--backend cuda, needs torch):
Python variants `plane` (the Plane exporter only) and `torch`
(torch.from_dlpack of plane 0); Rust: device_plane(0). The Python variant
`none` takes and releases frames without touching them.

  python3 bench/overhead.py --rust PATH [--backend host|cuda] [--rounds 50]

Prints one line per subscriber: p50 / p90 / p99 / mean in microseconds.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

W, H, FRAMES = 1920, 1080, 60


def child(args):
    import cuframes
    sub = cuframes.Subscriber(args.key, mode="in_order", runtime_dir=args.runtime_dir,
                              backend=args.backend, reconnect=False, timeout=5)
    if args.touch == "none":
        touch = lambda f: 0  # noqa: E731
    elif args.touch == "torch":
        import torch
        touch = lambda f: torch.from_dlpack(f.planes[0]).data_ptr()  # noqa: E731
    elif args.backend == "cuda":
        touch = lambda f: f.planes[0].ptr  # noqa: E731
    else:
        touch = lambda f: int(f.planes[0][0, 0])  # noqa: E731
    print("ready", flush=True)
    times, sink = [], 0
    for _ in range(args.rounds):
        sys.stdin.readline()
        for _ in range(FRAMES):
            t0 = time.perf_counter_ns()
            f = sub.next()
            sink += touch(f)
            f.release()
            times.append(time.perf_counter_ns() - t0)
        print("done", flush=True)
    print("times", flush=True)
    for t in times:
        print(t)


def measure(cmd, pub, rounds, frame):
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    assert pub.wait_for_subscribers(1, timeout=10)
    for _ in range(rounds):
        for _ in range(FRAMES):
            assert pub.publish(frame) is not None
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"
    assert p.stdout.readline().strip() == "times"
    times = [int(x) / 1000 for x in p.stdout.read().split()]
    p.wait()
    # The first round (imports, first mappings, warm-up) is left out.
    times = sorted(times[FRAMES:] if rounds > 1 else times)
    q = lambda x: times[min(len(times) - 1, int(x * len(times)))]  # noqa: E731
    return "p50 %.1f us, p90 %.1f us, p99 %.1f us, mean %.1f us (%d frames)" % (
        q(0.5), q(0.9), q(0.99), statistics.fmean(times), len(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--key", default="overhead")
    ap.add_argument("--runtime-dir")
    ap.add_argument("--backend", default="host", choices=["host", "cuda"])
    ap.add_argument("--touch", default="view")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--rust", help="path of the overhead_subscriber example binary")
    args = ap.parse_args()
    if args.child:
        return child(args)

    import numpy as np
    import cuframes
    rt = tempfile.mkdtemp(prefix="cuframes-overhead-")
    if args.backend == "cuda":
        import torch
        frame = torch.randint(0, 255, (H + H // 2, W), dtype=torch.uint8, device="cuda")
    else:
        frame = np.random.default_rng(1).integers(0, 255, (H + H // 2, W), dtype=np.uint8)
    runs = [("python", ["none", "view" if args.backend == "host" else "plane"])]
    if args.backend == "cuda":
        runs[0][1].append("torch")
    for lang, touches in runs + ([("rust", [None])] if args.rust else []):
        for touch in touches:
            key = f"{args.key}-{lang}-{touch or 'rust'}"
            with cuframes.Publisher(key, W, H, backend=args.backend, slots=64,
                                    runtime_dir=rt) as pub:
                if lang == "rust":
                    cmd = [args.rust, key, rt, str(FRAMES), str(args.rounds), args.backend]
                else:
                    cmd = [sys.executable, __file__, "--child", "--key", key, "--runtime-dir", rt,
                           "--backend", args.backend, "--touch", touch, "--rounds",
                           str(args.rounds)]
                print(f"{args.backend} {lang:6} {touch or '':6} {measure(cmd, pub, args.rounds, frame)}",
                      flush=True)
    os.rmdir(rt) if not os.listdir(rt) else None


if __name__ == "__main__":
    main()
