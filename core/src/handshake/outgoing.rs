//! Messages the state machines queue for sending.

use crate::wire::{ErrorCode, ErrorMsg, Message};

/// Inline UTF-8 text of at most 256 bytes, written with `core::fmt::Write`
/// (longer text is cut at a char boundary).
#[derive(Clone, Copy)]
pub struct TextBuf {
    bytes: [u8; 256],
    len: usize,
}

impl TextBuf {
    /// Empty text.
    pub const fn new() -> Self {
        TextBuf {
            bytes: [0; 256],
            len: 0,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl Default for TextBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for TextBuf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.bytes.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// A message waiting to be sent.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing {
    /// A message with no borrowed payload.
    Plain(Message<'static>),
    /// An ERROR with its text inline.
    Error {
        /// Code.
        code: ErrorCode,
        /// Text.
        text: TextBuf,
    },
}

impl Outgoing {
    /// The message to encode.
    pub fn message(&self) -> Message<'_> {
        match self {
            Outgoing::Plain(m) => *m,
            Outgoing::Error { code, text } => Message::Error(ErrorMsg {
                code: *code,
                text: text.as_str(),
            }),
        }
    }
}

/// A tiny FIFO of outgoing messages (the machines never queue more than a few).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Queue {
    items: [Option<Outgoing>; 4],
}

impl Queue {
    /// Appends; if full, the oldest is dropped (only PONGs can pile up).
    pub(crate) fn push(&mut self, o: Outgoing) {
        if self.items.iter().all(Option::is_some) {
            self.items.rotate_left(1);
            self.items[3] = None;
        }
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(o);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Outgoing> {
        let first = self.items[0].take();
        self.items.rotate_left(1);
        first
    }
}
