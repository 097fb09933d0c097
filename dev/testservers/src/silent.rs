//! A peer that accepts TCP connections and then says nothing: for tests that a connect (a TLS
//! handshake, a protocol greeting) against a server that stopped answering gives up within its
//! timeout, and leaves nothing behind.
//!
//! Unlike [`crate::Proxy`] in `Blackhole` mode it needs no server behind it (the proxy closes
//! a client's connection when its upstream is down, which is an answer), and it can say one
//! thing first, so the silence starts exactly where a test wants it: with
//! [`Preamble::Answer`]`(b"S")` a PostgreSQL client's `SSLRequest` is accepted and the client
//! then waits in its TLS handshake; with [`Preamble::Greet`] (a MariaDB server's greeting,
//! [`crate::MariaServer::greeting`]) a MySQL client asks for TLS and then waits in its
//! handshake; with [`Preamble::Nothing`] a Redis client's `ClientHello` goes unanswered.
//!
//! It counts what clients did: connections accepted, bytes received, and connections still
//! open. The last one is how a test proves a client *closed* its socket after giving up (a
//! client that leaves a thread blocked on the socket keeps it open).
//!
//! One thread serves every connection (`poll(2)`), so the listener adds exactly one thread to
//! the process however many clients connect: a test counting the process's threads can take
//! its baseline after [`SilentListener::start_with`] and compare.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a [`SilentListener`] says before it goes silent.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Preamble {
    /// Nothing at all: accepts, reads, never writes.
    #[default]
    Nothing,
    /// Sends these bytes as soon as a connection is accepted (a server that speaks first, as
    /// MySQL's greeting), then nothing.
    Greet(Vec<u8>),
    /// Sends these bytes once, after the first bytes arrive from the client (PostgreSQL's `S`
    /// answer to an `SSLRequest`), then nothing.
    Answer(Vec<u8>),
}

struct Counters {
    stop: AtomicBool,
    accepted: AtomicUsize,
    open: AtomicUsize,
    received: AtomicUsize,
}

/// A listener on a free loopback port that accepts and then never answers (see the module
/// docs). Dropping it closes every connection and ends its thread.
pub struct SilentListener {
    port: u16,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SilentListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SilentListener")
            .field("port", &self.port)
            .field("accepted", &self.accepted())
            .field("open", &self.open_connections())
            .finish()
    }
}

impl SilentListener {
    /// A listener that never writes a byte.
    pub fn start() -> std::io::Result<SilentListener> {
        Self::start_with(Preamble::Nothing)
    }

    /// A listener that says `preamble` and then nothing.
    pub fn start_with(preamble: Preamble) -> std::io::Result<SilentListener> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let counters = Arc::new(Counters {
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            received: AtomicUsize::new(0),
        });
        let serving = Arc::clone(&counters);
        let thread = thread::Builder::new()
            .name("test-silent-peer".into())
            .spawn(move || serve(listener, preamble, serving))?;
        Ok(SilentListener {
            port,
            counters,
            thread: Some(thread),
        })
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(SeqCst)
    }

    /// Connections accepted and not yet closed by the client (up to date within ~10 ms).
    pub fn open_connections(&self) -> usize {
        self.counters.open.load(SeqCst)
    }

    /// Bytes received from all clients so far (a TLS `ClientHello` is a few hundred).
    pub fn received(&self) -> usize {
        self.counters.received.load(SeqCst)
    }

    /// Waits up to `timeout` until every accepted connection was closed by its client; returns
    /// whether that happened.
    pub fn wait_all_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.open_connections() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.counters.stop.store(true, SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Conn {
    stream: TcpStream,
    answered: bool,
}

/// The one thread: accepts, reads and counts until stopped; writes only the preamble.
fn serve(listener: TcpListener, preamble: Preamble, counters: Arc<Counters>) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while !counters.stop.load(SeqCst) {
        let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
            .chain(conns.iter().map(|c| c.stream.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that outlives the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10) };
        if ready <= 0 {
            continue;
        }
        // Connections first (their indexes are those of `fds` minus one), newest last, so
        // removing by index from the back keeps the other indexes valid.
        for i in (0..conns.len()).rev() {
            if fds[i + 1].revents == 0 {
                continue;
            }
            let conn = &mut conns[i];
            match conn.stream.read(&mut buf) {
                Ok(0) => {
                    conns.swap_remove(i);
                }
                Ok(n) => {
                    counters.received.fetch_add(n, SeqCst);
                    if let Preamble::Answer(bytes) = &preamble {
                        if !conn.answered {
                            conn.answered = true;
                            let _ = conn.stream.write_all(bytes);
                        }
                    }
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    conns.swap_remove(i);
                }
            }
        }
        if fds[0].revents != 0 {
            while let Ok((mut stream, _)) = listener.accept() {
                counters.accepted.fetch_add(1, SeqCst);
                if let Preamble::Greet(bytes) = &preamble {
                    // A fresh socket's send buffer takes a greeting whole.
                    let _ = stream.write_all(bytes);
                }
                let _ = stream.set_nonblocking(true);
                conns.push(Conn {
                    stream,
                    answered: false,
                });
            }
        }
        counters.open.store(conns.len(), SeqCst);
    }
    counters.open.store(0, SeqCst);
}
