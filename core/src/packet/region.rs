//! The packet region as atomic words, and byte copies in and out of its
//! wrap-around data area.
//!
//! Header, slot and tail fields are 64-bit atomic loads and stores. Payload
//! bytes are copied in bulk by [`super::bulk`] (word by word with `Relaxed`
//! atomics under loom), ordered by the seqlock's fences (§9.4, §9.5): a
//! reader racing the publisher may copy bytes of a newer packet, which its
//! post-check then rejects. Bytes are in memory order: byte `k` of a word is
//! `word.to_ne_bytes()[k]`, so the layout is byte-exact on any host; the
//! reference's u32 pairs and u64 fields are little-endian.

use super::layout::{word, PacketGeometry};
use crate::sync::{AtomicU64, Ordering};

/// Low and high little-endian u32 halves of a word as stored in memory.
pub(crate) fn halves(w: u64) -> (u32, u32) {
    let b = w.to_ne_bytes();
    (
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    )
}

/// The word whose memory holds `lo` then `hi`, little-endian.
pub(crate) fn join(lo: u32, hi: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&lo.to_le_bytes());
    b[4..].copy_from_slice(&hi.to_le_bytes());
    u64::from_ne_bytes(b)
}

/// A packet region whose word slice covers its geometry (checked at construction).
#[derive(Clone, Copy)]
pub(crate) struct Region<'a> {
    words: &'a [AtomicU64],
    geo: PacketGeometry,
}

impl<'a> Region<'a> {
    /// `None` if `words` is shorter than `geo` needs.
    pub fn new(words: &'a [AtomicU64], geo: PacketGeometry) -> Option<Self> {
        let need = (geo.region_size() / 8) as usize;
        (words.len() >= need).then_some(Region { words, geo })
    }

    pub fn geometry(&self) -> PacketGeometry {
        self.geo
    }

    /// Header word `w` (< [`word::HEADER`]).
    pub fn header(&self, w: usize) -> &'a AtomicU64 {
        &self.words[w]
    }

    /// Loads a little-endian u64 header field.
    pub fn load_u64(&self, w: usize, o: Ordering) -> u64 {
        u64::from_le(self.header(w).load(o))
    }

    /// Stores a little-endian u64 header field.
    pub fn store_u64(&self, w: usize, v: u64, o: Ordering) {
        self.header(w).store(v.to_le(), o)
    }

    /// Word `w` of slot `slot % N`.
    pub fn slot(&self, slot: u64, w: usize) -> &'a AtomicU64 {
        let i = (slot % self.geo.slots() as u64) as usize;
        &self.words[word::HEADER + i * word::slot::WORDS + w]
    }

    /// Stores `src` (≤ `data_size` bytes) into whole words of the data area
    /// from absolute cursor `at` (a multiple of 8), wrapping, the last word
    /// zero-padded: one or two bulk copies ([`super::bulk`]), no ordering of
    /// their own (the caller's release fence and release stores order them).
    pub fn write_payload(&self, at: u64, src: &[u8]) {
        let size = self.geo.data_size() as u64;
        let pos = at % size;
        let first = src.len().min((size - pos) as usize);
        let (head, tail) = src.split_at(first);
        let data = (self.geo.data_offset() / 8) as usize;
        // In range by construction (`Region::new` checked the length); a
        // `false` would leave bytes unwritten, never write out of bounds.
        let _ = super::bulk::store(self.words, data + (pos / 8) as usize, head);
        if !tail.is_empty() {
            // `pos + first` reached the end of the area: a multiple of 8.
            let _ = super::bulk::store(self.words, data, tail);
        }
    }

    /// Copies `out.len()` bytes (≤ `data_size`) out of the data area from
    /// absolute cursor `at`, wrapping: one or two bulk copies, no ordering of
    /// their own (the caller's acquire load before and acquire fence after
    /// order them). The bytes may be torn; the caller's seqlock re-check
    /// decides whether they are used.
    pub fn read_payload(&self, at: u64, out: &mut [u8]) {
        let size = self.geo.data_size() as u64;
        let pos = at % size;
        let first = out.len().min((size - pos) as usize);
        let (head, tail) = out.split_at_mut(first);
        let data = self.geo.data_offset() as usize;
        let _ = super::bulk::load(self.words, data + pos as usize, head);
        if !tail.is_empty() {
            let _ = super::bulk::load(self.words, data, tail);
        }
    }

    /// The word whose low half (first 4 bytes) is layout 3's `wake` futex
    /// word; `None` for layout 2.
    pub fn wake_word(&self) -> Option<&'a AtomicU64> {
        let off = self.geo.wake_offset()?;
        self.words.get((off / 8) as usize)
    }
}

/// The futex value of a `wake` word as the kernel compares it: its first
/// 4 bytes in memory order, as a native u32.
pub(crate) fn futex_value(word: u64) -> u32 {
    let b = word.to_ne_bytes();
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

impl Region<'_> {
    /// Stores `src` (≤ 4096 bytes) at the start of `codec_extradata`,
    /// zero-filling the rest of its last word, with `Release` stores.
    pub fn write_extradata(&self, src: &[u8]) {
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.words[word::EXTRADATA + i].store(u64::from_ne_bytes(b), Ordering::Release);
        }
    }

    /// Loads the first `out.len()` (≤ 4096) bytes of `codec_extradata`.
    pub fn read_extradata(&self, out: &mut [u8]) {
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let b = self.words[word::EXTRADATA + i]
                .load(Ordering::Acquire)
                .to_ne_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}
