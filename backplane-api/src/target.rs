//! Routing: which connections a message is for.

use serde::{Deserialize, Serialize};

use crate::{ConnectionId, GroupName, UserId};

/// Which connections of a hub must receive a message.
///
/// A target is evaluated on every instance against the connections that
/// instance holds, so a connection receives the message wherever it is
/// held. A connection selected more than once (a member of two of the
/// [`Target::Groups`], say) receives the message once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// Every connection.
    All,
    /// Every connection except the listed ones.
    AllExcept {
        /// Connections that must not receive the message.
        except: Vec<ConnectionId>,
    },
    /// One connection.
    Connection {
        /// The connection.
        id: ConnectionId,
    },
    /// Several connections.
    Connections {
        /// The connections.
        ids: Vec<ConnectionId>,
    },
    /// Every member of a group.
    Group {
        /// The group.
        name: GroupName,
    },
    /// Every member of a group except the listed connections.
    GroupExcept {
        /// The group.
        name: GroupName,
        /// Members that must not receive the message.
        except: Vec<ConnectionId>,
    },
    /// Every member of any of several groups.
    Groups {
        /// The groups.
        names: Vec<GroupName>,
    },
    /// Every connection of one user.
    User {
        /// The user.
        id: UserId,
    },
    /// Every connection of any of several users.
    Users {
        /// The users.
        ids: Vec<UserId>,
    },
}

impl Target {
    /// Every connection.
    pub fn all() -> Self {
        Self::All
    }

    /// Every connection except `except`.
    pub fn all_except(except: impl IntoIterator<Item = ConnectionId>) -> Self {
        Self::AllExcept {
            except: except.into_iter().collect(),
        }
    }

    /// One connection.
    pub fn connection(id: impl Into<ConnectionId>) -> Self {
        Self::Connection { id: id.into() }
    }

    /// Several connections.
    pub fn connections(ids: impl IntoIterator<Item = ConnectionId>) -> Self {
        Self::Connections {
            ids: ids.into_iter().collect(),
        }
    }

    /// Every member of group `name`.
    pub fn group(name: impl Into<GroupName>) -> Self {
        Self::Group { name: name.into() }
    }

    /// Every member of group `name` except `except`.
    pub fn group_except(
        name: impl Into<GroupName>,
        except: impl IntoIterator<Item = ConnectionId>,
    ) -> Self {
        Self::GroupExcept {
            name: name.into(),
            except: except.into_iter().collect(),
        }
    }

    /// Every member of any of `names`.
    pub fn groups(names: impl IntoIterator<Item = GroupName>) -> Self {
        Self::Groups {
            names: names.into_iter().collect(),
        }
    }

    /// Every connection of user `id`.
    pub fn user(id: impl Into<UserId>) -> Self {
        Self::User { id: id.into() }
    }

    /// Every connection of any of `ids`.
    pub fn users(ids: impl IntoIterator<Item = UserId>) -> Self {
        Self::Users {
            ids: ids.into_iter().collect(),
        }
    }
}
