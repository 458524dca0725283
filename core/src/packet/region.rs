//! The packet region as atomic words, and byte copies in and out of its
//! wrap-around data area.
//!
//! Every access, payload bytes included, is a 64-bit atomic load or store, so
//! a reader racing the publisher never performs a data race (it may read
//! bytes of a newer packet, which the seqlock post-check then rejects), and
//! loom sees every access. Bytes are stored in memory order: byte `k` of a
//! word is `word.to_ne_bytes()[k]`, so the layout is byte-exact on any host;
//! the reference's u32 pairs and u64 fields are little-endian.

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

    fn data_word(&self, i: usize) -> &'a AtomicU64 {
        &self.words[(self.geo.data_offset() / 8) as usize + i]
    }

    /// Stores `src` (≤ `data_size` bytes) into whole words of the data area
    /// from absolute cursor `at` (a multiple of 8), wrapping, with `Release`
    /// stores; the last word is zero-padded. Nothing is loaded.
    pub fn write_words(&self, at: u64, src: &[u8]) {
        let size = self.geo.data_size() as u64;
        let first = ((at % size) / 8) as usize;
        let n_words = (size / 8) as usize;
        for (i, chunk) in src.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.data_word((first + i) % n_words)
                .store(u64::from_ne_bytes(b), Ordering::Release);
        }
    }

    /// Copies `out.len()` bytes (≤ `data_size`) out of the data area from
    /// absolute cursor `at`, wrapping, with `Acquire` word loads.
    pub fn read_bytes(&self, at: u64, out: &mut [u8]) {
        let size = self.geo.data_size() as u64;
        let mut pos = at % size;
        let mut done = 0;
        while done < out.len() {
            let wi = (pos / 8) as usize;
            let lane = (pos % 8) as usize;
            let n = (8 - lane).min(out.len() - done);
            let bytes = self.data_word(wi).load(Ordering::Acquire).to_ne_bytes();
            out[done..done + n].copy_from_slice(&bytes[lane..lane + n]);
            done += n;
            pos = (pos + n as u64) % size;
        }
    }
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
