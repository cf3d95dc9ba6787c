//! The notification frame: how envelopes are laid out in `NOTIFY`
//! payloads.
//!
//! A payload is text of at most [`MAX_NOTIFICATION_BYTES`] bytes, in one of
//! three forms told apart by how it starts:
//!
//! - `{` — one envelope, exactly as [`codec::encode`] writes it;
//! - `[` — a batch: a JSON array of envelopes, in publish order;
//! - `chunk ` — one piece of a larger message:
//!   `chunk <id> <index>/<count>\n<piece>`, where `<id>` names the message
//!   (1 to 64 ASCII letters, digits, `-` or `_`), `<index>` counts from 0,
//!   and the pieces joined in index order form a `{` or `[` payload.
//!
//! Pieces are cut on character boundaries, so each is valid text. All the
//! pieces of one message are sent in one transaction: PostgreSQL delivers
//! them together, in order, with nothing else on the channel in between.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use backplane_api::{BackplaneError, Envelope, ErrorChain, codec};

/// The largest payload PostgreSQL accepts: it refuses 8000 bytes or more.
pub(crate) const MAX_NOTIFICATION_BYTES: usize = 7999;

/// The start of a chunk frame.
const CHUNK_TAG: &str = "chunk ";

/// The longest message id a receiver accepts.
const MAX_ID_BYTES: usize = 64;

/// Room left for the piece in a chunk frame, whatever its index and count:
/// the header takes the tag, the id, two numbers of at most 10 digits, a
/// space, a slash and a newline.
fn piece_room(id: &str) -> usize {
    MAX_NOTIFICATION_BYTES - (CHUNK_TAG.len() + id.len() + 1 + 10 + 1 + 10 + 1)
}

/// Packs encoded envelopes into one payload: the envelope itself when there
/// is one, a batch otherwise (the shared format of [`codec::encode_batch`]).
pub(crate) fn pack(envelopes: &[&str]) -> String {
    codec::encode_batch(envelopes)
}

/// The length of [`pack`]'s output for `count` envelopes of `total`
/// bytes together.
pub(crate) fn packed_len(total: usize, count: usize) -> usize {
    codec::batch_len(total, count)
}

/// Splits `text` into chunk frames of message `id`, each at most
/// [`MAX_NOTIFICATION_BYTES`] long, cutting only on character boundaries.
pub(crate) fn chunks(id: &str, text: &str) -> Vec<String> {
    let room = piece_room(id);
    let mut pieces = Vec::with_capacity(text.len() / room + 1);
    let mut rest = text;
    loop {
        let mut end = rest.len().min(room);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }

    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, piece)| format!("{CHUNK_TAG}{id} {index}/{count}\n{piece}"))
        .collect()
}

/// Hands out message ids for chunked messages: a random prefix per
/// instance and a counter, so ids differ across instances and restarts.
#[derive(Debug)]
pub(crate) struct MessageIds {
    prefix: String,
    next: AtomicU64,
}

impl MessageIds {
    pub(crate) fn new() -> Self {
        // The standard library seeds every `RandomState` from the operating
        // system's random source; mixing in the time and process id only
        // guards against a platform where it does not.
        let mut hasher = std::hash::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.write_u128(now.as_nanos());
        hasher.write_u32(std::process::id());
        Self {
            prefix: format!("{:016x}", hasher.finish()),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.prefix)
    }
}

/// A payload, parsed far enough to know what to do with it.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// One envelope or a batch, ready to decode with [`decode`].
    Whole(&'a str),
    /// A piece of a larger message.
    Chunk(Chunk<'a>),
}

/// A piece of a chunked message.
#[derive(Debug, PartialEq)]
pub(crate) struct Chunk<'a> {
    pub(crate) id: &'a str,
    pub(crate) index: u32,
    pub(crate) count: u32,
    pub(crate) piece: &'a str,
}

/// Why a payload was skipped.
#[derive(Debug)]
pub(crate) enum FrameError {
    Empty,
    Unknown,
    ChunkHeader,
    Decode(BackplaneError),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty payload"),
            Self::Unknown => f.write_str("payload is not a backplane frame"),
            Self::ChunkHeader => f.write_str("malformed chunk header"),
            Self::Decode(error) => write!(f, "{}", ErrorChain(error)),
        }
    }
}

/// Tells which frame a payload is.
pub(crate) fn parse(payload: &str) -> Result<Frame<'_>, FrameError> {
    let trimmed = payload.trim_start();
    if trimmed.is_empty() {
        return Err(FrameError::Empty);
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return Ok(Frame::Whole(trimmed));
    }
    let Some(rest) = payload.strip_prefix(CHUNK_TAG) else {
        return Err(FrameError::Unknown);
    };
    parse_chunk(rest)
        .map(Frame::Chunk)
        .ok_or(FrameError::ChunkHeader)
}

/// Parses `<id> <index>/<count>\n<piece>`.
fn parse_chunk(rest: &str) -> Option<Chunk<'_>> {
    let (header, piece) = rest.split_once('\n')?;
    let (id, position) = header.split_once(' ')?;
    let (index, count) = position.split_once('/')?;

    let id_ok = !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let index: u32 = index.parse().ok()?;
    let count: u32 = count.parse().ok()?;
    (id_ok && index < count).then_some(Chunk {
        id,
        index,
        count,
        piece,
    })
}

/// Decodes a whole (unchunked) payload into its envelopes.
pub(crate) fn decode(text: &str) -> Result<Vec<Envelope>, FrameError> {
    codec::decode_batch(text.as_bytes()).map_err(FrameError::Decode)
}

/// Joins the pieces of chunked messages, one message at a time per
/// channel.
///
/// The pieces of one message come back to back on their channel (they are
/// committed in one transaction, and PostgreSQL never interleaves two
/// transactions' notifications), so anything else arriving on that channel
/// before the last piece means the message is incomplete: it is discarded.
/// Memory is bounded by one partial message, of at most the maximum message
/// size, per channel.
///
/// A message is reported once, when it is found bad; the pieces of it that
/// still arrive are skipped quietly. To tell them, the reassembler keeps
/// the id of the last bad message of each channel, and only that one.
#[derive(Debug)]
pub(crate) struct Reassembler {
    partials: HashMap<String, Partial>,
    /// Per channel, the last message discarded (or never started) whose
    /// remaining pieces are skipped without a warning.
    skipping: HashMap<String, String>,
    max_message_size: usize,
}

#[derive(Debug)]
struct Partial {
    id: String,
    count: u32,
    next: u32,
    text: String,
}

/// What became of a piece given to [`Reassembler::push`].
#[derive(Debug, PartialEq)]
pub(crate) enum Pushed {
    /// It was the last piece: here is the whole message.
    Whole(String),
    /// It was kept; more pieces are to come.
    Pending,
    /// Its message was found bad now and dropped, with a warning.
    Discarded,
    /// It belongs to a message already dropped and reported: skipped
    /// quietly.
    Skipped,
}

impl Reassembler {
    pub(crate) fn new(max_message_size: usize) -> Self {
        Self {
            partials: HashMap::new(),
            skipping: HashMap::new(),
            max_message_size,
        }
    }

    /// Takes one piece; returns the whole message once its last piece is
    /// in. A bad message is logged here, once, and dropped.
    pub(crate) fn push(&mut self, channel: &str, chunk: Chunk<'_>) -> Pushed {
        // Continue the message in progress on this channel, if this is its
        // next piece; anything else means that message lost a piece.
        let mut reported = false;
        if let Some(partial) = self.partials.remove(channel) {
            if partial.id == chunk.id && partial.next == chunk.index && partial.count == chunk.count
            {
                return self.append(channel, partial, chunk.piece);
            }
            tracing::warn!(
                channel,
                message_id = partial.id,
                received = partial.next,
                count = partial.count,
                "discarding chunked message: a piece is missing; skipping its other pieces",
            );
            self.skip(channel, partial.id);
            reported = true;
        }

        // A later piece of a message already reported goes quietly.
        if chunk.index != 0 && self.skipping.get(channel).is_some_and(|id| id == chunk.id) {
            tracing::debug!(
                channel,
                message_id = chunk.id,
                index = chunk.index,
                count = chunk.count,
                "skipping a piece of a discarded chunked message",
            );
            if chunk.index + 1 == chunk.count {
                self.skipping.remove(channel);
            }
            return if reported {
                Pushed::Discarded
            } else {
                Pushed::Skipped
            };
        }

        if chunk.index != 0 {
            tracing::warn!(
                channel,
                message_id = chunk.id,
                index = chunk.index,
                count = chunk.count,
                "skipping chunked message whose first piece was not received, \
                 and its other pieces",
            );
            if chunk.index + 1 < chunk.count {
                self.skip(channel, chunk.id.to_owned());
            }
            return Pushed::Discarded;
        }
        self.skipping.remove(channel);
        let partial = Partial {
            id: chunk.id.to_owned(),
            count: chunk.count,
            next: 0,
            text: String::new(),
        };
        self.append(channel, partial, chunk.piece)
    }

    fn append(&mut self, channel: &str, mut partial: Partial, piece: &str) -> Pushed {
        if partial.text.len() + piece.len() > self.max_message_size {
            tracing::warn!(
                channel,
                message_id = partial.id,
                bytes = partial.text.len() + piece.len(),
                max = self.max_message_size,
                count = partial.count,
                "discarding chunked message larger than the maximum message size, \
                 and skipping its other pieces",
            );
            if partial.next + 1 < partial.count {
                self.skip(channel, partial.id);
            }
            return Pushed::Discarded;
        }
        partial.text.push_str(piece);
        partial.next += 1;
        if partial.next == partial.count {
            return Pushed::Whole(partial.text);
        }
        self.partials.insert(channel.to_owned(), partial);
        Pushed::Pending
    }

    /// Remembers `id` as the message whose remaining pieces on `channel`
    /// are skipped quietly, in place of any earlier one.
    fn skip(&mut self, channel: &str, id: String) {
        self.skipping.insert(channel.to_owned(), id);
    }

    /// Notes that something other than a chunk arrived on `channel`: a
    /// message in progress there will never be completed.
    pub(crate) fn interrupt(&mut self, channel: &str) {
        if let Some(partial) = self.partials.remove(channel) {
            tracing::warn!(
                channel,
                message_id = partial.id,
                received = partial.next,
                count = partial.count,
                "discarding chunked message interrupted by another notification",
            );
            self.skip(channel, partial.id);
        }
    }

    /// Forgets every message in progress (their pieces cannot arrive on a
    /// new connection); returns how many there were.
    pub(crate) fn clear(&mut self) -> usize {
        let dropped = self.partials.len();
        self.partials.clear();
        self.skipping.clear();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_one_envelope_as_itself_and_more_as_an_array() {
        assert_eq!(pack(&[r#"{"a":1}"#]), r#"{"a":1}"#);
        let two = pack(&[r#"{"a":1}"#, r#"{"b":2}"#]);
        assert_eq!(two, r#"[{"a":1},{"b":2}]"#);
        assert_eq!(packed_len(14, 2), two.len());
        assert_eq!(packed_len(7, 1), 7);
    }

    #[test]
    fn chunks_fit_and_rejoin_across_multibyte_text() {
        let text = "a€😀日".repeat(3000);
        let frames = chunks("id-1", &text);
        assert!(frames.len() > 1);
        let mut reassembler = Reassembler::new(1 << 20);
        let mut outcomes = Vec::new();
        for frame in &frames {
            assert!(frame.len() <= MAX_NOTIFICATION_BYTES);
            let Ok(Frame::Chunk(chunk)) = parse(frame) else {
                panic!("not a chunk: {frame:.40}");
            };
            outcomes.push(reassembler.push("c", chunk));
        }
        let whole = outcomes.pop();
        assert_eq!(whole, Some(Pushed::Whole(text)));
        assert!(outcomes.iter().all(|o| *o == Pushed::Pending));
    }

    /// Parses the frames of one message, for pushing piece by piece.
    fn pieces(frames: &[String]) -> Vec<Chunk<'_>> {
        frames
            .iter()
            .map(|frame| match parse(frame) {
                Ok(Frame::Chunk(chunk)) => chunk,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Pushes every piece on channel `c`; returns what became of each.
    fn push_all(reassembler: &mut Reassembler, frames: &[String]) -> Vec<Pushed> {
        pieces(frames)
            .into_iter()
            .map(|chunk| reassembler.push("c", chunk))
            .collect()
    }

    /// How many of the outcomes were reported with a warning.
    fn reported(outcomes: &[Pushed]) -> usize {
        outcomes.iter().filter(|o| **o == Pushed::Discarded).count()
    }

    #[test]
    fn a_missing_piece_discards_the_message_once() {
        let frames = chunks("m", &"x".repeat(40_000));
        assert_eq!(frames.len(), 6);
        let mut reassembler = Reassembler::new(1 << 20);
        let chunk = |i: usize| pieces(&frames).swap_remove(i);

        // Piece 1 is lost: one warning, then the rest go quietly.
        assert_eq!(reassembler.push("c", chunk(0)), Pushed::Pending);
        assert_eq!(reassembler.push("c", chunk(2)), Pushed::Discarded);
        for i in 3..6 {
            assert_eq!(reassembler.push("c", chunk(i)), Pushed::Skipped);
        }
        assert!(reassembler.partials.is_empty());
        assert!(
            reassembler.skipping.is_empty(),
            "forgotten after its last piece"
        );

        // Interrupted by another notification: reported there, once.
        assert_eq!(reassembler.push("c", chunk(0)), Pushed::Pending);
        reassembler.interrupt("c");
        for i in 1..6 {
            assert_eq!(reassembler.push("c", chunk(i)), Pushed::Skipped);
        }

        // The first piece is lost: one warning for the whole message.
        let outcomes: Vec<Pushed> = (1..6).map(|i| reassembler.push("c", chunk(i))).collect();
        assert_eq!(outcomes[0], Pushed::Discarded);
        assert_eq!(reported(&outcomes), 1);

        // A message that follows is unaffected.
        let next = chunks("n", &"y".repeat(20_000));
        let outcomes = push_all(&mut reassembler, &next);
        assert!(matches!(outcomes.last(), Some(Pushed::Whole(_))));
    }

    #[test]
    fn oversized_messages_are_dropped_with_one_warning() {
        // As a foreign sender might: 200 pieces of 7900 bytes, well above
        // the maximum message size.
        let frames: Vec<String> = (0..200)
            .map(|i| format!("chunk big {i}/200\n{}", "x".repeat(7900)))
            .collect();
        let mut reassembler = Reassembler::new(1 << 20);
        let outcomes = push_all(&mut reassembler, &frames);
        assert_eq!(reported(&outcomes), 1);
        let first_bad = outcomes
            .iter()
            .position(|o| *o == Pushed::Discarded)
            .unwrap();
        assert_eq!(first_bad, (1 << 20) / 7900);
        assert!(outcomes[..first_bad].iter().all(|o| *o == Pushed::Pending));
        assert!(
            outcomes[first_bad + 1..]
                .iter()
                .all(|o| *o == Pushed::Skipped)
        );
        assert!(reassembler.partials.is_empty());
        assert!(reassembler.skipping.is_empty());

        // Memory of skipped messages stays at one per channel.
        let mut reassembler = Reassembler::new(10_000);
        for id in ["a", "b", "c"] {
            let frames = chunks(id, &"x".repeat(40_000));
            let outcomes = push_all(&mut reassembler, &frames[..3]);
            assert_eq!(reported(&outcomes), 1);
        }
        assert_eq!(reassembler.skipping.len(), 1);
        assert_eq!(reassembler.skipping["c"], "c");
        assert_eq!(reassembler.clear(), 0);
        assert!(reassembler.skipping.is_empty());
    }

    #[test]
    fn rejects_foreign_payloads() {
        for payload in ["", "  ", "hello", "chunk", "chunk x 0/1", "chunk x 1/1\n{}"] {
            assert!(parse(payload).is_err(), "{payload:?}");
        }
        for payload in [
            "chunk  0/1\n",
            "chunk x/y 0/1\n",
            "chunk x 0/0\n",
            "chunk x -1/2\n",
        ] {
            assert!(parse(payload).is_err(), "{payload:?}");
        }
        assert!(matches!(parse("{garbage"), Ok(Frame::Whole(_))));
        assert!(decode("{garbage").is_err());
        assert!(decode("[1,2]").is_err());
        assert!(decode("[").is_err());
    }

    #[test]
    fn message_ids_are_distinct_and_valid() {
        let ids = MessageIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        let frame = chunks(&a, "{}").remove(0);
        assert!(matches!(
            parse(&frame),
            Ok(Frame::Chunk(Chunk { count: 1, .. }))
        ));
    }
}
