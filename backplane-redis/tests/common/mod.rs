//! Helpers shared by the integration tests: server URLs, admin commands,
//! private `redis-server` processes and event waits.
//!
//! The shared servers come from `BACKPLANE_REDIS_URL` and
//! `BACKPLANE_REDIS_CLUSTER_URL` (set by `scripts/lib/services.sh`); a test
//! that needs one fails when it is unset rather than passing silently.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use backplane_api::{Action, Envelope, Event, Message, ServerId, Subscription, Target};
use backplane_redis::RedisBackplane;

pub mod scenarios;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long a test waits for anything to happen before failing.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn redis_url() -> String {
    std::env::var("BACKPLANE_REDIS_URL").expect(
        "BACKPLANE_REDIS_URL is not set: run the tests through scripts/test or \
         `source scripts/lib/services.sh && start_services`",
    )
}

pub fn cluster_url() -> String {
    std::env::var("BACKPLANE_REDIS_CLUSTER_URL").expect(
        "BACKPLANE_REDIS_CLUSTER_URL is not set: run the tests through scripts/test or \
         `source scripts/lib/services.sh && start_services`",
    )
}

/// The node URLs of the test cluster.
pub fn cluster_nodes() -> Vec<String> {
    cluster_url().split(',').map(str::to_owned).collect()
}

/// A channel prefix no other test uses.
pub fn prefix() -> String {
    format!("test-{}", ServerId::random())
}

/// Builds a transport with a short backoff, so tests recover quickly.
pub async fn backplane(url: &str, prefix: &str) -> RedisBackplane {
    RedisBackplane::builder(url)
        .channel_prefix(prefix)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .build()
        .await
        .expect("connect to redis")
}

/// A `Send` envelope on hub `hub` carrying `n`.
pub fn envelope(hub: &str, n: u64) -> Arc<Envelope> {
    let message = Message::new("n", &n).unwrap();
    let action = Action::Send {
        target: Target::All,
        message: Arc::new(message),
    };
    Arc::new(Envelope::new(hub, ServerId::from("tester"), n, action))
}

/// Runs one command on the node at `url` and returns its reply.
pub async fn admin<T: redis::FromRedisValue>(url: &str, command: &redis::Cmd) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    command
        .query_async(&mut connection)
        .await
        .expect("admin command")
}

/// `CLIENT KILL TYPE pubsub` on one node; returns how many were killed.
pub async fn kill_pubsub(url: &str) -> i64 {
    admin(
        url,
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub"),
    )
    .await
}

/// How many channels matching `<prefix>:*` have subscribers on a server.
pub async fn pubsub_channels(url: &str, prefix: &str) -> usize {
    let channels: Vec<String> = admin(
        url,
        redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{prefix}:*")),
    )
    .await;
    channels.len()
}

/// How many shard channels matching `<prefix>:*` have subscribers, summed
/// over every node of a cluster.
pub async fn shard_channels(nodes: &[String], prefix: &str) -> usize {
    let mut total = 0;
    for node in nodes {
        let channels: Vec<String> = admin(
            node,
            redis::cmd("PUBSUB")
                .arg("SHARDCHANNELS")
                .arg(format!("{prefix}:*")),
        )
        .await;
        total += channels.len();
    }
    total
}

/// Polls `count` until it returns `expected`, for up to [`WAIT`].
pub async fn wait_count<F, Fut>(what: &str, expected: usize, mut count: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let now = count().await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {now} after {WAIT:?}, expected {expected}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Receives events until `accept` returns true for one; fails after
/// [`WAIT`]. Returns every event seen, the accepted one last.
pub async fn wait_event(
    subscription: &mut Subscription,
    what: &str,
    mut accept: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, subscription.recv()).await {
            Ok(Some(event)) => {
                let done = accept(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("{what}: subscription ended; saw {seen:?}"),
            Err(_) => panic!("{what}: nothing after {WAIT:?}; saw {seen:?}"),
        }
    }
}

/// Whether `event` is the envelope carrying `n`.
pub fn is_envelope(event: &Event, n: u64) -> bool {
    matches!(event, Event::Envelope(envelope) if envelope.id == n)
}

/// Publishes until the bus accepts (the publishing connection may still
/// be reconnecting), for up to [`WAIT`].
pub async fn publish_eventually(bus: &RedisBackplane, envelope: Arc<Envelope>) {
    use backplane_api::Publisher;
    let deadline = Instant::now() + WAIT;
    loop {
        match bus.publish(envelope.clone()).await {
            Ok(()) => return,
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("publish failed: {error}"),
        }
    }
}

/// A `redis-server` this test owns, on a free loopback port; killed when
/// dropped.
pub struct PrivateRedis {
    pub port: u16,
    pub password: String,
    dir: std::path::PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts a standalone server.
    pub async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// Starts a server with extra arguments.
    pub async fn start_with(extra: Vec<String>) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("backplane-redis-test-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            password: format!("pw-{}", ServerId::random()),
            dir,
            extra,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Starts a one-node Redis Cluster that owns every slot.
    pub async fn start_cluster() -> Self {
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ];
        let server = Self::start_with(extra.iter().map(|s| s.to_string()).collect()).await;
        let _: () = admin(
            &server.url(),
            redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(0).arg(16383),
        )
        .await;
        server.wait_cluster_ok().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/", self.password, self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill redis-server");
        }
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    pub async fn wait_cluster_ok(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let info: String = admin(&self.url(), redis::cmd("CLUSTER").arg("INFO")).await;
            if info.contains("cluster_state:ok") {
                return;
            }
            assert!(Instant::now() < deadline, "cluster not ok: {info}");
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--requirepass", &self.password])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server (is it installed? run scripts/test)");
        self.child = Some(child);

        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port >= 55_536 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Which kind of server a scenario runs against.
#[derive(Clone, Debug)]
pub enum Server {
    /// One server: classic pub/sub.
    Standalone(String),
    /// A cluster, given its node URLs: sharded pub/sub.
    Cluster(Vec<String>),
}

impl Server {
    pub fn standalone() -> Self {
        Self::Standalone(redis_url())
    }

    pub fn cluster() -> Self {
        Self::Cluster(cluster_nodes())
    }

    /// The URL the transport is built from.
    pub fn url(&self) -> String {
        match self {
            Self::Standalone(url) => url.clone(),
            Self::Cluster(nodes) => nodes.join(","),
        }
    }

    /// Subscribed channels under `prefix`: `PUBSUB CHANNELS`, or
    /// `PUBSUB SHARDCHANNELS` summed over the nodes.
    pub async fn channels(&self, prefix: &str) -> usize {
        match self {
            Self::Standalone(url) => pubsub_channels(url, prefix).await,
            Self::Cluster(nodes) => shard_channels(nodes, prefix).await,
        }
    }

    /// `CLIENT KILL TYPE pubsub` on every node; returns how many died.
    pub async fn kill_pubsub(&self) -> i64 {
        match self {
            Self::Standalone(url) => kill_pubsub(url).await,
            Self::Cluster(nodes) => {
                let mut killed = 0;
                for node in nodes {
                    killed += kill_pubsub(node).await;
                }
                killed
            }
        }
    }

    /// Publishes raw bytes on a channel, as a foreign client would.
    pub async fn publish_raw(&self, channel: &str, payload: &[u8]) {
        let command = match self {
            Self::Standalone(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        };
        let mut cmd = redis::cmd(command);
        cmd.arg(channel).arg(payload);
        match self {
            Self::Standalone(url) => {
                let _: i64 = admin(url, &cmd).await;
            }
            Self::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::new(nodes.clone()).unwrap();
                let mut connection = client.get_async_connection().await.unwrap();
                let _: i64 = cmd.query_async(&mut connection).await.unwrap();
            }
        }
    }
}
