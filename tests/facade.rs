//! The facade over host memory in one process: `Backend::Auto` picks the
//! host backend from the offer on one connection, frames published from
//! host planes come back packed and bit-exact, packets reach a
//! `PacketReader`, and the errors say what went wrong.

use cuframes::core::runtime::{ConnectError, PacketRingConfig, RecvError};
use cuframes::{
    Backend, BackendKind, Codec, DeliveryMode, Error, FrameMeta, PacketReader, PixelFormat, Plane,
    PublishPolicy, Publisher, PublisherOptions, StreamDesc, Subscriber, SubscriberOptions,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-facade-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn publisher(dir: &Path, key: &str, stream: StreamDesc, packets: bool) -> Publisher {
    let mut o = PublisherOptions::new(key);
    o.backend = Backend::Host;
    o.config.runtime_dir = Some(dir.to_path_buf());
    o.config.slots = 4;
    o.config.policy = PublishPolicy::Wait;
    if packets {
        o.config.packets = Some(PacketRingConfig::new(
            cuframes::core::packet::AV_CODEC_ID_H264,
        ));
    }
    Publisher::create(o, stream).unwrap()
}

fn sub_opts(dir: &Path) -> SubscriberOptions {
    let mut o = SubscriberOptions::new(DeliveryMode::InOrder);
    o.subscribe.runtime_dir = Some(dir.to_path_buf());
    o
}

/// A packed NV12 frame of `w`×`h` whose bytes depend on `n`.
fn nv12(w: usize, h: usize, n: u8) -> Vec<u8> {
    (0..w * h * 3 / 2)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
        .collect()
}

#[test]
fn auto_reads_a_host_publisher_bit_exact_on_one_connection() {
    let dir = temp_dir("auto");
    let (w, h) = (64usize, 36usize);
    let stream = StreamDesc::packed(w as u32, h as u32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = publisher(&dir, "cam", stream, false);
    assert_eq!(p.backend(), BackendKind::Host);
    let sub = Subscriber::connect("cam", sub_opts(&dir)).unwrap();
    assert_eq!(sub.backend(), BackendKind::Host);
    assert_eq!(sub.offer().stream.width, w as u64);
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    let mut packed = Vec::new();
    for n in 0..5u8 {
        let data = nv12(w, h, n);
        let (y, uv) = data.split_at(w * h);
        let meta = FrameMeta {
            source_index: u64::from(n),
            ..Default::default()
        };
        p.publish_planes(meta, &[(y, w), (uv, w)]).unwrap();
        let f = sub.next_frame(Duration::from_secs(5)).unwrap();
        assert_eq!(f.backend(), BackendKind::Host);
        assert_eq!(f.meta().source_index, u64::from(n));
        assert_eq!(f.packed_size(), data.len());
        match f.plane(1).unwrap() {
            Plane::Host {
                bytes,
                row_bytes,
                rows,
                ..
            } => {
                assert_eq!((row_bytes, rows), (w, h / 2));
                assert_eq!(&bytes[..w], &uv[..w]);
            }
            other => panic!("a host frame gave {other:?}"),
        }
        f.copy_to_host(&mut packed).unwrap();
        assert!(f.release());
        assert_eq!(packed, data, "frame {n}");
    }
    // Auto decided from the offer: the publisher saw one connection.
    assert_eq!(p.stats().subscribers, 1);
    drop(sub);
    p.finish();
}

#[test]
fn a_plane_shorter_than_its_rows_is_an_error_and_the_slot_is_given_back() {
    let dir = temp_dir("short");
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = publisher(&dir, "cam", stream, false);
    let y = vec![0u8; 64 * 32];
    let uv = vec![0u8; 10];
    assert!(matches!(
        p.publish_planes(FrameMeta::default(), &[(&y, 64), (&uv, 64)]),
        Err(Error::Write(_))
    ));
    assert_eq!(p.stats().published, 0);
    let uv = vec![0u8; 64 * 16];
    assert!(p
        .publish_planes(FrameMeta::default(), &[(&y, 64), (&uv, 64)])
        .is_ok());
    assert_eq!(p.stats().published, 1);
}

#[test]
fn packets_reach_a_packet_reader_without_a_backend() {
    let dir = temp_dir("packets");
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = publisher(&dir, "rec", stream, true);
    let sps_pps = [0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 4, 5];
    p.set_codec_extradata(&sps_pps).unwrap();
    let reader = PacketReader::connect("rec", sub_opts(&dir)).unwrap();
    let params = reader.codec_params().unwrap();
    assert_eq!(params.codec_id, cuframes::core::packet::AV_CODEC_ID_H264);
    assert_eq!(params.extradata, sps_pps);
    let au = [0, 0, 0, 1, 0x65, 9, 9, 9];
    p.publish_packet(&au, Some(40), Some(40), cuframes::core::packet::PACKET_KEY)
        .unwrap();
    let got = reader.next_packet(Duration::from_secs(5)).unwrap();
    assert_eq!(got.data, au);
    assert_eq!(got.meta.pts_ns, Some(40));
    assert!(got.meta.is_key());
}

#[test]
fn errors_say_what_went_wrong() {
    let dir = temp_dir("errors");
    match Subscriber::connect("nobody", sub_opts(&dir)) {
        Err(Error::Connect(ConnectError::NoPublisher { .. })) => {}
        other => panic!("expected NoPublisher, got {other:?}"),
    }
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let p = publisher(&dir, "cam", stream, false);
    let sub = Subscriber::connect("cam", sub_opts(&dir)).unwrap();
    match sub.next_frame(Duration::ZERO) {
        Err(e) => {
            assert!(e.is_timeout(), "{e}");
            assert!(matches!(e, Error::Recv(RecvError::Timeout(_))));
        }
        Ok(_) => panic!("a frame from an empty ring"),
    }
    // A packets-only reader of a publisher without a packet ring.
    match PacketReader::connect("cam", sub_opts(&dir)) {
        Err(e) => assert!(
            matches!(
                e,
                Error::Connect(ConnectError::NoPacketRing | ConnectError::Rejected { .. })
            ),
            "{e}"
        ),
        Ok(_) => panic!("a packet reader without a packet ring"),
    }
    if !cfg!(feature = "vulkan") {
        let mut o = sub_opts(&dir);
        o.backend = Backend::Vulkan;
        assert!(matches!(
            Subscriber::connect("cam", o),
            Err(Error::NotBuilt(BackendKind::Vulkan))
        ));
    }
    drop(sub);
    p.finish();
}

#[test]
fn waiting_for_a_publisher_that_comes_up_later() {
    let dir = temp_dir("late");
    let d2 = dir.clone();
    let h = std::thread::spawn(move || {
        let mut o = sub_opts(&d2);
        o.wait_publisher = Duration::from_secs(10);
        let sub = Subscriber::connect("late", o).unwrap();
        sub.next_frame(Duration::from_secs(10))
            .unwrap()
            .meta()
            .source_index
    });
    std::thread::sleep(Duration::from_millis(200));
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = publisher(&dir, "late", stream, false);
    assert!(p.wait_for_subscribers(1, Duration::from_secs(10)));
    let y = vec![1u8; 64 * 32];
    let uv = vec![2u8; 64 * 16];
    let meta = FrameMeta {
        source_index: 42,
        ..Default::default()
    };
    p.publish_planes(meta, &[(&y, 64), (&uv, 64)]).unwrap();
    assert_eq!(h.join().unwrap(), 42);
}
