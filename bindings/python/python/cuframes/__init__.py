"""cuframes: decoded video frames shared between processes without a copy.

Host frames arrive as read-only NumPy views of the shared memory; CUDA frames
as DLPack / ``__cuda_array_interface__`` exporters that ``torch.from_dlpack``
and ``cupy.from_dlpack`` take without a copy. See docs/python.md.
"""

from ._errors import (
    BadKey,
    CudaError,
    Disconnected,
    Error,
    NoPacketRing,
    NoPublisher,
    ProtocolError,
    PublisherExists,
    Refused,
    Timeout,
    TooManyLeases,
    VulkanError,
    WrongBackend,
)
from ._cuframes import (
    DLPACK_VERSION,
    CodecParams,
    Frame,
    Packet,
    Plane,
    Publisher,
    Subscriber,
    __version__,
)

__all__ = [
    "DLPACK_VERSION",
    "Subscriber",
    "Frame",
    "Plane",
    "Packet",
    "CodecParams",
    "Publisher",
    "Error",
    "BadKey",
    "NoPublisher",
    "Refused",
    "Timeout",
    "Disconnected",
    "ProtocolError",
    "WrongBackend",
    "TooManyLeases",
    "NoPacketRing",
    "PublisherExists",
    "CudaError",
    "VulkanError",
    "__version__",
]
