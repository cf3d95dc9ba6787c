//! PostgreSQL: raw `pg_notify` next to `PostgresBackplane`.

use std::sync::Arc;

use backplane_postgres::PostgresBackplane;
use futures_util::StreamExt;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};

use super::{Instances, Task};
use crate::load::{Publish, Result, Sending, Sink};

/// The channel the raw runs notify on; the backplane uses its own.
const RAW_CHANNEL: &str = "bench_raw";

/// The raw client: one connection sending `SELECT pg_notify($1, $2)`, one
/// message per notification, with a prepared statement; concurrent calls
/// are pipelined on the connection. A second connection listens.
pub(crate) struct RawNotify {
    client: Client,
    statement: Statement,
    _publishing: Task,
    _listening: Listening,
}

impl RawNotify {
    pub(crate) async fn start(url: &str, sink: Arc<Sink>) -> Result<Self> {
        let listening = Listening::start(url, RAW_CHANNEL, sink).await?;
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let publishing = Task(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let statement = client.prepare("SELECT pg_notify($1, $2)").await?;
        Ok(Self {
            client,
            statement,
            _publishing: publishing,
            _listening: listening,
        })
    }
}

impl Publish for RawNotify {
    fn publish(&self, payload: Arc<str>) -> Sending<'_> {
        Box::pin(async move {
            let payload: &str = &payload;
            self.client
                .execute(&self.statement, &[&RAW_CHANNEL, &payload])
                .await?;
            Ok(())
        })
    }
}

/// A connection that `LISTEN`s on one channel and records every
/// notification's payload.
struct Listening {
    _client: Client,
    _reading: Task,
}

impl Listening {
    async fn start(url: &str, channel: &str, sink: Arc<Sink>) -> Result<Self> {
        let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;

        // The connection hands notifications out only to whoever polls it,
        // so this task drives it for the client's queries too.
        let reading = Task(tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(notification) = message {
                    sink.record(notification.payload().as_bytes());
                }
            }
        }));
        client
            .batch_execute(&format!("LISTEN \"{channel}\""))
            .await?;
        Ok(Self {
            _client: client,
            _reading: reading,
        })
    }
}

/// Instance A and instance B, each with its own `PostgresBackplane` (its
/// own listening and publishing connections).
pub(crate) async fn backplane(url: &str, sink: Arc<Sink>) -> Result<Instances<PostgresBackplane>> {
    let a = PostgresBackplane::connect(url).await?;
    let b = PostgresBackplane::connect(url).await?;
    Instances::start(a, b, sink).await
}
