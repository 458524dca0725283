//! The publisher's half of the packet ring (`docs/protocol.md` §9.4).

use super::layout::{word, PacketGeometry, MAX_EXTRADATA, PACKET_KEY, PACKET_MAGIC, SEQ_NONE};
use super::region::{futex_value, halves, join, Region};
use crate::sync::{fence, AtomicU64, Ordering};

/// Why a packet was not published. The ring is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketPublishError {
    /// Zero-byte packets are not published.
    #[error("empty packet")]
    Empty,
    /// The packet is larger than the limit (the data area, or the
    /// publisher's `max_packet_size`).
    #[error("packet of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Packet bytes.
        len: usize,
        /// Limit, bytes.
        max: usize,
    },
}

/// Why extradata was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("codec extradata of {0} bytes exceeds the 4096-byte header field")]
pub struct ExtradataError(pub usize);

/// What the publisher writes into a packet ring's header at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRingInit {
    /// FFmpeg `AVCodecID` ([`super::AV_CODEC_ID_H264`], [`super::AV_CODEC_ID_HEVC`]).
    pub codec_id: u32,
    /// The publisher's pid (informational).
    pub producer_pid: u64,
}

/// The publisher's view of its packet region, with its position (next
/// sequence number, write cursor, `wake` count) kept locally:
/// [`PacketWriter::publish`] only stores to shared memory, never loads it.
/// Single writer: one `PacketWriter` per region at a time.
pub struct PacketWriter<'a> {
    r: Region<'a>,
    next_seq: u64,
    cursor: u64,
    wake: u32,
}

impl<'a> PacketWriter<'a> {
    /// Wraps `words` (the whole region) and resumes at the position its
    /// header records (`global_seq + 1`, `write_offset`, and `wake` for
    /// layout 3); `None` if `words` is shorter than `geo` needs.
    pub fn new(words: &'a [AtomicU64], geo: PacketGeometry) -> Option<Self> {
        let r = Region::new(words, geo)?;
        let next_seq = match r.load_u64(word::GLOBAL_SEQ, Ordering::Relaxed) {
            SEQ_NONE => 0,
            g => g.wrapping_add(1),
        };
        let cursor = r
            .load_u64(word::WRITE_OFFSET, Ordering::Relaxed)
            .wrapping_add(7)
            & !7;
        let wake = r
            .wake_word()
            .map_or(0, |w| futex_value(w.load(Ordering::Relaxed)));
        Some(PacketWriter {
            r,
            next_seq,
            cursor,
            wake,
        })
    }

    /// Wraps `words` at a known position (`next_seq`, write cursor `cursor`,
    /// a multiple of 8, `wake` count), loading nothing; `None` if `words` is
    /// too short. [`PacketWriter::position`] of a previous writer gives it.
    pub fn at(
        words: &'a [AtomicU64],
        geo: PacketGeometry,
        (next_seq, cursor, wake): (u64, u64, u32),
    ) -> Option<Self> {
        Some(PacketWriter {
            r: Region::new(words, geo)?,
            next_seq,
            cursor: cursor.wrapping_add(7) & !7,
            wake,
        })
    }

    /// `(next_seq, write cursor, wake count)`, for [`PacketWriter::at`].
    pub fn position(&self) -> (u64, u64, u32) {
        (self.next_seq, self.cursor, self.wake)
    }

    /// Byte offset of the `wake` futex word in the region (layout 3; `None`
    /// for layout 2), which the caller FUTEX_WAKEs after
    /// [`PacketWriter::publish`] and [`PacketWriter::close`].
    pub fn wake_offset(&self) -> Option<u64> {
        self.r.geometry().wake_offset()
    }

    /// Adds 1 to `wake` (SeqCst store of the locally kept count: single
    /// writer), after everything it announces.
    fn bump_wake(&mut self) {
        if let Some(w) = self.r.wake_word() {
            self.wake = self.wake.wrapping_add(1);
            w.store(join_ne(self.wake), Ordering::SeqCst);
        }
    }

    /// Writes the header (with the geometry's layout version) and marks every
    /// slot empty: no packet, no keyframe, cursor 0, no extradata, and for
    /// layout 3 a zeroed tail (`wake` 0). Call once, before anyone maps the
    /// region.
    pub fn init(&mut self, init: PacketRingInit) {
        self.next_seq = 0;
        self.cursor = 0;
        self.wake = 0;
        if let Some(w) = self.r.wake_word() {
            w.store(0, Ordering::Relaxed);
        }
        let g = self.r.geometry();
        for s in 0..g.slots() as u64 {
            for w in 0..word::slot::WORDS {
                self.r.slot(s, w).store(0, Ordering::Relaxed);
            }
            self.r
                .slot(s, word::slot::SEQ)
                .store(SEQ_NONE, Ordering::Relaxed);
        }
        let r = &self.r;
        r.header(word::SLOTS_DATA)
            .store(join(g.slots(), g.data_size()), Ordering::Relaxed);
        r.header(word::CODEC)
            .store(join(init.codec_id, 0), Ordering::Relaxed);
        r.store_u64(word::PID, init.producer_pid, Ordering::Relaxed);
        r.store_u64(word::GLOBAL_SEQ, SEQ_NONE, Ordering::Relaxed);
        r.store_u64(word::LAST_KEY, SEQ_NONE, Ordering::Relaxed);
        r.store_u64(word::WRITE_OFFSET, 0, Ordering::Relaxed);
        r.store_u64(word::SHUTDOWN, 0, Ordering::Relaxed);
        r.header(word::MAGIC_VERSION)
            .store(join(PACKET_MAGIC, g.version()), Ordering::SeqCst);
    }

    /// Stores the codec extradata (Annex B parameter sets, opaque to the
    /// ring): bytes first, then `codec_extradata_size` (`Release`). Meant to
    /// be called once, before the first packet; readers that race a second
    /// call retry until they read a consistent copy.
    ///
    /// Errors: [`ExtradataError`] for more than 4096 bytes (nothing is stored).
    pub fn set_extradata(&self, data: &[u8]) -> Result<(), ExtradataError> {
        if data.len() > MAX_EXTRADATA {
            return Err(ExtradataError(data.len()));
        }
        let codec = self.r.header(word::CODEC);
        let (codec_id, _) = halves(codec.load(Ordering::Relaxed));
        // Size 0 first, so a reader never pairs the new bytes with the old size.
        codec.store(join(codec_id, 0), Ordering::Release);
        self.r.write_extradata(data);
        codec.store(join(codec_id, data.len() as u32), Ordering::Release);
        Ok(())
    }

    /// Sequence number the next packet gets (the first is 0).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Publishes one packet and returns its sequence number.
    ///
    /// Every packet starts on an 8-byte boundary of the data area: its bytes
    /// fill whole words, the last one zero-padded, and the next packet's
    /// `data_offset` is `round_up(data_offset + len, 8)`.
    ///
    /// Order (§9.4): slot `seq := SEQ_NONE`; `write_offset := round_up(off +
    /// len, 8)` (the bytes about to be overwritten are claimed *before* they
    /// change); a release fence; the payload (bulk copy); slot metadata
    /// (`Release`); slot `seq` (`Release`); `global_seq`;
    /// `last_keyframe_seq` if [`PACKET_KEY`]; layout 3: `wake += 1`
    /// (SeqCst) — the caller then FUTEX_WAKEs it
    /// ([`PacketWriter::wake_offset`]). The oldest packets are overwritten:
    /// a slow reader detects it and resyncs.
    ///
    /// Errors: [`PacketPublishError::Empty`], or
    /// [`PacketPublishError::Oversized`] beyond `max_len` or the data area.
    pub fn publish(
        &mut self,
        data: &[u8],
        pts_ns: i64,
        dts_ns: i64,
        flags: u32,
        max_len: usize,
    ) -> Result<u64, PacketPublishError> {
        let cap = (self.r.geometry().data_size() as usize).min(max_len);
        if data.is_empty() {
            return Err(PacketPublishError::Empty);
        }
        if data.len() > cap {
            return Err(PacketPublishError::Oversized {
                len: data.len(),
                max: cap,
            });
        }
        let r = &self.r;
        let seq = self.next_seq;
        let off = self.cursor;
        let len = data.len() as u64;
        let end = off.wrapping_add(len.next_multiple_of(8));
        let slot = |w: usize| r.slot(seq, w);
        slot(word::slot::SEQ).store(SEQ_NONE, Ordering::Relaxed);
        r.store_u64(word::WRITE_OFFSET, end, Ordering::Relaxed);
        // The seqlock's release fence: a reader that copies any byte stored
        // below and then issues its acquire fence sees the two claims above
        // (`seq` gone, `write_offset` past its packet) and discards the copy.
        fence(Ordering::Release);
        r.write_payload(off, data);
        slot(word::slot::PTS).store((pts_ns as u64).to_le(), Ordering::Release);
        slot(word::slot::DTS).store((dts_ns as u64).to_le(), Ordering::Release);
        slot(word::slot::OFFSET).store(off.to_le(), Ordering::Release);
        slot(word::slot::SIZE_FLAGS).store(join(len as u32, flags), Ordering::Release);
        slot(word::slot::SEQ).store(seq.to_le(), Ordering::Release);
        r.store_u64(word::GLOBAL_SEQ, seq, Ordering::Release);
        if flags & PACKET_KEY != 0 {
            r.store_u64(word::LAST_KEY, seq, Ordering::Release);
        }
        self.next_seq = seq.wrapping_add(1);
        self.cursor = end;
        self.bump_wake();
        Ok(seq)
    }

    /// Sets `shutdown_flag` (`Release`), then (layout 3) `wake += 1`:
    /// readers deliver what is left, then report the ring closed. The caller
    /// FUTEX_WAKEs `wake` afterwards.
    pub fn close(&mut self) {
        self.r.store_u64(word::SHUTDOWN, 1, Ordering::Release);
        self.bump_wake();
    }
}

/// The `wake` word whose first 4 bytes in memory are `v` (native order, as
/// the kernel reads the futex word), the other 4 zero.
fn join_ne(v: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_ne_bytes());
    u64::from_ne_bytes(b)
}
