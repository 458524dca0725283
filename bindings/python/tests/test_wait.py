"""How a blocking next() waits (protocol.md §5.5): spin, then the futex;
the options' checks; frames are the same either way."""

import threading
import time

import numpy as np
import pytest

import cuframes


def paced(pub, n, period):
    """Publishes n frames, frame i filled with i, one every `period` s."""
    t0 = time.monotonic()
    for i in range(n):
        pub.publish(np.full((72, 64), i, np.uint8))
        time.sleep(max(0.0, t0 + (i + 1) * period - time.monotonic()))


# (wait_spin, wait_anticipate): the plain futex wait; a spin longer than
# the 20 ms pace, without anticipation (every wait spins into the next
# commit); the default (anticipation learns the pace, then spins across it).
@pytest.mark.parametrize("spin,anticipate", [(0.0, False), (0.03, False), (50e-6, True)])
def test_frames_arrive_with_either_wait(runtime_dir, spin, anticipate):
    pub = cuframes.Publisher("paced", 64, 48, runtime_dir=runtime_dir, policy="wait")
    try:
        sub = cuframes.Subscriber("paced", mode="in_order", runtime_dir=runtime_dir,
                                  reconnect=False, wait_spin=spin,
                                  wait_anticipate=anticipate)
        assert pub.wait_for_subscribers(1, timeout=10)
        n = 40
        t = threading.Thread(target=paced, args=(pub, n, 0.02))
        t.start()
        got = []
        for _ in range(n):
            with sub.next(timeout=5) as f:
                got.append(int(f.planes[0][0, 0]))
        t.join()
        assert got == list(range(n))
        hits = sub.stats()["spin_hits"]
        if spin == 0 and not anticipate:
            assert hits == 0, "the plain futex wait never spins"
        else:
            # The spin meets commits (core/tests/wait_strategy.rs measures
            # this closely); only a loose lower bound here.
            assert hits > 0, sub.stats()
    finally:
        pub.close()


def test_wait_options_are_checked(runtime_dir):
    pub = cuframes.Publisher("opts", 64, 48, runtime_dir=runtime_dir)
    for bad in (-1e-6, 2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="wait_spin"):
            cuframes.Subscriber("opts", runtime_dir=runtime_dir, wait_spin=bad)
    # Durations too long for a deadline are errors, not panics.
    for bad in (1e30, 1e19, float("nan")):
        with pytest.raises(ValueError, match="timeout"):
            cuframes.Subscriber("opts", runtime_dir=runtime_dir, timeout=bad)
        with pytest.raises(ValueError, match="wait_timeout"):
            cuframes.Publisher("opts2", 64, 48, runtime_dir=runtime_dir, wait_timeout=bad)
        with pytest.raises(ValueError, match="timeout"):
            pub.wait_for_subscribers(1, timeout=bad)
    sub = cuframes.Subscriber("opts", runtime_dir=runtime_dir, reconnect=False)
    with pytest.raises(ValueError, match="timeout"):
        sub.next(timeout=1e19)
    pub.close()
