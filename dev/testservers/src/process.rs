//! Spawning, signalling and reaping server processes; ports; service users; helper commands.
//!
//! # Why servers are spawned from a keeper thread
//!
//! Every server process gets `PR_SET_PDEATHSIG`, so the kernel signals it when its parent goes
//! away, even if the test process is killed with SIGKILL and no destructor or `atexit` handler
//! runs. Linux ties that signal to the parent *thread*, not the process: a server spawned from a
//! test thread would be shut down as soon as that test finished. So all long-lived servers are
//! spawned from one keeper thread that lives until the process exits (its channel's sender sits in
//! a static and is never dropped). The signal survives `execve` but is cleared by a change of
//! credentials, so it is set in `pre_exec`, which the standard library runs *after* it has
//! switched to the service user, and the server is started directly as that user (no
//! `mariadbd --user`, no daemonizing `pg_ctl start`).
//!
//! # Process groups
//!
//! Each server starts in its own process group (`process_group(0)`) so that a terminal's Ctrl-C
//! does not reach it half way through a test, and so the whole group can be killed. PostgreSQL
//! backends call `setsid()` and leave that group, so [`kill_tree`] also kills the direct children
//! it finds in `/proc`, after freezing the parent with SIGSTOP so it cannot fork more.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ServerError;

/// A system user (`postgres`, `mysql`) that servers run as when this process is root, because
/// `initdb`, `postgres` and `mariadbd` refuse to run as root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// `Some(user)` when running as root (the servers must drop privileges), `None` otherwise (the
/// servers simply run as the current user).
pub(crate) fn service_user(name: &str) -> Result<Option<ServiceUser>, ServerError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let cname = CString::new(name).map_err(|e| ServerError::io("user name", e.into()))?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the duration of the call; getpwnam_r is reentrant.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(ServerError::io(
            format!(
                "running as root, but the system user `{name}` to run the server as is missing"
            ),
            io::Error::new(io::ErrorKind::NotFound, "getpwnam_r found no such user"),
        ));
    }
    Ok(Some(ServiceUser {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }))
}

/// Makes `cmd` run as `user` (if any) and die with `signal` when the spawning thread exits.
pub(crate) fn prepare(cmd: &mut Command, user: Option<ServiceUser>, signal: libc::c_int) {
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd.process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would signal us.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the keeper thread (see the module docs for why).
pub(crate) fn spawn_from_keeper(cmd: Command) -> io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let keeper = match KEEPER.get() {
        Some(k) => k,
        None => {
            let (tx, rx) = mpsc::channel::<SpawnJob>();
            let started = thread::Builder::new()
                .name("pool-testservers-keeper".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                });
            match started {
                // A racing caller may have won; its keeper is used and ours ends with its channel.
                Ok(_) => KEEPER.get_or_init(|| Mutex::new(tx)),
                Err(e) => return Err(e),
            }
        }
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("keeper thread is gone"))?
}

/// Runs a short helper command to completion and returns its trimmed stdout.
///
/// The helper gets SIGKILL if the calling thread dies (it blocks here meanwhile, so that only
/// happens when the whole process dies).
pub(crate) fn run(mut cmd: Command, user: Option<ServiceUser>) -> Result<String, ServerError> {
    prepare(&mut cmd, user, libc::SIGKILL);
    cmd.stdin(Stdio::null());
    let line = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| ServerError::io(format!("running {line}"), e))?;
    if !out.status.success() {
        return Err(ServerError::Command {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Finds `name` in `dirs` and then in `PATH` (plus the sbin directories, which a non-root `PATH`
/// often lacks).
pub(crate) fn find_binary(
    name: &str,
    dirs: &[PathBuf],
    debian_package: &'static str,
) -> Result<PathBuf, ServerError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"];
    dirs.iter()
        .cloned()
        .chain(std::env::split_paths(&path))
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ServerError::MissingBinary {
            binary: name.to_string(),
            debian_package,
        })
}

/// A port on 127.0.0.1 that was free a moment ago. Another process may take it before the server
/// binds it; callers retry with a new port when the server fails to start.
pub(crate) fn free_port() -> Result<u16, ServerError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ServerError::io("binding 127.0.0.1:0 to pick a port", e))?;
    let port = l
        .local_addr()
        .map_err(|e| ServerError::io("reading the picked port", e))?
        .port();
    Ok(port)
}

/// Opens `path` for appending twice, as a server's stdout and stderr.
pub(crate) fn log_pair(path: &Path) -> Result<(File, File), ServerError> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| ServerError::io("duplicating the log file handle", e))?;
    Ok((out, err))
}

/// How many fresh ports to try when the picked one is taken before the server binds it.
const PORT_ATTEMPTS: usize = 4;

/// Starts `server` on a free port: `launch(server, port)` records the port, spawns the server
/// and waits until it is ready. When that fails and the server has exited (`running` is false),
/// the port was most likely taken in between, so another one is tried; a server that hangs is
/// not retried.
pub(crate) fn launch_on_free_port<S>(
    server: &mut S,
    launch: impl Fn(&mut S, u16) -> Result<(), ServerError>,
    running: impl Fn(&S) -> bool,
) -> Result<(), ServerError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let port = free_port()?;
        match launch(server, port) {
            Ok(()) => return Ok(()),
            Err(ServerError::StartFailed { .. })
                if attempts < PORT_ATTEMPTS && !running(server) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Sends `signal` to the process `pid`, ignoring "no such process".
pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Waits up to `timeout` for `child` to exit and reaps it. Returns whether it exited.
pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Kills `child`, its process group and its direct children (which may have their own sessions,
/// as PostgreSQL backends do) with SIGKILL, reaps `child`, and waits until the children are gone.
pub(crate) fn kill_tree(child: &mut Child) {
    let pid = child.id();
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(pid, libc::SIGSTOP);
    let kids = children_of(pid);
    for &k in &kids {
        // SAFETY: plain signal delivery. killpg(k) only reaches k's own group: a group id equals
        // the pid of the process that created it, and that pid is not reused while the group lives.
        unsafe {
            libc::killpg(k as libc::pid_t, libc::SIGKILL);
        }
        signal(k, libc::SIGKILL);
    }
    // SAFETY: the child leads its own process group (process_group(0)).
    unsafe {
        libc::killpg(pid as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    // The children are now orphans that init (or a subreaper) reaps; wait until they are dead so
    // that a restart does not find their shared memory still attached.
    let deadline = Instant::now() + Duration::from_secs(10);
    while kids.iter().any(|&k| is_alive(k)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Direct children of `pid`, from `/proc/*/stat`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat_field(p).is_some_and(|(_, ppid)| ppid == pid))
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    stat_field(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// (state, ppid) from `/proc/<pid>/stat`.
fn stat_field(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The last `lines` lines of the given log files, for error messages.
pub(crate) fn log_tail(paths: &[&Path], lines: usize) -> String {
    let mut out = String::new();
    for p in paths {
        let Ok(bytes) = fs::read(p) else { continue };
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        out.push_str(&format!("==> {} <==\n", p.display()));
        for l in &all[start..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Quotes a value for a libpq-style `key=value` string when it needs it.
pub(crate) fn conn_value(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\', '=']) {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_spawned_from_short_lived_thread_survives_it() {
        // Spawned through the keeper: must survive the thread that asked for it.
        let child = thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            prepare(&mut cmd, None, libc::SIGKILL);
            spawn_from_keeper(cmd).expect("spawn sleep")
        })
        .join()
        .expect("thread");
        let mut child = child;
        thread::sleep(Duration::from_millis(100));
        assert!(child.try_wait().expect("try_wait").is_none());
        kill_tree(&mut child);
        assert!(!is_alive(child.id()));
    }

    #[test]
    fn parent_death_signal_fires_when_spawning_thread_exits() {
        // Spawned directly from a thread that then exits: PDEATHSIG must fire. This checks that
        // the signal is armed (and, as root, survives the switch to the service user).
        let user = service_user("nobody").ok().flatten();
        let pid = thread::spawn(move || {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            prepare(&mut cmd, user, libc::SIGKILL);
            let child = cmd.spawn().expect("spawn sleep");
            let pid = child.id();
            std::mem::forget(child);
            pid
        })
        .join()
        .expect("thread");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            // SAFETY: reaps our own child if it has exited.
            let r =
                unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
            if r == pid as libc::pid_t {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        signal(pid, libc::SIGKILL);
        panic!("PR_SET_PDEATHSIG did not fire");
    }

    #[test]
    fn conn_values_are_quoted_when_needed() {
        assert_eq!(conn_value("/tmp/x"), "/tmp/x");
        assert_eq!(conn_value("a b"), "'a b'");
        assert_eq!(conn_value("it's"), "'it\\'s'");
    }
}
