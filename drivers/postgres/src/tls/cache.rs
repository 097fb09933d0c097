//! Reusing a TLS configuration while its files are unchanged.
//!
//! Every connection keeps its configuration (rustls holds it for the session), so building one
//! per connect would keep one copy of the CA store per parked connection (for
//! `sslrootcert=system`, some hundred certificates each) and lose TLS session resumption
//! between connects. So a configuration is kept per set of TLS arguments, with a stamp of each
//! file it was read from (device, inode, length, modification time, and status-change time),
//! and reused by a connect that finds every file with the same stamp. Replacing a file (a new
//! inode) or rewriting it changes its stamp: the next connect reads the files again. The
//! status-change time (ctime) is what makes that hold whatever tool rewrote the file: `cp -p`,
//! `rsync -t`, `tar x` and `touch -r` set the modification time back (and a same-length file
//! then kept length and inode too), but nothing can set the ctime back. A file changed less
//! than [`SETTLING`] ago is read again on every connect, so a file system whose clock ticks in
//! whole seconds cannot hide a second rewrite within the same tick. The system
//! trust store has no single file to stamp; it is re-read after [`SYSTEM_STORE_AGE`].

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use pool_driver::DriverError;
use rustls::ClientConfig;

use super::{RootCerts, TlsArgs};

/// How long a configuration with the system trust store is reused.
const SYSTEM_STORE_AGE: Duration = Duration::from_secs(300);

/// How long ago a file must have been modified for its configuration to be kept.
const SETTLING: Duration = Duration::from_secs(2);

/// What identifies one version of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
    /// The status-change time (seconds, nanoseconds): set by every write, rename or chmod,
    /// and by nothing a user can aim at the past.
    changed: (i64, i64),
}

impl Stamp {
    /// How long ago the file last changed (its ctime), if that is in the past.
    fn changed_ago(&self) -> Option<Duration> {
        let (secs, nanos) = self.changed;
        let secs = u64::try_from(secs).ok()?;
        let nanos = u32::try_from(nanos).ok()?;
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
        at.elapsed().ok()
    }
}

struct Built {
    stamps: Vec<Stamp>,
    at: Instant,
    config: Arc<ClientConfig>,
}

/// The configuration for `tls`: the kept one if its files are unchanged, else `build()`'s
/// (kept for the next connect when its files could be stamped).
pub(super) fn get_or_build(
    tls: &TlsArgs,
    build: impl FnOnce() -> Result<Arc<ClientConfig>, DriverError>,
) -> Result<Arc<ClientConfig>, DriverError> {
    static KEPT: Mutex<Option<HashMap<TlsArgs, Built>>> = Mutex::new(None);
    let before = stamps(&tls.files());
    {
        let kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        let found = kept.as_ref().and_then(|kept| kept.get(tls));
        if let (Some(built), Some(now)) = (found, &before) {
            let fresh =
                tls.root != Some(RootCerts::System) || built.at.elapsed() < SYSTEM_STORE_AGE;
            if built.stamps == *now && fresh {
                return Ok(Arc::clone(&built.config));
            }
        }
    }
    // Built outside the lock: it reads files.
    let config = build()?;
    // Kept only if no file changed while it was read, and none just now.
    let settled = |stamps: &Vec<Stamp>| {
        stamps.iter().all(|s| {
            let modified = s.modified.and_then(|m| m.elapsed().ok());
            modified.is_some_and(|age| age >= SETTLING)
                && s.changed_ago().is_some_and(|age| age >= SETTLING)
        })
    };
    if let Some(stamps) = before.filter(|b| Some(b) == stamps(&tls.files()).as_ref() && settled(b))
    {
        let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get_or_insert_with(HashMap::new).insert(
            tls.clone(),
            Built {
                stamps,
                at: Instant::now(),
                config: Arc::clone(&config),
            },
        );
    }
    Ok(config)
}

/// The stamps of `files`, or `None` if one cannot be read.
fn stamps(files: &[&Path]) -> Option<Vec<Stamp>> {
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some(Stamp {
                device: meta.dev(),
                inode: meta.ino(),
                len: meta.len(),
                modified: meta.modified().ok(),
                changed: (meta.ctime(), meta.ctime_nsec()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::fs::{self, File};
    use std::path::PathBuf;

    fn args(root: &Path) -> TlsArgs {
        TlsArgs {
            mode: super::super::SslMode::VerifyFull,
            root: Some(RootCerts::File(root.to_path_buf())),
            client: None,
        }
    }

    fn write(path: &Path, text: &str, age: Duration) {
        fs::write(path, text).expect("write");
        let file = File::options().write(true).open(path).expect("open");
        file.set_modified(SystemTime::now() - age)
            .expect("set mtime");
    }

    #[test]
    fn kept_while_unchanged_rebuilt_when_rewritten() {
        let dir: PathBuf =
            std::env::temp_dir().join(format!("pool-pg-cache-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        let tls = args(&ca);
        let builds = Cell::new(0);
        let config = || {
            builds.set(builds.get() + 1);
            super::super::unverified()
        };
        write(&ca, "one", Duration::from_secs(60));
        // Kept only once its status-change time (which no tool can set back) has settled too.
        let waited = Instant::now();
        while stamps(&[&ca]).is_none_or(|s| s[0].changed_ago().is_none_or(|a| a < SETTLING)) {
            assert!(
                waited.elapsed() < Duration::from_secs(10),
                "ctime never settled"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        get_or_build(&tls, config).expect("first");
        get_or_build(&tls, config).expect("unchanged");
        assert_eq!(builds.get(), 1, "reused while unchanged");
        write(&ca, "two", Duration::from_secs(30));
        get_or_build(&tls, config).expect("rewritten");
        assert_eq!(builds.get(), 2, "a rewritten file is read again");
        // Just written: read again on every connect until it settles.
        write(&ca, "three", Duration::ZERO);
        get_or_build(&tls, config).expect("fresh");
        get_or_build(&tls, config).expect("fresh");
        assert_eq!(builds.get(), 4);
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
