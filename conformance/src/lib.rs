//! The routing suite every backplane transport must pass, and fault tools
//! for transports' own tests.
//!
//! A transport is trusted when instances built over it route exactly as
//! they do over `backplane-memory`: every connection selected by a send
//! receives it once, wherever it is held, and nobody else receives
//! anything. This crate checks that with [`Scenario`]s: each builds
//! several [`Hub`](backplane_api::Hub)s, one per simulated instance, over
//! fresh transports from a [`TransportFactory`], attaches connections,
//! sends, and asserts who received what. [`suite!`] turns every scenario
//! into a test of its own, named after it.
//!
//! # Example
//!
//! A third party's transport, proven from its own `tests/conformance.rs`
//! (this one wraps the in-memory bus to stay short; `examples/third_party.rs`
//! is a complete transport of its own):
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use backplane_api::{Envelope, Publisher, Result, Subscriber, Subscription, Transport};
//! use backplane_memory::MemoryBackplane;
//! use conformance::{Capabilities, Scenario, TransportFactory};
//!
//! /// The transport under test.
//! #[derive(Clone)]
//! struct MyBus(MemoryBackplane);
//!
//! #[async_trait]
//! impl Publisher for MyBus {
//!     async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
//!         self.0.publish(envelope).await
//!     }
//! }
//!
//! #[async_trait]
//! impl Subscriber for MyBus {
//!     async fn subscribe(&self, hub: &str) -> Result<Subscription> {
//!         self.0.subscribe(hub).await
//!     }
//! }
//!
//! /// Makes one connected transport per simulated instance, all on one bus.
//! struct MyFactory(MemoryBackplane);
//!
//! #[async_trait]
//! impl TransportFactory for MyFactory {
//!     async fn instance(&self) -> Result<Arc<dyn Transport>> {
//!         Ok(Arc::new(MyBus(self.0.with_max_message_size(64 * 1024))))
//!     }
//!
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::new()
//!             .max_message_size(64 * 1024)
//!             .skip(Scenario::FullQueueDoesNotBlockGroup, "shown as an example")
//!     }
//! }
//!
//! // One #[test] per scenario: `routing_all`, `hub_isolation`, ...
//! conformance::suite!(MyFactory(MemoryBackplane::new()));
//! # fn main() {}
//! ```
//!
//! `cargo test` then lists every scenario by name; the skipped one passes
//! and prints `conformance: skipped: full_queue_does_not_block_group:
//! shown as an example` on standard error.
//!
//! # Behavior
//!
//! - Each scenario uses hub names with a random suffix, so scenarios run in
//!   parallel, and other test runs may share the bus.
//! - "Nothing else arrived" is proven with a barrier, not a sleep: after
//!   the sends under test, every instance sends a marker to every
//!   connection; since one publisher's envelopes arrive in order, whatever
//!   a connection has not received before all markers will not come. At
//!   the end, every instance's [`HubStats`](backplane_api::HubStats) must
//!   show each envelope of the others received once and each of its own
//!   echoed once.
//! - Waits are bounded by [`Capabilities::delivery_timeout`], ten seconds
//!   by default, so a lost message fails the test rather than hanging it.
//!   No assertion measures speed.
//! - [`Scenario::run`] and [`run_all`] give results as values, for tests
//!   that expect a broken transport to fail.
//!
//! # Test servers
//!
//! [`servers`] gives the URLs of the PostgreSQL and Redis servers tests
//! run against: from `BACKPLANE_POSTGRES_URL` / `BACKPLANE_REDIS_URL`
//! (`scripts/test` in this repository starts private servers and sets
//! them), or, with the `testcontainers` feature, from containers started
//! in Docker.
//!
//! # Fault tools
//!
//! [`proxy::TcpProxy`] sits between a transport and its server on
//! loopback and can forward, stall without closing, or cut every
//! connection, for tests of reconnection and health checks.
//!
//! # Limitations
//!
//! - The suite checks routing while the bus is connected; reconnection
//!   and loss of the bus are each transport's own tests, with
//!   [`proxy::TcpProxy`].
//! - Delivery is at most once by design, so the suite cannot tell a
//!   transport that drops an envelope during a reconnect from one that is
//!   correct; it only runs on a healthy bus.
//! - A scenario takes at least the delivery timeout to report a lost
//!   message.
//! - The `testcontainers` feature needs a Docker engine; it compiles
//!   everywhere but cannot run where there is none.

mod factory;
mod fixture;
pub mod proxy;
mod scenario;
mod scenarios;
pub mod servers;

pub use factory::{
    Capabilities, DEFAULT_DELIVERY_TIMEOUT, FnFactory, TransportFactory, factory_fn,
};
#[doc(hidden)]
pub use scenario::__run_test;
pub use scenario::{Outcome, Scenario, ScenarioFailure, run_all};
