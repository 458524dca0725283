//! The publishing side of each peer, and the setup that starts its children.

use crate::proc::Sub;
use crate::{Kind, Peer, ACK_EVERY, DIR, KIND, TARGET, WAKE};
use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{HostBackend, PacketRingConfig, Publisher, PublisherConfig};
use cuframes_core::{Codec, PixelFormat, PublishPolicy};
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

type IxPublisher = iceoryx2::port::publisher::Publisher<ipc::Service, [u8], ()>;
type IxNotifier = iceoryx2::port::notifier::Notifier<ipc::Service>;

/// iceoryx2's publisher side.
pub struct Ix {
    publisher: IxPublisher,
    notifier: Option<IxNotifier>,
    _node: Node<ipc::Service>,
}

/// One peer's publisher.
pub enum Pub {
    /// cuframes frame ring (host memfd backend).
    CfFrames(Publisher<HostBackend>),
    /// cuframes packet ring.
    CfPackets(Publisher<HostBackend>),
    /// iceoryx2 publish-subscribe of `[u8]`, with an event notifier when the
    /// subscribers block.
    Ix(Box<Ix>),
    /// One Unix stream per subscriber; messages `len: u32 LE, bytes`.
    Sock(Vec<UnixStream>, Vec<u8>),
}

impl Pub {
    /// Publishes `data` once (to every subscriber).
    pub fn send(&mut self, data: &[u8]) {
        match self {
            Pub::CfFrames(p) => {
                let r = p.publish(FrameMeta::default(), |slot, _| {
                    slot.bytes_mut()[..data.len()].copy_from_slice(data);
                    Ok::<(), std::convert::Infallible>(())
                });
                assert!(matches!(
                    r,
                    Ok(cuframes_core::runtime::Published::Committed(_))
                ));
            }
            Pub::CfPackets(p) => {
                p.publish_packet(data, Some(0), Some(0), cuframes_core::packet::PACKET_KEY)
                    .expect("publish_packet");
            }
            Pub::Ix(ix) => {
                let Ix {
                    publisher,
                    notifier,
                    ..
                } = &**ix;
                let s = publisher
                    .loan_slice_uninit(data.len())
                    .expect("iceoryx2 loan");
                s.write_from_slice(data).send().expect("iceoryx2 send");
                if let Some(n) = notifier {
                    n.notify().expect("iceoryx2 notify");
                }
            }
            Pub::Sock(streams, scratch) => {
                let len = (data.len() as u32).to_le_bytes();
                if data.len() <= 64 << 10 {
                    scratch.clear();
                    scratch.extend_from_slice(&len);
                    scratch.extend_from_slice(data);
                    for s in streams.iter_mut() {
                        s.write_all(scratch).expect("socket write");
                    }
                } else {
                    for s in streams.iter_mut() {
                        s.write_all(&len).expect("socket write");
                        s.write_all(data).expect("socket write");
                    }
                }
            }
        }
    }

    /// Ends the stream so the children exit on their own.
    pub fn stop(self) {
        match self {
            Pub::CfFrames(p) | Pub::CfPackets(p) => p.finish(),
            Pub::Ix(ix) => {
                let Ix {
                    publisher,
                    notifier,
                    ..
                } = *ix;
                if let Ok(s) = publisher.loan_slice_uninit(1) {
                    let _ = s.write_from_slice(&[0]).send();
                }
                if let Some(n) = notifier {
                    let _ = n.notify();
                }
                // Let the children read the stop sample before the service goes.
                std::thread::sleep(Duration::from_millis(50));
            }
            Pub::Sock(..) => {}
        }
    }
}

/// What a case needs: peer, item kind, wake mode, subscribers, largest item.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub peer: Peer,
    pub kind: Kind,
    pub poll: bool,
    /// cuframes blocking subscribers: sleep on the futex at once
    /// (`WaitStrategy::FUTEX_ONLY`) instead of the default spin-then-sleep.
    pub futex_only: bool,
    /// cuframes packet readers: read each packet in place
    /// (`Subscriber::next_packet_with`) instead of copying it out.
    pub in_place: bool,
    pub subscribers: usize,
    pub max_len: usize,
    /// Packet runs: items a reader may be behind (sizes the buffers).
    pub window: u64,
}

static CASE: AtomicU32 = AtomicU32::new(0);

/// Creates the publisher, starts the children and waits until all of them
/// are subscribed.
pub fn start(dir: &Path, s: Setup) -> (Pub, Vec<Sub>) {
    let name = format!(
        "cfb-{}-{}",
        std::process::id(),
        CASE.fetch_add(1, Ordering::SeqCst)
    );
    let kind = match s.kind {
        Kind::Latency => "latency",
        Kind::Frames => "frames",
        Kind::Packets => "packets",
    };
    let mut env = vec![
        (KIND, kind.to_owned()),
        (
            WAKE,
            if s.in_place {
                "poll-in-place"
            } else if s.poll {
                "poll"
            } else if s.futex_only {
                "futex-only"
            } else {
                "block"
            }
            .to_owned(),
        ),
        (DIR, dir.display().to_string()),
        (ACK_EVERY, (s.window / 2).max(1).to_string()),
    ];
    let spawn = |env: &[(&str, String)], role: &str| -> Vec<Sub> {
        (0..s.subscribers).map(|_| Sub::spawn(role, env)).collect()
    };
    match s.peer {
        Peer::Cuframes => {
            let stream = StreamDesc::packed(
                crate::FRAME_W as u32,
                crate::FRAME_H as u32,
                PixelFormat::Nv12,
                Codec::H264,
            )
            .expect("stream");
            let mut cfg = PublisherConfig::new(&name);
            cfg.runtime_dir = Some(dir.to_owned());
            cfg.slots =
                std::env::var("CUFRAMES_BENCH_SLOTS").map_or(8, |s| s.parse().expect("slots"));
            cfg.policy = PublishPolicy::Wait;
            cfg.wait_timeout = Duration::from_secs(10);
            if s.kind == Kind::Packets {
                let mut p = PacketRingConfig::new(27);
                // Buffering like iceoryx2's (`window` + 1 samples of
                // `max_len`): the credit window's bytes plus half again for
                // the ring's wrap, at least 1 MiB (a ring much larger than
                // what is in flight only spreads the writes over colder
                // memory). CUFRAMES_BENCH_PACKET_RING overrides it (bytes).
                let sized = (s.window as usize * s.max_len * 3 / 2).max(1 << 20);
                p.data_size = std::env::var("CUFRAMES_BENCH_PACKET_RING")
                    .map_or(sized.next_multiple_of(8) as u32, |v| {
                        v.parse().expect("packet ring bytes")
                    });
                p.max_packet_size = (s.max_len as u32).min(p.data_size);
                cfg.packets = Some(p);
            }
            let p = Publisher::create(HostBackend, cfg, stream).expect("cuframes publisher");
            env.push((TARGET, name));
            let subs = spawn(&env, "cuframes");
            assert!(p.wait_for_subscribers(s.subscribers, Duration::from_secs(10)));
            let p = if s.kind == Kind::Packets {
                Pub::CfPackets(p)
            } else {
                Pub::CfFrames(p)
            };
            (p, subs)
        }
        Peer::Iceoryx2 => {
            set_log_level(LogLevel::Error);
            let node = NodeBuilder::new()
                .create::<ipc::Service>()
                .expect("iceoryx2 node");
            let svc_name = format!("cuframes-bench/{name}");
            let sn: ServiceName = svc_name.as_str().try_into().expect("service name");
            let buffer = if s.kind == Kind::Packets {
                s.window as usize + 1
            } else {
                2
            };
            let svc = node
                .service_builder(&sn)
                .publish_subscribe::<[u8]>()
                .max_publishers(1)
                .max_subscribers(s.subscribers)
                .subscriber_max_buffer_size(buffer)
                .subscriber_max_borrowed_samples(1)
                .history_size(0)
                .enable_safe_overflow(false)
                .create()
                .expect("iceoryx2 service");
            let publisher = svc
                .publisher_builder()
                .initial_max_slice_len(s.max_len)
                .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                .create()
                .expect("iceoryx2 publisher");
            let notifier = (!s.poll && s.kind != Kind::Packets).then(|| {
                let en: ServiceName = format!("{svc_name}/event")
                    .as_str()
                    .try_into()
                    .expect("event name");
                let ev = node
                    .service_builder(&en)
                    .event()
                    .max_listeners(s.subscribers)
                    .create()
                    .expect("iceoryx2 event");
                ev.notifier_builder().create().expect("iceoryx2 notifier")
            });
            env.push((TARGET, svc_name));
            let subs = spawn(&env, "iceoryx2");
            publisher.update_connections().expect("update_connections");
            (
                Pub::Ix(Box::new(Ix {
                    publisher,
                    notifier,
                    _node: node,
                })),
                subs,
            )
        }
        Peer::Socket => {
            let path = dir.join(format!("{name}.sock"));
            let listener = UnixListener::bind(&path).expect("bind bench socket");
            env.push((TARGET, path.display().to_string()));
            let subs = spawn(&env, "socket");
            let streams = (0..s.subscribers)
                .map(|_| listener.accept().expect("accept").0)
                .collect();
            let _ = std::fs::remove_file(&path);
            (Pub::Sock(streams, Vec::new()), subs)
        }
    }
}
