//! The error type shared by the hub and every transport.

use crate::ConnectionId;

/// A `Result` whose error is [`BackplaneError`].
pub type Result<T, E = BackplaneError> = std::result::Result<T, E>;

/// Everything that can go wrong in the hub or a transport.
///
/// Transports wrap their own client errors (a PostgreSQL or Redis error)
/// in [`BackplaneError::Transport`]; [`BackplaneError::is_transient`] tells
/// whether retrying later may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackplaneError {
    /// The envelope is larger than the transport may carry; nothing was
    /// sent.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Encoded size of the envelope, in bytes.
        size: usize,
        /// The largest size the transport accepts, in bytes.
        max: usize,
    },

    /// The transport has no connection to its bus right now.
    #[error("transport is not connected")]
    NotConnected,

    /// The transport or hub was closed.
    #[error("transport is closed")]
    Closed,

    /// Serializing an envelope or message arguments failed.
    #[error("failed to encode")]
    Encode(#[source] serde_json::Error),

    /// The bytes are not a well-formed envelope (or the arguments do not
    /// match the requested type).
    #[error("failed to decode")]
    Decode(#[source] serde_json::Error),

    /// A well-formed JSON object that is not a valid envelope.
    #[error("invalid envelope: {0}")]
    InvalidEnvelope(&'static str),

    /// The envelope was written in a format version this crate cannot read.
    #[error("unsupported envelope format version {version}")]
    UnsupportedVersion {
        /// The version found in the envelope.
        version: u32,
    },

    /// A connection with this id is already registered with the hub.
    #[error("connection {0} is already registered")]
    DuplicateConnection(ConnectionId),

    /// The transport's own client failed.
    #[error("{context}")]
    Transport {
        /// What the transport was doing, without secrets.
        context: String,
        /// Whether retrying later may succeed.
        transient: bool,
        /// The client error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl BackplaneError {
    /// Wraps a transport client error that a later retry may not fix.
    pub fn transport<E>(context: impl Into<String>, source: E) -> Self
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        Self::Transport {
            context: context.into(),
            transient: false,
            source: source.into(),
        }
    }

    /// Wraps a transport client error that a later retry may fix (a lost
    /// connection, a timeout).
    pub fn transient<E>(context: impl Into<String>, source: E) -> Self
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        Self::Transport {
            context: context.into(),
            transient: true,
            source: source.into(),
        }
    }

    /// A copy of `error` for one of several callers that share one failure
    /// (the publishes of one batch, say): same message and transience,
    /// with `error` as its source.
    pub fn shared(error: &std::sync::Arc<BackplaneError>) -> Self {
        let context = error.to_string();
        if error.is_transient() {
            Self::transient(context, error.clone())
        } else {
            Self::transport(context, error.clone())
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NotConnected => true,
            Self::Transport { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Whether this is [`BackplaneError::PayloadTooLarge`].
    pub fn is_payload_too_large(&self) -> bool {
        matches!(self, Self::PayloadTooLarge { .. })
    }

    /// Whether the error comes from decoding bytes received from the bus.
    pub fn is_decode(&self) -> bool {
        matches!(
            self,
            Self::Decode(_) | Self::InvalidEnvelope(_) | Self::UnsupportedVersion { .. }
        )
    }
}

/// Displays an error with its chain of causes on one line: `a: b: c`.
///
/// Client errors keep their details (the server's message, the I/O error)
/// in their causes, which a plain `{error}` leaves out; transports log
/// with this.
///
/// ```
/// use backplane_api::{BackplaneError, ErrorChain};
///
/// let error = BackplaneError::transport("publish failed", "connection reset");
/// assert_eq!(ErrorChain(&error).to_string(), "publish failed: connection reset");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}
