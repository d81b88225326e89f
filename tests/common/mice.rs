//! Mice: short request/response flows on a fresh TCP connection each, the
//! traffic a rate limiter must not make wait behind an elephant. The client
//! sends the reply size it wants (u32, big endian); the server sends that
//! many bytes and closes. Client and server are std::net in threads that
//! enter a Pod's netns with setns (which moves only the calling thread).
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};

/// Runs `f` on a new thread inside the netns at `netns`.
pub fn spawn_in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let ns = File::open(netns).unwrap_or_else(|e| panic!("open {}: {e}", netns.display()));
    thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// The mice server in a Pod; stopped and joined on drop.
pub struct MiceServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MiceServer {
    /// Listens on `ip:port` inside `netns`; returns once it listens.
    pub fn start(netns: &Path, ip: &str, port: u16) -> MiceServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (ip, stopping) = (ip.to_owned(), stop.clone());
        let thread = spawn_in_netns(netns, move || {
            let l = TcpListener::bind((ip.as_str(), port)).expect("bind the mice server");
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stopping.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        thread::spawn(move || serve_one(s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1))
                    }
                    Err(e) => panic!("mice server accept: {e}"),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("mice server did not start");
        MiceServer {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve_one(mut s: TcpStream) {
    s.set_nonblocking(false).unwrap();
    s.set_nodelay(true).unwrap();
    let mut req = [0u8; 4];
    if s.read_exact(&mut req).is_ok() {
        let reply = vec![0x5au8; u32::from_be_bytes(req) as usize];
        let _ = s.write_all(&reply);
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.read(&mut req);
}

impl Drop for MiceServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One mouse as the client saw it.
#[derive(Debug, Clone, Copy)]
pub struct Mouse {
    pub reply_bytes: usize,
    /// Connect to last reply byte.
    pub took: Duration,
    /// When the last reply byte arrived.
    pub done: Instant,
}

/// One mouse: connect, ask for `reply_bytes`, read them all.
pub fn fetch(server: SocketAddr, reply_bytes: usize) -> Mouse {
    try_fetch(server, reply_bytes).expect("mouse")
}

/// One mouse, or why it failed (connect, request or reply).
pub fn try_fetch(server: SocketAddr, reply_bytes: usize) -> std::io::Result<Mouse> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&(reply_bytes as u32).to_be_bytes())?;
    let mut buf = vec![0u8; reply_bytes];
    s.read_exact(&mut buf)?;
    Ok(Mouse {
        reply_bytes,
        took: t0.elapsed(),
        done: Instant::now(),
    })
}

/// A paced client: one mouse every `interval` for `phase`, reply sizes taken
/// in turn from `sizes` (so each size sees the same conditions).
pub fn paced_client(
    netns: &Path,
    server: SocketAddr,
    interval: Duration,
    phase: Duration,
    sizes: Vec<usize>,
) -> JoinHandle<Vec<Mouse>> {
    spawn_in_netns(netns, move || {
        let start = Instant::now();
        let mut mice = Vec::new();
        let mut next = start;
        while next < start + phase {
            let now = Instant::now();
            if now < next {
                thread::sleep(next - now);
            }
            mice.push(fetch(server, sizes[mice.len() % sizes.len()]));
            next += interval;
        }
        mice
    })
}

/// `n` clients, each fetching mice back to back until `phase` is over.
/// Returns the mice that completed and how many failed: 200 clients
/// overflow the server's accept queue now and then (std's backlog is 128),
/// and a connection the server never accepted is reset; counted, not fatal.
pub fn concurrent_clients(
    netns: &Path,
    server: SocketAddr,
    n: usize,
    phase: Duration,
    reply_bytes: usize,
) -> (Vec<Mouse>, usize) {
    let deadline = Instant::now() + phase;
    let clients: Vec<_> = (0..n)
        .map(|_| {
            spawn_in_netns(netns, move || {
                let (mut mice, mut failed) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    match try_fetch(server, reply_bytes) {
                        Ok(m) => mice.push(m),
                        Err(_) => failed += 1,
                    }
                }
                (mice, failed)
            })
        })
        .collect();
    let (mut mice, mut failed) = (Vec::new(), 0);
    for c in clients {
        let (m, f) = c.join().expect("mice client");
        mice.extend(m);
        failed += f;
    }
    (mice, failed)
}
