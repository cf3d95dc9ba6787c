//! The builder, and the settings the background tasks share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use backplane_api::{BackplaneError, DEFAULT_SUBSCRIPTION_CAPACITY, Result};
use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use crate::PostgresBackplane;
use crate::error::{timed_out, wrap};

/// The channel prefix used unless [`PostgresBackplaneBuilder::channel_prefix`]
/// sets another.
pub const DEFAULT_CHANNEL_PREFIX: &str = "backplane";

/// The largest envelope accepted unless
/// [`PostgresBackplaneBuilder::max_message_size`] sets another: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// The `application_name` of the backplane's connections unless the
/// connection string or [`PostgresBackplaneBuilder::application_name`]
/// sets another.
pub const DEFAULT_APPLICATION_NAME: &str = "backplane";

/// Settings shared by the handle and its background tasks.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) channel_prefix: String,
    pub(crate) max_message_size: usize,
    pub(crate) reconnect_min_delay: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) health_check_interval: Duration,
    pub(crate) query_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) subscription_capacity: usize,
}

/// A connection as the backplane's tasks use it.
pub(crate) type PgConnection = Connection<Socket, NoTlsStream>;

impl Settings {
    /// Opens one connection, within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<(Client, PgConnection)> {
        match tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls)).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(error)) => Err(wrap("failed to connect to postgres", error)),
            Err(_) => Err(timed_out("timed out connecting to postgres")),
        }
    }

    /// Delays between reconnection attempts: doubling from the minimum,
    /// with jitter of up to the delay itself, never above the maximum.
    pub(crate) fn reconnect_delays(&self) -> impl Iterator<Item = Duration> + Send + use<> {
        let (min, max) = (self.reconnect_min_delay, self.reconnect_max_delay);
        ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay((max / 2).max(min))
            .with_jitter()
            .without_max_times()
            .build()
            .map(move |delay| delay.min(max))
    }
}

/// Where the connections go, without the password: `user@host:port/db`.
pub(crate) struct Target<'a>(pub(crate) &'a Config);

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.0;
        if let Some(user) = config.get_user() {
            write!(f, "{user}@")?;
        }
        let ports = config.get_ports();
        for (i, host) in config.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(name) => f.write_str(name)?,
                #[cfg(unix)]
                Host::Unix(path) => write!(f, "{}", path.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        if let Some(dbname) = config.get_dbname() {
            write!(f, "/{dbname}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("target", &Target(&self.config).to_string())
            .field("application_name", &self.config.get_application_name())
            .field("channel_prefix", &self.channel_prefix)
            .field("max_message_size", &self.max_message_size)
            .field("reconnect_min_delay", &self.reconnect_min_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("health_check_interval", &self.health_check_interval)
            .field("query_timeout", &self.query_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("subscription_capacity", &self.subscription_capacity)
            .finish()
    }
}

/// Builds a [`PostgresBackplane`] with non-default settings.
///
/// Start from [`PostgresBackplane::builder`] (a connection string) or
/// [`PostgresBackplane::from_config`]. Its `Debug` output never
/// shows the password.
///
/// ```no_run
/// use std::time::Duration;
/// use backplane_postgres::PostgresBackplane;
///
/// # async fn example() -> backplane_api::Result<()> {
/// let backplane = PostgresBackplane::builder("postgres://app:secret@db/app")?
///     .channel_prefix("myapp")
///     .application_name("myapp-backplane")
///     .health_check_interval(Duration::from_secs(5))
///     .build()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct PostgresBackplaneBuilder {
    settings: Settings,
    application_name: Option<String>,
}

impl PostgresBackplaneBuilder {
    pub(crate) fn new(config: Config) -> Self {
        let settings = Settings {
            config,
            channel_prefix: DEFAULT_CHANNEL_PREFIX.to_owned(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(10),
            health_check_interval: Duration::from_secs(10),
            query_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
        };
        Self {
            settings,
            application_name: None,
        }
    }

    pub(crate) fn parse(url: &str) -> Result<Self> {
        // The parser's messages name the offending option, never its value.
        let config = url.parse::<Config>().map_err(|error| {
            BackplaneError::transport("invalid postgres connection string", error)
        })?;
        Ok(Self::new(config))
    }

    /// Sets the prefix of every channel name (default
    /// [`DEFAULT_CHANNEL_PREFIX`]): hub `chat` travels on channel
    /// `<prefix>__chat`. Instances that should talk must use the same one;
    /// applications sharing a database keep apart with different ones.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.channel_prefix = prefix.into();
        self
    }

    /// Sets the largest envelope, in encoded bytes, that may be published
    /// (default [`DEFAULT_MAX_MESSAGE_SIZE`]); receivers discard chunked
    /// messages larger than this. Every instance should use the same one.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// Sets the range of delays between reconnection attempts (default
    /// 100 ms to 10 s): the delay doubles after each failed attempt, with
    /// random jitter, and never exceeds `max`.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.reconnect_min_delay = min;
        self.settings.reconnect_max_delay = max.max(min);
        self
    }

    /// Sets how often the listening connection is checked with a query
    /// (default 10 s). A connection that went silent without closing (a
    /// half-open TCP connection) is found by this check.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.settings.health_check_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets the deadline for each query the backplane runs itself: the
    /// health check, `LISTEN`, `UNLISTEN` and every publish round trip
    /// (default 10 s). A connection that misses it is treated as lost.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.settings.query_timeout = timeout;
        self
    }

    /// Sets the deadline for opening a connection, authentication included
    /// (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// Sets the `application_name` the backplane's connections show in
    /// `pg_stat_activity` (default: the connection string's, or else
    /// [`DEFAULT_APPLICATION_NAME`]).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets how many events each subscription buffers before it reports
    /// lag (default
    /// [`DEFAULT_SUBSCRIPTION_CAPACITY`](backplane_api::DEFAULT_SUBSCRIPTION_CAPACITY)).
    pub fn subscription_capacity(mut self, capacity: usize) -> Self {
        self.settings.subscription_capacity = capacity.max(1);
        self
    }

    /// Opens the listening connection and starts the backplane.
    ///
    /// The publishing connection is opened by the first publish.
    ///
    /// # Errors
    ///
    /// A [`BackplaneError::Transport`] if the server cannot be reached or
    /// refuses the connection (transient when retrying may help, as with a
    /// refused or timed out connection; not for failed authentication).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call leaves no task or connection behind.
    pub async fn build(mut self) -> Result<PostgresBackplane> {
        let name = match self.application_name.take() {
            Some(name) => Some(name),
            None if self.settings.config.get_application_name().is_none() => {
                Some(DEFAULT_APPLICATION_NAME.to_owned())
            }
            None => None,
        };
        if let Some(name) = name {
            self.settings.config.application_name(name);
        }
        PostgresBackplane::start(Arc::new(self.settings)).await
    }
}

impl fmt::Debug for PostgresBackplaneBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackplaneBuilder")
            .field("settings", &self.settings)
            .field("application_name", &self.application_name)
            .finish()
    }
}
