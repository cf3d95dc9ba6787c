//! The transport against a Redis Cluster (`BACKPLANE_REDIS_CLUSTER_URL`),
//! over sharded pub/sub.
//!
//! Tests that kill connections live in `reconnect.rs`, so that they cannot
//! disturb these.

mod common;

use common::{Server, scenarios};

#[tokio::test]
async fn hub_round_trip() {
    scenarios::hub_round_trip(Server::cluster()).await;
}

#[tokio::test]
async fn oversized_envelope_is_refused() {
    scenarios::oversized(Server::cluster()).await;
}

#[tokio::test]
async fn fan_out_and_unsubscribe() {
    scenarios::fan_out_and_unsubscribe(Server::cluster()).await;
}

#[tokio::test]
async fn garbage_is_skipped() {
    scenarios::garbage_is_skipped(Server::cluster()).await;
}

#[tokio::test]
async fn cluster_is_selected_by_url_or_builder() {
    let nodes = common::cluster_nodes();
    let by_list = backplane_redis::RedisBackplane::connect(&common::cluster_url())
        .await
        .unwrap();
    assert!(by_list.is_cluster());

    let seed = format!("redis+cluster://{}", &nodes[0]["redis://".len()..]);
    let by_scheme = backplane_redis::RedisBackplane::connect(&seed)
        .await
        .unwrap();
    assert!(by_scheme.is_cluster());

    let by_builder = backplane_redis::RedisBackplane::cluster(&nodes[..1])
        .build()
        .await
        .unwrap();
    assert!(by_builder.is_cluster());
}

#[tokio::test]
async fn hubs_spread_over_the_nodes() {
    use backplane_api::Subscriber;

    let prefix = common::prefix();
    let bus = common::backplane(&common::cluster_url(), &prefix).await;
    let mut subscriptions = Vec::new();
    for i in 0..30 {
        subscriptions.push(bus.subscribe(&format!("hub-{i}")).await.unwrap());
    }
    let mut nodes_used = 0;
    for node in common::cluster_nodes() {
        if common::shard_channels(&[node], &prefix).await > 0 {
            nodes_used += 1;
        }
    }
    assert!(nodes_used >= 2, "30 hubs landed on {nodes_used} node(s)");
}
