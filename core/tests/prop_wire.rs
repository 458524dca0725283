//! Property tests of the control plane (`docs/protocol.md` §4, §6, §7):
//! every message round-trips; the decoder never panics on any bytes; the
//! handshake machines never panic on any message sequence and only ever
//! queue messages that encode; version negotiation and code conversions are
//! total.

use cuframes_core::handshake::{
    PublisherEvent, PublisherHandshake, PublisherState, SubscriberEvent, SubscriberHandshake,
    SubscriberState,
};
use cuframes_core::wire::{
    decode, ErrorCode, ErrorMsg, GoodbyeReason, Hello, Message, MessageType, Name, Welcome,
    WireError, HEADER_LEN, MAX_ERROR_TEXT, MAX_HANDLE_LEN, MAX_NAME_LEN, MAX_PAYLOAD,
};
use cuframes_core::{DeliveryMode, MemoryKind, StreamKey, SyncKind, Version, PROTOCOL_VERSION};
use proptest::prelude::*;

/// A message with owned payloads (`Message` borrows them).
#[derive(Debug, Clone)]
enum Owned {
    Hello(Hello),
    Welcome {
        fixed: Welcome<'static>,
        handles: Vec<u8>,
    },
    Error(u32, String),
    Ping(u64),
    Pong(u64),
    Goodbye(u32),
    StreamChanged(u64),
    Release(u64),
    Unknown(u32, Vec<u8>),
}

impl Owned {
    fn message(&self) -> Message<'_> {
        match self {
            Owned::Hello(h) => Message::Hello(*h),
            Owned::Welcome { fixed, handles } => Message::Welcome(Welcome { handles, ..*fixed }),
            Owned::Error(c, t) => Message::Error(ErrorMsg {
                code: ErrorCode::from_code(*c),
                text: t,
            }),
            Owned::Ping(v) => Message::Ping(*v),
            Owned::Pong(v) => Message::Pong(*v),
            Owned::Goodbye(r) => Message::Goodbye(GoodbyeReason::from_code(*r)),
            Owned::StreamChanged(v) => Message::StreamChanged(*v),
            Owned::Release(v) => Message::Release(*v),
            Owned::Unknown(k, p) => Message::Unknown {
                kind: *k,
                payload: p,
            },
        }
    }
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![
        3 => Just(PROTOCOL_VERSION),
        1 => (0u16..4, 0u16..4).prop_map(|(major, minor)| Version { major, minor }),
        1 => any::<u32>().prop_map(Version::from_wire),
    ]
}

fn name() -> impl Strategy<Value = Name> {
    "\\PC{0,40}".prop_map(|s| Name::truncated(&s))
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        version(),
        version(),
        any::<u32>(),
        prop_oneof![Just(1u32), Just(2), any::<u32>()],
        any::<[u8; 16]>(),
        name(),
    )
        .prop_map(
            |(version_min, version_max, flags, mode, gpu_uuid, name)| Hello {
                version_min,
                version_max,
                flags: flags & 7,
                mode: DeliveryMode::from_code(mode),
                gpu_uuid,
                name,
            },
        )
}

fn welcome() -> impl Strategy<Value = Owned> {
    (
        version(),
        any::<u32>(),
        0u32..6,
        0u32..4,
        0u32..=64,
        any::<(u32, u64, u64, u64)>(),
        prop_oneof![Just(0u32), 1u32..=MAX_HANDLE_LEN as u32],
    )
        .prop_flat_map(|(v, id, mk, sk, count, (flags, cs, ss, start), hl)| {
            prop::collection::vec(any::<u8>(), (hl * count) as usize).prop_map(move |handles| {
                Owned::Welcome {
                    fixed: Welcome {
                        version: v,
                        subscriber_id: id,
                        memory_kind: MemoryKind::from_code(mk),
                        sync_kind: SyncKind::from_code(sk),
                        slot_count: count,
                        flags,
                        control_size: cs,
                        slot_size: ss,
                        start_seq: start,
                        handle_len: hl,
                        handles: &[],
                        // Carried only with the HAS_PACKETS flag (bit 0, §9.6).
                        packet_region_size: if flags & 1 != 0 { ss } else { 0 },
                    },
                    handles,
                }
            })
        })
}

fn message() -> impl Strategy<Value = Owned> {
    prop_oneof![
        hello().prop_map(Owned::Hello),
        welcome(),
        (any::<u32>(), "\\PC{0,80}").prop_map(|(c, t)| Owned::Error(c, t)),
        any::<u64>().prop_map(Owned::Ping),
        any::<u64>().prop_map(Owned::Pong),
        any::<u32>().prop_map(Owned::Goodbye),
        any::<u64>().prop_map(Owned::StreamChanged),
        any::<u64>().prop_map(Owned::Release),
        (9u32.., prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(k, p)| Owned::Unknown(k, p)),
    ]
}

/// Decodes everything in `buf`; checks each decoded message re-encodes.
fn decode_all(buf: &[u8]) {
    let mut rest = buf;
    loop {
        match decode(rest) {
            Ok(Some(d)) => {
                assert!(d.len >= HEADER_LEN && d.len <= rest.len());
                let mut out = vec![0u8; d.message.buffer_len()];
                let n = d.message.emit(&mut out).expect("a decoded message encodes");
                assert_eq!(decode(&out[..n]).unwrap().unwrap().message, d.message);
                rest = &rest[d.len..];
            }
            Ok(None) => {
                // Only a short header or a truncated payload is "need more".
                if rest.len() >= HEADER_LEN {
                    let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
                    assert!(rest.len() < HEADER_LEN + len);
                }
                return;
            }
            Err(_) => return,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(m in message()) {
        let msg = m.message();
        let mut buf = vec![0u8; msg.buffer_len() + 3];
        let n = msg.emit(&mut buf).unwrap();
        prop_assert_eq!(n, msg.buffer_len());
        let d = decode(&buf[..n]).unwrap().unwrap();
        prop_assert_eq!(d.len, n);
        prop_assert_eq!(d.message, msg);
        prop_assert_eq!(d.message.kind(), msg.kind());
        // Any prefix asks for more; a short buffer is refused, not overrun.
        for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, n - 1] {
            if cut < n {
                prop_assert_eq!(decode(&buf[..cut]), Ok(None));
            }
        }
        let mut small = vec![0u8; n - 1];
        prop_assert_eq!(msg.emit(&mut small), Err(WireError::BufferTooSmall { have: n - 1, need: n }));
        // Trailing bytes of a longer payload are ignored (§4.1), except by
        // Unknown, which keeps its whole payload.
        if !matches!(msg, Message::Unknown { .. }) {
            let mut longer = buf[..n].to_vec();
            longer.extend_from_slice(&[0xAB; 5]);
            let len = (n - HEADER_LEN + 5) as u32;
            longer[4..8].copy_from_slice(&len.to_le_bytes());
            let d = decode(&longer).unwrap().unwrap();
            prop_assert_eq!(d.len, n + 5);
            prop_assert_eq!(d.message, msg);
        }
    }

    #[test]
    fn decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        decode_all(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_plausible_frames(
        kind in 0u32..10,
        len in prop_oneof![0u32..200, Just(MAX_PAYLOAD as u32), Just(MAX_PAYLOAD as u32 + 1), any::<u32>()],
        body in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&body);
        if len as usize > MAX_PAYLOAD {
            prop_assert_eq!(decode(&b), Err(WireError::TooLong(len)));
        }
        decode_all(&b);
    }

    #[test]
    fn limits_are_enforced(name_len in 0usize..200, text_len in 0usize..2000) {
        let name: String = "n".repeat(name_len);
        prop_assert_eq!(Name::new(&name).is_ok(), name_len <= MAX_NAME_LEN);
        let text: String = "t".repeat(text_len);
        let m = Message::Error(ErrorMsg { code: ErrorCode::Internal, text: &text });
        let mut buf = vec![0u8; m.buffer_len()];
        prop_assert_eq!(m.emit(&mut buf).is_ok(), text_len <= MAX_ERROR_TEXT);
    }

    #[test]
    fn publisher_machine_survives_any_sequence(ms in prop::collection::vec(message(), 0..12)) {
        let mut p = PublisherHandshake::new(PROTOCOL_VERSION);
        let mut ended = false;
        for m in &ms {
            let before = p.state();
            let r = p.handle(m.message());
            if ended {
                prop_assert!(r.is_err());
                prop_assert_eq!(p.state(), before);
            }
            if let Ok(PublisherEvent::Accepted { version, .. }) = r {
                prop_assert_eq!(before, PublisherState::AwaitHello);
                prop_assert_eq!(version.major, PROTOCOL_VERSION.major);
                prop_assert_eq!(p.state(), PublisherState::Established(version));
            }
            ended = matches!(p.state(), PublisherState::Closed | PublisherState::Failed);
            while let Some(o) = p.poll_transmit() {
                let msg = o.message();
                let mut buf = vec![0u8; msg.buffer_len()];
                msg.emit(&mut buf).expect("queued messages encode");
                prop_assert_eq!(decode(&buf).unwrap().unwrap().message, msg);
            }
        }
    }

    #[test]
    fn subscriber_machine_survives_any_sequence(h in hello(), send_first in any::<bool>(), ms in prop::collection::vec(message(), 0..12)) {
        let mut s = SubscriberHandshake::new(h);
        if send_first {
            prop_assert!(matches!(s.poll_transmit().map(|o| o.message().kind()), Some(MessageType::Hello)));
            prop_assert_eq!(s.state(), SubscriberState::AwaitWelcome);
        }
        let mut ended = false;
        for m in &ms {
            let before = s.state();
            let r = s.handle(m.message());
            if ended {
                prop_assert!(r.is_err());
                prop_assert_eq!(s.state(), before);
            }
            if let Ok(SubscriberEvent::Welcomed(w)) = r {
                // The first WELCOME, or the one after STREAM_CHANGED (§6).
                prop_assert!(
                    matches!(before, SubscriberState::AwaitWelcome | SubscriberState::AwaitRewelcome(_)),
                    "WELCOME accepted in {:?}", before
                );
                prop_assert!(h.version_min <= w.version && w.version <= h.version_max);
                prop_assert!((2..=64).contains(&w.slot_count));
            }
            ended = matches!(s.state(), SubscriberState::Closed | SubscriberState::Failed);
            while let Some(o) = s.poll_transmit() {
                let msg = o.message();
                let mut buf = vec![0u8; msg.buffer_len()];
                msg.emit(&mut buf).expect("queued messages encode");
            }
        }
    }

    #[test]
    fn negotiation_stays_in_range(ours in version(), min in version(), max in version()) {
        if let Some(v) = Version::negotiate(ours, min, max) {
            prop_assert!(min <= v && v <= max);
            prop_assert_eq!(v.major, ours.major);
            prop_assert!(v <= ours);
        }
        prop_assert_eq!(Version::from_wire(ours.to_wire()), ours);
    }

    #[test]
    fn codes_round_trip(c in any::<u32>()) {
        prop_assert_eq!(MessageType::from_code(c).code(), c);
        prop_assert_eq!(ErrorCode::from_code(c).code(), c);
        prop_assert_eq!(GoodbyeReason::from_code(c).code(), c);
        prop_assert_eq!(MemoryKind::from_code(c).code(), c);
        prop_assert_eq!(SyncKind::from_code(c).code(), c);
        prop_assert_eq!(DeliveryMode::from_code(c).code(), c);
        prop_assert_eq!(cuframes_core::PixelFormat::from_code(c).code(), c);
        prop_assert_eq!(cuframes_core::Codec::from_code(c).code(), c);
    }

    #[test]
    fn stream_keys_are_checked_not_trusted(k in "\\PC{0,70}|[A-Za-z0-9_-]{0,70}") {
        let ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        prop_assert_eq!(StreamKey::new(&k).is_ok(), ok, "{:?}", k);
    }
}
