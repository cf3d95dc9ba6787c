//! The JSON frames exchanged with browsers, and the chat message carried on
//! the hub. The crate documentation describes the protocol for readers.

use serde::{Deserialize, Serialize};

/// The largest text frame a client may send, in bytes. Larger frames get
/// an error frame and are otherwise ignored.
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The longest user name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 32;

/// The longest room name, in characters.
pub(crate) const MAX_ROOM_CHARS: usize = 64;

/// The hub method that carries a [`ChatMessage`].
pub(crate) const CHAT_METHOD: &str = "chat";

/// A command from a client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Command {
    /// Picks the user name; must come first, once.
    Hello { name: String },
    /// Joins a room (a hub group).
    Join { room: String },
    /// Leaves a room.
    Leave { room: String },
    /// Sends to every member of a room the sender has joined.
    Room { room: String, text: String },
    /// Sends to every connection of a user, and to the sender's own.
    Direct { to: String, text: String },
    /// Sends to every named connection on every instance.
    Broadcast { text: String },
}

impl Command {
    /// The command's `type`, for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Room { .. } => "room",
            Self::Direct { .. } => "direct",
            Self::Broadcast { .. } => "broadcast",
        }
    }
}

/// How a chat message was addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Room,
    Direct,
    Broadcast,
}

/// A chat message as it travels on the hub: the arguments of the
/// [`CHAT_METHOD`] message. The delivering instance adds its own name when
/// it turns this into a [`Frame::Message`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChatMessage {
    pub(crate) kind: Kind,
    pub(crate) from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
    pub(crate) text: String,
    /// The instance that took the message from its sender.
    pub(crate) sent_via: String,
}

/// A frame sent to a client.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Frame<'a> {
    /// First frame on every connection.
    Welcome {
        instance: &'a str,
        hub: &'a str,
        max_frame_bytes: usize,
    },
    /// The answer to `hello`.
    Ready { name: &'a str, connection: &'a str },
    /// The answer to `join`.
    Joined { room: &'a str },
    /// The answer to `leave`.
    Left { room: &'a str },
    /// A chat message, stamped with the instance that delivered it.
    Message {
        #[serde(flatten)]
        message: &'a ChatMessage,
        delivered_by: &'a str,
    },
    /// A command failed; the connection stays open.
    Error { message: &'a str },
}

impl Frame<'_> {
    /// The frame as JSON text.
    pub(crate) fn to_json(&self) -> String {
        // Every field is a string, a number or a plain struct of them.
        serde_json::to_string(self).expect("a frame always serializes")
    }
}

/// Checks a user name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no
/// control characters.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    check_label(name, MAX_NAME_CHARS)
        .map_err(|_| "a name is 1 to 32 characters, without control characters")
}

/// Checks a room name, like [`check_name`] with [`MAX_ROOM_CHARS`].
pub(crate) fn check_room(room: &str) -> Result<(), &'static str> {
    check_label(room, MAX_ROOM_CHARS)
        .map_err(|_| "a room is 1 to 64 characters, without control characters")
}

/// Checks a message text: not blank.
pub(crate) fn check_text(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        return Err("a message needs some text");
    }
    Ok(())
}

fn check_label(label: &str, max_chars: usize) -> Result<(), ()> {
    let chars = label.chars().count();
    let ok = (1..=max_chars).contains(&chars)
        && label.trim() == label
        && !label.chars().any(char::is_control);
    if ok { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let hello: Command = serde_json::from_str(r#"{"type":"hello","name":"ann"}"#).unwrap();
        assert!(matches!(hello, Command::Hello { name } if name == "ann"));
        let direct: Command =
            serde_json::from_str(r#"{"type":"direct","to":"bob","text":"hi"}"#).unwrap();
        assert_eq!(direct.kind(), "direct");
    }

    #[test]
    fn unknown_and_incomplete_commands_are_errors() {
        for bad in [
            r#"{"type":"dance"}"#,
            r#"{"type":"join"}"#,
            r#"{"type":"join","room":"r","extra":1}"#,
            r#"{"room":"r"}"#,
            "[]",
            "not json",
        ] {
            assert!(serde_json::from_str::<Command>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_frame_flattens_the_chat_message() {
        let message = ChatMessage {
            kind: Kind::Room,
            from: "ann".into(),
            room: Some("lobby".into()),
            to: None,
            text: "hi".into(),
            sent_via: "instance-A".into(),
        };
        let frame = Frame::Message {
            message: &message,
            delivered_by: "instance-B",
        };
        assert_eq!(
            frame.to_json(),
            concat!(
                r#"{"type":"message","kind":"room","from":"ann","room":"lobby","#,
                r#""text":"hi","sent_via":"instance-A","delivered_by":"instance-B"}"#,
            )
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("ann").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(" ann").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name(&"x".repeat(33)).is_err());
        assert!(check_room(&"é".repeat(64)).is_ok());
        assert!(check_text("  ").is_err());
    }
}
