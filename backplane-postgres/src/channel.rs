//! Channel names: which PostgreSQL channel carries which hub.

use sha2::{Digest, Sha256};

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`). Longer
/// names are silently truncated by `LISTEN` and refused by `pg_notify`.
pub(crate) const MAX_CHANNEL_BYTES: usize = 63;

/// How many hex digits of the SHA-256 of the full name a shortened name
/// ends with: 64 bits, so distinct hubs practically never share a channel.
const HASH_DIGITS: usize = 16;

/// Returns the channel of hub `hub`: `<prefix>__<hub>`, case kept.
///
/// A name longer than [`MAX_CHANNEL_BYTES`] bytes (or holding a NUL, which
/// no identifier may contain) becomes a readable head of the full name, cut
/// on a character boundary, then `_` and a hash of the full name. The result
/// depends on nothing but the two strings, so every instance agrees on it.
pub(crate) fn channel_name(prefix: &str, hub: &str) -> String {
    let full = format!("{prefix}__{hub}");
    if full.len() <= MAX_CHANNEL_BYTES && !full.contains('\0') {
        return full;
    }

    // The head keeps as many whole characters as fit before the suffix.
    let room = MAX_CHANNEL_BYTES - 1 - HASH_DIGITS;
    let mut head = String::with_capacity(room);
    for c in full.chars().filter(|&c| c != '\0') {
        if head.len() + c.len_utf8() > room {
            break;
        }
        head.push(c);
    }

    let digest = Sha256::digest(full.as_bytes());
    let mut name = head;
    name.push('_');
    for byte in &digest[..HASH_DIGITS / 2] {
        name.push_str(&format!("{byte:02x}"));
    }
    name
}

/// Quotes a channel name for `LISTEN` / `UNLISTEN`, which take an
/// identifier, not a parameter.
pub(crate) fn quote(channel: &str) -> String {
    postgres_protocol::escape::escape_identifier(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept_as_is() {
        assert_eq!(channel_name("backplane", "Chat"), "backplane__Chat");
        assert_ne!(channel_name("p", "Chat"), channel_name("p", "chat"));
    }

    #[test]
    fn long_names_fit_and_stay_distinct() {
        let a = format!("{}a", "x".repeat(99));
        let b = format!("{}b", "x".repeat(99));
        let (ca, cb) = (channel_name("p", &a), channel_name("p", &b));
        assert!(ca.len() <= MAX_CHANNEL_BYTES);
        assert!(ca.starts_with("p__xxx"));
        assert_ne!(ca, cb);
        assert_eq!(ca, channel_name("p", &a));
    }

    #[test]
    fn multibyte_names_are_cut_on_char_boundaries() {
        let hub = "日本語のハブの名前はとても長いのでチャンネル名に収まらない";
        let channel = channel_name("backplane", hub);
        assert!(channel.len() <= MAX_CHANNEL_BYTES, "{channel}");
        assert!(channel.starts_with("backplane__日本語"));
    }

    #[test]
    fn exactly_63_bytes_is_kept() {
        let hub = "h".repeat(MAX_CHANNEL_BYTES - "p__".len());
        assert_eq!(channel_name("p", &hub), format!("p__{hub}"));
        let longer = format!("{hub}h");
        assert_ne!(channel_name("p", &longer), format!("p__{longer}"));
    }

    #[test]
    fn nul_is_never_part_of_a_channel() {
        let channel = channel_name("p", "a\0b");
        assert!(!channel.contains('\0'));
        assert_ne!(channel, channel_name("p", "ab"));
    }

    #[test]
    fn quoting_escapes_double_quotes() {
        assert_eq!(quote(r#"a"b"#), r#""a""b""#);
    }
}
