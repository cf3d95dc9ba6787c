//! The listening connection: one per backplane, read continuously by a
//! background task that fans notifications out to subscriptions, keeps
//! the connection healthy and restores it when it is lost.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backplane_api::{BackplaneError, ErrorChain, Event, EventSender, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_postgres::{AsyncMessage, Client, Notification};

use crate::channel::quote;
use crate::config::{PgConnection, Settings};
use crate::error::{is_connection_error, timed_out, wrap};
use crate::frame::{self, Frame, Pushed, Reassembler};

/// How long a closing listener waits for the server to acknowledge the
/// end of its session before it simply drops the socket.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the backplane's handles ask of the listener task.
pub(crate) enum Command {
    /// Deliver hub `hub` (carried on `channel`) to `sender`; answer once
    /// the server has confirmed the `LISTEN`.
    Subscribe {
        channel: String,
        hub: String,
        id: u64,
        sender: EventSender,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Stop delivering to subscription `id`.
    Unsubscribe { channel: String, id: u64 },
}

/// The subscriptions of one channel.
struct Route {
    hub: String,
    /// Tells this route from an earlier one of the same channel, so that a
    /// late `LISTEN` confirmation cannot confirm the wrong one.
    generation: u64,
    senders: Vec<(u64, EventSender)>,
    /// Whether the server confirmed the `LISTEN` on the current connection.
    confirmed: bool,
    /// Subscribe calls waiting for that confirmation.
    waiters: Vec<oneshot::Sender<Result<()>>>,
}

impl Route {
    fn broadcast(&self, event: &Event) {
        for (_, sender) in &self.senders {
            sender.send(event.clone());
        }
    }
}

/// A change of what the connection listens to. Changes run one at a time,
/// in order, so that an `UNLISTEN` and a later `LISTEN` of the same
/// channel cannot swap.
enum Control {
    Listen { channel: String, generation: u64 },
    Unlisten { channel: String },
}

/// Why a query on the listening connection failed.
enum QueryError {
    /// The connection is unusable; the string says why.
    Lost(String),
    /// The server refused this statement; the connection is fine.
    Refused(Arc<tokio_postgres::Error>),
}

type Running<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An open listening connection.
pub(crate) struct Link {
    client: Arc<Client>,
    connection: PgConnection,
    /// Notifications that arrived while the connection was being set up.
    backlog: Vec<Notification>,
}

impl Link {
    /// Connects and listens on `channels`, within the configured
    /// deadlines.
    pub(crate) async fn open(settings: &Settings, channels: &[String]) -> Result<Self> {
        let (client, mut connection) = settings.connect().await?;
        let mut backlog = Vec::new();
        if !channels.is_empty() {
            let sql: String = channels
                .iter()
                .map(|channel| format!("LISTEN {};", quote(channel)))
                .collect();

            // The connection must be read while the statement runs; what
            // it delivers meanwhile is kept for later.
            let listen = client.batch_execute(&sql);
            let drive = async {
                loop {
                    match poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(n))) => backlog.push(n),
                        Some(Ok(_)) => {}
                        Some(Err(error)) => return wrap("listening connection failed", error),
                        None => return closed(),
                    }
                }
            };
            let both = async {
                tokio::select! {
                    result = listen => result.map_err(|e| wrap("failed to listen", e)),
                    error = drive => Err(error),
                }
            };
            match tokio::time::timeout(settings.query_timeout, both).await {
                Ok(result) => result?,
                Err(_) => return Err(timed_out("timed out listening")),
            }
        }
        Ok(Self {
            client: Arc::new(client),
            connection,
            backlog,
        })
    }

    /// Ends the session politely: with its client gone, the connection
    /// sends `Terminate` and finishes.
    async fn close(self) {
        let Self {
            client,
            mut connection,
            ..
        } = self;
        drop(client);
        let drain =
            async { while let Some(Ok(_)) = poll_fn(|cx| connection.poll_message(cx)).await {} };
        let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
    }
}

fn closed() -> BackplaneError {
    BackplaneError::transient(
        "listening connection failed",
        "the server closed the connection",
    )
}

/// How [`Listener::serve`] ended.
enum Served {
    Lost(String),
    Shutdown(Box<Link>),
}

/// The listener task's state.
pub(crate) struct Listener {
    settings: Arc<Settings>,
    commands: mpsc::UnboundedReceiver<Command>,
    routes: HashMap<String, Route>,
    reassembler: Reassembler,
    next_generation: u64,
}

impl Listener {
    pub(crate) fn new(settings: Arc<Settings>, commands: mpsc::UnboundedReceiver<Command>) -> Self {
        Self {
            reassembler: Reassembler::new(settings.max_message_size),
            settings,
            commands,
            routes: HashMap::new(),
            next_generation: 0,
        }
    }

    /// Runs until every handle of the backplane is dropped.
    pub(crate) async fn run(mut self, mut link: Link) {
        let mut controls = VecDeque::new();
        loop {
            let reason = match self.serve(link, controls).await {
                Served::Shutdown(link) => return self.shut_down(*link).await,
                Served::Lost(reason) => reason,
            };
            match self.recover(reason).await {
                Some((restored, pending)) => (link, controls) = (restored, pending),
                None => return,
            }
        }
    }

    async fn shut_down(self, link: Link) {
        tracing::debug!(
            channels = self.routes.len(),
            "backplane dropped; closing the listening connection"
        );
        // Subscriptions end (yield `None`) once their senders are gone.
        drop(self);
        link.close().await;
    }

    /// Reads the connection, applies commands and runs health checks until
    /// the connection is lost or the backplane is dropped.
    async fn serve(&mut self, mut link: Link, mut controls: VecDeque<Control>) -> Served {
        for notification in std::mem::take(&mut link.backlog) {
            self.on_notification(&notification);
        }

        let interval = self.settings.health_check_interval;
        let timeout = self.settings.query_timeout;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut control: Option<Running<(Control, Result<(), QueryError>)>> = None;
        let mut health: Option<Running<Result<(), QueryError>>> = None;

        loop {
            if control.is_none()
                && let Some(next) = controls.pop_front()
            {
                control = Some(start_control(&link.client, next, timeout));
            }

            tokio::select! {
                message = poll_fn(|cx| link.connection.poll_message(cx)) => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => self.on_notification(&n),
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(notice = %notice, "notice on the listening connection");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Served::Lost(ErrorChain(&error).to_string()),
                    None => return Served::Lost("the server closed the connection".into()),
                },

                command = self.commands.recv() => match command {
                    Some(command) => self.on_command(command, &mut controls),
                    None => return Served::Shutdown(Box::new(link)),
                },

                done = async { control.as_mut().expect("guarded").await }, if control.is_some() => {
                    control = None;
                    if let Err(reason) = self.on_control_done(done) {
                        return Served::Lost(reason);
                    }
                }

                _ = tick.tick(), if health.is_none() => {
                    let client = link.client.clone();
                    health = Some(Box::pin(async move {
                        query(&client, "SELECT 1", timeout).await
                    }));
                }

                result = async { health.as_mut().expect("guarded").await }, if health.is_some() => {
                    health = None;
                    match result {
                        Ok(()) => tracing::trace!("listening connection is healthy"),
                        Err(QueryError::Lost(reason)) => {
                            return Served::Lost(format!("health check failed: {reason}"));
                        }
                        Err(QueryError::Refused(error)) => {
                            let reason = ErrorChain(&*error).to_string();
                            return Served::Lost(format!("health check failed: {reason}"));
                        }
                    }
                }
            }
        }
    }

    /// Applies a command while connected.
    fn on_command(&mut self, command: Command, controls: &mut VecDeque<Control>) {
        match command {
            Command::Subscribe {
                channel,
                hub,
                id,
                sender,
                reply,
            } => {
                if let Some(route) = self.routes.get_mut(&channel) {
                    if route.hub != hub {
                        let error = BackplaneError::transport(
                            "cannot subscribe",
                            format!("channel {channel:?} already carries hub {:?}", route.hub),
                        );
                        let _ = reply.send(Err(error));
                        return;
                    }
                    route.senders.push((id, sender));
                    if route.confirmed {
                        let _ = reply.send(Ok(()));
                    } else {
                        route.waiters.push(reply);
                    }
                    return;
                }

                let generation = self.next_generation;
                self.next_generation += 1;
                tracing::debug!(hub, channel, "listening on a new channel");
                self.routes.insert(
                    channel.clone(),
                    Route {
                        hub,
                        generation,
                        senders: vec![(id, sender)],
                        confirmed: false,
                        waiters: vec![reply],
                    },
                );
                controls.push_back(Control::Listen {
                    channel,
                    generation,
                });
            }

            Command::Unsubscribe { channel, id } => {
                if self.forget(&channel, id) {
                    controls.push_back(Control::Unlisten { channel });
                }
            }
        }
    }

    /// Applies a command while disconnected: new subscriptions are refused
    /// at once rather than kept waiting for an unknown time.
    fn on_command_offline(&mut self, command: Command) {
        match command {
            Command::Subscribe { reply, .. } => {
                let _ = reply.send(Err(BackplaneError::NotConnected));
            }
            Command::Unsubscribe { channel, id } => {
                self.forget(&channel, id);
            }
        }
    }

    /// Removes subscription `id`; returns whether that left its channel
    /// without subscriptions (the route is then gone).
    fn forget(&mut self, channel: &str, id: u64) -> bool {
        let Some(route) = self.routes.get_mut(channel) else {
            return false;
        };
        route.senders.retain(|(i, _)| *i != id);
        if !route.senders.is_empty() {
            return false;
        }
        tracing::debug!(
            hub = route.hub,
            channel,
            "last subscription of the channel dropped"
        );
        self.routes.remove(channel);
        true
    }

    /// Handles the end of a `LISTEN` or `UNLISTEN`; returns the reason if
    /// the connection was lost.
    fn on_control_done(
        &mut self,
        (control, result): (Control, Result<(), QueryError>),
    ) -> std::result::Result<(), String> {
        match (control, result) {
            (_, Err(QueryError::Lost(reason))) => Err(reason),

            (
                Control::Listen {
                    channel,
                    generation,
                },
                Ok(()),
            ) => {
                if let Some(route) = self.routes.get_mut(&channel)
                    && route.generation == generation
                {
                    route.confirmed = true;
                    tracing::debug!(hub = route.hub, channel, "listening");
                    for waiter in route.waiters.drain(..) {
                        let _ = waiter.send(Ok(()));
                    }
                }
                Ok(())
            }

            (
                Control::Listen {
                    channel,
                    generation,
                },
                Err(QueryError::Refused(error)),
            ) => {
                if self
                    .routes
                    .get(&channel)
                    .is_some_and(|route| route.generation == generation)
                    && let Some(route) = self.routes.remove(&channel)
                {
                    for waiter in route.waiters {
                        let error =
                            BackplaneError::transport("the server refused LISTEN", error.clone());
                        let _ = waiter.send(Err(error));
                    }
                }
                Ok(())
            }

            (Control::Unlisten { channel }, Ok(())) => {
                tracing::debug!(channel, "stopped listening");
                Ok(())
            }

            (Control::Unlisten { channel }, Err(QueryError::Refused(error))) => {
                tracing::warn!(
                    channel,
                    error = %ErrorChain(&*error),
                    "the server refused UNLISTEN",
                );
                Ok(())
            }
        }
    }

    /// Decodes a notification and hands its envelopes to the channel's
    /// subscriptions. Anything that is not a well-formed frame of this
    /// channel's hub is logged and skipped.
    fn on_notification(&mut self, notification: &Notification) {
        let channel = notification.channel();
        let payload = notification.payload();
        let Some(route) = self.routes.get(channel) else {
            tracing::trace!(channel, "notification on a channel nobody subscribes to");
            return;
        };
        let hub = route.hub.as_str();
        tracing::trace!(hub, channel, bytes = payload.len(), "notification");

        let text = match frame::parse(payload) {
            Ok(Frame::Whole(text)) => {
                self.reassembler.interrupt(channel);
                Cow::Borrowed(text)
            }
            Ok(Frame::Chunk(chunk)) => match self.reassembler.push(channel, chunk) {
                Pushed::Whole(text) => Cow::Owned(text),
                Pushed::Pending | Pushed::Discarded | Pushed::Skipped => return,
            },
            Err(error) => {
                self.reassembler.interrupt(channel);
                tracing::warn!(
                    hub,
                    channel,
                    bytes = payload.len(),
                    sender_pid = notification.process_id(),
                    error = %error,
                    "skipping notification that is not a backplane frame",
                );
                return;
            }
        };

        let envelopes = match frame::decode(&text) {
            Ok(envelopes) => envelopes,
            Err(error) => {
                tracing::warn!(
                    hub,
                    channel,
                    bytes = text.len(),
                    sender_pid = notification.process_id(),
                    error = %error,
                    "skipping notification that does not decode",
                );
                return;
            }
        };
        for envelope in envelopes {
            if envelope.hub != hub {
                tracing::warn!(
                    hub,
                    channel,
                    envelope_hub = envelope.hub,
                    "skipping envelope of another hub",
                );
                continue;
            }
            route.broadcast(&Event::Envelope(Arc::new(envelope)));
        }
    }

    /// Tells every subscription about the loss, reconnects with backoff and
    /// listens again; returns `None` if the backplane was dropped meanwhile.
    async fn recover(&mut self, reason: String) -> Option<(Link, VecDeque<Control>)> {
        let lost_at = Instant::now();
        tracing::warn!(
            reason,
            channels = self.routes.len(),
            "listening connection lost; reconnecting",
        );

        // Subscribe calls still waiting for their `LISTEN` fail; every live
        // subscription hears of the gap.
        self.routes.retain(|_, route| {
            for waiter in route.waiters.drain(..) {
                let _ = waiter.send(Err(BackplaneError::NotConnected));
            }
            route.confirmed
        });
        let lost = Event::ConnectionLost {
            reason: reason.clone(),
        };
        for route in self.routes.values() {
            route.broadcast(&lost);
        }
        let cut = self.reassembler.clear();
        if cut > 0 {
            tracing::warn!(
                messages = cut,
                "discarding chunked messages cut by the lost connection"
            );
        }

        let settings = self.settings.clone();
        let mut delays = settings.reconnect_delays();
        for attempt in 1u64.. {
            let delay = delays.next().unwrap_or(settings.reconnect_max_delay);
            if !self.pause(delay).await {
                return None;
            }

            tracing::debug!(attempt, "reconnecting the listening connection");
            let channels: Vec<String> = self.routes.keys().cloned().collect();
            let result = {
                let mut open = pin!(Link::open(&settings, &channels));
                loop {
                    tokio::select! {
                        result = &mut open => break result,
                        command = self.commands.recv() => match command {
                            Some(command) => self.on_command_offline(command),
                            None => return None,
                        },
                    }
                }
            };

            match result {
                Ok(link) => {
                    let downtime = lost_at.elapsed();
                    tracing::info!(
                        attempt,
                        downtime_ms = downtime.as_millis() as u64,
                        channels = channels.len(),
                        "listening connection restored",
                    );
                    // Channels whose last subscription ended during the
                    // attempt were listened to for nothing.
                    let stale = channels
                        .into_iter()
                        .filter(|channel| !self.routes.contains_key(channel))
                        .map(|channel| Control::Unlisten { channel })
                        .collect();
                    let restored = Event::Resubscribed { downtime };
                    for route in self.routes.values() {
                        route.broadcast(&restored);
                    }
                    return Some((link, stale));
                }
                Err(error) => tracing::warn!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %ErrorChain(&error),
                    "reconnecting the listening connection failed",
                ),
            }
        }
        None
    }

    /// Waits `delay` while applying commands; returns `false` if the
    /// backplane was dropped meanwhile.
    async fn pause(&mut self, delay: Duration) -> bool {
        let mut sleep = pin!(tokio::time::sleep(delay));
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.on_command_offline(command),
                    None => return false,
                },
            }
        }
    }
}

fn start_control(
    client: &Arc<Client>,
    control: Control,
    timeout: Duration,
) -> Running<(Control, Result<(), QueryError>)> {
    let sql = match &control {
        Control::Listen { channel, .. } => format!("LISTEN {}", quote(channel)),
        Control::Unlisten { channel } => format!("UNLISTEN {}", quote(channel)),
    };
    let client = client.clone();
    Box::pin(async move {
        let result = query(&client, &sql, timeout).await;
        (control, result)
    })
}

/// Runs one statement on the listening connection within `timeout`.
async fn query(client: &Client, sql: &str, timeout: Duration) -> Result<(), QueryError> {
    match tokio::time::timeout(timeout, client.batch_execute(sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if is_connection_error(&error) => {
            Err(QueryError::Lost(ErrorChain(&error).to_string()))
        }
        Ok(Err(error)) => Err(QueryError::Refused(Arc::new(error))),
        Err(_) => Err(QueryError::Lost(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
