use super::*;
use cuframes_media::demux::RtspTransport;
use std::time::Duration;

fn err(text: &str) -> String {
    match ServiceConfig::from_toml(text, None) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

/// The field table of these module docs and of docs/cameras.md are
/// the same rows: a field added to one must reach the other.
#[test]
fn docs_cameras_md_has_this_field_table() {
    fn rows<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<String> {
        lines
            .map(str::trim)
            .skip_while(|l| !l.starts_with("| field | default | meaning |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(str::to_owned)
            .collect()
    }
    let here = rows(
        include_str!("mod.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!")),
    );
    let doc = rows(include_str!("../../../../docs/cameras.md").lines());
    assert!(here.len() > 20, "the module docs' table: {here:?}");
    assert_eq!(
        here, doc,
        "docs/cameras.md's field table differs from config.rs's"
    );
}

#[test]
fn defaults_apply_and_a_stream_wins() {
    let c = ServiceConfig::from_toml(
        r#"
        stats_interval = 2.5
        [defaults]
        ring = 4
        transport = "tcp"
        [[stream]]
        key = "a"
        url = "rtsp://user:pw@127.0.0.1:8554/a"
        [[stream]]
        key = "b"
        url = "rtsp://127.0.0.1:8554/b"
        ring = 16
        transport = "udp"
        packets = true
        handshake_timeout_ms = 500
        max_lag_events = 3
        "#,
        None,
    )
    .unwrap();
    assert_eq!(c.stats_interval, 2.5);
    assert_eq!(c.streams.len(), 2);
    assert_eq!(c.streams[0].config.slots, 4);
    assert_eq!(c.streams[0].source.transport, RtspTransport::Tcp);
    assert_eq!(c.streams[1].config.slots, 16);
    assert_eq!(c.streams[1].source.transport, RtspTransport::Udp);
    assert!(c.streams[0].packets.is_none());
    assert_eq!(c.streams[1].packets.unwrap().data_size, 8 << 20);
    assert_eq!(
        c.streams[0].config.handshake_timeout,
        Duration::from_secs(3)
    );
    assert_eq!(c.streams[0].config.max_lag_events, None);
    assert_eq!(
        c.streams[1].config.handshake_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(c.streams[1].config.max_lag_events, Some(3));
}

#[test]
fn streams_are_spread_over_the_gpus_and_pinned_ones_checked() {
    use crate::stream::{assign_gpus, GpuChoice};
    let text = r#"
        [[stream]]
        key = "a"
        url = "rtsp://h/a"
        gpu = 1
        [[stream]]
        key = "b"
        url = "rtsp://h/b"
        [[stream]]
        key = "c"
        url = "rtsp://h/c"
        gpu = "auto"
        [[stream]]
        key = "d"
        url = "rtsp://h/d"
        backend = "host"
        [[stream]]
        key = "e"
        url = "rtsp://h/e"
        device = 1
        backend = "cuda"
        [[stream]]
        key = "f"
        url = "rtsp://h/f"
    "#;
    let c = ServiceConfig::from_toml(text, None).unwrap();
    assert_eq!(c.streams[0].gpu, GpuChoice::Index(1));
    assert_eq!(c.streams[1].gpu, GpuChoice::Auto);
    assert_eq!(c.streams[2].gpu, GpuChoice::Auto);
    // `device`, the older name, is the same field.
    assert_eq!(c.streams[4].gpu, GpuChoice::Index(1));
    let device = |s: &StreamSpec| s.cuda_config().map(|c| c.device);
    // Two GPUs: a and e pinned to 1, so b, c and f go 0, 0, then the
    // least loaded (0 with 2, 1 with 2: the lower ordinal).
    let mut two = c.streams.clone();
    assign_gpus(&mut two, Some(2)).unwrap();
    let got: Vec<_> = two.iter().map(device).collect();
    assert_eq!(
        got,
        [Some(1), Some(0), Some(0), None, Some(1), Some(0)],
        "{two:?}"
    );
    assert_eq!(two[1].gpu, GpuChoice::Index(0));
    // Four GPUs: the auto streams take the empty ones in order.
    let mut four = c.streams.clone();
    assign_gpus(&mut four, Some(4)).unwrap();
    let got: Vec<_> = four.iter().map(device).collect();
    assert_eq!(got, [Some(1), Some(0), Some(2), None, Some(1), Some(3)]);
    // One GPU: a's `gpu = 1` does not exist: one line naming it.
    let mut one = c.streams.clone();
    let e = assign_gpus(&mut one, Some(1)).unwrap_err().to_string();
    assert_eq!(
        e,
        "stream a: gpu 1 is out of range: this host has 1 CUDA device(s) (0..=0)"
    );
    // No driver: nothing to check or spread (backend auto falls back
    // to host memory; backend cuda fails when its stream starts).
    let mut none = c.streams.clone();
    assign_gpus(&mut none, None).unwrap();
    assert_eq!(none[1].gpu, GpuChoice::Auto);
    // No GPU but a driver: only an explicit `backend = "cuda"` fails.
    let mut zero = c.streams.clone();
    let e = assign_gpus(&mut zero, Some(0)).unwrap_err().to_string();
    assert!(e.starts_with("stream e: gpu 1"), "{e}");
    assert!(e.contains("has 0 CUDA device(s)"), "{e}");
}

#[test]
fn bad_files_give_one_line_naming_the_problem() {
    let one = |t: &str, want: &str| {
        let e = err(t);
        assert!(e.contains(want), "{want:?} not in {e:?}");
        assert!(!e.contains('\n'), "not one line: {e:?}");
    };
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nfps = 3\n",
        "unknown field `fps`",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\n[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/b\"\n",
        "\"a\" appears more than once",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp:/h/a\"\n",
        "not a URL",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"cuda\"\nsync = \"timeline\"\n",
        "sync \"timeline\" needs backend \"vulkan\"",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"vulkan\"\nsync = \"ipc-event\"\n",
        "sync \"ipc-event\" needs backend \"cuda\"",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"vulkan\"\ndecoder = \"nvdec\"\n",
        "decoder \"nvdec\" needs backend",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"gopher://h/a\"\n",
        "unsupported scheme",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://u:secret@/a\"\n",
        "no host",
    );
    assert!(!err("[[stream]]\nkey = \"a\"\nurl = \"rtsp://u:secret@/a\"\n").contains("secret"));
    one(
        "[[stream]]\nkey = \"a\"\nfile = \"/nonexistent/x.mp4\"\n",
        "/nonexistent/x.mp4",
    );
    one("[[stream]]\nkey = \"a\"\n", "no input");
    one("[[stream]]\nurl = \"rtsp://h/a\"\n", "stream #1: no `key`");
    one(
        "[[stream]]\nkey = \"a b\"\nurl = \"rtsp://h/a\"\n",
        "invalid key",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nring = 99\n",
        "ring 99 is outside 2..=64",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nmax_lag_events = 0\n",
        "max_lag_events 0 is outside",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ntransport = \"quic\"\n",
        "unknown variant `quic`",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\nbackend = \"host\"\ndecoder = \"nvdec\"\n",
        "needs backend",
    );
    one(
        "stats_interval = nan\n[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\n",
        "stats_interval",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ngpu = -1\n",
        "gpu -1 is not a GPU ordinal",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ngpu = \"all\"\n",
        "gpu \"all\" is neither a GPU ordinal nor \"auto\"",
    );
    one(
        "[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\ngpu = 1\ndevice = 1\n",
        "duplicate field",
    );
    one("", "no [[stream]]");
}

#[test]
fn defaults_come_from_core_and_media_and_keep_their_documented_values() {
    // docs/cameras.md's table: io 5000, lease 5000, wait 2000, handshake
    // 3000, reconnect 1000 doubling to 30000 (ms).
    assert_eq!(super::DEFAULT_IO_TIMEOUT_MS, 5000);
    assert_eq!(super::DEFAULT_LEASE_TIMEOUT_MS, 5000);
    assert_eq!(super::DEFAULT_WAIT_TIMEOUT_MS, 2000);
    assert_eq!(super::DEFAULT_HANDSHAKE_TIMEOUT_MS, 3000);
    assert_eq!(super::DEFAULT_RECONNECT_INITIAL_MS, 1000);
    assert_eq!(super::DEFAULT_RECONNECT_MAX_MS, 30_000);
    let c =
        ServiceConfig::from_toml("[[stream]]\nkey = \"a\"\nurl = \"rtsp://h/a\"\n", None).unwrap();
    let s = &c.streams[0];
    assert_eq!(
        s.source.io_timeout,
        cuframes_media::demux::DEFAULT_IO_TIMEOUT
    );
    assert_eq!(
        s.config.lease_timeout,
        cuframes_core::runtime::PublisherConfig::DEFAULT_LEASE_TIMEOUT
    );
    assert_eq!(s.reconnect, super::DEFAULT_RECONNECT);
}
