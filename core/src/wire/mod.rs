//! Control-plane messages (`docs/protocol.md` §4).
//!
//! Every message is `type: u32 LE, length: u32 LE, payload[length]`.
//! [`decode`] parses one message from the front of a buffer without copying;
//! [`Message::emit`] writes one into a caller buffer. Neither allocates.
//! Unknown types decode as [`Message::Unknown`] so a reader can skip them.

mod codes;
mod message;

pub use codes::{ErrorCode, GoodbyeReason, MessageType};
pub use message::{
    decode, Decoded, ErrorMsg, Hello, Message, Name, Welcome, WireError, HEADER_LEN,
    HELLO_WANTS_FRAMES, HELLO_WANTS_PACKETS, MAX_ERROR_TEXT, MAX_HANDLE_LEN, MAX_NAME_LEN,
    MAX_PAYLOAD, WELCOME_HAS_PACKETS,
};
