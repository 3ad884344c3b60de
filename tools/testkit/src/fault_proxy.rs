//! A TCP proxy that injects network faults between a process and its server.
//!
//! Tests put it between a worker (or a driver client) and the stand, then, while traffic flows:
//! - [`FaultProxy::set_latency`] delays every chunk in both directions;
//! - [`FaultProxy::cut_connections`] closes every open connection at once (new ones are accepted);
//! - [`FaultProxy::black_hole`] accepts connections and reads requests but answers nothing, as a
//!   partition does; bytes are held, not dropped, so a connection that outlives the partition
//!   carries on where it stopped, like TCP after a healed partition;
//! - [`FaultProxy::restore`] ends latency and the black hole.
//!
//! The proxy runs on a thread and runtime of its own, so it outlives any one test's runtime and can
//! serve other OS processes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The faults in force, published to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Faults {
    latency: Duration,
    black_hole: bool,
    /// Bumped by each cut; a connection ends when it sees a generation newer than its own.
    cut_generation: u64,
    shutdown: bool,
}

#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (faults, watcher) = watch::channel(Faults::default());
        let open = Arc::new(AtomicUsize::new(0));
        let open_in_thread = open.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{addr}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("a tokio listener");
                    accept_loop(listener, upstream, watcher, open_in_thread).await;
                });
            })?;
        Ok(FaultProxy {
            addr,
            faults,
            open,
            thread: Some(thread),
        })
    }

    /// The address clients connect to instead of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every chunk, in each direction, by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|f| f.latency = latency);
    }

    /// Closes every connection open now, on both sides. Later connections are served normally.
    pub fn cut_connections(&self) {
        self.faults.send_modify(|f| f.cut_generation += 1);
    }

    /// From now on, nothing passes in either direction; connections stay open and are accepted.
    pub fn black_hole(&self) {
        self.faults.send_modify(|f| f.black_hole = true);
    }

    /// Ends latency and the black hole; held bytes flow again.
    pub fn restore(&self) {
        self.faults.send_modify(|f| {
            f.latency = Duration::ZERO;
            f.black_hole = false;
        });
    }

    /// How many client connections are open through the proxy.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.faults.send_modify(|f| f.shutdown = true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Faults>,
    open: Arc<AtomicUsize>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let faults = faults.clone();
                let open = open.clone();
                tokio::spawn(async move {
                    open.fetch_add(1, Ordering::SeqCst);
                    serve_connection(client, upstream, faults).await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
            changed = faults.changed() => {
                if changed.is_err() || faults.borrow().shutdown {
                    return;
                }
            }
        }
    }
}

/// Forwards one connection until either side closes, a cut, or shutdown.
async fn serve_connection(
    client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
) {
    let generation = faults.borrow().cut_generation;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let ended = ended_by_fault(faults.clone(), generation);
    tokio::select! {
        _ = pump(client_read, server_write, faults.clone()) => {}
        _ = pump(server_read, client_write, faults) => {}
        _ = ended => {}
    }
    // Dropping both halves of both sockets closes the connection on both sides.
}

/// Resolves when the connection must end: a cut after it opened, or the proxy's shutdown.
async fn ended_by_fault(mut faults: watch::Receiver<Faults>, generation: u64) {
    loop {
        {
            let f = faults.borrow_and_update();
            if f.shutdown || f.cut_generation != generation {
                return;
            }
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
}

/// Copies one direction, chunk by chunk, holding each chunk while the black hole is on and
/// delaying it by the latency in force.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if faults.wait_for(|f| !f.black_hole).await.is_err() {
            return;
        }
        let latency = faults.borrow().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
