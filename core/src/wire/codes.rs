//! Numeric codes of the control plane.

/// Message type codes (`docs/protocol.md` §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Subscriber → publisher: first message.
    Hello,
    /// Publisher → subscriber: accepted, with the ring's handles.
    Welcome,
    /// Either way: a refusal or a fatal problem.
    Error,
    /// Either way: liveness probe.
    Ping,
    /// Answer to PING.
    Pong,
    /// Either way: orderly close.
    Goodbye,
    /// Publisher → subscriber: the stream description changed.
    StreamChanged,
    /// Subscriber → publisher: an asynchronous release completed.
    Release,
    /// A type this implementation does not know (skipped).
    Unknown(u32),
}

impl MessageType {
    /// Wire code.
    pub const fn code(self) -> u32 {
        match self {
            MessageType::Hello => 1,
            MessageType::Welcome => 2,
            MessageType::Error => 3,
            MessageType::Ping => 4,
            MessageType::Pong => 5,
            MessageType::Goodbye => 6,
            MessageType::StreamChanged => 7,
            MessageType::Release => 8,
            MessageType::Unknown(c) => c,
        }
    }

    /// Type of a wire code; never fails.
    pub const fn from_code(c: u32) -> Self {
        match c {
            1 => MessageType::Hello,
            2 => MessageType::Welcome,
            3 => MessageType::Error,
            4 => MessageType::Ping,
            5 => MessageType::Pong,
            6 => MessageType::Goodbye,
            7 => MessageType::StreamChanged,
            8 => MessageType::Release,
            c => MessageType::Unknown(c),
        }
    }
}

/// ERROR codes (`docs/protocol.md` §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No common protocol version; the text names both.
    VersionMismatch,
    /// A message was malformed or out of order.
    BadMessage,
    /// A requested mode, kind or feature is not offered.
    Unsupported,
    /// The peer's credentials are not allowed.
    AccessDenied,
    /// The publisher serves its maximum number of subscribers.
    TooManySubscribers,
    /// The publisher failed internally (e.g. could not map the lease row).
    Internal,
    /// The publisher is shutting down.
    ShuttingDown,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl ErrorCode {
    /// Wire code.
    pub const fn code(self) -> u32 {
        match self {
            ErrorCode::VersionMismatch => 1,
            ErrorCode::BadMessage => 2,
            ErrorCode::Unsupported => 3,
            ErrorCode::AccessDenied => 4,
            ErrorCode::TooManySubscribers => 5,
            ErrorCode::Internal => 6,
            ErrorCode::ShuttingDown => 7,
            ErrorCode::Unknown(c) => c,
        }
    }

    /// Code of a wire value; never fails.
    pub const fn from_code(c: u32) -> Self {
        match c {
            1 => ErrorCode::VersionMismatch,
            2 => ErrorCode::BadMessage,
            3 => ErrorCode::Unsupported,
            4 => ErrorCode::AccessDenied,
            5 => ErrorCode::TooManySubscribers,
            6 => ErrorCode::Internal,
            7 => ErrorCode::ShuttingDown,
            c => ErrorCode::Unknown(c),
        }
    }
}

/// GOODBYE reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoodbyeReason {
    /// Normal close.
    Normal,
    /// The publisher reached the end of its input.
    EndOfStream,
    /// The publisher is shutting down (signal, error).
    Shutdown,
    /// A code this implementation does not know.
    Unknown(u32),
}

impl GoodbyeReason {
    /// Wire code.
    pub const fn code(self) -> u32 {
        match self {
            GoodbyeReason::Normal => 0,
            GoodbyeReason::EndOfStream => 1,
            GoodbyeReason::Shutdown => 2,
            GoodbyeReason::Unknown(c) => c,
        }
    }

    /// Reason of a wire value; never fails.
    pub const fn from_code(c: u32) -> Self {
        match c {
            0 => GoodbyeReason::Normal,
            1 => GoodbyeReason::EndOfStream,
            2 => GoodbyeReason::Shutdown,
            c => GoodbyeReason::Unknown(c),
        }
    }
}
