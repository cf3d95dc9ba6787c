//! Scenarios written once and run against a standalone server and a
//! cluster.

use std::time::Duration;

use backplane_api::{BackplaneError, Event, Hub, Publisher, Subscriber, Target};
use tokio::time::{sleep, timeout};

use super::*;

/// Two instances, each with its own transport, exchange a message through
/// their hubs.
pub async fn hub_round_trip(server: Server) {
    let prefix = prefix();
    let a = Hub::new("chat", backplane(&server.url(), &prefix).await)
        .await
        .unwrap();
    let b = Hub::new("chat", backplane(&server.url(), &prefix).await)
        .await
        .unwrap();
    let mut on_a = a.register("conn-a".into(), Some("ann".into())).unwrap();
    let mut on_b = b.register("conn-b".into(), Some("bob".into())).unwrap();

    a.send(Target::user("bob"), "hello", &"from a")
        .await
        .unwrap();
    let message = timeout(WAIT, on_b.recv()).await.unwrap().unwrap();
    assert_eq!(message.method(), "hello");
    assert_eq!(message.args::<String>().unwrap(), "from a");

    b.send(Target::All, "news", &1).await.unwrap();
    let on_a_news = timeout(WAIT, on_a.recv()).await.unwrap().unwrap();
    let on_b_news = timeout(WAIT, on_b.recv()).await.unwrap().unwrap();
    assert_eq!(on_a_news.method(), "news");
    assert_eq!(on_b_news.method(), "news");

    // Each instance delivered b's send once: nothing more is queued.
    assert!(
        timeout(Duration::from_millis(300), on_b.recv())
            .await
            .is_err()
    );
}

/// An envelope over the maximum size is refused and nothing is sent.
pub async fn oversized(server: Server) {
    let prefix = prefix();
    let bus = RedisBackplane::builder(&server.url())
        .channel_prefix(&prefix)
        .max_message_size(1000)
        .build()
        .await
        .unwrap();
    let mut subscription = bus.subscribe("h").await.unwrap();

    let big = "x".repeat(2000);
    let message = backplane_api::Message::new("big", &big).unwrap();
    let action = backplane_api::Action::Send {
        target: Target::All,
        message: Arc::new(message),
    };
    let too_big = Envelope::new("h", ServerId::from("tester"), 1, action);
    let error = bus.publish(Arc::new(too_big)).await.unwrap_err();
    assert!(
        matches!(error, BackplaneError::PayloadTooLarge { max: 1000, size } if size > 2000),
        "{error:?}"
    );

    // The default (1 MiB) refuses a 2 MiB envelope too.
    let default = backplane(&server.url(), &prefix).await;
    let huge = envelope_of_size("h", 2 * 1024 * 1024);
    let error = default.publish(huge).await.unwrap_err();
    assert!(error.is_payload_too_large(), "{error:?}");

    // A small one still goes through, and is the first thing received.
    bus.publish(envelope("h", 2)).await.unwrap();
    let seen = wait_event(&mut subscription, "small envelope", |e| is_envelope(e, 2)).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
}

fn envelope_of_size(hub: &str, bytes: usize) -> Arc<Envelope> {
    let message = backplane_api::Message::new("big", &"y".repeat(bytes)).unwrap();
    let action = backplane_api::Action::Send {
        target: Target::All,
        message: Arc::new(message),
    };
    Arc::new(Envelope::new(hub, ServerId::from("tester"), 1, action))
}

/// Several subscriptions to one hub share one Redis subscription, which
/// ends with the last of them; hubs stay isolated.
pub async fn fan_out_and_unsubscribe(server: Server) {
    let prefix = prefix();
    let bus = backplane(&server.url(), &prefix).await;
    let mut first = bus.subscribe("h").await.unwrap();
    let mut second = bus.subscribe("h").await.unwrap();
    let mut other = bus.subscribe("other").await.unwrap();
    assert_eq!(server.channels(&prefix).await, 2);

    bus.publish(envelope("h", 1)).await.unwrap();
    wait_event(&mut first, "first", |e| is_envelope(e, 1)).await;
    wait_event(&mut second, "second", |e| is_envelope(e, 1)).await;
    bus.publish(envelope("other", 2)).await.unwrap();
    let seen = wait_event(&mut other, "other", |e| is_envelope(e, 2)).await;
    assert_eq!(seen.len(), 1, "hub `other` received {seen:?}");

    drop(first);
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        server.channels(&prefix).await,
        2,
        "one subscription remains"
    );
    drop(second);
    wait_count("channels after the last drop", 1, || {
        server.channels(&prefix)
    })
    .await;

    // The hub can be subscribed again.
    let mut again = bus.subscribe("h").await.unwrap();
    bus.publish(envelope("h", 3)).await.unwrap();
    wait_event(&mut again, "again", |e| is_envelope(e, 3)).await;
}

/// Garbage published on a hub's channel is skipped and the read loop
/// keeps delivering.
pub async fn garbage_is_skipped(server: Server) {
    let prefix = prefix();
    let bus = backplane(&server.url(), &prefix).await;
    let mut subscription = bus.subscribe("h").await.unwrap();
    let channel = bus.channel_name("h");
    assert_eq!(channel, format!("{prefix}:h"));

    server.publish_raw(&channel, b"not an envelope").await;
    server.publish_raw(&channel, b"\xff\xfe\x00").await;
    // A valid envelope that names another hub does not belong here.
    let foreign = backplane_api::codec::encode(&envelope("elsewhere", 9)).unwrap();
    server.publish_raw(&channel, foreign.as_bytes()).await;
    bus.publish(envelope("h", 1)).await.unwrap();

    let seen = wait_event(&mut subscription, "envelope after garbage", |e| {
        is_envelope(e, 1)
    })
    .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// `CLIENT KILL TYPE pubsub`: the subscription reports the gap, comes
/// back, and later messages are delivered.
pub async fn survives_client_kill(server: Server) {
    let prefix = prefix();
    let bus = backplane(&server.url(), &prefix).await;
    let publisher = backplane(&server.url(), &prefix).await;
    let mut subscription = bus.subscribe("h").await.unwrap();

    assert!(
        server.kill_pubsub().await >= 1,
        "no pub/sub client was killed"
    );
    let seen = wait_event(&mut subscription, "resubscribed after kill", |e| {
        matches!(e, Event::Resubscribed { .. })
    })
    .await;
    assert!(
        matches!(seen.first(), Some(Event::ConnectionLost { .. })),
        "{seen:?}"
    );
    assert_eq!(server.channels(&prefix).await, 1);

    publish_eventually(&publisher, envelope("h", 7)).await;
    wait_event(&mut subscription, "message after kill", |e| {
        is_envelope(e, 7)
    })
    .await;
}

/// Many hubs and two kills half a second apart: every hub comes back.
pub async fn many_hubs_two_kills(server: Server) {
    const HUBS: usize = 200;
    let prefix = prefix();
    let bus = backplane(&server.url(), &prefix).await;
    let publisher = backplane(&server.url(), &prefix).await;
    let mut subscriptions = Vec::new();
    for i in 0..HUBS {
        subscriptions.push(bus.subscribe(&format!("hub-{i}")).await.unwrap());
    }
    assert_eq!(server.channels(&prefix).await, HUBS);

    assert!(
        server.kill_pubsub().await >= 1,
        "first kill found no client"
    );
    sleep(Duration::from_millis(500)).await;
    server.kill_pubsub().await;

    wait_count("channels after two kills", HUBS, || {
        server.channels(&prefix)
    })
    .await;
    for i in 0..HUBS {
        publish_eventually(&publisher, envelope(&format!("hub-{i}"), i as u64)).await;
    }
    for (i, subscription) in subscriptions.iter_mut().enumerate() {
        let seen = wait_event(subscription, &format!("hub-{i}"), |e| {
            is_envelope(e, i as u64)
        })
        .await;
        let lost = seen
            .iter()
            .filter(|e| matches!(e, Event::ConnectionLost { .. }))
            .count();
        let back = seen
            .iter()
            .filter(|e| matches!(e, Event::Resubscribed { .. }))
            .count();
        assert!(lost >= 1, "hub-{i} saw no loss: {seen:?}");
        assert_eq!(lost, back, "hub-{i}: {seen:?}");
    }
    assert_eq!(server.channels(&prefix).await, HUBS);
}

/// The server itself restarts: the subscription comes back on its own.
pub async fn survives_restart(mut private: PrivateRedis, cluster: bool) {
    let prefix = prefix();
    let url = if cluster {
        format!("redis+cluster://{}", &private.url()["redis://".len()..])
    } else {
        private.url()
    };
    let bus = backplane(&url, &prefix).await;
    assert_eq!(bus.is_cluster(), cluster);
    let mut subscription = bus.subscribe("h").await.unwrap();
    bus.publish(envelope("h", 1)).await.unwrap();
    wait_event(&mut subscription, "before restart", |e| is_envelope(e, 1)).await;

    private.stop().await;
    wait_event(&mut subscription, "loss", |e| {
        matches!(e, Event::ConnectionLost { .. })
    })
    .await;
    sleep(Duration::from_millis(500)).await;
    private.restart().await;
    if cluster {
        private.wait_cluster_ok().await;
    }

    let seen = wait_event(&mut subscription, "resubscribed after restart", |e| {
        matches!(e, Event::Resubscribed { .. })
    })
    .await;
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Envelope(_))),
        "{seen:?}"
    );
    publish_eventually(&bus, envelope("h", 2)).await;
    wait_event(&mut subscription, "after restart", |e| is_envelope(e, 2)).await;
}
