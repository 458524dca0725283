//! Both machines driven against each other through encoded bytes.

use super::*;
use crate::version::Version;
use crate::wire::{
    decode, ErrorCode, GoodbyeReason, Hello, Message, Name, Welcome, HELLO_WANTS_FRAMES,
};
use crate::{DeliveryMode, MemoryKind, SyncKind, PROTOCOL_VERSION};

fn hello(min: Version, max: Version, mode: DeliveryMode) -> Hello {
    Hello {
        version_min: min,
        version_max: max,
        flags: HELLO_WANTS_FRAMES,
        mode,
        gpu_uuid: [0; 16],
        name: Name::new("t").unwrap(),
    }
}

/// Encodes `o` and decodes it again, as the socket would.
fn wire<R>(o: &Outgoing, f: impl FnOnce(Message<'_>) -> R) -> R {
    let mut buf = [0u8; 512];
    let n = o.message().emit(&mut buf).unwrap();
    f(decode(&buf[..n]).unwrap().unwrap().message)
}

fn welcome(version: Version) -> Welcome<'static> {
    Welcome {
        version,
        subscriber_id: 1,
        memory_kind: MemoryKind::HostMemfd,
        sync_kind: SyncKind::HostFence,
        slot_count: 8,
        flags: 0,
        control_size: 4096,
        slot_size: 1 << 20,
        start_seq: 0,
        handle_len: 0,
        handles: &[],
        packet_region_size: 0,
    }
}

#[test]
fn hello_welcome_ping_goodbye() {
    let mut sub = SubscriberHandshake::new(hello(
        PROTOCOL_VERSION,
        PROTOCOL_VERSION,
        DeliveryMode::InOrder,
    ));
    let mut publ = PublisherHandshake::new(PROTOCOL_VERSION);
    let h = sub.poll_transmit().unwrap();
    assert_eq!(sub.state(), SubscriberState::AwaitWelcome);
    let ev = wire(&h, |m| publ.handle(m)).unwrap();
    assert!(matches!(ev, PublisherEvent::Accepted { version, .. } if version == PROTOCOL_VERSION));
    let w = Outgoing::Plain(Message::Welcome(welcome(PROTOCOL_VERSION)));
    assert!(wire(&w, |m| matches!(
        sub.handle(m),
        Ok(SubscriberEvent::Welcomed(_))
    )));
    assert_eq!(sub.state(), SubscriberState::Established(PROTOCOL_VERSION));
    publ.ping(9);
    let ping = publ.poll_transmit().unwrap();
    assert!(wire(&ping, |m| sub.handle(m) == Ok(SubscriberEvent::Nothing)));
    let pong = sub.poll_transmit().unwrap();
    assert_eq!(
        wire(&pong, |m| publ.handle(m)).unwrap(),
        PublisherEvent::Pong(9)
    );
    sub.close();
    let bye = sub.poll_transmit().unwrap();
    assert_eq!(
        wire(&bye, |m| publ.handle(m)).unwrap(),
        PublisherEvent::Goodbye(GoodbyeReason::Normal)
    );
    assert_eq!(publ.state(), PublisherState::Closed);
}

#[test]
fn major_mismatch_is_refused_with_both_versions() {
    let two = Version { major: 2, minor: 0 };
    let mut sub = SubscriberHandshake::new(hello(
        two,
        Version { major: 2, minor: 3 },
        DeliveryMode::InOrder,
    ));
    let mut publ = PublisherHandshake::new(PROTOCOL_VERSION);
    let h = sub.poll_transmit().unwrap();
    assert_eq!(
        wire(&h, |m| publ.handle(m)).unwrap(),
        PublisherEvent::Refused
    );
    let err = publ.poll_transmit().unwrap();
    wire(&err, |m| match sub.handle(m).unwrap() {
        SubscriberEvent::Rejected(e) => {
            assert_eq!(e.code, ErrorCode::VersionMismatch);
            assert!(
                e.text.contains("1.0") && e.text.contains("2.0..=2.3"),
                "{}",
                e.text
            );
        }
        other => panic!("{other:?}"),
    });
    assert_eq!(sub.state(), SubscriberState::Failed);
}

#[test]
fn unknown_mode_and_out_of_order_messages_are_refused() {
    let mut publ = PublisherHandshake::new(PROTOCOL_VERSION);
    let h = Message::Hello(hello(
        PROTOCOL_VERSION,
        PROTOCOL_VERSION,
        DeliveryMode::Unknown(9),
    ));
    assert_eq!(publ.handle(h).unwrap(), PublisherEvent::Refused);
    assert!(matches!(
        publ.poll_transmit(),
        Some(Outgoing::Error {
            code: ErrorCode::Unsupported,
            ..
        })
    ));

    let mut publ = PublisherHandshake::new(PROTOCOL_VERSION);
    assert!(publ.handle(Message::Ping(1)).is_err());
    assert!(matches!(
        publ.poll_transmit(),
        Some(Outgoing::Error {
            code: ErrorCode::BadMessage,
            ..
        })
    ));
    assert_eq!(publ.handle(Message::Ping(1)), Err(HandshakeError::Closed));

    let mut publ = PublisherHandshake::new(PROTOCOL_VERSION);
    assert_eq!(
        publ.handle(Message::Unknown {
            kind: 77,
            payload: &[]
        })
        .unwrap(),
        PublisherEvent::Nothing
    );
    assert_eq!(publ.state(), PublisherState::AwaitHello);
}

#[test]
fn subscriber_checks_welcome() {
    let mut sub = SubscriberHandshake::new(hello(
        PROTOCOL_VERSION,
        PROTOCOL_VERSION,
        DeliveryMode::NewestOnly,
    ));
    sub.poll_transmit();
    let mut w = welcome(PROTOCOL_VERSION);
    w.slot_count = 1;
    assert!(matches!(
        sub.handle(Message::Welcome(w)),
        Err(HandshakeError::BadWelcome(_))
    ));

    let mut sub = SubscriberHandshake::new(hello(
        PROTOCOL_VERSION,
        PROTOCOL_VERSION,
        DeliveryMode::NewestOnly,
    ));
    sub.poll_transmit();
    let w = welcome(Version { major: 1, minor: 5 });
    assert!(matches!(
        sub.handle(Message::Welcome(w)),
        Err(HandshakeError::BadWelcome(_))
    ));
    assert_eq!(sub.state(), SubscriberState::Failed);
}

#[test]
fn welcome_handle_size_follows_memory_and_sync_kinds() {
    // W3: memory handle (0 for fd kinds, 64 for CudaLegacyIpc) + 64 for IpcEvent.
    let handles = [7u8; 2 * 128];
    let cases = [
        (MemoryKind::HostMemfd, SyncKind::HostFence, 0, true),
        (MemoryKind::HostMemfd, SyncKind::HostFence, 64, false),
        (MemoryKind::CudaVmmFd, SyncKind::IpcEvent, 64, true),
        (MemoryKind::CudaVmmFd, SyncKind::IpcEvent, 0, false),
        (MemoryKind::CudaLegacyIpc, SyncKind::HostFence, 64, true),
        (MemoryKind::CudaLegacyIpc, SyncKind::IpcEvent, 128, true),
        (MemoryKind::CudaLegacyIpc, SyncKind::IpcEvent, 64, false),
    ];
    for (memory_kind, sync_kind, len, ok) in cases {
        let mut sub = SubscriberHandshake::new(hello(
            PROTOCOL_VERSION,
            PROTOCOL_VERSION,
            DeliveryMode::InOrder,
        ));
        sub.poll_transmit().unwrap();
        let w = Welcome {
            memory_kind,
            sync_kind,
            slot_count: 2,
            handle_len: len,
            handles: &handles[..2 * len as usize],
            ..welcome(PROTOCOL_VERSION)
        };
        let r = sub.handle(Message::Welcome(w));
        assert_eq!(
            matches!(r, Ok(SubscriberEvent::Welcomed(_))),
            ok,
            "{memory_kind:?} {sync_kind:?} handle_len {len}: {r:?}"
        );
    }
}
