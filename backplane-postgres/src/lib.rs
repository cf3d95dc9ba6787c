//! A PostgreSQL `LISTEN` / `NOTIFY` transport for backplane.
//!
//! [`PostgresBackplane`] carries envelopes between the instances of a
//! real-time server through the PostgreSQL database they already share:
//! every instance listens on one channel per hub, a publish is one
//! `pg_notify` call, and the server hands each notification to every
//! listening instance.
//!
//! # Example
//!
//! ```no_run
//! use backplane_api::{Hub, Target};
//! use backplane_postgres::PostgresBackplane;
//!
//! # #[tokio::main]
//! # async fn main() -> backplane_api::Result<()> {
//! let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is set");
//! let backplane = PostgresBackplane::builder(&url)?
//!     .channel_prefix("chat-app")
//!     .build()
//!     .await?;
//!
//! // One hub per instance; here one process plays two instances.
//! let a = Hub::new("chat", backplane.clone()).await?;
//! let b = Hub::new("chat", PostgresBackplane::connect(&url).await?).await?;
//! let mut bob = b.register("bob".into(), None)?;
//!
//! a.send(Target::connection("bob"), "ping", &()).await?;
//! assert_eq!(bob.recv().await.unwrap().method(), "ping");
//! # Ok(())
//! # }
//! ```
//!
//! # Behavior
//!
//! - **Listening.** Each `PostgresBackplane` (and its clones) owns one
//!   dedicated listening connection, never inside a transaction, read
//!   continuously by a background task, so notifications arrive while the
//!   application is otherwise idle. Subscribing to a hub runs `LISTEN` on
//!   its channel and returns once the server confirmed it; further
//!   subscriptions to the same hub share the channel and each receive
//!   every envelope. When the last subscription of a hub is dropped, the
//!   connection runs `UNLISTEN`.
//! - **Channels.** Hub `H` travels on channel `<prefix>__H` (prefix
//!   `backplane` by default), case kept: the name is quoted in `LISTEN` and
//!   passed as a parameter to `pg_notify`. A name longer than PostgreSQL's
//!   63-byte limit becomes its first bytes (cut on a character boundary),
//!   `_` and 16 hex digits of its SHA-256, the same on every instance; see
//!   [`PostgresBackplane::channel_name`].
//! - **Publishing.** A publish is `SELECT pg_notify($1, $2)` with both
//!   values bound, on a publishing connection that a background task opens
//!   on first use. Concurrent publishes are pipelined on it (up to eight
//!   round trips in flight). Envelopes that queue up behind them are packed
//!   into as few notifications of up to 7999 bytes as they fit, in publish
//!   order, and one round trip sends several such notifications (the
//!   queue shared among the free places in the pipeline, up to about 64 KiB
//!   each), on any mix of channels, in one statement, hence one
//!   transaction: they are delivered together and in order. PostgreSQL
//!   folds identical notifications of one transaction into one, so a
//!   notification identical to one already in the statement (the same
//!   envelope published twice) waits for the next round trip instead. A
//!   lone publish is sent at once. Each call still gets its own result.
//! - **Size.** PostgreSQL refuses a payload of 8000 bytes or more. An
//!   envelope that encodes to 7999 bytes or less is one notification; a
//!   larger one is split, on character boundaries, into chunks sent by one
//!   statement (one transaction, so they are delivered together and in
//!   order) and joined again by receivers. Above
//!   [`PostgresBackplaneBuilder::max_message_size`] (1 MiB by default) the
//!   caller gets [`BackplaneError::PayloadTooLarge`] and nothing is sent.
//! - **Transactions.** [`PostgresBackplane::publish_in`] publishes inside
//!   the caller's `tokio_postgres` transaction: the message goes out only
//!   if it commits.
//! - **Reconnecting.** When the listening connection is lost (terminated
//!   backend, server restart, network failure), every subscription gets
//!   [`Event::ConnectionLost`]; the task reconnects with capped exponential
//!   backoff and jitter, listens on every channel again and then sends
//!   [`Event::Resubscribed`] with the downtime. A periodic health check
//!   (`SELECT 1` with a deadline) catches a connection that went silent
//!   without closing. A failed publish returns its error and is never
//!   retried (a retry could deliver it twice); the publishing connection
//!   is reopened by the next publish. If that fails, publishes fail at
//!   once with a transient error, without sending anything, until the
//!   backoff delay has passed; the next publish then tries again.
//! - **Bad input.** A notification on one of our channels that is not a
//!   well-formed frame (a foreign `NOTIFY`, garbage, an empty payload, a
//!   lost or truncated chunk) is logged at warn and skipped. A chunked
//!   message is reported once: the pieces of it that still arrive after
//!   it was found bad are skipped quietly.
//! - **Secrets.** `Debug` and `Display` of the builder and the backplane,
//!   log lines and errors never show the password.
//!
//! ## Notification frames
//!
//! Each notification payload takes one of three forms, told apart by how
//! it starts:
//!
//! ```text
//! {"v":1,"hub":"chat",...}                 one envelope, as codec::encode writes it
//! [{"v":1,...},{"v":1,...}]                 a batch of envelopes, in publish order
//! chunk <id> <index>/<count>\n<piece>       piece <index> (from 0) of message <id>
//! ```
//!
//! A message id is 1 to 64 ASCII letters, digits, `-` or `_`. The pieces of
//! a message joined in index order form a payload of the first two forms.
//! Anything else on a backplane channel is skipped by receivers. Another
//! program can thus publish to a hub with
//! `SELECT pg_notify('backplane__chat', '<envelope JSON>')`.
//!
//! # Features
//!
//! This crate has no optional features yet; see the limitations about TLS.
//!
//! # Limitations
//!
//! - Delivery is at most once: notifications sent while an instance's
//!   listening connection is down are not replayed to it. The gap is
//!   reported as [`Event::ConnectionLost`] / [`Event::Resubscribed`].
//! - Connections are made without TLS (`NoTls`); a TLS connector is not
//!   configurable yet.
//! - A message is at most [`PostgresBackplaneBuilder::max_message_size`]
//!   bytes, and every chunk of a large message passes through PostgreSQL's
//!   notification queue (8 GB by default), which a very slow listener
//!   anywhere on the server can fill.
//! - Subscribing while the listening connection is being restored fails
//!   with [`BackplaneError::NotConnected`] rather than waiting.
//! - `LISTEN` is not supported on a hot standby: connect to the primary.
//!   Connection poolers must run in session mode for the listening
//!   connection.
//!
//! [`BackplaneError::PayloadTooLarge`]: backplane_api::BackplaneError::PayloadTooLarge
//! [`BackplaneError::NotConnected`]: backplane_api::BackplaneError::NotConnected
//! [`Event::ConnectionLost`]: backplane_api::Event::ConnectionLost
//! [`Event::Resubscribed`]: backplane_api::Event::Resubscribed

mod backplane;
mod channel;
mod config;
mod error;
mod frame;
mod listener;
mod publisher;

pub use backplane::PostgresBackplane;
pub use config::{
    DEFAULT_APPLICATION_NAME, DEFAULT_CHANNEL_PREFIX, DEFAULT_MAX_MESSAGE_SIZE,
    PostgresBackplaneBuilder,
};

// Compiles the examples in the workspace README.md (and runs the ones that
// need no server) as doctests; this crate sees every type they use.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;
