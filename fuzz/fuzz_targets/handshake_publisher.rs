//! Arbitrary bytes as the stream a publisher reads from one connection: every
//! decodable message goes to `PublisherHandshake::handle`. The machine must
//! never panic, must stay closed once Closed/Failed, may only accept a HELLO
//! in AwaitHello with a version of its own major, and may only queue
//! messages that encode and decode again.
#![no_main]

use cuframes_core::handshake::{PublisherEvent, PublisherHandshake, PublisherState};
use cuframes_core::wire::decode;
use cuframes_core::{Version, PROTOCOL_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // First two bytes: the publisher's own minor version.
    let (ours, mut rest) = match data {
        [a, b, rest @ ..] => (
            Version {
                major: PROTOCOL_VERSION.major,
                minor: u16::from_le_bytes([*a, *b]) % 4,
            },
            rest,
        ),
        _ => (PROTOCOL_VERSION, data),
    };
    let mut p = PublisherHandshake::new(ours);
    let mut buf = vec![0u8; 16 * 1024 + 64];
    while let Ok(Some(d)) = decode(rest) {
        let before = p.state();
        let r = p.handle(d.message);
        let closed = matches!(before, PublisherState::Closed | PublisherState::Failed);
        if closed {
            assert!(r.is_err());
            assert_eq!(p.state(), before);
        }
        if let Ok(PublisherEvent::Accepted { version, hello }) = r {
            assert_eq!(before, PublisherState::AwaitHello);
            assert_eq!(version.major, ours.major);
            assert!(version <= ours);
            assert!(hello.version_min <= version && version <= hello.version_max);
            assert_eq!(p.state(), PublisherState::Established(version));
        }
        while let Some(o) = p.poll_transmit() {
            let m = o.message();
            let n = m.emit(&mut buf).expect("queued message encodes");
            assert_eq!(decode(&buf[..n]).unwrap().unwrap().message, m);
        }
        rest = &rest[d.len..];
    }
});
