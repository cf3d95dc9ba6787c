//! The two measurements every transport goes through, raw client or hub
//! alike: throughput at a fixed in-flight depth, and latency at a fixed
//! offered rate.
//!
//! A measurement drives a [`Publish`] (a raw client, or the hub of
//! instance A) and watches a [`Sink`], which whoever receives (a raw
//! listener, or a connection held by instance B) feeds with every message
//! as it arrives. Deliveries are counted at the receiving side only.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

/// Any error of a benchmark step; it ends that step only.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// The result of a benchmark step.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
/// One publish in flight.
pub(crate) type Sending<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// How many publishes a throughput run keeps in flight, for every
/// transport and every raw client.
pub(crate) const DEPTH: usize = 64;

/// How far the publisher may run ahead of the receiver. Past this it waits
/// until half of that has been delivered, so a fast publisher (the memory
/// transport) measures what the receiving side sustains instead of
/// overflowing its queues.
const MAX_UNDELIVERED: u64 = 16_384;

/// How long to wait, after the last publish, for stragglers to arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes one payload: implemented by each raw client and by `Hub`.
pub(crate) trait Publish: Sync {
    /// Starts publishing `payload`; completes when the bus accepted it.
    fn publish(&self, payload: Arc<str>) -> Sending<'_>;
}

/// How long each measurement runs, and at which rate latency is offered.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Unmeasured traffic before each measurement (opens lazy connections,
    /// fills caches).
    pub(crate) warm_up: Duration,
    /// Length of a throughput measurement.
    pub(crate) throughput_for: Duration,
    /// Length of a latency measurement.
    pub(crate) latency_for: Duration,
    /// Offered rate of a latency measurement, in messages per second.
    pub(crate) rate: u32,
}

/// The receiving side of a measurement.
#[derive(Debug)]
pub(crate) struct Sink {
    epoch: Instant,
    delivered: AtomicU64,
    last_ns: AtomicU64,
    timing: AtomicBool,
    latencies: Mutex<Vec<u64>>,
    // Set by a publisher waiting for deliveries, so that the receiver only
    // pays for a wake-up when somebody waits.
    waiting: AtomicBool,
    progress: Notify,
}

impl Sink {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            delivered: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            timing: AtomicBool::new(false),
            latencies: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
            progress: Notify::new(),
        })
    }

    /// Records one delivered message; receivers call it for every message,
    /// with the payload as the application would see it.
    pub(crate) fn record(&self, payload: &[u8]) {
        let now = self.nanos_at(Instant::now());
        if self.timing.load(Ordering::Relaxed)
            && let Some(sent) = stamp::sent_at(payload)
        {
            self.latencies().push(now.saturating_sub(sent));
        }
        self.last_ns.store(now, Ordering::Relaxed);
        self.delivered.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) && self.waiting.swap(false, Ordering::SeqCst) {
            self.progress.notify_one();
        }
    }

    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    fn nanos_at(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn latencies(&self) -> MutexGuard<'_, Vec<u64>> {
        self.latencies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts counting from zero; with `timing`, records latencies too.
    fn reset(&self, timing: bool) {
        self.latencies().clear();
        self.delivered.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
        self.timing.store(timing, Ordering::SeqCst);
    }

    /// Waits until the number of deliveries satisfies `enough`.
    async fn wait_for(&self, enough: impl Fn(u64) -> bool) {
        loop {
            // Ask for a wake-up before looking, so none is missed in between.
            let progress = self.progress.notified();
            self.waiting.store(true, Ordering::SeqCst);
            if enough(self.delivered()) {
                return;
            }
            progress.await;
        }
    }

    /// Waits until `sent` messages arrived, or gives up after
    /// [`DRAIN_TIMEOUT`] (the report then shows what was lost).
    async fn drain(&self, sent: u64) {
        let all = self.wait_for(|delivered| delivered >= sent);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, all).await;
    }
}

/// What a throughput run saw.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Throughput {
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    /// From the first publish to the last delivery.
    pub(crate) elapsed: Duration,
}

impl Throughput {
    /// Messages delivered per second.
    pub(crate) fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a latency run saw: send-to-receive times of every delivery.
#[derive(Clone, Debug)]
pub(crate) struct Latency {
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    sorted: Vec<u64>,
}

impl Latency {
    /// The `p`th percentile (nearest rank), in microseconds.
    pub(crate) fn percentile_us(&self, p: f64) -> f64 {
        percentile(&self.sorted, p) as f64 / 1e3
    }
}

/// Measures how many messages per second get through with [`DEPTH`]
/// publishes in flight, after a warm-up.
pub(crate) async fn throughput(
    publisher: &dyn Publish,
    sink: &Sink,
    payload: &str,
    settings: &Settings,
) -> Result<Throughput> {
    let payload: Arc<str> = payload.into();

    let warm_up = pump(publisher, sink, &payload, settings.warm_up).await?;
    sink.drain(warm_up).await;
    sink.reset(false);

    let started = sink.nanos_at(Instant::now());
    let sent = pump(publisher, sink, &payload, settings.throughput_for).await?;
    sink.drain(sent).await;

    let last = sink.last_ns.load(Ordering::SeqCst);
    Ok(Throughput {
        sent,
        delivered: sink.delivered(),
        elapsed: Duration::from_nanos(last.saturating_sub(started)),
    })
}

/// Measures send-to-receive time at [`Settings::rate`] messages per second
/// of `size` bytes, after a warm-up at the same rate.
pub(crate) async fn latency(
    publisher: &dyn Publish,
    sink: &Sink,
    size: usize,
    settings: &Settings,
) -> Result<Latency> {
    let warm_up = offer(publisher, sink, size, settings.rate, settings.warm_up).await?;
    sink.drain(warm_up).await;
    sink.reset(true);

    let sent = offer(publisher, sink, size, settings.rate, settings.latency_for).await?;
    sink.drain(sent).await;

    let mut sorted = std::mem::take(&mut *sink.latencies());
    sorted.sort_unstable();
    Ok(Latency {
        sent,
        delivered: sink.delivered(),
        sorted,
    })
}

/// Publishes `payload` for `duration`, [`DEPTH`] at a time and never more
/// than [`MAX_UNDELIVERED`] ahead of the sink. Returns how many it
/// published.
async fn pump(
    publisher: &dyn Publish,
    sink: &Sink,
    payload: &Arc<str>,
    duration: Duration,
) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + duration;
    let time_up = tokio::time::sleep_until(deadline);
    tokio::pin!(time_up);
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut open = true;

    loop {
        open = open && tokio::time::Instant::now() < deadline;
        while open && in_flight.len() < DEPTH && sent < sink.delivered() + MAX_UNDELIVERED {
            in_flight.push(publisher.publish(payload.clone()));
            sent += 1;
        }
        if !open && in_flight.is_empty() {
            return Ok(sent);
        }

        // Left the loop above with room in flight: the receiver is behind.
        let behind = open && in_flight.len() < DEPTH;
        let caught_up = |delivered| sent < delivered + MAX_UNDELIVERED / 2;
        tokio::select! {
            Some(result) = in_flight.next() => result?,
            () = sink.wait_for(caught_up), if behind => {}
            () = &mut time_up, if open => {}
        }
    }
}

/// Publishes one stamped payload of `size` bytes every `1 / rate` seconds
/// for `duration`, without waiting for earlier publishes to complete, so
/// a slow publish never delays the next one. Returns how many it
/// published.
///
/// Each payload carries the time its publish started. (The tick's
/// scheduled time would add the timer's own lateness, up to a
/// millisecond, to every sample.)
async fn offer(
    publisher: &dyn Publish,
    sink: &Sink,
    size: usize,
    rate: u32,
    duration: Duration,
) -> Result<u64> {
    let count = (duration.as_secs_f64() * f64::from(rate)).round() as u64;
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;

    while sent < count || !in_flight.is_empty() {
        tokio::select! {
            Some(result) = in_flight.next() => result?,
            _ = ticks.tick(), if sent < count => {
                let at = sink.nanos_at(Instant::now());
                in_flight.push(publisher.publish(stamp::payload(at, size).into()));
                sent += 1;
            }
        }
    }
    Ok(count)
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Payloads that carry their send time.
pub(crate) mod stamp {
    /// Hex digits of the send time at the start of a stamped payload.
    const DIGITS: usize = 16;

    /// A payload of `size` ASCII bytes (at least [`DIGITS`]) starting with
    /// `sent_ns` in hex; the rest is filler.
    pub(crate) fn payload(sent_ns: u64, size: usize) -> String {
        let mut text = format!("{sent_ns:0DIGITS$x}");
        text.push_str(&filler(size.saturating_sub(DIGITS)));
        text
    }

    /// An unstamped payload of `size` ASCII bytes.
    pub(crate) fn filler(size: usize) -> String {
        "x".repeat(size)
    }

    /// The send time of a stamped payload, as the raw bus delivers it or as
    /// the JSON string a hub delivers (with its opening quote).
    pub(crate) fn sent_at(payload: &[u8]) -> Option<u64> {
        let text = payload.strip_prefix(b"\"").unwrap_or(payload);
        let digits = std::str::from_utf8(text.get(..DIGITS)?).ok()?;
        u64::from_str_radix(digits, 16).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_survive_both_forms() {
        let payload = stamp::payload(123_456_789, 200);
        assert_eq!(payload.len(), 200);
        assert_eq!(stamp::sent_at(payload.as_bytes()), Some(123_456_789));
        let json = serde_json::to_string(&payload).unwrap();
        assert_eq!(stamp::sent_at(json.as_bytes()), Some(123_456_789));
        assert_eq!(stamp::sent_at(stamp::filler(200).as_bytes()), None);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 50.0), 50);
        assert_eq!(percentile(&values, 99.0), 99);
        assert_eq!(percentile(&values, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    struct Loopback(Arc<Sink>);

    impl Publish for Loopback {
        fn publish(&self, payload: Arc<str>) -> Sending<'_> {
            self.0.record(payload.as_bytes());
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn measurements_count_every_delivery() {
        let sink = Sink::new();
        let settings = Settings {
            warm_up: Duration::from_millis(10),
            throughput_for: Duration::from_millis(20),
            latency_for: Duration::from_millis(20),
            rate: 1000,
        };
        let publisher = Loopback(sink.clone());
        let run = throughput(&publisher, &sink, "x", &settings).await.unwrap();
        assert!(run.sent > 0);
        assert_eq!(run.delivered, run.sent);
        let run = latency(&publisher, &sink, 64, &settings).await.unwrap();
        assert_eq!(run.sent, 20);
        assert_eq!(run.delivered, 20);
        assert_eq!(run.sorted.len(), 20);
    }
}
