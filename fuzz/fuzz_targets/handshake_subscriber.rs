//! Arbitrary bytes as the stream a subscriber reads after sending HELLO (or,
//! per the first byte, before): every decodable message goes to
//! `SubscriberHandshake::handle`. It must never panic, stay closed once
//! Closed/Failed, accept a WELCOME only in AwaitWelcome (or, after
//! STREAM_CHANGED, in AwaitRewelcome with the negotiated version) and only if
//! it passes W1–W3 (`docs/protocol.md` §6), and queue only encodable messages.
#![no_main]

use cuframes_core::handshake::{SubscriberEvent, SubscriberHandshake, SubscriberState};
use cuframes_core::wire::{decode, Hello, Name, HELLO_WANTS_FRAMES};
use cuframes_core::{DeliveryMode, MemoryKind, SyncKind, Version, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let hello = Hello {
        version_min: Version { major: 1, minor: 0 },
        version_max: Version {
            major: 1,
            minor: u16::from(first >> 4),
        },
        flags: HELLO_WANTS_FRAMES,
        mode: if first & 2 != 0 {
            DeliveryMode::InOrder
        } else {
            DeliveryMode::NewestOnly
        },
        gpu_uuid: [0; 16],
        name: Name::new("fuzz").unwrap(),
    };
    let mut s = SubscriberHandshake::new(hello);
    if first & 1 != 0 {
        assert!(s.poll_transmit().is_some());
        assert_eq!(s.state(), SubscriberState::AwaitWelcome);
    }
    let mut buf = vec![0u8; 16 * 1024 + 64];
    while let Ok(Some(d)) = decode(rest) {
        let before = s.state();
        let r = s.handle(d.message);
        if matches!(before, SubscriberState::Closed | SubscriberState::Failed) {
            assert!(r.is_err());
            assert_eq!(s.state(), before);
        }
        if let Ok(SubscriberEvent::Welcomed(w)) = r {
            // The first WELCOME, or the re-WELCOME after STREAM_CHANGED,
            // which must keep the negotiated version.
            match before {
                SubscriberState::AwaitWelcome => {}
                SubscriberState::AwaitRewelcome(v) => assert_eq!(w.version, v),
                other => panic!("WELCOME accepted in {other:?}"),
            }
            assert!(hello.version_min <= w.version && w.version <= hello.version_max);
            assert!((2..=64).contains(&w.slot_count));
            // W3: memory handle (0 for fd kinds, 64 for CudaLegacyIpc),
            // plus a 64-byte event handle under IpcEvent.
            // Unknown kinds are left to W4 (the backend refuses them).
            let memory = match w.memory_kind {
                MemoryKind::CudaLegacyIpc => Some(64),
                MemoryKind::Unknown(_) => None,
                _ => Some(0),
            };
            let event = if w.sync_kind == SyncKind::IpcEvent { 64 } else { 0 };
            if let Some(m) = memory {
                assert_eq!(w.handle_len, m + event);
            }
            assert_eq!(s.state(), SubscriberState::Established(w.version));
        }
        if first & 4 != 0 && d.len % 7 == 0 {
            s.close();
            assert_eq!(s.state(), SubscriberState::Closed);
        }
        while let Some(o) = s.poll_transmit() {
            let m = o.message();
            let n = m.emit(&mut buf).expect("queued message encodes");
            assert_eq!(decode(&buf[..n]).unwrap().unwrap().message, m);
        }
        rest = &rest[d.len..];
    }
    let _ = PROTOCOL_VERSION;
});
