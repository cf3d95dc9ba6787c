//! Configuration and the builder of a [`RedisBackplane`].

use std::fmt;
use std::time::Duration;

use backplane_api::{BackplaneError, Result};
use redis::{ConnectionInfo, IntoConnectionInfo};

use crate::RedisBackplane;

/// The channel prefix used unless [`RedisBackplaneBuilder::channel_prefix`] sets
/// another: hub `chat` is carried on channel `backplane:chat`.
pub const DEFAULT_CHANNEL_PREFIX: &str = "backplane";

/// The largest encoded envelope published unless
/// [`RedisBackplaneBuilder::max_message_size`] sets another: 1 MiB.
///
/// Redis itself accepts messages up to 512 MB, but every subscriber holds
/// each message in memory while it is delivered, so a smaller cap keeps one
/// careless send from hurting every instance.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// The first delay before reconnecting a lost subscriber connection.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// The longest delay between two reconnection attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How often the subscriber connection is checked unless
/// [`RedisBackplaneBuilder::health_check_interval`] sets another.
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// The deadline of each command the transport runs itself unless
/// [`RedisBackplaneBuilder::query_timeout`] sets another.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// URL schemes that select Redis Cluster for a single seed node.
const CLUSTER_SCHEMES: [(&str, &str); 2] = [
    ("redis+cluster://", "redis://"),
    ("rediss+cluster://", "rediss://"),
];

/// Where the bus is: one Redis server, or the seed nodes of a cluster.
#[derive(Clone)]
pub(crate) enum Server {
    Standalone(redis::Client),
    Cluster(Vec<ConnectionInfo>),
}

impl Server {
    /// Addresses without credentials, for `Debug` and logs.
    pub(crate) fn addresses(&self) -> Vec<String> {
        match self {
            Self::Standalone(client) => vec![client.get_connection_info().addr().to_string()],
            Self::Cluster(nodes) => nodes.iter().map(|n| n.addr().to_string()).collect(),
        }
    }
}

/// Settings shared by the publishing and subscribing sides.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) prefix: String,
    pub(crate) max_message_size: usize,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) health_check_interval: Duration,
    pub(crate) query_timeout: Duration,
}

impl Config {
    /// The Redis channel that carries hub `hub`.
    pub(crate) fn channel(&self, hub: &str) -> String {
        format!("{}:{hub}", self.prefix)
    }
}

/// Builds a [`RedisBackplane`]; start with [`RedisBackplane::builder`],
/// [`RedisBackplane::from_client`] or [`RedisBackplane::cluster`].
///
/// The target is parsed when the builder is made, and any error is
/// reported by [`RedisBackplaneBuilder::build`], so settings can be chained
/// without checking each step.
#[must_use]
pub struct RedisBackplaneBuilder {
    server: Result<Server, UrlError>,
    config: Config,
}

/// A URL that did not parse. The URL itself is not kept: it may hold a
/// password.
#[derive(Debug)]
struct UrlError {
    message: &'static str,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for UrlError {}

impl RedisBackplaneBuilder {
    pub(crate) fn from_url(url: &str) -> Self {
        let urls: Vec<&str> = url.split(',').map(str::trim).collect();
        let explicit = CLUSTER_SCHEMES.iter().find_map(|(cluster, plain)| {
            url.trim()
                .strip_prefix(cluster)
                .map(|rest| format!("{plain}{rest}"))
        });
        let server = match (explicit, urls.len()) {
            (Some(seed), _) => parse_nodes(&[seed.as_str()]).map(Server::Cluster),
            (None, 1) => redis::Client::open(urls[0])
                .map(Server::Standalone)
                .map_err(|_| UrlError {
                    message: "invalid redis url",
                }),
            (None, _) => parse_nodes(&urls).map(Server::Cluster),
        };
        Self::new(server)
    }

    pub(crate) fn from_client(client: redis::Client) -> Self {
        Self::new(Ok(Server::Standalone(client)))
    }

    pub(crate) fn from_nodes<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes: Vec<S> = nodes.into_iter().collect();
        let urls: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        Self::new(parse_nodes(&urls).map(Server::Cluster))
    }

    fn new(server: Result<Server, UrlError>) -> Self {
        Self {
            server,
            config: Config {
                prefix: DEFAULT_CHANNEL_PREFIX.to_owned(),
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                backoff_min: DEFAULT_BACKOFF_MIN,
                backoff_max: DEFAULT_BACKOFF_MAX,
                health_check_interval: DEFAULT_HEALTH_CHECK_INTERVAL,
                query_timeout: DEFAULT_QUERY_TIMEOUT,
            },
        }
    }

    /// Sets the channel prefix (default [`DEFAULT_CHANNEL_PREFIX`]): hub `h` is
    /// carried on channel `<prefix>:h`. Every instance of one application
    /// must use the same prefix; applications sharing one Redis keep apart
    /// by using different ones.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Sets the largest encoded envelope, in bytes, that
    /// [`publish`](backplane_api::Publisher::publish) accepts (default
    /// [`DEFAULT_MAX_MESSAGE_SIZE`]); larger ones are refused with
    /// [`BackplaneError::PayloadTooLarge`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Sets the reconnection backoff of the subscriber connection: the
    /// first retry waits about `min`, each further one about twice as
    /// long, never more than `max` (defaults [`DEFAULT_BACKOFF_MIN`] and
    /// [`DEFAULT_BACKOFF_MAX`]). Each delay gets random jitter so that
    /// many instances do not reconnect in lockstep.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.backoff_min = min;
        self.config.backoff_max = max.max(min);
        self
    }

    /// Sets how often the subscriber connection of one server is checked
    /// with a `PING` (default [`DEFAULT_HEALTH_CHECK_INTERVAL`]). A
    /// connection that went silent without closing (a half-open TCP
    /// connection, a path that drops traffic) is found by this check when
    /// the reply misses [`query_timeout`](Self::query_timeout), and is then
    /// replaced like a closed one. A cluster's subscriber connection is not
    /// checked.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.config.health_check_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Sets the deadline for each command the transport runs itself: the
    /// health check, `SUBSCRIBE` and `UNSUBSCRIBE` (`SSUBSCRIBE`,
    /// `SUNSUBSCRIBE`) and every `PUBLISH` (`SPUBLISH`) round trip (default
    /// [`DEFAULT_QUERY_TIMEOUT`]). A health check that misses it counts as
    /// a lost connection; a publish or subscribe that misses it fails with
    /// a transient error.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.config.query_timeout = timeout;
        self
    }

    /// Connects the publishing and subscribing connections.
    ///
    /// # Errors
    ///
    /// - a non-transient [`BackplaneError::Transport`] if the URL did not
    ///   parse;
    /// - a transient one if Redis could not be reached or the connection
    ///   failed; a non-transient one if Redis refused it (a wrong password,
    ///   say), which retrying will not fix.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call leaves no connection or task behind.
    pub async fn build(self) -> Result<RedisBackplane> {
        let server = self
            .server
            .map_err(|e| BackplaneError::transport("invalid redis configuration", e))?;
        RedisBackplane::connect_with(server, self.config).await
    }
}

impl fmt::Debug for RedisBackplaneBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses = self.server.as_ref().map(Server::addresses).ok();
        f.debug_struct("RedisBackplaneBuilder")
            .field("addresses", &addresses)
            .field("config", &self.config)
            .finish()
    }
}

fn parse_nodes(urls: &[&str]) -> Result<Vec<ConnectionInfo>, UrlError> {
    if urls.is_empty() || urls.iter().any(|url| url.is_empty()) {
        return Err(UrlError {
            message: "empty redis cluster node url",
        });
    }
    urls.iter()
        .map(|url| url.into_connection_info())
        .collect::<Result<_, _>>()
        .map_err(|_| UrlError {
            message: "invalid redis cluster node url",
        })
}
