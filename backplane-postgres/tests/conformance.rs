//! The conformance suite over PostgreSQL `LISTEN` / `NOTIFY`: one test per
//! scenario, against the server in `BACKPLANE_POSTGRES_URL`.

use std::sync::Arc;

use async_trait::async_trait;
use backplane_api::{Result, ServerId, Transport};
use backplane_postgres::PostgresBackplane;
use conformance::{Capabilities, TransportFactory};

/// Smaller than the default so that the suite's messages at the maximum
/// stay quick, yet several notifications' worth of chunks.
const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The largest payload one notification carries; larger envelopes are
/// chunked.
const NOTIFICATION_LIMIT: usize = 7999;

/// One `PostgresBackplane` (its own listening and publishing connections)
/// per simulated instance, all under a channel prefix of their own.
struct Postgres {
    prefix: String,
}

impl Postgres {
    fn new() -> Self {
        let random = ServerId::random();
        Self {
            prefix: format!("cf{}", &random.as_str()[..10]),
        }
    }
}

#[async_trait]
impl TransportFactory for Postgres {
    async fn instance(&self) -> Result<Arc<dyn Transport>> {
        let url = conformance::servers::postgres_url().await;
        let backplane = PostgresBackplane::builder(&url)?
            .channel_prefix(&self.prefix)
            .max_message_size(MAX_MESSAGE_SIZE)
            .build()
            .await?;
        Ok(Arc::new(backplane))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .max_message_size(MAX_MESSAGE_SIZE)
            .size_boundary(NOTIFICATION_LIMIT)
    }
}

conformance::suite!(Postgres::new());
