"""Type stubs of the Rust extension module cuframes._cuframes (PyO3).

Units: times in seconds (float) unless the name ends in ``_ns``
(nanoseconds, int); sizes in bytes; ``pitch`` is bytes between rows.
Frame formats: NV12 (8-bit 4:2:0: plane 0 = Y, ``height`` rows of
``width`` bytes; plane 1 = interleaved CbCr, ``ceil(height/2)`` rows of
``2*ceil(width/2)`` bytes) and P010 (the same with 16-bit little-endian
samples, value in the high 10 bits). See docs/python.md and
docs/protocol.md.
"""

from types import TracebackType
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
#: The DLPack version of the capsules Plane.__dlpack__ makes: (1, 0).
DLPACK_VERSION: Tuple[int, int]

#: A CUDA stream: an int ``CUstream`` (0 default, 1 ``CU_STREAM_LEGACY``,
#: 2 ``CU_STREAM_PER_THREAD``) or an object with ``cuda_stream`` (torch),
#: ``ptr`` (CuPy) or ``__cuda_stream__``.
StreamLike = Any

class Subscriber:
    """A connection to the publisher of a stream key (protocol.md §5).

    ``Subscriber(key, mode="newest", backend="auto", timeout=None,
    reconnect=True, packets=False, frames=True, name=None, runtime_dir=None,
    publisher_uids=None, wait_publisher=0.0, handshake_timeout=5.0,
    allow_legacy_ipc=False, wait_spin=50e-6, wait_anticipate=True)``

    - ``mode``: ``"newest"`` (always the newest frame; older ones are skipped
      and counted) or ``"in_order"`` (every frame in sequence).
    - ``backend``: ``"auto"`` (chosen from what the publisher shares, as
      the Rust facade's ``Backend::resolve`` does: host memory → host, CUDA
      or Vulkan memory → CUDA when a driver is present, else Vulkan),
      ``"host"`` (memfd host memory only), ``"cuda"`` (VRAM on the
      publisher's GPU) or ``"vulkan"`` (Vulkan external memory; frames are
      read as copies).
    - ``timeout``: default wait of ``next()`` / iteration, seconds; None:
      wait forever.
    - ``reconnect``: connect again when the publisher goes away (crash or
      shutdown); only its end of stream ends the iteration.
    - ``packets`` / ``frames``: what to subscribe to (the encoded packet
      ring needs a publisher started with ``--packets``).
    - ``publisher_uids``: ``None`` / ``"same_user"`` (this uid or root),
      ``"any"``, or a list of uids accepted as the publisher (SO_PEERCRED).
    - ``wait_publisher``: keep retrying this long (seconds) while nobody
      publishes the key. The defaults of ``wait_publisher``,
      ``handshake_timeout``, ``wait_spin`` and ``wait_anticipate`` are the
      Rust ``SubscriberOptions``' (0, 5 s, 50 µs, True).
    - ``allow_legacy_ipc``: accept legacy CUDA IPC handles, which cannot be
      validated: this trusts the publisher not to send forged ones.
    - ``wait_spin``: a blocking ``next()`` busy-waits this long (seconds,
      at most 1) for the next frame before sleeping on the ring's futex;
      ``wait_anticipate`` learns the stream's pace and spins across the
      moment the next frame is due (protocol.md §5.5). A wake-up then takes
      about a microsecond instead of 5–30 µs, for at most 2 × ``wait_spin``
      + 270 µs of CPU per frame; ``wait_spin=0, wait_anticipate=False``
      sleeps at once. Durations are seconds from 0 to 1e9 (ValueError
      otherwise).

    Raises BadKey, NoPublisher, Refused, WrongBackend, NoPacketRing,
    ProtocolError, Timeout (handshake), CudaError, VulkanError, ValueError
    (arguments).
    Blocking waits release the GIL and honour KeyboardInterrupt.
    """

    def __init__(
        self,
        key: str,
        mode: Literal["newest", "in_order"] = "newest",
        backend: Literal["auto", "host", "cuda", "vulkan"] = "auto",
        timeout: Optional[float] = None,
        reconnect: bool = True,
        packets: bool = False,
        frames: bool = True,
        name: Optional[str] = None,
        runtime_dir: Optional[str] = None,
        publisher_uids: Union[None, Literal["same_user", "any"], Sequence[int]] = None,
        wait_publisher: float = 0.0,
        handshake_timeout: float = 5.0,
        allow_legacy_ipc: bool = False,
        wait_spin: float = 50e-6,
        wait_anticipate: bool = True,
    ) -> None: ...
    @property
    def key(self) -> str: ...
    @property
    def backend(self) -> Literal["host", "cuda", "vulkan"]:
        """The memory frames arrive in (what ``backend="auto"`` chose)."""
    @property
    def id(self) -> int:
        """The publisher-assigned id of this connection (the first field
        of ``Publisher.leases()`` entries)."""
    def stats(self) -> Dict[str, int]:
        """Counters: received, dropped, revoked, reconnects, stream_changes,
        spin_hits (frames a blocking wait saw while spinning, ``wait_spin``)."""
    def next(self, timeout: Optional[float] = None) -> "Frame":
        """The next frame (newest, or next in order), leased.

        ``timeout`` seconds (None: the subscriber's ``timeout``; None there
        too: forever). Raises Timeout, Disconnected (publisher gone and the
        ring drained), TooManyLeases (4 frames of this subscriber alive),
        ProtocolError."""
    def __iter__(self) -> Iterator["Frame"]: ...
    def __next__(self) -> "Frame":
        """As ``next()``; the publisher's end of stream (Disconnected) ends
        the iteration."""
    def next_packet(self, timeout: Optional[float] = None) -> "Packet":
        """The next encoded packet (``packets=True``); waits as ``next()``."""
    def packets(self) -> Iterator["Packet"]:
        """Packets until the end of stream."""
    def codec_params(self) -> "CodecParams":
        """The codec and parameter sets of the packet ring (``packets=True``)."""
    def close(self) -> None:
        """Closes the connection. Frames still alive stay mapped but the
        publisher reclaims their leases and may rewrite their slots (their
        ``is_valid()`` turns False once it does)."""
    def __enter__(self) -> "Subscriber": ...
    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Frame:
    """A leased frame. A context manager: the frame's hold on the lease ends
    at ``__exit__``, ``release()``, or when it is garbage-collected; views
    of its planes (NumPy arrays, Plane objects, DLPack capsules and the
    tensors made of them) keep the lease until the last of them is gone
    (docs/python.md, "Leases")."""

    @property
    def seq(self) -> int:
        """Sequence number (from 1; continues across stream changes)."""
    @property
    def pts_ns(self) -> Optional[int]:
        """Presentation time, ns, or None."""
    @property
    def publish_ns(self) -> int:
        """CLOCK_MONOTONIC time of the publisher's commit, ns."""
    @property
    def flags(self) -> int:
        """Raw flag bits: 1 keyframe, 2 discontinuity."""
    @property
    def keyframe(self) -> bool: ...
    @property
    def discontinuity(self) -> bool:
        """Frames before this one were lost (source gap, or a reconnect)."""
    @property
    def source_index(self) -> int:
        """Index of the frame in the source's output order."""
    @property
    def skipped(self) -> int:
        """Frames skipped or lost between the previous frame and this one."""
    @property
    def stream_changed(self) -> bool:
        """The first frame of a new stream description (size or format)."""
    @property
    def width(self) -> int:
        """Pixels."""
    @property
    def height(self) -> int:
        """Pixels."""
    @property
    def format(self) -> Literal["nv12", "p010"]: ...
    @property
    def pitches(self) -> Tuple[int, int]:
        """Bytes between rows of plane 0 and plane 1 in the slot."""
    @property
    def backend(self) -> Literal["host", "cuda", "vulkan"]: ...
    @property
    def device(self) -> Optional[int]:
        """CUDA device ordinal of a CUDA frame; None for host frames."""
    @property
    def released(self) -> bool:
        """Whether release() / __exit__ ended this frame's hold."""
    @property
    def memory_range(self) -> Tuple[int, int]:
        """The frame's slot as (first, end) addresses: this process's
        read-only host mapping, or device addresses (CUDA). Raises
        ValueError after release, and for Vulkan frames (not mapped here)."""
    @property
    def planes(self) -> Tuple[Any, Any]:
        """(Y, CbCr). Host frames: read-only ``numpy.ndarray`` views of the
        shared memory, no copy: shape (rows, row_bytes) with strides
        (pitch, 1), dtype uint8 — for P010 dtype uint16, shape (rows,
        row_bytes / 2), strides (pitch, 2). CUDA frames: ``Plane``
        exporters (DLPack, CUDA array interface). Vulkan frames: read-only
        ``numpy.ndarray`` COPIES of the planes (same shapes and dtypes, rows
        packed), since Vulkan device memory is not mapped in this process.
        Made once per frame. Raises ValueError after release; BufferError
        for a plane whose rows do not lie inside the mapping."""
    def dlpack(self, i: int) -> "Plane":
        """A ``Plane`` exporter of plane ``i`` for host and CUDA frames
        (host: ``numpy.from_dlpack(frame.dlpack(0))``). Raises BufferError
        for Vulkan frames (use ``planes`` or ``to_numpy()``: copies)."""
    def to_numpy(self) -> npt.NDArray[Any]:
        """An owned copy in FFmpeg's packed rawvideo layout (rows without
        padding, Y then CbCr): shape (height + ceil(height/2), width) when
        the planes' rows are equally long (even widths), else 1-D; uint8,
        or uint16 for P010. CUDA and Vulkan frames are copied to host
        memory. Raises CudaError / VulkanError (the copy failed),
        ProtocolError (a row outside the slot)."""
    def is_valid(self) -> bool:
        """False once the publisher revoked the lease (held past its lease
        timeout; it may then rewrite the slot): data read from the frame
        may be torn. After release(), the value release() returned."""
    def release(self, stream: Optional[StreamLike] = None) -> bool:
        """Ends this frame's hold on the lease. With no view alive the
        lease is returned now (CUDA: after synchronising the slot's context,
        or — with ``stream`` — once the work queued on ``stream`` so far has
        finished, without blocking); otherwise when the last view is gone
        (after ``stream``'s work then queued). Returns ``is_valid()`` as of
        now. Idempotent."""
    def __enter__(self) -> "Frame": ...
    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Plane:
    """One plane of a frame, exported without a copy: DLPack
    (``torch.from_dlpack``, ``cupy.from_dlpack``, ``numpy.from_dlpack``) and,
    for CUDA frames, ``__cuda_array_interface__`` v3. Holds the frame's
    lease while it lives. Read-only memory: consumers must not write."""

    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, elements per row)."""
    @property
    def strides(self) -> Tuple[int, int]:
        """(pitch, element size), bytes."""
    @property
    def dtype(self) -> Literal["uint8", "uint16"]: ...
    @property
    def ptr(self) -> int:
        """Address of the first row (a device address for CUDA frames):
        the mapped slot's address plus the plane's offset."""
    def __dlpack_device__(self) -> Tuple[int, int]:
        """(1, 0) for host frames (kDLCPU); (2, ordinal) for CUDA (kDLCUDA)."""
    def __dlpack__(
        self,
        *,
        stream: Optional[int] = None,
        max_version: Optional[Tuple[int, int]] = None,
        dl_device: Optional[Tuple[int, int]] = None,
        copy: Optional[bool] = None,
    ) -> Any:
        """A DLPack capsule: "dltensor_versioned" (DLPack 1.0, read-only
        flag) when ``max_version >= (1, 0)``, else legacy "dltensor".
        CUDA: work the consumer queues on ``stream`` (None or 1: legacy
        default stream, 2: per-thread default, else a CUstream; -1: no
        ordering) is ordered after the frame is complete. Raises
        BufferError for ``copy=True``, another ``dl_device``, or a stream
        for host memory."""
    @property
    def __cuda_array_interface__(self) -> Dict[str, Any]:
        """CUDA array interface v3 (CUDA frames; AttributeError for host):
        shape, typestr ("|u1" or "<u2"), data (ptr, read-only=True),
        strides (pitch, item), stream None — the data is complete when this
        returns."""

class Packet:
    """One encoded packet: an Annex B access unit copied out of the ring."""

    data: bytes
    seq: int
    pts_ns: Optional[int]
    dts_ns: Optional[int]
    keyframe: bool
    discontinuity: bool
    """Packets were lost (overrun) or the publisher flagged a gap before it."""
    skipped: int
    """Packets this reader lost just before this one."""
    def __len__(self) -> int: ...

class CodecParams:
    """The codec of a packet ring."""

    codec_id: int
    """FFmpeg AVCodecID (27 H.264, 173 HEVC)."""
    extradata: bytes
    """Annex B parameter sets (SPS/PPS, VPS/SPS/PPS for HEVC); may be empty."""
    @property
    def codec(self) -> Literal["h264", "hevc", "unknown"]: ...

class Publisher:
    """Publishes frames under a key (protocol.md §5).

    ``Publisher(key, width, height, format="nv12", backend="host", *,
    slots=8, policy="drop_frame", wait_timeout=2.0, lease_timeout=5.0,
    runtime_dir=None, device=0, fps=None)``

    - ``backend``: ``"host"`` (memfd slots), ``"cuda"`` (VRAM slots on
      CUDA device ``device``, shared as VMM file descriptors), ``"vulkan"``
      (Vulkan external memory, uploaded from host arrays) or ``"auto"``
      (CUDA when a driver and GPU are present, else host memory).
    - ``slots``, ``wait_timeout``, ``lease_timeout``: defaults are the Rust
      ``PublisherConfig``'s (8, 2 s, 5 s).
    - ``policy``: ``"drop_frame"`` (never block) or ``"wait"`` (wait up to
      ``wait_timeout`` seconds for in-order subscribers: lossless).
    - ``lease_timeout``: seconds after which a held lease is revoked.
    - ``fps``: nominal frame rate as (numerator, denominator).

    Raises BadKey, PublisherExists, CudaError, VulkanError, ValueError
    (size, slots, backend).
    """

    def __init__(
        self,
        key: str,
        width: int,
        height: int,
        format: Literal["nv12", "p010"] = "nv12",
        backend: Literal["host", "cuda", "vulkan", "auto"] = "host",
        *,
        slots: int = 8,
        policy: Literal["drop_frame", "wait"] = "drop_frame",
        wait_timeout: float = 2.0,
        lease_timeout: float = 5.0,
        runtime_dir: Optional[str] = None,
        device: int = 0,
        fps: Optional[Tuple[int, int]] = None,
    ) -> None: ...
    @property
    def key(self) -> str: ...
    @property
    def device(self) -> Optional[int]: ...
    @property
    def pitches(self) -> Tuple[int, int]:
        """Bytes between rows of each plane in the slots."""
    def publish(
        self,
        frame: Any,
        pts_ns: Optional[int] = None,
        keyframe: bool = True,
        stream: Optional[StreamLike] = None,
    ) -> Optional[int]:
        """Copies one frame into a slot and commits it; returns its
        sequence number, or None when it was dropped (every slot leased).

        Host: a NumPy array (any array-like) of the packed rawvideo layout
        (``height + ceil(height/2)`` rows, or any shape of that many
        elements), uint8 for NV12 / uint16 for P010, or a pair of planes
        (Y, CbCr) of shapes (rows, row_bytes / itemsize). CUDA: a tensor
        with ``__cuda_array_interface__`` on the publisher's GPU (torch,
        CuPy), packed of shape (rows_y + rows_c, width) or a pair of
        planes, rows contiguous; copied device to device on ``stream``
        (default: the tensor's CAI stream, else the legacy default stream),
        which is synchronised before the commit. CUDA and Vulkan publishers
        also take host arrays as above (synchronous uploads).
        Raises TypeError (dtype; a CUDA tensor for a non-CUDA publisher),
        ValueError (shape), CudaError, VulkanError."""
    def wait_for_subscribers(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Waits until ``n`` subscribers are connected (GIL released)."""
    def leases(self) -> List[Tuple[int, int, bool]]:
        """The lease table now: (subscriber id, frame seq, revoked) per
        frame a subscriber holds (protocol.md §5.2)."""
    def stats(self) -> Dict[str, int]:
        """published, dropped, subscribers, revoked_leases, lagged."""
    def close(self) -> None:
        """Ends the stream (GOODBYE end of stream); subscribers drain the
        frames left, then get Disconnected."""
    def __enter__(self) -> "Publisher": ...
    def __exit__(
        self,
        exc_type: Optional[type],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
