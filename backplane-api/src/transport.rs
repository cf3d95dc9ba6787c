//! The traits a transport implements, and the subscription it returns.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{Envelope, Result};

/// How many events a subscription buffers by default before it reports
/// [`Event::Lagged`].
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 65_536;

/// Publishes envelopes on the bus.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes `envelope` on the channel of hub `envelope.hub`.
    ///
    /// Returns once the bus has accepted the envelope; every instance
    /// subscribed to the hub then receives it once (the publishing instance
    /// included: the hub skips its own echo).
    ///
    /// # Errors
    ///
    /// - [`BackplaneError::PayloadTooLarge`](crate::BackplaneError::PayloadTooLarge)
    ///   if the envelope is larger than the transport can carry; nothing was
    ///   sent;
    /// - [`BackplaneError::NotConnected`](crate::BackplaneError::NotConnected)
    ///   or a transient
    ///   [`BackplaneError::Transport`](crate::BackplaneError::Transport) if the
    ///   bus could not be reached. Whether the envelope went out is then
    ///   unknown; transports never retry a publish on their own, so a retry
    ///   by the caller may deliver it twice.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped, the envelope may or may
    /// not have been published.
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()>;
}

/// Subscribes to hubs on the bus.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Subscribes to hub `hub`; returns once the bus has confirmed the
    /// subscription, so that an envelope published after this returns is
    /// received.
    ///
    /// Dropping the [`Subscription`] ends it. A transport keeps every live
    /// subscription across reconnects and reports each gap with
    /// [`Event::ConnectionLost`] and [`Event::Resubscribed`].
    ///
    /// # Errors
    ///
    /// Returns a transport error if the bus could not be reached or refused
    /// the subscription.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call leaves no subscription behind (at worst
    /// the transport keeps listening on a channel nobody reads until its
    /// next reconnect or subscription change).
    async fn subscribe(&self, hub: &str) -> Result<Subscription>;
}

/// A transport: both [`Publisher`] and [`Subscriber`].
///
/// Implemented for every type that implements both; `Arc<dyn Transport>`
/// is a transport too, so scenarios can be written once for all of them.
pub trait Transport: Publisher + Subscriber {}

impl<T: Publisher + Subscriber + ?Sized> Transport for T {}

#[async_trait]
impl<T: Publisher + ?Sized> Publisher for Arc<T> {
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
        (**self).publish(envelope).await
    }
}

#[async_trait]
impl<T: Subscriber + ?Sized> Subscriber for Arc<T> {
    async fn subscribe(&self, hub: &str) -> Result<Subscription> {
        (**self).subscribe(hub).await
    }
}

/// What a subscription yields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// An envelope published on the hub (possibly by this instance).
    Envelope(Arc<Envelope>),
    /// The transport lost its connection to the bus; envelopes published
    /// until [`Event::Resubscribed`] may never arrive.
    ConnectionLost {
        /// Why, in words safe to log (no secrets).
        reason: String,
    },
    /// The transport reconnected and the subscription is live again.
    Resubscribed {
        /// How long the subscription was down.
        downtime: Duration,
    },
    /// The subscriber read too slowly and this many envelopes were
    /// discarded.
    Lagged {
        /// Number of events discarded.
        missed: u64,
    },
}

/// Creates a subscription and the sender a transport feeds it with.
///
/// The sender never blocks: when `capacity` events are waiting, further
/// events are counted and discarded, and the subscription yields one
/// [`Event::Lagged`] with that count once it has caught up. A transport's
/// read loop is therefore never slowed by a slow reader.
pub fn subscription(capacity: usize) -> (EventSender, Subscription) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let missed = Arc::new(AtomicU64::new(0));
    let sender = EventSender {
        sender,
        missed: missed.clone(),
    };
    let subscription = Subscription {
        receiver,
        missed,
        _guard: None,
    };
    (sender, subscription)
}

/// The transport's side of a [`Subscription`].
#[derive(Clone, Debug)]
pub struct EventSender {
    sender: mpsc::Sender<Event>,
    missed: Arc<AtomicU64>,
}

impl EventSender {
    /// Queues an event without waiting.
    ///
    /// Returns `false` if the subscription was dropped; the transport should
    /// then forget this sender. A full queue counts the event as missed and
    /// still returns `true`.
    pub fn send(&self, event: Event) -> bool {
        match self.sender.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.missed.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the subscription was dropped.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// A stream of [`Event`]s for one hub.
///
/// Ends (yields `None`) when the transport is closed.
pub struct Subscription {
    receiver: mpsc::Receiver<Event>,
    missed: Arc<AtomicU64>,
    _guard: Option<Box<dyn Send + Sync>>,
}

impl Subscription {
    /// Attaches a value that is dropped with the subscription; transports
    /// use it to stop listening when the last subscription of a hub ends.
    pub fn guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Receives the next event.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call loses no event.
    pub async fn recv(&mut self) -> Option<Event> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(event)),

            // The queue is drained: report what was discarded while it was
            // full before waiting (or ending).
            other => match self.missed.swap(0, Ordering::Relaxed) {
                0 => other,
                missed => Poll::Ready(Some(Event::Lagged { missed })),
            },
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.get_mut().poll_event(cx)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_reports_lag_after_draining() {
        let (sender, mut subscription) = subscription(2);
        for _ in 0..5 {
            assert!(sender.send(Event::Resubscribed {
                downtime: Duration::ZERO
            }));
        }
        assert!(matches!(
            subscription.recv().await,
            Some(Event::Resubscribed { .. })
        ));
        assert!(matches!(
            subscription.recv().await,
            Some(Event::Resubscribed { .. })
        ));
        assert!(matches!(
            subscription.recv().await,
            Some(Event::Lagged { missed: 3 })
        ));
        drop(sender);
        assert!(subscription.recv().await.is_none());
    }

    #[tokio::test]
    async fn sender_sees_dropped_subscription() {
        let (sender, subscription) = subscription(2);
        drop(subscription);
        assert!(sender.is_closed());
        assert!(!sender.send(Event::Lagged { missed: 1 }));
    }
}
