//! The fault proxy against a loopback echo server: it forwards, stalls
//! without closing, and cuts connections.

use std::net::SocketAddr;
use std::time::Duration;

use conformance::proxy::{ProxyMode, TcpProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stalled connection must stay silent (and open).
const QUIET: Duration = Duration::from_millis(300);

/// Starts a server on loopback that echoes every byte back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

async fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buffer = vec![0; len];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut buffer))
        .await
        .expect("no reply through the proxy")
        .expect("the proxied connection failed");
    buffer
}

async fn wait_for_connections(proxy: &TcpProxy, count: usize) {
    tokio::time::timeout(TIMEOUT, async {
        while proxy.connection_count() != count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the proxy never carried {count} connections"));
}

#[tokio::test]
async fn forwards_both_ways() {
    let proxy = TcpProxy::start(echo_server().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    assert_eq!(read_exact(&mut client, 4).await, b"ping");
    wait_for_connections(&proxy, 1).await;
}

#[tokio::test]
async fn stall_keeps_the_connection_open_and_silent() {
    let proxy = TcpProxy::start(echo_server().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(b"one").await.unwrap();
    assert_eq!(read_exact(&mut client, 3).await, b"one");

    proxy.set_mode(ProxyMode::Stall);
    client.write_all(b"two").await.unwrap();
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(QUIET, client.read(&mut buffer)).await;
    assert!(
        read.is_err(),
        "a stalled connection must neither deliver nor close, got {read:?}"
    );
    assert_eq!(proxy.connection_count(), 1);

    // What was held back flows once the path is back.
    proxy.set_mode(ProxyMode::Forward);
    assert_eq!(read_exact(&mut client, 3).await, b"two");
}

#[tokio::test]
async fn drop_connections_cuts_current_ones_only() {
    let proxy = TcpProxy::start(echo_server().await).await.unwrap();
    let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
    first.write_all(b"a").await.unwrap();
    assert_eq!(read_exact(&mut first, 1).await, b"a");
    wait_for_connections(&proxy, 1).await;

    proxy.drop_connections();
    let mut buffer = [0u8; 1];
    let read = tokio::time::timeout(TIMEOUT, first.read(&mut buffer))
        .await
        .expect("a dropped connection must be closed, not left hanging");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a dropped connection delivered {read:?}"
    );
    wait_for_connections(&proxy, 0).await;

    // New connections are still accepted and forwarded.
    let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
    second.write_all(b"b").await.unwrap();
    assert_eq!(read_exact(&mut second, 1).await, b"b");
}
