//! Error codes, their texts, and the thread-local last-error message.
//!
//! Every function of the C API that can fail returns an `int`: `CUFRAMES_OK`
//! (0) or one of the negative [`cuframes_error`] codes. The failing call
//! also stores a message with the details (the Rust error's chain) for
//! `cuframes_last_error()` on the calling thread.

use cuframes_core::runtime::{
    BackendErrorKind, BackendFailure, ConnectError, CreateError, PacketError, PacketRecvError,
    RecvError,
};
use cuframes_core::wire::ErrorCode;
use cuframes_facade::cuda::CudaError;
use std::cell::RefCell;
use std::ffi::{CStr, CString};

/// Result codes of the C API: `CUFRAMES_OK` (0) or a negative error.
///
/// The values of codes the earlier C library also had are kept
/// (`CUFRAMES_ERR_TIMEOUT` -7, `CUFRAMES_ERR_DISCONNECTED` -9,
/// `CUFRAMES_ERR_WOULD_BLOCK` -11, `CUFRAMES_ERR_TOO_MANY` -12, the packet
/// codes -20..-22, `CUFRAMES_ERR_INTERNAL` -100). Functions return them as
/// `int`; `cuframes_strerror(code)` names them.
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cuframes_error {
    /// Success.
    CUFRAMES_OK = 0,
    /// A required pointer argument is NULL, an option is out of range, or
    /// an option struct's `struct_size` is smaller than the first version
    /// of that struct.
    CUFRAMES_ERR_INVALID_ARG = -1,
    /// The handle is NULL, was already destroyed or released, or is a
    /// handle of another kind (e.g. a frame passed as a subscriber).
    CUFRAMES_ERR_INVALID_HANDLE = -2,
    /// The stream key is not `[A-Za-z0-9_-]{1,63}`, or the runtime
    /// directory is unusable (not creatable, or not owned by this user).
    CUFRAMES_ERR_BAD_KEY = -3,
    /// Nobody publishes this key (no socket, or nobody listening on it).
    CUFRAMES_ERR_NO_PUBLISHER = -4,
    /// The publisher refused the subscriber (its ERROR message: version
    /// mismatch, unsupported request, shutting down).
    CUFRAMES_ERR_REFUSED = -5,
    /// The peer broke the protocol (bad message, bad shared-memory layout,
    /// a changed ring that does not match the attached one).
    CUFRAMES_ERR_PROTOCOL = -6,
    /// Nothing arrived within the timeout (also while reconnecting).
    CUFRAMES_ERR_TIMEOUT = -7,
    /// The publisher shares memory this subscriber's backend does not
    /// import (e.g. `CUFRAMES_BACKEND_HOST` against a CUDA publisher).
    CUFRAMES_ERR_MEMORY_KIND = -8,
    /// The publisher is gone and every frame (packet) left in the ring was
    /// delivered; with reconnection on, only after its GOODBYE end of
    /// stream, a protocol failure or the give-up time.
    CUFRAMES_ERR_DISCONNECTED = -9,
    /// A CUDA driver call failed, no driver is installed, or the
    /// publisher's GPU is not visible to this process.
    CUFRAMES_ERR_CUDA = -10,
    /// `timeout_ms` was 0 and nothing was ready.
    CUFRAMES_ERR_WOULD_BLOCK = -11,
    /// Too many at once: this subscriber holds every lease it may (16
    /// frames), or the publisher has its maximum of subscribers.
    CUFRAMES_ERR_TOO_MANY = -12,
    /// The frame was released, but the publisher had revoked its lease
    /// (held past the publisher's lease timeout): data read from it may be
    /// torn. The handle is gone all the same.
    CUFRAMES_ERR_LEASE_REVOKED = -13,
    /// Frames (packets) were requested from a subscriber created without
    /// `CUFRAMES_SUBSCRIBE_FRAMES` (`CUFRAMES_SUBSCRIBE_PACKETS`).
    CUFRAMES_ERR_NOT_SUBSCRIBED = -14,
    /// A publisher is already live on this key.
    CUFRAMES_ERR_ALREADY_EXISTS = -15,
    /// A system call failed (socket, memfd, mmap...); see
    /// `cuframes_last_error()`.
    CUFRAMES_ERR_IO = -16,
    /// Access denied: the publisher runs as a uid this subscriber does not
    /// accept, the publisher's allow-list refused this subscriber, or legacy
    /// CUDA IPC handles were offered without `allow_legacy_ipc`.
    CUFRAMES_ERR_PERMISSION = -17,
    /// The operation does not apply: e.g. a host pointer of a frame in CUDA
    /// memory, `release_after` of a host frame, a slot operation without an
    /// acquired slot, or a second acquire before commit / abandon.
    CUFRAMES_ERR_UNSUPPORTED = -18,
    /// `cuframes_publisher_acquire`: every slot is leased (and, under
    /// `CUFRAMES_POLICY_WAIT`, stayed so for the wait timeout); the frame is
    /// counted as dropped and there is nothing to commit.
    CUFRAMES_ERR_DROPPED = -19,
    /// `cuframes_publisher_publish_packet`: the packet is empty or larger
    /// than the ring's `max_packet_size`; nothing was published.
    CUFRAMES_ERR_PACKET_OVERSIZED = -20,
    /// Packets were requested from (or published to) a publisher without a
    /// packet ring.
    CUFRAMES_ERR_NO_PACKET_RING = -21,
    /// `cuframes_subscriber_get_codec_params`: the publisher has set no
    /// codec extradata (yet); `*codec_id_out` is still written.
    CUFRAMES_ERR_NO_CODEC_PARAMS = -22,
    /// A packet slot was inconsistent (a corrupt or hostile publisher); it
    /// was skipped and reading continues at the next keyframe.
    CUFRAMES_ERR_CORRUPT = -24,
    /// A bug in libcuframes (a Rust panic, caught at the boundary); the
    /// message says where. Please report it.
    CUFRAMES_ERR_INTERNAL = -100,
}

pub use cuframes_error::*;

impl cuframes_error {
    /// Every code, for `cuframes_strerror` and the tests.
    pub const ALL: [cuframes_error; 25] = [
        CUFRAMES_OK,
        CUFRAMES_ERR_INVALID_ARG,
        CUFRAMES_ERR_INVALID_HANDLE,
        CUFRAMES_ERR_BAD_KEY,
        CUFRAMES_ERR_NO_PUBLISHER,
        CUFRAMES_ERR_REFUSED,
        CUFRAMES_ERR_PROTOCOL,
        CUFRAMES_ERR_TIMEOUT,
        CUFRAMES_ERR_MEMORY_KIND,
        CUFRAMES_ERR_DISCONNECTED,
        CUFRAMES_ERR_CUDA,
        CUFRAMES_ERR_WOULD_BLOCK,
        CUFRAMES_ERR_TOO_MANY,
        CUFRAMES_ERR_LEASE_REVOKED,
        CUFRAMES_ERR_NOT_SUBSCRIBED,
        CUFRAMES_ERR_ALREADY_EXISTS,
        CUFRAMES_ERR_IO,
        CUFRAMES_ERR_PERMISSION,
        CUFRAMES_ERR_UNSUPPORTED,
        CUFRAMES_ERR_DROPPED,
        CUFRAMES_ERR_PACKET_OVERSIZED,
        CUFRAMES_ERR_NO_PACKET_RING,
        CUFRAMES_ERR_NO_CODEC_PARAMS,
        CUFRAMES_ERR_CORRUPT,
        CUFRAMES_ERR_INTERNAL,
    ];

    /// The NUL-terminated text `cuframes_strerror` returns.
    pub fn text(self) -> &'static CStr {
        match self {
            CUFRAMES_OK => c"success",
            CUFRAMES_ERR_INVALID_ARG => c"invalid argument",
            CUFRAMES_ERR_INVALID_HANDLE => {
                c"invalid handle (NULL, destroyed, released, or of another kind)"
            }
            CUFRAMES_ERR_BAD_KEY => c"bad stream key or runtime directory",
            CUFRAMES_ERR_NO_PUBLISHER => c"no publisher on this key",
            CUFRAMES_ERR_REFUSED => c"the publisher refused the subscriber",
            CUFRAMES_ERR_PROTOCOL => c"protocol error",
            CUFRAMES_ERR_TIMEOUT => c"timeout",
            CUFRAMES_ERR_MEMORY_KIND => {
                c"the publisher's memory kind is not importable by this backend"
            }
            CUFRAMES_ERR_DISCONNECTED => c"publisher disconnected",
            CUFRAMES_ERR_CUDA => c"CUDA error",
            CUFRAMES_ERR_WOULD_BLOCK => c"nothing ready (non-blocking call)",
            CUFRAMES_ERR_TOO_MANY => c"too many (leases held, or subscribers)",
            CUFRAMES_ERR_LEASE_REVOKED => {
                c"the lease was revoked before release (data may be torn)"
            }
            CUFRAMES_ERR_NOT_SUBSCRIBED => c"not subscribed to this (frames or packets)",
            CUFRAMES_ERR_ALREADY_EXISTS => c"a publisher is already live on this key",
            CUFRAMES_ERR_IO => c"system error",
            CUFRAMES_ERR_PERMISSION => c"permission denied",
            CUFRAMES_ERR_UNSUPPORTED => c"operation not supported here",
            CUFRAMES_ERR_DROPPED => c"frame dropped: every slot is leased",
            CUFRAMES_ERR_PACKET_OVERSIZED => c"packet empty or larger than max_packet_size",
            CUFRAMES_ERR_NO_PACKET_RING => c"no packet ring",
            CUFRAMES_ERR_NO_CODEC_PARAMS => c"no codec extradata set by the publisher",
            CUFRAMES_ERR_CORRUPT => c"corrupt packet slot skipped",
            CUFRAMES_ERR_INTERNAL => c"internal error in libcuframes (please report)",
        }
    }

    /// The code of an `int` the C side passed, if it is one.
    pub fn from_code(code: i32) -> Option<cuframes_error> {
        Self::ALL.into_iter().find(|c| *c as i32 == code)
    }
}

/// A failed call: its code and the message for `cuframes_last_error()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The code returned.
    pub code: cuframes_error,
    /// The details.
    pub message: String,
}

impl Error {
    /// An error with `code` and `message`.
    pub fn new(code: cuframes_error, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// `CUFRAMES_ERR_INVALID_ARG` naming the argument.
    pub fn arg(what: impl Into<String>) -> Self {
        Error::new(CUFRAMES_ERR_INVALID_ARG, what)
    }

    /// `CUFRAMES_ERR_INVALID_HANDLE` for a handle of `kind`.
    pub fn handle(kind: &str) -> Self {
        Error::new(
            CUFRAMES_ERR_INVALID_HANDLE,
            format!("invalid {kind} handle (NULL, destroyed, released, or of another kind)"),
        )
    }
}

/// The error and its sources, `: `-separated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

fn refused(code: ErrorCode) -> cuframes_error {
    match code {
        ErrorCode::AccessDenied => CUFRAMES_ERR_PERMISSION,
        ErrorCode::TooManySubscribers => CUFRAMES_ERR_TOO_MANY,
        _ => CUFRAMES_ERR_REFUSED,
    }
}

/// The code of a CUDA backend error.
pub fn cuda_code(e: &CudaError) -> cuframes_error {
    match e {
        CudaError::LegacyIpcNotAllowed { .. } => CUFRAMES_ERR_PERMISSION,
        _ => CUFRAMES_ERR_CUDA,
    }
}

/// The code of a backend failure, from its portable kind and backend
/// (`BackendFailure`): no opt-in → `PERMISSION`, anything of the CUDA
/// backend → `CUDA`, of another backend → `IO`.
fn backend_code(f: &BackendFailure) -> cuframes_error {
    match (f.kind, f.api) {
        (BackendErrorKind::NotAllowed, _) => CUFRAMES_ERR_PERMISSION,
        (_, "cuda") => CUFRAMES_ERR_CUDA,
        _ => CUFRAMES_ERR_IO,
    }
}

impl From<ConnectError> for Error {
    fn from(e: ConnectError) -> Self {
        let code = match &e {
            ConnectError::Dir(_) => CUFRAMES_ERR_BAD_KEY,
            ConnectError::NoPublisher { .. } => CUFRAMES_ERR_NO_PUBLISHER,
            ConnectError::PublisherUid { .. } => CUFRAMES_ERR_PERMISSION,
            ConnectError::PeerCred { .. } => CUFRAMES_ERR_IO,
            ConnectError::Rejected { code, .. } => refused(*code),
            ConnectError::Protocol(_)
            | ConnectError::PeerChanged(_)
            | ConnectError::Layout(_)
            | ConnectError::PacketLayout(_) => CUFRAMES_ERR_PROTOCOL,
            ConnectError::Channel(_) | ConnectError::Shm(_) => CUFRAMES_ERR_IO,
            ConnectError::Timeout(_) => CUFRAMES_ERR_TIMEOUT,
            ConnectError::MemoryKind { .. } => CUFRAMES_ERR_MEMORY_KIND,
            ConnectError::Import(f) => backend_code(f),
            ConnectError::NoPacketRing => CUFRAMES_ERR_NO_PACKET_RING,
            ConnectError::NothingWanted => CUFRAMES_ERR_INVALID_ARG,
        };
        Error::new(code, chain(&e))
    }
}

/// A frame receive error; `zero_timeout`: the caller asked not to block.
pub fn recv_error(e: RecvError, zero_timeout: bool) -> Error {
    let code = match &e {
        RecvError::Timeout(_) if zero_timeout => CUFRAMES_ERR_WOULD_BLOCK,
        RecvError::Timeout(_) => CUFRAMES_ERR_TIMEOUT,
        RecvError::Disconnected => CUFRAMES_ERR_DISCONNECTED,
        RecvError::TooManyLeases => CUFRAMES_ERR_TOO_MANY,
        RecvError::Protocol(_) => CUFRAMES_ERR_PROTOCOL,
        RecvError::NotSubscribed => CUFRAMES_ERR_NOT_SUBSCRIBED,
    };
    Error::new(code, chain(&e))
}

/// A packet receive error; `zero_timeout`: the caller asked not to block.
pub fn packet_error(e: PacketRecvError, zero_timeout: bool) -> Error {
    match e {
        PacketRecvError::Control(inner) => recv_error(inner, zero_timeout),
        e => {
            let code = match &e {
                PacketRecvError::NotSubscribed => CUFRAMES_ERR_NOT_SUBSCRIBED,
                PacketRecvError::Timeout(_) if zero_timeout => CUFRAMES_ERR_WOULD_BLOCK,
                PacketRecvError::Timeout(_) => CUFRAMES_ERR_TIMEOUT,
                PacketRecvError::Disconnected => CUFRAMES_ERR_DISCONNECTED,
                PacketRecvError::Corrupt(_) => CUFRAMES_ERR_CORRUPT,
                PacketRecvError::Codec(_) => CUFRAMES_ERR_PROTOCOL,
                PacketRecvError::Control(_) => CUFRAMES_ERR_PROTOCOL,
            };
            Error::new(code, chain(&e))
        }
    }
}

/// A facade error; `zero_timeout`: the caller asked not to block (a
/// receive timeout is then `CUFRAMES_ERR_WOULD_BLOCK`).
pub fn facade_error(e: cuframes_facade::Error, zero_timeout: bool) -> Error {
    use cuframes_facade::Error as F;
    let code = match e {
        F::Connect(e) => return e.into(),
        F::Recv(e) => return recv_error(e, zero_timeout),
        F::Packet(e) => return packet_error(e, zero_timeout),
        F::Create(e) => return e.into(),
        F::PublishPacket(e) => return e.into(),
        F::Cuda(e) => return e.into(),
        F::Change(_) | F::Write(_) | F::BadBackendName(_) | F::FrameSize { .. } => {
            CUFRAMES_ERR_INVALID_ARG
        }
        F::Dropped => CUFRAMES_ERR_DROPPED,
        F::Host(_) | F::Vulkan(_) => CUFRAMES_ERR_IO,
        F::NotBuilt(_) => CUFRAMES_ERR_UNSUPPORTED,
        F::NoImporter { .. } => CUFRAMES_ERR_MEMORY_KIND,
    };
    Error::new(code, chain(&e))
}

impl From<cuframes_facade::Error> for Error {
    fn from(e: cuframes_facade::Error) -> Self {
        facade_error(e, false)
    }
}

impl From<CreateError> for Error {
    fn from(e: CreateError) -> Self {
        let code = match &e {
            CreateError::Dir(_) => CUFRAMES_ERR_BAD_KEY,
            CreateError::SlotCount(_)
            | CreateError::Stream(_)
            | CreateError::Packets(_)
            | CreateError::Extradata(_) => CUFRAMES_ERR_INVALID_ARG,
            CreateError::AlreadyRunning(_) => CUFRAMES_ERR_ALREADY_EXISTS,
            CreateError::Bind { .. } | CreateError::Shm(_) => CUFRAMES_ERR_IO,
            CreateError::Backend(f) => backend_code(f),
        };
        Error::new(code, chain(&e))
    }
}

impl From<PacketError> for Error {
    fn from(e: PacketError) -> Self {
        let code = match &e {
            PacketError::NoRing => CUFRAMES_ERR_NO_PACKET_RING,
            PacketError::Publish(_) => CUFRAMES_ERR_PACKET_OVERSIZED,
            PacketError::Extradata(_) => CUFRAMES_ERR_INVALID_ARG,
        };
        Error::new(code, chain(&e))
    }
}

impl From<CudaError> for Error {
    fn from(e: CudaError) -> Self {
        Error::new(cuda_code(&e), chain(&e))
    }
}

thread_local! {
    static LAST: RefCell<CString> = RefCell::new(CString::default());
}

/// Stores `e`'s message as this thread's last error.
pub fn set_last(e: &Error) {
    // Interior NULs cannot be represented; they become spaces.
    let msg = CString::new(e.message.replace('\0', " ")).unwrap_or_default();
    LAST.with(|l| *l.borrow_mut() = msg);
}

/// A pointer to this thread's last error message (valid until the next
/// failing call on this thread).
pub fn last_ptr() -> *const std::ffi::c_char {
    LAST.with(|l| l.borrow().as_ptr())
}

/// docs/c-api.md's result-code table is the code's: every code with its
/// value, nothing else; and each code has its own `cuframes_strerror` text.
/// (A unit test: the crate builds no rlib, whose name would collide with
/// the `cuframes` facade's.)
#[cfg(test)]
mod doc_table {
    use super::cuframes_error;
    use std::collections::BTreeMap;

    #[test]
    fn the_result_code_table_lists_every_code_with_its_value() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/c-api.md"))
                .expect("docs/c-api.md");
        let table: BTreeMap<String, i32> = doc
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cols.get(1)?.strip_prefix("`CUFRAMES_")?.strip_suffix('`')?;
                Some((format!("CUFRAMES_{name}"), cols.get(2)?.parse().ok()?))
            })
            .collect();
        let code: BTreeMap<String, i32> = cuframes_error::ALL
            .iter()
            .map(|c| (format!("{c:?}"), *c as i32))
            .collect();
        assert_eq!(
            table, code,
            "docs/c-api.md's result codes differ from the enum"
        );
    }

    #[test]
    fn every_code_has_its_own_text_and_round_trips() {
        let mut texts = std::collections::BTreeSet::new();
        for c in cuframes_error::ALL {
            assert_eq!(cuframes_error::from_code(c as i32), Some(c));
            assert!(texts.insert(c.text()), "{c:?} shares its text");
        }
        assert_eq!(cuframes_error::from_code(-23), None);
    }
}
