//! `Subscriber::end_reason` tells the application why its publisher went
//! away: a clean end of stream, a deliberate shutdown (the tools' exit
//! status depends on it; a crash is covered by
//! `decode-nvdec/tests/tools.rs`, which kills a publisher process).
#![cfg(target_os = "linux")]

use cuframes_core::layout::StreamDesc;
use cuframes_core::ring::FrameMeta;
use cuframes_core::runtime::{
    EndReason, HostBackend, Publisher, PublisherConfig, RecvError, SubscribeOptions, Subscriber,
};
use cuframes_core::{Codec, DeliveryMode, PixelFormat};
use std::convert::Infallible;
use std::time::Duration;

fn run(key: &str, finish: bool) -> (u64, Option<EndReason>) {
    let dir = std::env::temp_dir().join(format!("cuframes-end-{}-{key}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = PublisherConfig::new(key);
    cfg.runtime_dir = Some(dir.clone());
    let stream = StreamDesc::packed(64, 32, PixelFormat::Nv12, Codec::H264).unwrap();
    let mut p = Publisher::create(HostBackend, cfg, stream).unwrap();
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(dir.clone());
    let sub = Subscriber::connect_host(key, o).unwrap();
    for _ in 0..3 {
        p.publish(FrameMeta::default(), |_, _| Ok::<(), Infallible>(()))
            .unwrap();
    }
    assert_eq!(sub.end_reason(), None);
    if finish {
        p.finish();
    } else {
        drop(p);
    }
    let mut got = 0;
    loop {
        match sub.next_frame(Duration::from_secs(5)) {
            Ok(_) => got += 1,
            Err(RecvError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (got, sub.end_reason())
}

#[test]
fn finish_is_end_of_stream() {
    // Every frame is delivered first, then the reason is known (the
    // subscriber waits for GOODBYE after the ring closed).
    assert_eq!(run("eos", true), (3, Some(EndReason::EndOfStream)));
}

#[test]
fn drop_is_shutdown() {
    assert_eq!(run("drop", false), (3, Some(EndReason::Shutdown)));
}
