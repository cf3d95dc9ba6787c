//! The nine routings, each sent from every instance to connections spread
//! over three instances.

use backplane_api::Target;

use super::{groups, ids, users};
use crate::TransportFactory;
use crate::fixture::{Failure, Room};

/// Where the connections are: instance, id, user, groups. Every user and
/// group spans instances, and some connections have neither.
const LAYOUT: &[(usize, &str, Option<&str>, &[&str])] = &[
    (0, "c0", Some("ann"), &["red"]),
    (0, "c1", Some("bob"), &["red", "blue"]),
    (0, "c2", None, &[]),
    (1, "c3", Some("ann"), &["blue"]),
    (1, "c4", Some("cat"), &["red"]),
    (1, "c5", None, &[]),
    (2, "c6", Some("bob"), &["green"]),
    (2, "c7", Some("ann"), &["red", "green"]),
    (2, "c8", None, &[]),
];

/// Sends each of `targets` from every instance and checks that exactly the
/// connections the target selects received it, once.
async fn routing(
    factory: &dyn TransportFactory,
    tag: &str,
    targets: Vec<Target>,
) -> Result<(), Failure> {
    let mut room = Room::new(factory, tag, 3).await?;
    for (instance, id, user, groups) in LAYOUT {
        room.connect(*instance, id, *user, groups).await?;
    }
    for (n, target) in targets.iter().enumerate() {
        for from in 0..3 {
            let tag = format!("{tag}#{n}@{from}");
            room.send(from, target.clone(), &tag).await?;
        }
    }
    room.finish().await
}

pub(crate) async fn routing_all(factory: &dyn TransportFactory) -> Result<(), Failure> {
    routing(factory, "all", vec![Target::All]).await
}

pub(crate) async fn routing_all_except(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = vec![
        Target::all_except(ids(&["c1", "c3", "c8"])),
        Target::all_except(ids(&[])),
        Target::all_except(ids(&["c0", "c0", "nobody"])),
    ];
    routing(factory, "all-except", targets).await
}

pub(crate) async fn routing_connection(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let mut targets: Vec<_> = LAYOUT
        .iter()
        .map(|(_, id, _, _)| Target::connection(*id))
        .collect();
    targets.push(Target::connection("nobody"));
    routing(factory, "connection", targets).await
}

pub(crate) async fn routing_connections(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = vec![
        Target::connections(ids(&["c0", "c4", "c8"])),
        // All held by instance 0: from there, no envelope is published.
        Target::connections(ids(&["c1", "c2"])),
        Target::connections(ids(&["c4", "c4", "c5"])),
        Target::connections(ids(&["nobody", "c6"])),
        Target::connections(ids(&[])),
    ];
    routing(factory, "connections", targets).await
}

pub(crate) async fn routing_group(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = ["red", "blue", "green", "empty"]
        .into_iter()
        .map(Target::group)
        .collect();
    routing(factory, "group", targets).await
}

pub(crate) async fn routing_group_except(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = vec![
        Target::group_except("red", ids(&["c0", "c7"])),
        Target::group_except("blue", ids(&["c3"])),
        Target::group_except("green", ids(&["c0"])),
    ];
    routing(factory, "group-except", targets).await
}

pub(crate) async fn routing_groups(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = vec![
        // c1 is in both and must receive one copy.
        Target::groups(groups(&["red", "blue"])),
        Target::groups(groups(&["green", "empty"])),
        Target::groups(groups(&["red", "red", "green"])),
    ];
    routing(factory, "groups", targets).await
}

pub(crate) async fn routing_user(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = ["ann", "bob", "cat", "nobody"]
        .into_iter()
        .map(Target::user)
        .collect();
    routing(factory, "user", targets).await
}

pub(crate) async fn routing_users(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let targets = vec![
        Target::users(users(&["ann", "bob"])),
        Target::users(users(&["cat", "nobody"])),
        Target::users(users(&["ann", "ann"])),
    ];
    routing(factory, "users", targets).await
}
