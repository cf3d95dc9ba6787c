//! The subscriber task: reads the subscriber connection continuously,
//! fans messages out to subscriptions, and restores the connection after a
//! loss.
//!
//! The task owns the one authoritative set of hubs: the hubs with at least
//! one live subscription. Every restore subscribes from that set, so a hub
//! subscribed or dropped during an outage is neither forgotten nor revived.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use backplane_api::{BackplaneError, ErrorChain, Event, EventSender, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use crate::config::Config;
use crate::link::{CONNECT_TIMEOUT, Incoming, Link};
use crate::publisher;

/// A request from a [`RedisBackplane`](crate::RedisBackplane) handle or a
/// subscription guard.
pub(crate) enum Command {
    Subscribe {
        hub: String,
        id: u64,
        sender: EventSender,
        reply: oneshot::Sender<Result<()>>,
    },
    Unsubscribe {
        hub: String,
        id: u64,
    },
}

/// A hub with live subscriptions.
struct HubState {
    channel: String,
    senders: Vec<(u64, EventSender)>,
    /// When the hub's subscription was lost, while it is being restored.
    lost_since: Option<Instant>,
}

pub(crate) struct Worker {
    link: Link,
    config: Arc<Config>,
    commands: mpsc::UnboundedReceiver<Command>,
    hubs: HashMap<String, HubState>,
    backoff: ExponentialBackoff,
    attempt: u32,
    /// When to try the next restore; `None` while nothing is lost.
    retry_at: Option<Instant>,
    /// Whether the connection is down as a whole (not just some hubs).
    link_lost_since: Option<Instant>,
}

impl Worker {
    pub(crate) fn new(
        link: Link,
        config: Arc<Config>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> Self {
        let backoff = backoff(&config);
        Self {
            link,
            config,
            commands,
            hubs: HashMap::new(),
            backoff,
            attempt: 0,
            retry_at: None,
            link_lost_since: None,
        }
    }

    /// Runs until every handle and subscription is dropped.
    pub(crate) async fn run(mut self) {
        loop {
            let retry_at = self.retry_at;
            let retry = async move {
                match retry_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                incoming = self.link.next() => match incoming {
                    Incoming::Message { channel, payload } => self.deliver(&channel, &payload),
                    Incoming::Lost { reason, channels } => self.lost(&reason, channels),
                },
                () = retry => self.restore().await,
            }
        }
        tracing::debug!("redis subscriber task stopped");
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Subscribe {
                hub,
                id,
                sender,
                reply,
            } => {
                let result = self.subscribe(hub, id, sender).await;
                let _ = reply.send(result);
            }
            Command::Unsubscribe { hub, id } => self.unsubscribe(&hub, id).await,
        }
    }

    async fn subscribe(&mut self, hub: String, id: u64, sender: EventSender) -> Result<()> {
        // A hub already subscribed only gains a subscriber; one being
        // restored cannot promise delivery yet.
        if let Some(state) = self.hubs.get_mut(&hub) {
            if state.lost_since.is_some() {
                return Err(BackplaneError::NotConnected);
            }
            state.senders.push((id, sender));
            return Ok(());
        }
        if !self.link.is_up() {
            return Err(BackplaneError::NotConnected);
        }

        let channel = self.config.channel(&hub);
        match timeout(self.config.query_timeout, self.link.subscribe(&channel)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(BackplaneError::transient(
                    "redis refused the subscription",
                    error,
                ));
            }
            Err(elapsed) => {
                return Err(BackplaneError::transient(
                    "redis subscribe timed out",
                    elapsed,
                ));
            }
        }
        tracing::debug!(hub = %hub, channel = %channel, "subscribed");
        self.hubs.insert(
            hub,
            HubState {
                channel,
                senders: vec![(id, sender)],
                lost_since: None,
            },
        );
        Ok(())
    }

    async fn unsubscribe(&mut self, hub: &str, id: u64) {
        let Some(state) = self.hubs.get_mut(hub) else {
            return;
        };
        state.senders.retain(|(sid, _)| *sid != id);
        if !state.senders.is_empty() {
            return;
        }
        let Some(state) = self.hubs.remove(hub) else {
            return;
        };

        // The hub has left the authoritative set, so a restore will not
        // subscribe it again; a failure here only leaves an unread channel
        // until the connection is next replaced.
        let channel = state.channel;
        match timeout(self.config.query_timeout, self.link.unsubscribe(&channel)).await {
            Ok(Ok(())) => tracing::debug!(hub, channel = %channel, "unsubscribed"),
            Ok(Err(error)) => {
                tracing::debug!(hub, channel = %channel, %error, "unsubscribe failed");
            }
            Err(_) => tracing::debug!(hub, channel = %channel, "unsubscribe timed out"),
        }
    }

    fn deliver(&mut self, channel: &[u8], payload: &[u8]) {
        let channel = String::from_utf8_lossy(channel);
        let Some(hub) = channel
            .strip_prefix(self.config.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            tracing::warn!(channel = %channel, "message on an unexpected channel skipped");
            return;
        };
        let Some(state) = self.hubs.get_mut(hub) else {
            // Left over from a hub unsubscribed a moment ago.
            tracing::trace!(hub, channel = %channel, "message for a dropped hub skipped");
            return;
        };

        let envelopes = match publisher::decode(payload) {
            Ok(envelopes) => envelopes,
            Err(error) => {
                tracing::warn!(
                    hub,
                    channel = %channel,
                    bytes = payload.len(),
                    error = %ErrorChain(&error),
                    "undecodable message skipped",
                );
                return;
            }
        };
        for envelope in envelopes {
            if envelope.hub != hub {
                tracing::warn!(
                    hub,
                    channel = %channel,
                    envelope_hub = %envelope.hub,
                    "envelope for another hub skipped",
                );
                continue;
            }
            let envelope = Arc::new(envelope);
            state
                .senders
                .retain(|(_, sender)| sender.send(Event::Envelope(envelope.clone())));
        }
    }

    /// Reports a loss to the affected subscriptions and schedules a
    /// restore.
    fn lost(&mut self, reason: &str, channels: Option<Vec<String>>) {
        let now = Instant::now();
        let mut affected = 0;
        for (hub, state) in &mut self.hubs {
            let hit = channels
                .as_ref()
                .is_none_or(|channels| channels.contains(&state.channel));
            if !hit || state.lost_since.is_some() {
                continue;
            }
            state.lost_since = Some(now);
            affected += 1;
            for (_, sender) in &state.senders {
                sender.send(Event::ConnectionLost {
                    reason: reason.to_owned(),
                });
            }
            tracing::trace!(hub = %hub, channel = %state.channel, "subscription lost");
        }
        if channels.is_none() && self.link_lost_since.is_none() {
            self.link_lost_since = Some(now);
        }
        tracing::warn!(
            reason,
            hubs = affected,
            "redis subscriptions lost; reconnecting"
        );
        if self.retry_at.is_none() {
            self.schedule_retry();
        }
    }

    fn schedule_retry(&mut self) {
        let delay = self
            .backoff
            .next()
            .unwrap_or(self.config.backoff_max)
            .min(self.config.backoff_max);
        self.retry_at = Some(Instant::now() + delay);
    }

    /// One restore attempt: resubscribe from the authoritative set, then
    /// report the end of the gap to every hub that had one.
    async fn restore(&mut self) {
        self.attempt += 1;
        let attempt = self.attempt;
        let all: Vec<String> = self.hubs.values().map(|s| s.channel.clone()).collect();
        let lost: Vec<String> = self
            .hubs
            .values()
            .filter(|s| s.lost_since.is_some())
            .map(|s| s.channel.clone())
            .collect();

        let result = timeout(CONNECT_TIMEOUT, self.link.restore(&all, &lost)).await;
        let failure = match result {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("timed out".to_owned()),
        };
        if let Some(error) = failure {
            self.schedule_retry();
            let delay = self
                .retry_at
                .map_or(Duration::ZERO, |at| at - Instant::now());
            tracing::warn!(
                attempt,
                hubs = lost.len(),
                %error,
                retry_in = ?delay,
                "redis resubscribe failed",
            );
            return;
        }

        let now = Instant::now();
        for (hub, state) in &mut self.hubs {
            if let Some(since) = state.lost_since.take() {
                let downtime = now - since;
                state
                    .senders
                    .retain(|(_, sender)| sender.send(Event::Resubscribed { downtime }));
                tracing::trace!(hub = %hub, ?downtime, "subscription restored");
            }
        }
        let downtime = self.link_lost_since.take().map(|since| now - since);
        tracing::info!(
            attempt,
            hubs = lost.len(),
            ?downtime,
            "redis subscriptions restored",
        );
        self.attempt = 0;
        self.retry_at = None;
        self.backoff = backoff(&self.config);
    }
}

fn backoff(config: &Config) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(config.backoff_min)
        .with_max_delay(config.backoff_max)
        .with_jitter()
        .without_max_times()
        .build()
}
