//! The control-plane socket: TLV messages over a Unix stream, file
//! descriptors beside them as SCM_RIGHTS ancillary data.
//!
//! # References
//! - unix(7) `SCM_RIGHTS`, sendmsg(2), recvmsg(2) `MSG_CMSG_CLOEXEC`

use crate::wire::{decode, Message, WireError, HEADER_LEN, MAX_PAYLOAD};
use rustix::event::{PollFd, PollFlags};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::collections::VecDeque;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};

/// Most fds one message may carry (control + 64 slots + packet ring, with room).
pub const MAX_FDS: usize = 72;
/// Longest a send may wait for a peer to drain its socket.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// Most unclaimed fds kept before the peer is treated as hostile.
const MAX_QUEUED_FDS: usize = 256;

/// A control-plane transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer closed the connection (EOF or reset).
    #[error("peer closed the connection")]
    Closed,
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    /// A message needing file descriptors arrived without enough of them.
    #[error("message needs {need} file descriptors, {have} arrived")]
    MissingFds {
        /// Needed.
        need: usize,
        /// Arrived.
        have: usize,
    },
    /// The peer sent more file descriptors than any message uses, or the
    /// kernel truncated the ancillary data.
    #[error("peer sent unexpected or truncated file descriptors")]
    FdFlood,
    /// The peer did not read its socket for [`SEND_TIMEOUT`].
    #[error("peer stopped reading its socket")]
    Stalled,
    /// A socket call failed.
    #[error("socket error: {0}")]
    Io(#[from] Errno),
}

/// One end of a control connection.
#[derive(Debug)]
pub struct Channel {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Received fds, oldest first, each with the stream offset just past the
    /// bytes of the `recvmsg` that brought it (see [`Channel::close_stray_fds`]).
    fds: VecDeque<(OwnedFd, u64)>,
    /// Bytes read from the socket so far.
    read_total: u64,
    /// Bytes returned as messages by [`Channel::recv`] so far.
    consumed_total: u64,
    /// Close every fd on arrival ([`Channel::refuse_fds`]).
    refuse_fds: bool,
}

impl Channel {
    /// Wraps a connected stream.
    pub fn new(stream: UnixStream) -> Self {
        Channel {
            stream,
            buf: Vec::with_capacity(2 * (HEADER_LEN + MAX_PAYLOAD)),
            fds: VecDeque::new(),
            read_total: 0,
            consumed_total: 0,
            refuse_fds: false,
        }
    }

    /// The socket, for poll(2) and SO_PEERCRED.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Sends `msg` with `fds` attached to its first byte.
    pub fn send(&self, msg: &Message<'_>, fds: &[BorrowedFd<'_>]) -> Result<(), ChannelError> {
        let mut bytes = vec![0u8; msg.buffer_len()];
        msg.emit(&mut bytes)?;
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut sent = 0;
        let mut first = true;
        // A peer that never reads must not wedge the sender.
        let deadline = Instant::now() + SEND_TIMEOUT;
        while sent < bytes.len() {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if first && !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(ChannelError::FdFlood);
            }
            match rustix::net::sendmsg(
                &self.stream,
                &[IoSlice::new(&bytes[sent..])],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => {
                    sent += n;
                    first = false;
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) if Instant::now() >= deadline => {
                    return Err(ChannelError::Stalled)
                }
                Err(Errno::AGAIN) => wait_fd(
                    self.stream.as_fd(),
                    PollFlags::OUT,
                    Some(Duration::from_millis(10)),
                )?,
                Err(Errno::PIPE | Errno::CONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Returns the next whole message as its raw bytes (decode them with
    /// [`crate::wire::decode`]), waiting at most `timeout` (`None`: forever;
    /// zero: only what has arrived). `Ok(None)`: nothing complete yet.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, ChannelError> {
        let deadline = timeout.map(crate::runtime::clock::deadline_after);
        loop {
            if let Some(len) = decode(&self.buf)?.map(|d| d.len) {
                let raw = self.buf.drain(..len).collect();
                self.consumed_total += len as u64;
                return Ok(Some(raw));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !readable(self.stream.as_fd(), left)? {
                return Ok(None);
            }
            self.read_some()?;
        }
    }

    fn read_some(&mut self) -> Result<(), ChannelError> {
        let mut chunk = [0u8; 16384];
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let r = loop {
            match rustix::net::recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            ) {
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::CONNRESET) => return Err(ChannelError::Closed),
                other => break other?,
            }
        };
        let end = self.read_total + r.bytes as u64;
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = msg {
                if self.refuse_fds {
                    // Each dropped here: closed at once.
                    fds.for_each(drop);
                    continue;
                }
                self.fds.extend(fds.map(|fd| (fd, end)));
            }
        }
        if r.flags.contains(ReturnFlags::CTRUNC) || self.fds.len() > MAX_QUEUED_FDS {
            return Err(ChannelError::FdFlood);
        }
        if r.bytes == 0 {
            return Err(ChannelError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..r.bytes]);
        self.read_total = end;
        Ok(())
    }

    /// Takes the `n` oldest received fds (those of the message just handled).
    pub fn take_fds(&mut self, n: usize) -> Result<Vec<OwnedFd>, ChannelError> {
        if self.fds.len() < n {
            return Err(ChannelError::MissingFds {
                need: n,
                have: self.fds.len(),
            });
        }
        Ok(self.fds.drain(..n).map(|(fd, _)| fd).collect())
    }

    /// Closes every fd received but not taken.
    pub fn discard_fds(&mut self) {
        self.fds.clear();
    }

    /// Closes every queued fd that can only belong to a message already
    /// returned by [`Channel::recv`] (call it after handling a message that
    /// takes no fds, §4.1). Fds are attached to the first byte of their
    /// message, and Linux ends a `recvmsg` right after the data that carried
    /// fds, so an fd whose `recvmsg` ended at or before the end of the
    /// messages consumed so far arrived with one of them.
    pub fn close_stray_fds(&mut self) {
        let consumed = self.consumed_total;
        self.fds.retain(|&(_, end)| end > consumed);
    }

    /// From now on every fd that arrives is closed at once, and those queued
    /// are closed now (after HELLO or WELCOME, no message carries fds).
    pub fn refuse_fds(&mut self) {
        self.refuse_fds = true;
        self.fds.clear();
    }

    /// Fds received and queued, not taken or closed yet.
    pub fn queued_fds(&self) -> usize {
        self.fds.len()
    }

    /// Whether a whole message (or bytes that will fail to decode) is
    /// already buffered, so [`Channel::recv`] returns without reading.
    pub fn has_buffered(&self) -> bool {
        !matches!(decode(&self.buf), Ok(None))
    }

    /// One non-blocking attempt to send `bytes` (the rest of a message), with
    /// `fds` attached to the first byte sent (pass them only with a
    /// message's first byte). Returns how many bytes the kernel took; 0 when
    /// the socket is full. Never waits.
    pub fn try_send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize, ChannelError> {
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(ChannelError::FdFlood);
        }
        loop {
            match rustix::net::sendmsg(
                &self.stream,
                &[IoSlice::new(bytes)],
                &mut control,
                SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            ) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(0),
                Err(Errno::PIPE | Errno::CONNRESET) => return Err(ChannelError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Waits until `fd` is readable (or hung up). `Ok(false)` on timeout.
pub fn readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Result<bool, ChannelError> {
    poll_one(fd, PollFlags::IN, timeout)
}

fn wait_fd(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    timeout: Option<Duration>,
) -> Result<(), ChannelError> {
    poll_one(fd, flags, timeout).map(|_| ())
}

/// poll(2) on one fd, retried on EINTR; `Ok(false)` on timeout.
fn poll_one(
    fd: BorrowedFd<'_>,
    flags: PollFlags,
    timeout: Option<Duration>,
) -> Result<bool, ChannelError> {
    let mut p = [PollFd::new(&fd, flags)];
    let ts = timeout.map(super::clock::timespec);
    loop {
        match rustix::event::poll(&mut p, ts.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    #[test]
    fn messages_and_fds_cross_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        let a = Channel::new(a);
        let mut b = Channel::new(b);
        let (fd, _map) = crate::runtime::shm::create_shared("x", 4096).unwrap();
        a.send(&Message::Ping(5), &[fd.as_fd()]).unwrap();
        a.send(&Message::Release(6), &[]).unwrap();
        let raw = b.recv(Some(Duration::from_secs(1))).unwrap().unwrap();
        assert_eq!(decode(&raw).unwrap().unwrap().message, Message::Ping(5));
        let got = b.take_fds(1).unwrap();
        crate::runtime::shm::check_received(got[0].as_fd(), 4096).unwrap();
        let raw = b.recv(Some(Duration::from_secs(1))).unwrap().unwrap();
        assert_eq!(decode(&raw).unwrap().unwrap().message, Message::Release(6));
        assert!(matches!(
            b.take_fds(1),
            Err(ChannelError::MissingFds { need: 1, have: 0 })
        ));
        assert_eq!(b.recv(Some(Duration::ZERO)).unwrap(), None);
        drop(a);
        assert!(matches!(
            b.recv(Some(Duration::from_secs(1))),
            Err(ChannelError::Closed)
        ));
    }

    #[test]
    fn oversized_length_is_an_error_not_an_allocation() {
        use std::io::Write;
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut b = Channel::new(b);
        a.write_all(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f]).unwrap();
        assert!(matches!(
            b.recv(Some(Duration::from_secs(1))),
            Err(ChannelError::Wire(WireError::TooLong(_)))
        ));
    }
}
