//! An in-process transport for backplane.
//!
//! [`MemoryBackplane`] carries envelopes between hubs in one process. Clone
//! it once per simulated instance: every clone shares one bus. Use it in
//! unit tests, and in applications that run as one process but want the
//! same [`Hub`](backplane_api::Hub) code they would run over PostgreSQL or
//! Redis.
//!
//! # Example
//!
//! ```
//! use backplane_api::{Hub, Target};
//! use backplane_memory::MemoryBackplane;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> backplane_api::Result<()> {
//! let bus = MemoryBackplane::new();
//! let a = Hub::new("chat", bus.clone()).await?;
//! let b = Hub::new("chat", bus.clone()).await?;
//! let mut bob = b.register("bob".into(), None)?;
//!
//! a.send(Target::connection("bob"), "ping", &()).await?;
//! assert_eq!(bob.recv().await.unwrap().method(), "ping");
//! assert_eq!(bus.published(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Behavior
//!
//! Envelopes are passed by reference, not encoded: the bus has no size
//! limit unless one is set with [`MemoryBackplane::with_max_message_size`],
//! in which case envelopes are encoded to measure them. Each subscription
//! receives every envelope of its hub in publish order.
//!
//! # Limitations
//!
//! - The bus lives and dies with the process; it never loses its
//!   connection, so it never reports a gap.
//! - A subscriber that falls more than
//!   [`DEFAULT_SUBSCRIPTION_CAPACITY`]
//!   envelopes behind misses the excess and is told with
//!   [`Event::Lagged`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use backplane_api::{
    BackplaneError, DEFAULT_SUBSCRIPTION_CAPACITY, Envelope, Event, EventSender, Publisher, Result,
    Subscriber, Subscription, codec,
};

/// An in-process bus; clones share it.
#[derive(Clone, Debug, Default)]
pub struct MemoryBackplane {
    bus: Arc<Bus>,
    max_message_size: Option<usize>,
}

#[derive(Debug, Default)]
struct Bus {
    hubs: Mutex<HashMap<String, Vec<(u64, EventSender)>>>,
    next_subscription: AtomicU64,
    published: AtomicU64,
}

impl Bus {
    fn hubs(&self) -> MutexGuard<'_, HashMap<String, Vec<(u64, EventSender)>>> {
        self.hubs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryBackplane {
    /// Creates a new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns a handle on the same bus that refuses envelopes encoding to
    /// more than `max` bytes with
    /// [`BackplaneError::PayloadTooLarge`], as a networked transport would.
    #[must_use]
    pub fn with_max_message_size(&self, max: usize) -> Self {
        Self {
            bus: self.bus.clone(),
            max_message_size: Some(max),
        }
    }

    /// How many envelopes have been published on this bus, by every clone.
    pub fn published(&self) -> u64 {
        self.bus.published.load(Ordering::Relaxed)
    }

    /// How many live subscriptions hub `hub` has on this bus.
    pub fn subscribers(&self, hub: &str) -> usize {
        let hubs = self.bus.hubs();
        hubs.get(hub).map_or(0, |subs| {
            subs.iter().filter(|(_, s)| !s.is_closed()).count()
        })
    }
}

#[async_trait]
impl Publisher for MemoryBackplane {
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
        if let Some(max) = self.max_message_size {
            let size = codec::encode(&envelope)?.len();
            if size > max {
                return Err(BackplaneError::PayloadTooLarge { size, max });
            }
        }

        let mut hubs = self.bus.hubs();
        self.bus.published.fetch_add(1, Ordering::Relaxed);
        if let Some(subscribers) = hubs.get_mut(&envelope.hub) {
            subscribers.retain(|(_, sender)| sender.send(Event::Envelope(envelope.clone())));
        }
        Ok(())
    }
}

#[async_trait]
impl Subscriber for MemoryBackplane {
    async fn subscribe(&self, hub: &str) -> Result<Subscription> {
        let (sender, subscription) = backplane_api::subscription(DEFAULT_SUBSCRIPTION_CAPACITY);
        let id = self.bus.next_subscription.fetch_add(1, Ordering::Relaxed);
        let mut hubs = self.bus.hubs();
        hubs.entry(hub.to_owned()).or_default().push((id, sender));
        let guard = Unsubscribe {
            bus: self.bus.clone(),
            hub: hub.to_owned(),
            id,
        };
        Ok(subscription.guard(guard))
    }
}

/// Removes a subscription from the bus when it is dropped.
struct Unsubscribe {
    bus: Arc<Bus>,
    hub: String,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let mut hubs = self.bus.hubs();
        if let Some(subscribers) = hubs.get_mut(&self.hub) {
            subscribers.retain(|(id, _)| *id != self.id);
            if subscribers.is_empty() {
                hubs.remove(&self.hub);
            }
        }
    }
}
