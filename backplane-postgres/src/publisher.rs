//! The publishing connection: a background task that pipelines
//! `pg_notify` calls on one connection and packs envelopes that queue up
//! behind round trips in flight into shared notifications.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use backplane_api::{BackplaneError, ErrorChain, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::noop_waker_ref;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::config::{PgConnection, Settings};
use crate::error::{timed_out, wrap};
use crate::frame::{self, MAX_NOTIFICATION_BYTES};

/// Sends one notification; both values are bound parameters.
pub(crate) const NOTIFY_ONE: &str = "SELECT pg_notify($1, $2)";

/// Sends several notifications on one channel in one statement, hence in
/// one transaction: they are delivered together and in array order.
pub(crate) const NOTIFY_MANY: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// Sends several notifications, each on its own channel, in one statement:
/// `$1` holds the channels and `$2` the payloads, pairwise. One statement
/// is one transaction, so they are delivered together and in array order,
/// across channels too.
const NOTIFY_EACH: &str = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)";

/// How many round trips may be in flight on the connection at once. Beyond
/// it, requests wait, and envelopes that wait together share round trips.
const MAX_IN_FLIGHT: usize = 8;

/// How many payload bytes one round trip carries at most, unless a single
/// chunked message needs more (its chunks must share one transaction).
/// Bounds the statement; see [`trip_limit`] for how a queue is shared
/// among the round trips that may start.
const MAX_TRIP_BYTES: usize = 64 * 1024;

/// One envelope to publish, already encoded and framed.
pub(crate) struct Request {
    pub(crate) channel: String,
    pub(crate) payload: Payload,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// An encoded envelope, as one notification or as chunks.
pub(crate) enum Payload {
    /// Fits one notification and may share it with others.
    Single(String),
    /// Chunk frames, sent together in one statement.
    Chunks(Vec<String>),
}

/// One round trip: the notifications it sends, in order, and who waits
/// for it. `channels[i]` carries `notifications[i]`.
#[derive(Default)]
struct Trip {
    channels: Vec<String>,
    notifications: Vec<String>,
    replies: Vec<oneshot::Sender<Result<()>>>,
    bytes: usize,
}

impl Trip {
    fn push(&mut self, channel: String, notification: String) {
        self.bytes += notification.len();
        self.channels.push(channel);
        self.notifications.push(notification);
    }

    /// Whether the trip already sends this exact notification. PostgreSQL
    /// folds identical notifications (same channel and payload) of one
    /// transaction into one, so a second copy must wait for the next trip.
    fn contains(&self, channel: &str, notification: &str) -> bool {
        self.notifications
            .iter()
            .zip(&self.channels)
            .any(|(n, c)| n == notification && c == channel)
    }
}

/// Single envelopes of one channel being packed into one notification.
struct Packing {
    requests: Vec<Request>,
    /// The encoded envelopes' lengths, summed.
    total: usize,
}

impl Packing {
    fn new(request: Request, len: usize) -> Self {
        Self {
            requests: vec![request],
            total: len,
        }
    }

    fn len(&self) -> usize {
        frame::packed_len(self.total, self.requests.len())
    }
}

type Running = Pin<Box<dyn Future<Output = (Vec<oneshot::Sender<Result<()>>>, Result<()>)> + Send>>;

/// Opening the publishing connection.
type Connecting = Pin<Box<dyn Future<Output = Result<(Client, PgConnection)>> + Send>>;

/// The publisher's side of a publishing connection that failed: when the
/// next attempt may start, and what publishes get until then.
struct Outage {
    since: Instant,
    /// Failed attempts to open the connection so far.
    attempts: u64,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
    /// No attempt starts before this; publishes fail at once until then.
    retry_at: Option<Instant>,
    /// Why the last attempt failed.
    error: Option<Arc<BackplaneError>>,
}

impl Outage {
    fn new(settings: &Settings) -> Self {
        Self {
            since: Instant::now(),
            attempts: 0,
            delays: Box::new(settings.reconnect_delays()),
            retry_at: None,
            error: None,
        }
    }

    /// Notes a failed attempt and logs it: one warning per attempt, however
    /// many publishes the backoff then refuses.
    fn failed(&mut self, error: &Arc<BackplaneError>, settings: &Settings, requests: usize) {
        self.attempts += 1;
        let delay = self.delays.next().unwrap_or(settings.reconnect_max_delay);
        tracing::warn!(
            attempt = self.attempts,
            error = %ErrorChain(&**error),
            requests,
            retry_in_ms = delay.as_millis() as u64,
            "cannot open the publishing connection; publishes fail until the next attempt",
        );
        self.retry_at = Some(Instant::now() + delay);
        self.error = Some(error.clone());
    }

    /// Why the last attempt failed, while the backoff runs: publishes
    /// fail at once with it. `None` once another attempt may start.
    fn refusal(&self) -> Option<Arc<BackplaneError>> {
        let retry_at = self.retry_at?;
        (Instant::now() < retry_at).then(|| self.error.clone())?
    }
}

/// The error context of a publish refused between two attempts to open
/// the publishing connection.
const BACKING_OFF: &str = "cannot publish while the publishing connection is being reopened";

/// Runs until every handle of the backplane is dropped.
pub(crate) async fn run(settings: Arc<Settings>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut queue: VecDeque<Request> = VecDeque::new();
    let mut client: Option<Arc<Client>> = None;
    let mut connecting: Option<Connecting> = None;
    let mut outage: Option<Outage> = None;
    let mut in_flight: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut open = true;

    while open || !queue.is_empty() || !in_flight.is_empty() {
        // A connection that ended by itself is opened again on demand.
        if client.as_ref().is_some_and(|c| c.is_closed()) {
            tracing::debug!("publishing connection closed");
            client = None;
        }

        // Without a connection, queued publishes either fail at once (a
        // recent attempt failed) or wait for a new attempt. The attempt
        // runs in the select below, so that round trips in flight still
        // get their replies meanwhile.
        if client.is_none() && connecting.is_none() && !queue.is_empty() {
            match outage.as_ref().and_then(Outage::refusal) {
                Some(last) => fail_all(&mut queue, || {
                    BackplaneError::transient(BACKING_OFF, last.clone())
                }),
                None => connecting = Some(open_connection(&settings, outage.as_ref())),
            }
        }

        // Send what is queued while there is room in the pipeline.
        if let Some(connected) = &client {
            while in_flight.len() < MAX_IN_FLIGHT && !queue.is_empty() {
                let limit = trip_limit(&queue, MAX_IN_FLIGHT - in_flight.len());
                let trip = next_trip(&mut queue, limit);
                in_flight.push(start(connected.clone(), trip, &settings));
            }
        }

        tokio::select! {
            request = requests.recv(), if open => match request {
                Some(request) => {
                    queue.push_back(request);
                    while let Ok(request) = requests.try_recv() {
                        queue.push_back(request);
                    }
                }
                None => open = false,
            },

            Some((replies, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(error) = &result
                    && error.is_transient()
                    && client.take().is_some()
                {
                    tracing::warn!(
                        error = %ErrorChain(error),
                        "publishing connection failed; reconnecting on the next publish",
                    );
                    outage.get_or_insert_with(|| Outage::new(&settings));
                }
                reply_all(replies, result);
            }

            result = async { connecting.as_mut().expect("guarded").await },
                if connecting.is_some() =>
            {
                connecting = None;
                match result {
                    Ok((new, connection)) => {
                        client = Some(connected(new, connection, outage.take()));
                    }
                    Err(error) => {
                        // None of the queued publishes was sent.
                        let error = Arc::new(error);
                        outage
                            .get_or_insert_with(|| Outage::new(&settings))
                            .failed(&error, &settings, queue.len());
                        fail_all(&mut queue, || BackplaneError::shared(&error));
                    }
                }
            }
        }
    }
    tracing::debug!("backplane dropped; publisher stopped");
}

/// Starts opening the publishing connection.
fn open_connection(settings: &Arc<Settings>, outage: Option<&Outage>) -> Connecting {
    let attempt = outage.map_or(1, |outage| outage.attempts + 1);
    tracing::debug!(attempt, "opening the publishing connection");
    let settings = settings.clone();
    Box::pin(async move { settings.connect().await })
}

/// Puts a newly opened connection to use, and tells when it ends an
/// outage.
fn connected(client: Client, connection: PgConnection, outage: Option<Outage>) -> Arc<Client> {
    // The connection ends by itself once its client is dropped.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %ErrorChain(&error), "publishing connection ended");
        }
    });
    match outage {
        Some(outage) => tracing::info!(
            attempt = outage.attempts + 1,
            downtime_ms = outage.since.elapsed().as_millis() as u64,
            "publishing connection restored",
        ),
        None => tracing::debug!("publishing connection opened"),
    }
    Arc::new(client)
}

/// Fails every queued request with an error of its own: none of them
/// was sent.
fn fail_all(queue: &mut VecDeque<Request>, error: impl Fn() -> BackplaneError) {
    for request in queue.drain(..) {
        let _ = request.reply.send(Err(error()));
    }
}

/// How many bytes the next round trip may carry: the queue shared among
/// the free places in the pipeline (so that round trips overlap rather
/// than one carrying everything), at least one full notification and at
/// most [`MAX_TRIP_BYTES`].
fn trip_limit(queue: &VecDeque<Request>, free: usize) -> usize {
    let queued: usize = queue
        .iter()
        .map(|request| match &request.payload {
            Payload::Single(text) => text.len(),
            Payload::Chunks(chunks) => chunks.iter().map(String::len).sum(),
        })
        .sum();
    queued
        .div_ceil(free.max(1))
        .clamp(MAX_NOTIFICATION_BYTES, MAX_TRIP_BYTES)
}

/// Takes the next round trip off the queue, in order: single envelopes
/// of one channel are packed into as few notifications as fit (up to 7999
/// bytes each), chunked messages go whole, and the trip ends once it holds
/// about `limit` bytes.
fn next_trip(queue: &mut VecDeque<Request>, limit: usize) -> Trip {
    let mut trip = Trip::default();
    let mut packing: Option<Packing> = None;

    while let Some(next) = queue.front() {
        // Join the notification being packed if it has the room.
        let added = match &next.payload {
            Payload::Single(text) => text.len(),
            Payload::Chunks(chunks) => chunks.iter().map(String::len).sum(),
        };
        if let (Some(open), Payload::Single(_)) = (&mut packing, &next.payload) {
            let len = frame::packed_len(open.total + added, open.requests.len() + 1);
            let joins = open.requests[0].channel == next.channel && len <= MAX_NOTIFICATION_BYTES;
            if joins && trip.bytes + len <= limit {
                open.total += added;
                open.requests
                    .push(queue.pop_front().expect("just looked at it"));
                continue;
            }
            if joins {
                break;
            }
        }

        // Otherwise close it, and start a new notification if the trip
        // has room (a first request always goes, whatever its size).
        let open_len = packing.as_ref().map_or(0, Packing::len);
        let empty = trip.notifications.is_empty() && packing.is_none();
        if !empty && trip.bytes + open_len + added > limit {
            break;
        }
        if let Some(open) = packing.take()
            && !close(&mut trip, open, queue)
        {
            return trip;
        }
        let request = queue.pop_front().expect("just looked at it");
        match request.payload {
            Payload::Single(_) => packing = Some(Packing::new(request, added)),
            Payload::Chunks(chunks) => {
                for chunk in chunks {
                    trip.push(request.channel.clone(), chunk);
                }
                trip.replies.push(request.reply);
            }
        }
    }

    if let Some(open) = packing {
        close(&mut trip, open, queue);
    }
    trip
}

/// Adds a packed notification to the trip. If the trip already sends the
/// same one (a caller published the same envelope twice), puts its
/// requests back at the front of the queue instead, for the next trip,
/// and returns false: the trip must end here to keep publish order.
fn close(trip: &mut Trip, open: Packing, queue: &mut VecDeque<Request>) -> bool {
    let texts: Vec<&str> = open
        .requests
        .iter()
        .map(|request| match &request.payload {
            Payload::Single(text) => text.as_str(),
            Payload::Chunks(_) => unreachable!("only single envelopes are packed"),
        })
        .collect();
    let notification = frame::pack(&texts);
    let channel = &open.requests[0].channel;
    if trip.contains(channel, &notification) {
        for request in open.requests.into_iter().rev() {
            queue.push_front(request);
        }
        return false;
    }

    let channel = channel.clone();
    for request in open.requests {
        trip.replies.push(request.reply);
    }
    trip.push(channel, notification);
    true
}

/// Starts a round trip and sends its request at once.
///
/// The client sends a request when its future is first polled, and the
/// server runs requests in the order they were sent; polling here, before
/// the next trip is built, keeps notifications in publish order.
fn start(client: Arc<Client>, trip: Trip, settings: &Settings) -> Running {
    let timeout = settings.query_timeout;
    let Trip {
        channels,
        notifications,
        replies,
        bytes,
    } = trip;
    tracing::trace!(
        envelopes = replies.len(),
        notifications = notifications.len(),
        bytes,
        "publishing",
    );
    let mut running: Running = Box::pin(async move {
        let round_trip = async {
            if let ([channel], [one]) = (channels.as_slice(), notifications.as_slice()) {
                let params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(channel, Type::TEXT), (one, Type::TEXT)];
                client.query_typed(NOTIFY_ONE, &params).await
            } else {
                let params: [(&(dyn ToSql + Sync), Type); 2] = [
                    (&channels, Type::TEXT_ARRAY),
                    (&notifications, Type::TEXT_ARRAY),
                ];
                client.query_typed(NOTIFY_EACH, &params).await
            }
        };
        let result = match tokio::time::timeout(timeout, round_trip).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(wrap("failed to publish", error)),
            Err(_) => Err(timed_out("timed out publishing")),
        };
        (replies, result)
    });

    // The first poll sends the request; the set polls the future again
    // (with its own waker) before waiting on it, so nothing is missed.
    let mut cx = Context::from_waker(noop_waker_ref());
    match running.as_mut().poll(&mut cx) {
        Poll::Ready(done) => Box::pin(std::future::ready(done)),
        Poll::Pending => running,
    }
}

fn reply_all(replies: Vec<oneshot::Sender<Result<()>>>, result: Result<()>) {
    match result {
        Ok(()) => {
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
        }
        // A lone caller gets the error itself, not a copy.
        Err(error) if replies.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(error));
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for reply in replies {
                let _ = reply.send(Err(BackplaneError::shared(&error)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues single envelopes (or chunks, for texts starting with
    /// `chunk`) and keeps the reply ends so the senders stay open.
    fn queue(items: &[(&str, &str)]) -> VecDeque<Request> {
        items
            .iter()
            .map(|(channel, text)| {
                let (reply, _) = oneshot::channel();
                let payload = match text.strip_prefix("chunks:") {
                    Some(n) => Payload::Chunks(
                        (0..n.parse().unwrap())
                            .map(|i| format!("chunk m {i}/{n}\n{}", "c".repeat(4000)))
                            .collect(),
                    ),
                    None => Payload::Single((*text).to_owned()),
                };
                Request {
                    channel: (*channel).to_owned(),
                    payload,
                    reply,
                }
            })
            .collect()
    }

    fn sent(trip: &Trip) -> Vec<(&str, &str)> {
        trip.channels
            .iter()
            .map(String::as_str)
            .zip(trip.notifications.iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn packs_one_channel_into_one_notification() {
        let mut q = queue(&[("a", "{1}"), ("a", "{2}"), ("a", "{3}")]);
        let trip = next_trip(&mut q, MAX_TRIP_BYTES);
        assert_eq!(sent(&trip), [("a", "[{1},{2},{3}]")]);
        assert_eq!(trip.replies.len(), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn mixed_channels_keep_their_order_in_one_trip() {
        let mut q = queue(&[
            ("a", "{1}"),
            ("a", "{2}"),
            ("b", "{3}"),
            ("a", "{4}"),
            ("b", "chunks:2"),
            ("b", "{5}"),
        ]);
        let trip = next_trip(&mut q, MAX_TRIP_BYTES);
        let sent = sent(&trip);
        assert_eq!(sent[..3], [("a", "[{1},{2}]"), ("b", "{3}"), ("a", "{4}")]);
        assert!(sent[3].1.starts_with("chunk m 0/2\n"));
        assert!(sent[4].1.starts_with("chunk m 1/2\n"));
        assert_eq!(sent[5], ("b", "{5}"));
        assert_eq!(trip.replies.len(), 6);
        assert!(q.is_empty());
    }

    #[test]
    fn identical_notifications_never_share_a_trip() {
        // Two envelopes too large to share a notification: each would be
        // the same notification, which PostgreSQL would fold into one.
        let big = format!("{{{}}}", "x".repeat(5000));
        let mut q = queue(&[("a", &big), ("a", &big), ("a", &big)]);
        for _ in 0..3 {
            let trip = next_trip(&mut q, MAX_TRIP_BYTES);
            assert_eq!(sent(&trip), [("a", big.as_str())]);
            assert_eq!(trip.replies.len(), 1);
        }
        assert!(q.is_empty());

        // Small ones share a notification, so a repeat is never folded.
        let mut q = queue(&[("a", "{1}"), ("a", "{1}")]);
        assert_eq!(
            sent(&next_trip(&mut q, MAX_TRIP_BYTES)),
            [("a", "[{1},{1}]")]
        );

        // The same envelope on two channels is two notifications.
        let mut q = queue(&[("a", &big), ("b", &big)]);
        assert_eq!(next_trip(&mut q, MAX_TRIP_BYTES).notifications.len(), 2);
    }

    #[test]
    fn notifications_and_trips_stay_within_their_limits() {
        let text = format!("{{{}}}", "x".repeat(998));
        let items: Vec<(&str, &str)> = (0..200).map(|_| ("a", text.as_str())).collect();
        let mut q = queue(&items);
        let mut envelopes = 0;
        while !q.is_empty() {
            let trip = next_trip(&mut q, MAX_TRIP_BYTES);
            assert!(trip.bytes <= MAX_TRIP_BYTES);
            for notification in &trip.notifications {
                assert!(notification.len() <= MAX_NOTIFICATION_BYTES);
                envelopes += notification.matches('{').count();
            }
            // As few notifications as fit: seven 1000-byte envelopes each.
            assert!(
                trip.notifications
                    .iter()
                    .rev()
                    .skip(1)
                    .all(|n| n.len() > 7000)
            );
        }
        assert_eq!(envelopes, 200);

        // A chunked message larger than a trip still goes whole.
        let mut q = queue(&[("a", "{1}"), ("a", "chunks:20"), ("a", "{2}")]);
        assert_eq!(sent(&next_trip(&mut q, MAX_TRIP_BYTES)), [("a", "{1}")]);
        assert_eq!(next_trip(&mut q, MAX_TRIP_BYTES).notifications.len(), 20);
        assert_eq!(sent(&next_trip(&mut q, MAX_TRIP_BYTES)), [("a", "{2}")]);
    }

    #[test]
    fn a_queue_is_shared_among_the_free_round_trips() {
        let text = "x".repeat(4000);
        let items: Vec<(&str, &str)> = (0..64).map(|_| ("a", text.as_str())).collect();
        let q = queue(&items);
        assert_eq!(trip_limit(&q, 8), 32_000);
        assert_eq!(trip_limit(&q, 1), MAX_TRIP_BYTES);
        assert_eq!(trip_limit(&q, 0), MAX_TRIP_BYTES);
        assert_eq!(
            trip_limit(&queue(&[("a", "{}")]), 8),
            MAX_NOTIFICATION_BYTES
        );
    }
}
