//! Which transport carries the envelopes, chosen on the command line.

use std::sync::Arc;

use backplane_api::{BackplaneError, Transport};
use backplane_memory::MemoryBackplane;
use backplane_postgres::PostgresBackplane;
use backplane_redis::RedisBackplane;

/// A transport chosen at run time; every instance's hub uses this type.
pub(crate) type DynTransport = Arc<dyn Transport>;

/// The bus the instances of this process use.
pub(crate) enum Backend {
    /// In-process: every instance lives in this process.
    Memory,
    /// PostgreSQL `LISTEN` / `NOTIFY`, from a connection string.
    Postgres(String),
    /// Redis pub/sub, from a `redis://` URL.
    Redis(String),
}

impl Backend {
    /// The transport's name, for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Postgres(_) => "postgres",
            Self::Redis(_) => "redis",
        }
    }

    /// Where the bus is, without credentials: `host:port/db` at most.
    pub(crate) fn server(&self) -> String {
        match self {
            Self::Memory => "this process".into(),
            Self::Postgres(url) | Self::Redis(url) => redact(url),
        }
    }

    /// Connects to the bus.
    ///
    /// The error message names the server without credentials; the
    /// transports' own errors never repeat the connection string.
    pub(crate) async fn connect(&self) -> Result<DynTransport, String> {
        let failed = |error: BackplaneError| {
            let mut message = format!("cannot connect to {} at {}", self.kind(), self.server());
            let mut cause: Option<&dyn std::error::Error> = Some(&error);
            while let Some(error) = cause {
                // Some errors already end with their source's text.
                let text = error.to_string();
                if !message.ends_with(&text) {
                    message = format!("{message}: {text}");
                }
                cause = error.source();
            }
            message
        };
        match self {
            Self::Memory => Ok(Arc::new(MemoryBackplane::new())),
            Self::Postgres(url) => match PostgresBackplane::connect(url).await {
                Ok(transport) => Ok(Arc::new(transport)),
                Err(error) => Err(failed(error)),
            },
            Self::Redis(url) => match RedisBackplane::connect(url).await {
                Ok(transport) => Ok(Arc::new(transport)),
                Err(error) => Err(failed(error)),
            },
        }
    }
}

/// Reduces a connection string to `host:port/path`, dropping the scheme's
/// user, password and query. Key-value PostgreSQL strings
/// (`host=... password=...`) keep only `host`, `port` and `dbname`.
pub(crate) fn redact(url: &str) -> String {
    if let Some((_, rest)) = url.split_once("://") {
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path),
            None => (rest, ""),
        };
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        return if path.is_empty() {
            host.to_owned()
        } else {
            format!("{host}/{path}")
        };
    }

    let field = |key: &str| {
        url.split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .trim_matches('\'')
            .to_owned()
    };
    format!("{}:{}/{}", field("host"), field("port"), field("dbname"))
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_keeps_no_credentials() {
        assert_eq!(
            redact("postgres://u:secret@127.0.0.1:5432/app?sslmode=disable"),
            "127.0.0.1:5432/app"
        );
        assert_eq!(redact("redis://:secret@127.0.0.1:6379/"), "127.0.0.1:6379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "127.0.0.1:6379");
        assert_eq!(
            redact("host=db port=5433 user=u password=secret dbname=app"),
            "db:5433/app"
        );
        assert_eq!(redact("postgresql://user:pw@[::1]/db"), "[::1]/db");
    }
}
