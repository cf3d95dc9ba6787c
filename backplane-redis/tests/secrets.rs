//! A password in a URL never shows in logs, `Debug` output or errors.
//!
//! Every tracing event of this test binary is captured (at every level) and
//! searched for the password after a connect, a kill and a reconnect.

mod common;

use std::error::Error as _;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use backplane_api::{Event, Subscriber};
use backplane_redis::RedisBackplane;
use common::PrivateRedis;

/// Everything logged by this process, as text.
static LOGS: Mutex<String> = Mutex::new(String::new());

/// A tracing subscriber that appends every event and span field to
/// [`LOGS`].
struct Capture {
    next_span: AtomicU64,
}

struct Text<'a>(&'a mut String);

impl tracing::field::Visit for Text<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Text(&mut LOGS.lock().unwrap()));
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Text(&mut LOGS.lock().unwrap()));
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut logs = LOGS.lock().unwrap();
        logs.push('\n');
        logs.push_str(event.metadata().name());
        event.record(&mut Text(&mut logs));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

fn capture_logs() {
    let _ = tracing::subscriber::set_global_default(Capture {
        next_span: AtomicU64::new(0),
    });
}

/// Display, Debug and every source of an error.
fn describe(error: &backplane_api::BackplaneError) -> String {
    let mut text = format!("{error} {error:?}");
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, " {cause} {cause:?}");
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn password_stays_out_of_logs_debug_and_errors() {
    capture_logs();
    let mut server = PrivateRedis::start().await;
    let password = server.password.clone();
    let url = server.url();
    let prefix = common::prefix();

    // Debug of the builder and of the transport.
    let builder = RedisBackplane::builder(&url).channel_prefix(&prefix);
    let debug = format!("{builder:?}");
    assert!(!debug.contains(&password), "{debug}");
    let bus = builder.build().await.unwrap();
    let debug = format!("{bus:?}");
    assert!(!debug.contains(&password), "{debug}");
    assert!(debug.contains(&server.port.to_string()), "{debug}");

    // Errors: a wrong password, a server that is down, a URL that does not
    // parse, a cluster seed that cannot be reached.
    let wrong = format!("redis://:{password}-wrong@127.0.0.1:{}/", server.port);
    let error = RedisBackplane::connect(&wrong).await.unwrap_err();
    assert!(
        !describe(&error).contains(&password),
        "{}",
        describe(&error)
    );
    assert!(
        !error.is_transient(),
        "a refused password is not worth retrying: {}",
        describe(&error)
    );
    let invalid = format!("redis://:{password}@127.0.0.1:notaport/");
    let error = RedisBackplane::connect(&invalid).await.unwrap_err();
    assert!(
        !describe(&error).contains(&password),
        "{}",
        describe(&error)
    );

    // Logs through a kill and a restart of the server.
    let mut subscription = bus.subscribe("h").await.unwrap();
    server.restart().await;
    common::wait_event(&mut subscription, "resubscribed", |e| {
        matches!(e, Event::Resubscribed { .. })
    })
    .await;

    server.stop().await;
    let down = format!("redis://:{password}@127.0.0.1:{}/", server.port);
    let error = RedisBackplane::connect(&down).await.unwrap_err();
    assert!(
        !describe(&error).contains(&password),
        "{}",
        describe(&error)
    );
    let cluster_down = format!("redis+cluster://:{password}@127.0.0.1:{}/", server.port);
    let error = RedisBackplane::connect(&cluster_down).await.unwrap_err();
    assert!(
        !describe(&error).contains(&password),
        "{}",
        describe(&error)
    );

    let logs = LOGS.lock().unwrap().clone();
    assert!(
        logs.contains("redis subscriptions restored"),
        "the capture saw no reconnect: {logs}"
    );
    assert!(!logs.contains(&password), "password logged: {logs}");
}
