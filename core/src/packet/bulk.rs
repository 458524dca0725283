//! Bulk byte copies in and out of the packet region's words: the one module
//! of the packet ring that touches shared memory other than through single
//! atomic accesses, hence `unsafe`.
//!
//! The payload of a packet is guarded by a seqlock (`docs/protocol.md`
//! §9.4, §9.5): the writer claims the bytes (slot `seq := UINT64_MAX`,
//! `write_offset` past them), issues a **release fence**, copies, then
//! publishes with **release stores** (`seq`, `global_seq`); a reader loads
//! `seq` with **acquire**, copies, issues an **acquire fence** and re-checks
//! `seq` and `write_offset`. A copy that raced the writer is discarded by
//! that re-check, never trusted. The copies themselves need no ordering:
//! that is what the fences are for, and what lets them be `memcpy`s.
//!
//! Normal builds copy with [`core::ptr::copy_nonoverlapping`]. Under
//! `--cfg cuframes_loom` the same functions copy word by word with
//! `Relaxed` atomic accesses, so loom sees every access and checks that the
//! fences around them are the ones that order them
//! (`core/tests/loom_packet.rs`).
#![allow(unsafe_code)]

use crate::sync::AtomicU64;
#[cfg(cuframes_loom)]
use crate::sync::Ordering;

/// The byte range `start..start + len` of `words` as a word range, or
/// `None` if it does not lie inside `words`.
fn span(words: &[AtomicU64], start: usize, len: usize) -> Option<core::ops::Range<usize>> {
    let end = start.checked_add(len)?;
    (end <= words.len().checked_mul(8)?).then_some(start / 8..end.div_ceil(8))
}

/// Copies bytes `start..start + dst.len()` of `words` (in memory order)
/// into `dst`. Returns `false`, copying nothing, if the range is not inside
/// `words`. The bytes may be torn by a concurrent writer: the caller
/// validates them afterwards (acquire fence, then its seqlock re-check).
pub(super) fn load(words: &[AtomicU64], start: usize, dst: &mut [u8]) -> bool {
    if span(words, start, dst.len()).is_none() {
        return false;
    }
    #[cfg(not(cuframes_loom))]
    {
        let src = words.as_ptr().cast::<u8>();
        // SAFETY: obligations of `copy_nonoverlapping`:
        // - `src + start .. + dst.len()` is inside `words` (checked by
        //   `span`), a live allocation or mapping for the borrow of `words`,
        //   and readable; `dst` is a distinct `&mut [u8]`, so they do not
        //   overlap; u8 needs no alignment.
        // - the source may be written concurrently. `AtomicU64` is an
        //   `UnsafeCell`, so reading it through a pointer derived from
        //   `&[AtomicU64]` is allowed aliasing-wise. The words are a
        //   `MAP_SHARED` mapping another process (the publisher) writes:
        //   memory outside this program, which it treats like volatile
        //   device memory: no reference to these bytes is formed, the
        //   values are copied once into `dst`, and every bit pattern is a
        //   valid `u8`. A copy that overlapped a write may hold a mix of two
        //   packets; the seqlock (acquire fence, then the `seq` and
        //   `write_offset` re-check in `PacketReader::read`) detects that and
        //   the caller discards `dst` — no torn byte is ever delivered or
        //   interpreted. (Within one process, a copy racing the writer is a
        //   data race in Rust's abstract model — the seqlock problem, which
        //   has no stable byte-wise atomic memcpy yet; only in-process tests
        //   do that, and they too discard what the re-check rejects. loom
        //   checks the protocol with atomic word copies, below.)
        unsafe { core::ptr::copy_nonoverlapping(src.add(start), dst.as_mut_ptr(), dst.len()) };
    }
    #[cfg(cuframes_loom)]
    {
        let (mut pos, mut done) = (start, 0);
        while done < dst.len() {
            let (wi, lane) = (pos / 8, pos % 8);
            let n = (8 - lane).min(dst.len() - done);
            let b = words[wi].load(Ordering::Relaxed).to_ne_bytes();
            dst[done..done + n].copy_from_slice(&b[lane..lane + n]);
            done += n;
            pos += n;
        }
    }
    true
}

/// Writes `src` into whole words of `words` from word `first`, the bytes in
/// memory order, the rest of the last word zeroed. Returns `false`, writing
/// nothing, if those words are not inside `words`. Single writer: the caller
/// is the region's only writer and has claimed the words (release fence
/// issued after the claim).
pub(super) fn store(words: &[AtomicU64], first: usize, src: &[u8]) -> bool {
    let Some(start) = first.checked_mul(8) else {
        return false;
    };
    let padded = src.len().next_multiple_of(8);
    if span(words, start, padded).is_none() {
        return false;
    }
    #[cfg(not(cuframes_loom))]
    {
        let dst = words.as_ptr().cast::<u8>().cast_mut();
        // SAFETY: obligations of `copy_nonoverlapping` and `write_bytes`:
        // - `dst + start .. + padded` is inside `words` (checked by `span`),
        //   live for the borrow and writable: `AtomicU64` is an `UnsafeCell`,
        //   so writing through a pointer derived from `&[AtomicU64]` is
        //   allowed (as `AtomicU64::as_ptr` documents); `src` is a distinct
        //   `&[u8]`, so they do not overlap; u8 needs no alignment.
        // - concurrent access: this process has one writer per region
        //   (`PacketWriter` is used through `&mut`) and no reader in this
        //   process forms references to these bytes (they copy them with
        //   `load`). Readers in other processes may read the bytes while
        //   they change; they detect it with the seqlock (this writer
        //   claimed them and issued a release fence before calling here).
        unsafe {
            let at = dst.add(start);
            core::ptr::copy_nonoverlapping(src.as_ptr(), at, src.len());
            core::ptr::write_bytes(at.add(src.len()), 0, padded - src.len());
        }
    }
    #[cfg(cuframes_loom)]
    for (i, chunk) in src.chunks(8).enumerate() {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        words[first + i].store(u64::from_ne_bytes(b), Ordering::Relaxed);
    }
    true
}

#[cfg(all(test, not(cuframes_loom)))]
mod tests {
    use super::*;
    use crate::sync::Ordering;
    use std::prelude::rust_2021::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(u64::MAX)).collect()
    }

    #[test]
    fn store_writes_memory_order_bytes_and_zero_pads() {
        let w = words(4);
        assert!(store(&w, 1, b"ABCDEFGHIJ"));
        assert_eq!(
            w[0].load(Ordering::SeqCst),
            u64::MAX,
            "word before untouched"
        );
        assert_eq!(w[1].load(Ordering::SeqCst).to_ne_bytes(), *b"ABCDEFGH");
        assert_eq!(
            w[2].load(Ordering::SeqCst).to_ne_bytes(),
            *b"IJ\0\0\0\0\0\0"
        );
        assert_eq!(
            w[3].load(Ordering::SeqCst),
            u64::MAX,
            "word after untouched"
        );
        assert!(store(&w, 3, b"12345678"), "exactly the last word");
        assert!(!store(&w, 3, b"123456789"), "one byte past the end");
        assert!(!store(&w, usize::MAX, b"1"));
        assert_eq!(w[3].load(Ordering::SeqCst).to_ne_bytes(), *b"12345678");
    }

    #[test]
    fn load_copies_any_byte_range_inside_and_refuses_outside() {
        let w = words(3);
        for (i, x) in w.iter().enumerate() {
            let b: [u8; 8] = core::array::from_fn(|k| (i * 8 + k) as u8);
            x.store(u64::from_ne_bytes(b), Ordering::SeqCst);
        }
        for start in 0..24 {
            for len in 0..=24 - start {
                let mut out = vec![0xAA; len];
                assert!(load(&w, start, &mut out));
                let want: Vec<u8> = (start..start + len).map(|b| b as u8).collect();
                assert_eq!(out, want, "{start}+{len}");
            }
        }
        let mut out = [0xAAu8; 2];
        assert!(!load(&w, 23, &mut out));
        assert!(!load(&w, usize::MAX, &mut out));
        assert_eq!(out, [0xAA; 2], "nothing copied");
    }
}
