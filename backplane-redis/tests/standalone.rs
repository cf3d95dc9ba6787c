//! The transport against one Redis server (`BACKPLANE_REDIS_URL`).
//!
//! Tests that kill connections live in `reconnect.rs`, so that they cannot
//! disturb these.

mod common;

use common::{Server, scenarios};

#[tokio::test]
async fn hub_round_trip() {
    scenarios::hub_round_trip(Server::standalone()).await;
}

#[tokio::test]
async fn oversized_envelope_is_refused() {
    scenarios::oversized(Server::standalone()).await;
}

#[tokio::test]
async fn fan_out_and_unsubscribe() {
    scenarios::fan_out_and_unsubscribe(Server::standalone()).await;
}

#[tokio::test]
async fn garbage_is_skipped() {
    scenarios::garbage_is_skipped(Server::standalone()).await;
}

#[tokio::test]
async fn from_client() {
    use backplane_api::Subscriber;

    let prefix = common::prefix();
    let client = redis::Client::open(common::redis_url()).unwrap();
    let bus = backplane_redis::RedisBackplane::from_client(client)
        .channel_prefix(&prefix)
        .build()
        .await
        .unwrap();
    assert!(!bus.is_cluster());
    let _subscription = bus.subscribe("h").await.unwrap();
    assert_eq!(
        common::pubsub_channels(&common::redis_url(), &prefix).await,
        1
    );
}
