//! Measures every backplane transport next to the raw client of the bus it
//! rides on, in one run, and reports ratios: absolute numbers drift on a
//! shared machine, ratios measured minutes apart much less.
//!
//! ```text
//! backplane-bench [--json FILE] [--quick] [--only TEXT]
//! ```
//!
//! - **Throughput**: messages per second delivered at the receiving side
//!   with 64 publishes in flight. Raw runs are one `pg_notify` per message
//!   (prepared statement, pipelined on one connection) to a second
//!   connection that `LISTEN`s, or `PUBLISH` on a multiplexed connection to
//!   a subscriber. Backplane runs send through the `Hub` of instance A to a
//!   connection held by instance B, each instance over its own transport.
//! - **Latency**: p50 / p99 of send-to-receive time at 1,000 messages per
//!   second offered on a fixed schedule.
//! - **Local delivery**: one send to every one of 10,000 connections, and
//!   group sends among 1,000 vs 100,000 connections.
//!
//! PostgreSQL and Redis come from `BACKPLANE_POSTGRES_URL` and
//! `BACKPLANE_REDIS_URL` (`scripts/bench` starts both); the rows of a bus
//! whose URL is unset are skipped. URLs are never printed. Targets are
//! reported in the table, never asserted. `--quick` shortens every window
//! (a smoke test; its numbers mean little); `--only TEXT` runs only the
//! measurements whose label contains `TEXT` (to profile one of them).

mod fanout;
mod load;
mod report;
mod transports;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::load::{Latency, Publish, Result, Settings, Sink, Throughput, stamp};
use crate::report::{Goal, Row};
use crate::transports::{memory, postgres, redis};

/// Payload sizes of the throughput and latency runs.
const SIZES: [usize; 2] = [200, 4096];

/// A message large enough that PostgreSQL must carry it in chunks.
const LARGE: usize = 64 * 1024;

/// The largest payload one notification carries.
const LARGEST_NOTIFICATION: usize = 7999;

/// Local fan-out: connections, and timed rounds of sends.
const FAN_OUT_CONNECTIONS: usize = 10_000;
const FAN_OUT_ROUNDS: usize = 20;

/// Group sends: connections held, and timed rounds of sends per size.
const GROUP_HUB_SIZES: [usize; 2] = [1_000, 100_000];
const GROUP_ROUNDS: usize = 40;

const USAGE: &str = "usage: backplane-bench [--json FILE] [--quick] [--only TEXT]";

#[tokio::main]
async fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut bench = Bench::new(options.settings(), options.only.clone());

    bench.memory().await;
    match std::env::var("BACKPLANE_POSTGRES_URL") {
        Ok(url) => bench.postgres(&url).await,
        Err(_) => bench.note("BACKPLANE_POSTGRES_URL is not set: PostgreSQL rows skipped"),
    }
    match std::env::var("BACKPLANE_REDIS_URL") {
        Ok(url) => bench.redis(&url).await,
        Err(_) => bench.note("BACKPLANE_REDIS_URL is not set: Redis rows skipped"),
    }
    bench.local().await;

    bench.print();
    if let Some(path) = &options.json
        && let Err(error) = bench.write_json(path)
    {
        eprintln!("cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    if bench.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Command-line options.
struct Options {
    json: Option<PathBuf>,
    quick: bool,
    only: Option<String>,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut options = Self {
            json: None,
            quick: false,
            only: None,
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--json" => {
                    let path = args.next().ok_or("--json needs a file name")?;
                    options.json = Some(path.into());
                }
                "--quick" => options.quick = true,
                "--only" => options.only = Some(args.next().ok_or("--only needs a text")?),
                "-h" | "--help" => return Err("measures every backplane transport".into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }

    fn settings(&self) -> Settings {
        if self.quick {
            Settings {
                warm_up: Duration::from_millis(100),
                throughput_for: Duration::from_millis(300),
                latency_for: Duration::from_millis(500),
                rate: 1000,
            }
        } else {
            Settings {
                warm_up: Duration::from_millis(300),
                throughput_for: Duration::from_secs(2),
                latency_for: Duration::from_secs(3),
                rate: 1000,
            }
        }
    }
}

/// The run: its settings, the rows measured so far and what went wrong.
struct Bench {
    settings: Settings,
    only: Option<String>,
    rows: Vec<Row>,
    notes: Vec<String>,
    failed: bool,
}

impl Bench {
    fn new(settings: Settings, only: Option<String>) -> Self {
        Self {
            settings,
            only,
            rows: Vec::new(),
            notes: Vec::new(),
            failed: false,
        }
    }

    /// The memory transport end to end through two hubs; it has no raw
    /// client to compare with, so its targets are absolute.
    async fn memory(&mut self) {
        for size in SIZES {
            let label = format!("memory {}", size_label(size));
            let run = self.throughput(&label, size, memory::backplane).await;
            if let Some(run) = run {
                let row = Row::single(format!("{label} throughput"), run.rate(), "msg/s");
                self.rows.push(row.goal(Goal::AtLeast(1_000_000.0)));
            }
            if let Some(run) = self.latency(&label, size, memory::backplane).await {
                for (p, name) in [(50.0, "p50"), (99.0, "p99")] {
                    let value = run.percentile_us(p);
                    let row = Row::single(format!("{label} latency {name}"), value, "us");
                    self.rows.push(row);
                }
            }
        }
    }

    /// Raw `pg_notify` next to `PostgresBackplane`, then chunked messages.
    async fn postgres(&mut self, url: &str) {
        for size in SIZES {
            let label = format!("postgres {}", size_label(size));
            let raw = |sink| postgres::RawNotify::start(url, sink);
            let backplane = |sink| postgres::backplane(url, sink);

            let baseline = self.throughput(&format!("{label} raw"), size, raw).await;
            let run = self.throughput(&label, size, backplane).await;
            // Batching is meant to pay off most with small messages.
            let goal = match size {
                200 => Goal::RatioAtLeast(5.0),
                _ => Goal::None,
            };
            self.compare_throughput(&label, run, baseline, goal);

            let baseline = self.latency(&format!("{label} raw"), size, raw).await;
            let run = self.latency(&label, size, backplane).await;
            self.compare_latency(&label, run, baseline);
        }

        // A 64 KiB message is nine notifications sent in one transaction;
        // the baseline is the bus's own bandwidth, in the largest single
        // notifications it takes.
        let label = format!("postgres {} chunked", size_label(LARGE));
        let raw = |sink| postgres::RawNotify::start(url, sink);
        let backplane = |sink| postgres::backplane(url, sink);
        let baseline = self
            .throughput(&format!("{label} raw"), LARGEST_NOTIFICATION, raw)
            .await;
        if let Some(run) = self.throughput(&label, LARGE, backplane).await {
            let rate = run.rate();
            let name = format!("{label} throughput");
            self.rows.push(Row::single(name, rate, "msg/s"));
            let name = format!("{label} bandwidth");
            let bandwidth = rate * LARGE as f64 / 1e6;
            let row = match baseline {
                Some(raw) => {
                    let raw_bandwidth = raw.rate() * LARGEST_NOTIFICATION as f64 / 1e6;
                    Row::compared(name, bandwidth, raw_bandwidth, "MB/s", Goal::None)
                }
                None => Row::single(name, bandwidth, "MB/s"),
            };
            self.rows.push(row);
        }
    }

    /// Raw `PUBLISH` next to `RedisBackplane`.
    async fn redis(&mut self, url: &str) {
        for size in SIZES {
            let label = format!("redis {}", size_label(size));
            let raw = |sink| redis::RawPublish::start(url, sink);
            let backplane = |sink| redis::backplane(url, sink);

            let baseline = self.throughput(&format!("{label} raw"), size, raw).await;
            let run = self.throughput(&label, size, backplane).await;
            self.compare_throughput(&label, run, baseline, Goal::RatioAtLeast(1.0));

            let baseline = self.latency(&format!("{label} raw"), size, raw).await;
            let run = self.latency(&label, size, backplane).await;
            self.compare_latency(&label, run, baseline);
        }
    }

    /// Fan-out and group sends inside one instance.
    async fn local(&mut self) {
        let label = format!(
            "fan-out to {} connections",
            report::number(FAN_OUT_CONNECTIONS as f64)
        );
        if self.selected(&label) {
            self.fan_out(&label).await;
        }
        let label = "group sends";
        if self.selected(label) {
            self.group_sends(label).await;
        }
    }

    async fn fan_out(&mut self, label: &str) {
        progress(label);
        match fanout::fan_out(FAN_OUT_CONNECTIONS, FAN_OUT_ROUNDS).await {
            Ok(rate) => {
                let row = Row::single(label, rate, "deliveries/s");
                self.rows.push(row.goal(Goal::AtLeast(5_000_000.0)));
            }
            Err(error) => self.fail(label, error),
        }
    }

    async fn group_sends(&mut self, label: &str) {
        progress(label);
        match fanout::group_send_cost(&GROUP_HUB_SIZES, GROUP_ROUNDS).await {
            Ok(costs) => {
                let [small, large] = GROUP_HUB_SIZES.map(|n| {
                    let of = report::number(n as f64);
                    format!("group send, {} of {of} connections", fanout::GROUP_SIZE)
                });
                let [small_cost, large_cost] = [costs[0], costs[1]].map(|c| c.as_secs_f64() * 1e6);
                self.rows.push(Row::single(small, small_cost, "us/send"));
                let goal = Goal::RatioAtMost(1.5);
                let row = Row::compared(large, large_cost, small_cost, "us/send", goal);
                self.rows.push(row);
            }
            Err(error) => self.fail(label, error),
        }
    }

    /// Runs one throughput measurement against a fresh setup.
    async fn throughput<P, F, Fut>(
        &mut self,
        label: &str,
        size: usize,
        setup: F,
    ) -> Option<Throughput>
    where
        P: Publish,
        F: FnOnce(Arc<Sink>) -> Fut,
        Fut: Future<Output = Result<P>>,
    {
        let label = format!("{label} throughput");
        if !self.selected(&label) {
            return None;
        }
        progress(&label);
        let sink = Sink::new();
        let run = async {
            let publisher = setup(sink.clone()).await?;
            load::throughput(&publisher, &sink, &stamp::filler(size), &self.settings).await
        };
        match run.await {
            Ok(run) => {
                self.check_delivered(&label, run.sent, run.delivered);
                Some(run)
            }
            Err(error) => {
                self.fail(&label, error);
                None
            }
        }
    }

    /// Runs one latency measurement against a fresh setup.
    async fn latency<P, F, Fut>(&mut self, label: &str, size: usize, setup: F) -> Option<Latency>
    where
        P: Publish,
        F: FnOnce(Arc<Sink>) -> Fut,
        Fut: Future<Output = Result<P>>,
    {
        let label = format!("{label} latency");
        if !self.selected(&label) {
            return None;
        }
        progress(&label);
        let sink = Sink::new();
        let run = async {
            let publisher = setup(sink.clone()).await?;
            load::latency(&publisher, &sink, size, &self.settings).await
        };
        match run.await {
            Ok(run) => {
                self.check_delivered(&label, run.sent, run.delivered);
                Some(run)
            }
            Err(error) => {
                self.fail(&label, error);
                None
            }
        }
    }

    fn compare_throughput(
        &mut self,
        label: &str,
        run: Option<Throughput>,
        baseline: Option<Throughput>,
        goal: Goal,
    ) {
        let name = format!("{label} throughput");
        let row = match (run, baseline) {
            (Some(run), Some(raw)) => Row::compared(name, run.rate(), raw.rate(), "msg/s", goal),
            (Some(run), None) => Row::single(name, run.rate(), "msg/s"),
            (None, _) => return,
        };
        self.rows.push(row);
    }

    /// Rows for p50 and p99; the target applies to p99.
    fn compare_latency(&mut self, label: &str, run: Option<Latency>, baseline: Option<Latency>) {
        let Some(run) = run else { return };
        for (p, name, goal) in [
            (50.0, "p50", Goal::None),
            (99.0, "p99", Goal::RatioAtMost(1.5)),
        ] {
            let name = format!("{label} latency {name}");
            let value = run.percentile_us(p);
            let row = match &baseline {
                Some(raw) => Row::compared(name, value, raw.percentile_us(p), "us", goal),
                None => Row::single(name, value, "us"),
            };
            self.rows.push(row);
        }
    }

    /// Whether `--only` lets the measurement named `label` run.
    fn selected(&self, label: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| label.contains(only.as_str()))
    }

    fn check_delivered(&mut self, label: &str, sent: u64, delivered: u64) {
        if delivered < sent {
            self.note(format!("{label}: {delivered} of {sent} messages delivered"));
        }
    }

    fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    fn fail(&mut self, label: &str, error: load::Error) {
        self.failed = true;
        self.note(format!("{label} failed: {error}"));
    }

    fn print(&self) {
        let settings = &self.settings;
        println!(
            "backplane-bench: {} publishes in flight; latency at {} msg/s offered; \
             {:?} throughput and {:?} latency windows",
            load::DEPTH,
            settings.rate,
            settings.throughput_for,
            settings.latency_for,
        );
        println!("baseline = the raw client of the same bus, measured in the same run\n");
        print!("{}", report::table(&self.rows));
        for note in &self.notes {
            println!("note: {note}");
        }
    }

    fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(&self.rows)?;
        std::fs::write(path, json + "\n")
    }
}

fn progress(label: &str) {
    eprintln!("measuring {label}");
}

fn size_label(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}
