//! One backend test suite, written once against the facade and
//! instantiated for every backend (iceoryx2-style): host memory always;
//! Vulkan with `--features vulkan` (lavapipe in CI; without a Vulkan device
//! each case prints `SKIP:` unless `CUFRAMES_REQUIRE_VULKAN=1`); CUDA with
//! `--features cuda`, `#[ignore]`d as every GPU test is (run on the GPU
//! machine: `scripts/gpu-tests.sh`).
//!
//! Each case publishes with `Backend::X` and subscribes with
//! `Backend::Auto`, so it also checks that the auto choice lands on the
//! backend that exported the slots.

use cuframes::{
    Backend, BackendKind, Codec, DeliveryMode, Error, FrameMeta, PixelFormat, Plane, PublishPolicy,
    Publisher, PublisherOptions, StreamDesc, Subscriber, SubscriberOptions,
};
use std::path::PathBuf;
use std::time::Duration;

/// A private runtime directory, removed afterwards.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(backend: Backend, case: &str) -> Dir {
    let d = std::env::temp_dir().join(format!(
        "cuframes-suite-{}-{backend:?}-{case}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

/// The publisher of `stream` on `backend`, or `None` after a SKIP line when
/// this machine cannot run that backend (Vulkan without a device).
fn publisher(
    backend: Backend,
    d: &Dir,
    key: &str,
    stream: StreamDesc,
    policy: PublishPolicy,
) -> Option<Publisher> {
    let mut o = PublisherOptions::new(key);
    o.backend = backend;
    o.config.runtime_dir = Some(d.0.clone());
    o.config.slots = 4;
    o.config.policy = policy;
    o.config.wait_timeout = Duration::from_secs(5);
    match Publisher::create(o, stream) {
        Ok(p) => Some(p),
        Err(e) if backend == Backend::Vulkan && !require_vulkan() => {
            println!("SKIP: {backend:?} suite: no usable Vulkan device ({e})");
            None
        }
        Err(e) => panic!("{backend:?} publisher: {e}"),
    }
}

fn require_vulkan() -> bool {
    std::env::var_os("CUFRAMES_REQUIRE_VULKAN").is_some_and(|v| v == "1")
}

fn subscriber(d: &Dir, key: &str, mode: DeliveryMode) -> Subscriber {
    let mut o = SubscriberOptions::new(mode);
    o.subscribe.runtime_dir = Some(d.0.clone());
    Subscriber::connect(key, o).unwrap()
}

fn kind(backend: Backend) -> BackendKind {
    match backend {
        Backend::Host | Backend::Auto => BackendKind::Host,
        Backend::Cuda => BackendKind::Cuda,
        Backend::Vulkan => BackendKind::Vulkan,
    }
}

/// Frame `n` of `stream`, packed (rows without padding), and its planes as
/// `(bytes, pitch)` for `publish_planes`.
fn frame(stream: &StreamDesc, n: u8) -> Vec<u8> {
    let layout = stream.validate(stream.frame_size).unwrap();
    (0..layout.packed_size() as usize)
        .map(|i| (i as u8).wrapping_mul(29) ^ n.wrapping_mul(7) ^ ((i >> 9) as u8))
        .collect()
}

fn planes<'a>(stream: &StreamDesc, packed: &'a [u8]) -> Vec<(&'a [u8], usize)> {
    let layout = stream.validate(stream.frame_size).unwrap();
    let mut at = 0;
    layout
        .planes()
        .iter()
        .map(|p| {
            let len = (p.row_bytes() * p.rows()) as usize;
            let plane = &packed[at..at + len];
            at += len;
            (plane, p.row_bytes() as usize)
        })
        .collect()
}

/// Frames published from host planes come back bit-exact, through more
/// frames than slots (every slot reused), with Auto choosing the exporting
/// backend; planes say where they live.
fn round_trip(backend: Backend, format: PixelFormat) {
    let d = dir(backend, &format!("{format:?}"));
    let stream = StreamDesc::packed(96, 54, format, Codec::Hevc).unwrap();
    let Some(mut p) = publisher(backend, &d, "rt", stream, PublishPolicy::Wait) else {
        return;
    };
    assert_eq!(p.backend(), kind(backend));
    let sub = subscriber(&d, "rt", DeliveryMode::InOrder);
    assert_eq!(sub.backend(), kind(backend), "Auto chose another backend");
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    let mut got = Vec::new();
    for n in 0..12u8 {
        let packed = frame(&stream, n);
        let meta = FrameMeta {
            source_index: u64::from(n),
            pts_ns: Some(i64::from(n) * 40_000_000),
            ..Default::default()
        };
        p.publish_planes(meta, &planes(&stream, &packed)).unwrap();
        let f = sub.next_frame(Duration::from_secs(10)).unwrap();
        assert_eq!(f.backend(), kind(backend));
        assert_eq!(f.meta().source_index, u64::from(n));
        assert_eq!(f.meta().pts_ns, Some(i64::from(n) * 40_000_000));
        assert_eq!(f.packed_size(), packed.len());
        let y = f.plane(0).unwrap();
        let (row_bytes, rows) = match y {
            Plane::Host {
                row_bytes, rows, ..
            }
            | Plane::Cuda {
                row_bytes, rows, ..
            }
            | Plane::Vulkan {
                row_bytes, rows, ..
            } => (row_bytes, rows),
        };
        assert_eq!(
            (row_bytes, rows),
            (96 * format.bytes_per_sample().unwrap() as usize, 54)
        );
        match (backend, y) {
            (Backend::Host, Plane::Host { .. })
            | (Backend::Cuda, Plane::Cuda { .. })
            | (Backend::Vulkan, Plane::Vulkan { .. }) => {}
            (b, y) => panic!("{b:?} frame gave {y:?}"),
        }
        f.copy_to_host(&mut got).unwrap();
        assert!(f.release(), "lease revoked");
        assert_eq!(got, packed, "{backend:?} {format:?} frame {n}");
    }
    assert_eq!(p.stats().published, 12);
    drop(sub);
    p.finish();
}

/// A stream change reaches the subscriber as a new ring it imports with the
/// same backend; the old frames come first, the new one is flagged.
fn stream_change(backend: Backend) {
    let d = dir(backend, "change");
    let a = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let b = StreamDesc::packed(128, 72, PixelFormat::Nv12, Codec::H264).unwrap();
    let Some(mut p) = publisher(backend, &d, "ch", a, PublishPolicy::Wait) else {
        return;
    };
    let sub = subscriber(&d, "ch", DeliveryMode::InOrder);
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    let first = frame(&a, 1);
    p.publish_planes(FrameMeta::default(), &planes(&a, &first))
        .unwrap();
    p.change_stream(b).unwrap();
    let second = frame(&b, 2);
    p.publish_planes(FrameMeta::default(), &planes(&b, &second))
        .unwrap();
    let mut got = Vec::new();
    let f = sub.next_frame(Duration::from_secs(10)).unwrap();
    assert!(!f.stream_changed());
    f.copy_to_host(&mut got).unwrap();
    assert_eq!(got, first);
    drop(f);
    let f = sub.next_frame(Duration::from_secs(10)).unwrap();
    assert!(f.stream_changed());
    assert_eq!((f.stream().width, f.stream().height), (128, 72));
    assert_eq!(f.backend(), kind(backend));
    f.copy_to_host(&mut got).unwrap();
    assert_eq!(got, second);
    drop(f);
    drop(sub);
    p.finish();
}

/// With every slot leased by a subscriber that holds its frames, a
/// `DropFrame` publisher drops instead of overwriting; releasing them
/// frees the slots again.
fn held_leases_are_never_overwritten(backend: Backend) {
    let d = dir(backend, "held");
    let s = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let Some(mut p) = publisher(backend, &d, "held", s, PublishPolicy::DropFrame) else {
        return;
    };
    let sub = subscriber(&d, "held", DeliveryMode::InOrder);
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    let mut held = Vec::new();
    for n in 0..4u8 {
        let packed = frame(&s, n);
        p.publish_planes(FrameMeta::default(), &planes(&s, &packed))
            .unwrap();
        held.push((
            sub.next_frame(Duration::from_secs(10))
                .unwrap()
                .into_owned(),
            packed,
        ));
    }
    // Every slot is leased: the next frame has nowhere to go.
    let extra = frame(&s, 9);
    assert!(matches!(
        p.publish_planes(FrameMeta::default(), &planes(&s, &extra)),
        Err(Error::Dropped)
    ));
    let mut got = Vec::new();
    for (f, packed) in held.drain(..) {
        f.copy_to_host(&mut got).unwrap();
        assert_eq!(got, packed, "a held frame was overwritten");
        assert!(f.release());
    }
    p.publish_planes(FrameMeta::default(), &planes(&s, &extra))
        .unwrap();
    let f = sub.next_frame(Duration::from_secs(10)).unwrap();
    f.copy_to_host(&mut got).unwrap();
    assert_eq!(got, extra);
    drop(f);
    drop(sub);
    p.finish();
}

/// The publisher's end of stream ends the subscriber after the frames left.
fn end_of_stream(backend: Backend) {
    let d = dir(backend, "eos");
    let s = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let Some(mut p) = publisher(backend, &d, "eos", s, PublishPolicy::Wait) else {
        return;
    };
    let sub = subscriber(&d, "eos", DeliveryMode::InOrder);
    assert!(p.wait_for_subscribers(1, Duration::from_secs(5)));
    let packed = frame(&s, 3);
    p.publish_planes(FrameMeta::default(), &planes(&s, &packed))
        .unwrap();
    p.finish();
    let f = sub.next_frame(Duration::from_secs(10)).unwrap();
    drop(f);
    match sub.next_frame(Duration::from_secs(10)) {
        Err(e) => assert!(e.is_disconnected(), "{e}"),
        Ok(_) => panic!("a frame after the end of stream"),
    }
    assert_eq!(sub.end_reason(), Some(cuframes::EndReason::EndOfStream));
}

/// Instantiates the suite for one backend.
macro_rules! suite {
    ($name:ident, $backend:expr $(, #[$attr:meta])?) => {
        mod $name {
            use super::*;

            #[test]
            $(#[$attr])?
            fn nv12_round_trip() {
                round_trip($backend, PixelFormat::Nv12);
            }

            #[test]
            $(#[$attr])?
            fn p010_round_trip() {
                round_trip($backend, PixelFormat::P010);
            }

            #[test]
            $(#[$attr])?
            fn stream_change_reimports() {
                stream_change($backend);
            }

            #[test]
            $(#[$attr])?
            fn held_leases_are_never_overwritten() {
                super::held_leases_are_never_overwritten($backend);
            }

            #[test]
            $(#[$attr])?
            fn end_of_stream_ends_the_subscriber() {
                end_of_stream($backend);
            }
        }
    };
}

suite!(host, Backend::Host);
#[cfg(feature = "vulkan")]
suite!(vulkan, Backend::Vulkan);
#[cfg(feature = "cuda")]
suite!(cuda, Backend::Cuda, #[ignore = "needs an NVIDIA GPU: run by scripts/gpu-tests.sh"]);
