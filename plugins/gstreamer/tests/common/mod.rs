//! Helpers of the plugin's integration tests: the plugin loaded from the
//! built `libgstcuframes.so`, the cuframes tools as child processes, the
//! bundled clips and their FFmpeg references, MD5s of frames.
#![allow(dead_code)]

use gst::prelude::*;
use gst_video::prelude::*;
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>`: the test binary lives in its `deps/`.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A directory holding only a copy of `libgstcuframes.so`, for
/// `GST_PLUGIN_PATH` (GStreamer scans its directories recursively; the
/// target dir holds every build script and proc macro).
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        build();
        let so = target_dir().join("libgstcuframes.so");
        assert!(
            so.exists(),
            "{} is missing: `cargo build -p gst-plugin-cuframes` builds it",
            so.display()
        );
        let dir = std::env::temp_dir().join(format!("cuframes-gst-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&so, dir.join("libgstcuframes.so")).unwrap();
        dir
    })
}

/// Initialises GStreamer in this process and loads the plugin from
/// [`plugin_dir`] (the `.so`, as `GST_PLUGIN_PATH` would).
pub fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().unwrap();
        let so = plugin_dir().join("libgstcuframes.so");
        let plugin =
            gst::Plugin::load_file(&so).unwrap_or_else(|e| panic!("{}: {e}", so.display()));
        gst::Registry::get().add_plugin(&plugin).ok();
        for f in ["cuframessrc", "cuframessink", "cuframespacketsrc"] {
            assert!(gst::ElementFactory::find(f).is_some(), "{f} not registered");
        }
    });
}

/// A GStreamer command-line tool with the plugin on `GST_PLUGIN_PATH` and a
/// private registry file.
pub fn gst_tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", plugin_dir().join("registry.bin"));
    c
}

/// Builds the plugin's `.so` and the cuframes tools with the cargo that
/// runs the tests (`cargo test -p` links the rlib only, and builds no other
/// package's binaries), once per test process, so neither is ever stale.
fn build() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = match target_dir().file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_owned(),
            Some(p) => p.to_owned(),
        };
        let status = Command::new(env!("CARGO"))
            // The same selection as CI's `cargo build --workspace
            // --all-targets`, so features resolve alike and, after it, this
            // is a no-op.
            .args([
                "build",
                "--profile",
                &profile,
                "--workspace",
                "--all-targets",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo");
        assert!(
            status.success(),
            "building the plugin and the cuframes tools failed"
        );
    });
}

/// The cuframes tools (`cuframes-publish`, `cuframes-subscribe`) in the
/// test's target dir.
pub fn tool(name: &str) -> PathBuf {
    build();
    target_dir().join(name)
}

/// A sample of `media/`.
pub fn media(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../media")
        .join(name)
}

/// The hash column of each frame line of the framemd5 file `media/NAME`.
pub fn framemd5_hashes(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(media(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit(',').next().unwrap().trim().to_owned())
        .collect()
}

/// A fresh runtime directory for one test.
pub fn runtime_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-gst-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `cuframes-publish` on host memory in `dir`, quiet, with `args`.
pub fn publisher(dir: &Path, args: &[&str]) -> Child {
    publisher_on(dir, "host", args)
}

/// `cuframes-publish --backend BACKEND` in `dir`, quiet, with `args`.
pub fn publisher_on(dir: &Path, backend: &str, args: &[&str]) -> Child {
    Command::new(tool("cuframes-publish"))
        .args(["--runtime-dir", dir.to_str().unwrap(), "--backend", backend])
        .args(["--stats-interval", "0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for `child` and asserts it succeeded.
pub fn finish(mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    assert!(status.success(), "{what} failed: {status}");
}

/// Lowercase hex MD5.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// MD5 of a raw video buffer's visible rows (FFmpeg's packed rawvideo
/// layout), honouring its `GstVideoMeta` strides and offsets.
pub fn frame_md5(buffer: &gst::BufferRef, info: &gst_video::VideoInfo) -> String {
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info).unwrap();
    let bps = if info.format() == gst_video::VideoFormat::P01010le {
        2
    } else {
        1
    };
    let (w, h) = (info.width() as usize, info.height() as usize);
    let planes = [(w * bps, h), (w.div_ceil(2) * 2 * bps, h.div_ceil(2))];
    let mut md5 = Md5::new();
    for (p, (row, rows)) in planes.into_iter().enumerate() {
        let data = frame.plane_data(p as u32).unwrap();
        let stride = frame.plane_stride()[p] as usize;
        for r in 0..rows {
            md5.update(&data[r * stride..r * stride + row]);
        }
    }
    md5.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes `appsink`'s sink pad answer ALLOCATION queries with
/// `GstVideoMeta` support (appsink 1.22 has no propose-allocation hook), as
/// video-meta-aware elements (videoconvert, encoders, GL) do.
pub fn accept_video_meta(appsink: &gst::Element) {
    let pad = appsink.static_pad("sink").unwrap();
    pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, |_, info| {
        if let Some(q) = info.query_mut() {
            if let gst::QueryViewMut::Allocation(a) = q.view_mut() {
                a.add_allocation_meta::<gst_video::VideoMeta>(None);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// One pulled frame.
pub struct Pulled {
    pub md5: String,
    pub caps: gst::Caps,
    pub flags: gst::BufferFlags,
    pub pts: Option<gst::ClockTime>,
    /// The name of the mapping (from /proc/self/maps) the buffer's bytes lie in.
    pub mapping: Option<String>,
}

/// The pathname column of the `/proc/self/maps` line whose range holds
/// `[ptr, ptr + len)`, with its permission column; `None` if no one range does.
pub fn mapping_of(ptr: usize, len: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        let range = cols.next()?;
        let perms = cols.next()?;
        let (a, b) = range.split_once('-')?;
        let (a, b) = (
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        );
        let path: Vec<&str> = cols.skip(3).collect();
        (a <= ptr && ptr + len <= b).then(|| format!("{perms} {}", path.join(" ")))
    })
}

/// Pulls samples from `appsink` until EOS or `deadline`, calling `each`
/// (which may stop the pull by returning false).
pub fn pull_until(
    appsink: &gst_app::AppSink,
    deadline: Duration,
    mut each: impl FnMut(&gst::Sample) -> bool,
) -> usize {
    let end = Instant::now() + deadline;
    let mut n = 0;
    while Instant::now() < end {
        match appsink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            Some(s) => {
                n += 1;
                if !each(&s) {
                    break;
                }
            }
            None if appsink.is_eos() => break,
            None => {}
        }
    }
    n
}

/// Whether a Vulkan device with `VK_KHR_external_memory_fd` exists (lavapipe
/// will do); prints a `SKIP:` line with the reason to stderr when not, or
/// panics under `CUFRAMES_REQUIRE_VULKAN=1`.
pub fn vulkan_or_skip(test: &str) -> bool {
    let why = match cuframes::vulkan::devices() {
        Ok(d) if d.iter().any(|i| i.external_memory_fd) => return true,
        Ok(d) => format!(
            "{} Vulkan device(s), none with VK_KHR_external_memory_fd",
            d.len()
        ),
        Err(e) => e.to_string(),
    };
    if std::env::var_os("CUFRAMES_REQUIRE_VULKAN").is_some_and(|v| v == "1") {
        panic!("{test}: CUFRAMES_REQUIRE_VULKAN=1 but {why}");
    }
    // Straight to stderr, not `eprintln!`: the harness captures the
    // macros, and a skip should show in a plain `cargo test` log.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIP: {test}: no usable Vulkan device: {why}"
    );
    false
}

/// Posts an error of the bus as a panic with its text.
pub fn check_bus(pipeline: &gst::Pipeline) {
    let bus = pipeline.bus().unwrap();
    while let Some(m) = bus.pop() {
        if let gst::MessageView::Error(e) = m.view() {
            panic!(
                "pipeline error from {:?}: {} ({:?})",
                e.src().map(|s| s.path_string()),
                e.error(),
                e.debug()
            );
        }
    }
}
