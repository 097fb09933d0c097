//! A loopback TCP proxy for fault tests: it sits between a pool and a private server and can
//! pass traffic, go silent, or reset every connection.
//!
//! * [`ProxyMode::Pass`] forwards both ways.
//! * [`ProxyMode::Blackhole`] keeps every socket open and reads what arrives, but forwards
//!   nothing either way: a network that went silent (no FIN, no RST, no answer). New
//!   connections are accepted and go silent too.
//! * [`ProxyMode::Reset`] resets (RST) every open connection and every new one at once.
//!
//! [`Proxy::accepted`] counts the connections clients opened through it (connect attempts,
//! whether or not the server behind it was up).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass = 0,
    /// Accept and read, never forward or answer.
    Blackhole = 1,
    /// Reset every connection.
    Reset = 2,
}

struct Shared {
    upstream: SocketAddr,
    mode: AtomicU8,
    stop: AtomicBool,
    accepted: AtomicUsize,
    /// Both ends of every live link (clones), to reset or close them from outside the pumps.
    links: Mutex<Vec<(TcpStream, TcpStream)>>,
}

impl Shared {
    fn mode(&self) -> ProxyMode {
        match self.mode.load(SeqCst) {
            0 => ProxyMode::Pass,
            1 => ProxyMode::Blackhole,
            _ => ProxyMode::Reset,
        }
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Vec<(TcpStream, TcpStream)>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running proxy; stopped (every link closed) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            mode: AtomicU8::new(ProxyMode::Pass as u8),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            links: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("test-proxy".into())
            .spawn(move || accept_loop(listener, accepting))?;
        Ok(Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections clients have opened through the proxy so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(SeqCst)
    }

    /// Switches what the proxy does; `Reset` also resets every open connection now.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.shared.mode.store(mode as u8, SeqCst);
        if mode == ProxyMode::Reset {
            for (client, server) in self.shared.links().drain(..) {
                reset(&client);
                let _ = server.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        for (client, server) in self.shared.links().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Makes the socket's close send RST instead of FIN, and wakes its pumps so they close it.
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(Shutdown::Read);
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.stop.load(SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        shared.accepted.fetch_add(1, SeqCst);
        let _ = client.set_nonblocking(false);
        if shared.mode() == ProxyMode::Reset {
            reset(&client);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(1))
        else {
            // The server is down: the client sees its connection closed.
            continue;
        };
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        shared.links().push((c3, s3));
        for (from, to) in [(client, s2), (server, c2)] {
            let pumping = Arc::clone(&shared);
            let _ = thread::Builder::new()
                .name("test-proxy-pump".into())
                .spawn(move || pump(from, to, pumping));
        }
    }
}

/// Copies `from` to `to` while the mode is `Pass`, swallows while `Blackhole`, and stops on
/// `Reset`, end of stream or error (closing the write side of `to`).
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match shared.mode() {
            ProxyMode::Pass => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            ProxyMode::Blackhole => {}
            ProxyMode::Reset => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
