//! A subscriber's half of the packet ring (`docs/protocol.md` §9.5).
//!
//! The region is hostile input: its geometry is validated once by
//! [`PacketReader::open`] and then fixed (later header changes are ignored),
//! every offset is reduced modulo the data size, every length is checked, and
//! every loop is bounded. Nothing here panics on any memory contents.

use super::layout::{
    word, PacketGeometry, PacketLayoutError, MAX_EXTRADATA, PACKET_DISCONTINUITY,
    PACKET_HEADER_SIZE, PACKET_KEY, PACKET_MAGIC, SEQ_NONE, TS_NONE,
};
use super::region::{futex_value, halves, Region};
use crate::sync::{fence, AtomicU64, Ordering};

/// Where [`PacketReader::read_into`] copies a packet's payload.
pub trait PacketSink {
    /// A buffer of exactly `len` bytes (1..=`data_size`) for the payload, or
    /// `Err(have)` with the bytes available if there is no room. Called
    /// once per attempt that gets as far as the payload (a read retries at
    /// most a few times); what it returned holds the packet only if the
    /// read returns [`PacketRead::Packet`].
    fn buffer(&mut self, len: usize) -> Result<&mut [u8], usize>;
}

impl PacketSink for [u8] {
    /// The first `len` bytes of the slice.
    fn buffer(&mut self, len: usize) -> Result<&mut [u8], usize> {
        let have = self.len();
        self.get_mut(..len).ok_or(have)
    }
}

/// A growable buffer: resized to the packet's length, reusing its capacity
/// (only bytes beyond its current length are zero-filled before the copy).
#[cfg(feature = "std")]
impl PacketSink for std::vec::Vec<u8> {
    fn buffer(&mut self, len: usize) -> Result<&mut [u8], usize> {
        self.resize(len, 0);
        Ok(self.as_mut_slice())
    }
}

/// How often one [`PacketReader::read`] retries after losing a packet to the
/// publisher before it reports [`PacketRead::Empty`].
const RETRIES: usize = 8;

/// Where a reader stands in the packet ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketCursor {
    /// Next sequence number wanted (when synced).
    next: u64,
    /// `Some(from)`: waiting for a keyframe with sequence ≥ `from`.
    await_key_from: Option<u64>,
    /// First sequence number lost since the last delivered packet (overrun).
    lost_from: Option<u64>,
    /// A packet was delivered (losses before the first are not discontinuities).
    started: bool,
}

impl PacketCursor {
    /// A reader joining now: its first packet is the newest keyframe already
    /// in the ring, or the first keyframe published after it joins. Packets
    /// published before any keyframe are never delivered to it.
    pub const fn joining() -> Self {
        PacketCursor {
            next: 0,
            await_key_from: Some(0),
            lost_from: None,
            started: false,
        }
    }

    /// Whether the cursor waits for a keyframe (after joining or an overrun).
    pub fn awaits_keyframe(&self) -> bool {
        self.await_key_from.is_some()
    }

    fn lose(&mut self, seq: u64) {
        if self.started {
            self.lost_from.get_or_insert(seq);
        }
        self.await_key_from = Some(seq.saturating_add(1));
    }
}

/// Metadata of a packet copied out by [`PacketReader::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Sequence number (0 for the first packet the publisher published).
    pub seq: u64,
    /// Presentation time, ns (`None`: the slot held [`TS_NONE`]).
    pub pts_ns: Option<i64>,
    /// Decode time, ns (`None`: [`TS_NONE`]).
    pub dts_ns: Option<i64>,
    /// The slot's flag bits as published ([`super::PACKET_KEY`] …).
    pub flags: u32,
    /// Payload bytes, at the front of the caller's buffer.
    pub len: usize,
    /// Packets this reader lost (overrun) between the previous delivered
    /// packet and this one.
    pub skipped: u64,
    /// This reader lost packets before this one (`skipped > 0`), or the
    /// publisher flagged [`PACKET_DISCONTINUITY`].
    pub discontinuity: bool,
}

impl PacketMeta {
    /// Whether the packet starts a keyframe.
    pub fn is_key(&self) -> bool {
        self.flags & PACKET_KEY != 0
    }
}

/// Result of [`PacketReader::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketRead {
    /// A packet, copied to the front of the caller's buffer.
    Packet(PacketMeta),
    /// Nothing new for this cursor yet (nothing published, waiting for a
    /// keyframe, or the publisher kept overwriting what the reader wanted).
    Empty,
}

/// Reading a packet failed; the cursor is usable afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketReadError {
    /// The caller's buffer is too small; the cursor is unchanged.
    #[error("packet of {need} bytes does not fit a {have}-byte buffer")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// A slot that passed its sequence check holds an impossible size (a
    /// broken publisher); the cursor skips it and resyncs on a keyframe.
    #[error("packet {seq} has an invalid size of {len} bytes")]
    Corrupt {
        /// Its sequence number.
        seq: u64,
        /// Its `data_size`.
        len: u32,
    },
}

/// The codec description in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecInfo {
    /// FFmpeg `AVCodecID`.
    pub codec_id: u32,
    /// Bytes of extradata copied to the front of the caller's buffer.
    pub extradata_len: usize,
}

/// Reading the codec description failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecInfoError {
    /// `codec_extradata_size` exceeds 4096 (a broken publisher).
    #[error("codec_extradata_size {0} exceeds 4096")]
    BadSize(u32),
    /// The caller's buffer is smaller than the extradata.
    #[error("extradata of {need} bytes does not fit a {have}-byte buffer")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The publisher kept rewriting it.
    #[error("codec extradata kept changing while it was read")]
    Unstable,
}

/// A subscriber's read-only view of a validated packet region.
#[derive(Clone, Copy)]
pub struct PacketReader<'a> {
    r: Region<'a>,
}

impl<'a> PacketReader<'a> {
    /// Validates the header of `words` (the whole mapping, `words.len() · 8`
    /// bytes) and fixes the geometry it describes: layout 2 (the
    /// reference's) or 3 (with the `wake` futex word).
    ///
    /// Errors: [`PacketLayoutError`] — short region, bad magic, a version
    /// other than 2 and 3, slot count outside 1..=1024, data size 0 or not a
    /// multiple of 8, or a region length other than `0x1040 + 64·N +
    /// data_size` (+ 64 for layout 3).
    pub fn open(words: &'a [AtomicU64]) -> Result<Self, PacketLayoutError> {
        let have = words.len() as u64 * 8;
        if have < PACKET_HEADER_SIZE {
            return Err(PacketLayoutError::TooSmall(have));
        }
        let (magic, version) = halves(words[word::MAGIC_VERSION].load(Ordering::Acquire));
        if magic != PACKET_MAGIC {
            return Err(PacketLayoutError::BadMagic(magic));
        }
        let (slots, data_size) = halves(words[word::SLOTS_DATA].load(Ordering::Acquire));
        let geo = PacketGeometry::with_version(version, slots, data_size)?;
        if geo.region_size() != have {
            return Err(PacketLayoutError::Length {
                have,
                need: geo.region_size(),
            });
        }
        let r = Region::new(words, geo).ok_or(PacketLayoutError::Length {
            have,
            need: geo.region_size(),
        })?;
        Ok(PacketReader { r })
    }

    /// The validated geometry.
    pub fn geometry(&self) -> PacketGeometry {
        self.r.geometry()
    }

    /// The `wake` futex word's value (SeqCst load), `None` for layout 2.
    /// A waiting reader loads it *before* it reads the ring and sleeps on it
    /// only while it still holds this value (§9.5 *Waiting*), at the byte
    /// offset [`PacketGeometry::wake_offset`].
    pub fn wake_value(&self) -> Option<u32> {
        let w = self.r.wake_word()?;
        Some(futex_value(w.load(Ordering::SeqCst)))
    }

    /// Whether the publisher set `shutdown_flag`.
    pub fn is_closed(&self) -> bool {
        self.r.load_u64(word::SHUTDOWN, Ordering::Acquire) != 0
    }

    /// `global_seq`: the newest published packet, `None` before the first.
    pub fn latest_seq(&self) -> Option<u64> {
        match self.r.load_u64(word::GLOBAL_SEQ, Ordering::Acquire) {
            SEQ_NONE => None,
            g => Some(g),
        }
    }

    /// Copies the codec id and extradata (≤ 4096 bytes) into `out`.
    ///
    /// Errors: [`CodecInfoError`] for an out-of-range size, a short buffer, or
    /// extradata that changed during every one of a few attempts.
    pub fn codec(&self, out: &mut [u8]) -> Result<CodecInfo, CodecInfoError> {
        let codec = self.r.header(word::CODEC);
        for _ in 0..RETRIES {
            let before = codec.load(Ordering::Acquire);
            let (codec_id, size) = halves(before);
            if size as usize > MAX_EXTRADATA {
                return Err(CodecInfoError::BadSize(size));
            }
            let len = size as usize;
            let Some(dst) = out.get_mut(..len) else {
                return Err(CodecInfoError::BufferTooSmall {
                    need: len,
                    have: out.len(),
                });
            };
            self.r.read_extradata(dst);
            if codec.load(Ordering::Acquire) == before {
                return Ok(CodecInfo {
                    codec_id,
                    extradata_len: len,
                });
            }
        }
        Err(CodecInfoError::Unstable)
    }

    /// Copies the next packet for `cursor` into `out` and advances the cursor.
    ///
    /// Algorithm (§9.5): pick the wanted sequence (the cursor's next, or the
    /// newest keyframe at or after where it lost track); if `global_seq` is
    /// `slots` or more ahead, or the slot's `seq` differs, the packet is lost;
    /// otherwise copy the metadata and payload, then re-check the slot's `seq`
    /// and that `write_offset ≤ data_offset + data_size` (no byte of the
    /// payload was claimed by a newer packet). A lost packet sends the cursor
    /// to wait for the next keyframe and marks the next delivered packet as a
    /// discontinuity with its `skipped` count.
    ///
    /// Errors: [`PacketReadError::BufferTooSmall`] (cursor unchanged; retry
    /// with `need` bytes), [`PacketReadError::Corrupt`].
    pub fn read(
        &self,
        cursor: &mut PacketCursor,
        out: &mut [u8],
    ) -> Result<PacketRead, PacketReadError> {
        self.read_into(cursor, out)
    }

    /// [`PacketReader::read`] into a buffer `sink` provides once the length
    /// is known (a `Vec<u8>` resized to the packet, reusing its capacity):
    /// the payload is copied once, from the ring into the sink's buffer.
    ///
    /// Errors: as [`PacketReader::read`]; `BufferTooSmall` when the sink
    /// refuses the length.
    pub fn read_into<S: PacketSink + ?Sized>(
        &self,
        cursor: &mut PacketCursor,
        out: &mut S,
    ) -> Result<PacketRead, PacketReadError> {
        let r = &self.r;
        let (read, _) = self.read_with(cursor, |off, len| {
            let dst = out.buffer(len as usize)?;
            if dst.len() != len as usize {
                return Err(dst.len());
            }
            r.read_payload(off, dst);
            Ok(())
        })?;
        Ok(read)
    }

    /// The next packet read **in place**, without a copy: `visit` gets a
    /// [`PacketView`] of the payload in the ring and returns what it made of
    /// it (a checksum, the bytes it needed, a GPU upload of them). The ring
    /// has no leases (§9.1): the publisher may overwrite the payload while
    /// `visit` runs, so everything `visit` saw is validated afterwards (the
    /// seqlock re-check of §9.5); its result is returned only with
    /// [`PacketRead::Packet`], and a packet overwritten meanwhile is counted
    /// lost and the next one visited instead (`visit` may run more than once
    /// per call: it must not commit side effects it cannot take back).
    ///
    /// Errors: as [`PacketReader::read`] (`Corrupt`; never `BufferTooSmall`).
    pub fn read_view<T, F: FnMut(PacketView<'_>) -> T>(
        &self,
        cursor: &mut PacketCursor,
        mut visit: F,
    ) -> Result<(PacketRead, Option<T>), PacketReadError> {
        let r = &self.r;
        self.read_with(cursor, |off, len| {
            Ok(visit(PacketView {
                region: r,
                at: off,
                len: len as usize,
            }))
        })
    }

    /// The seqlock read of §9.5 with the payload step supplied by `payload`
    /// (called with the payload's absolute offset and length once the slot
    /// looks consistent; `Err(have)`: no room, `BufferTooSmall`). Its value
    /// is returned with [`PacketRead::Packet`] only, after the re-check.
    fn read_with<T>(
        &self,
        cursor: &mut PacketCursor,
        mut payload: impl FnMut(u64, u32) -> Result<T, usize>,
    ) -> Result<(PacketRead, Option<T>), PacketReadError> {
        let r = &self.r;
        let geo = r.geometry();
        let slots = geo.slots() as u64;
        for _ in 0..RETRIES {
            let Some(latest) = self.latest_seq() else {
                return Ok((PacketRead::Empty, None));
            };
            let want = match cursor.await_key_from {
                None => cursor.next,
                Some(from) => match r.load_u64(word::LAST_KEY, Ordering::Acquire) {
                    SEQ_NONE => return Ok((PacketRead::Empty, None)),
                    k if k < from || k > latest => return Ok((PacketRead::Empty, None)),
                    k => k,
                },
            };
            if want > latest {
                return Ok((PacketRead::Empty, None));
            }
            if latest - want >= slots {
                cursor.lose(want);
                continue;
            }
            let slot = |w: usize| r.slot(want, w);
            let load = |w: usize| u64::from_le(slot(w).load(Ordering::Acquire));
            if load(word::slot::SEQ) != want {
                cursor.lose(want);
                continue;
            }
            let pts = load(word::slot::PTS) as i64;
            let dts = load(word::slot::DTS) as i64;
            let off = load(word::slot::OFFSET);
            let (len, flags) = halves(slot(word::slot::SIZE_FLAGS).load(Ordering::Acquire));
            let size_ok = len > 0 && len <= geo.data_size();
            let mut got = None;
            if size_ok {
                match payload(off, len) {
                    Ok(t) => got = Some(t),
                    Err(have) => {
                        if load(word::slot::SEQ) != want {
                            cursor.lose(want);
                            continue;
                        }
                        return Err(PacketReadError::BufferTooSmall {
                            need: len as usize,
                            have,
                        });
                    }
                }
            }
            // The seqlock's acquire fence: if the copy above saw any byte
            // stored after the publisher's release fence, the loads below
            // see that publisher's claims and reject the copy.
            #[cfg(not(cuframes_loom_mutation))]
            fence(Ordering::Acquire);
            let seq_ok = load(word::slot::SEQ) == want;
            let claimed = r.load_u64(word::WRITE_OFFSET, Ordering::Acquire);
            let bytes_ok = off
                .checked_add(geo.data_size() as u64)
                .is_some_and(|limit| claimed <= limit);
            if !seq_ok || !bytes_ok {
                cursor.lose(want);
                continue;
            }
            if !size_ok {
                cursor.lose(want);
                return Err(PacketReadError::Corrupt { seq: want, len });
            }
            let skipped = cursor.lost_from.map_or(0, |l| want.saturating_sub(l));
            *cursor = PacketCursor {
                next: want.saturating_add(1),
                await_key_from: None,
                lost_from: None,
                started: true,
            };
            let ts = |v: i64| (v != TS_NONE).then_some(v);
            return Ok((
                PacketRead::Packet(PacketMeta {
                    seq: want,
                    pts_ns: ts(pts),
                    dts_ns: ts(dts),
                    flags,
                    len: len as usize,
                    skipped,
                    discontinuity: skipped > 0 || flags & PACKET_DISCONTINUITY != 0,
                }),
                got,
            ));
        }
        Ok((PacketRead::Empty, None))
    }
}

/// A packet's payload as it lies in the ring, for
/// [`PacketReader::read_view`]: read parts of it without copying the rest.
/// What it returns may be torn (the publisher may be overwriting it); the
/// read that made the view validates it afterwards and drops the result of
/// a torn one.
#[derive(Clone, Copy)]
pub struct PacketView<'a> {
    region: &'a Region<'a>,
    /// Absolute data cursor of the payload's first byte.
    at: u64,
    len: usize,
}

impl PacketView<'_> {
    /// Payload length, bytes (one Annex B access unit).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the payload is empty (never, for a packet the ring accepted).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Byte `i` of the payload; `None` past the end.
    pub fn byte(&self, i: usize) -> Option<u8> {
        let mut b = [0u8];
        self.copy_to(i, &mut b).then_some(b[0])
    }

    /// Copies payload bytes `start..start + out.len()` into `out`; `false`
    /// (nothing copied) if that range is not inside the payload.
    pub fn copy_to(&self, start: usize, out: &mut [u8]) -> bool {
        if start
            .checked_add(out.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        self.region.read_payload(self.at + start as u64, out);
        true
    }
}
