"""Error types (each with the Rust error's message) and KeyboardInterrupt in
a blocked next()."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import cuframes


def test_bad_key(runtime_dir):
    with pytest.raises(cuframes.BadKey, match="invalid stream key") as e:
        cuframes.Subscriber("no spaces", runtime_dir=runtime_dir)
    assert isinstance(e.value, ValueError) and isinstance(e.value, cuframes.Error)
    with pytest.raises(cuframes.BadKey):
        cuframes.Publisher("a/b", 64, 48, runtime_dir=runtime_dir)


def test_no_publisher(runtime_dir):
    with pytest.raises(cuframes.NoPublisher, match='no publisher on key "nobody"') as e:
        cuframes.Subscriber("nobody", runtime_dir=runtime_dir)
    assert isinstance(e.value, ConnectionRefusedError)


def test_timeout_then_disconnected(runtime_dir):
    pub = cuframes.Publisher("quiet", 64, 48, runtime_dir=runtime_dir)
    sub = cuframes.Subscriber("quiet", runtime_dir=runtime_dir, reconnect=False)
    with pytest.raises(cuframes.Timeout) as e:
        sub.next(timeout=0.1)
    assert isinstance(e.value, TimeoutError)
    pub.close()
    with pytest.raises(cuframes.Disconnected, match="publisher disconnected"):
        sub.next(timeout=5)
    assert list(sub) == []


def test_publisher_exists_and_bad_arguments(runtime_dir):
    pub = cuframes.Publisher("one", 64, 48, runtime_dir=runtime_dir)
    with pytest.raises(cuframes.PublisherExists, match="already live"):
        cuframes.Publisher("one", 64, 48, runtime_dir=runtime_dir)
    with pytest.raises(ValueError, match="slot count"):
        cuframes.Publisher("two", 64, 48, runtime_dir=runtime_dir, slots=1)
    with pytest.raises(ValueError, match="mode"):
        cuframes.Subscriber("one", mode="oldest", runtime_dir=runtime_dir)
    with pytest.raises(ValueError, match="expected 4608"):
        pub.publish(np.zeros((10, 10), np.uint8))
    with pytest.raises(TypeError, match="uint8 for NV12"):
        pub.publish(np.zeros((72, 64), np.uint16))
    pub.close()


def test_no_packet_ring(runtime_dir):
    pub = cuframes.Publisher("nopk", 64, 48, runtime_dir=runtime_dir)
    with pytest.raises(cuframes.NoPacketRing):
        cuframes.Subscriber("nopk", packets=True, runtime_dir=runtime_dir)
    pub.close()


def test_keyboard_interrupt_in_a_blocked_next(runtime_dir):
    pub = cuframes.Publisher("sigint", 64, 48, runtime_dir=runtime_dir)
    child = textwrap.dedent(f"""
        import signal, sys, cuframes
        # Python's own SIGINT handler, even when this test runs in a
        # background job (which starts children with SIGINT ignored, and
        # Python then installs no handler): the test is about next().
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sub = cuframes.Subscriber("sigint", runtime_dir={runtime_dir!r})
        try:
            print("ready", flush=True)
            sub.next()  # no timeout: blocks until a frame, which never comes
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(42)
        sys.exit(1)
    """)
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        assert pub.wait_for_subscribers(1, timeout=10)
        time.sleep(0.5)  # let it block in next() (the result holds either way)
        os.kill(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 42, err
    assert "interrupted" in out
    pub.close()
