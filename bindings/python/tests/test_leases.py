"""The lease rule (docs/python.md, "Leases"), observed in the publisher's
lease table (Publisher.leases(), read from the subscribers' lease rows)."""

import gc
import time

import numpy as np
import pytest

import cuframes

W, H = 64, 48


def packed(value):
    return np.full((H + H // 2, W), value, np.uint8)


@pytest.fixture
def pair(runtime_dir):
    pub = cuframes.Publisher("leases", W, H, runtime_dir=runtime_dir, slots=4)
    sub = cuframes.Subscriber("leases", mode="in_order", runtime_dir=runtime_dir,
                              reconnect=False, timeout=5)
    assert pub.wait_for_subscribers(1, timeout=5)
    yield pub, sub
    sub.close()
    pub.close()


def test_the_lease_ends_at_context_exit(pair):
    pub, sub = pair
    seq = pub.publish(packed(7))
    with sub.next() as f:
        assert f.seq == seq
        assert pub.leases() == [(sub.id, seq, False)]
        assert f.planes[0][0, 0] == 7
    assert f.released
    assert pub.leases() == []


def test_the_lease_ends_when_the_frame_is_collected(pair):
    pub, sub = pair
    seq = pub.publish(packed(1))
    f = sub.next()
    assert pub.leases() == [(sub.id, seq, False)]
    del f  # the last reference: freed at once
    assert pub.leases() == []

    seq = pub.publish(packed(2))
    f = sub.next()
    cycle = [f]
    cycle.append(cycle)  # only the cycle collector frees it
    del f, cycle
    assert pub.leases() == [(sub.id, seq, False)]
    gc.collect()
    assert pub.leases() == []


def test_views_keep_the_lease_until_the_last_one_is_gone(pair):
    pub, sub = pair
    seq = pub.publish(packed(9))
    f = sub.next()
    y = f.planes[0]
    plane = f.dlpack(1)
    capsule = plane.__dlpack__(max_version=(1, 0))
    assert f.release() is True
    assert f.released and f.is_valid() is True
    with pytest.raises(ValueError, match="released"):
        f.planes
    # The views still read the frame: its slot is still leased.
    assert pub.leases() == [(sub.id, seq, False)]
    assert y[0, 0] == 9
    del y
    assert pub.leases() == [(sub.id, seq, False)]
    del plane
    assert pub.leases() == [(sub.id, seq, False)]
    del capsule  # an unconsumed capsule frees its tensor
    assert pub.leases() == []


def test_a_revoked_lease_is_reported_not_hidden(runtime_dir):
    pub = cuframes.Publisher("revoke", W, H, runtime_dir=runtime_dir, slots=2,
                             lease_timeout=0.0)
    sub = cuframes.Subscriber("revoke", mode="newest", runtime_dir=runtime_dir,
                              reconnect=False, timeout=5)
    assert pub.wait_for_subscribers(1, timeout=5)
    seq = pub.publish(packed(3))
    f = sub.next()
    y = f.planes[0]
    assert f.is_valid()
    # The publisher revokes leases held past lease_timeout when it next
    # needs a slot; then it may rewrite the frame under the view.
    for i in range(4):
        pub.publish(packed(10 + i))
    assert (sub.id, seq, True) in pub.leases()
    assert not f.is_valid()
    assert pub.stats()["revoked_leases"] >= 1
    del y
    assert f.release() is False
    sub.close()
    pub.close()


def test_too_many_leases(runtime_dir):
    pub = cuframes.Publisher("many", W, H, runtime_dir=runtime_dir, slots=8)
    sub = cuframes.Subscriber("many", mode="in_order", runtime_dir=runtime_dir,
                              reconnect=False, timeout=5)
    assert pub.wait_for_subscribers(1, timeout=5)
    for i in range(4):
        pub.publish(packed(i))
    held = [sub.next() for _ in range(4)]
    assert [s for _, s, _ in pub.leases()] == [f.seq for f in held]
    assert pub.publish(packed(5)) == 5
    with pytest.raises(cuframes.TooManyLeases):
        sub.next(timeout=1)
    held.pop(0).release()
    assert sub.next(timeout=1).seq == 5


def test_frames_outliving_a_closed_subscriber_stay_mapped_but_lose_their_lease(runtime_dir):
    pub = cuframes.Publisher("closed", W, H, runtime_dir=runtime_dir, slots=2)
    sub = cuframes.Subscriber("closed", runtime_dir=runtime_dir, reconnect=False, timeout=5)
    assert pub.wait_for_subscribers(1, timeout=5)
    pub.publish(packed(4))
    f = sub.next()
    y = f.planes[0]
    sub.close()
    with pytest.raises(ValueError, match="closed"):
        sub.next()
    # The publisher reclaims the lease at the socket's EOF, then reuses the slot.
    deadline = time.monotonic() + 10
    while pub.stats()["subscribers"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pub.leases() == []
    for i in range(4):
        pub.publish(packed(20 + i))
    assert not f.is_valid()
    assert int(y[0, 0]) in (4, 20, 21, 22, 23)  # still mapped: readable, maybe rewritten
    assert f.release() is False
    pub.close()
