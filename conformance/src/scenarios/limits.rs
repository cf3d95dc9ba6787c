//! Hub isolation, payload sizes and text the bus must carry unchanged.

use std::sync::Arc;

use backplane_api::{
    Action, Envelope, ErrorChain, Event, Hub, Message, ServerId, Subscription, Target, Transport,
    codec,
};

use crate::TransportFactory;
use crate::fixture::{Failure, Instance, QUEUE_CAPACITY, Room, SAY, ensure, fail, hub_name};

pub(crate) async fn hub_isolation(factory: &dyn TransportFactory) -> Result<(), Failure> {
    // Names a transport could confuse: equal but for case, and longer than
    // a channel name may be (PostgreSQL allows 63 bytes), equal but for the
    // last character.
    let base = hub_name("isolation");
    let long = "x".repeat(90);
    let names = [
        format!("{base}-chat"),
        format!("{base}-Chat"),
        format!("{base}-{long}-a"),
        format!("{base}-{long}-b"),
    ];
    let capabilities = factory.capabilities();
    let timeout = capabilities.delivery_timeout;

    // Two instances, each with one hub of every name over its one
    // transport, plus a third that only watches every name's channel.
    let make = || async {
        factory
            .instance()
            .await
            .map_err(|e| fail!("the factory could not make a transport: {}", ErrorChain(&e)))
    };
    let transports: [Arc<dyn Transport>; 2] = [make().await?, make().await?];
    let watcher = make().await?;
    let mut watches: Vec<Subscription> = Vec::new();
    for name in &names {
        watches.push(watcher.subscribe(name).await?);
    }

    // The same connection ids, users and groups in every hub.
    let mut rooms = Vec::new();
    for name in &names {
        let mut room = Room::empty(name.clone(), &capabilities);
        for transport in &transports {
            let hub = Hub::builder(name, transport.clone())
                .queue_capacity(QUEUE_CAPACITY)
                .build()
                .await?;
            room.add_hub(hub);
        }
        room.connect(0, "c", Some("u"), &["g"]).await?;
        room.connect(1, "d", Some("u"), &["g"]).await?;
        rooms.push(room);
    }
    for (n, room) in rooms.iter_mut().enumerate() {
        room.send(0, Target::All, &format!("hub{n}-all")).await?;
        room.send(0, Target::connection("d"), &format!("hub{n}-d"))
            .await?;
        room.send(1, Target::group("g"), &format!("hub{n}-g"))
            .await?;
        room.send(1, Target::user("u"), &format!("hub{n}-u"))
            .await?;
    }
    for room in rooms {
        room.finish().await?;
    }

    // Below the hubs: no subscriber of one name heard an envelope of
    // another. A marker published on each name closes its watch.
    for (name, watch) in names.iter().zip(&mut watches) {
        let marker = ServerId::random();
        let message = Arc::new(Message::new(SAY, "watch-marker")?);
        let action = Action::Send {
            target: Target::connection("nobody"),
            message,
        };
        let envelope = Envelope::new(name.as_str(), marker.clone(), 0, action);
        transports[0].publish(Arc::new(envelope)).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = tokio::time::timeout_at(deadline, watch.recv()).await;
            let envelope = match event {
                Ok(Some(Event::Envelope(envelope))) => envelope,
                Ok(Some(other)) => {
                    return Err(fail!("the watch of hub {name:?} reported {other:?}"));
                }
                Ok(None) => return Err(fail!("the watch of hub {name:?} ended")),
                Err(_) => {
                    return Err(fail!(
                        "a marker published on hub {name:?} did not reach its subscriber \
                         within {timeout:?}"
                    ));
                }
            };
            ensure!(
                envelope.hub == *name,
                "a subscriber of hub {name:?} received an envelope of hub {:?}",
                envelope.hub
            );
            if envelope.origin == marker {
                break;
            }
        }
    }
    Ok(())
}

/// How the filler of a sized payload is made.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// ASCII only.
    Ascii,
    /// Four-byte characters after `n` ASCII bytes, so that every split
    /// position relative to a character occurs across the cases.
    Emoji(usize),
}

fn filler(len: usize, fill: Fill) -> String {
    match fill {
        Fill::Ascii => "x".repeat(len),
        Fill::Emoji(shift) => {
            let shift = shift.min(len);
            let emoji = (len - shift) / 4;
            let rest = len - shift - emoji * 4;
            format!(
                "{}{}{}",
                "x".repeat(shift),
                "😀".repeat(emoji),
                "y".repeat(rest)
            )
        }
    }
}

/// A message whose envelope from `hub` to `target`, with sequence number
/// `id`, encodes to exactly `size` bytes.
fn sized(
    hub: &Instance,
    target: &Target,
    size: usize,
    fill: Fill,
    id: u64,
) -> Result<Arc<Message>, Failure> {
    let empty = Arc::new(Message::new(SAY, "")?);
    let action = Action::Send {
        target: target.clone(),
        message: empty,
    };
    let envelope = Envelope::new(hub.name(), hub.server_id().clone(), id, action);
    let overhead = codec::encode(&envelope)?.len();
    ensure!(
        size >= overhead,
        "a declared size of {size} bytes is smaller than an empty envelope ({overhead})"
    );
    let message = Message::new(SAY, &filler(size - overhead, fill))?;
    Ok(Arc::new(message))
}

pub(crate) async fn payload_limits_and_non_ascii(
    factory: &dyn TransportFactory,
) -> Result<(), Failure> {
    let capabilities = factory.capabilities();
    let mut room = Room::new(factory, "bytes-üñ日", 3).await?;
    room.connect(0, "ß-local", None, &["grüppe 🎉"]).await?;
    room.connect(1, "ü-conn-日本", Some("ユーザー"), &["grüppe 🎉"])
        .await?;

    // Text a text-only bus or a SQL layer could mangle.
    let text = "héllo wörld — 日本語 😀 👨‍👩‍👧 \u{0} \u{7f} \u{2028} \"quoted\" \\ \
                'single' $$ dollars $1 %s \n\t\r";
    let args = serde_json::json!({ "text": text, "ключ": ["ä", 1.5, null, "\u{ffff}"] });
    let message = Arc::new(Message::new("say/ünïcode ✓", &args)?);
    for target in [
        Target::group("grüppe 🎉"),
        Target::user("ユーザー"),
        Target::connection("ü-conn-日本"),
    ] {
        room.send_message(0, target, message.clone()).await?;
    }
    room.verify().await?;

    // Sizes: around each declared boundary, at the maximum, and one byte
    // over it (refused); without a maximum, two large messages.
    let mut cases: Vec<(usize, Fill)> = Vec::new();
    let max = capabilities.max_message_size;
    let fits = |size: usize| max.is_none_or(|max| size <= max);
    for &boundary in &capabilities.size_boundaries {
        for size in [boundary - 1, boundary, boundary + 1, 2 * boundary + 1] {
            if fits(size) {
                cases.push((size, Fill::Ascii));
                cases.extend((0..4).map(|shift| (size, Fill::Emoji(shift))));
            }
        }
    }
    match max {
        Some(max) => {
            cases.push((max - 1, Fill::Ascii));
            cases.push((max, Fill::Ascii));
            cases.extend((0..4).map(|shift| (max, Fill::Emoji(shift))));
        }
        None => {
            cases.push((64 * 1024, Fill::Emoji(1)));
            cases.push((1024 * 1024, Fill::Ascii));
        }
    }

    // Instance 2 sends; the sequence number in its envelopes, part of their
    // size, is the number of envelopes it published so far (none failed).
    let sender = 2;
    let receiver_target = Target::connection("ü-conn-日本");
    let mut next_id = room.hub(sender).stats().published;
    for (size, fill) in cases {
        let message = sized(room.hub(sender), &receiver_target, size, fill, next_id)?;
        next_id += 1;
        room.send_message(sender, receiver_target.clone(), message)
            .await
            .map_err(|Failure(e)| fail!("an envelope of {size} bytes ({fill:?}): {e}"))?;
    }

    if let Some(max) = max {
        let message = sized(
            room.hub(sender),
            &receiver_target,
            max + 1,
            Fill::Ascii,
            next_id,
        )?;
        let result = room
            .hub(sender)
            .send_message(receiver_target.clone(), message)
            .await;
        ensure!(
            matches!(&result, Err(e) if e.is_payload_too_large()),
            "an envelope of {} bytes, one over the declared maximum, gave {:?} instead \
             of PayloadTooLarge",
            max + 1,
            result.map_err(|e| ErrorChain(&e).to_string())
        );
    }
    room.finish().await
}
