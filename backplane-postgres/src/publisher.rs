//! The publishing connection: a background task that pipelines
//! `pg_notify` calls on one connection and packs envelopes that queue up
//! behind round trips in flight into shared notifications.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use backplane_api::{BackplaneError, Result};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::noop_waker_ref;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::config::Settings;
use crate::error::{Chain, timed_out, wrap};
use crate::frame::{self, MAX_NOTIFICATION_BYTES};

/// Sends one notification; both values are bound parameters.
pub(crate) const NOTIFY_ONE: &str = "SELECT pg_notify($1, $2)";

/// Sends several notifications on one channel in one statement, hence in
/// one transaction: they are delivered together and in array order.
pub(crate) const NOTIFY_MANY: &str = "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p";

/// How many round trips may be in flight on the connection at once. Beyond
/// it, requests wait, and envelopes that wait together share notifications.
const MAX_IN_FLIGHT: usize = 8;

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

/// One round trip: the notifications it sends and who waits for it.
struct Trip {
    channel: String,
    notifications: Vec<String>,
    replies: Vec<oneshot::Sender<Result<()>>>,
}

type Running = Pin<Box<dyn Future<Output = (Vec<oneshot::Sender<Result<()>>>, Result<()>)> + Send>>;

/// Runs until every handle of the backplane is dropped.
pub(crate) async fn run(settings: Arc<Settings>, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut queue: VecDeque<Request> = VecDeque::new();
    let mut client: Option<Arc<Client>> = None;
    let mut in_flight: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut open = true;

    while open || !queue.is_empty() || !in_flight.is_empty() {
        // Send what is queued while there is room in the pipeline.
        while in_flight.len() < MAX_IN_FLIGHT && !queue.is_empty() {
            let Some(connected) = connected(&settings, &mut client, &mut queue).await else {
                break;
            };
            let trip = next_trip(&mut queue);
            in_flight.push(start(connected, trip, &settings));
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
                        error = %Chain(error),
                        "publishing connection failed; reconnecting on the next publish",
                    );
                }
                reply_all(replies, result);
            }
        }
    }
    tracing::debug!("backplane dropped; publisher stopped");
}

/// Returns the connection, opening it if there is none. If that fails,
/// every queued request gets the error (none of them was sent) and the
/// next request tries again.
async fn connected(
    settings: &Settings,
    client: &mut Option<Arc<Client>>,
    queue: &mut VecDeque<Request>,
) -> Option<Arc<Client>> {
    if let Some(client) = client.as_ref().filter(|c| !c.is_closed()) {
        return Some(client.clone());
    }
    match settings.connect().await {
        Ok((new, connection)) => {
            // The connection ends by itself once its client is dropped.
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(error = %Chain(&error), "publishing connection ended");
                }
            });
            tracing::debug!("publishing connection opened");
            let new = Arc::new(new);
            *client = Some(new.clone());
            Some(new)
        }
        Err(error) => {
            tracing::warn!(
                error = %Chain(&error),
                requests = queue.len(),
                "cannot open the publishing connection",
            );
            let error = Arc::new(error);
            for request in queue.drain(..) {
                let _ = request.reply.send(Err(shared(&error)));
            }
            None
        }
    }
}

/// Takes the next round trip off the queue: chunks alone, or as many
/// single envelopes of one channel, in order, as fit one notification.
fn next_trip(queue: &mut VecDeque<Request>) -> Trip {
    let first = queue.pop_front().expect("the queue is not empty");
    let mut replies = vec![first.reply];
    let mut texts = match first.payload {
        Payload::Chunks(notifications) => {
            return Trip {
                channel: first.channel,
                notifications,
                replies,
            };
        }
        Payload::Single(text) => vec![text],
    };

    let mut total = texts[0].len();
    while let Some(next) = queue.front() {
        let Payload::Single(text) = &next.payload else {
            break;
        };
        let len = frame::packed_len(total + text.len(), texts.len() + 1);
        if next.channel != first.channel || len > MAX_NOTIFICATION_BYTES {
            break;
        }
        total += text.len();
        let next = queue.pop_front().expect("just looked at it");
        let Payload::Single(text) = next.payload else {
            unreachable!("just matched it");
        };
        texts.push(text);
        replies.push(next.reply);
    }

    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    Trip {
        channel: first.channel,
        notifications: vec![frame::pack(&refs)],
        replies,
    }
}

/// Starts a round trip and sends its request at once.
///
/// The client sends a request when its future is first polled, and the
/// server runs requests in the order they were sent; polling here, before
/// the next trip is built, keeps notifications in publish order.
fn start(client: Arc<Client>, trip: Trip, settings: &Settings) -> Running {
    let timeout = settings.query_timeout;
    let Trip {
        channel,
        notifications,
        replies,
    } = trip;
    tracing::trace!(
        channel,
        envelopes = replies.len(),
        notifications = notifications.len(),
        bytes = notifications.iter().map(String::len).sum::<usize>(),
        "publishing",
    );
    let mut running: Running = Box::pin(async move {
        let round_trip = async {
            if let [one] = notifications.as_slice() {
                let params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(&channel, Type::TEXT), (one, Type::TEXT)];
                client.query_typed(NOTIFY_ONE, &params).await
            } else {
                let params: [(&(dyn ToSql + Sync), Type); 2] =
                    [(&channel, Type::TEXT), (&notifications, Type::TEXT_ARRAY)];
                client.query_typed(NOTIFY_MANY, &params).await
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
                let _ = reply.send(Err(shared(&error)));
            }
        }
    }
}

/// One error for several callers: the same context and transience, the
/// original as the source.
fn shared(error: &Arc<BackplaneError>) -> BackplaneError {
    let context = error.to_string();
    if error.is_transient() {
        BackplaneError::transient(context, error.clone())
    } else {
        BackplaneError::transport(context, error.clone())
    }
}
