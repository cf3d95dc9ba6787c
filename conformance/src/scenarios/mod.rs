//! The scenarios. Each builds its own instances with a hub name no other
//! run uses, and fails with a message saying who received what.

mod delivery;
mod limits;
mod membership;
mod routing;

pub(crate) use delivery::{
    concurrent_publishers, full_queue_does_not_block_group, local_send_skips_bus, no_echo_twice,
    per_publisher_order, send_to_all_reaches_every_instance,
    send_to_remote_connection_group_and_user,
};
pub(crate) use limits::{hub_isolation, payload_limits_and_non_ascii};
pub(crate) use membership::{
    disconnect_leaves_groups, remote_group_membership, removing_non_member_is_noop,
};
pub(crate) use routing::{
    routing_all, routing_all_except, routing_connection, routing_connections, routing_group,
    routing_group_except, routing_groups, routing_user, routing_users,
};

use backplane_api::{ConnectionId, GroupName, UserId};

fn ids(ids: &[&str]) -> Vec<ConnectionId> {
    ids.iter().map(|id| ConnectionId::from(*id)).collect()
}

fn groups(names: &[&str]) -> Vec<GroupName> {
    names.iter().map(|name| GroupName::from(*name)).collect()
}

fn users(ids: &[&str]) -> Vec<UserId> {
    ids.iter().map(|id| UserId::from(*id)).collect()
}
