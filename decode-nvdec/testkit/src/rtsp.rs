//! A real RTSP server on the loopback for the tests: `scripts/rtsp-server.py`
//! (GStreamer's gst-rtsp-server) run by `/usr/bin/python3`, on a free port,
//! stopped when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What to install when the server cannot start (Debian package names).
pub const PACKAGES: &str = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base \
                            gstreamer1.0-plugins-good gstreamer1.0-plugins-bad";

/// A running `scripts/rtsp-server.py`.
pub struct RtspServer {
    child: Option<Child>,
    /// `rtsp://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
}

impl RtspServer {
    /// Starts the server with `mounts` (`(mount, clip in media/)`, e.g.
    /// `("/h264", "sample-h264.mp4")`) and waits for its `ready` line. Fails
    /// the test, saying what to install, if it cannot start: never a silent
    /// pass.
    pub fn start(mounts: &[(&str, &str)]) -> RtspServer {
        Self::start_on(0, mounts)
    }

    /// As [`RtspServer::start`], on `port` (0: a free one): a camera that
    /// comes back on its old address.
    pub fn start_on(port: u16, mounts: &[(&str, &str)]) -> RtspServer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/rtsp-server.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script).args(["--port", &port.to_string()]);
        for (mount, clip) in mounts {
            cmd.arg("--mount")
                .arg(format!("{mount}={}", crate::media(clip).display()));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run /usr/bin/python3 {}: {e}; install {PACKAGES}",
                    script.display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let Some(base) = line.trim().strip_prefix("ready ").map(str::to_owned) else {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!(
                "the RTSP test server (scripts/rtsp-server.py) did not start: {err}\n\
                 it needs /usr/bin/python3 with GStreamer's RTSP server: apt-get install {PACKAGES}"
            );
        };
        RtspServer {
            child: Some(child),
            base,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The URL of `mount` (e.g. `/h264`).
    pub fn url(&self, mount: &str) -> String {
        format!("{}{mount}", self.base)
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to the server with kill(1).
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([signal, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {signal} failed");
        }
    }

    /// Kills the server at once (SIGKILL), as a crashing camera.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SIGTERM first (after SIGCONT, for a stopped server): the server
        // exits cleanly; SIGKILL if it does not.
        let _ = Command::new("kill")
            .args(["-CONT", &c.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}
