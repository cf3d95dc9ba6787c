//! The PostgreSQL and Redis servers that transports' tests run against.
//!
//! Each function returns a connection URL, from its environment variable
//! when set. Otherwise:
//!
//! - with the `testcontainers` feature, a container is started in Docker
//!   (`postgres:15`, `redis:7`) the first time a URL is asked for, and
//!   kept for the rest of the test process;
//! - without it, the function panics with a message naming the variable:
//!   run the tests through `scripts/test`, which starts private servers on
//!   loopback and sets the variables.
//!
//! The URLs carry passwords: never print them.
//!
//! # Limitations
//!
//! - The containers need a Docker engine. The feature compiles on any
//!   machine, but where no engine runs (as on this repository's
//!   development machines) starting a container fails and the test
//!   panics; set the variables instead.
//! - A container lives as long as the test process and is not removed
//!   when it exits; Docker's own clean-up (`docker container prune`)
//!   removes it.
//! - There is no container for a Redis Cluster: it comes from
//!   `BACKPLANE_REDIS_CLUSTER_URL` only.

/// The variable holding the PostgreSQL URL.
pub const POSTGRES_URL_VAR: &str = "BACKPLANE_POSTGRES_URL";

/// The variable holding the URL of a single Redis server.
pub const REDIS_URL_VAR: &str = "BACKPLANE_REDIS_URL";

/// The variable holding the URL of one node of a Redis Cluster.
pub const REDIS_CLUSTER_URL_VAR: &str = "BACKPLANE_REDIS_CLUSTER_URL";

/// The URL of a PostgreSQL server for tests.
///
/// # Panics
///
/// If [`POSTGRES_URL_VAR`] is unset and, with the `testcontainers`
/// feature, the container could not be started.
pub async fn postgres_url() -> String {
    if let Some(url) = from_env(POSTGRES_URL_VAR) {
        return url;
    }
    #[cfg(feature = "testcontainers")]
    return containers::postgres().await;
    #[cfg(not(feature = "testcontainers"))]
    missing(POSTGRES_URL_VAR)
}

/// The URL of a single Redis server for tests.
///
/// # Panics
///
/// If [`REDIS_URL_VAR`] is unset and, with the `testcontainers` feature,
/// the container could not be started.
pub async fn redis_url() -> String {
    if let Some(url) = from_env(REDIS_URL_VAR) {
        return url;
    }
    #[cfg(feature = "testcontainers")]
    return containers::redis().await;
    #[cfg(not(feature = "testcontainers"))]
    missing(REDIS_URL_VAR)
}

/// The URL of one node of a Redis Cluster, if [`REDIS_CLUSTER_URL_VAR`]
/// is set. A cluster is optional: tests over one should report themselves
/// skipped when this is `None` (see
/// [`Capabilities::skip_all`](crate::Capabilities::skip_all)).
pub fn redis_cluster_url() -> Option<String> {
    from_env(REDIS_CLUSTER_URL_VAR)
}

fn from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|url| !url.is_empty())
}

#[cfg(not(feature = "testcontainers"))]
fn missing(var: &str) -> ! {
    panic!(
        "{var} is not set: run the tests with `scripts/test`, which starts local \
         servers and sets it, set it to a server's URL yourself, or enable the \
         `testcontainers` feature of `conformance` to start one in Docker"
    )
}

#[cfg(feature = "testcontainers")]
mod containers {
    //! Containers started once per test process, through testcontainers'
    //! blocking runner (it brings its own runtime, so the container
    //! outlives the runtime of the test that started it).

    use std::sync::OnceLock;

    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::SyncRunner;
    use testcontainers::{Container, GenericImage, ImageExt};

    /// Password of the PostgreSQL container; it listens on loopback only.
    const PASSWORD: &str = "backplane-test";

    static POSTGRES: OnceLock<(Container<GenericImage>, String)> = OnceLock::new();
    static REDIS: OnceLock<(Container<GenericImage>, String)> = OnceLock::new();

    pub(super) async fn postgres() -> String {
        started(&POSTGRES, || {
            let image = GenericImage::new("postgres", "15")
                .with_exposed_port(5432.tcp())
                .with_wait_for(WaitFor::message_on_stderr(
                    "database system is ready to accept connections",
                ))
                .with_env_var("POSTGRES_PASSWORD", PASSWORD);
            let container = image
                .start()
                .expect("failed to start a postgres:15 container");
            let port = container
                .get_host_port_ipv4(5432.tcp())
                .expect("the postgres container exposes no port");
            // The image logs "ready" once for its set-up server and once for
            // the real one; the second may come a moment later.
            std::thread::sleep(std::time::Duration::from_secs(1));
            let url = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres");
            (container, url)
        })
        .await
    }

    pub(super) async fn redis() -> String {
        started(&REDIS, || {
            let image = GenericImage::new("redis", "7")
                .with_exposed_port(6379.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"));
            let container = image.start().expect("failed to start a redis:7 container");
            let port = container
                .get_host_port_ipv4(6379.tcp())
                .expect("the redis container exposes no port");
            (container, format!("redis://127.0.0.1:{port}/"))
        })
        .await
    }

    /// Starts the container on a blocking thread the first time, and
    /// returns its URL.
    async fn started(
        cell: &'static OnceLock<(Container<GenericImage>, String)>,
        start: fn() -> (Container<GenericImage>, String),
    ) -> String {
        tokio::task::spawn_blocking(move || cell.get_or_init(start).1.clone())
            .await
            .expect("starting a test container panicked")
    }
}
