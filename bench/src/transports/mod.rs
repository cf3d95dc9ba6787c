//! What is measured: for each bus, a raw client and the backplane over it,
//! both wired to a [`Sink`] at the receiving side.

pub(crate) mod memory;
pub(crate) mod postgres;
pub(crate) mod redis;

use std::sync::Arc;

use backplane_api::{Connection, Hub, Target, Transport};
use tokio::task::JoinHandle;

use crate::load::{Publish, Result, Sending, Sink};

/// The hub and method name every backplane run sends on.
const HUB: &str = "bench";
const METHOD: &str = "bench";

/// A connection's outbound queue must hold everything the publisher may
/// run ahead of it, so that no message is dropped at the receiving side.
const QUEUE_CAPACITY: usize = 32_768;

/// Hub sends are what applications do: serialize the arguments, publish
/// the envelope once.
impl<T: Transport + 'static> Publish for Hub<T> {
    fn publish(&self, payload: Arc<str>) -> Sending<'_> {
        Box::pin(async move {
            self.send(Target::All, METHOD, &*payload).await?;
            Ok(())
        })
    }
}

/// Two instances of one hub, each over its own transport: instance A
/// sends, a connection held by instance B receives.
pub(crate) struct Instances<T: Transport> {
    sender: Hub<T>,
    _receiver: Hub<T>,
    _reading: Task,
}

impl<T: Transport + 'static> Instances<T> {
    /// Builds both hubs and starts feeding `sink` with what B's connection
    /// receives.
    pub(crate) async fn start(a: T, b: T, sink: Arc<Sink>) -> Result<Self> {
        let sender = Hub::new(HUB, a).await?;
        let receiver = Hub::builder(HUB, b)
            .queue_capacity(QUEUE_CAPACITY)
            .build()
            .await?;
        let connection = receiver.register("receiver".into(), None)?;
        Ok(Self {
            sender,
            _receiver: receiver,
            _reading: Task(tokio::spawn(read(connection, sink))),
        })
    }
}

impl<T: Transport + 'static> Publish for Instances<T> {
    fn publish(&self, payload: Arc<str>) -> Sending<'_> {
        self.sender.publish(payload)
    }
}

async fn read(mut connection: Connection, sink: Arc<Sink>) {
    while let Some(message) = connection.recv().await {
        sink.record(message.args_json().as_bytes());
    }
}

/// A background task that ends with its owner.
pub(crate) struct Task(pub(crate) JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}
