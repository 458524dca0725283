//! Helpers shared by the integration tests of the decode crates
//! (`cuframes-media`, `cuframes-nvdec`, `cuframes-tools`): the committed
//! sample clips of `media/` and their FFmpeg reference hashes, scratch
//! runtime directories, and a real RTSP server on the loopback ([`rtsp`]).
//! A dev-dependency only; not published.

use std::path::PathBuf;

pub mod rtsp;

/// A sample of `media/`. Binaries carried to the GPU machine look in
/// `../media` next to their own folder first (`scripts/gpu-build.sh`).
pub fn media(name: &str) -> PathBuf {
    if let Some(carried) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("media").join(name)))
        .filter(|p| p.exists())
    {
        return carried;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../media")
        .join(name)
}

/// The hash column (last comma-separated field) of each frame line of the
/// framemd5 file `media/NAME`; `#` lines are headers.
pub fn framemd5_hashes(name: &str) -> Vec<String> {
    let path = media(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    framemd5_text_hashes(&text)
}

/// The hash column of framemd5 text (FFmpeg's `-f framemd5` output).
pub fn framemd5_text_hashes(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            line.split(',')
                .map(str::trim)
                .next_back()
                .expect("split yields at least one field")
                .to_owned()
        })
        .collect()
}

/// A fresh runtime directory for one test: `<tmp>/cuframes-<suite>-<pid>-<test>`.
pub fn runtime_dir(suite: &str, test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cuframes-{suite}-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `(frame index, md5)` of each frame line of a framemd5 file a subscriber
/// wrote (column 3 is the frame's index in its source, column 6 its hash).
pub fn framemd5_file(path: &std::path::Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            (cols[2].parse().unwrap(), cols[5].to_owned())
        })
        .collect()
}

/// The names in /dev/shm, sorted (tests check nothing is left behind).
pub fn dev_shm_listing() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
