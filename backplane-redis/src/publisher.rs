//! The publishing task: sends publishes over the shared connection, a few
//! round trips at a time, and packs envelopes that queue up behind them
//! into shared messages.
//!
//! A message on a hub's channel is one envelope (a JSON object, as
//! `codec::encode` writes it) or a batch (a JSON array of such objects, in
//! publish order). A lone publish is always sent as a plain object.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use backplane_api::{BackplaneError, Envelope, Result, codec};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::noop_waker_ref;
use redis::RedisError;
use tokio::sync::{mpsc, oneshot};

use crate::backplane::{Publish, is_transient};

/// How many round trips may be in flight at once. Beyond it, requests
/// wait, and envelopes that wait together share one message: each message
/// costs a command, a reply and a read on every subscriber, so fewer and
/// larger ones save more than deeper pipelining gains.
const MAX_IN_FLIGHT: usize = 4;

/// One envelope to publish, already encoded.
pub(crate) struct Request {
    pub(crate) channel: String,
    pub(crate) payload: String,
    pub(crate) reply: oneshot::Sender<Result<()>>,
}

/// One round trip: one message on one channel, and who waits for it.
struct Trip {
    channel: String,
    payload: String,
    replies: Vec<oneshot::Sender<Result<()>>>,
}

type Running = Pin<Box<dyn Future<Output = (Vec<oneshot::Sender<Result<()>>>, Result<()>)> + Send>>;

/// Runs until every handle of the backplane is dropped.
pub(crate) async fn run(
    publisher: Publish,
    max_message_size: usize,
    mut requests: mpsc::UnboundedReceiver<Request>,
) {
    let mut queue: VecDeque<Request> = VecDeque::new();
    let mut in_flight: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut open = true;

    while open || !queue.is_empty() || !in_flight.is_empty() {
        // Send what is queued while there is room in the pipeline.
        while in_flight.len() < MAX_IN_FLIGHT && !queue.is_empty() {
            let trip = next_trip(&mut queue, max_message_size);
            in_flight.push(start(&publisher, trip));
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
                reply_all(replies, result);
            }
        }
    }
    tracing::debug!("backplane dropped; redis publisher stopped");
}

/// Takes the next round trip off the queue: as many envelopes of the
/// first one's channel, in order, as fit `max` bytes once packed.
fn next_trip(queue: &mut VecDeque<Request>, max: usize) -> Trip {
    let first = queue.pop_front().expect("the queue is not empty");
    let mut replies = vec![first.reply];
    let mut texts = vec![first.payload];
    let mut total = texts[0].len();
    while let Some(next) = queue.front() {
        let len = codec::batch_len(total + next.payload.len(), texts.len() + 1);
        if next.channel != first.channel || len > max {
            break;
        }
        let next = queue.pop_front().expect("just looked at it");
        total += next.payload.len();
        texts.push(next.payload);
        replies.push(next.reply);
    }
    Trip {
        channel: first.channel,
        payload: pack(texts),
        replies,
    }
}

/// Packs encoded envelopes into one message: the envelope itself when
/// there is one, a batch otherwise (the shared format of
/// [`codec::encode_batch`]).
fn pack(mut envelopes: Vec<String>) -> String {
    match envelopes.len() {
        1 => envelopes.pop().unwrap_or_default(),
        _ => codec::encode_batch(&envelopes),
    }
}

/// Decodes a message into its envelopes: one object, or a batch of them.
pub(crate) fn decode(payload: &[u8]) -> Result<Vec<Envelope>> {
    codec::decode_batch(payload)
}

/// Starts a round trip and sends its command at once.
///
/// Polling once here, before the next trip is built, hands the command to
/// the connection in queue order, so publishes keep their order.
fn start(publisher: &Publish, trip: Trip) -> Running {
    let Trip {
        channel,
        payload,
        replies,
    } = trip;
    tracing::trace!(
        channel,
        envelopes = replies.len(),
        bytes = payload.len(),
        "publishing",
    );
    let publisher = publisher.clone();
    let mut running: Running = Box::pin(async move {
        let result: Result<i64, RedisError> = match publisher {
            Publish::Standalone(mut manager) => {
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(payload.as_bytes())
                    .query_async(&mut manager)
                    .await
            }
            Publish::Cluster(mut connection) => {
                redis::cmd("SPUBLISH")
                    .arg(&channel)
                    .arg(payload.as_bytes())
                    .query_async(&mut connection)
                    .await
            }
        };
        let result = match result {
            Ok(_) => Ok(()),
            Err(error) if is_transient(&error) => {
                Err(BackplaneError::transient("redis publish failed", error))
            }
            Err(error) => Err(BackplaneError::transport(
                "redis refused the publish",
                error,
            )),
        };
        (replies, result)
    });

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

    fn queue(items: &[(&str, &str)]) -> VecDeque<Request> {
        items
            .iter()
            .map(|(channel, payload)| Request {
                channel: (*channel).to_owned(),
                payload: (*payload).to_owned(),
                reply: oneshot::channel().0,
            })
            .collect()
    }

    #[test]
    fn packs_one_channel_in_order_and_keeps_a_lone_envelope_plain() {
        let mut q = queue(&[("a", "{1}"), ("a", "{2}"), ("b", "{3}"), ("a", "{4}")]);
        let trip = next_trip(&mut q, 1000);
        assert_eq!(
            (trip.channel.as_str(), trip.payload.as_str()),
            ("a", "[{1},{2}]")
        );
        assert_eq!(trip.replies.len(), 2);
        assert_eq!(next_trip(&mut q, 1000).payload, "{3}");
        assert_eq!(next_trip(&mut q, 1000).payload, "{4}");
        assert!(q.is_empty());

        // The same envelope twice stays two envelopes.
        let mut q = queue(&[("a", "{1}"), ("a", "{1}")]);
        assert_eq!(next_trip(&mut q, 1000).payload, "[{1},{1}]");
    }

    #[test]
    fn a_batch_never_exceeds_the_limit() {
        let text = "x".repeat(100);
        let items: Vec<(&str, &str)> = (0..50).map(|_| ("a", text.as_str())).collect();
        let mut q = queue(&items);
        let mut envelopes = 0;
        while !q.is_empty() {
            let trip = next_trip(&mut q, 1000);
            assert!(trip.payload.len() <= 1000);
            assert_eq!(
                trip.payload.len(),
                codec::batch_len(100 * trip.replies.len(), trip.replies.len())
            );
            envelopes += trip.replies.len();
        }
        assert_eq!(envelopes, 50);
    }

    #[test]
    fn decodes_objects_and_batches() {
        let envelope = Envelope::new(
            "chat",
            backplane_api::ServerId::random(),
            1,
            backplane_api::Action::AddToGroup {
                connection: "c".into(),
                group: "g".into(),
            },
        );
        let one = codec::encode(&envelope).unwrap();
        assert_eq!(decode(one.as_bytes()).unwrap(), [envelope]);
        let two = pack(vec![one.clone(), one.clone()]);
        assert_eq!(decode(two.as_bytes()).unwrap().len(), 2);
        assert!(decode(b"[1]").is_err());
        assert!(decode(b"[").is_err());
        assert!(decode(b"").is_err());
    }
}
