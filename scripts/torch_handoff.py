#!/usr/bin/env python3
"""The same GPU hand-off as `cuframes-gpu-bench handoff`, through PyTorch's
CUDA tensor sharing (torch.multiprocessing): a producer process fills a
1080p-NV12-sized uint8 CUDA tensor with a kernel (fill_), synchronises, and
puts it on a multiprocessing queue; the consumer process gets it (torch opens
the CUDA IPC handle, cached after the first time), checks every byte with a
kernel ((t == v).all()), synchronises, and records CLOCK_MONOTONIC from just
before the producer's fill to the end of its check. A ring of 4 tensors and
an acknowledgement queue keep the producer from rewriting a tensor in use.
Prints one line: p50 / p99 / p99.9 / max in microseconds."""
import argparse
import time

import torch
import torch.multiprocessing as mp

WARMUP = 50


def consumer(q, ack, frames, out):
    torch.cuda.init()
    lat = []
    bad = 0
    for _ in range(frames):
        t, val, idx, t0 = q.get()
        ok = bool((t == val).all().item())  # .item() synchronises
        t1 = time.monotonic_ns()
        if not ok:
            bad += 1
        if idx >= WARMUP:
            lat.append(t1 - t0)
        del t
        ack.put(idx)
    lat.sort()
    pct = lambda p: lat[round((len(lat) - 1) * p)] / 1000.0
    out.put("p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us; frames differing: %d"
            % (pct(0.5), pct(0.99), pct(0.999), pct(1.0), bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--bytes", type=int, default=1920 * 1080 * 3 // 2)
    ap.add_argument("--interval-us", type=int, default=1000)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    q, ack, out = ctx.Queue(), ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=consumer, args=(q, ack, a.frames, out))
    p.start()
    ring = [torch.empty(a.bytes, dtype=torch.uint8, device="cuda") for _ in range(4)]
    in_use = 0
    start = time.monotonic()
    for i in range(a.frames):
        due = start + i * a.interval_us / 1e6
        while time.monotonic() < due:
            pass
        if in_use == len(ring):
            ack.get()
            in_use -= 1
        t = ring[i % len(ring)]
        t0 = time.monotonic_ns()
        val = (i % 250) + 1
        t.fill_(val)
        torch.cuda.current_stream().synchronize()
        q.put((t, val, i, t0))
        in_use += 1
    line = out.get()
    p.join()
    print("torch.multiprocessing handoff frame=%d B frames=%d interval=%dus: %s"
          % (a.bytes, a.frames - WARMUP, a.interval_us, line))


if __name__ == "__main__":
    main()
