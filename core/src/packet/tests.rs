//! Unit and property tests of the packet ring over in-process words.

use super::*;
use crate::sync::{AtomicU64, Ordering};
use proptest::prelude::*;
use std::prelude::rust_2021::*;

fn region(geo: PacketGeometry) -> Vec<AtomicU64> {
    (0..geo.region_size() / 8)
        .map(|_| AtomicU64::new(0))
        .collect()
}

fn bytes_of(words: &[AtomicU64]) -> Vec<u8> {
    words
        .iter()
        .flat_map(|w| w.load(Ordering::SeqCst).to_ne_bytes())
        .collect()
}

fn writer(words: &[AtomicU64], geo: PacketGeometry) -> PacketWriter<'_> {
    let mut w = PacketWriter::new(words, geo).unwrap();
    w.init(PacketRingInit {
        codec_id: AV_CODEC_ID_H264,
        producer_pid: 0x1234,
    });
    w
}

fn read(r: &PacketReader<'_>, c: &mut PacketCursor) -> Option<(PacketMeta, Vec<u8>)> {
    let mut buf = vec![0u8; r.geometry().data_size() as usize];
    match r.read(c, &mut buf).unwrap() {
        PacketRead::Packet(m) => Some((m, buf[..m.len].to_vec())),
        PacketRead::Empty => None,
    }
}

/// The golden region of §9.2 in layout `version`: N = 2, 16 data bytes,
/// extradata `00 00 00 01 67`, one packet "ABCDEFGHIJ" (pts 1000, dts -5,
/// KEY | LAST_IN_AU).
fn golden(version: u32) -> Vec<u8> {
    let geo = PacketGeometry::with_version(version, 2, 16).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    w.set_extradata(&[0, 0, 0, 1, 0x67]).unwrap();
    let seq = w
        .publish(b"ABCDEFGHIJ", 1000, -5, PACKET_KEY | PACKET_LAST_IN_AU, 16)
        .unwrap();
    assert_eq!(seq, 0);
    bytes_of(&words)
}

#[test]
fn golden_bytes_match_the_reference_layout() {
    let b = golden(PACKET_LAYOUT_V2);
    assert_eq!(b.len(), 0x1040 + 2 * 64 + 16);
    let mut want = vec![0u8; b.len()];
    want[0x00..0x08].copy_from_slice(&[0xCD, 0x1D, 0x7C, 0xCC, 2, 0, 0, 0]);
    want[0x08..0x10].copy_from_slice(&[2, 0, 0, 0, 16, 0, 0, 0]);
    want[0x10..0x18].copy_from_slice(&[27, 0, 0, 0, 5, 0, 0, 0]);
    want[0x18..0x20].copy_from_slice(&[0x34, 0x12, 0, 0, 0, 0, 0, 0]);
    // global_seq 0, last_keyframe_seq 0, write_offset 16 (next packet
    // starts on a word boundary), shutdown 0.
    want[0x30] = 16;
    want[0x40..0x45].copy_from_slice(&[0, 0, 0, 1, 0x67]);
    // Slot 0: seq 0, pts 1000, dts -5, offset 0, size 10, flags KEY|LAST_IN_AU.
    want[0x1048..0x1050].copy_from_slice(&1000i64.to_le_bytes());
    want[0x1050..0x1058].copy_from_slice(&(-5i64).to_le_bytes());
    want[0x1060..0x1068].copy_from_slice(&[10, 0, 0, 0, 9, 0, 0, 0]);
    // Slot 1: empty (seq = UINT64_MAX).
    want[0x1080..0x1088].fill(0xFF);
    want[0x10C0..0x10CA].copy_from_slice(b"ABCDEFGHIJ");
    assert_eq!(b, want);

    use zerocopy::FromBytes;
    let h = PacketHeader::read_from_bytes(&b[..0x1040]).unwrap();
    assert_eq!(
        (h.magic, h.proto_version, h.ring_slots, h.data_size),
        (PACKET_MAGIC, 2, 2, 16)
    );
    assert_eq!(
        (h.codec_id, h.codec_extradata_size, h.write_offset),
        (27, 5, 16)
    );
    let s = PacketSlot::read_from_bytes(&b[0x1040..0x1080]).unwrap();
    assert_eq!(
        (s.seq, s.pts_ns, s.dts_ns, s.data_size, s.flags),
        (0, 1000, -5, 10, 9)
    );
}

#[test]
fn golden_bytes_of_layout_3_are_layout_2_plus_the_wake_tail() {
    let b2 = golden(PACKET_LAYOUT_V2);
    let b3 = golden(PACKET_LAYOUT_VERSION);
    assert_eq!(b3.len(), 0x1040 + 2 * 64 + 16 + 64);
    let mut want = b2.clone();
    want[0x04] = 3; // proto_version 3
                    // Tail at 0x10D0: wake 1 (one packet published), the rest reserved zero.
    let mut tail = [0u8; 64];
    tail[..4].copy_from_slice(&1u32.to_le_bytes());
    want.extend_from_slice(&tail);
    assert_eq!(b3, want);
    use zerocopy::FromBytes;
    let t = PacketTail::read_from_bytes(&b3[0x10D0..]).unwrap();
    assert_eq!((t.wake, t.reserved), (1, [0; 60]));
}

#[test]
fn wake_counts_packets_and_the_close_and_readers_see_it_only_in_layout_3() {
    for version in [PACKET_LAYOUT_V2, PACKET_LAYOUT_VERSION] {
        let geo = PacketGeometry::with_version(version, 4, 64).unwrap();
        let words = region(geo);
        let mut w = writer(&words, geo);
        let r = PacketReader::open(&words).unwrap();
        assert_eq!(r.geometry(), geo);
        let v3 = version == PACKET_LAYOUT_VERSION;
        assert_eq!(r.wake_value(), v3.then_some(0));
        assert_eq!(w.wake_offset(), v3.then_some(0x1040 + 4 * 64 + 64));
        for i in 1..=3u32 {
            w.publish(b"xyz", 0, 0, PACKET_KEY, 64).unwrap();
            assert_eq!(r.wake_value(), v3.then_some(i));
        }
        w.close();
        assert_eq!(r.wake_value(), v3.then_some(4));
        assert!(r.is_closed());
        // A writer resuming on the region continues the count.
        let mut w2 = PacketWriter::new(&words, geo).unwrap();
        assert_eq!(w2.position().2, if v3 { 4 } else { 0 });
        w2.publish(b"a", 0, 0, 0, 64).unwrap();
        assert_eq!(r.wake_value(), v3.then_some(5));
        // Nothing else of layout 2 moved: the word after the data area is
        // not part of a layout-2 region.
        assert_eq!(words.len() as u64 * 8, geo.region_size());
    }
}

#[test]
fn payload_wraps_around_the_data_area() {
    let geo = PacketGeometry::new(4, 24).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    w.publish(b"0123456789", 0, 0, PACKET_KEY, 24).unwrap();
    assert_eq!(read(&r, &mut c).unwrap().1, b"0123456789");
    // Starts at the next word boundary (16) and wraps after 8 bytes.
    w.publish(b"abcdefghij", 1, 1, 0, 24).unwrap();
    let (m, data) = read(&r, &mut c).unwrap();
    assert_eq!((m.seq, m.skipped, m.discontinuity), (1, 0, false));
    assert_eq!(data, b"abcdefghij");
    let b = bytes_of(&words);
    let data_at = geo.data_offset() as usize;
    assert_eq!(&b[data_at + 16..data_at + 24], b"abcdefgh");
    assert_eq!(&b[data_at..data_at + 8], b"ij\0\0\0\0\0\0");
    let slot1 = 0x1040 + 64;
    assert_eq!(&b[slot1 + 0x18..slot1 + 0x20], &16u64.to_le_bytes());
    assert_eq!(&b[0x30..0x38], &32u64.to_le_bytes(), "write_offset");
}

#[test]
fn a_packet_whose_bytes_were_reclaimed_is_lost_even_if_its_slot_survives() {
    // 4 slots but only 16 bytes: packet 2 overwrites bytes of packet 1.
    let geo = PacketGeometry::new(4, 16).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    w.publish(b"0123456789", 0, 0, PACKET_KEY, 16).unwrap();
    assert_eq!(read(&r, &mut c).unwrap().0.seq, 0);
    w.publish(b"abcdefghij", 1, 1, 0, 16).unwrap();
    w.publish(b"ABCDEFGHIJ", 2, 2, 0, 16).unwrap();
    // Slot 1 still holds seq 1, but its bytes were claimed: lost, wait for a key.
    assert_eq!(read(&r, &mut c), None);
    assert!(c.awaits_keyframe());
    w.publish(b"KEY", 3, 3, PACKET_KEY, 16).unwrap();
    let (m, data) = read(&r, &mut c).unwrap();
    assert_eq!(
        (m.seq, m.skipped, m.discontinuity, data.as_slice()),
        (3, 2, true, &b"KEY"[..])
    );
}

#[test]
fn a_joining_reader_whose_keyframe_is_gone_waits_without_a_discontinuity() {
    let geo = PacketGeometry::new(4, 16).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    w.publish(b"0123456789", 0, 0, PACKET_KEY, 16).unwrap();
    w.publish(b"abcdefghij", 1, 1, 0, 16).unwrap();
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    assert_eq!(read(&r, &mut c), None);
    w.publish(b"KEY", 2, 2, PACKET_KEY, 16).unwrap();
    let (m, _) = read(&r, &mut c).unwrap();
    assert_eq!((m.seq, m.skipped, m.discontinuity), (2, 0, false));
}

#[test]
fn late_join_starts_at_the_newest_keyframe() {
    let geo = PacketGeometry::new(8, 256).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    for (i, key) in [false, true, false, true, false].into_iter().enumerate() {
        let flags = if key { PACKET_KEY } else { 0 };
        w.publish(&[i as u8; 5], i as i64, i as i64, flags, 256)
            .unwrap();
    }
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    let (m, data) = read(&r, &mut c).unwrap();
    assert_eq!(
        (m.seq, m.is_key(), m.discontinuity, data),
        (3, true, false, vec![3; 5])
    );
    assert_eq!(read(&r, &mut c).unwrap().0.seq, 4);
    assert_eq!(read(&r, &mut c), None);
}

#[test]
fn packets_before_any_keyframe_are_never_delivered() {
    let geo = PacketGeometry::new(8, 256).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    assert_eq!(read(&r, &mut c), None);
    w.publish(b"p0", 0, 0, 0, 256).unwrap();
    w.publish(b"p1", 0, 0, 0, 256).unwrap();
    assert_eq!(read(&r, &mut c), None);
    w.publish(b"k2", 0, 0, PACKET_KEY, 256).unwrap();
    let (m, _) = read(&r, &mut c).unwrap();
    assert_eq!((m.seq, m.skipped, m.discontinuity), (2, 0, false));
}

#[test]
fn overrun_resyncs_on_the_next_keyframe_with_a_discontinuity() {
    let geo = PacketGeometry::new(4, 1024).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    w.publish(b"k0", 0, 0, PACKET_KEY, 1024).unwrap();
    assert_eq!(read(&r, &mut c).unwrap().0.seq, 0);
    // Keys at 3, 6; the reader wants 1, which is gone.
    for s in 1..=7u64 {
        let flags = if s % 3 == 0 { PACKET_KEY } else { 0 };
        w.publish(&[s as u8; 3], 0, 0, flags, 1024).unwrap();
    }
    let (m, data) = read(&r, &mut c).unwrap();
    assert_eq!(
        (m.seq, m.skipped, m.discontinuity, m.is_key()),
        (6, 5, true, true)
    );
    assert_eq!(data, vec![6; 3]);
    let (m, _) = read(&r, &mut c).unwrap();
    assert_eq!((m.seq, m.skipped, m.discontinuity), (7, 0, false));
}

#[test]
fn oversized_and_empty_packets_are_refused_and_the_ring_keeps_working() {
    let geo = PacketGeometry::new(4, 64).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    assert_eq!(
        w.publish(&[0; 65], 0, 0, PACKET_KEY, usize::MAX),
        Err(PacketPublishError::Oversized { len: 65, max: 64 })
    );
    assert_eq!(
        w.publish(&[0; 33], 0, 0, PACKET_KEY, 32),
        Err(PacketPublishError::Oversized { len: 33, max: 32 })
    );
    assert_eq!(
        w.publish(&[], 0, 0, PACKET_KEY, 64),
        Err(PacketPublishError::Empty)
    );
    assert_eq!(w.next_seq(), 0);
    assert_eq!(bytes_of(&words)[0x30], 0, "write_offset untouched");
    w.publish(&[7; 64], 0, 0, PACKET_KEY, 64).unwrap();
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    assert_eq!(read(&r, &mut c).unwrap().1, vec![7; 64]);
}

#[test]
fn small_buffers_and_extradata_limits_are_reported() {
    let geo = PacketGeometry::new(4, 64).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    assert_eq!(w.set_extradata(&[1; 4097]), Err(ExtradataError(4097)));
    w.set_extradata(&[9; 4096]).unwrap();
    w.publish(&[1; 40], 0, 0, PACKET_KEY, 64).unwrap();
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    let mut small = [0u8; 10];
    assert_eq!(
        r.read(&mut c, &mut small),
        Err(PacketReadError::BufferTooSmall { need: 40, have: 10 })
    );
    assert_eq!(read(&r, &mut c).unwrap().0.seq, 0, "cursor unchanged");
    let mut ex = [0u8; 4096];
    assert_eq!(
        r.codec(&mut ex),
        Ok(CodecInfo {
            codec_id: AV_CODEC_ID_H264,
            extradata_len: 4096
        })
    );
    assert_eq!(ex, [9; 4096]);
    assert_eq!(
        r.codec(&mut small),
        Err(CodecInfoError::BufferTooSmall {
            need: 4096,
            have: 10
        })
    );
    // A hostile size.
    words[2].store(region_join(27, 5000), Ordering::SeqCst);
    assert_eq!(r.codec(&mut ex), Err(CodecInfoError::BadSize(5000)));
    assert!(!r.is_closed());
    w.close();
    assert!(r.is_closed());
}

fn region_join(lo: u32, hi: u32) -> u64 {
    super::region::join(lo, hi)
}

#[test]
fn open_rejects_bad_headers() {
    let geo = PacketGeometry::new(4, 64).unwrap();
    let words = region(geo);
    assert_eq!(
        PacketReader::open(&words).err(),
        Some(PacketLayoutError::BadMagic(0))
    );
    writer(&words, geo);
    assert!(PacketReader::open(&words).is_ok());
    assert_eq!(
        PacketReader::open(&words[..words.len() - 1]).err(),
        Some(PacketLayoutError::Length {
            have: geo.region_size() - 8,
            need: geo.region_size()
        })
    );
    assert_eq!(
        PacketReader::open(&words[..10]).err(),
        Some(PacketLayoutError::TooSmall(80))
    );
    words[1].store(region_join(0, 64), Ordering::SeqCst);
    assert_eq!(
        PacketReader::open(&words).err(),
        Some(PacketLayoutError::SlotCount(0))
    );
    words[1].store(region_join(4, 63), Ordering::SeqCst);
    assert_eq!(
        PacketReader::open(&words).err(),
        Some(PacketLayoutError::DataSize(63))
    );
    words[1].store(region_join(4, 64), Ordering::SeqCst);
    assert!(PacketReader::open(&words).is_ok());
    // Layout 2 needs 64 bytes less than this layout-3 region.
    words[0].store(region_join(PACKET_MAGIC, 2), Ordering::SeqCst);
    assert_eq!(
        PacketReader::open(&words).err(),
        Some(PacketLayoutError::Length {
            have: geo.region_size(),
            need: geo.region_size() - 64
        })
    );
    assert_eq!(
        PacketReader::open(&words[..words.len() - 8])
            .unwrap()
            .geometry()
            .version(),
        2
    );
    for v in [0, 1, 4, 0x0001_0002, u32::MAX] {
        words[0].store(region_join(PACKET_MAGIC, v), Ordering::SeqCst);
        assert_eq!(
            PacketReader::open(&words).err(),
            Some(PacketLayoutError::Version(v))
        );
    }
}

/// Deterministic payload of packet `seq` with `len` bytes.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

proptest! {
    /// A model run: random sizes (wrap-around included), keyframes, and a
    /// reader that reads a random number of packets between bursts. Every
    /// delivered packet is exactly what was published under its sequence
    /// number; sequence numbers only grow; a gap is reported as a
    /// discontinuity with the right `skipped` and lands on a keyframe.
    #[test]
    fn delivered_packets_are_exactly_what_was_published(
        slots in 1u32..8,
        data_words in 1u32..32,
        steps in proptest::collection::vec((1usize..80, any::<bool>(), 0usize..4), 1..60),
        v3 in any::<bool>(),
        into_vec in any::<bool>(),
    ) {
        let version = if v3 { PACKET_LAYOUT_VERSION } else { PACKET_LAYOUT_V2 };
        let geo = PacketGeometry::with_version(version, slots, data_words * 8).unwrap();
        let words = region(geo);
        let mut w = writer(&words, geo);
        let r = PacketReader::open(&words).unwrap();
        prop_assert_eq!(r.geometry(), geo);
        let mut c = PacketCursor::joining();
        // A reused growable buffer (`read_into`) or a fixed slice (`read`).
        let mut vbuf: Vec<u8> = Vec::new();
        let mut published: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut last: Option<u64> = None;
        for (len, key, reads) in steps {
            let data = payload(published.len() as u64, len);
            let flags = if key { PACKET_KEY } else { 0 };
            match w.publish(&data, published.len() as i64, -1, flags, usize::MAX) {
                Ok(seq) => {
                    prop_assert_eq!(seq, published.len() as u64);
                    published.push((data, key));
                }
                Err(PacketPublishError::Oversized { .. }) => {
                    prop_assert!(len > geo.data_size() as usize);
                    continue;
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
            for _ in 0..reads {
                let got = if into_vec {
                    match r.read_into(&mut c, &mut vbuf).unwrap() {
                        PacketRead::Packet(m) => {
                            prop_assert_eq!(vbuf.len(), m.len);
                            Some((m, vbuf.clone()))
                        }
                        PacketRead::Empty => None,
                    }
                } else {
                    read(&r, &mut c)
                };
                let Some((m, data)) = got else { break };
                let (want, was_key) = &published[m.seq as usize];
                prop_assert_eq!(&data, want);
                prop_assert_eq!(m.pts_ns, Some(m.seq as i64));
                match last {
                    None => prop_assert!(*was_key && !m.discontinuity),
                    Some(l) if m.seq == l + 1 => prop_assert!(!m.discontinuity),
                    Some(l) => {
                        prop_assert!(m.seq > l && *was_key && m.discontinuity);
                        prop_assert_eq!(m.skipped, m.seq - l - 1);
                    }
                }
                last = Some(m.seq);
            }
        }
    }

    /// Hostile memory: any header that passes `open` and any slot contents
    /// never make the reader panic, and what it returns fits the buffer.
    #[test]
    fn hostile_regions_never_panic(
        slots in 1u32..6,
        data_words in 1u32..8,
        noise in proptest::collection::vec(any::<u64>(), 0..200),
        picks in proptest::collection::vec(any::<u16>(), 0..200),
        v3 in any::<bool>(),
    ) {
        let version = if v3 { PACKET_LAYOUT_VERSION } else { PACKET_LAYOUT_V2 };
        let geo = PacketGeometry::with_version(version, slots, data_words * 8).unwrap();
        let words = region(geo);
        writer(&words, geo);
        for (v, p) in noise.iter().zip(picks.iter()) {
            // Anything after the magic/geometry words.
            let i = 2 + (*p as usize) % (words.len() - 2);
            words[i].store(*v, Ordering::SeqCst);
        }
        let r = PacketReader::open(&words).unwrap();
        let mut c = PacketCursor::joining();
        let mut buf = vec![0u8; geo.data_size() as usize];
        for _ in 0..20 {
            match r.read(&mut c, &mut buf) {
                Ok(PacketRead::Packet(m)) => prop_assert!(m.len <= buf.len() && m.len > 0),
                Ok(PacketRead::Empty) | Err(PacketReadError::Corrupt { .. }) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let mut v = Vec::new();
        for _ in 0..20 {
            match r.read_into(&mut c, &mut v) {
                Ok(PacketRead::Packet(m)) => prop_assert!(m.len == v.len() && m.len > 0),
                Ok(PacketRead::Empty) | Err(PacketReadError::Corrupt { .. }) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        let _ = r.wake_value();
        let mut ex = [0u8; MAX_EXTRADATA];
        let _ = r.codec(&mut ex);
    }
}

/// `read_view`: the payload visited in place (bytes, ranges, a wrapped
/// payload), and a visit during which the publisher overwrote the packet is
/// thrown away — its result is never returned — and the packet counted lost.
#[test]
fn read_view_visits_in_place_and_drops_a_visit_the_publisher_overran() {
    let geo = PacketGeometry::new(4, 24).unwrap();
    let words = region(geo);
    let mut w = writer(&words, geo);
    let r = PacketReader::open(&words).unwrap();
    let mut c = PacketCursor::joining();
    w.publish(b"0123456789", 0, 0, PACKET_KEY, 24).unwrap();
    let (got, v) = r
        .read_view(&mut c, |v| {
            let mut mid = [0u8; 3];
            assert!(v.copy_to(4, &mut mid));
            assert!(!v.copy_to(8, &mut mid), "a range past the end is refused");
            (v.len(), v.byte(0), v.byte(9), v.byte(10), mid)
        })
        .unwrap();
    assert!(matches!(got, PacketRead::Packet(m) if m.seq == 0 && m.len == 10));
    assert_eq!(v, Some((10, Some(b'0'), Some(b'9'), None, *b"456")));
    // Wrapped payload (as in `payload_wraps_around_the_data_area`).
    w.publish(b"abcdefghij", 1, 1, 0, 24).unwrap();
    let (_, v) = r
        .read_view(&mut c, |v| {
            let mut all = [0u8; 10];
            assert!(v.copy_to(0, &mut all));
            all
        })
        .unwrap();
    assert_eq!(v.as_ref().map(|a| &a[..]), Some(&b"abcdefghij"[..]));

    // The publisher overwrites packet 2 while it is being visited: the visit
    // saw the old bytes, but its result is dropped and the packet is lost.
    w.publish(b"KLMNOPQRST", 2, 2, PACKET_KEY, 24).unwrap();
    let mut visits = 0;
    let (got, v) = r
        .read_view(&mut c, |v| {
            visits += 1;
            if visits == 1 {
                for n in 3..8u8 {
                    w.publish(&[b'x'; 10], i64::from(n), i64::from(n), PACKET_KEY, 24)
                        .unwrap();
                }
            }
            v.byte(0)
        })
        .unwrap();
    // Overrun: the reader resyncs on the newest keyframe and visits it.
    match got {
        PacketRead::Packet(m) => {
            assert!(m.seq > 2, "the overrun packet must not be returned: {m:?}");
            assert!(m.skipped > 0 && m.discontinuity);
            assert_eq!(v, Some(Some(b'x')));
        }
        PacketRead::Empty => assert_eq!(v, None, "no result without a packet"),
    }
    assert!(visits >= 1);
}
