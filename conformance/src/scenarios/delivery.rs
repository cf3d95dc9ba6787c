//! Delivery across instances: reach, order, the sender's own connections,
//! full queues and concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backplane_api::{
    BackplaneError, Connection, Envelope, ErrorChain, Hub, Publisher, Subscriber, Subscription,
    Target, Transport,
};

use super::{groups, ids, users};
use crate::TransportFactory;
use crate::fixture::{
    Failure, Instance, QUEUE_CAPACITY, Room, SAY, ensure, fail, hub_name, instance, render,
};

pub(crate) async fn send_to_all_reaches_every_instance(
    factory: &dyn TransportFactory,
) -> Result<(), Failure> {
    let mut room = Room::new(factory, "reach", 3).await?;
    for instance in 0..3 {
        room.connect(instance, &format!("a{instance}"), None, &[])
            .await?;
        room.connect(instance, &format!("b{instance}"), None, &[])
            .await?;
    }
    let gone = room.connect(1, "gone", Some("gone-user"), &["g"]).await?;
    let dropped = room.connect(2, "dropped", None, &["g"]).await?;
    room.send(0, Target::All, "before-disconnect").await?;
    room.verify().await?;

    // One connection unregistered, one whose queue was dropped, both on
    // instances other than the sender's.
    let mut gone_queue = room.unregister(gone)?;
    room.drop_connection(dropped)?;
    ensure!(
        !room.hub(1).is_local(&"gone".into()) && room.hub(2).connection_count() == 2,
        "disconnected connections are still registered"
    );

    for from in 0..3 {
        room.send(from, Target::All, &format!("all@{from}")).await?;
    }
    room.send(0, Target::connection("gone"), "to-gone").await?;
    room.send(0, Target::user("gone-user"), "to-gone-user")
        .await?;
    room.send(0, Target::group("g"), "to-g").await?;
    room.verify().await?;
    if let Some(message) = gone_queue.try_recv() {
        return Err(fail!(
            "connection gone on instance 1 received {} after it was unregistered",
            render(&message)
        ));
    }
    room.finish().await
}

pub(crate) async fn send_to_remote_connection_group_and_user(
    factory: &dyn TransportFactory,
) -> Result<(), Failure> {
    let mut room = Room::new(factory, "remote", 3).await?;
    room.connect(0, "sender-side", Some("zed"), &["other"])
        .await?;
    room.connect(1, "b", Some("dana"), &["g"]).await?;
    room.connect(2, "c", Some("dana"), &[]).await?;
    room.connect(2, "d", None, &["g"]).await?;

    // Instance 0 holds none of what it sends to.
    room.send(0, Target::connection("b"), "to-connection-b")
        .await?;
    room.send(0, Target::connection("d"), "to-connection-d")
        .await?;
    room.send(0, Target::group("g"), "to-group-g").await?;
    room.send(0, Target::user("dana"), "to-user-dana").await?;
    room.finish().await
}

/// A transport that counts what it publishes.
struct Counting {
    inner: Arc<dyn Transport>,
    published: Arc<AtomicU64>,
}

#[async_trait]
impl Publisher for Counting {
    async fn publish(&self, envelope: Arc<Envelope>) -> backplane_api::Result<()> {
        self.published.fetch_add(1, Ordering::SeqCst);
        self.inner.publish(envelope).await
    }
}

#[async_trait]
impl Subscriber for Counting {
    async fn subscribe(&self, hub: &str) -> backplane_api::Result<Subscription> {
        self.inner.subscribe(hub).await
    }
}

pub(crate) async fn local_send_skips_bus(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let name = hub_name("local");
    let mut room = Room::empty(name.clone(), &factory.capabilities());

    let published = Arc::new(AtomicU64::new(0));
    let inner = factory
        .instance()
        .await
        .map_err(|e| fail!("the factory could not make a transport: {}", ErrorChain(&e)))?;
    let counting: Arc<dyn Transport> = Arc::new(Counting {
        inner,
        published: published.clone(),
    });
    let hub = Hub::builder(name, counting)
        .queue_capacity(QUEUE_CAPACITY)
        .build()
        .await?;
    room.add_hub(hub);
    room.add_instance(factory, QUEUE_CAPACITY).await?;

    let a = room.connect(0, "a", None, &[]).await?;
    room.connect(0, "b", None, &[]).await?;
    room.connect(1, "c", None, &[]).await?;

    room.send(0, Target::connection("a"), "to-a").await?;
    room.send(0, Target::connections(ids(&["a", "b"])), "to-a-b")
        .await?;
    room.hub(0).add_to_group(&"a".into(), "local").await?;
    room.model_join(a, "local");
    room.hub(0).remove_from_group(&"b".into(), "local").await?;
    let count = published.load(Ordering::SeqCst);
    ensure!(
        count == 0,
        "sends to and membership changes of locally held connections published \
         {count} envelopes; they must publish none"
    );

    // The counter itself works: a send to a connection held elsewhere is
    // published once.
    room.send(0, Target::connection("c"), "to-c").await?;
    let count = published.load(Ordering::SeqCst);
    ensure!(
        count == 1,
        "one send to a remote connection published {count} envelopes, not 1"
    );
    room.finish().await
}

pub(crate) async fn full_queue_does_not_block_group(
    factory: &dyn TransportFactory,
) -> Result<(), Failure> {
    const SLOW_QUEUE: usize = 4;
    const FROM_BUS: usize = 20;
    const FROM_LOCAL: usize = 5;

    let timeout = factory.capabilities().delivery_timeout;
    let name = hub_name("full");
    let hubs = [
        instance(factory, &name, QUEUE_CAPACITY).await?,
        instance(factory, &name, SLOW_QUEUE).await?,
        instance(factory, &name, QUEUE_CAPACITY).await?,
    ];

    // Instance 1 holds a connection that never reads next to one that
    // does; instances 0 and 2 hold one reader each. All are in group g.
    let mut slow = hubs[1].register("slow".into(), None)?;
    let mut readers = Vec::new();
    for (instance, hub) in hubs.iter().enumerate() {
        let id = format!("reader{instance}");
        readers.push((instance, hub.register(id.as_str().into(), None)?));
    }
    for (hub, id) in [(1, "slow"), (0, "reader0"), (1, "reader1"), (2, "reader2")] {
        hubs[hub].add_to_group(&id.into(), "g").await?;
    }

    // Readers read in step with the sends, so their small queues never
    // fill; the slow connection's queue fills after four messages.
    let mut sent = Vec::new();
    for n in 0..FROM_BUS + FROM_LOCAL {
        let (from, tag) = match n < FROM_BUS {
            true => (0, format!("bus-{n}")),
            false => (1, format!("local-{n}")),
        };
        hubs[from].send(Target::group("g"), SAY, &tag).await?;
        for (instance, reader) in &mut readers {
            let got = receive(reader, timeout).await.map_err(|e| {
                fail!("reader{instance} on instance {instance}, waiting for {tag}: {e}")
            })?;
            ensure!(
                got == tag,
                "reader{instance} on instance {instance} received {got} instead of {tag}"
            );
        }
        sent.push(tag);
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    for (instance, reader) in &mut readers {
        if let Some(message) = reader.try_recv() {
            let message = render(&message);
            return Err(fail!(
                "reader{instance} on instance {instance} received an extra {message}"
            ));
        }
    }
    let mut queued = Vec::new();
    while let Some(message) = slow.try_recv() {
        queued.push(render(&message));
    }
    ensure!(
        queued == sent[..SLOW_QUEUE],
        "the slow connection's queue holds {queued:?}, not the first {SLOW_QUEUE} sends"
    );
    let missed = (FROM_BUS + FROM_LOCAL - SLOW_QUEUE) as u64;
    let counted = (slow.dropped(), hubs[1].stats().dropped);
    ensure!(
        counted == (missed, missed),
        "the slow connection missed {missed} messages, but Connection::dropped \
         and HubStats::dropped count {counted:?}"
    );
    Ok(())
}

/// Receives one `say` tag within `timeout`.
async fn receive(connection: &mut Connection, timeout: Duration) -> Result<String, String> {
    match tokio::time::timeout(timeout, connection.recv()).await {
        Ok(Some(message)) => Ok(render(&message)),
        Ok(None) => Err("queue closed".to_owned()),
        Err(_) => Err(format!("nothing arrived within {timeout:?}")),
    }
}

/// Sends `count` messages tagged `{prefix}-{n}` to `target`, one after the
/// other.
async fn send_numbered(
    hub: Instance,
    target: Target,
    prefix: String,
    count: usize,
) -> Result<(), BackplaneError> {
    for n in 0..count {
        let tag = format!("{prefix}-{n:04}");
        hub.send(target.clone(), SAY, &tag).await?;
    }
    Ok(())
}

/// Checks that the messages of `received` tagged `{prefix}-…` are exactly
/// `{prefix}-0000` to `{prefix}-{count - 1}`, in order.
fn check_order(
    label: &str,
    received: &[String],
    prefix: &str,
    count: usize,
) -> Result<(), Failure> {
    let start = format!("{prefix}-");
    let sequence: Vec<_> = received.iter().filter(|t| t.starts_with(&start)).collect();
    for (n, tag) in sequence.iter().enumerate() {
        let expected = format!("{prefix}-{n:04}");
        ensure!(
            **tag == expected,
            "{label}: message {n} from publisher {prefix} arrived as {tag}: \
             publish order was not kept"
        );
    }
    ensure!(
        sequence.len() == count,
        "{label}: received {} messages from publisher {prefix}, not {count}",
        sequence.len()
    );
    Ok(())
}

pub(crate) async fn per_publisher_order(factory: &dyn TransportFactory) -> Result<(), Failure> {
    const SENDS: usize = 1000;

    let mut room = Room::new(factory, "order", 3).await?;
    let mut clients = Vec::new();
    for instance in 0..3 {
        clients.push(
            room.connect(instance, &format!("c{instance}"), None, &[])
                .await?,
        );
    }

    // Instances 0 and 1 publish at the same time; every connection must
    // see each one's messages in the order it sent them.
    let (first, second) = tokio::join!(
        send_numbered(room.hub(0).clone(), Target::All, "p0".into(), SENDS),
        send_numbered(room.hub(1).clone(), Target::All, "p1".into(), SENDS),
    );
    first?;
    second?;
    for &client in &clients {
        for n in 0..SENDS {
            room.expect(client, &format!("p0-{n:04}"));
            room.expect(client, &format!("p1-{n:04}"));
        }
    }
    let received = room.verify().await?;
    for &client in &clients {
        let label = format!("connection c{0} on instance {0}", room.instance_of(client));
        for prefix in ["p0", "p1"] {
            check_order(&label, &received[client], prefix, SENDS)?;
        }
    }
    room.finish().await
}

pub(crate) async fn no_echo_twice(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let mut room = Room::new(factory, "echo", 2).await?;
    room.connect(0, "a", Some("u"), &["g"]).await?;
    room.connect(0, "b", None, &["g", "h"]).await?;
    room.connect(1, "c", Some("u"), &["g"]).await?;

    // Every routing that selects the sender's own connections as well as
    // a remote one: the local copy is delivered at once, the bus echo must
    // be skipped.
    let targets = [
        Target::All,
        Target::all_except(ids(&["c"])),
        Target::connections(ids(&["a", "c"])),
        Target::group("g"),
        Target::group_except("g", ids(&["b"])),
        Target::groups(groups(&["g", "h", "g"])),
        Target::user("u"),
        Target::users(users(&["u", "u"])),
    ];
    for (n, target) in targets.into_iter().enumerate() {
        for from in 0..2 {
            room.send(from, target.clone(), &format!("echo#{n}@{from}"))
                .await?;
        }
    }
    // `finish` also checks that each instance skipped exactly one echo per
    // envelope it published.
    room.finish().await
}

pub(crate) async fn concurrent_publishers(factory: &dyn TransportFactory) -> Result<(), Failure> {
    const INSTANCES: usize = 3;
    const TASKS: usize = 4;
    const SENDS: usize = 50;

    let mut room = Room::new(factory, "concurrent", INSTANCES).await?;
    let mut in_group = Vec::new();
    let mut outside = Vec::new();
    for instance in 0..INSTANCES {
        in_group.push(
            room.connect(instance, &format!("a{instance}"), None, &["half"])
                .await?,
        );
        outside.push(
            room.connect(instance, &format!("b{instance}"), None, &[])
                .await?,
        );
    }

    // Every instance runs several publishing tasks at once; even tasks send
    // to everyone, odd ones to group "half".
    let mut tasks = tokio::task::JoinSet::new();
    let mut publishers = Vec::new();
    for instance in 0..INSTANCES {
        for task in 0..TASKS {
            let prefix = format!("i{instance}t{task}");
            let target = match task % 2 {
                0 => Target::All,
                _ => Target::group("half"),
            };
            let hub = room.hub(instance).clone();
            tasks.spawn(send_numbered(hub, target.clone(), prefix.clone(), SENDS));
            publishers.push((prefix, target));
        }
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| fail!("a publishing task panicked: {e}"))??;
    }

    for (prefix, target) in &publishers {
        let clients = match target {
            Target::All => [&in_group[..], &outside[..]].concat(),
            _ => in_group.clone(),
        };
        for client in clients {
            for n in 0..SENDS {
                room.expect(client, &format!("{prefix}-{n:04}"));
            }
        }
    }
    let received = room.verify().await?;
    for &client in in_group.iter().chain(&outside) {
        let label = format!(
            "connection {} on instance {}",
            room.id(client),
            room.instance_of(client)
        );
        for (prefix, target) in &publishers {
            if matches!(target, Target::All) || in_group.contains(&client) {
                check_order(&label, &received[client], prefix, SENDS)?;
            }
        }
    }
    room.finish().await
}
