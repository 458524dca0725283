//! In-process costs of the protocol's hot paths: encoding/decoding a control
//! message and one publish → lease → release round of the ring over host
//! words. The cross-process benches are in `ipc/` (docs/BENCHMARKS.md).
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use cuframes_core::layout::{ControlLayout, StreamDesc};
use cuframes_core::ring::{
    Acquire, ControlWords, Cursor, FrameMeta, LeaseWords, ReaderRef, RingReader, RingWriter,
};
use cuframes_core::sync::{AtomicU32, AtomicU64};
use cuframes_core::wire::{decode, Message};
use cuframes_core::{Codec, DeliveryMode, MemoryKind, PixelFormat, SyncKind};
use std::hint::black_box;

fn wire(c: &mut Criterion) {
    let mut buf = [0u8; 64];
    c.bench_function("wire/ping emit+decode", |b| {
        b.iter(|| {
            let n = Message::Ping(black_box(7)).emit(&mut buf).unwrap();
            black_box(decode(&buf[..n]).unwrap());
        })
    });
}

fn ring(c: &mut Criterion) {
    let layout = ControlLayout::new(8).unwrap();
    let words: Vec<AtomicU64> = (0..layout.region_size() / 8)
        .map(|_| AtomicU64::new(0))
        .collect();
    let (wake, rel) = (AtomicU32::new(0), AtomicU32::new(0));
    let ctl = ControlWords::new(&words, &wake, &rel, layout).unwrap();
    let stream = StreamDesc::packed(1920, 1080, PixelFormat::Nv12, Codec::H264).unwrap();
    let w = RingWriter::new(ctl);
    w.init(
        &layout.header(
            stream.frame_size,
            MemoryKind::HostMemfd,
            SyncKind::HostFence,
            [0; 16],
        ),
        &stream,
    );
    let row_words: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
    let row = LeaseWords::new(&row_words).unwrap();
    row.init(0);
    let reader = RingReader::new(ctl, row);
    let mut cursor = Cursor::default();
    c.bench_function("ring/claim+commit+acquire+release (1 reader)", |b| {
        b.iter(|| {
            let refs = [ReaderRef {
                row,
                unread_floor: None,
                revoked: [0; 4],
            }];
            if let cuframes_core::ring::Claim::Claimed(cl) = w.claim(&refs, false) {
                w.commit(cl, &FrameMeta::default());
            }
            if let Acquire::Frame(l) = reader.acquire(DeliveryMode::NewestOnly, cursor, 0) {
                cursor.last_seq = l.seq;
                reader.release(&l, DeliveryMode::NewestOnly);
            }
        })
    });
}

criterion_group!(benches, wire, ring);
criterion_main!(benches);
