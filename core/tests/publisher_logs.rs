//! What a hostile peer can do to the publisher's logs (issue 12): its HELLO
//! name is escaped in every line, and revocation warnings are rate-limited
//! per subscriber. Own test binary: it installs the global log subscriber.
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    HostBackend, Publisher, PublisherConfig, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn hostile_names_are_escaped_and_revocation_warnings_rate_limited() {
    let logs = Captured::default();
    let w = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || w.clone())
        .init();
    let d = std::env::temp_dir().join(format!("cuframes-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mut cfg = PublisherConfig::new("logs");
    cfg.runtime_dir = Some(d.clone());
    cfg.lease_timeout = Duration::from_millis(10);
    cfg.warn_interval = Duration::from_millis(500);
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(HostBackend, cfg, stream).unwrap();
    let evil = "cam\nINFO cuframes: forged line\u{1b}[31m\u{7}";
    let mut o = SubscribeOptions::new(DeliveryMode::NewestOnly);
    o.runtime_dir = Some(d.clone());
    o.name = evil.into();
    let sub = Subscriber::connect_host("logs", o).unwrap();
    // The subscriber holds every frame for ~4 frame intervals (past the
    // 10 ms lease timeout): nearly every frame is revoked.
    let t0 = Instant::now();
    let mut held = Vec::new();
    while t0.elapsed() < Duration::from_secs(2) {
        let _ = p.publish(FrameMeta::default(), |_, _| Ok::<(), std::io::Error>(()));
        if let Ok(f) = sub.next_frame(Duration::from_millis(1)) {
            held.push(f);
            if held.len() > 3 {
                held.remove(0);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(held);
    let revoked = p.stats().revoked_leases;
    drop(sub);
    drop(p);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warns = text.lines().filter(|l| l.contains("revoked")).count();
    println!("{revoked} leases revoked, {warns} warning lines:\n{text}");
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "raw control bytes in the log"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("INFO cuframes: forged")),
        "forged line"
    );
    assert!(text.contains("cam\\nINFO"), "the name appears escaped");
    assert!(revoked >= 20, "only {revoked} revocations");
    assert!(
        warns <= 5,
        "{warns} revocation warnings for {revoked} revocations in 2 s"
    );
}
