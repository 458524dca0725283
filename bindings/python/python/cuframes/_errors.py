"""The exceptions of cuframes (docs/python.md, "Errors").

Every error the library raises derives from :class:`Error`; each also derives
from the closest built-in exception, so ``except TimeoutError`` or
``except ValueError`` work too. The message is the Rust error's.
"""


class Error(Exception):
    """Base class of every cuframes error."""


class BadKey(Error, ValueError):
    """The stream key is not ``[A-Za-z0-9_-]{1,63}`` (Rust ``DirError::Key``)."""


class NoPublisher(Error, ConnectionRefusedError):
    """Nobody publishes this key: no socket, or nobody listening on it
    (Rust ``ConnectError::NoPublisher``)."""


class Refused(Error, PermissionError):
    """The publisher refused this subscriber (``ConnectError::Rejected``), or
    runs as a uid this subscriber does not accept (``ConnectError::PublisherUid``,
    ``publisher_uids=``), or its credentials could not be read."""


class Timeout(Error, TimeoutError):
    """Nothing arrived within the timeout (``RecvError::Timeout``,
    ``PacketRecvError::Timeout``, ``ConnectError::Timeout``). With
    ``reconnect=True`` also raised while the subscriber waits for a publisher."""


class Disconnected(Error, ConnectionError):
    """The publisher is gone and everything left in the ring was delivered
    (``RecvError::Disconnected``): end of stream, or, without ``reconnect``,
    a publisher that went away."""


class ProtocolError(Error):
    """The publisher broke the protocol, or a socket / shared-memory step of
    the handshake failed (``ConnectError::Protocol``, ``Channel``, ``Layout``,
    ``RecvError::Protocol``, ``PacketRecvError::Corrupt``)."""


class WrongBackend(Error):
    """The publisher shares memory this subscriber's ``backend=`` does not
    import (e.g. ``backend="host"`` and a CUDA publisher;
    ``ConnectError::MemoryKind``)."""


class TooManyLeases(Error):
    """Every lease entry of this subscriber is held by a live frame (4 per
    subscriber, protocol.md §5.2): release a frame (or drop its views) first."""


class NoPacketRing(Error):
    """``packets=True`` but the publisher has no packet ring
    (``ConnectError::NoPacketRing``; start it with ``--packets``)."""


class PublisherExists(Error):
    """A live publisher already owns the key (``CreateError::AlreadyRunning``)."""


class CudaError(Error):
    """A CUDA driver call failed, or no driver / device is present
    (``cuframes_cuda::CudaError``)."""


class VulkanError(Error):
    """A Vulkan call failed, or no loader / device with external memory is
    present (``cuframes_vulkan::VulkanError``)."""


__all__ = [
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
]
