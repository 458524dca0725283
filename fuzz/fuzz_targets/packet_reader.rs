//! Hostile shared memory into the packet-ring reader: whatever the region
//! holds, `PacketReader::open` either rejects it or the reader returns
//! packets that fit its buffer, `Empty`, or an error — never a panic, and
//! never an endless loop. Layouts 2 and 3 (with the wake tail), reading
//! into a slice (`read`) and into a growable buffer (`read_into`).
#![no_main]

use cuframes_core::packet::{
    PacketCursor, PacketRead, PacketReadError, PacketReader, PacketSink, MAX_EXTRADATA,
    PACKET_MAGIC,
};
use cuframes_core::sync::{AtomicU64, Ordering};
use libfuzzer_sys::fuzz_target;

/// A growable buffer, as the `std` build's `Vec<u8>` sink (this crate uses
/// core without `std`).
struct Grow(Vec<u8>);

impl PacketSink for Grow {
    fn buffer(&mut self, len: usize) -> Result<&mut [u8], usize> {
        self.0.resize(len, 0);
        Ok(&mut self.0)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    // A geometry the input picks, so most inputs get past `open`.
    let slots = 1 + u32::from(data[0] % 8);
    let data_size = 8 * (1 + u32::from(data[1] % 16));
    let v3 = data[2] & 2 != 0;
    let version: u64 = if v3 { 3 } else { 2 };
    let tail = if v3 { 64 } else { 0 };
    let words_len = (0x1040 + 64 * slots as usize + data_size as usize + tail) / 8;
    let mut bytes = data[4..].iter().copied().cycle();
    let words: Vec<AtomicU64> = (0..words_len)
        .map(|_| {
            let mut b = [0u8; 8];
            for x in b.iter_mut() {
                *x = bytes.next().unwrap_or(0);
            }
            AtomicU64::new(u64::from_le_bytes(b))
        })
        .collect();
    if data[2] & 1 == 0 {
        words[0].store(u64::from(PACKET_MAGIC) | version << 32, Ordering::Relaxed);
        words[1].store(
            u64::from(slots) | u64::from(data_size) << 32,
            Ordering::Relaxed,
        );
    }
    let Ok(r) = PacketReader::open(&words) else {
        return;
    };
    let mut c = PacketCursor::joining();
    let mut buf = vec![0u8; usize::from(data[3]) % (data_size as usize + 1)];
    for _ in 0..32 {
        match r.read(&mut c, &mut buf) {
            Ok(PacketRead::Packet(m)) => assert!(m.len > 0 && m.len <= buf.len()),
            Ok(PacketRead::Empty) => break,
            Err(PacketReadError::BufferTooSmall { need, .. }) => {
                assert!(need <= data_size as usize);
                buf.resize(need, 0);
            }
            Err(PacketReadError::Corrupt { .. }) => {}
        }
    }
    let _ = r.wake_value();
    let mut v = Grow(Vec::new());
    for _ in 0..32 {
        match r.read_into(&mut c, &mut v) {
            Ok(PacketRead::Packet(m)) => assert!(m.len > 0 && m.len == v.0.len()),
            Ok(PacketRead::Empty) => break,
            Err(PacketReadError::BufferTooSmall { .. }) => panic!("a Vec always fits"),
            Err(PacketReadError::Corrupt { .. }) => {}
        }
    }
    let mut ex = [0u8; MAX_EXTRADATA];
    if let Ok(info) = r.codec(&mut ex) {
        assert!(info.extradata_len <= MAX_EXTRADATA);
    }
});
