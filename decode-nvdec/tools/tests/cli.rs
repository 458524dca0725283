//! The tools' command lines as real processes: bad input and nonsense
//! values refused with one clear line, exit statuses when a publisher dies
//! or ends, access control (socket mode, uid allow-lists, the publisher's
//! uid), FIFO inputs, corrupt packets.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cuframes_testkit::media;
use cuframes_testkit::rtsp::RtspServer;

mod common;
use common::{finish, publisher, subscriber, PUBLISH, SUBSCRIBE};

/// A fresh runtime directory for one test of this file.
fn runtime_dir(test: &str) -> PathBuf {
    cuframes_testkit::runtime_dir("cli", test)
}

fn fails_with(cmd: &mut Command, needle: &str) {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_gets_a_clear_message_and_non_zero_exit() {
    let dir = runtime_dir("bad");
    let clip = media("sample-h264.mp4");
    let missing = media("no-such-file.mp4");
    fails_with(
        &mut publisher(&dir, &["--input", missing.to_str().unwrap(), "--key", "b"]),
        "no-such-file.mp4",
    );
    let junk = media("not-video.bin");
    fails_with(
        &mut publisher(&dir, &["--input", junk.to_str().unwrap(), "--key", "b"]),
        "not-video.bin",
    );
    let mpeg4 = media("unsupported-mpeg4.avi");
    fails_with(
        &mut publisher(&dir, &["--input", mpeg4.to_str().unwrap(), "--key", "b"]),
        "mpeg4",
    );
    fails_with(
        &mut publisher(&dir, &["--input", clip.to_str().unwrap(), "--key", "../x"]),
        "invalid --key",
    );
    fails_with(
        &mut publisher(
            &dir,
            &[
                "--input",
                clip.to_str().unwrap(),
                "--key",
                "b",
                "--ring",
                "1",
            ],
        ),
        "--ring <RING>",
    );
    fails_with(
        &mut subscriber(&dir, &["--key", "nobody", "--wait-publisher-ms", "0"]),
        "no publisher on key \"nobody\"",
    );
    fails_with(
        &mut subscriber(&dir, &["--key", "a/b"]),
        "invalid stream key",
    );

    let live = publisher(
        &dir,
        &[
            "--input",
            clip.to_str().unwrap(),
            "--key",
            "live",
            "--realtime",
            "--loop",
        ],
    )
    .spawn()
    .unwrap();
    let sock = dir.join("live.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    fails_with(
        &mut publisher(&dir, &["--input", clip.to_str().unwrap(), "--key", "live"]),
        "already live",
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(live.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    finish(live, "live publisher");
}

/// Spawns a looping, paced publisher on `key` and waits for its socket.
fn live_publisher(dir: &Path, key: &str) -> Child {
    let clip = media("sample-h264.mp4");
    let child = publisher(
        dir,
        &[
            "--input",
            clip.to_str().unwrap(),
            "--key",
            key,
            "--realtime",
            "--loop",
        ],
    )
    .spawn()
    .unwrap();
    let sock = dir.join(format!("{key}.sock"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        sig,
    )
    .unwrap();
}

/// Waits up to `limit` for `child` to exit; kills it and fails otherwise.
fn exit_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "{what} still running after {limit:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lets a freshly spawned subscriber connect and receive some frames.
fn let_it_run() {
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn subscribe_exits_non_zero_when_its_publisher_dies_and_zero_on_a_clean_end() {
    let dir = runtime_dir("exitcodes");
    // --no-reconnect: a killed publisher (EOF without GOODBYE) is exit 3.
    let publ = live_publisher(&dir, "dies");
    let sub = subscriber(&dir, &["--key", "dies"]).spawn().unwrap();
    let_it_run();
    signal(&publ, rustix::process::Signal::KILL);
    let out = exit_within(sub, Duration::from_secs(5), "subscriber");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("vanished"), "{err}");
    let _ = publ.wait_with_output();

    // Reconnect on (the default): a dead publisher is waited for; giving
    // up after --reconnect-give-up-secs is exit 3.
    let publ = live_publisher(&dir, "givesup");
    let mut c = Command::new(SUBSCRIBE);
    c.args(["--runtime-dir", dir.to_str().unwrap(), "--key", "givesup"])
        .args([
            "--wait-publisher-ms",
            "10000",
            "--reconnect-give-up-secs",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let sub = c.spawn().unwrap();
    let_it_run();
    signal(&publ, rustix::process::Signal::KILL);
    let killed = Instant::now();
    let out = exit_within(sub, Duration::from_secs(6), "subscriber");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("gave up reconnecting"), "{err}");
    assert!(
        killed.elapsed() >= Duration::from_millis(900),
        "gave up too early"
    );
    let _ = publ.wait_with_output();

    // Reconnect on, no give-up: still waiting after the publisher died;
    // SIGTERM is then a clean end (exit 0).
    let publ = live_publisher(&dir, "waits");
    let mut c = Command::new(SUBSCRIBE);
    c.args(["--runtime-dir", dir.to_str().unwrap(), "--key", "waits"])
        .args(["--wait-publisher-ms", "10000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut sub = c.spawn().unwrap();
    let_it_run();
    signal(&publ, rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        sub.try_wait().unwrap().is_none(),
        "must wait for the publisher"
    );
    signal(&sub, rustix::process::Signal::TERM);
    let out = exit_within(sub, Duration::from_secs(5), "subscriber");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = publ.wait_with_output();

    // --no-reconnect: a publisher stopped by SIGTERM says GOODBYE shutdown:
    // a clean end, exit 0.
    let publ = live_publisher(&dir, "stopped");
    let sub = subscriber(&dir, &["--key", "stopped"]).spawn().unwrap();
    let_it_run();
    signal(&publ, rustix::process::Signal::TERM);
    let out = exit_within(sub, Duration::from_secs(5), "subscriber");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("GOODBYE shutdown"), "{err}");
    finish(publ, "publisher");

    // A frame limit is a clean end.
    let publ = live_publisher(&dir, "limit");
    let out = exit_within(
        subscriber(&dir, &["--key", "limit", "--max-frames", "3"])
            .spawn()
            .unwrap(),
        Duration::from_secs(10),
        "subscriber",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    signal(&publ, rustix::process::Signal::TERM);
    finish(publ, "publisher");
}

#[test]
fn nonsense_values_are_refused_at_parse_time() {
    let dir = runtime_dir("nonsense");
    let clip = media("sample-h264.mp4");
    let clip = clip.to_str().unwrap();
    for (args, needle) in [
        (&["--stats-interval", "NaN"][..], "--stats-interval"),
        (&["--stats-interval=-1"][..], "--stats-interval"),
        (
            &["--reconnect-give-up-secs", "NaN"][..],
            "--reconnect-give-up-secs",
        ),
        (
            &["--reconnect-give-up-secs", "0"][..],
            "--reconnect-give-up-secs",
        ),
        (
            &["--reconnect-give-up-secs", "1e300"][..],
            "--reconnect-give-up-secs",
        ),
        (&["--timeout-ms", "0"][..], "--timeout-ms"),
        (&["--publisher-uid", "someone"][..], "--publisher-uid"),
    ] {
        let out = subscriber(&dir, &[&["--key", "k"][..], args].concat())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    for (args, needle) in [
        (&["--stats-interval", "NaN"][..], "--stats-interval"),
        (&["--max-packet-kib", "0"][..], "--max-packet-kib"),
        (&["--lease-timeout-ms", "0"][..], "--lease-timeout-ms"),
        (&["--socket-mode", "0999"][..], "--socket-mode"),
        (&["--socket-mode", "4777"][..], "--socket-mode"),
        (&["--allow-uid=-1"][..], "--allow-uid"),
    ] {
        let out = Command::new(PUBLISH)
            .args([
                "--input",
                clip,
                "--key",
                "k",
                "--runtime-dir",
                dir.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} accepted: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn os_errors_are_printed_once() {
    let dir = runtime_dir("oserr");
    let out = subscriber(&dir, &["--key", "nobody-here", "--wait-publisher-ms", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

/// Logs written to a pipe or file are plain text: no terminal colour codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let dir = runtime_dir("plainlog");
    let out = publisher(
        &dir,
        &[
            "--input",
            media("sample-h264.mp4").to_str().unwrap(),
            "--key",
            "plain",
            "--max-frames",
            "5",
        ],
    )
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("INFO"), "no log lines: {err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in a piped log: {err:?}"
    );
}

/// The publisher runs as `nobody`; the subscriber (root) refuses it by
/// default and accepts it with --publisher-uid. Needs root (CI); skipped
/// with a printed reason otherwise.
#[test]
fn subscribe_refuses_a_publisher_of_another_uid_unless_told() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run the publisher as another user");
        return;
    }
    let dir = runtime_dir("otheruid");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let clip = media("sample-h264.mp4");
    let mut c = publisher(
        &dir,
        &[
            "--input",
            clip.to_str().unwrap(),
            "--key",
            "other",
            "--realtime",
            "--loop",
        ],
    );
    c.uid(65534).gid(65534);
    let publ = c.spawn().unwrap();
    let sock = dir.join("other.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sock.exists(), "the publisher (as nobody) did not start");
    let out = subscriber(&dir, &["--key", "other", "--max-frames", "3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "accepted an impostor: {err}");
    assert!(err.contains("runs as uid 65534"), "{err}");
    for allow in ["65534", "any"] {
        let out = subscriber(
            &dir,
            &[
                "--key",
                "other",
                "--max-frames",
                "3",
                "--publisher-uid",
                allow,
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "--publisher-uid {allow}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    signal(&publ, rustix::process::Signal::TERM);
    finish(publ, "publisher");
}

/// --socket-mode and --allow-uid reach the publisher: the socket file gets
/// the mode, and a subscriber whose uid is not allowed is refused.
#[test]
fn publish_applies_socket_mode_and_uid_allow_list() {
    use std::os::unix::fs::PermissionsExt;
    let dir = runtime_dir("acl");
    let clip = media("sample-h264.mp4");
    let publ = publisher(
        &dir,
        &[
            "--input",
            clip.to_str().unwrap(),
            "--key",
            "acl",
            "--realtime",
            "--loop",
            "--socket-mode",
            "0600",
            "--allow-uid",
            "4242",
        ],
    )
    .spawn()
    .unwrap();
    let sock = dir.join("acl.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    if !rustix::process::geteuid().is_root() {
        // Root is always admitted; as another user the allow-list refuses us.
        let out = subscriber(&dir, &["--key", "acl", "--max-frames", "1"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("AccessDenied"), "{err}");
    } else {
        eprintln!("root: admitted whatever the allow-list says (§2.1); checked the mode only");
    }
    signal(&publ, rustix::process::Signal::TERM);
    finish(publ, "publisher");
}

/// A FIFO as --input: the publisher blocks reading it (a writer that sent
/// part of a stream and then nothing), and SIGTERM still stops it within
/// about a second, cleanly. Also with no writer at all.
#[test]
fn fifo_input_stops_on_sigterm() {
    use std::io::Write;
    let dir = runtime_dir("fifo");
    for with_writer in [true, false] {
        let fifo = dir.join(format!("in-{with_writer}.h264"));
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let key = format!("fifo{}", u8::from(with_writer));
        let publ = publisher(&dir, &["--input", fifo.to_str().unwrap(), "--key", &key])
            .spawn()
            .unwrap();
        // The writer: opens the FIFO (once the publisher has), writes the
        // first 64 KiB of a raw H.264 stream, then keeps it open and silent.
        let writer = with_writer.then(|| {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let data = std::fs::read(media("sample-h264.h264")).unwrap();
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                let _ = f.write_all(&data[..64 * 1024]);
                std::thread::sleep(Duration::from_secs(6));
                drop(f);
            })
        });
        std::thread::sleep(Duration::from_millis(1500));
        let sent = Instant::now();
        signal(&publ, rustix::process::Signal::TERM);
        let out = exit_within(publ, Duration::from_secs(3), "publisher on a FIFO");
        let took = sent.elapsed();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "writer {with_writer}: {}: {err}",
            out.status
        );
        assert!(
            err.contains("stopped by signal"),
            "writer {with_writer}: {err}"
        );
        assert!(
            took < Duration::from_millis(1200),
            "stopped {took:?} after SIGTERM"
        );
        eprintln!("FIFO (writer {with_writer}): stopped {took:?} after SIGTERM");
        if let Some(w) = writer {
            w.join().unwrap();
        }
    }
}

/// A file with one corrupt packet (its length prefix overwritten, so
/// libavcodec refuses it as invalid data) is published to the end: the
/// packet is skipped with a warning and counted, the stream goes on.
#[test]
fn a_corrupt_packet_is_skipped_and_counted() {
    let dir = runtime_dir("corrupt");
    let mut data = std::fs::read(media("sample-h264.mp4")).unwrap();
    // Packet 10 of the video stream: 4321 bytes at offset 46218
    // (`ffprobe -show_entries packet=pos,size`), starting with its first
    // NAL unit's 4-byte length.
    const POS: usize = 46218;
    let prefix = u32::from_be_bytes(data[POS..POS + 4].try_into().unwrap());
    assert!(
        prefix > 0 && prefix <= 4317,
        "media/sample-h264.mp4 changed? prefix {prefix}"
    );
    data[POS..POS + 4].copy_from_slice(&[0xff; 4]);
    let clip = dir.join("corrupt.mp4");
    std::fs::write(&clip, &data).unwrap();
    let out = publisher(
        &dir,
        &["--input", clip.to_str().unwrap(), "--key", "corrupt"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the stream failed: {err}");
    assert!(err.contains("skipping a corrupt packet"), "{err}");
    assert!(err.contains("1 corrupt packet(s) skipped"), "{err}");
    assert!(err.contains("end of input: 99 frames published"), "{err}");
}

/// `--input rtsp://...` opens the camera as `--url` would (it was taken
/// for a file path: "No such file or directory"); a scheme no input
/// supports is refused as a URL, not as a missing file.
#[test]
fn input_given_a_url_opens_it_as_url_would() {
    let server = RtspServer::start(&[("/h264", "sample-h264.mp4")]);
    let dir = runtime_dir("input-url");
    let url = format!("{}/h264", server.base);
    let out = publisher(
        &dir,
        &[
            "--input",
            &url,
            "--key",
            "inurl",
            "--transport",
            "tcp",
            "--max-frames",
            "10",
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
    assert!(
        err.contains("inurl: end of input: 10 frames published"),
        "{err}"
    );
    fails_with(
        &mut publisher(&dir, &["--input", "bogus://cam/x", "--key", "inurl"]),
        "url \"bogus://cam/x\": unsupported scheme",
    );
}
