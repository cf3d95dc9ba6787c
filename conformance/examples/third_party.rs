//! A third party's transport, proven with the conformance suite.
//!
//! `ByteBus` stands for an external bus: it carries envelopes as bytes
//! encoded with `backplane_api::codec`, as a networked transport would, and
//! refuses envelopes over 16 KiB. The bottom of this file is all a transport
//! author adds to their `tests/`: a factory and one `conformance::suite!`.
//!
//! Run the suite with `cargo test -p conformance --example third_party`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backplane_api::{
    BackplaneError, Envelope, Event, EventSender, Publisher, Result, Subscriber, Subscription,
    codec,
};

/// Largest encoded envelope the bus carries.
const MAX_MESSAGE_SIZE: usize = 16 * 1024;

/// The bus every instance's connection reaches: channels of subscribers.
#[derive(Default)]
struct Server {
    channels: Mutex<HashMap<String, Vec<EventSender>>>,
}

/// One instance's connection to the bus.
#[derive(Clone)]
pub struct ByteBus {
    server: Arc<Server>,
}

#[async_trait]
impl Publisher for ByteBus {
    async fn publish(&self, envelope: Arc<Envelope>) -> Result<()> {
        let bytes = codec::encode(&envelope)?;
        if bytes.len() > MAX_MESSAGE_SIZE {
            return Err(BackplaneError::PayloadTooLarge {
                size: bytes.len(),
                max: MAX_MESSAGE_SIZE,
            });
        }
        let mut channels = self.server.channels.lock().unwrap();
        if let Some(subscribers) = channels.get_mut(&envelope.hub) {
            // Each subscriber decodes its own copy of the bytes, as it would
            // after reading them from a socket.
            subscribers.retain(|subscriber| match codec::decode(bytes.as_bytes()) {
                Ok(envelope) => subscriber.send(Event::Envelope(Arc::new(envelope))),
                Err(_) => true,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Subscriber for ByteBus {
    async fn subscribe(&self, hub: &str) -> Result<Subscription> {
        let (sender, subscription) =
            backplane_api::subscription(backplane_api::DEFAULT_SUBSCRIPTION_CAPACITY);
        let mut channels = self.server.channels.lock().unwrap();
        channels.entry(hub.to_owned()).or_default().push(sender);
        Ok(subscription)
    }
}

/// Two instances over `ByteBus`, for `cargo run --example third_party`.
#[tokio::main]
async fn main() -> Result<()> {
    use backplane_api::{Hub, Target};

    let server = Arc::new(Server::default());
    let a = Hub::new(
        "chat",
        ByteBus {
            server: server.clone(),
        },
    )
    .await?;
    let b = Hub::new("chat", ByteBus { server }).await?;
    let mut bob = b.register("bob".into(), None)?;
    a.send(Target::connection("bob"), "say", &"hello from instance a")
        .await?;
    let message = bob.recv().await.expect("bob is registered");
    println!("bob received {}", message.args_json());
    println!("run `cargo test -p conformance --example third_party` to prove ByteBus");
    Ok(())
}

/// What goes in the transport's `tests/conformance.rs`.
#[cfg(test)]
mod conformance_tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use backplane_api::{Result, Transport};
    use conformance::{Capabilities, TransportFactory};

    use super::{ByteBus, MAX_MESSAGE_SIZE, Server};

    /// One `ByteBus` connection per simulated instance, all to one server.
    struct ByteBusFactory {
        server: Arc<Server>,
    }

    #[async_trait]
    impl TransportFactory for ByteBusFactory {
        async fn instance(&self) -> Result<Arc<dyn Transport>> {
            let server = self.server.clone();
            Ok(Arc::new(ByteBus { server }))
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities::new().max_message_size(MAX_MESSAGE_SIZE)
        }
    }

    conformance::suite!(ByteBusFactory {
        server: Arc::default(),
    });
}
