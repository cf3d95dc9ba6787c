//! Losing the subscriber connection: `CLIENT KILL TYPE pubsub`, many hubs
//! with two kills in quick succession, and a restart of the server.
//!
//! The kills hit every pub/sub client of the shared servers, so the tests
//! of this file run one at a time.

mod common;

use common::{PrivateRedis, Server, scenarios};
use tokio::sync::Mutex;

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
