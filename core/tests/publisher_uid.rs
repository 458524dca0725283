//! A subscriber checks the publisher's uid (`SO_PEERCRED`) before HELLO
//! (`docs/protocol.md` §2.1): by default only its own uid or root.
//!
//! The "publisher" here is a bare listening socket whose `listen(2)` ran
//! with the thread's effective uid set to `nobody` (65534): the kernel
//! records the listener's credentials at `listen`, and that is what the
//! subscriber reads. Changing a thread's euid needs root (CI runs as root);
//! elsewhere the test is skipped with a printed reason.

use cuframes_core::runtime::{ConnectError, PublisherUids, SubscribeOptions, Subscriber};
use cuframes_core::DeliveryMode;
use rustix::fd::OwnedFd;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
use rustix::process::Uid;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOBODY: u32 = 65534;

/// Binds `path` as root, then listens with the thread's euid set to `uid`.
fn listen_as(path: &Path, uid: u32) -> UnixListener {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let fd: OwnedFd =
            rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&fd, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        // Per-thread setresuid (Linux semantics, rustix), undone before the
        // thread ends; the saved uid stays 0, so switching back is allowed.
        rustix::thread::set_thread_res_uid(None, Uid::from_raw(uid), None).unwrap();
        let listened = rustix::net::listen(&fd, 8);
        rustix::thread::set_thread_res_uid(None, Uid::ROOT, None).unwrap();
        listened.unwrap();
        UnixListener::from(fd)
    })
    .join()
    .unwrap()
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-uid-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(dir: &Path, uids: PublisherUids) -> SubscribeOptions {
    let mut o = SubscribeOptions::new(DeliveryMode::InOrder);
    o.runtime_dir = Some(dir.to_owned());
    o.handshake_timeout = Duration::from_millis(200);
    o.publisher_uids = uids;
    o
}

#[test]
fn publisher_of_another_uid_is_refused_unless_allowed() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to listen as another uid (CI runs as root)");
        return;
    }
    let d = dir("other");
    let _listener = listen_as(&d.join("cam.sock"), NOBODY);

    // Default: same uid or root. Refused before HELLO, with a clear error.
    let e = Subscriber::connect_host("cam", opts(&d, PublisherUids::SameUser))
        .err()
        .expect("an impostor must be refused");
    match &e {
        ConnectError::PublisherUid { uid, .. } => assert_eq!(*uid, NOBODY),
        other => panic!("expected PublisherUid, got {other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("uid 65534") && text.contains("--publisher-uid"),
        "{text}"
    );
    let e = Subscriber::connect_host("cam", opts(&d, PublisherUids::Only(vec![1000])))
        .err()
        .unwrap();
    assert!(matches!(e, ConnectError::PublisherUid { .. }), "{e}");

    // Allowed by list or "any": the check passes, HELLO goes out, and this
    // bare socket never answers (a timeout, not a refusal).
    for uids in [PublisherUids::Only(vec![NOBODY]), PublisherUids::Any] {
        let e = Subscriber::connect_host("cam", opts(&d, uids.clone()))
            .err()
            .unwrap();
        assert!(matches!(e, ConnectError::Timeout(_)), "{uids:?}: {e}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn own_uid_and_root_are_accepted_by_default() {
    let d = dir("same");
    let me = rustix::process::geteuid().as_raw();
    let _listener = UnixListener::bind(d.join("cam.sock")).unwrap();
    let e = Subscriber::connect_host("cam", opts(&d, PublisherUids::SameUser))
        .err()
        .unwrap();
    assert!(matches!(e, ConnectError::Timeout(_)), "{e}");
    assert!(
        PublisherUids::SameUser.allows(0, 1000),
        "root is always accepted"
    );
    assert!(PublisherUids::SameUser.allows(me, me));
    assert!(!PublisherUids::SameUser.allows(1001, 1000));
    assert!(PublisherUids::Only(vec![7]).allows(7, 1000));
    assert!(!PublisherUids::Only(vec![7]).allows(8, 1000));
    assert!(PublisherUids::Any.allows(8, 1000));
    std::fs::remove_dir_all(&d).unwrap();
}
