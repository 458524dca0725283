//! Where sockets live (`docs/protocol.md` §2.1).

use crate::key::{KeyError, StreamKey};
use std::path::{Path, PathBuf};
use std::prelude::rust_2021::*;

/// The runtime directory could not be found or made.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The key is not `[A-Za-z0-9_-]{1,63}`.
    #[error("invalid stream key {key:?}: {source}")]
    Key {
        /// The key as given.
        key: String,
        /// Why.
        source: KeyError,
    },
    /// The directory could not be created.
    #[error("cannot create runtime directory {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// The runtime directory: `$CUFRAMES_RUNTIME_DIR`, else `/run/cuframes` when
/// it exists or can be made and is writable, else `$XDG_RUNTIME_DIR/cuframes`,
/// else `/tmp/cuframes-<uid>`. Publishers create it (mode 0770, 0700 under /tmp).
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CUFRAMES_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let run = Path::new("/run/cuframes");
    if writable(run) || (std::fs::create_dir(run).is_ok() && writable(run)) {
        return run.to_owned();
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(x).join("cuframes");
    }
    PathBuf::from(format!(
        "/tmp/cuframes-{}",
        rustix::process::getuid().as_raw()
    ))
}

fn writable(p: &Path) -> bool {
    rustix::fs::access(
        p,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// `<dir>/<key>.sock` for a validated key.
pub fn socket_path(dir: &Path, key: &str) -> Result<PathBuf, DirError> {
    let k = StreamKey::new(key).map_err(|source| DirError::Key {
        key: key.to_owned(),
        source,
    })?;
    Ok(dir.join(format!("{}.sock", k.as_str())))
}

/// Creates `dir` (and parents) if missing.
pub fn ensure_dir(dir: &Path) -> Result<(), DirError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    let mode = if dir.starts_with("/tmp") {
        0o700
    } else {
        0o770
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| DirError::Create {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_escape_the_directory() {
        let d = Path::new("/run/cuframes");
        assert_eq!(
            socket_path(d, "cam1").unwrap(),
            Path::new("/run/cuframes/cam1.sock")
        );
        assert!(matches!(socket_path(d, "../x"), Err(DirError::Key { .. })));
        assert!(matches!(socket_path(d, ""), Err(DirError::Key { .. })));
    }
}
