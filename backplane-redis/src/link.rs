//! The subscriber connection: classic pub/sub on one server, sharded
//! pub/sub on a cluster.
//!
//! A [`Link`] hides the difference from the subscriber task. It yields
//! [`Incoming`] items (a message, or the loss of some subscriptions) and
//! knows how to subscribe, unsubscribe and restore subscriptions after a
//! loss.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, try_join_all};
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

/// How long one connection attempt, or one restore (connecting and
/// subscribing again), may take before it is considered failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many channels go in one `SUBSCRIBE` when restoring a connection.
const SUBSCRIBE_BATCH: usize = 512;

/// How many `SSUBSCRIBE` commands are in flight at once on a cluster;
/// each names one channel because channels of one command must share a
/// hash slot.
const SSUBSCRIBE_CONCURRENCY: usize = 32;

/// What the subscriber connection produced.
pub(crate) enum Incoming {
    /// A message on a channel.
    Message { channel: Vec<u8>, payload: Vec<u8> },
    /// Subscriptions were lost: all of them (`channels` is `None`) or the
    /// listed ones.
    Lost {
        reason: String,
        channels: Option<Vec<String>>,
    },
}

/// The subscriber connection.
pub(crate) enum Link {
    Standalone(Standalone),
    Cluster(Cluster),
}

/// One server: a dedicated RESP2/RESP3 pub/sub connection, replaced by a
/// fresh one after a loss.
pub(crate) struct Standalone {
    client: redis::Client,
    connection: Option<(PubSubSink, PubSubStream)>,
    health: HealthCheck,
}

/// The periodic `PING` on a standalone subscriber connection.
///
/// A connection whose peer vanished without closing it (a half-open TCP
/// connection, a path that drops traffic) yields no error and no end of
/// stream; only a round trip that never completes shows it is gone.
struct HealthCheck {
    interval: Duration,
    timeout: Duration,
    /// When the next check starts, while none is in flight.
    next_at: Instant,
    /// The check in flight. It is kept here, not in a local, so that
    /// [`Link::next`] stays cancel safe: a check interrupted by another
    /// branch of the subscriber task resumes on the next call.
    running: Option<BoxFuture<'static, Result<(), String>>>,
}

/// A cluster: a RESP3 cluster connection whose node connections receive
/// the sharded messages as push messages.
///
/// redis-rs reconnects node connections itself and re-sends the
/// subscriptions it tracks; the subscriber task still restores every lost
/// channel from its own set and waits for the confirmations, so a
/// subscription is never reported live on the library's word alone.
pub(crate) struct Cluster {
    connection: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// `SUNSUBSCRIBE` confirmations still expected for channels this
    /// instance left itself; any other `sunsubscribe` push comes from the
    /// server (the channel's slot moved) and means the channel was lost.
    own_unsubscribes: HashMap<Vec<u8>, usize>,
}

impl Link {
    /// Opens the subscriber connection to one server, checked with a
    /// `PING` every `interval` that must be answered within `timeout`.
    pub(crate) async fn standalone(
        client: redis::Client,
        interval: Duration,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let mut standalone = Standalone {
            client,
            connection: None,
            health: HealthCheck {
                interval,
                timeout,
                next_at: Instant::now() + interval,
                running: None,
            },
        };
        standalone.connect().await?;
        Ok(Self::Standalone(standalone))
    }

    /// Opens the subscriber connection to a cluster; `timeout` bounds
    /// each `SSUBSCRIBE` and `SUNSUBSCRIBE`.
    ///
    /// TODO: the cluster connection has no health check yet. A check
    /// would have to `PING` every node that holds a subscription and, when
    /// one node stays silent, report only that node's channels lost; the
    /// subscriber task does not track which node holds which channel.
    pub(crate) async fn cluster(
        nodes: Vec<ConnectionInfo>,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let (sender, pushes) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(nodes)
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(timeout)
            .push_sender(sender)
            .build()?;
        let connection = client.get_async_connection().await?;
        Ok(Self::Cluster(Cluster {
            connection,
            pushes,
            own_unsubscribes: HashMap::new(),
        }))
    }

    /// Whether new subscriptions can be made now.
    pub(crate) fn is_up(&self) -> bool {
        match self {
            Self::Standalone(standalone) => standalone.connection.is_some(),
            Self::Cluster(_) => true,
        }
    }

    /// Waits for the next message or loss. On one server this also runs
    /// the health check, and a failed check is returned as a loss.
    ///
    /// Cancel safe: nothing is consumed unless it is returned.
    pub(crate) async fn next(&mut self) -> Incoming {
        match self {
            Self::Standalone(standalone) => standalone.next().await,
            Self::Cluster(cluster) => cluster.next().await,
        }
    }

    /// Subscribes to one channel; returns once the server confirmed it.
    pub(crate) async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Standalone(standalone) => match &mut standalone.connection {
                Some((sink, _)) => sink.subscribe(channel).await,
                None => Err(not_connected()),
            },
            Self::Cluster(cluster) => cluster.connection.ssubscribe(channel).await,
        }
    }

    /// Unsubscribes from one channel.
    pub(crate) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Self::Standalone(standalone) => match &mut standalone.connection {
                Some((sink, _)) => sink.unsubscribe(channel).await,
                None => Ok(()),
            },
            Self::Cluster(cluster) => {
                *cluster
                    .own_unsubscribes
                    .entry(channel.as_bytes().to_vec())
                    .or_default() += 1;
                cluster.connection.sunsubscribe(channel).await
            }
        }
    }

    /// Restores subscriptions after a loss. `all` is every channel that
    /// must be subscribed, `lost` those reported lost.
    ///
    /// On one server the old connection is gone, so a fresh one subscribes
    /// to `all`. On a cluster the connection survives and only `lost` is
    /// subscribed again (subscribing twice is harmless). Returns once every
    /// channel is confirmed.
    pub(crate) async fn restore(&mut self, all: &[String], lost: &[String]) -> RedisResult<()> {
        match self {
            Self::Standalone(standalone) => standalone.restore(all).await,
            Self::Cluster(cluster) => cluster.restore(lost).await,
        }
    }
}

impl Standalone {
    async fn connect(&mut self) -> RedisResult<()> {
        // A check in flight belongs to the connection being replaced.
        self.connection = None;
        self.health.reset();
        let pubsub = self.client.get_async_pubsub().await?;
        self.connection = Some(pubsub.split());
        Ok(())
    }

    async fn next(&mut self) -> Incoming {
        let Some((sink, stream)) = &mut self.connection else {
            return std::future::pending().await;
        };
        let reason = tokio::select! {
            message = stream.next() => match message {
                Some(message) => {
                    return Incoming::Message {
                        channel: message.get_channel_name().as_bytes().to_vec(),
                        payload: message.get_payload_bytes().to_vec(),
                    };
                }
                None => "redis subscriber connection closed".to_owned(),
            },
            failure = self.health.failure(sink) => failure,
        };

        // Dropping both halves closes the connection, so a silent one that
        // wakes up later delivers nothing twice.
        self.connection = None;
        self.health.reset();
        Incoming::Lost {
            reason,
            channels: None,
        }
    }

    async fn restore(&mut self, channels: &[String]) -> RedisResult<()> {
        self.connect().await?;
        let Some((sink, _)) = &mut self.connection else {
            return Err(not_connected());
        };
        for batch in channels.chunks(SUBSCRIBE_BATCH) {
            sink.subscribe(batch).await?;
        }

        // Every channel is confirmed; a round trip after the confirmations
        // shows the connection is still up once they are all in.
        let _: Value = sink.ping().await?;
        Ok(())
    }
}

impl HealthCheck {
    /// Forgets any check in flight; the next one starts an interval from
    /// now.
    fn reset(&mut self) {
        self.running = None;
        self.next_at = Instant::now() + self.interval;
    }

    /// Checks the connection of `sink` every interval; returns only when a
    /// check fails, with the reason.
    async fn failure(&mut self, sink: &PubSubSink) -> String {
        loop {
            if self.running.is_none() {
                sleep_until(self.next_at).await;
                let mut sink = sink.clone();
                let deadline = self.timeout;
                self.running = Some(Box::pin(async move {
                    match timeout(deadline, sink.ping::<Value>()).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(error)) => Err(format!("redis health check failed: {error}")),
                        Err(_) => Err(format!(
                            "redis health check failed: no reply to PING within {deadline:?}"
                        )),
                    }
                }));
            }
            let result = self.running.as_mut().expect("started above").await;
            self.running = None;
            self.next_at = Instant::now() + self.interval;
            match result {
                Ok(()) => tracing::trace!("redis subscriber connection is healthy"),
                Err(reason) => return reason,
            }
        }
    }
}

impl Cluster {
    async fn next(&mut self) -> Incoming {
        loop {
            let Some(push) = self.pushes.recv().await else {
                // The cluster connection's task ended: nothing will arrive
                // on it any more.
                return std::future::pending().await;
            };
            if let Some(incoming) = self.classify(push) {
                return incoming;
            }
        }
    }

    fn classify(&mut self, push: PushInfo) -> Option<Incoming> {
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let mut data = push.data.into_iter();
                let channel = bytes(data.next()?)?;
                let payload = bytes(data.next()?)?;
                Some(Incoming::Message { channel, payload })
            }
            PushKind::Disconnection => Some(Incoming::Lost {
                reason: "redis cluster node connection closed".to_owned(),
                channels: None,
            }),
            PushKind::SUnsubscribe => {
                let channel = bytes(push.data.into_iter().next()?)?;
                if let Some(expected) = self.own_unsubscribes.get_mut(&channel) {
                    *expected -= 1;
                    if *expected == 0 {
                        self.own_unsubscribes.remove(&channel);
                    }
                    return None;
                }
                let channel = String::from_utf8(channel).ok()?;
                Some(Incoming::Lost {
                    reason: "redis cluster unsubscribed the shard channel (slot moved)".to_owned(),
                    channels: Some(vec![channel]),
                })
            }
            _ => None,
        }
    }

    async fn restore(&mut self, channels: &[String]) -> RedisResult<()> {
        for batch in channels.chunks(SSUBSCRIBE_CONCURRENCY) {
            let confirmations = batch.iter().map(|channel| {
                let mut connection = self.connection.clone();
                let channel = channel.clone();
                async move { connection.ssubscribe(channel).await }
            });
            try_join_all(confirmations).await?;
        }
        Ok(())
    }
}

fn bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.into_bytes()),
        _ => None,
    }
}

fn not_connected() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the subscriber connection is down"))
}
