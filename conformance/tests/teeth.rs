//! The suite has teeth: transports broken on purpose, each wrapping the
//! in-memory bus, must fail it, and the same wrapper without a fault must
//! pass it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use backplane_api::{
    DEFAULT_SUBSCRIPTION_CAPACITY, Envelope, Event, Publisher, Result, Subscriber, Subscription,
    Transport, subscription,
};
use backplane_memory::MemoryBackplane;
use conformance::{Capabilities, Outcome, Scenario, TransportFactory};

/// What a broken transport gets wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing: the wrapper alone must pass every scenario.
    None,
    /// Every tenth publish of an instance returns `Ok` but goes nowhere.
    DropEveryTenth,
    /// Consecutive publishes of an instance go out swapped in pairs; a lone
    /// one goes out a moment later.
    Reorder,
    /// Every envelope is published twice.
    Duplicate,
    /// Channel names are lower-cased and cut to 24 bytes, so hubs whose
    /// names differ only in case or far into the name share a channel; the
    /// subscription labels what it hears with its own hub's name.
    LeakHubs,
}

const MAX_MESSAGE_SIZE: usize = 8000;

struct Broken {
    bus: MemoryBackplane,
    fault: Fault,
    published: AtomicU64,
    held: Arc<Mutex<Option<Arc<Envelope>>>>,
}

fn channel(hub: &str) -> String {
    hub.to_lowercase().chars().take(24).collect()
}

#[async_trait]
impl Publisher for Broken {
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
        let n = self.published.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::None => self.bus.publish(envelope).await,
            Fault::DropEveryTenth if n % 10 == 9 => Ok(()),
            Fault::DropEveryTenth => self.bus.publish(envelope).await,
            Fault::Duplicate => {
                self.bus.publish(envelope.clone()).await?;
                self.bus.publish(envelope).await
            }
            Fault::Reorder => {
                let previous = self.held.lock().unwrap().take();
                match previous {
                    Some(previous) => {
                        self.bus.publish(envelope).await?;
                        self.bus.publish(previous).await
                    }
                    None => {
                        *self.held.lock().unwrap() = Some(envelope);
                        let (bus, held) = (self.bus.clone(), self.held.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let lone = held.lock().unwrap().take();
                            if let Some(lone) = lone {
                                let _ = bus.publish(lone).await;
                            }
                        });
                        Ok(())
                    }
                }
            }
            Fault::LeakHubs => {
                let mut envelope = (*envelope).clone();
                envelope.hub = channel(&envelope.hub);
                self.bus.publish(Arc::new(envelope)).await
            }
        }
    }
}

#[async_trait]
impl Subscriber for Broken {
    async fn subscribe(&self, hub: &str) -> Result<Subscription> {
        if self.fault != Fault::LeakHubs {
            return self.bus.subscribe(hub).await;
        }
        let mut shared = self.bus.subscribe(&channel(hub)).await?;
        let (sender, subscription) = subscription(DEFAULT_SUBSCRIPTION_CAPACITY);
        let hub = hub.to_owned();
        tokio::spawn(async move {
            while let Some(event) = shared.recv().await {
                let event = match event {
                    Event::Envelope(envelope) => {
                        let mut envelope = (*envelope).clone();
                        envelope.hub = hub.clone();
                        Event::Envelope(Arc::new(envelope))
                    }
                    other => other,
                };
                if !sender.send(event) {
                    break;
                }
            }
        });
        Ok(subscription)
    }
}

struct BrokenFactory {
    bus: MemoryBackplane,
    fault: Fault,
}

#[async_trait]
impl TransportFactory for BrokenFactory {
    async fn instance(&self) -> Result<Arc<dyn Transport>> {
        Ok(Arc::new(Broken {
            bus: self.bus.clone(),
            fault: self.fault,
            published: AtomicU64::new(0),
            held: Arc::default(),
        }))
    }

    fn capabilities(&self) -> Capabilities {
        // A short timeout: the broken transports lose messages, and each
        // loss costs one timeout to report.
        Capabilities::new()
            .max_message_size(MAX_MESSAGE_SIZE)
            .size_boundary(1000)
            .delivery_timeout(Duration::from_secs(2))
    }
}

/// Runs the whole suite over a transport with `fault`; returns the names
/// of the scenarios that failed.
async fn failed_scenarios(fault: Fault) -> Vec<Scenario> {
    let bus = MemoryBackplane::new().with_max_message_size(MAX_MESSAGE_SIZE);
    let factory = BrokenFactory { bus, fault };
    let mut failed = Vec::new();
    for (scenario, result) in conformance::run_all(&factory).await {
        match result {
            Ok(Outcome::Passed) => {}
            Ok(other) => panic!("{scenario} did not run: {other:?}"),
            Err(failure) => {
                eprintln!("{fault:?}: {failure}");
                failed.push(scenario);
            }
        }
    }
    failed
}

/// Asserts that the suite fails over `fault`, in at least `expected`.
async fn assert_caught(fault: Fault, expected: &[Scenario]) {
    let failed = failed_scenarios(fault).await;
    for scenario in expected {
        assert!(
            failed.contains(scenario),
            "{scenario} passed over a transport with fault {fault:?}; failed: {failed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapper_without_fault_passes_every_scenario() {
    assert_eq!(failed_scenarios(Fault::None).await, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_tenth_envelope_fails() {
    let expected = [Scenario::PerPublisherOrder, Scenario::ConcurrentPublishers];
    assert_caught(Fault::DropEveryTenth, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordering_fails() {
    assert_caught(Fault::Reorder, &[Scenario::PerPublisherOrder]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivering_twice_fails() {
    let expected = [Scenario::RoutingAll, Scenario::NoEchoTwice];
    assert_caught(Fault::Duplicate, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaking_hubs_into_each_other_fails() {
    assert_caught(Fault::LeakHubs, &[Scenario::HubIsolation]).await;
}
