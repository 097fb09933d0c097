//! The temporary directory that holds one server's data, socket and logs.
//!
//! The directory is owned by the service user (when running as root) so the server can write its
//! pid file, socket and log there. It is removed when the server is dropped. If the test process
//! is killed before that, the directory is left behind; the next start removes such leftovers.
//! A directory is known to be abandoned when nobody holds the `flock` on its `owner.lock` file:
//! the owning process holds it for the server's lifetime and the kernel releases it when that
//! process dies (this works across pid namespaces, unlike recording a pid).

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::ServerError;
use crate::process::ServiceUser;

const PREFIX: &str = "pool-testservers-";
const LOCK_FILE: &str = "owner.lock";

/// A server's private directory; removed on drop.
#[derive(Debug)]
pub(crate) struct WorkDir {
    dir: TempDir,
    /// Holds the `flock` that marks the directory as in use.
    _lock: File,
}

impl WorkDir {
    /// Creates `<tmp>/pool-testservers-<kind>-XXXXXX`, owned by `user` when given.
    pub(crate) fn create(kind: &str, user: Option<ServiceUser>) -> Result<WorkDir, ServerError> {
        let parent = base_dir(user);
        remove_abandoned(&parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{kind}-"))
            .tempdir_in(&parent)
            .map_err(|e| {
                ServerError::io(format!("creating a directory in {}", parent.display()), e)
            })?;
        // The lock file is created and locked under another name, then renamed into place, so
        // `owner.lock` never exists unlocked: a concurrent `remove_abandoned` (in this process
        // or another) cannot take it for a dead owner's and delete the directory.
        let staging = dir.path().join(format!("{LOCK_FILE}.new"));
        let lock = File::create(&staging)
            .map_err(|e| ServerError::io(format!("creating {}", staging.display()), e))?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(ServerError::io(
                format!("locking {}", staging.display()),
                std::io::Error::last_os_error(),
            ));
        }
        let lock_path = dir.path().join(LOCK_FILE);
        fs::rename(&staging, &lock_path)
            .map_err(|e| ServerError::io(format!("renaming {}", staging.display()), e))?;
        let wd = WorkDir { dir, _lock: lock };
        wd.give_to(wd.path(), user)?;
        Ok(wd)
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a subdirectory owned by `user`.
    pub(crate) fn subdir(
        &self,
        name: &str,
        user: Option<ServiceUser>,
    ) -> Result<PathBuf, ServerError> {
        let p = self.path().join(name);
        fs::create_dir(&p).map_err(|e| ServerError::io(format!("creating {}", p.display()), e))?;
        self.give_to(&p, user)?;
        Ok(p)
    }

    /// Chowns `path` to `user` and makes it private to that user (mode 0700).
    fn give_to(&self, path: &Path, user: Option<ServiceUser>) -> Result<(), ServerError> {
        if let Some(u) = user {
            std::os::unix::fs::chown(path, Some(u.uid), Some(u.gid))
                .map_err(|e| ServerError::io(format!("chown {}", path.display()), e))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .map_err(|e| ServerError::io(format!("chmod {}", path.display()), e))
    }
}

/// The system temp dir, unless we are root and the service user could not traverse it (a
/// `TMPDIR` under `/root`, say): then `/tmp`.
fn base_dir(user: Option<ServiceUser>) -> PathBuf {
    let tmp = std::env::temp_dir();
    if user.is_none() {
        return tmp;
    }
    let others_can_enter = |p: &Path| {
        p.ancestors()
            .all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    };
    if others_can_enter(&tmp) {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Removes directories of earlier runs whose owning process has died (best effort).
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        // No lock file yet: the owner is between creating the directory and locking it.
        let Ok(lock) = File::open(dir.join(LOCK_FILE)) else {
            continue;
        };
        // SAFETY: flock on an fd we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}
