"""DLPack export (the same code as for CUDA frames) on host frames:
numpy.from_dlpack takes the versioned and the legacy capsule without a copy."""

import numpy as np
import pytest

import cuframes

W, H = 64, 48


@pytest.fixture
def frame(runtime_dir):
    pub = cuframes.Publisher("dl", W, H, runtime_dir=runtime_dir)
    sub = cuframes.Subscriber("dl", runtime_dir=runtime_dir, reconnect=False, timeout=5)
    assert pub.wait_for_subscribers(1, timeout=5)
    frame = np.arange((H + H // 2) * W, dtype=np.uint32).astype(np.uint8).reshape(H + H // 2, W)
    pub.publish(frame)
    f = sub.next()
    yield f, frame
    f.release()
    sub.close()
    pub.close()


def test_versioned_capsule_is_zero_copy_and_read_only(frame):
    f, src = frame
    for i, rows in ((0, slice(0, H)), (1, slice(H, None))):
        p = f.dlpack(i)
        assert p.__dlpack_device__() == (1, 0)
        assert "dltensor_versioned" in repr(p.__dlpack__(max_version=(1, 2)))
        a = np.from_dlpack(p)
        assert a.ctypes.data == f.planes[i].ctypes.data == p.ptr
        assert a.strides == f.planes[i].strides == p.strides
        assert a.dtype == np.uint8 and a.shape == p.shape
        assert np.array_equal(a, src[rows])
        assert not a.flags.writeable


def test_legacy_capsule(frame):
    f, src = frame
    p = f.dlpack(0)
    cap = p.__dlpack__()
    assert '"dltensor"' in repr(cap)

    class Legacy:
        def __dlpack__(self, **_):
            return p.__dlpack__()

        def __dlpack_device__(self):
            return p.__dlpack_device__()

    a = np.from_dlpack(Legacy())
    assert a.ctypes.data == p.ptr
    assert np.array_equal(a, src[:H])


def test_refusals(frame):
    f, _ = frame
    p = f.dlpack(0)
    with pytest.raises(BufferError):
        p.__dlpack__(copy=True)
    with pytest.raises(BufferError):
        p.__dlpack__(dl_device=(2, 0))
    with pytest.raises(BufferError):
        p.__dlpack__(stream=5)
    with pytest.raises(AttributeError):
        p.__cuda_array_interface__
