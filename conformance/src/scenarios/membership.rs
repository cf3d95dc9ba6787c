//! Group membership across instances.

use backplane_api::{ConnectionId, GroupName, Target};

use super::groups;
use crate::TransportFactory;
use crate::fixture::{Failure, Room, ensure};

pub(crate) async fn disconnect_leaves_groups(
    factory: &dyn TransportFactory,
) -> Result<(), Failure> {
    let mut room = Room::new(factory, "disconnect", 3).await?;
    let x = room.connect(1, "x", Some("eve"), &["g", "h"]).await?;
    let w = room.connect(1, "w", None, &["g"]).await?;
    room.connect(1, "y", None, &["g"]).await?;
    room.connect(2, "z", Some("eve"), &["g"]).await?;

    // One connection unregistered, one dropped, on the same instance.
    let _x_queue = room.unregister(x)?;
    room.drop_connection(w)?;
    let hub = room.hub(1);
    let members = hub.local_group_len(&GroupName::from("g"));
    ensure!(
        hub.groups_of(&"x".into()).is_none() && members == 1,
        "after two of its members disconnected, instance 1 still holds {members} \
         members of group g (expected 1) or still knows x"
    );
    ensure!(
        hub.local_group_len(&GroupName::from("h")) == 0,
        "group h still has a member on instance 1 after its only member disconnected"
    );

    room.send(0, Target::group("g"), "to-g").await?;
    room.send(0, Target::groups(groups(&["g", "h"])), "to-g-h")
        .await?;
    room.send(0, Target::group("h"), "to-h").await?;
    room.send(0, Target::user("eve"), "to-eve").await?;
    room.verify().await?;

    // The id comes back as a new connection: it inherits nothing.
    room.connect(1, "x", None, &[]).await?;
    room.send(2, Target::group("g"), "to-g-again").await?;
    room.send(2, Target::group("h"), "to-h-again").await?;
    room.send(2, Target::user("eve"), "to-eve-again").await?;
    room.finish().await
}

pub(crate) async fn removing_non_member_is_noop(
    factory: &dyn TransportFactory,
) -> Result<(), Failure> {
    let mut room = Room::new(factory, "remove-noop", 3).await?;
    room.connect(0, "a", None, &["g"]).await?;
    room.connect(0, "b", None, &[]).await?;
    room.connect(1, "c", None, &["g", "h"]).await?;
    room.connect(1, "d", None, &[]).await?;

    // Local non-member, remote non-member, a member of g removed from a
    // group it is not in, and a connection nobody holds.
    let hub = room.hub(0).clone();
    hub.remove_from_group(&"b".into(), "g").await?;
    hub.remove_from_group(&"d".into(), "g").await?;
    hub.remove_from_group(&"c".into(), "other").await?;
    hub.remove_from_group(&"nobody".into(), "g").await?;
    hub.remove_from_group(&"a".into(), "h").await?;

    // The barrier comes after the commands from instance 0, so instance 1
    // has applied them once it completes.
    room.verify().await?;
    let holder = room.hub(1);
    let memberships = [
        (hub.groups_of(&"a".into()), vec!["g"]),
        (hub.groups_of(&"b".into()), vec![]),
        (holder.groups_of(&"c".into()), vec!["g", "h"]),
        (holder.groups_of(&"d".into()), vec![]),
    ];
    for (actual, expected) in memberships {
        ensure!(
            actual == Some(groups(&expected)),
            "removing non-members changed memberships: found {actual:?}, expected {expected:?}"
        );
    }

    room.send(2, Target::group("g"), "to-g").await?;
    room.send(2, Target::group("h"), "to-h").await?;
    room.send(2, Target::group("other"), "to-other").await?;
    room.finish().await
}

pub(crate) async fn remote_group_membership(factory: &dyn TransportFactory) -> Result<(), Failure> {
    let mut room = Room::new(factory, "membership", 3).await?;
    room.connect(0, "o", None, &[]).await?;
    let x = room.connect(1, "x", None, &[]).await?;
    room.connect(2, "m", None, &["g"]).await?;
    let id: ConnectionId = room.id(x);
    let g = GroupName::from("g");
    let holds_g = |room: &Room| {
        let groups = room.hub(1).groups_of(&id);
        groups.is_some_and(|groups| groups.contains(&g))
    };

    // Instance 0 adds x, held by instance 1; instance 2 sends to the group.
    room.hub(0).add_to_group(&id, "g").await?;
    room.wait_until("instance 1 to add x to g on instance 0's command", || {
        holds_g(&room)
    })
    .await?;
    room.model_join(x, "g");
    room.send(2, Target::group("g"), "after-add").await?;
    room.verify().await?;

    // Adding again, from the same and from another instance, delivers once.
    room.hub(0).add_to_group(&id, "g").await?;
    room.hub(2).add_to_group(&id, "g").await?;
    room.verify().await?;
    let members = room.hub(1).local_group_len(&g);
    ensure!(
        room.hub(1).groups_of(&id) == Some(vec![g.clone()]) && members == 1,
        "after adding x to g twice more, instance 1 has {members} members of g \
         and x is in {:?}",
        room.hub(1).groups_of(&id)
    );
    room.send(2, Target::group("g"), "after-second-add").await?;
    room.send(0, Target::group("g"), "after-second-add-from-0")
        .await?;
    room.verify().await?;

    // Instance 0 removes it again: the group no longer reaches it.
    room.hub(0).remove_from_group(&id, "g").await?;
    room.wait_until(
        "instance 1 to remove x from g on instance 0's command",
        || !holds_g(&room),
    )
    .await?;
    room.model_leave(x, "g");
    room.send(2, Target::group("g"), "after-remove").await?;

    // A remote add for a connection nobody holds changes nothing.
    room.hub(0).add_to_group(&"ghost".into(), "g").await?;
    room.send(0, Target::group("g"), "after-ghost").await?;
    room.finish().await
}
