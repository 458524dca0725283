//! Where sockets live (`docs/protocol.md` §2.1).
//!
//! A directory chosen by default (not named by `$CUFRAMES_RUNTIME_DIR` or a
//! `runtime_dir` option) must be one nobody else could have prepared: the
//! `/tmp` fallback and `$XDG_RUNTIME_DIR/cuframes` must be owned by the
//! caller and writable by nobody else, and `/run/cuframes` (which only root
//! can create) must not be writable by others. Otherwise another user could
//! pre-create the directory, bind the key's socket in it, and serve this
//! user's subscribers its own video ([`DirError::Untrusted`]).

use crate::key::{KeyError, StreamKey};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::prelude::rust_2021::*;

/// The runtime directory could not be found, made or trusted.
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
    /// A directory chosen by default is not private to this user (§2.1):
    /// someone else could have placed sockets in it.
    #[error("refusing runtime directory {path}: {reason} (remove it, or set CUFRAMES_RUNTIME_DIR / --runtime-dir to a directory you trust)")]
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it (owner, mode, type).
        reason: String,
    },
}

/// Which default location a directory is; each has its own rule (§2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// `/run/cuframes`: system-wide, created by root (or an init system) and
    /// possibly handed to a service user and a `cuframes` group.
    Run,
    /// `$XDG_RUNTIME_DIR/cuframes`: the user's own.
    Xdg,
    /// `/tmp/cuframes-<uid>`: the user's own, in a world-writable parent.
    Tmp,
}

/// The default search of §2.1 with its inputs spelled out, so tests can point
/// it at a scratch directory instead of `/run` and `/tmp`.
/// [`DirSearch::from_env`] is what [`runtime_dir`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSearch {
    /// `$CUFRAMES_RUNTIME_DIR` (non-empty), taken as is, unchecked.
    pub explicit: Option<PathBuf>,
    /// The system-wide directory (`/run/cuframes`; `None`: skip it).
    pub run: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR` (non-empty); the candidate is its `cuframes`.
    pub xdg: Option<PathBuf>,
    /// Parent of the fallback `cuframes-<uid>` (`/tmp`).
    pub tmp: PathBuf,
    /// The caller's real uid.
    pub uid: u32,
}

impl DirSearch {
    /// The search as this process's environment defines it.
    pub fn from_env() -> Self {
        let var = |n| {
            std::env::var_os(n)
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
        };
        DirSearch {
            explicit: var("CUFRAMES_RUNTIME_DIR"),
            run: Some(PathBuf::from("/run/cuframes")),
            xdg: var("XDG_RUNTIME_DIR"),
            tmp: PathBuf::from("/tmp"),
            uid: rustix::process::getuid().as_raw(),
        }
    }

    /// The directory the search picks, and the rule it is held to (`None`
    /// for an explicit one). Tries to create the system-wide directory
    /// (mode 0770) when it is missing, as before; creates nothing else.
    pub fn pick(&self) -> (PathBuf, Option<Location>) {
        if let Some(d) = &self.explicit {
            return (d.clone(), None);
        }
        if let Some(run) = &self.run {
            let made = || std::fs::DirBuilder::new().mode(0o770).create(run).is_ok();
            if writable(run) || (made() && writable(run)) {
                return (run.clone(), Some(Location::Run));
            }
        }
        if let Some(x) = &self.xdg {
            return (x.join("cuframes"), Some(Location::Xdg));
        }
        (
            self.tmp.join(format!("cuframes-{}", self.uid)),
            Some(Location::Tmp),
        )
    }

    /// The location rule `dir` falls under: the one of the default candidate
    /// it equals, `None` for any other directory.
    pub fn location_of(&self, dir: &Path) -> Option<Location> {
        if self.run.as_deref() == Some(dir) {
            Some(Location::Run)
        } else if self.xdg.as_ref().is_some_and(|x| x.join("cuframes") == dir) {
            Some(Location::Xdg)
        } else if self.tmp.join(format!("cuframes-{}", self.uid)) == dir {
            Some(Location::Tmp)
        } else {
            None
        }
    }

    /// The picked directory, checked when it exists (a subscriber's view:
    /// it creates nothing).
    ///
    /// Errors: [`DirError::Untrusted`] when it breaks its location's rule.
    pub fn resolve(&self) -> Result<PathBuf, DirError> {
        let (dir, loc) = self.pick();
        if let Some(loc) = loc {
            if std::fs::symlink_metadata(&dir).is_ok() {
                check(&dir, loc, self.uid)?;
            }
        }
        Ok(dir)
    }

    /// The picked directory, created if missing (0700 under /tmp and
    /// `$XDG_RUNTIME_DIR`, 0770 elsewhere, minus the umask) and checked (a
    /// publisher's view).
    ///
    /// Errors: [`DirError::Create`], [`DirError::Untrusted`].
    pub fn ensure(&self) -> Result<PathBuf, DirError> {
        let (dir, loc) = self.pick();
        create(&dir, loc)?;
        if let Some(loc) = loc {
            check(&dir, loc, self.uid)?;
        }
        Ok(dir)
    }
}

/// Checks `dir` against the rule of `loc` (`docs/protocol.md` §2.1) for a
/// caller of uid `uid`:
///
/// - it is a directory, not a symbolic link;
/// - [`Location::Tmp`], [`Location::Xdg`]: owned by `uid` and not writable
///   by its group or others (mode `& 0o022 == 0`);
/// - [`Location::Run`]: owned by root or by `uid` — or by any user when it
///   is not writable by others and its parent is owned by root and not
///   writable by others (then only root can have made it and chosen its
///   owner, e.g. a service user) — and not writable by others (group write
///   is the `cuframes` group's to use: mode 0750 / 0770).
///
/// Errors: [`DirError::Untrusted`] naming what is wrong.
pub fn check(dir: &Path, loc: Location, uid: u32) -> Result<(), DirError> {
    let untrusted = |reason: String| DirError::Untrusted {
        path: dir.to_owned(),
        reason,
    };
    let md =
        std::fs::symlink_metadata(dir).map_err(|e| untrusted(format!("cannot inspect it: {e}")))?;
    if md.file_type().is_symlink() {
        return Err(untrusted("it is a symbolic link".into()));
    }
    if !md.is_dir() {
        return Err(untrusted("it is not a directory".into()));
    }
    let mode = md.mode() & 0o7777;
    let owner = md.uid();
    match loc {
        Location::Tmp | Location::Xdg => {
            if owner != uid {
                return Err(untrusted(format!(
                    "it is owned by uid {owner}, not by this user (uid {uid})"
                )));
            }
            if mode & 0o022 != 0 {
                return Err(untrusted(format!(
                    "its mode {mode:04o} lets other users write to it (expected 0700)"
                )));
            }
        }
        Location::Run => {
            if mode & 0o002 != 0 {
                return Err(untrusted(format!(
                    "its mode {mode:04o} lets every user write to it (expected 0750 or 0770)"
                )));
            }
            if owner != 0 && owner != uid {
                let parent_ok = dir
                    .parent()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .is_some_and(|p| p.uid() == 0 && p.mode() & 0o002 == 0);
                if !parent_ok {
                    return Err(untrusted(format!(
                        "it is owned by uid {owner} and its parent is not a root-owned directory closed to others"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn create(dir: &Path, loc: Option<Location>) -> Result<(), DirError> {
    if std::fs::symlink_metadata(dir).is_ok() {
        return Ok(());
    }
    let mode = match loc {
        Some(Location::Tmp | Location::Xdg) => 0o700,
        _ if dir.starts_with("/tmp") => 0o700,
        _ => 0o770,
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

/// The runtime directory: `$CUFRAMES_RUNTIME_DIR`, else `/run/cuframes` when
/// it exists or can be made and is writable, else `$XDG_RUNTIME_DIR/cuframes`,
/// else `/tmp/cuframes-<uid>`. Only the path: [`ensure_dir`] (publishers)
/// and [`default_dir`] (subscribers) also check it.
pub fn runtime_dir() -> PathBuf {
    DirSearch::from_env().pick().0
}

/// [`runtime_dir`], refused when it is a default location that breaks its
/// rule ([`check`]); for subscribers, which create nothing.
///
/// Errors: [`DirError::Untrusted`].
pub fn default_dir() -> Result<PathBuf, DirError> {
    DirSearch::from_env().resolve()
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

/// Creates `dir` (and parents) if missing: mode 0700 under `/tmp` and for
/// `$XDG_RUNTIME_DIR/cuframes`, else 0770 (minus the umask). When `dir` is
/// one of the default locations of this process's search (§2.1), it is then
/// checked against that location's rule ([`check`]); directories named
/// explicitly are the caller's choice and are not.
///
/// Errors: [`DirError::Create`], [`DirError::Untrusted`].
pub fn ensure_dir(dir: &Path) -> Result<(), DirError> {
    let search = DirSearch::from_env();
    let loc = search.location_of(dir);
    create(dir, loc)?;
    if let Some(loc) = loc {
        check(dir, loc, search.uid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("cuframes-dirtest-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn search(base: &Path) -> DirSearch {
        DirSearch {
            explicit: None,
            run: None,
            xdg: None,
            tmp: base.to_owned(),
            uid: rustix::process::getuid().as_raw(),
        }
    }

    #[test]
    fn tmp_fallback_is_created_private() {
        let base = scratch("create");
        let s = search(&base);
        let dir = s.ensure().unwrap();
        assert_eq!(dir, base.join(format!("cuframes-{}", s.uid)));
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "created with mode {mode:o}");
        assert_eq!(s.resolve().unwrap(), dir);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn world_writable_tmp_fallback_is_refused() {
        let base = scratch("mode");
        let s = search(&base);
        let dir = base.join(format!("cuframes-{}", s.uid));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        for r in [s.ensure(), s.resolve()] {
            let e = r.unwrap_err();
            assert!(matches!(e, DirError::Untrusted { .. }), "{e}");
            assert!(e.to_string().contains("0777"), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn symlinked_tmp_fallback_is_refused() {
        let base = scratch("link");
        let s = search(&base);
        let elsewhere = base.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, base.join(format!("cuframes-{}", s.uid))).unwrap();
        let e = s.ensure().unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Another user's directory at the fallback path (the impersonation of
    /// issue 12): needs root to chown it; skipped with a reason otherwise.
    #[test]
    fn tmp_fallback_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root to chown a directory to another user");
            return;
        }
        let base = scratch("owner");
        let s = search(&base);
        let dir = base.join(format!("cuframes-{}", s.uid));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // 65534: nobody.
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        for r in [s.ensure(), s.resolve()] {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn run_dir_rule_allows_a_group_and_a_service_owner() {
        let base = scratch("run");
        let run = base.join("cuframes");
        std::fs::create_dir(&run).unwrap();
        let me = rustix::process::getuid().as_raw();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o770)).unwrap();
        check(&run, Location::Run, me).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check(&run, Location::Run, me).is_err());
        // The same directory under the Tmp rule: group write is too much.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(check(&run, Location::Tmp, me).is_err());
        if rustix::process::geteuid().is_root() {
            // Owned by a service user, under a root-owned parent closed to others.
            std::os::unix::fs::chown(&run, Some(65534), None).unwrap();
            check(&run, Location::Run, me).unwrap();
            // Its parent open to everyone: anyone could have made it.
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
            assert!(check(&run, Location::Run, me).is_err());
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn explicit_directories_are_not_checked() {
        let base = scratch("explicit");
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut s = search(Path::new("/nonexistent-tmp"));
        s.explicit = Some(base.clone());
        assert_eq!(s.resolve().unwrap(), base);
        assert_eq!(s.location_of(&base), None);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
