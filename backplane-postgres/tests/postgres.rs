//! Integration tests of the PostgreSQL transport against a real server.
//!
//! They need `BACKPLANE_POSTGRES_URL` (the repository's test script starts
//! a private server and sets it). Each test uses its own channel prefix,
//! so tests running in parallel never hear each other.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backplane_api::{
    Action, BackplaneError, Envelope, Event, Hub, Message, Publisher, ServerId, Subscriber,
    Subscription, Target, codec,
};
use backplane_postgres::{PostgresBackplane, PostgresBackplaneBuilder};
use conformance::proxy::{ProxyMode, TcpProxy};
use tokio::time::timeout;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// How long any single wait may take before the test fails: long enough
/// that only a real fault trips it on a busy machine.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers

fn url() -> String {
    std::env::var("BACKPLANE_POSTGRES_URL").expect(
        "BACKPLANE_POSTGRES_URL is not set: run these tests through scripts/test, \
         or point it at a PostgreSQL server",
    )
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "backplane_postgres=info".into()),
        )
        .try_init();
}

/// A name no other test (or earlier run) uses.
fn unique(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("t{:08x}_{tag}", hasher.finish() as u32)
}

/// A builder with test-friendly timings.
fn builder(prefix: &str) -> PostgresBackplaneBuilder {
    PostgresBackplane::builder(&url())
        .expect("valid BACKPLANE_POSTGRES_URL")
        .channel_prefix(prefix)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(1))
}

async fn instance(prefix: &str) -> PostgresBackplane {
    builder(prefix).build().await.expect("connect to postgres")
}

/// A plain SQL session, as another program would open.
async fn sql() -> Client {
    let (client, connection) = tokio_postgres::connect(&url(), NoTls)
        .await
        .expect("connect to postgres");
    tokio::spawn(connection);
    client
}

fn envelope(hub: &str, args: &serde_json::Value) -> Envelope {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let message = Message::new("say", args).unwrap();
    Envelope::new(
        hub,
        ServerId::random(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        Action::Send {
            target: Target::All,
            message: Arc::new(message),
        },
    )
}

async fn next_event(subscription: &mut Subscription) -> Event {
    timeout(WAIT, subscription.recv())
        .await
        .expect("no event within the deadline")
        .expect("subscription ended")
}

async fn next_envelope(subscription: &mut Subscription) -> Arc<Envelope> {
    match next_event(subscription).await {
        Event::Envelope(envelope) => envelope,
        other => panic!("expected an envelope, got {other:?}"),
    }
}

/// The `say` argument of an envelope, as text.
fn said(envelope: &Envelope) -> String {
    match &envelope.action {
        Action::Send { message, .. } => message.args::<String>().unwrap(),
        other => panic!("not a send: {other:?}"),
    }
}

/// Text of `pattern` repeated, then ASCII, so that the envelope encodes to
/// exactly `size` bytes.
fn envelope_of_size(hub: &str, pattern: &str, size: usize) -> Envelope {
    let base = codec::encode(&envelope(hub, &serde_json::json!("")))
        .unwrap()
        .len();
    let room = size
        .checked_sub(base)
        .expect("size larger than an empty envelope");
    let mut text = String::with_capacity(room);
    while text.len() + pattern.len() <= room {
        text.push_str(pattern);
    }
    while text.len() < room {
        text.push('a');
    }
    let envelope = envelope(hub, &serde_json::json!(text));
    assert_eq!(codec::encode(&envelope).unwrap().len(), size);
    envelope
}

async fn count_sessions(client: &Client, application_name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits until `check` holds, polling; fails the test after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// Payload sizes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_around_the_notify_limit_arrive_intact() {
    init_logs();
    let prefix = unique("sizes");
    let (sender, receiver) = (instance(&prefix).await, instance(&prefix).await);
    let mut subscription = receiver.subscribe("sizes").await.unwrap();

    for pattern in ["ab", "日本語", "😀🎉", "a日😀"] {
        for size in [7999, 8000, 100 * 1024] {
            let sent = envelope_of_size("sizes", pattern, size);
            sender.publish(Arc::new(sent.clone())).await.unwrap();
            let received = next_envelope(&mut subscription).await;
            assert_eq!(*received, sent, "{pattern:?} at {size} bytes");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_maximum_size_is_enforced() {
    init_logs();
    let prefix = unique("max");
    let max = 64 * 1024;
    let sender = builder(&prefix)
        .max_message_size(max)
        .build()
        .await
        .unwrap();
    let receiver = builder(&prefix)
        .max_message_size(max)
        .build()
        .await
        .unwrap();
    let mut subscription = receiver.subscribe("max").await.unwrap();

    let largest = envelope_of_size("max", "日本😀", max);
    sender.publish(Arc::new(largest.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, largest);

    let too_large = envelope_of_size("max", "日本😀", max + 1);
    let error = sender
        .publish(Arc::new(too_large.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            BackplaneError::PayloadTooLarge { size, max: m } if size == max + 1 && m == max
        ),
        "{error:?}"
    );
    let client = sql().await;
    let error = receiver.publish_in(&client, &too_large).await.unwrap_err();
    assert!(error.is_payload_too_large(), "{error:?}");

    // Nothing of the refused envelope went out: the next arrival is this.
    let marker = envelope("max", &serde_json::json!("after"));
    sender.publish(Arc::new(marker.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, marker);
}

// ---------------------------------------------------------------------------
// Channel names

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_hub_names_never_cross_talk() {
    init_logs();
    let prefix = unique("names");
    let (sender, receiver) = (instance(&prefix).await, instance(&prefix).await);
    let long_a = format!("{}a", "x".repeat(99));
    let long_b = format!("{}b", "x".repeat(99));
    let japanese = "日本語のチャットルームの名前はとても長いので三十文字になりま";
    assert_eq!(japanese.chars().count(), 30);
    let hubs = ["Chat", "chat", &long_a, &long_b, japanese, "quote\"d hub"];

    let channels: Vec<String> = hubs.iter().map(|hub| receiver.channel_name(hub)).collect();
    for (i, channel) in channels.iter().enumerate() {
        assert!(channel.len() <= 63, "{channel}");
        assert_eq!(*channel, sender.channel_name(hubs[i]), "instances agree");
        assert!(!channels[..i].contains(channel), "{channel} is shared");
    }
    assert_eq!(channels[0], format!("{prefix}__Chat"));

    let mut subscriptions = Vec::new();
    for hub in hubs {
        subscriptions.push(receiver.subscribe(hub).await.unwrap());
    }
    for round in 0..2 {
        for hub in hubs {
            let envelope = envelope(hub, &serde_json::json!(format!("{hub}#{round}")));
            sender.publish(Arc::new(envelope)).await.unwrap();
        }
        for (hub, subscription) in hubs.iter().zip(&mut subscriptions) {
            let received = next_envelope(subscription).await;
            assert_eq!(received.hub, *hub);
            assert_eq!(said(&received), format!("{hub}#{round}"));
        }
    }
}

// ---------------------------------------------------------------------------
// Bad input

/// Collects log output as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// Single-threaded, so the background tasks log on this thread, into the
// capture.
#[tokio::test(flavor = "current_thread")]
async fn foreign_notifications_are_skipped_with_a_warning() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let prefix = unique("bad");
    let (sender, receiver) = (instance(&prefix).await, instance(&prefix).await);
    let mut subscription = receiver.subscribe("bad").await.unwrap();
    let channel = receiver.channel_name("bad");
    let client = sql().await;

    let first_piece = "chunk abc 0/2\n{\"v\":1,\"hub\":\"bad\"";
    let bad_payloads = [
        "garbage",
        "",
        first_piece,                 // truncated: its second piece never comes
        "chunk def 1/2\n,\"id\":1}", // a second piece without its first
        "chunk broken",              // a truncated header
        r#"{"v":1,"hub":"bad"}"#,    // JSON, not an envelope
        concat!(
            r#"{"v":1,"hub":"bad","origin":"o","id":1,"#,
            r#""send":{"target":{"to":"all"},"method":"m","args":1}"#,
        ),
        "[1,2,3]",
    ];
    for payload in bad_payloads {
        client
            .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
            .await
            .unwrap();
    }
    // An envelope of another hub sent on this hub's channel.
    let stray = codec::encode(&envelope("other", &serde_json::json!("stray"))).unwrap();
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &stray])
        .await
        .unwrap();

    // Real envelopes, small and chunked, still arrive, and first.
    let small = envelope("bad", &serde_json::json!("still here"));
    sender.publish(Arc::new(small.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, small);
    let large = envelope_of_size("bad", "é", 20_000);
    sender.publish(Arc::new(large.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, large);

    let text = logs.text();
    let skipped = text.matches("skipping").count() + text.matches("discarding").count();
    let expected = bad_payloads.len() + 1; // and the stray envelope
    assert!(
        skipped >= expected,
        "expected a warning per bad payload, got:\n{text}"
    );
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("empty payload"), "{text}");
    assert!(
        text.contains("a piece is missing") || text.contains("interrupted"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Duplicates and order

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_sends_arrive_as_separate_deliveries() {
    init_logs();
    let prefix = unique("dup");
    let (a, b) = (instance(&prefix).await, instance(&prefix).await);

    // Through hubs, as applications send.
    let hub_a = Hub::new("dup", a.clone()).await.unwrap();
    let hub_b = Hub::new("dup", b.clone()).await.unwrap();
    let mut bob = hub_b.register("bob".into(), None).unwrap();
    for _ in 0..3 {
        hub_a.send(Target::All, "say", &"same").await.unwrap();
    }
    for _ in 0..3 {
        let message = timeout(WAIT, bob.recv()).await.unwrap().unwrap();
        assert_eq!(message.args::<String>().unwrap(), "same");
    }

    // The very same envelope, published three times, and three times in
    // one transaction.
    let mut subscription = b.subscribe("dup").await.unwrap();
    let same = Arc::new(envelope("dup", &serde_json::json!("again")));
    for _ in 0..3 {
        a.publish(same.clone()).await.unwrap();
    }
    let mut client = sql().await;
    let transaction = client.transaction().await.unwrap();
    for _ in 0..3 {
        a.publish_in(&transaction, &same).await.unwrap();
    }
    transaction.commit().await.unwrap();
    for _ in 0..6 {
        assert_eq!(*next_envelope(&mut subscription).await, *same);
    }

    let marker = envelope("dup", &serde_json::json!("end"));
    a.publish(Arc::new(marker.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, marker);
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_all_arrive_in_order() {
    init_logs();
    let prefix = unique("burst");
    let (sender, receiver) = (instance(&prefix).await, instance(&prefix).await);
    let mut subscription = receiver.subscribe("burst").await.unwrap();

    // `join_all` polls in order, so the publishes queue in this order.
    let envelopes: Vec<Arc<Envelope>> = (0..300)
        .map(|i| Arc::new(envelope("burst", &serde_json::json!(format!("{i}")))))
        .collect();
    let results =
        futures_util::future::join_all(envelopes.iter().map(|e| sender.publish(e.clone()))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for (i, sent) in envelopes.iter().enumerate() {
        let received = next_envelope(&mut subscription).await;
        assert_eq!(received, *sent, "envelope {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_queued_publishes_are_never_folded() {
    init_logs();
    let prefix = unique("fold");
    let (sender, receiver) = (instance(&prefix).await, instance(&prefix).await);
    let mut subscription = receiver.subscribe("fold").await.unwrap();

    // Too large for two to share a notification, so each copy is the same
    // notification: queued together they must not share a transaction, or
    // PostgreSQL would deliver them once.
    let big = Arc::new(envelope_of_size("fold", "x", 5000));
    let small = Arc::new(envelope("fold", &serde_json::json!("small")));
    let order = [&big, &big, &small, &small, &big, &big, &big];
    let results =
        futures_util::future::join_all(order.iter().map(|e| sender.publish(Arc::clone(e)))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for (i, sent) in order.iter().enumerate() {
        let received = next_envelope(&mut subscription).await;
        assert_eq!(received, **sent, "envelope {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_after_the_last_subscription_ended_works() {
    init_logs();
    let prefix = unique("again");
    let (sender, receiver) = (instance(&prefix).await, instance(&prefix).await);
    for round in 0..5 {
        let mut first = receiver.subscribe("again").await.unwrap();
        let mut second = receiver.subscribe("again").await.unwrap();
        let sent = envelope("again", &serde_json::json!(format!("{round}")));
        sender.publish(Arc::new(sent.clone())).await.unwrap();
        assert_eq!(*next_envelope(&mut first).await, sent);
        assert_eq!(*next_envelope(&mut second).await, sent);
        // Dropping both runs UNLISTEN; the next round's LISTEN follows it.
    }
}

// ---------------------------------------------------------------------------
// Connection loss

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_repeated_backend_termination_without_leaks() {
    init_logs();
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_at_start = metrics.num_alive_tasks();
    let prefix = unique("kill");
    let name = unique("listener");
    let admin = sql().await;

    let listener = builder(&prefix)
        .application_name(&name)
        .build()
        .await
        .unwrap();
    let publisher = instance(&prefix).await;
    let mut subscription = listener.subscribe("kill").await.unwrap();
    let warmup = envelope("kill", &serde_json::json!("warmup"));
    publisher.publish(Arc::new(warmup.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, warmup);
    let tasks_running = metrics.num_alive_tasks();
    assert_eq!(count_sessions(&admin, &name).await, 1);

    for round in 0..20 {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 1, "round {round}");

        match next_event(&mut subscription).await {
            Event::ConnectionLost { reason } => assert!(!reason.is_empty()),
            other => panic!("round {round}: expected the loss, got {other:?}"),
        }
        match next_event(&mut subscription).await {
            Event::Resubscribed { .. } => {}
            other => panic!("round {round}: expected the recovery, got {other:?}"),
        }
        let sent = envelope("kill", &serde_json::json!(format!("{round}")));
        publisher.publish(Arc::new(sent.clone())).await.unwrap();
        assert_eq!(
            *next_envelope(&mut subscription).await,
            sent,
            "round {round}"
        );
    }

    eventually("one listening session left", || async {
        count_sessions(&admin, &name).await == 1
    })
    .await;
    assert_eq!(metrics.num_alive_tasks(), tasks_running, "tasks leaked");

    // Dropping the backplane ends its subscriptions, tasks and sessions.
    drop((listener, publisher));
    assert!(timeout(WAIT, subscription.recv()).await.unwrap().is_none());
    eventually("the listening session closed", || async {
        count_sessions(&admin, &name).await == 0
    })
    .await;
    eventually("background tasks stopped", || async {
        metrics.num_alive_tasks() <= tasks_at_start + 1 // `admin`'s connection
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publishing_connection_is_reopened_without_duplicates() {
    init_logs();
    let prefix = unique("pubkill");
    let name = unique("publisher");
    let admin = sql().await;
    let publisher = builder(&prefix)
        .application_name(&name)
        .build()
        .await
        .unwrap();
    let receiver = instance(&prefix).await;
    let mut subscription = receiver.subscribe("pubkill").await.unwrap();

    let mut delivered = Vec::new();
    for round in 0..5 {
        let sent = envelope("pubkill", &serde_json::json!(format!("{round}")));
        publisher.publish(Arc::new(sent.clone())).await.unwrap();
        delivered.push(sent);

        // Kill both of the publisher's sessions: the next publish either
        // fails (the caller decides whether to retry) or, if the loss was
        // already noticed, goes out on a new connection. Never both.
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1",
                &[&name],
            )
            .await
            .unwrap();
        let next = envelope("pubkill", &serde_json::json!(format!("{round}+")));
        match publisher.publish(Arc::new(next.clone())).await {
            Ok(()) => delivered.push(next),
            Err(error) => assert!(error.is_transient(), "{error:?}"),
        }
    }
    let last = envelope("pubkill", &serde_json::json!("last"));
    publisher.publish(Arc::new(last.clone())).await.unwrap();
    delivered.push(last);

    // Each accepted envelope arrives once, in order; a refused one never.
    for sent in &delivered {
        assert_eq!(*next_envelope(&mut subscription).await, *sent);
    }
}

/// The address and credentials of the test server, pointed at `port` on
/// the loopback interface instead.
fn config_via(port: u16) -> Config {
    let original: Config = url().parse().unwrap();
    let mut config = Config::new();
    if let Some(user) = original.get_user() {
        config.user(user);
    }
    if let Some(password) = original.get_password() {
        config.password(password);
    }
    if let Some(dbname) = original.get_dbname() {
        config.dbname(dbname);
    }
    config.host("127.0.0.1").port(port);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_catches_a_silent_connection() {
    init_logs();
    let original: Config = url().parse().unwrap();
    let host = match &original.get_hosts()[0] {
        Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        Host::Unix(_) => panic!("this test needs a TCP server address"),
    };
    let upstream = tokio::net::lookup_host((host.as_str(), original.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = TcpProxy::start(upstream).await.unwrap();

    let prefix = unique("stall");
    let listener = PostgresBackplane::from_config(config_via(proxy.addr().port()))
        .channel_prefix(&prefix)
        .health_check_interval(Duration::from_millis(300))
        .query_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let publisher = instance(&prefix).await;
    let mut subscription = listener.subscribe("stall").await.unwrap();
    let before = envelope("stall", &serde_json::json!("before"));
    publisher.publish(Arc::new(before.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, before);

    // The path goes dark: no error, no close, just silence.
    proxy.set_mode(ProxyMode::Stall);
    match next_event(&mut subscription).await {
        Event::ConnectionLost { reason } => {
            assert!(reason.contains("health check"), "{reason}");
        }
        other => panic!("expected the loss, got {other:?}"),
    }

    proxy.set_mode(ProxyMode::Forward);
    match next_event(&mut subscription).await {
        Event::Resubscribed { downtime } => assert!(downtime > Duration::ZERO),
        other => panic!("expected the recovery, got {other:?}"),
    }
    let after = envelope("stall", &serde_json::json!("after"));
    publisher.publish(Arc::new(after.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, after);
}

/// The test server's TCP address.
async fn server_addr() -> std::net::SocketAddr {
    let original: Config = url().parse().unwrap();
    let host = match &original.get_hosts()[0] {
        Host::Tcp(host) => host.clone(),
        #[cfg(unix)]
        Host::Unix(_) => panic!("this test needs a TCP server address"),
    };
    tokio::net::lookup_host((host.as_str(), original.get_ports()[0]))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// A forwarder to the server on a fixed loopback port that can be shut,
/// so that connecting there is refused, and opened again.
struct Gate {
    port: u16,
    upstream: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gate {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let free = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let mut gate = Self {
            port,
            upstream,
            task: None,
        };
        gate.open().await;
        gate
    }

    async fn open(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let upstream = self.upstream;
        self.task = Some(tokio::spawn(async move {
            // Owned by the task: shutting the gate ends every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and every connection through it.
    async fn shut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

// Single-threaded, so the background tasks log on this thread, into the
// capture.
#[tokio::test(flavor = "current_thread")]
async fn publishes_fail_fast_while_the_server_is_unreachable() {
    // A global subscriber first, so that no callsite is cached as
    // disabled before the capture below exists.
    init_logs();
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut gate = Gate::start(server_addr().await).await;
    let prefix = unique("outage");
    let backplane = PostgresBackplane::from_config(config_via(gate.port))
        .channel_prefix(&prefix)
        .connect_timeout(Duration::from_secs(30))
        .reconnect_backoff(Duration::from_millis(200), Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let sent = envelope("outage", &serde_json::json!("before"));
    backplane.publish(Arc::new(sent)).await.unwrap();

    // The server goes away: every publish fails at once, and only the
    // attempts to reconnect are logged, not every publish.
    gate.shut().await;
    let started = std::time::Instant::now();
    for i in 0..100 {
        let sent = envelope("outage", &serde_json::json!(i));
        let result = timeout(WAIT, backplane.publish(Arc::new(sent))).await;
        let error = result.expect("a publish hung").unwrap_err();
        assert!(error.is_transient(), "{error:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");

    let text = logs.text();
    let warnings = text
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("publishing connection"))
        .count();
    assert!(warnings >= 1, "{text}");
    assert!(
        warnings <= 20,
        "{warnings} warnings for 100 publishes:\n{text}"
    );

    // Back again: a publish succeeds once the backoff allows an attempt.
    // Nothing was sent by a failed publish, so retrying here is safe.
    gate.open().await;
    timeout(WAIT, async {
        loop {
            let sent = envelope("outage", &serde_json::json!("after"));
            match backplane.publish(Arc::new(sent)).await {
                Ok(()) => break,
                Err(error) => assert!(error.is_transient(), "{error:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the publishing connection was never restored");
    let text = logs.text();
    assert_eq!(
        text.matches("publishing connection restored").count(),
        1,
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// Transactions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_publish_follows_the_transaction() {
    init_logs();
    let prefix = unique("tx");
    let (a, b) = (instance(&prefix).await, instance(&prefix).await);
    let mut subscription = b.subscribe("tx").await.unwrap();
    let mut client = sql().await;

    let rolled_back = envelope("tx", &serde_json::json!("rolled back"));
    let transaction = client.transaction().await.unwrap();
    a.publish_in(&transaction, &rolled_back).await.unwrap();
    transaction.rollback().await.unwrap();

    let committed = envelope("tx", &serde_json::json!("committed"));
    let large = envelope_of_size("tx", "日本😀", 30_000);
    let transaction = client.transaction().await.unwrap();
    a.publish_in(&transaction, &committed).await.unwrap();
    a.publish_in(&transaction, &large).await.unwrap();
    transaction.commit().await.unwrap();

    let marker = envelope("tx", &serde_json::json!("marker"));
    a.publish(Arc::new(marker.clone())).await.unwrap();
    assert_eq!(*next_envelope(&mut subscription).await, committed);
    assert_eq!(*next_envelope(&mut subscription).await, large);
    assert_eq!(*next_envelope(&mut subscription).await, marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_envelopes_published_in_a_transaction_reach_every_instance() {
    init_logs();
    let prefix = unique("txhub");
    let hub_a = Hub::new("room", instance(&prefix).await).await.unwrap();
    let hub_b = Hub::new("room", instance(&prefix).await).await.unwrap();
    let mut on_a = hub_a.register("a".into(), None).unwrap();
    let mut on_b = hub_b.register("b".into(), None).unwrap();
    let mut client = sql().await;

    let envelope = hub_a.envelope(Target::All, "say", &"after commit").unwrap();
    let transaction = client.transaction().await.unwrap();
    hub_a
        .transport()
        .publish_in(&transaction, &envelope)
        .await
        .unwrap();
    assert!(on_a.try_recv().is_none(), "delivered before the commit");
    transaction.commit().await.unwrap();

    for connection in [&mut on_a, &mut on_b] {
        let message = timeout(WAIT, connection.recv()).await.unwrap().unwrap();
        assert_eq!(message.args::<String>().unwrap(), "after commit");
    }
}

// ---------------------------------------------------------------------------
// Configuration

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listening_connection_shows_its_application_name() {
    init_logs();
    let prefix = unique("appname");
    let name = unique("app");
    let backplane = builder(&prefix)
        .application_name(&name)
        .build()
        .await
        .unwrap();
    let _subscription = backplane.subscribe("appname").await.unwrap();

    let admin = sql().await;
    let rows = admin
        .query(
            "SELECT query FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    let queries: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let channel = backplane.channel_name("appname");
    assert!(
        queries
            .iter()
            .any(|q| q.starts_with("LISTEN") && q.contains(&channel)),
        "{queries:?}"
    );

    // Without a name, the default one is used.
    let unnamed = instance(&prefix).await;
    assert!(
        format!("{unnamed:?}").contains("\"backplane\""),
        "{unnamed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show() {
    init_logs();
    let real: Config = url().parse().unwrap();
    let real_password = String::from_utf8(real.get_password().unwrap().to_vec()).unwrap();

    // A wrong password: the error says what failed, not with what.
    let mut wrong = real.clone();
    wrong.password("wr0ng-pa55word-xyz");
    let error = PostgresBackplane::from_config(wrong.clone())
        .build()
        .await
        .unwrap_err();
    let mut shown = format!("{error} {error:?}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        shown.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!error.is_transient(), "{error:?}");
    assert!(!shown.contains("wr0ng-pa55word-xyz"), "{shown}");
    assert!(!shown.contains(&real_password), "{shown}");

    let builder = PostgresBackplane::from_config(wrong);
    let shown = format!("{builder:?}");
    assert!(!shown.contains("wr0ng-pa55word-xyz"), "{shown}");

    // A working backplane describes itself without the password.
    let backplane = instance(&unique("secret")).await;
    let shown = format!("{backplane} {backplane:?} {:?}", builder_debug());
    assert!(
        shown.contains("127.0.0.1") || shown.contains("localhost"),
        "{shown}"
    );
    assert!(!shown.contains(&real_password), "{shown}");

    // A malformed connection string is refused without being repeated.
    let error =
        PostgresBackplane::builder("postgres://u:s3cret-in-url@host:notaport/db").unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("s3cret-in-url"), "{shown}");
}

fn builder_debug() -> String {
    format!("{:?}", builder("p"))
}
