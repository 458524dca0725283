//! The packet ring through the publisher and subscriber engines, in one
//! process: packet-only and frames-plus-packets subscribers, late join,
//! overrun and resync, refused packets, and what a publisher without a
//! packet ring answers.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::packet::{AV_CODEC_ID_HEVC, PACKET_KEY, PACKET_LAST_IN_AU};
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    ConnectError, CreateError, HostBackend, PacketError, PacketRecvError, PacketRingConfig,
    Published, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::wire::ErrorCode;
use cuframes_core::{Codec, DeliveryMode, PixelFormat};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

const T: Duration = Duration::from_secs(5);

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-pk-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn publisher(dir: &Path, key: &str, ring: Option<PacketRingConfig>) -> Publisher<HostBackend> {
    let mut c = PublisherConfig::new(key);
    c.runtime_dir = Some(dir.to_path_buf());
    c.packets = ring;
    let s = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::Hevc).unwrap();
    Publisher::create(HostBackend, c, s).unwrap()
}

fn opts(dir: &Path, frames: bool, packets: bool) -> SubscribeOptions {
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(dir.to_path_buf());
    o.frames = frames;
    o.packets = packets;
    o
}

fn ring(slots: u32, data_size: u32) -> PacketRingConfig {
    PacketRingConfig {
        slots,
        data_size,
        max_packet_size: data_size / 2,
        ..PacketRingConfig::new(Codec::Hevc.av_codec_id())
    }
}

fn au(seq: u8, len: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1];
    v.extend((0..len).map(|i| seq.wrapping_add(i as u8)));
    v
}

#[test]
fn packet_only_subscriber_starts_on_a_keyframe_with_codec_params() {
    let dir = temp_dir("only");
    let mut p = publisher(&dir, "pk-only", Some(ring(16, 4096)));
    let vps_sps_pps = [
        0, 0, 0, 1, 0x40, 1, 0, 0, 0, 1, 0x42, 1, 0, 0, 0, 1, 0x44, 1,
    ];
    p.set_codec_extradata(&vps_sps_pps).unwrap();
    // A packet before any keyframe, then a GOP.
    p.publish_packet(&au(0, 10), Some(0), Some(0), 0).unwrap();
    p.publish_packet(
        &au(1, 20),
        Some(40),
        Some(-40),
        PACKET_KEY | PACKET_LAST_IN_AU,
    )
    .unwrap();
    p.publish_packet(&au(2, 30), Some(120), Some(0), 0).unwrap();

    let sub = Subscriber::connect_host("pk-only", opts(&dir, false, true)).unwrap();
    assert!(
        sub.stream().width == 64,
        "the stream description is still mapped"
    );
    let cp = sub.codec_params().unwrap();
    assert_eq!(cp.codec_id, AV_CODEC_ID_HEVC);
    assert_eq!(Codec::from_av_codec_id(cp.codec_id), Some(Codec::Hevc));
    assert_eq!(cp.extradata, vps_sps_pps);
    assert!(matches!(
        sub.next_frame(Duration::ZERO),
        Err(cuframes_core::runtime::RecvError::NotSubscribed)
    ));

    let k = sub.next_packet(T).unwrap();
    assert_eq!(k.meta.seq, 1);
    assert!(k.meta.is_key() && !k.meta.discontinuity);
    assert_eq!(k.data, au(1, 20));
    assert_eq!((k.meta.pts_ns, k.meta.dts_ns), (Some(40), Some(-40)));
    let n = sub.next_packet(T).unwrap();
    assert_eq!((n.meta.seq, n.data), (2, au(2, 30)));
    assert!(matches!(
        sub.next_packet(Duration::from_millis(20)),
        Err(PacketRecvError::Timeout(_))
    ));
    p.publish_packet(&au(3, 5), None, None, 0).unwrap();
    let m = sub.next_packet(T).unwrap();
    assert_eq!((m.meta.seq, m.meta.pts_ns), (3, None));
    p.finish();
    assert!(matches!(
        sub.next_packet(T),
        Err(PacketRecvError::Disconnected)
    ));
    let st = sub.packet_stats();
    assert_eq!((st.received, st.lost, st.discontinuities), (3, 0, 0));
    assert_eq!(st.bytes, (24 + 34 + 9) as u64);
}

#[test]
fn one_subscriber_reads_frames_and_packets_at_once() {
    let dir = temp_dir("both");
    let cfg = PacketRingConfig {
        extradata: vec![0, 0, 0, 1, 0x40, 1],
        ..ring(8, 1024)
    };
    let mut p = publisher(&dir, "pk-both", Some(cfg));
    let sub = Subscriber::connect_host("pk-both", opts(&dir, true, true)).unwrap();
    assert!(sub.has_packets());
    // Configured extradata is there before the first packet.
    assert_eq!(sub.codec_params().unwrap().extradata, [0, 0, 0, 1, 0x40, 1]);
    for i in 0..3u8 {
        p.publish_packet(&au(i, 8), Some(i as i64), Some(i as i64), PACKET_KEY)
            .unwrap();
        let meta = FrameMeta {
            pts_ns: Some(i as i64),
            ..Default::default()
        };
        let r = p
            .publish(meta, |slot, s| {
                slot.bytes_mut()[..s.frame_size as usize].fill(i);
                Ok::<(), Infallible>(())
            })
            .unwrap();
        assert!(matches!(r, Published::Committed(_)));
        let pk = sub.next_packet(T).unwrap();
        let f = sub.next_frame(T).unwrap();
        assert_eq!(pk.data, au(i, 8));
        assert_eq!(f.meta().pts_ns, pk.meta.pts_ns);
        assert!(f.plane(0).unwrap().0.iter().all(|&b| b == i));
    }
}

#[test]
fn a_slow_packet_reader_overruns_and_resumes_on_a_keyframe() {
    let dir = temp_dir("slow");
    let mut p = publisher(&dir, "pk-slow", Some(ring(4, 1024)));
    let sub = Subscriber::connect_host("pk-slow", opts(&dir, false, true)).unwrap();
    p.publish_packet(&au(0, 4), Some(0), Some(0), PACKET_KEY)
        .unwrap();
    assert_eq!(sub.next_packet(T).unwrap().meta.seq, 0);
    for s in 1..=10u8 {
        let flags = if s % 3 == 0 { PACKET_KEY } else { 0 };
        p.publish_packet(&au(s, 4), Some(s.into()), Some(s.into()), flags)
            .unwrap();
    }
    // 1..=6 are gone (4 slots); the newest keyframe is 9.
    let k = sub.next_packet(T).unwrap();
    assert_eq!((k.meta.seq, k.meta.skipped), (9, 8));
    assert!(k.meta.discontinuity && k.meta.is_key());
    assert_eq!(k.data, au(9, 4));
    let n = sub.next_packet(T).unwrap();
    assert_eq!((n.meta.seq, n.meta.discontinuity), (10, false));
    let st = sub.packet_stats();
    assert_eq!((st.received, st.lost, st.discontinuities), (3, 8, 1));
}

#[test]
fn refused_packets_leave_the_publisher_running() {
    let dir = temp_dir("refused");
    let mut p = publisher(&dir, "pk-refused", Some(ring(4, 1024)));
    let sub = Subscriber::connect_host("pk-refused", opts(&dir, false, true)).unwrap();
    assert!(matches!(
        p.publish_packet(&[0; 513], None, None, PACKET_KEY),
        Err(PacketError::Publish(_))
    ));
    assert!(matches!(
        p.publish_packet(&[], None, None, PACKET_KEY),
        Err(PacketError::Publish(_))
    ));
    assert!(matches!(
        p.set_codec_extradata(&[7; 4097]),
        Err(PacketError::Extradata(_))
    ));
    p.publish_packet(&au(1, 3), None, None, PACKET_KEY).unwrap();
    let k = sub.next_packet(T).unwrap();
    assert_eq!((k.meta.seq, k.data), (0, au(1, 3)));
    assert!(sub.codec_params().unwrap().extradata.is_empty());
}

#[test]
fn bad_packet_ring_configurations_are_refused_at_creation() {
    let dir = temp_dir("badcfg");
    let create = |ring: PacketRingConfig| {
        let mut c = PublisherConfig::new("pk-badcfg");
        c.runtime_dir = Some(dir.clone());
        c.packets = Some(ring);
        let s = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::Hevc).unwrap();
        Publisher::create(HostBackend, c, s).err()
    };
    let too_long = PacketRingConfig {
        extradata: vec![0; 4097],
        ..ring(8, 1024)
    };
    assert!(matches!(create(too_long), Some(CreateError::Extradata(_))));
    assert!(matches!(
        create(ring(0, 1024)),
        Some(CreateError::Packets(_))
    ));
    assert!(matches!(
        create(ring(8, 1001)),
        Some(CreateError::Packets(_))
    ));
}

#[test]
fn without_a_packet_ring_packet_subscribers_are_told_so() {
    let dir = temp_dir("none");
    let mut p = publisher(&dir, "pk-none", None);
    assert!(matches!(
        p.publish_packet(&[1], None, None, 0),
        Err(PacketError::NoRing)
    ));
    match Subscriber::connect_host("pk-none", opts(&dir, false, true)) {
        Err(ConnectError::Rejected { code, text }) => {
            assert_eq!(code, ErrorCode::Unsupported);
            assert_eq!(text, "this publisher has no packet ring");
        }
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    assert!(matches!(
        Subscriber::connect_host("pk-none", opts(&dir, true, true)),
        Err(ConnectError::NoPacketRing)
    ));
    let frames_only = Subscriber::connect_host("pk-none", opts(&dir, true, false)).unwrap();
    assert!(matches!(
        frames_only.next_packet(Duration::ZERO),
        Err(PacketRecvError::NotSubscribed)
    ));
    assert!(matches!(
        Subscriber::connect_host("pk-none", opts(&dir, false, false)),
        Err(ConnectError::NothingWanted)
    ));
}

#[test]
fn next_packet_into_reuses_the_buffer_and_a_blocking_reader_gets_every_packet() {
    let dir = temp_dir("into");
    let mut p = publisher(&dir, "pk-into", Some(ring(8, 1 << 16)));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let d = dir.clone();
    let reader = std::thread::spawn(move || {
        let sub = Subscriber::connect_host("pk-into", opts(&d, false, true)).unwrap();
        let mut buf = Vec::with_capacity(4096);
        assert!(matches!(
            sub.next_packet_into(&mut buf, Duration::ZERO),
            Err(PacketRecvError::Timeout(_))
        ));
        assert!(buf.is_empty(), "emptied on error");
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        // Blocking reads: the reader sleeps on the ring's futex word.
        for _ in 0..3 {
            let m = sub.next_packet_into(&mut buf, T).unwrap();
            assert_eq!(buf.len(), m.len);
            assert_eq!(buf.capacity(), 4096, "capacity reused");
            got.push((m.seq, m.is_key(), buf.clone()));
        }
        let end = sub.next_packet_into(&mut buf, T);
        assert!(matches!(end, Err(PacketRecvError::Disconnected)), "{end:?}");
        got
    });
    ready_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    p.publish_packet(&au(1, 100), Some(0), Some(0), PACKET_KEY)
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    p.publish_packet(&au(2, 2000), Some(1), Some(1), 0).unwrap();
    p.publish_packet(&au(3, 7), Some(2), Some(2), 0).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    p.finish();
    let got = reader.join().unwrap();
    assert_eq!(
        got,
        vec![
            (0, true, au(1, 100)),
            (1, false, au(2, 2000)),
            (2, false, au(3, 7)),
        ]
    );
}

/// `next_packet_with`: each packet visited in place, what the visit made of
/// it returned with the metadata — here the whole payload copied through the
/// view, equal to what was published — and the end of stream reported.
#[test]
fn next_packet_with_visits_each_packet_in_place() {
    let dir = temp_dir("view");
    let mut p = publisher(&dir, "pk-view", Some(ring(8, 1 << 16)));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let d = dir.clone();
    let reader = std::thread::spawn(move || {
        let sub = Subscriber::connect_host("pk-view", opts(&d, false, true)).unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let (m, bytes) = sub
                .next_packet_with(T, |v| {
                    let mut b = vec![0u8; v.len()];
                    assert!(v.copy_to(0, &mut b));
                    assert_eq!(v.byte(v.len() - 1), b.last().copied());
                    b
                })
                .unwrap();
            assert_eq!(bytes.len(), m.len);
            got.push((m.seq, bytes));
        }
        let end = sub.next_packet_with(T, |v| v.len());
        assert!(matches!(end, Err(PacketRecvError::Disconnected)), "{end:?}");
        got
    });
    ready_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    p.publish_packet(&au(1, 100), Some(0), Some(0), PACKET_KEY)
        .unwrap();
    p.publish_packet(&au(2, 5000), Some(1), Some(1), 0).unwrap();
    p.publish_packet(&au(3, 7), Some(2), Some(2), 0).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    p.finish();
    assert_eq!(
        reader.join().unwrap(),
        vec![(0, au(1, 100)), (1, au(2, 5000)), (2, au(3, 7))]
    );
}
