//! A subscriber's mapping of the encoded packet ring (`docs/protocol.md`
//! §9) and the types [`Subscriber::next_packet`] hands out.

use super::error::{ConnectError, RecvError};
use crate::packet::{
    CodecInfoError, PacketCursor, PacketMeta, PacketRead, PacketReadError, PacketReader,
};
use crate::runtime::futex;
use crate::runtime::shm::{self, Access, Mapping, ShmError};
use rustix::fd::{AsFd, OwnedFd};
use std::cell::Cell;
use std::prelude::rust_2021::*;
use std::time::{Duration, Instant};
#[cfg(doc)]
use {super::engine::Subscriber, super::options::SubscribeOptions};

/// How often a waiting reader polls a layout-2 ring (the reference layout
/// has no futex word).
const POLL: Duration = Duration::from_millis(1);

/// How long a waiting reader spins on the `wake` word (with `spin_loop`
/// hints) before it sleeps on it, and how many spins between clock reads.
const SPIN: Duration = Duration::from_micros(20);
const SPINS_PER_CLOCK: u32 = 32;

/// Longest futex sleep: between sleeps the socket is serviced, so a
/// publisher that died (socket EOF, no shutdown flag) is noticed.
pub(super) const SLICE: Duration = Duration::from_millis(10);

/// How often a polling reader (short timeouts) reads its control socket
/// while the ring stays open and empty; a closed ring is seen without it.
pub(super) const SOCKET_POLL_EVERY: Duration = Duration::from_millis(1);

/// One packet copied out of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// One access unit, Annex B (start codes), as the publisher demuxed it.
    pub data: Vec<u8>,
    /// Sequence number, timestamps (ns), flags, and what this reader lost
    /// before it (`skipped`, `discontinuity`).
    pub meta: PacketMeta,
}
/// The stream's codec description from the packet ring header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecParams {
    /// FFmpeg `AVCodecID` (27: H.264, 173: HEVC).
    pub codec_id: u32,
    /// Annex B parameter sets: SPS+PPS, or VPS+SPS+PPS for HEVC (≤ 4096 bytes;
    /// empty if the publisher set none).
    pub extradata: Vec<u8>,
}

/// Packet subscriber counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Packets handed out.
    pub received: u64,
    /// Bytes handed out.
    pub bytes: u64,
    /// Packets lost to overruns.
    pub lost: u64,
    /// Delivered packets marked as a discontinuity (overrun or publisher flag).
    pub discontinuities: u64,
}

/// Receiving a packet failed.
#[derive(Debug, thiserror::Error)]
pub enum PacketRecvError {
    /// The subscriber did not ask for packets ([`SubscribeOptions::packets`]).
    #[error("this subscriber did not subscribe to packets")]
    NotSubscribed,
    /// No new packet within the timeout.
    #[error("no packet within {0:?}")]
    Timeout(Duration),
    /// The publisher is gone (socket closed, GOODBYE, or `shutdown_flag`) and
    /// every packet still readable has been delivered.
    #[error("publisher disconnected")]
    Disconnected,
    /// The publisher wrote an impossible slot; it was skipped (the next
    /// packet comes after a keyframe resync).
    #[error(transparent)]
    Corrupt(PacketReadError),
    /// The codec description in the header is unusable.
    #[error("codec parameters: {0}")]
    Codec(#[from] CodecInfoError),
    /// The control connection failed (protocol error).
    #[error(transparent)]
    Control(#[from] RecvError),
}

/// A subscriber's mapping of the packet ring and its cursor.
pub(crate) struct PacketState {
    map: Mapping,
    _fd: OwnedFd,
    cursor: Cell<PacketCursor>,
    pub(crate) stats: Cell<PacketStats>,
    /// The next packet is flagged a discontinuity (first after a reconnect).
    pub(crate) gap: Cell<bool>,
    /// When the control socket was last read while waiting.
    pub(super) socket_read_at: Cell<Instant>,
}

impl PacketState {
    /// Checks the received fd (exact size, seals), maps it read-only and
    /// validates its header (§9.6).
    pub fn open(fd: OwnedFd, size: u64) -> Result<Self, ConnectError> {
        shm::check_received(fd.as_fd(), size)?;
        let len = usize::try_from(size).map_err(|_| ShmError::Size {
            actual: size,
            expected: size,
        })?;
        let map = Mapping::map(fd.as_fd(), len, Access::ReadOnly)?;
        PacketReader::open(map.words())?;
        Ok(PacketState {
            map,
            _fd: fd,
            cursor: Cell::new(PacketCursor::joining()),
            stats: Cell::new(PacketStats::default()),
            gap: Cell::new(false),
            socket_read_at: Cell::new(Instant::now()),
        })
    }

    pub(super) fn reader(&self) -> Option<PacketReader<'_>> {
        PacketReader::open(self.map.words()).ok()
    }

    /// The `wake` futex word's value (layout 3), loaded before a read.
    pub(super) fn wake_value(&self) -> Option<u32> {
        self.reader()?.wake_value()
    }

    /// One read attempt by `read`; `gone`: the publisher was known gone
    /// before it.
    pub(super) fn read_one(&self, gone: bool, read: &mut ReadFn<'_>) -> Step {
        let Some(reader) = self.reader() else {
            return Step::Empty { finished: true };
        };
        let finished = gone || reader.is_closed();
        let mut cursor = self.cursor.get();
        let got = read(&reader, &mut cursor);
        self.cursor.set(cursor);
        match got {
            Ok(PacketRead::Packet(mut meta)) => {
                if self.gap.replace(false) {
                    meta.discontinuity = true;
                }
                let mut s = self.stats.get();
                s.received += 1;
                s.bytes += meta.len as u64;
                s.lost += meta.skipped;
                s.discontinuities += u64::from(meta.discontinuity);
                self.stats.set(s);
                Step::Packet(meta)
            }
            Ok(PacketRead::Empty) => Step::Empty { finished },
            Err(e) => Step::Corrupt(e),
        }
    }

    /// Waits for the ring to change, at most until `until`: layout 3 spins
    /// up to [`SPIN`] while `wake` still holds `seen`, then sleeps on it
    /// (FUTEX_WAIT with `seen`, so a packet published since `seen` was
    /// loaded ends the wait at once); layout 2 (`seen` `None`) sleeps
    /// [`POLL`].
    pub(super) fn wait(&self, seen: Option<u32>, until: Instant) {
        let now = Instant::now();
        let Some(seen) = seen else {
            std::thread::sleep(until.saturating_duration_since(now).min(POLL));
            return;
        };
        let Some(reader) = self.reader() else {
            return;
        };
        let spin_end = until.min(now + SPIN);
        let mut n = 0u32;
        while reader.wake_value() == Some(seen) {
            std::hint::spin_loop();
            n += 1;
            if n % SPINS_PER_CLOCK == 0 && Instant::now() >= spin_end {
                let word = reader
                    .geometry()
                    .wake_offset()
                    .and_then(|o| usize::try_from(o).ok())
                    .and_then(|o| self.map.u32_at(o));
                let left = until.saturating_duration_since(Instant::now());
                match word {
                    Some(word) if !left.is_zero() => futex::wait(word, seen, left.min(SLICE)),
                    _ => {}
                }
                return;
            }
        }
    }
}

/// Outcome of one [`PacketState::read_one`].
/// How one attempt reads a packet from the ring: [`PacketReader::read_into`]
/// a buffer, or [`PacketReader::read_view`] in place.
pub(super) type ReadFn<'a> =
    dyn FnMut(&PacketReader<'_>, &mut PacketCursor) -> Result<PacketRead, PacketReadError> + 'a;

pub(super) enum Step {
    Packet(PacketMeta),
    Empty { finished: bool },
    Corrupt(PacketReadError),
}
