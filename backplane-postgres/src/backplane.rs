//! The handle applications hold: [`PostgresBackplane`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use backplane_api::{BackplaneError, Envelope, Publisher, Result, Subscriber, Subscription, codec};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::GenericClient;
use tokio_postgres::types::{ToSql, Type};

use crate::channel::channel_name;
use crate::config::{PostgresBackplaneBuilder, Settings, Target};
use crate::error::wrap;
use crate::frame::{self, MAX_NOTIFICATION_BYTES, MessageIds};
use crate::listener::{Command, Link, Listener};
use crate::publisher::{self, NOTIFY_MANY, NOTIFY_ONE, Payload, Request};

/// A backplane over PostgreSQL `LISTEN` / `NOTIFY`.
///
/// Cloning is cheap: clones share one listening connection, one
/// publishing connection and their background tasks, which stop when the
/// last clone is dropped (open subscriptions then end). See the crate
/// documentation for how it behaves.
#[derive(Clone)]
pub struct PostgresBackplane {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    listener: mpsc::UnboundedSender<Command>,
    publisher: mpsc::UnboundedSender<Request>,
    message_ids: MessageIds,
    next_subscription: AtomicU64,
}

impl PostgresBackplane {
    /// Connects with default settings to the server a connection string
    /// names, as `postgres://user:password@host:port/dbname` or
    /// `host=... user=...`.
    ///
    /// # Errors
    ///
    /// A [`BackplaneError::Transport`] if the string is invalid, or as
    /// [`PostgresBackplaneBuilder::build`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call leaves no task or connection behind.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url)?.build().await
    }

    /// Starts building a backplane for the server a connection string
    /// names.
    ///
    /// # Errors
    ///
    /// A (non-transient) [`BackplaneError::Transport`] if the string is not
    /// a valid connection string; the message never repeats the string.
    pub fn builder(url: &str) -> Result<PostgresBackplaneBuilder> {
        PostgresBackplaneBuilder::parse(url)
    }

    /// Starts building a backplane from a `tokio_postgres` configuration.
    pub fn from_config(config: tokio_postgres::Config) -> PostgresBackplaneBuilder {
        PostgresBackplaneBuilder::new(config)
    }

    pub(crate) async fn start(settings: Arc<Settings>) -> Result<Self> {
        let link = Link::open(&settings, &[]).await?;
        let (listener, commands) = mpsc::unbounded_channel();
        let (publisher, requests) = mpsc::unbounded_channel();
        tokio::spawn(Listener::new(settings.clone(), commands).run(link));
        tokio::spawn(publisher::run(settings.clone(), requests));
        tracing::debug!(target_db = %Target(&settings.config), "backplane started");
        let inner = Inner {
            settings,
            listener,
            publisher,
            message_ids: MessageIds::new(),
            next_subscription: AtomicU64::new(0),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The PostgreSQL channel that carries hub `hub`: `<prefix>__<hub>`, or
    /// a shortened form with a hash suffix when that is longer than 63
    /// bytes.
    pub fn channel_name(&self, hub: &str) -> String {
        channel_name(&self.inner.settings.channel_prefix, hub)
    }

    /// The largest envelope, in encoded bytes, this backplane publishes.
    pub fn max_message_size(&self) -> usize {
        self.inner.settings.max_message_size
    }

    /// Publishes `envelope` as part of the caller's transaction: PostgreSQL
    /// delivers it when (and only if) the transaction commits, after the
    /// changes it made are visible.
    ///
    /// `client` is a [`tokio_postgres::Transaction`] (or a
    /// [`tokio_postgres::Client`], in which case the statement commits at
    /// once). Build the envelope with
    /// [`Hub::envelope`](backplane_api::Hub::envelope): it carries a fresh
    /// origin, so every instance, the one that commits included, delivers
    /// it to its local connections when the notification arrives.
    ///
    /// ```no_run
    /// # async fn example(
    /// #     hub: backplane_api::Hub<backplane_postgres::PostgresBackplane>,
    /// #     client: &mut tokio_postgres::Client,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// use backplane_api::Target;
    ///
    /// let transaction = client.transaction().await?;
    /// transaction
    ///     .execute("INSERT INTO messages (room, body) VALUES ($1, $2)", &[&"room-1", &"hi"])
    ///     .await?;
    /// let envelope = hub.envelope(Target::group("room-1"), "say", &"hi")?;
    /// hub.transport().publish_in(&transaction, &envelope).await?;
    /// transaction.commit().await?; // now every instance delivers it
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Unlike [`Publisher::publish`], the envelope is always framed with a
    /// message id (see the crate documentation): PostgreSQL folds identical
    /// notifications of one transaction into one, and the id keeps two
    /// identical envelopes published in one transaction two deliveries.
    ///
    /// # Errors
    ///
    /// - [`BackplaneError::PayloadTooLarge`] if the envelope encodes to more
    ///   than [`PostgresBackplane::max_message_size`] bytes; nothing was
    ///   sent;
    /// - a [`BackplaneError::Transport`] if the statement failed; as with
    ///   any failed statement, the transaction is then aborted and can only
    ///   be rolled back.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped, the notification may or
    /// may not be part of the transaction.
    pub async fn publish_in<C>(&self, client: &C, envelope: &Envelope) -> Result<()>
    where
        C: GenericClient + Sync,
    {
        let text = self.encode(envelope)?;
        let channel = self.channel_name(&envelope.hub);
        let chunks = frame::chunks(&self.inner.message_ids.next(), &text);
        tracing::trace!(
            hub = envelope.hub,
            channel,
            bytes = text.len(),
            chunks = chunks.len(),
            "publishing in a transaction",
        );

        let result = if let [one] = chunks.as_slice() {
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(&channel, Type::TEXT), (one, Type::TEXT)];
            client.query_typed(NOTIFY_ONE, &params).await
        } else {
            let params: [(&(dyn ToSql + Sync), Type); 2] =
                [(&channel, Type::TEXT), (&chunks, Type::TEXT_ARRAY)];
            client.query_typed(NOTIFY_MANY, &params).await
        };
        result
            .map(drop)
            .map_err(|error| wrap("failed to publish in transaction", error))
    }

    /// Encodes an envelope and checks its size.
    fn encode(&self, envelope: &Envelope) -> Result<String> {
        let text = codec::encode(envelope)?;
        let max = self.inner.settings.max_message_size;
        if text.len() > max {
            return Err(BackplaneError::PayloadTooLarge {
                size: text.len(),
                max,
            });
        }
        Ok(text)
    }
}

#[async_trait]
impl Publisher for PostgresBackplane {
    /// Publishes `envelope` on its hub's channel.
    ///
    /// Returns once PostgreSQL has accepted (and committed) the
    /// notification. An envelope that encodes to 7999 bytes or less goes
    /// as one notification (possibly shared with others that queued up at
    /// the same time); a larger one is sent as chunks in one transaction.
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
        let text = self.encode(&envelope)?;
        let payload = if text.len() <= MAX_NOTIFICATION_BYTES {
            Payload::Single(text)
        } else {
            Payload::Chunks(frame::chunks(&self.inner.message_ids.next(), &text))
        };
        let (reply, done) = oneshot::channel();
        let request = Request {
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
impl Subscriber for PostgresBackplane {
    /// Subscribes to hub `hub`; returns once the server has confirmed the
    /// `LISTEN` on the listening connection (at once if another
    /// subscription already listens to the hub).
    ///
    /// Fails with [`BackplaneError::NotConnected`] while the listening
    /// connection is being restored.
    async fn subscribe(&self, hub: &str) -> Result<Subscription> {
        let inner = &self.inner;
        let (sender, subscription) =
            backplane_api::subscription(inner.settings.subscription_capacity);
        let channel = self.channel_name(hub);
        let id = inner.next_subscription.fetch_add(1, Ordering::Relaxed);

        // The guard exists before the request is sent, so a dropped call
        // or a failure takes the registration back.
        let guard = Unsubscribe {
            listener: inner.listener.downgrade(),
            channel: channel.clone(),
            id,
        };
        let (reply, confirmed) = oneshot::channel();
        let command = Command::Subscribe {
            channel,
            hub: hub.to_owned(),
            id,
            sender,
            reply,
        };
        inner
            .listener
            .send(command)
            .map_err(|_| BackplaneError::Closed)?;
        confirmed
            .await
            .map_err(|_| BackplaneError::NotConnected)??;
        Ok(subscription.guard(guard))
    }
}

/// Ends a subscription when dropped; the listener stops listening to the
/// channel once its last subscription has ended.
struct Unsubscribe {
    listener: mpsc::WeakUnboundedSender<Command>,
    channel: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.upgrade() {
            let _ = listener.send(Command::Unsubscribe {
                channel: std::mem::take(&mut self.channel),
                id: self.id,
            });
        }
    }
}

impl fmt::Debug for PostgresBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackplane")
            .field("settings", &*self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// Shows where the backplane connects and its channel prefix, never the
/// password: `postgres://user@host:port/dbname (channel prefix "backplane")`.
impl fmt::Display for PostgresBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.inner.settings;
        write!(
            f,
            "postgres://{} (channel prefix {:?})",
            Target(&settings.config),
            settings.channel_prefix
        )
    }
}
