//! A Redis transport for backplane, on one server or a Redis Cluster.
//!
//! [`RedisBackplane`] carries the envelopes of each hub on a Redis pub/sub
//! channel named `<prefix>:<hub>`. On one server it uses `PUBLISH` /
//! `SUBSCRIBE`; on a Redis Cluster it uses sharded pub/sub (`SPUBLISH` /
//! `SSUBSCRIBE`), so each hub's traffic stays on the shard that owns its
//! channel and the load spreads over the cluster instead of being copied to
//! every node.
//!
//! # Example
//!
//! ```no_run
//! use backplane_api::{Hub, Target};
//! use backplane_redis::RedisBackplane;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> backplane_api::Result<()> {
//! let bus = RedisBackplane::builder("redis://:secret@127.0.0.1:6379/")
//!     .channel_prefix("my-app")
//!     .build()
//!     .await?;
//! let chat = Hub::new("chat", bus).await?;
//! let mut ann = chat.register("conn-1".into(), Some("ann".into()))?;
//!
//! // Reaches "ann" on whichever instance holds her connections.
//! chat.send(Target::user("ann"), "dm", &"hello").await?;
//! assert_eq!(ann.recv().await.unwrap().method(), "dm");
//!
//! // A Redis Cluster: list some nodes, or use `redis+cluster://`.
//! let sharded = RedisBackplane::connect(
//!     "redis://127.0.0.1:7000/,redis://127.0.0.1:7001/",
//! )
//! .await?;
//! assert!(sharded.is_cluster());
//! # Ok(())
//! # }
//! ```
//!
//! # Behavior
//!
//! - Publishing goes over one multiplexed connection shared by every clone
//!   (a [`redis::aio::ConnectionManager`] on one server, a cluster
//!   connection routed by hash slot on a cluster), driven by a background
//!   task that keeps up to four `PUBLISH` (`SPUBLISH`) round trips in
//!   flight. A lone publish is sent at once; envelopes that queue up
//!   behind round trips in flight are packed, in publish order, into one
//!   message per channel (so one hash slot on a cluster) of up to the
//!   maximum message size. Each call still gets its own result. A publish
//!   is never retried: after a transient error the envelope may or may not
//!   have gone out.
//! - Subscribing goes over a dedicated connection read continuously by a
//!   background task. A subscribe returns once Redis has confirmed it.
//!   Several subscriptions to one hub share one Redis subscription; the
//!   channel is unsubscribed when the last of them is dropped. Each message
//!   is decoded once and shared by every subscription of its hub.
//! - When the subscriber connection is lost (a restart of the server, a
//!   `CLIENT KILL TYPE pubsub`, a node of the cluster going away), every
//!   affected subscription receives
//!   [`Event::ConnectionLost`](backplane_api::Event::ConnectionLost). The
//!   task reconnects with capped exponential backoff and jitter (see
//!   [`RedisBackplaneBuilder::reconnect_backoff`]), subscribes again to every hub that
//!   has a live subscription at that moment, waits until Redis has confirmed
//!   each one, and only then sends
//!   [`Event::Resubscribed`](backplane_api::Event::Resubscribed). A loss
//!   during the restore starts it over with the full set, so no hub is left
//!   behind however the losses fall. Losses are logged at warn with the
//!   `attempt` number.
//! - On one server, the subscriber connection is checked with a `PING`
//!   every [`RedisBackplaneBuilder::health_check_interval`] (10 s by
//!   default). A reply that misses
//!   [`RedisBackplaneBuilder::query_timeout`] means the connection went
//!   silent without closing (a half-open TCP connection, a path that drops
//!   traffic): it is closed and handled as a lost connection above, with a
//!   reason that names the health check.
//! - On a cluster, the server drops sharded subscriptions whose hash slot
//!   moves to another node; those hubs get the same lost / resubscribed
//!   pair, and are subscribed again on the node that now owns the slot.
//! - A message on a hub's channel that is not a valid envelope for that
//!   hub (someone else publishing there) is logged at warn and skipped.
//! - Passwords in URLs never appear in logs, `Debug` output or errors:
//!   only host and port are shown.
//!
//! ## Message format
//!
//! Each message on a hub's channel takes one of two forms, told apart by
//! its first character:
//!
//! ```text
//! {"v":1,"hub":"chat",...}       one envelope, as codec::encode writes it
//! [{"v":1,...},{"v":1,...}]       a batch of envelopes, in publish order
//! ```
//!
//! A lone envelope is always sent in the first form, so another program
//! can publish to a hub with `PUBLISH backplane:chat '<envelope JSON>'`.
//! Receivers read both forms; a batch with an envelope they cannot decode
//! is skipped whole.
//!
//! # Features
//!
//! - One server, reached by URL or by a ready [`redis::Client`]
//!   ([`RedisBackplane::from_client`]).
//! - Redis Cluster with sharded pub/sub, selected by listing several node
//!   URLs separated by commas, by the `redis+cluster://` scheme, or by
//!   [`RedisBackplane::cluster`]. Needs Redis 7 or later; the subscriber
//!   connection speaks RESP3.
//!
//! # Limitations
//!
//! - Delivery is at most once. Redis pub/sub keeps nothing: messages
//!   published while an instance's subscriber connection is down never
//!   reach it. The gap is reported, not filled.
//! - Envelopes encoding to more than the maximum message size (1 MiB by
//!   default, see [`RedisBackplaneBuilder::max_message_size`]) are refused
//!   with [`BackplaneError::PayloadTooLarge`](backplane_api::BackplaneError::PayloadTooLarge);
//!   nothing is chunked.
//! - A subscribe made while the subscriber connection is down fails with
//!   [`BackplaneError::NotConnected`](backplane_api::BackplaneError::NotConnected)
//!   instead of waiting for the connection to come back.
//! - On a cluster, the subscriber connections have no health check yet: a
//!   half-open TCP connection to a node (a peer that vanished without
//!   closing it) is only noticed when the operating system gives up on it.
//! - A subscriber that reads more slowly than its hub receives misses
//!   envelopes beyond
//!   [`DEFAULT_SUBSCRIPTION_CAPACITY`](backplane_api::DEFAULT_SUBSCRIPTION_CAPACITY)
//!   and is told with [`Event::Lagged`](backplane_api::Event::Lagged);
//!   Redis itself may also disconnect a subscriber that falls far behind
//!   (its `client-output-buffer-limit`), which then shows as a lost
//!   connection.

mod backplane;
mod config;
mod link;
mod publisher;
mod worker;

pub use backplane::RedisBackplane;
pub use config::{
    DEFAULT_BACKOFF_MAX, DEFAULT_BACKOFF_MIN, DEFAULT_CHANNEL_PREFIX,
    DEFAULT_HEALTH_CHECK_INTERVAL, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_QUERY_TIMEOUT,
    RedisBackplaneBuilder,
};
