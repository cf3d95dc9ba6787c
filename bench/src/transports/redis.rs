//! Redis: raw `PUBLISH` next to `RedisBackplane`.

use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use backplane_redis::RedisBackplane;
use futures_util::StreamExt;

use super::{Instances, Task};
use crate::load::{Publish, Result, Sending, Sink};

/// The channel the raw runs publish on; the backplane uses its own.
const RAW_CHANNEL: &str = "bench_raw";

/// The raw client: `PUBLISH` on one multiplexed connection, concurrent
/// calls pipelined on it; a pub/sub connection subscribes.
pub(crate) struct RawPublish {
    connection: MultiplexedConnection,
    _subscribing: Task,
}

impl RawPublish {
    pub(crate) async fn start(url: &str, sink: Arc<Sink>) -> Result<Self> {
        let client = ::redis::Client::open(url)?;

        // Subscribed before the first publish, so nothing is missed.
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(RAW_CHANNEL).await?;
        let subscribing = Task(tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                sink.record(message.get_payload_bytes());
            }
        }));

        let connection = client.get_multiplexed_async_connection().await?;
        Ok(Self {
            connection,
            _subscribing: subscribing,
        })
    }
}

impl Publish for RawPublish {
    fn publish(&self, payload: Arc<str>) -> Sending<'_> {
        // A multiplexed connection is a cheap handle on one shared socket.
        let mut connection = self.connection.clone();
        Box::pin(async move {
            ::redis::cmd("PUBLISH")
                .arg(RAW_CHANNEL)
                .arg(&*payload)
                .query_async::<i64>(&mut connection)
                .await?;
            Ok(())
        })
    }
}

/// Instance A and instance B, each with its own `RedisBackplane` (its own
/// publishing and subscriber connections).
pub(crate) async fn backplane(url: &str, sink: Arc<Sink>) -> Result<Instances<RedisBackplane>> {
    let a = RedisBackplane::connect(url).await?;
    let b = RedisBackplane::connect(url).await?;
    Instances::start(a, b, sink).await
}
