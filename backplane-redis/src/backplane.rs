//! The transport handle: publishing, and subscribing through the
//! subscriber task.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backplane_api::{
    BackplaneError, DEFAULT_SUBSCRIPTION_CAPACITY, Envelope, Publisher, Result, Subscriber,
    Subscription, codec,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, RedisError};
use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, RedisBackplaneBuilder, Server};
use crate::link::{CONNECT_TIMEOUT, Link};
use crate::publisher;
use crate::worker::{Command, Worker};

/// A Redis transport; clones are cheap and share the connections.
///
/// Built with [`RedisBackplane::connect`], [`RedisBackplane::builder`],
/// [`RedisBackplane::from_client`] or [`RedisBackplane::cluster`]. See the
/// [crate documentation](crate) for how it behaves.
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    addresses: Vec<String>,
    cluster: bool,
    publisher: mpsc::UnboundedSender<publisher::Request>,
    commands: mpsc::UnboundedSender<Command>,
    next_subscription: AtomicU64,
}

/// The publishing connection.
#[derive(Clone)]
pub(crate) enum Publish {
    /// `PUBLISH` over a multiplexed connection that reconnects on its own.
    Standalone(ConnectionManager),
    /// `SPUBLISH` over a cluster connection, routed by hash slot.
    Cluster(ClusterConnection),
}

impl RedisBackplane {
    /// Connects with default settings to the Redis server at `url`, or to
    /// a Redis Cluster if `url` lists several comma-separated node URLs or
    /// uses the `redis+cluster://` (`rediss+cluster://`) scheme.
    ///
    /// # Errors
    ///
    /// As [`RedisBackplaneBuilder::build`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).build().await
    }

    /// Starts building a transport for `url`, read as in
    /// [`RedisBackplane::connect`].
    pub fn builder(url: &str) -> RedisBackplaneBuilder {
        RedisBackplaneBuilder::from_url(url)
    }

    /// Starts building a transport for one Redis server reached through
    /// `client`.
    pub fn from_client(client: redis::Client) -> RedisBackplaneBuilder {
        RedisBackplaneBuilder::from_client(client)
    }

    /// Starts building a transport for a Redis Cluster, given the URLs of
    /// some of its nodes (the others are discovered). Hubs use sharded
    /// pub/sub (`SPUBLISH` / `SSUBSCRIBE`).
    pub fn cluster<I, S>(nodes: I) -> RedisBackplaneBuilder
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedisBackplaneBuilder::from_nodes(nodes)
    }

    /// The channel that carries hub `hub`: `<prefix>:<hub>`.
    pub fn channel_name(&self, hub: &str) -> String {
        self.inner.config.channel(hub)
    }

    /// Whether this transport uses Redis Cluster (sharded pub/sub).
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    pub(crate) async fn connect_with(server: Server, config: Config) -> Result<Self> {
        let addresses = server.addresses();
        let (publisher, link) = match server {
            Server::Standalone(client) => {
                let manager = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(config.query_timeout))
                    .set_min_delay(config.backoff_min)
                    .set_max_delay(config.backoff_max);
                let publisher = ConnectionManager::new_with_config(client.clone(), manager)
                    .await
                    .map_err(connect_error)?;
                let link =
                    Link::standalone(client, config.health_check_interval, config.query_timeout)
                        .await
                        .map_err(connect_error)?;
                (Publish::Standalone(publisher), link)
            }
            Server::Cluster(nodes) => {
                let publisher = cluster_publisher(nodes.clone(), config.query_timeout)
                    .await
                    .map_err(connect_error)?;
                let link = Link::cluster(nodes, config.query_timeout)
                    .await
                    .map_err(connect_error)?;
                (Publish::Cluster(publisher), link)
            }
        };

        let config = Arc::new(config);
        let (commands, receiver) = mpsc::unbounded_channel();
        tokio::spawn(Worker::new(link, config.clone(), receiver).run());
        let cluster = matches!(publisher, Publish::Cluster(_));
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(publisher::run(publisher, config.max_message_size, receiver));
        tracing::debug!(
            addresses = ?addresses,
            prefix = %config.prefix,
            "redis transport connected",
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                addresses,
                cluster,
                publisher: requests,
                commands,
                next_subscription: AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("addresses", &self.inner.addresses)
            .field("cluster", &self.is_cluster())
            .field("prefix", &self.inner.config.prefix)
            .field("max_message_size", &self.inner.config.max_message_size)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Publisher for RedisBackplane {
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
        let payload = codec::encode(&envelope)?;
        let max = self.inner.config.max_message_size;
        if payload.len() > max {
            return Err(BackplaneError::PayloadTooLarge {
                size: payload.len(),
                max,
            });
        }

        let (reply, done) = oneshot::channel();
        let request = publisher::Request {
            channel: self.channel_name(&envelope.hub),
            payload,
            reply,
        };
        self.inner
            .publisher
            .send(request)
            .map_err(|_| BackplaneError::Closed)?;
        done.await.map_err(|_| BackplaneError::Closed)?
    }
}

#[async_trait]
impl Subscriber for RedisBackplane {
    async fn subscribe(&self, hub: &str) -> Result<Subscription> {
        let (sender, subscription) = backplane_api::subscription(DEFAULT_SUBSCRIPTION_CAPACITY);
        let id = self.inner.next_subscription.fetch_add(1, Ordering::Relaxed);

        // The guard is attached before the request is sent: if this future
        // is dropped, the guard's unsubscribe follows the subscribe in the
        // task's queue and undoes it.
        let subscription = subscription.guard(Unsubscribe {
            commands: self.inner.commands.clone(),
            hub: hub.to_owned(),
            id,
        });
        let (reply, confirmed) = oneshot::channel();
        let command = Command::Subscribe {
            hub: hub.to_owned(),
            id,
            sender,
            reply,
        };
        self.inner
            .commands
            .send(command)
            .map_err(|_| BackplaneError::Closed)?;
        confirmed.await.map_err(|_| BackplaneError::Closed)??;
        Ok(subscription)
    }
}

/// Ends one subscription when it is dropped; the subscriber task
/// unsubscribes the channel when its last subscription ends.
struct Unsubscribe {
    commands: mpsc::UnboundedSender<Command>,
    hub: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unsubscribe {
            hub: std::mem::take(&mut self.hub),
            id: self.id,
        });
    }
}

async fn cluster_publisher(
    nodes: Vec<ConnectionInfo>,
    timeout: Duration,
) -> redis::RedisResult<ClusterConnection> {
    ClusterClientBuilder::new(nodes)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(timeout)
        .build()?
        .get_async_connection()
        .await
}

/// Whether a later retry may succeed: the connection, not the request,
/// failed.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_cluster_error()
}

fn connect_error(error: RedisError) -> BackplaneError {
    const CONTEXT: &str = "failed to connect to redis";
    if is_transient(&error) {
        BackplaneError::transient(CONTEXT, error)
    } else {
        // Redis answered and refused (a wrong password, say): retrying the
        // same settings cannot help.
        BackplaneError::transport(CONTEXT, error)
    }
}
