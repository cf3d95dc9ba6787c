//! The envelope: one message on the bus.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{ConnectionId, GroupName, ServerId, Target};

/// The envelope format version this crate writes and reads.
///
/// Readers ignore fields they do not know, so adding an optional field
/// keeps the version; a change that older readers would misread bumps it.
pub const FORMAT_VERSION: u32 = 1;

/// One message on the bus.
///
/// An envelope says which hub it belongs to, which instance published it
/// (`origin`), a per-origin sequence number (`id`) that keeps two identical
/// sends two distinct envelopes, and what to do on arrival.
///
/// Transports turn envelopes into bytes and back with [`crate::codec`], so
/// that every transport writes the same format.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// The format version; see [`FORMAT_VERSION`].
    pub version: u32,
    /// The hub this envelope belongs to.
    pub hub: String,
    /// The instance that published it.
    pub origin: ServerId,
    /// Sequence number, unique per origin.
    pub id: u64,
    /// What receivers must do.
    pub action: Action,
}

/// What an envelope asks the receiving instances to do.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Deliver a message to the connections the target selects.
    Send {
        /// Who receives it.
        target: Target,
        /// What is delivered.
        message: Arc<Message>,
    },
    /// Add a connection to a group on the instance that holds it.
    AddToGroup {
        /// The connection, held by some other instance.
        connection: ConnectionId,
        /// The group.
        group: GroupName,
    },
    /// Remove a connection from a group on the instance that holds it.
    RemoveFromGroup {
        /// The connection, held by some other instance.
        connection: ConnectionId,
        /// The group.
        group: GroupName,
    },
}

impl Envelope {
    /// Returns a new envelope of the current format version.
    pub fn new(hub: impl Into<String>, origin: ServerId, id: u64, action: Action) -> Self {
        Self {
            version: FORMAT_VERSION,
            hub: hub.into(),
            origin,
            id,
            action,
        }
    }
}

/// What a connection receives: a method (event) name and its arguments as
/// JSON.
///
/// A message is built once per send and shared, behind an [`Arc`], by every
/// connection that receives it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Message {
    method: String,
    args: Box<RawValue>,
}

impl Message {
    /// Builds a message by serializing `args` to JSON.
    ///
    /// # Errors
    ///
    /// Returns [`crate::BackplaneError::Encode`] if `args` cannot be
    /// serialized (a map with non-string keys, say).
    pub fn new<A>(method: impl Into<String>, args: &A) -> crate::Result<Self>
    where
        A: Serialize + ?Sized,
    {
        let args = serde_json::value::to_raw_value(args).map_err(crate::BackplaneError::Encode)?;
        Ok(Self {
            method: method.into(),
            args,
        })
    }

    /// Builds a message from arguments that are already JSON text.
    ///
    /// # Errors
    ///
    /// Returns [`crate::BackplaneError::Encode`] if `json` is not valid
    /// JSON.
    pub fn from_json(method: impl Into<String>, json: &str) -> crate::Result<Self> {
        let args = RawValue::from_string(json.to_owned()).map_err(crate::BackplaneError::Encode)?;
        Ok(Self {
            method: method.into(),
            args,
        })
    }

    pub(crate) fn from_raw(method: String, args: Box<RawValue>) -> Self {
        Self { method, args }
    }

    pub(crate) fn args_raw(&self) -> &RawValue {
        &self.args
    }

    /// The method (event) name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The arguments as JSON text.
    pub fn args_json(&self) -> &str {
        self.args.get()
    }

    /// Deserializes the arguments.
    ///
    /// # Errors
    ///
    /// Returns [`crate::BackplaneError::Decode`] if the arguments do not
    /// match `T`.
    pub fn args<'a, T: Deserialize<'a>>(&'a self) -> crate::Result<T> {
        serde_json::from_str(self.args.get()).map_err(crate::BackplaneError::Decode)
    }
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.method == other.method && self.args.get() == other.args.get()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("method", &self.method)
            .field("args", &self.args.get())
            .finish()
    }
}
