//! The core of backplane: envelopes, routing targets, the wire codec, the
//! transport traits and the [`Hub`].
//!
//! A real-time server that runs as several instances keeps each client
//! connection on one instance. A backplane is the bus between instances:
//! a send on one instance is published once, every instance receives it
//! and delivers it to the connections it holds. This crate has no I/O of
//! its own; transports (`backplane-postgres`, `backplane-redis`,
//! `backplane-memory`, or a third party's) carry the envelopes.
//!
//! # Example
//!
//! Two instances over the in-memory transport:
//!
//! ```
//! use backplane_api::{Hub, Target};
//! use backplane_memory::MemoryBackplane;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> backplane_api::Result<()> {
//! let bus = MemoryBackplane::new();
//! let instance_a = Hub::new("chat", bus.clone()).await?;
//! let instance_b = Hub::new("chat", bus.clone()).await?;
//!
//! let mut on_a = instance_a.register("conn-a".into(), Some("ann".into()))?;
//! let mut on_b = instance_b.register("conn-b".into(), None)?;
//!
//! instance_a.send(Target::All, "news", &serde_json::json!({"n": 1})).await?;
//! assert_eq!(on_a.recv().await.unwrap().args_json(), r#"{"n":1}"#);
//! assert_eq!(on_b.recv().await.unwrap().args_json(), r#"{"n":1}"#);
//! # Ok(())
//! # }
//! ```
//!
//! # Behavior
//!
//! - A send is published once, then delivered to the local connections at
//!   once; the bus's echo of it is recognised by its origin and skipped.
//!   A send to connections this instance holds does not touch the bus.
//! - Other instances deliver an envelope to the connections the
//!   [`Target`] selects among those they hold. Selection goes through
//!   indexes by connection, user and group.
//! - Every connection has a bounded outbound queue. A connection whose
//!   queue is full misses the message (counted in [`HubStats::dropped`]
//!   and [`Connection::dropped`], logged at warn); nobody else waits.
//! - Group membership of a connection held by another instance is changed
//!   by a command on the bus, applied by the instance that holds it.
//!
//! # Writing a transport
//!
//! Implement [`Publisher`] and [`Subscriber`]; [`Transport`] follows. Encode
//! envelopes with [`codec::encode`] and decode with [`codec::decode`] so
//! every transport speaks the same format; feed each subscription through
//! the [`EventSender`] from [`subscription`]; skip (and log) what fails to
//! decode. The `conformance` crate checks the result.
//!
//! # Limitations
//!
//! - Delivery is at most once. Envelopes published while an instance is
//!   disconnected from the bus are not replayed to it; the gap is reported
//!   as [`Event::ConnectionLost`] / [`Event::Resubscribed`], counted in
//!   [`HubStats`] and logged.
//! - A message larger than the transport's maximum is refused with
//!   [`BackplaneError::PayloadTooLarge`].
//! - Membership changes for connections held elsewhere are applied
//!   asynchronously: a send from a third instance may overtake them.

pub mod codec;
mod envelope;
mod error;
mod hub;
mod id;
mod index;
mod target;
mod transport;

pub use envelope::{Action, Envelope, FORMAT_VERSION, Message};
pub use error::{BackplaneError, ErrorChain, Result};
pub use hub::{Connection, DEFAULT_QUEUE_CAPACITY, Hub, HubBuilder, HubStats};
pub use id::{ConnectionId, GroupName, ServerId, UserId};
pub use target::Target;
pub use transport::{
    DEFAULT_SUBSCRIPTION_CAPACITY, Event, EventSender, Publisher, Subscriber, Subscription,
    Transport, subscription,
};
