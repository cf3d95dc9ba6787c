//! Losing the subscriber connection: `CLIENT KILL TYPE pubsub`, many hubs
//! with two kills in quick succession, a restart of the server, and a
//! connection that goes silent without closing.
//!
//! The kills hit every pub/sub client of the shared servers, so the tests
//! of this file run one at a time.

mod common;

use std::time::Duration;

use backplane_api::{Event, Subscriber};
use backplane_redis::RedisBackplane;
use common::{PrivateRedis, Server, scenarios};
use conformance::proxy::{ProxyMode, TcpProxy};
use redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::sync::Mutex;
use tokio::time::timeout;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test]
async fn standalone_survives_client_kill() {
    let _turn = ONE_AT_A_TIME.lock().await;
    scenarios::survives_client_kill(Server::standalone()).await;
}

#[tokio::test]
async fn standalone_many_hubs_two_kills() {
    let _turn = ONE_AT_A_TIME.lock().await;
    scenarios::many_hubs_two_kills(Server::standalone()).await;
}

#[tokio::test]
async fn standalone_survives_restart() {
    scenarios::survives_restart(PrivateRedis::start().await, false).await;
}

#[tokio::test]
async fn cluster_survives_client_kill() {
    let _turn = ONE_AT_A_TIME.lock().await;
    scenarios::survives_client_kill(Server::cluster()).await;
}

#[tokio::test]
async fn cluster_many_hubs_two_kills() {
    let _turn = ONE_AT_A_TIME.lock().await;
    scenarios::many_hubs_two_kills(Server::cluster()).await;
}

#[tokio::test]
async fn cluster_survives_node_restart() {
    scenarios::survives_restart(PrivateRedis::start_cluster().await, true).await;
}

#[tokio::test]
async fn standalone_health_check_catches_a_silent_connection() {
    let _turn = ONE_AT_A_TIME.lock().await;

    // The subscriber reaches the shared server through a proxy that can go
    // silent; the publisher reaches it directly.
    let info = common::redis_url().into_connection_info().unwrap();
    let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        panic!("this test needs a TCP server address");
    };
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();
    let proxied = info.set_addr(ConnectionAddr::Tcp(
        "127.0.0.1".to_owned(),
        proxy.addr().port(),
    ));
    let prefix = common::prefix();
    let watched = RedisBackplane::from_client(redis::Client::open(proxied).unwrap())
        .channel_prefix(&prefix)
        .health_check_interval(Duration::from_millis(200))
        .query_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let direct = common::backplane(&common::redis_url(), &prefix).await;

    let mut subscription = watched.subscribe("stall").await.unwrap();
    common::publish_eventually(&direct, common::envelope("stall", 1)).await;
    common::wait_event(&mut subscription, "before the stall", |e| {
        common::is_envelope(e, 1)
    })
    .await;

    // The path goes dark: no error, no close, just silence.
    proxy.set_mode(ProxyMode::Stall);
    match timeout(Duration::from_secs(10), subscription.recv()).await {
        Ok(Some(Event::ConnectionLost { reason })) => {
            assert!(reason.contains("health check"), "{reason}");
        }
        other => panic!("expected the loss, got {other:?}"),
    }

    // Reconnecting goes through the proxy too, so it succeeds only now.
    proxy.set_mode(ProxyMode::Forward);
    match timeout(common::WAIT, subscription.recv()).await {
        Ok(Some(Event::Resubscribed { downtime })) => assert!(downtime > Duration::ZERO),
        other => panic!("expected the recovery, got {other:?}"),
    }
    common::publish_eventually(&direct, common::envelope("stall", 2)).await;
    common::wait_event(&mut subscription, "after the recovery", |e| {
        common::is_envelope(e, 2)
    })
    .await;
}
