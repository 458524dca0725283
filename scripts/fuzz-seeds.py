#!/usr/bin/env python3
"""Writes the fuzz seed corpus (fuzz/corpus/<target>/seed-*) from the golden
vectors in conformance/vectors/*.hex. Run after regenerating the vectors;
the files are committed. Each seed is laid out the way its target reads its
input (see the doc comment of each fuzz_targets/*.rs)."""
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VEC = os.path.join(ROOT, "conformance", "vectors")
OUT = os.path.join(ROOT, "fuzz", "corpus")


def vector(name):
    data = bytearray()
    with open(os.path.join(VEC, name + ".hex")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            off, rest = line.split(":", 1)
            assert int(off, 16) == len(data), (name, off)
            data += bytes(int(t, 16) for t in rest.split())
    return bytes(data)


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def main():
    m = {n: vector(n) for n in ["hello", "welcome", "welcome_handles", "error", "ping",
                                "pong", "goodbye", "stream_changed", "release"]}
    region = vector("control_region")
    row = vector("lease_row")

    for n in ["hello", "welcome", "welcome_handles", "error"]:
        write("decode_message", n, m[n])
    write("decode_message", "all", b"".join(m.values()))

    minor0 = struct.pack("<H", 0)
    write("handshake_publisher", "hello-ping-release-goodbye",
          minor0 + m["hello"] + m["ping"] + m["release"] + m["goodbye"])
    write("handshake_publisher", "hello-error", struct.pack("<H", 1) + m["hello"] + m["error"])

    write("handshake_subscriber", "welcome-ping-changed-goodbye",
          bytes([0x11]) + m["welcome"] + m["ping"] + m["stream_changed"] + m["goodbye"])
    write("handshake_subscriber", "welcome-handles", bytes([0x03]) + m["welcome_handles"] + m["pong"])
    write("handshake_subscriber", "error", bytes([0x01]) + m["error"])

    write("control_region", "cursor-0", struct.pack("<QQ", 4096, 0) + region)
    write("control_region", "cursor-1", struct.pack("<QQ", 4096, 1) + region)

    # lease_scan: slots byte (2 -> 4 slots), frames, flags, then u16 words
    # (value % 300) for [kind, 16 row words, 4 revoked, floor].
    words = [min(w, 299) for w in struct.unpack("<16Q", row)]
    def scan(slots, frames, flags, rows):
        out = bytes([slots, frames, flags])
        for kind, ws, floor in rows:
            out += struct.pack("<H", kind)
            out += b"".join(struct.pack("<H", w) for w in ws)
            out += struct.pack("<4H", 0, 0, 0, 0)
            if kind & 1:
                out += struct.pack("<H", floor)
        return out
    write("lease_scan", "inorder-row", scan(2, 5, 1, [(1, words, 1)]))
    write("lease_scan", "two-rows", scan(0, 3, 0, [(0, words, 0), (1, [0, 2, 3] + [0] * 13, 2)]))


if __name__ == "__main__":
    sys.exit(main())
