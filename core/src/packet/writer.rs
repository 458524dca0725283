//! The publisher's half of the packet ring (`docs/protocol.md` §9.4).

use super::layout::{
    word, PacketGeometry, MAX_EXTRADATA, PACKET_KEY, PACKET_LAYOUT_VERSION, PACKET_MAGIC, SEQ_NONE,
};
use super::region::{halves, join, Region};
use crate::sync::{AtomicU64, Ordering};

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

/// The publisher's view of its packet region. Single writer: every method
/// must be called from one thread at a time.
#[derive(Clone, Copy)]
pub struct PacketWriter<'a> {
    r: Region<'a>,
}

impl<'a> PacketWriter<'a> {
    /// Wraps `words` (the whole region); `None` if it is shorter than `geo` needs.
    pub fn new(words: &'a [AtomicU64], geo: PacketGeometry) -> Option<Self> {
        Some(PacketWriter {
            r: Region::new(words, geo)?,
        })
    }

    /// Writes the header and marks every slot empty: no packet, no keyframe,
    /// cursor 0, no extradata. Call once, before anyone maps the region.
    pub fn init(&self, init: PacketRingInit) {
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
            .store(join(PACKET_MAGIC, PACKET_LAYOUT_VERSION), Ordering::SeqCst);
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
        match self.r.load_u64(word::GLOBAL_SEQ, Ordering::Relaxed) {
            SEQ_NONE => 0,
            g => g.wrapping_add(1),
        }
    }

    /// Publishes one packet and returns its sequence number.
    ///
    /// Order (§9.4): slot `seq := SEQ_NONE`; `write_offset += len` (the bytes
    /// about to be overwritten are claimed *before* they change); payload
    /// words (`Release`); slot metadata (`Release`); slot `seq` (`Release`);
    /// `global_seq`; `last_keyframe_seq` if [`PACKET_KEY`]. The oldest
    /// packets are overwritten: a slow reader detects it and resyncs.
    ///
    /// Errors: [`PacketPublishError::Empty`], or
    /// [`PacketPublishError::Oversized`] beyond `max_len` or the data area.
    pub fn publish(
        &self,
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
        let seq = self.next_seq();
        let off = r.load_u64(word::WRITE_OFFSET, Ordering::Relaxed);
        let len = data.len() as u64;
        let slot = |w: usize| r.slot(seq, w);
        slot(word::slot::SEQ).store(SEQ_NONE, Ordering::Relaxed);
        r.store_u64(word::WRITE_OFFSET, off.wrapping_add(len), Ordering::Relaxed);
        r.write_bytes(off, data);
        slot(word::slot::PTS).store((pts_ns as u64).to_le(), Ordering::Release);
        slot(word::slot::DTS).store((dts_ns as u64).to_le(), Ordering::Release);
        slot(word::slot::OFFSET).store(off.to_le(), Ordering::Release);
        slot(word::slot::SIZE_FLAGS).store(join(len as u32, flags), Ordering::Release);
        slot(word::slot::SEQ).store(seq.to_le(), Ordering::Release);
        r.store_u64(word::GLOBAL_SEQ, seq, Ordering::Release);
        if flags & PACKET_KEY != 0 {
            r.store_u64(word::LAST_KEY, seq, Ordering::Release);
        }
        Ok(seq)
    }

    /// Sets `shutdown_flag` (`Release`): readers deliver what is left, then
    /// report the ring closed.
    pub fn close(&self) {
        self.r.store_u64(word::SHUTDOWN, 1, Ordering::Release);
    }
}
