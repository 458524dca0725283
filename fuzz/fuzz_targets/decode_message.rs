//! Arbitrary bytes into the TLV decoder: it must return an error or a
//! message, never panic, and whatever it decodes must re-encode to the same
//! bytes (minus any ignored payload tail).
#![no_main]

use cuframes_core::wire::{decode, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(d)) = decode(rest) {
        let mut out = vec![0u8; d.message.buffer_len()];
        if let Ok(n) = d.message.emit(&mut out) {
            let again = decode(&out[..n])
                .expect("re-encoded message decodes")
                .expect("whole");
            assert_eq!(again.message, d.message);
            if !matches!(d.message, Message::Unknown { .. }) {
                assert!(n <= d.len);
            }
        }
        rest = &rest[d.len..];
    }
});
