//! The hub's routing, membership and queueing, over three instances that
//! share one in-memory bus.

use std::collections::BTreeMap;
use std::time::Duration;

use backplane_api::{Connection, ConnectionId, GroupName, Hub, Target, UserId};
use backplane_memory::MemoryBackplane;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const BARRIER: &str = "barrier";

/// Three instances, `a`, `b` and `c`, each holding two connections:
///
/// | connection | instance | user | groups     |
/// |------------|----------|------|------------|
/// | a1         | a        | ann  | red        |
/// | a2         | a        | bob  | blue       |
/// | b1         | b        | ann  | red, blue  |
/// | b2         | b        | cat  |            |
/// | c1         | c        | bob  | red        |
/// | c2         | c        |      | blue       |
struct Cluster {
    bus: MemoryBackplane,
    hubs: BTreeMap<&'static str, Hub<MemoryBackplane>>,
    connections: BTreeMap<&'static str, Connection>,
}

impl Cluster {
    async fn new() -> Self {
        let bus = MemoryBackplane::new();
        let mut hubs = BTreeMap::new();
        for name in ["a", "b", "c"] {
            hubs.insert(name, Hub::new("chat", bus.clone()).await.unwrap());
        }
        let mut cluster = Self {
            bus,
            hubs,
            connections: BTreeMap::new(),
        };
        let layout: [(&str, Option<&str>, &[&str]); 6] = [
            ("a1", Some("ann"), &["red"]),
            ("a2", Some("bob"), &["blue"]),
            ("b1", Some("ann"), &["red", "blue"]),
            ("b2", Some("cat"), &[]),
            ("c1", Some("bob"), &["red"]),
            ("c2", None, &["blue"]),
        ];
        for (id, user, groups) in layout {
            let hub = cluster.hub_of(id).clone();
            let connection = hub.register(id.into(), user.map(UserId::from)).unwrap();
            for group in groups {
                hub.add_to_group(&id.into(), *group).await.unwrap();
            }
            cluster.connections.insert(id, connection);
        }
        cluster
    }

    fn hub(&self, name: &str) -> &Hub<MemoryBackplane> {
        &self.hubs[name]
    }

    fn hub_of(&self, connection: &str) -> &Hub<MemoryBackplane> {
        self.hub(&connection[..1])
    }

    /// Sends `target` from instance `from`, then a barrier to everybody, and
    /// returns, per connection, the messages received before the barrier.
    async fn deliveries(&mut self, from: &str, target: Target) -> BTreeMap<&'static str, usize> {
        let hub = self.hub(from).clone();
        hub.send(target, "routed", &"payload").await.unwrap();
        hub.send(Target::All, BARRIER, &()).await.unwrap();

        let mut counts = BTreeMap::new();
        for (id, connection) in &mut self.connections {
            let mut count = 0;
            loop {
                let message = timeout(WAIT, connection.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{id} never got the barrier"))
                    .unwrap_or_else(|| panic!("{id} was closed"));
                if message.method() == BARRIER {
                    break;
                }
                assert_eq!(message.method(), "routed");
                count += 1;
            }
            if count > 0 {
                counts.insert(*id, count);
            }
        }
        counts
    }

    /// Asserts that sending `target` from every instance reaches exactly
    /// `expected`, once each.
    async fn assert_routes(&mut self, target: Target, expected: &[&'static str]) {
        let expected: BTreeMap<_, _> = expected.iter().map(|id| (*id, 1)).collect();
        for from in ["a", "b", "c"] {
            let got = self.deliveries(from, target.clone()).await;
            assert_eq!(got, expected, "{target:?} sent from {from}");
        }
    }
}

fn ids(ids: &[&str]) -> Vec<ConnectionId> {
    ids.iter().map(|id| ConnectionId::from(*id)).collect()
}

fn groups(names: &[&str]) -> Vec<GroupName> {
    names.iter().map(|name| GroupName::from(*name)).collect()
}

#[tokio::test]
async fn all_reaches_every_connection_once() {
    let mut cluster = Cluster::new().await;
    cluster
        .assert_routes(Target::All, &["a1", "a2", "b1", "b2", "c1", "c2"])
        .await;
}

#[tokio::test]
async fn all_except_skips_the_excluded() {
    let mut cluster = Cluster::new().await;
    let target = Target::all_except(ids(&["a2", "b1", "nobody"]));
    cluster
        .assert_routes(target, &["a1", "b2", "c1", "c2"])
        .await;
}

#[tokio::test]
async fn connection_reaches_only_that_connection() {
    let mut cluster = Cluster::new().await;
    for id in ["a1", "b2", "c2"] {
        cluster.assert_routes(Target::connection(id), &[id]).await;
    }
    cluster
        .assert_routes(Target::connection("nobody"), &[])
        .await;
}

#[tokio::test]
async fn connections_reach_each_listed_connection_once() {
    let mut cluster = Cluster::new().await;
    let target = Target::connections(ids(&["a1", "c2", "a1", "b2", "nobody"]));
    cluster.assert_routes(target, &["a1", "b2", "c2"]).await;
}

#[tokio::test]
async fn group_reaches_its_members_on_every_instance() {
    let mut cluster = Cluster::new().await;
    cluster
        .assert_routes(Target::group("red"), &["a1", "b1", "c1"])
        .await;
    cluster
        .assert_routes(Target::group("blue"), &["a2", "b1", "c2"])
        .await;
    cluster.assert_routes(Target::group("green"), &[]).await;
}

#[tokio::test]
async fn group_except_skips_the_excluded_members() {
    let mut cluster = Cluster::new().await;
    let target = Target::group_except("red", ids(&["b1", "a2"]));
    cluster.assert_routes(target, &["a1", "c1"]).await;
}

#[tokio::test]
async fn groups_reach_members_of_several_groups_once() {
    let mut cluster = Cluster::new().await;
    // b1 is in both groups and must still receive once.
    let target = Target::groups(groups(&["red", "blue", "green"]));
    cluster
        .assert_routes(target, &["a1", "a2", "b1", "c1", "c2"])
        .await;
}

#[tokio::test]
async fn user_reaches_all_connections_of_that_user() {
    let mut cluster = Cluster::new().await;
    cluster
        .assert_routes(Target::user("ann"), &["a1", "b1"])
        .await;
    cluster.assert_routes(Target::user("cat"), &["b2"]).await;
    cluster.assert_routes(Target::user("dan"), &[]).await;
}

#[tokio::test]
async fn users_reach_connections_of_several_users_once() {
    let mut cluster = Cluster::new().await;
    let users = ["ann", "bob", "ann"].map(UserId::from);
    cluster
        .assert_routes(Target::users(users), &["a1", "a2", "b1", "c1"])
        .await;
}

#[tokio::test]
async fn disconnected_connection_leaves_its_groups_and_user() {
    let mut cluster = Cluster::new().await;
    assert!(cluster.hub("b").unregister(&"b1".into()));
    let closed = cluster.connections.remove("b1").unwrap();
    assert_eq!(cluster.hub("b").groups_of(&"b1".into()), None);
    assert_eq!(cluster.hub("b").local_group_len(&"red".into()), 0);

    cluster.assert_routes(Target::user("ann"), &["a1"]).await;
    cluster
        .assert_routes(Target::group("blue"), &["a2", "c2"])
        .await;
    cluster
        .assert_routes(Target::All, &["a1", "a2", "b2", "c1", "c2"])
        .await;

    // Its queue ends instead of receiving anything more.
    let mut closed = closed;
    assert!(closed.recv().await.is_none());
}

#[tokio::test]
async fn dropping_the_connection_unregisters_it() {
    let mut cluster = Cluster::new().await;
    drop(cluster.connections.remove("c1"));
    assert!(!cluster.hub("c").is_local(&"c1".into()));
    cluster
        .assert_routes(Target::group("red"), &["a1", "b1"])
        .await;
}

#[tokio::test]
async fn adding_to_a_group_twice_delivers_once() {
    let mut cluster = Cluster::new().await;
    let hub = cluster.hub("b").clone();
    hub.add_to_group(&"b1".into(), "red").await.unwrap();
    hub.add_to_group(&"b1".into(), "red").await.unwrap();
    cluster
        .assert_routes(Target::group("red"), &["a1", "b1", "c1"])
        .await;
}

#[tokio::test]
async fn removing_a_non_member_is_a_no_op_locally_and_remotely() {
    let mut cluster = Cluster::new().await;
    let published = cluster.bus.published();
    // b2 is in no group, held by b: a local no-op publishes nothing.
    cluster
        .hub("b")
        .remove_from_group(&"b2".into(), "red")
        .await
        .unwrap();
    assert_eq!(cluster.bus.published(), published);
    // The same from another instance crosses the bus and changes nothing.
    cluster
        .hub("a")
        .remove_from_group(&"b2".into(), "red")
        .await
        .unwrap();
    cluster
        .hub("c")
        .remove_from_group(&"nobody".into(), "red")
        .await
        .unwrap();
    cluster
        .assert_routes(Target::group("red"), &["a1", "b1", "c1"])
        .await;
    assert_eq!(cluster.hub("b").groups_of(&"b2".into()), Some(vec![]));
}

#[tokio::test]
async fn group_membership_of_a_remote_connection() {
    let mut cluster = Cluster::new().await;

    // a adds c2 (held by c) to red, twice; c applies it.
    let a = cluster.hub("a").clone();
    a.add_to_group(&"c2".into(), "red").await.unwrap();
    a.add_to_group(&"c2".into(), "red").await.unwrap();
    wait_for(|| cluster.hub("c").groups_of(&"c2".into()) == Some(groups(&["blue", "red"]))).await;

    // b sends to red: c2 receives once.
    cluster
        .assert_routes(Target::group("red"), &["a1", "b1", "c1", "c2"])
        .await;

    // a removes c2 from red again; red no longer reaches it.
    a.remove_from_group(&"c2".into(), "red").await.unwrap();
    wait_for(|| cluster.hub("c").groups_of(&"c2".into()) == Some(groups(&["blue"]))).await;
    cluster
        .assert_routes(Target::group("red"), &["a1", "b1", "c1"])
        .await;
}

#[tokio::test]
async fn send_to_a_local_connection_publishes_nothing() {
    let mut cluster = Cluster::new().await;
    let hub = cluster.hub("a").clone();
    let before = cluster.bus.published();
    let hub_before = hub.stats().published;

    hub.send(Target::connection("a1"), "direct", &1)
        .await
        .unwrap();
    hub.send(Target::connections(ids(&["a1", "a2"])), "direct", &2)
        .await
        .unwrap();
    assert_eq!(cluster.bus.published(), before);
    assert_eq!(hub.stats().published, hub_before);

    let a1 = cluster.connections.get_mut("a1").unwrap();
    assert_eq!(a1.recv().await.unwrap().args_json(), "1");
    assert_eq!(a1.recv().await.unwrap().args_json(), "2");

    // A remote connection in the list makes it publish, once.
    hub.send(Target::connections(ids(&["a1", "b1"])), "direct", &3)
        .await
        .unwrap();
    assert_eq!(cluster.bus.published(), before + 1);
}

#[tokio::test]
async fn own_echo_is_skipped() {
    let mut cluster = Cluster::new().await;
    let got = cluster.deliveries("a", Target::user("bob")).await;
    assert_eq!(got, BTreeMap::from([("a2", 1), ("c1", 1)]));
    // a published 2 envelopes (the send and the barrier) and skipped both
    // echoes.
    wait_for(|| cluster.hub("a").stats().echoes_skipped == 2).await;
}

#[tokio::test]
async fn identical_sends_stay_distinct() {
    let mut cluster = Cluster::new().await;
    let hub = cluster.hub("a").clone();
    for _ in 0..3 {
        hub.send(Target::connection("c1"), "same", &"same")
            .await
            .unwrap();
    }
    let c1 = cluster.connections.get_mut("c1").unwrap();
    for _ in 0..3 {
        let message = timeout(WAIT, c1.recv()).await.unwrap().unwrap();
        assert_eq!(message.method(), "same");
    }
}

#[tokio::test]
async fn register_rejects_a_duplicate_id() {
    let cluster = Cluster::new().await;
    let error = cluster.hub("a").register("a1".into(), None).unwrap_err();
    assert!(error.to_string().contains("a1"), "{error}");
}

#[tokio::test]
async fn full_queue_drops_for_that_connection_only() {
    let bus = MemoryBackplane::new();
    let sender = Hub::new("chat", bus.clone()).await.unwrap();
    let receiver = Hub::builder("chat", bus.clone())
        .queue_capacity(4)
        .build()
        .await
        .unwrap();

    // `stuck` never reads; `live` reads everything.
    let stuck = receiver.register("stuck".into(), None).unwrap();
    let mut live = receiver.register("live".into(), None).unwrap();
    for id in ["stuck", "live"] {
        receiver.add_to_group(&id.into(), "room").await.unwrap();
    }

    // Lock-step: each send waits until `live` has the previous message, so
    // `live` never has more than one queued while `stuck` stays full.
    const SENDS: u64 = 100;
    let (ack, mut acks) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(async move {
        for i in 0..SENDS {
            let message = timeout(WAIT, live.recv())
                .await
                .expect("live stalled")
                .unwrap();
            assert_eq!(message.args::<u64>().unwrap(), i);
            ack.send(()).await.unwrap();
        }
    });
    for i in 0..SENDS {
        sender.send(Target::group("room"), "n", &i).await.unwrap();
        timeout(WAIT, acks.recv())
            .await
            .expect("delivery to live was held up")
            .expect("reader failed");
    }
    timeout(WAIT, reader).await.unwrap().unwrap();

    assert_eq!(stuck.dropped(), SENDS - 4);
    let stats = receiver.stats();
    assert_eq!(stats.dropped, SENDS - 4);
    assert_eq!(stats.delivered, SENDS + 4);
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("condition never held");
}

#[tokio::test]
async fn closing_the_hub_ends_every_connection_queue() {
    let mut cluster = Cluster::new().await;
    let hub = cluster.hub("a").clone();
    hub.send(Target::connection("a1"), "last", &())
        .await
        .unwrap();
    hub.close();
    assert_eq!(hub.connection_count(), 0);

    // What was queued before the close is still delivered, then the queue
    // ends.
    let a1 = cluster.connections.get_mut("a1").unwrap();
    assert_eq!(a1.recv().await.unwrap().method(), "last");
    assert!(timeout(WAIT, a1.recv()).await.unwrap().is_none());
    let a2 = cluster.connections.get_mut("a2").unwrap();
    assert!(timeout(WAIT, a2.recv()).await.unwrap().is_none());

    // A closed hub refuses what it could no longer honour.
    let closed = |result: backplane_api::Result<()>| {
        matches!(result, Err(backplane_api::BackplaneError::Closed))
    };
    assert!(matches!(
        hub.register("late".into(), None),
        Err(backplane_api::BackplaneError::Closed)
    ));
    assert!(closed(hub.send(Target::All, "late", &()).await));
    assert!(closed(hub.add_to_group(&"b1".into(), "red").await));
    hub.close();
}
