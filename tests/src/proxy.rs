//! A fault-injecting TCP proxy (tokio) between the nodes and PostgreSQL:
//! it forwards bytes both ways and, on command, adds latency to every
//! chunk a client sends, blackholes every connection (nothing forwarded,
//! new connections parked, until healed: a partition), resets every
//! open connection (RST, `SO_LINGER` 0) wherever its transaction is, or
//! cuts answers: a request reaches the server, which carries it out (an
//! append commits), but its answer never reaches the client and the
//! connection is reset — the client cannot know the outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Bytes read from one side before they are forwarded.
pub const CHUNK_BYTES_MAX: usize = 64 * 1024;

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every chunk towards the server waits this long first.
    Latency(Duration),
    /// Nothing is forwarded until the mode changes.
    Blackhole,
    /// Every Nth chunk a client sends reaches the server, whose answer is
    /// dropped and the connection reset (commit outcome unknown).
    CutAnswers(u64),
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub resets: AtomicUsize,
    /// Resets of a connection whose client had sent bytes the server had
    /// not answered yet (a statement or COMMIT in flight: outcome unknown).
    pub resets_in_flight: AtomicUsize,
    /// Answers dropped by `CutAnswers` (their requests were carried out).
    pub answers_cut: AtomicUsize,
    /// Chunks sent towards the server while `CutAnswers` was on.
    pub chunks_under_cut: AtomicU64,
    pub bytes: AtomicU64,
}

/// The running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// The loopback port clients connect to.
    pub port: u16,
    mode: watch::Sender<Mode>,
    /// Bumped by [`Proxy::reset_all`]; every connection watches it.
    resets: watch::Sender<u64>,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> Proxy {
        Proxy::start_on(0, upstream).await
    }

    /// [`Proxy::start`] on a given loopback port (0: any free one).
    pub async fn start_on(port: u16, upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("address").port();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (resets, resets_rx) = watch::channel(0u64);
        let stats: Arc<Stats> = Arc::default();
        let counters = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counters.connections.fetch_add(1, Ordering::Relaxed);
                let link = Link {
                    mode: mode_rx.clone(),
                    resets: resets_rx.clone(),
                    stats: Arc::clone(&counters),
                    unanswered: Arc::default(),
                    cut: Arc::default(),
                };
                tokio::spawn(link.serve(client, upstream));
            }
        });
        Proxy {
            port,
            mode,
            resets,
            stats,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }

    /// Resets every open connection now.
    pub fn reset_all(&self) {
        self.resets.send_modify(|count| *count += 1);
    }

    /// `url` with its port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (head, tail) = url.rsplit_once('/').expect("a database URL");
        let (host, _) = head.rsplit_once(':').expect("a port in the URL");
        format!("{host}:{}/{tail}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.reset_all();
        self.task.abort();
    }
}

/// One proxied connection.
struct Link {
    mode: watch::Receiver<Mode>,
    resets: watch::Receiver<u64>,
    stats: Arc<Stats>,
    /// Bytes sent towards the server since its last answer.
    unanswered: Arc<AtomicU64>,
    /// Set when the next answer is to be cut.
    cut: Arc<AtomicBool>,
}

impl Link {
    async fn serve(mut self, client: TcpStream, upstream: std::net::SocketAddr) {
        // A partition parks new connections too.
        if !wait_while_blackholed(&mut self.mode).await {
            return;
        }
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let (_, _) = (client.set_nodelay(true), server.set_nodelay(true));
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        self.resets.mark_unchanged();
        let mut resets = self.resets.clone();
        let up = pump(
            client_read,
            server_write,
            self.mode.clone(),
            true,
            Arc::clone(&self.stats),
            Arc::clone(&self.unanswered),
            Arc::clone(&self.cut),
        );
        let down = pump(
            server_read,
            client_write,
            self.mode.clone(),
            false,
            Arc::clone(&self.stats),
            Arc::clone(&self.unanswered),
            Arc::clone(&self.cut),
        );
        tokio::select! {
            (client_read, server_write) = up => {
                drop((client_read, server_write));
            }
            (server_read, client_write) = down => {
                drop((server_read, client_write));
            }
            _ = resets.changed() => {
                self.stats.resets.fetch_add(1, Ordering::Relaxed);
                if self.unanswered.load(Ordering::Relaxed) > 0 {
                    self.stats.resets_in_flight.fetch_add(1, Ordering::Relaxed);
                }
                // The pumps are dropped with their halves; the sockets
                // close with RST because of the zero linger set below.
            }
        }
    }
}

/// Waits while the mode is `Blackhole`; false when the proxy is gone.
async fn wait_while_blackholed(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        if *mode.borrow_and_update() != Mode::Blackhole {
            return true;
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}

/// Forwards `from` to `to` under the current mode until either side
/// closes; returns the halves (so the caller decides how they close).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    towards_server: bool,
    stats: Arc<Stats>,
    unanswered: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    let _ = from.as_ref().set_zero_linger();
    let _ = to.as_ref().set_zero_linger();
    let mut buffer = vec![0u8; CHUNK_BYTES_MAX];
    loop {
        if !wait_while_blackholed(&mut mode).await {
            break;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        // Data read during a partition is held, not forwarded, until it heals.
        if !wait_while_blackholed(&mut mode).await {
            break;
        }
        let current = *mode.borrow();
        if let (true, Mode::Latency(delay)) = (towards_server, current) {
            // The injected latency itself, not a wait for something.
            tokio::time::sleep(delay).await;
        }
        if let (true, Mode::CutAnswers(every)) = (towards_server, current) {
            let seen = stats.chunks_under_cut.fetch_add(1, Ordering::Relaxed) + 1;
            if seen.is_multiple_of(every.max(1)) {
                cut.store(true, Ordering::Relaxed);
            }
        }
        if !towards_server && cut.load(Ordering::Relaxed) {
            // The server answered: the request was carried out. The client
            // never hears of it; the link ends with RST.
            stats.answers_cut.fetch_add(1, Ordering::Relaxed);
            break;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
        stats.bytes.fetch_add(read as u64, Ordering::Relaxed);
        if towards_server {
            unanswered.fetch_add(read as u64, Ordering::Relaxed);
        } else {
            unanswered.store(0, Ordering::Relaxed);
        }
    }
    (from, to)
}
