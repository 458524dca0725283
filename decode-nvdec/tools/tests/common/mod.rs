//! Helpers shared by the tools tests (`tools.rs`, `cli.rs`): the binaries
//! of this crate, started over host memory in a test's runtime directory.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub const PUBLISH: &str = env!("CARGO_BIN_EXE_cuframes-publish");
pub const SUBSCRIBE: &str = env!("CARGO_BIN_EXE_cuframes-subscribe");

/// `cuframes-publish` on the host backend, without stats lines, stderr piped.
pub fn publisher(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(PUBLISH);
    c.args([
        "--runtime-dir",
        dir.to_str().unwrap(),
        "--backend",
        "host",
        "--stats-interval",
        "0",
    ]);
    c.args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// `cuframes-subscribe` that waits up to 10 s for its publisher and does not
/// reconnect, stderr piped.
pub fn subscriber(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(SUBSCRIBE);
    c.args([
        "--runtime-dir",
        dir.to_str().unwrap(),
        "--wait-publisher-ms",
        "10000",
        // These tests expect the tool to end when its publisher dies.
        "--no-reconnect",
    ]);
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Waits for `child`, asserting it succeeded.
pub fn finish(child: Child, what: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
