//! A loopback TCP proxy that can forward, stall or cut connections, for
//! testing how a transport survives network faults.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// Bytes flow both ways.
    Forward,
    /// Connections stay open but no byte moves in either direction, like a
    /// network path that silently went dark: neither side sees an error.
    Stall,
}

/// A TCP proxy on `127.0.0.1` in front of one upstream address.
///
/// Connect clients to [`TcpProxy::addr`] instead of the server. Dropping the
/// proxy closes every connection it carries.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> std::io::Result<()> {
/// use conformance::proxy::{ProxyMode, TcpProxy};
///
/// let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await?;
/// let port = proxy.addr().port(); // connect the client here
/// proxy.set_mode(ProxyMode::Stall); // the client now hears nothing
/// proxy.set_mode(ProxyMode::Forward); // and now it does again
/// proxy.drop_connections(); // every carried connection is reset
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    ///
    /// # Errors
    ///
    /// Fails if no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(ProxyMode::Forward);
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            upstream,
            mode.clone(),
            connections.clone(),
        ));
        Ok(Self {
            addr,
            mode,
            connections,
            accept_loop,
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every current and future connection to `mode`.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// Closes every connection the proxy carries now; new ones are still
    /// accepted.
    pub fn drop_connections(&self) {
        self.lock().abort_all();
    }

    /// How many connections the proxy carries now.
    pub fn connection_count(&self) -> usize {
        let mut connections = self.lock();
        while connections.try_join_next().is_some() {}
        connections.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.lock().abort_all();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: watch::Sender<ProxyMode>,
    connections: Arc<Mutex<JoinSet<()>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let mode = mode.subscribe();
        let mut set = connections.lock().unwrap_or_else(|e| e.into_inner());
        set.spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                _ = pump(client_read, server_write, mode.clone()) => {}
                _ = pump(server_read, client_write, mode) => {}
            }
        });
    }
}

/// Copies bytes one way while the mode is `Forward`; while it is `Stall`,
/// neither reads nor writes, so the sockets stay open and silent.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<ProxyMode>,
) -> io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        while *mode.borrow_and_update() == ProxyMode::Stall {
            if mode.changed().await.is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            read = from.read(&mut buffer) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                // Bytes read just before a stall are held back too.
                while *mode.borrow() == ProxyMode::Stall {
                    if mode.changed().await.is_err() {
                        return Ok(());
                    }
                }
                to.write_all(&buffer[..n]).await?;
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
