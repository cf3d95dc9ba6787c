//! The wire format shared by every transport.
//!
//! An envelope is one JSON object:
//!
//! ```text
//! {"v":1,"hub":"chat","origin":"a1f0…","id":7,
//!  "send":{"target":{"to":"group","name":"room-1"},"method":"say","args":["hi"]}}
//! ```
//!
//! Exactly one of `send`, `add_to_group` and `remove_from_group` is present.
//!
//! A transport that packs several envelopes into one bus message uses a
//! batch: a JSON array of encoded envelopes, in publish order
//! ([`encode_batch`], [`decode_batch`]). A batch of one is the envelope
//! itself, so a reader of batches reads single envelopes too.
//! Readers ignore fields they do not know, so a newer writer may add
//! optional fields without breaking older readers during a rolling upgrade.
//! JSON text is valid UTF-8 and never contains a NUL byte (serde_json escapes
//! control characters), so the output fits text-only buses such as
//! PostgreSQL `NOTIFY`.
//!
//! Decoding never panics: malformed, truncated or foreign input gives an
//! error value.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::envelope::FORMAT_VERSION;
use crate::{Action, BackplaneError, ConnectionId, Envelope, GroupName, Result, ServerId, Target};

/// Encodes an envelope to its wire form.
///
/// # Errors
///
/// Returns [`BackplaneError::Encode`] if serialization fails, which the
/// types in this crate do not cause in practice.
pub fn encode(envelope: &Envelope) -> Result<String> {
    let (send, add_to_group, remove_from_group) = match &envelope.action {
        Action::Send { target, message } => {
            let send = WireSendRef {
                target,
                method: message.method(),
                args: message.args_raw(),
            };
            (Some(send), None, None)
        }
        Action::AddToGroup { connection, group } => {
            (None, Some(WireMembership { connection, group }), None)
        }
        Action::RemoveFromGroup { connection, group } => {
            (None, None, Some(WireMembership { connection, group }))
        }
    };
    let wire = WireEnvelopeRef {
        v: envelope.version,
        hub: &envelope.hub,
        origin: &envelope.origin,
        id: envelope.id,
        send,
        add_to_group,
        remove_from_group,
    };
    serde_json::to_string(&wire).map_err(BackplaneError::Encode)
}

/// Decodes an envelope from its wire form.
///
/// # Errors
///
/// - [`BackplaneError::Decode`] if `bytes` is not a JSON object of the
///   expected shape (garbage, truncated input, a foreign message);
/// - [`BackplaneError::UnsupportedVersion`] if it was written in a format
///   version this crate does not read;
/// - [`BackplaneError::InvalidEnvelope`] if it is well-formed JSON but
///   lacks a required field or carries no (or more than one) action.
pub fn decode(bytes: &[u8]) -> Result<Envelope> {
    let wire: WireEnvelope = match serde_json::from_slice(bytes) {
        Ok(wire) => wire,
        Err(error) => return Err(explain_failure(bytes, error)),
    };

    let version = wire
        .v
        .ok_or(BackplaneError::InvalidEnvelope("missing field `v`"))?;
    if version != FORMAT_VERSION {
        return Err(BackplaneError::UnsupportedVersion { version });
    }
    let hub = wire
        .hub
        .ok_or(BackplaneError::InvalidEnvelope("missing field `hub`"))?;
    let origin = wire
        .origin
        .ok_or(BackplaneError::InvalidEnvelope("missing field `origin`"))?;
    let id = wire
        .id
        .ok_or(BackplaneError::InvalidEnvelope("missing field `id`"))?;

    let action = match (wire.send, wire.add_to_group, wire.remove_from_group) {
        (Some(send), None, None) => Action::Send {
            target: send.target,
            message: Arc::new(crate::Message::from_raw(send.method, send.args)),
        },
        (None, Some(m), None) => Action::AddToGroup {
            connection: m.connection,
            group: m.group,
        },
        (None, None, Some(m)) => Action::RemoveFromGroup {
            connection: m.connection,
            group: m.group,
        },
        _ => {
            return Err(BackplaneError::InvalidEnvelope(
                "expected exactly one of `send`, `add_to_group`, `remove_from_group`",
            ));
        }
    };

    Ok(Envelope {
        version,
        hub,
        origin,
        id,
        action,
    })
}

/// Joins encoded envelopes (as [`encode`] writes them) into one batch, in
/// order: the envelope itself when there is one, a JSON array otherwise.
///
/// The result is [`batch_len`] bytes long, so a transport can check a size
/// limit before building it.
pub fn encode_batch<S: AsRef<str>>(envelopes: &[S]) -> String {
    if let [one] = envelopes {
        return one.as_ref().to_owned();
    }
    let total = envelopes.iter().map(|e| e.as_ref().len()).sum();
    let mut text = String::with_capacity(batch_len(total, envelopes.len()));
    text.push('[');
    for (i, envelope) in envelopes.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(envelope.as_ref());
    }
    text.push(']');
    text
}

/// The length of [`encode_batch`]'s output for `count` encoded envelopes of
/// `total` bytes together.
pub fn batch_len(total: usize, count: usize) -> usize {
    match count {
        0 | 1 => total,
        n => total + (n - 1) + 2,
    }
}

/// Decodes a batch: one envelope, or a JSON array of them.
///
/// # Errors
///
/// As [`decode`], for the array itself or for any envelope in it; one bad
/// envelope fails the whole batch.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Envelope>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return decode(bytes).map(|envelope| vec![envelope]);
    }
    let items: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(BackplaneError::Decode)?;
    items
        .into_iter()
        .map(|item| decode(item.get().as_bytes()))
        .collect()
}

/// Tells a newer format (which may have moved any field) from plain
/// garbage, by reading the version alone.
fn explain_failure(bytes: &[u8], error: serde_json::Error) -> BackplaneError {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    match serde_json::from_slice::<VersionOnly>(bytes) {
        Ok(VersionOnly { v }) if v != FORMAT_VERSION => {
            BackplaneError::UnsupportedVersion { version: v }
        }
        _ => BackplaneError::Decode(error),
    }
}

#[derive(Serialize)]
struct WireEnvelopeRef<'a> {
    v: u32,
    hub: &'a str,
    origin: &'a ServerId,
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    send: Option<WireSendRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    add_to_group: Option<WireMembership<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remove_from_group: Option<WireMembership<'a>>,
}

#[derive(Serialize)]
struct WireSendRef<'a> {
    target: &'a Target,
    method: &'a str,
    args: &'a RawValue,
}

#[derive(Serialize)]
struct WireMembership<'a> {
    connection: &'a ConnectionId,
    group: &'a GroupName,
}

// Every field is optional so that a missing one is reported by name.
#[derive(Deserialize)]
struct WireEnvelope {
    v: Option<u32>,
    hub: Option<String>,
    origin: Option<ServerId>,
    id: Option<u64>,
    send: Option<WireSend>,
    add_to_group: Option<WireMembershipOwned>,
    remove_from_group: Option<WireMembershipOwned>,
}

#[derive(Deserialize)]
struct WireSend {
    target: Target,
    method: String,
    args: Box<RawValue>,
}

#[derive(Deserialize)]
struct WireMembershipOwned {
    connection: ConnectionId,
    group: GroupName,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn sample() -> Envelope {
        let args = serde_json::json!({"text": "héllo 世界 🎉"});
        let message = Message::new("say", &args).unwrap();
        Envelope::new(
            "chat",
            ServerId::from("a"),
            7,
            Action::Send {
                target: Target::group("room"),
                message: Arc::new(message),
            },
        )
    }

    #[test]
    fn round_trips_a_send() {
        let envelope = sample();
        let bytes = encode(&envelope).unwrap();
        assert_eq!(decode(bytes.as_bytes()).unwrap(), envelope);
    }

    #[test]
    fn round_trips_membership_commands() {
        for action in [
            Action::AddToGroup {
                connection: "c1".into(),
                group: "g".into(),
            },
            Action::RemoveFromGroup {
                connection: "c1".into(),
                group: "g".into(),
            },
        ] {
            let envelope = Envelope::new("chat", ServerId::from("a"), 1, action);
            let bytes = encode(&envelope).unwrap();
            assert_eq!(decode(bytes.as_bytes()).unwrap(), envelope);
        }
    }

    #[test]
    fn ignores_unknown_fields() {
        let text = r#"{"v":1,"hub":"h","origin":"o","id":1,"future":[1,2],
            "send":{"target":{"to":"all","extra":true},"method":"m","args":null,"x":1}}"#;
        let envelope = decode(text.as_bytes()).unwrap();
        assert_eq!(envelope.hub, "h");
        assert!(matches!(
            envelope.action,
            Action::Send {
                target: Target::All,
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let full = encode(&sample()).unwrap();
        let cases: Vec<&[u8]> = vec![
            b"",
            b"   ",
            b"not json",
            b"\xff\xfe\x00garbage",
            b"null",
            b"[]",
            b"42",
            b"{}",
            br#"{"hello":"world"}"#,
            br#"{"v":1,"hub":"h","origin":"o","id":1}"#,
            br#"{"v":1,"hub":"h","origin":"o","id":-1,"send":{}}"#,
            br#"{"v":1,"hub":7,"origin":"o","id":1}"#,
            concat!(
                r#"{"v":1,"hub":"h","origin":"o","id":1,"#,
                r#""send":{"target":{"to":"nowhere"},"method":"m","args":1}}"#,
            )
            .as_bytes(),
            &full.as_bytes()[..full.len() / 2],
            &full.as_bytes()[..full.len() - 1],
        ];
        for case in cases {
            assert!(
                decode(case).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn batches_round_trip_and_reject_bad_members() {
        let one = encode(&sample()).unwrap();
        assert_eq!(encode_batch(&[&one]), one);
        assert_eq!(decode_batch(one.as_bytes()).unwrap(), [sample()]);

        let three = encode_batch(&[&one, &one, &one]);
        assert_eq!(three.len(), batch_len(3 * one.len(), 3));
        assert_eq!(decode_batch(three.as_bytes()).unwrap().len(), 3);

        for bad in ["", "[", "[]x", "[1]", "[{}]", " [null]"] {
            assert!(decode_batch(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        assert!(decode_batch(b"[]").unwrap().is_empty());
    }

    #[test]
    fn rejects_other_versions() {
        let text = r#"{"v":2,"hub":"h","origin":"o","id":1,"send":{"brand":"new"}}"#;
        let error = decode(text.as_bytes()).unwrap_err();
        assert!(matches!(
            error,
            BackplaneError::UnsupportedVersion { version: 2 }
        ));
    }

    #[test]
    fn rejects_two_actions() {
        let text = r#"{"v":1,"hub":"h","origin":"o","id":1,
            "add_to_group":{"connection":"c","group":"g"},
            "remove_from_group":{"connection":"c","group":"g"}}"#;
        assert!(matches!(
            decode(text.as_bytes()),
            Err(BackplaneError::InvalidEnvelope(_))
        ));
    }
}
