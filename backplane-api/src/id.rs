//! Identifiers: instances, connections, users and groups.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Returns the identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<&String> for $name {
            fn from(value: &String) -> Self {
                Self(Arc::from(value.as_str()))
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id! {
    /// Identifies one instance (one running process of the application).
    ///
    /// Every envelope carries the `ServerId` of the instance that published
    /// it, so that the instance can recognise and skip its own envelopes
    /// when the bus echoes them back. [`ServerId::random`] gives a fresh one.
    ServerId
}

string_id! {
    /// Identifies one client connection held by one instance.
    ///
    /// Connection ids must be unique across all instances of a hub, because
    /// a send to a connection reaches every instance and is delivered by the
    /// one that holds it. [`ConnectionId::random`] gives a fresh one.
    ConnectionId
}

string_id! {
    /// Identifies an application user; one user may hold several
    /// connections on several instances.
    UserId
}

string_id! {
    /// Names a group: a set of connections, such as a chat room.
    GroupName
}

impl ServerId {
    /// Returns a new random server id.
    pub fn random() -> Self {
        Self::from(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl ConnectionId {
    /// Returns a new random connection id.
    pub fn random() -> Self {
        Self::from(uuid::Uuid::new_v4().simple().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_differ() {
        assert_ne!(ServerId::random(), ServerId::random());
        assert_ne!(ConnectionId::random(), ConnectionId::random());
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = GroupName::from("room-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"room-1\"");
        assert_eq!(format!("{id}"), "room-1");
        assert_eq!(format!("{id:?}"), "GroupName(\"room-1\")");
    }
}
