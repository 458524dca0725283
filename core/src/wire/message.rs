//! Message payloads, their decoder and encoder (`docs/protocol.md` §4.3).

use super::{ErrorCode, GoodbyeReason, MessageType};
use crate::version::Version;
use crate::{DeliveryMode, MemoryKind, SyncKind};

/// Bytes of the TLV header.
pub const HEADER_LEN: usize = 8;
/// Largest payload a reader accepts, bytes.
pub const MAX_PAYLOAD: usize = 16384;
/// Longest consumer name in HELLO, bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;
/// Longest ERROR text, bytes of UTF-8.
pub const MAX_ERROR_TEXT: usize = 1024;
/// Largest per-slot handle in WELCOME, bytes: a 64-byte `CUipcMemHandle`
/// followed by a 64-byte `CUipcEventHandle` (`CudaLegacyIpc` + `IpcEvent`).
pub const MAX_HANDLE_LEN: usize = 128;

/// HELLO flag: the subscriber wants decoded frames (sends a lease-row fd).
pub const HELLO_WANTS_FRAMES: u32 = 1;
/// HELLO flag: the subscriber wants the encoded packet ring.
pub const HELLO_WANTS_PACKETS: u32 = 2;
/// WELCOME flag: a packet ring fd follows the frame fds, and
/// `packet_region_size` follows the handles (`docs/protocol.md` §9.6).
pub const WELCOME_HAS_PACKETS: u32 = 1;

const HELLO_FIXED: usize = 36;
const WELCOME_FIXED: usize = 56;
/// Bytes after the handles when [`WELCOME_HAS_PACKETS`] is set.
const WELCOME_PACKETS_TAIL: usize = 8;
const ERROR_FIXED: usize = 8;

/// Why bytes are not a valid message, or a message does not fit a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length field exceeds [`MAX_PAYLOAD`]: the stream cannot be trusted further.
    #[error("message length {0} exceeds the 16384-byte limit")]
    TooLong(u32),
    /// A payload is shorter than its type requires.
    #[error("{kind:?} payload of {len} bytes is shorter than the {need} it needs")]
    Short {
        /// Message type.
        kind: MessageType,
        /// Payload length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The consumer name is too long or not UTF-8.
    #[error("consumer name is longer than 64 bytes or not UTF-8")]
    BadName,
    /// The ERROR text is too long or not UTF-8.
    #[error("error text is longer than 1024 bytes or not UTF-8")]
    BadText,
    /// WELCOME's handle size or count is out of range.
    #[error("WELCOME declares {count} handles of {len} bytes; at most 64 of at most 128 bytes")]
    BadHandles {
        /// Declared handle size.
        len: u32,
        /// Declared slot count.
        count: u32,
    },

    /// The output buffer is too small.
    #[error("buffer of {have} bytes cannot hold a {need}-byte message")]
    BufferTooSmall {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// A consumer name: at most 64 bytes of UTF-8, stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; MAX_NAME_LEN],
    len: u8,
}

impl Name {
    /// `s` if it fits, else [`WireError::BadName`].
    pub fn new(s: &str) -> Result<Self, WireError> {
        if s.len() > MAX_NAME_LEN {
            return Err(WireError::BadName);
        }
        let mut bytes = [0u8; MAX_NAME_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Name {
            bytes,
            len: s.len() as u8,
        })
    }

    /// `s` cut at a char boundary to fit 64 bytes.
    pub fn truncated(s: &str) -> Self {
        let mut end = s.len().min(MAX_NAME_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        // Cannot fail: `end` ≤ 64 on a char boundary.
        Name::new(&s[..end]).unwrap_or(Name {
            bytes: [0; MAX_NAME_LEN],
            len: 0,
        })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Construction guarantees UTF-8; fall back to "" rather than panic.
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// HELLO payload (36 bytes + name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Lowest version the subscriber speaks.
    pub version_min: Version,
    /// Highest version the subscriber speaks.
    pub version_max: Version,
    /// [`HELLO_WANTS_FRAMES`] | [`HELLO_WANTS_PACKETS`].
    pub flags: u32,
    /// Delivery mode for frames.
    pub mode: DeliveryMode,
    /// Preferred GPU (all zero: any).
    pub gpu_uuid: [u8; 16],
    /// Consumer name, for logs and stats.
    pub name: Name,
}

/// WELCOME payload (56 bytes + `handle_len * slot_count`, + 8 with
/// [`WELCOME_HAS_PACKETS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// Version chosen by the publisher.
    pub version: Version,
    /// Publisher-assigned id of this subscriber.
    pub subscriber_id: u32,
    /// Memory kind of the slots.
    pub memory_kind: MemoryKind,
    /// Sync kind.
    pub sync_kind: SyncKind,
    /// Number of slots (and of per-slot handles / fds).
    pub slot_count: u32,
    /// [`WELCOME_HAS_PACKETS`].
    pub flags: u32,
    /// Bytes of the control region fd.
    pub control_size: u64,
    /// Bytes of each slot allocation.
    pub slot_size: u64,
    /// Frames up to this sequence number were published before the subscriber joined.
    pub start_seq: u64,
    /// Bytes of each per-slot handle (0 when handles are fds).
    pub handle_len: u32,
    /// `slot_count` handles of `handle_len` bytes.
    pub handles: &'a [u8],
    /// Bytes of the packet ring memfd; on the wire only (after the handles)
    /// when `flags` has [`WELCOME_HAS_PACKETS`], else 0.
    pub packet_region_size: u64,
}

/// ERROR payload (8 bytes + text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorMsg<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// Human-readable detail, UTF-8.
    pub text: &'a str,
}

/// One control-plane message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// HELLO.
    Hello(Hello),
    /// WELCOME.
    Welcome(Welcome<'a>),
    /// ERROR.
    Error(ErrorMsg<'a>),
    /// PING with a nonce.
    Ping(u64),
    /// PONG echoing the nonce.
    Pong(u64),
    /// GOODBYE.
    Goodbye(GoodbyeReason),
    /// STREAM_CHANGED with the new generation.
    StreamChanged(u64),
    /// RELEASE of a frame's sequence number.
    Release(u64),
    /// A type this implementation does not know.
    Unknown {
        /// Its type code.
        kind: u32,
        /// Its payload.
        payload: &'a [u8],
    },
}

/// One message decoded from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The message.
    pub message: Message<'a>,
    /// Bytes it took (header + payload).
    pub len: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Decodes the message at the front of `buf`.
///
/// `Ok(None)`: `buf` holds only part of a message; read more. Payloads longer
/// than their type needs are accepted and the tail ignored (room for minor
/// versions). Never panics on any input.
pub fn decode(buf: &[u8]) -> Result<Option<Decoded<'_>>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind = u32_at(buf, 0);
    let len = u32_at(buf, 4);
    if len as usize > MAX_PAYLOAD {
        return Err(WireError::TooLong(len));
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let p = &buf[HEADER_LEN..total];
    let message = Message::parse(MessageType::from_code(kind), p)?;
    Ok(Some(Decoded {
        message,
        len: total,
    }))
}

fn need(kind: MessageType, p: &[u8], n: usize) -> Result<(), WireError> {
    if p.len() < n {
        Err(WireError::Short {
            kind,
            len: p.len(),
            need: n,
        })
    } else {
        Ok(())
    }
}

impl<'a> Message<'a> {
    /// Its type.
    pub fn kind(&self) -> MessageType {
        match self {
            Message::Hello(_) => MessageType::Hello,
            Message::Welcome(_) => MessageType::Welcome,
            Message::Error(_) => MessageType::Error,
            Message::Ping(_) => MessageType::Ping,
            Message::Pong(_) => MessageType::Pong,
            Message::Goodbye(_) => MessageType::Goodbye,
            Message::StreamChanged(_) => MessageType::StreamChanged,
            Message::Release(_) => MessageType::Release,
            Message::Unknown { kind, .. } => MessageType::Unknown(*kind),
        }
    }

    /// Parses a payload of type `kind`.
    pub fn parse(kind: MessageType, p: &'a [u8]) -> Result<Self, WireError> {
        Ok(match kind {
            MessageType::Hello => {
                need(kind, p, HELLO_FIXED)?;
                let name_len = u16_at(p, 32) as usize;

                if name_len > MAX_NAME_LEN {
                    return Err(WireError::BadName);
                }
                need(kind, p, HELLO_FIXED + name_len)?;
                let name = core::str::from_utf8(&p[HELLO_FIXED..HELLO_FIXED + name_len])
                    .map_err(|_| WireError::BadName)?;
                let mut gpu_uuid = [0u8; 16];
                gpu_uuid.copy_from_slice(&p[16..32]);
                Message::Hello(Hello {
                    version_min: Version::from_wire(u32_at(p, 0)),
                    version_max: Version::from_wire(u32_at(p, 4)),
                    flags: u32_at(p, 8),
                    mode: DeliveryMode::from_code(u32_at(p, 12)),
                    gpu_uuid,
                    name: Name::new(name)?,
                })
            }
            MessageType::Welcome => {
                need(kind, p, WELCOME_FIXED)?;
                let slot_count = u32_at(p, 16);
                let handle_len = u32_at(p, 48);

                if handle_len as usize > MAX_HANDLE_LEN || slot_count > crate::layout::MAX_SLOTS {
                    return Err(WireError::BadHandles {
                        len: handle_len,
                        count: slot_count,
                    });
                }
                let hl = handle_len as usize * slot_count as usize;
                let flags = u32_at(p, 20);
                let tail = if flags & WELCOME_HAS_PACKETS != 0 {
                    WELCOME_PACKETS_TAIL
                } else {
                    0
                };
                need(kind, p, WELCOME_FIXED + hl + tail)?;
                Message::Welcome(Welcome {
                    version: Version::from_wire(u32_at(p, 0)),
                    subscriber_id: u32_at(p, 4),
                    memory_kind: MemoryKind::from_code(u32_at(p, 8)),
                    sync_kind: SyncKind::from_code(u32_at(p, 12)),
                    slot_count,
                    flags,
                    control_size: u64_at(p, 24),
                    slot_size: u64_at(p, 32),
                    start_seq: u64_at(p, 40),
                    handle_len,
                    handles: &p[WELCOME_FIXED..WELCOME_FIXED + hl],
                    packet_region_size: if tail > 0 {
                        u64_at(p, WELCOME_FIXED + hl)
                    } else {
                        0
                    },
                })
            }
            MessageType::Error => {
                need(kind, p, ERROR_FIXED)?;
                let text_len = u32_at(p, 4) as usize;
                if text_len > MAX_ERROR_TEXT {
                    return Err(WireError::BadText);
                }
                need(kind, p, ERROR_FIXED + text_len)?;
                let text = core::str::from_utf8(&p[ERROR_FIXED..ERROR_FIXED + text_len])
                    .map_err(|_| WireError::BadText)?;
                Message::Error(ErrorMsg {
                    code: ErrorCode::from_code(u32_at(p, 0)),
                    text,
                })
            }
            MessageType::Ping => {
                need(kind, p, 8)?;
                Message::Ping(u64_at(p, 0))
            }
            MessageType::Pong => {
                need(kind, p, 8)?;
                Message::Pong(u64_at(p, 0))
            }
            MessageType::Goodbye => {
                need(kind, p, 8)?;

                Message::Goodbye(GoodbyeReason::from_code(u32_at(p, 0)))
            }
            MessageType::StreamChanged => {
                need(kind, p, 8)?;
                Message::StreamChanged(u64_at(p, 0))
            }
            MessageType::Release => {
                need(kind, p, 8)?;
                Message::Release(u64_at(p, 0))
            }
            MessageType::Unknown(kind) => Message::Unknown { kind, payload: p },
        })
    }

    /// Payload bytes [`Message::emit`] writes.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Hello(h) => HELLO_FIXED + h.name.as_str().len(),
            Message::Welcome(w) => {
                let tail = if w.flags & WELCOME_HAS_PACKETS != 0 {
                    WELCOME_PACKETS_TAIL
                } else {
                    0
                };
                WELCOME_FIXED + w.handles.len() + tail
            }
            Message::Error(e) => ERROR_FIXED + e.text.len(),
            Message::Ping(_)
            | Message::Pong(_)
            | Message::Goodbye(_)
            | Message::StreamChanged(_)
            | Message::Release(_) => 8,
            Message::Unknown { payload, .. } => payload.len(),
        }
    }

    /// Bytes of the whole encoded message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Encodes the message into the front of `buf`; returns the bytes written.
    ///
    /// Errors: [`WireError::BufferTooSmall`]; the limits a decoder enforces
    /// ([`WireError::TooLong`], [`WireError::BadText`], [`WireError::BadHandles`]),
    /// so nothing emitted here is rejected by [`decode`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let total = self.buffer_len();
        if self.payload_len() > MAX_PAYLOAD {
            return Err(WireError::TooLong(self.payload_len() as u32));
        }
        if buf.len() < total {
            return Err(WireError::BufferTooSmall {
                have: buf.len(),
                need: total,
            });
        }
        let out = &mut buf[..total];
        out.fill(0);
        out[0..4].copy_from_slice(&self.kind().code().to_le_bytes());
        out[4..8].copy_from_slice(&(self.payload_len() as u32).to_le_bytes());
        let p = &mut out[HEADER_LEN..];
        let put32 =
            |p: &mut [u8], at: usize, v: u32| p[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |p: &mut [u8], at: usize, v: u64| p[at..at + 8].copy_from_slice(&v.to_le_bytes());
        match self {
            Message::Hello(h) => {
                put32(p, 0, h.version_min.to_wire());
                put32(p, 4, h.version_max.to_wire());
                put32(p, 8, h.flags);
                put32(p, 12, h.mode.code());
                p[16..32].copy_from_slice(&h.gpu_uuid);
                let name = h.name.as_str().as_bytes();
                p[32..34].copy_from_slice(&(name.len() as u16).to_le_bytes());
                p[HELLO_FIXED..].copy_from_slice(name);
            }
            Message::Welcome(w) => {
                if w.handle_len as usize > MAX_HANDLE_LEN
                    || w.slot_count > crate::layout::MAX_SLOTS
                    || w.handles.len() != w.handle_len as usize * w.slot_count as usize
                {
                    return Err(WireError::BadHandles {
                        len: w.handle_len,
                        count: w.slot_count,
                    });
                }
                put32(p, 0, w.version.to_wire());
                put32(p, 4, w.subscriber_id);
                put32(p, 8, w.memory_kind.code());
                put32(p, 12, w.sync_kind.code());
                put32(p, 16, w.slot_count);
                put32(p, 20, w.flags);
                put64(p, 24, w.control_size);
                put64(p, 32, w.slot_size);
                put64(p, 40, w.start_seq);
                put32(p, 48, w.handle_len);
                let hl = w.handles.len();
                p[WELCOME_FIXED..WELCOME_FIXED + hl].copy_from_slice(w.handles);
                if w.flags & WELCOME_HAS_PACKETS != 0 {
                    put64(p, WELCOME_FIXED + hl, w.packet_region_size);
                }
            }
            Message::Error(e) => {
                if e.text.len() > MAX_ERROR_TEXT {
                    return Err(WireError::BadText);
                }
                put32(p, 0, e.code.code());
                put32(p, 4, e.text.len() as u32);
                p[ERROR_FIXED..].copy_from_slice(e.text.as_bytes());
            }
            Message::Ping(v)
            | Message::Pong(v)
            | Message::StreamChanged(v)
            | Message::Release(v) => put64(p, 0, *v),
            Message::Goodbye(r) => put32(p, 0, r.code()),
            Message::Unknown { payload, .. } => p.copy_from_slice(payload),
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::PROTOCOL_VERSION;

    fn round_trip(m: Message<'_>) {
        let mut buf = [0u8; 512];
        let n = m.emit(&mut buf).unwrap();
        assert_eq!(n, m.buffer_len());
        let d = decode(&buf[..n]).unwrap().unwrap();
        assert_eq!(d.len, n);
        assert_eq!(d.message, m);
        for cut in 0..n {
            assert_eq!(decode(&buf[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Message::Hello(Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            flags: HELLO_WANTS_FRAMES,
            mode: DeliveryMode::InOrder,
            gpu_uuid: [7; 16],
            name: Name::new("recorder-1").unwrap(),
        }));
        round_trip(Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            subscriber_id: 3,
            memory_kind: MemoryKind::CudaLegacyIpc,
            sync_kind: SyncKind::IpcEvent,
            slot_count: 2,
            flags: 0,
            control_size: 4096,
            slot_size: 1 << 20,
            start_seq: 42,
            handle_len: 4,
            handles: &[1, 2, 3, 4, 5, 6, 7, 8],
            packet_region_size: 0,
        }));
        round_trip(Message::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            subscriber_id: 4,
            memory_kind: MemoryKind::HostMemfd,
            sync_kind: SyncKind::HostFence,
            slot_count: 2,
            flags: WELCOME_HAS_PACKETS,
            control_size: 4096,
            slot_size: 1 << 20,
            start_seq: 0,
            handle_len: 0,
            handles: &[],
            packet_region_size: 0x1040 + 64 * 64 + (8 << 20),
        }));
        round_trip(Message::Error(ErrorMsg {
            code: ErrorCode::VersionMismatch,
            text: "publisher speaks 1.0",
        }));
        round_trip(Message::Ping(u64::MAX));
        round_trip(Message::Pong(1));
        round_trip(Message::Goodbye(GoodbyeReason::EndOfStream));
        round_trip(Message::StreamChanged(2));
        round_trip(Message::Release(99));
        round_trip(Message::Unknown {
            kind: 0x1234,
            payload: b"future",
        });
    }

    #[test]
    fn hello_golden_bytes() {
        let m = Message::Hello(Hello {
            version_min: PROTOCOL_VERSION,
            version_max: PROTOCOL_VERSION,
            flags: HELLO_WANTS_FRAMES,
            mode: DeliveryMode::NewestOnly,
            gpu_uuid: [0; 16],
            name: Name::new("ab").unwrap(),
        });
        let mut buf = [0u8; 64];
        let n = m.emit(&mut buf).unwrap();
        let mut want = [0u8; 46];
        want[..8].copy_from_slice(&[1, 0, 0, 0, 38, 0, 0, 0]);
        want[8..12].copy_from_slice(&[0, 0, 1, 0]);
        want[12..16].copy_from_slice(&[0, 0, 1, 0]);
        want[16] = 1;
        want[20] = 1;
        want[40] = 2;
        want[44..46].copy_from_slice(b"ab");
        assert_eq!(&buf[..n], &want[..]);
    }

    #[test]
    fn malformed_input_is_rejected() {
        let mut b = [0u8; 16];
        b[0] = 1;
        b[4..8].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(
            decode(&b),
            Err(WireError::Short {
                kind: MessageType::Hello,
                ..
            })
        ));
        b[0] = 4;
        b[4..8].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        assert_eq!(decode(&b), Err(WireError::TooLong(MAX_PAYLOAD as u32 + 1)));
        // ERROR whose text is not UTF-8.
        let mut e = [0u8; 18];
        e[0] = 3;
        e[4] = 10;
        e[12] = 2;
        e[16] = 0xff;
        e[17] = 0xfe;
        assert_eq!(decode(&e), Err(WireError::BadText));
        // Reserved fields are ignored on read (zero on write).
        let mut g = [0u8; 16];
        g[0] = 6;
        g[4] = 8;
        g[12] = 1;
        assert_eq!(
            decode(&g).unwrap().unwrap().message,
            Message::Goodbye(GoodbyeReason::Normal)
        );
    }

    #[test]
    fn welcome_with_packets_carries_the_region_size_after_the_handles() {
        let w = Welcome {
            version: PROTOCOL_VERSION,
            subscriber_id: 1,
            memory_kind: MemoryKind::HostMemfd,
            sync_kind: SyncKind::HostFence,
            slot_count: 8,
            flags: WELCOME_HAS_PACKETS,
            control_size: 4096,
            slot_size: 1382400,
            start_seq: 0,
            handle_len: 0,
            handles: &[],
            packet_region_size: 0x1234_5678,
        };
        let mut buf = [0u8; 128];
        let n = Message::Welcome(w).emit(&mut buf).unwrap();
        assert_eq!(n, 8 + 56 + 8);
        assert_eq!(&buf[4..8], &64u32.to_le_bytes());
        assert_eq!(&buf[64..72], &0x1234_5678u64.to_le_bytes());
        // The flag without its tail is a short payload.
        buf[4] = 56;
        assert!(matches!(
            decode(&buf[..64]),
            Err(WireError::Short {
                kind: MessageType::Welcome,
                need: 64,
                ..
            })
        ));
    }

    #[test]
    fn longer_payloads_keep_their_tail_for_minor_versions() {
        let mut b = [0u8; 24];
        b[0] = 4;
        b[4] = 16;
        b[8] = 9;
        let d = decode(&b).unwrap().unwrap();
        assert_eq!(d.message, Message::Ping(9));
        assert_eq!(d.len, 24);
    }
}
