//! The hub: local connections, groups, and sends across instances.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::task::{Context, Poll};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::index::{Index, QueueStats, Slot};
use crate::{
    Action, BackplaneError, ConnectionId, Envelope, Event, GroupName, Message, Result, ServerId,
    Subscription, Target, Transport, UserId,
};

/// How many messages a connection's outbound queue holds by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// One hub on one instance: the connections this instance holds, and the
/// way to reach the ones other instances hold.
///
/// A hub subscribes to its channel on the transport when it is built and
/// runs a receive loop that delivers envelopes from other instances to the
/// local connections they select. Cloning a `Hub` is cheap and shares it;
/// the receive loop stops when the last clone is dropped or [`Hub::close`]
/// is called.
///
/// # Example
///
/// ```
/// use backplane_api::{Hub, Target};
/// use backplane_memory::MemoryBackplane;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> backplane_api::Result<()> {
/// let bus = MemoryBackplane::new();
/// let a = Hub::new("chat", bus.clone()).await?;
/// let b = Hub::new("chat", bus.clone()).await?;
///
/// let mut alice = a.register("alice-1".into(), Some("alice".into()))?;
/// let mut bob = b.register("bob-1".into(), Some("bob".into()))?;
/// b.add_to_group(bob.id(), "room").await?;
///
/// a.send(Target::group("room"), "say", &"hello room").await?;
/// let message = bob.recv().await.unwrap();
/// assert_eq!(message.method(), "say");
/// assert_eq!(message.args::<String>()?, "hello room");
///
/// b.send_to_user("alice", "dm", &"hi alice").await?;
/// assert_eq!(alice.recv().await.unwrap().args_json(), r#""hi alice""#);
/// # Ok(())
/// # }
/// ```
pub struct Hub<T: Transport> {
    inner: Arc<Inner<T>>,
}

impl<T: Transport> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Transport> std::fmt::Debug for Hub<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("name", &self.inner.shared.name)
            .field("server_id", &self.inner.shared.server_id)
            .finish_non_exhaustive()
    }
}

struct Inner<T> {
    shared: Arc<Shared>,
    transport: T,
    next_id: AtomicU64,
    queue_capacity: usize,
    receive_loop: JoinHandle<()>,
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        self.receive_loop.abort();
    }
}

/// State shared by the hub handle, its receive loop and its connections.
struct Shared {
    name: Arc<str>,
    server_id: ServerId,
    index: RwLock<Index>,
    stats: Counters,
    closed: AtomicBool,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Index> {
        // A panic elsewhere cannot leave the index half-updated in a way
        // that matters more than losing every connection, so keep going.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BackplaneError::Closed);
        }
        Ok(())
    }

    fn deliver(&self, target: &Target, message: &Arc<Message>) {
        let done = self.read().deliver(&self.name, target, message);
        self.stats
            .delivered
            .fetch_add(done.delivered, Ordering::Relaxed);
        self.stats
            .dropped
            .fetch_add(done.dropped, Ordering::Relaxed);
    }

    fn unregister(&self, id: &ConnectionId, only: Option<&Weak<Slot>>) -> bool {
        let removed = self.write().remove(id, only);
        if removed {
            tracing::debug!(hub = &*self.name, connection = %id, "connection unregistered");
        }
        removed
    }
}

/// Builds a [`Hub`] with non-default settings.
#[derive(Debug)]
#[must_use]
pub struct HubBuilder<T> {
    name: String,
    transport: T,
    server_id: Option<ServerId>,
    queue_capacity: usize,
}

impl<T: Transport + 'static> HubBuilder<T> {
    /// Sets the id of this instance (default: a random one).
    ///
    /// Every hub of one instance may share it; two instances must never.
    pub fn server_id(mut self, id: ServerId) -> Self {
        self.server_id = Some(id);
        self
    }

    /// Sets how many messages each connection's outbound queue holds
    /// (default [`DEFAULT_QUEUE_CAPACITY`]). A connection whose queue is
    /// full misses messages until it reads.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Subscribes to the hub's channel and starts the receive loop.
    ///
    /// # Errors
    ///
    /// Returns the transport's error if the subscription fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call leaves no receive loop running.
    pub async fn build(self) -> Result<Hub<T>> {
        let subscription = self.transport.subscribe(&self.name).await?;
        let shared = Arc::new(Shared {
            name: Arc::from(self.name),
            server_id: self.server_id.unwrap_or_else(ServerId::random),
            index: RwLock::new(Index::default()),
            stats: Counters::default(),
            closed: AtomicBool::new(false),
        });
        let receive_loop = tokio::spawn(receive_loop(shared.clone(), subscription));
        tracing::debug!(
            hub = &*shared.name,
            server_id = %shared.server_id,
            "hub subscribed",
        );
        let inner = Inner {
            shared,
            transport: self.transport,
            next_id: AtomicU64::new(0),
            queue_capacity: self.queue_capacity,
            receive_loop,
        };
        Ok(Hub {
            inner: Arc::new(inner),
        })
    }
}

impl<T: Transport + 'static> Hub<T> {
    /// Builds a hub named `name` over `transport` with default settings.
    ///
    /// # Errors
    ///
    /// Returns the transport's error if the subscription fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn new(name: impl Into<String>, transport: T) -> Result<Self> {
        Self::builder(name, transport).build().await
    }

    /// Starts building a hub named `name` over `transport`.
    pub fn builder(name: impl Into<String>, transport: T) -> HubBuilder<T> {
        HubBuilder {
            name: name.into(),
            transport,
            server_id: None,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// The hub's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The id of this instance, carried by every envelope it publishes.
    pub fn server_id(&self) -> &ServerId {
        &self.inner.shared.server_id
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.inner.transport
    }

    /// Registers a connection held by this instance, optionally on behalf of
    /// a user, and returns the receiving end of its outbound queue.
    ///
    /// The connection stays registered until [`Hub::unregister`] or until
    /// the returned [`Connection`] is dropped.
    ///
    /// # Errors
    ///
    /// Returns [`BackplaneError::DuplicateConnection`] if `id` is already
    /// registered with this hub, [`BackplaneError::Closed`] if the hub was
    /// closed.
    pub fn register(&self, id: ConnectionId, user: Option<UserId>) -> Result<Connection> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let (sender, receiver) = mpsc::channel(self.inner.queue_capacity);
        let slot = Arc::new(Slot::new(id.clone(), sender));
        if !shared.write().insert(slot.clone(), user.clone()) {
            return Err(BackplaneError::DuplicateConnection(id));
        }
        tracing::debug!(
            hub = &*shared.name,
            connection = %id,
            user = user.as_ref().map(UserId::as_str),
            "connection registered",
        );
        Ok(Connection {
            id,
            queue: slot.queue.clone(),
            slot: Arc::downgrade(&slot),
            receiver,
            hub: Arc::downgrade(shared),
        })
    }

    /// Unregisters a connection held by this instance: it leaves its user
    /// and every group, and its [`Connection`] yields `None` once drained.
    /// Returns whether it was registered.
    pub fn unregister(&self, id: &ConnectionId) -> bool {
        self.inner.shared.unregister(id, None)
    }

    /// Whether this instance holds connection `id`.
    pub fn is_local(&self, id: &ConnectionId) -> bool {
        self.inner.shared.read().contains(id)
    }

    /// How many connections this instance holds.
    pub fn connection_count(&self) -> usize {
        self.inner.shared.read().len()
    }

    /// The groups of a connection held by this instance, sorted; `None` if
    /// this instance does not hold it.
    pub fn groups_of(&self, id: &ConnectionId) -> Option<Vec<GroupName>> {
        self.inner.shared.read().groups_of(id)
    }

    /// How many connections held by this instance are in `group`.
    pub fn local_group_len(&self, group: &GroupName) -> usize {
        self.inner.shared.read().group_len(group)
    }

    /// Adds a connection to a group.
    ///
    /// A connection held by this instance joins at once and nothing is
    /// published. For any other connection, the command is published and
    /// the instance that holds it applies it when it arrives (after any
    /// envelope this instance published before). Adding a member again
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Closed`] if the hub was closed; only for a
    /// connection held elsewhere, the transport's publish error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: for a remote connection the command may or may not
    /// have been published.
    pub async fn add_to_group(
        &self,
        connection: &ConnectionId,
        group: impl Into<GroupName>,
    ) -> Result<()> {
        self.inner.shared.check_open()?;
        let group = group.into();
        let local = self.inner.shared.write().join(connection, &group);
        match local {
            Some(_) => Ok(()),
            None => {
                let connection = connection.clone();
                self.publish(Action::AddToGroup { connection, group }).await
            }
        }
    }

    /// Removes a connection from a group; removing a non-member changes
    /// nothing.
    ///
    /// Like [`Hub::add_to_group`], this is immediate for a connection held
    /// by this instance and published for any other.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Closed`] if the hub was closed; only for a
    /// connection held elsewhere, the transport's publish error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn remove_from_group(
        &self,
        connection: &ConnectionId,
        group: impl Into<GroupName>,
    ) -> Result<()> {
        self.inner.shared.check_open()?;
        let group = group.into();
        let local = self.inner.shared.write().leave(connection, &group);
        match local {
            Some(_) => Ok(()),
            None => {
                let connection = connection.clone();
                self.publish(Action::RemoveFromGroup { connection, group })
                    .await
            }
        }
    }

    /// Sends `method(args)` to every connection `target` selects, on every
    /// instance.
    ///
    /// The arguments are serialized once. Unless every selected connection
    /// is known to be held here (a [`Target::Connection`] or
    /// [`Target::Connections`] of local connections), the envelope is
    /// published once; then the local connections receive it, without
    /// waiting for the bus. Other instances deliver it when it arrives.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Encode`] if `args` cannot be serialized,
    /// [`BackplaneError::Closed`] if the hub was closed, or the transport's
    /// publish error ([`BackplaneError::PayloadTooLarge`],
    /// [`BackplaneError::NotConnected`], ...). On error no connection, local
    /// or remote, received the message from this call, except that after a
    /// transient transport error the bus may have carried it.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if dropped while publishing, the message may reach
    /// other instances but not the local connections.
    pub async fn send<A>(&self, target: Target, method: &str, args: &A) -> Result<()>
    where
        A: Serialize + ?Sized,
    {
        let message = Arc::new(Message::new(method, args)?);
        self.send_message(target, message).await
    }

    /// Sends an already built message; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// The transport's publish error; see [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn send_message(&self, target: Target, message: Arc<Message>) -> Result<()> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let local_only = match &target {
            Target::Connection { id } => shared.read().contains(id),
            Target::Connections { ids } => {
                let index = shared.read();
                ids.iter().all(|id| index.contains(id))
            }
            _ => false,
        };
        if local_only {
            shared.deliver(&target, &message);
            return Ok(());
        }

        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let action = Action::Send {
            target,
            message: message.clone(),
        };
        let envelope = Arc::new(Envelope::new(
            &*shared.name,
            shared.server_id.clone(),
            id,
            action,
        ));
        self.inner.transport.publish(envelope.clone()).await?;
        shared.stats.published.fetch_add(1, Ordering::Relaxed);

        if let Action::Send { target, .. } = &envelope.action {
            shared.deliver(target, &message);
        }
        Ok(())
    }

    /// Builds the envelope of a send without publishing it, for a transport
    /// path the hub does not drive, such as a publish that joins a database
    /// transaction.
    ///
    /// The envelope carries a fresh origin of its own, not this hub's
    /// [`Hub::server_id`], so every instance delivers it when the bus
    /// carries it, this one included: local connections receive it only if
    /// it is published.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Encode`] if `args` cannot be serialized.
    pub fn envelope<A>(&self, target: Target, method: &str, args: &A) -> Result<Envelope>
    where
        A: Serialize + ?Sized,
    {
        let message = Arc::new(Message::new(method, args)?);
        let action = Action::Send { target, message };
        Ok(Envelope::new(self.name(), ServerId::random(), 0, action))
    }

    /// Sends to every connection; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_all<A: Serialize + ?Sized>(&self, method: &str, args: &A) -> Result<()> {
        self.send(Target::All, method, args).await
    }

    /// Sends to every connection except `except`; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_all_except<A: Serialize + ?Sized>(
        &self,
        except: impl IntoIterator<Item = ConnectionId>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::all_except(except), method, args).await
    }

    /// Sends to one connection, wherever it is held; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_connection<A: Serialize + ?Sized>(
        &self,
        id: impl Into<ConnectionId>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::connection(id), method, args).await
    }

    /// Sends to several connections; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_connections<A: Serialize + ?Sized>(
        &self,
        ids: impl IntoIterator<Item = ConnectionId>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::connections(ids), method, args).await
    }

    /// Sends to every member of a group; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_group<A: Serialize + ?Sized>(
        &self,
        group: impl Into<GroupName>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::group(group), method, args).await
    }

    /// Sends to every member of a group except `except`; see [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_group_except<A: Serialize + ?Sized>(
        &self,
        group: impl Into<GroupName>,
        except: impl IntoIterator<Item = ConnectionId>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::group_except(group, except), method, args)
            .await
    }

    /// Sends to every member of any of several groups, once each; see
    /// [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_groups<A: Serialize + ?Sized>(
        &self,
        groups: impl IntoIterator<Item = GroupName>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::groups(groups), method, args).await
    }

    /// Sends to every connection of a user, on every instance; see
    /// [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_user<A: Serialize + ?Sized>(
        &self,
        user: impl Into<UserId>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::user(user), method, args).await
    }

    /// Sends to every connection of any of several users; see
    /// [`Hub::send`].
    ///
    /// # Errors
    ///
    /// As [`Hub::send`].
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`Hub::send`].
    pub async fn send_to_users<A: Serialize + ?Sized>(
        &self,
        users: impl IntoIterator<Item = UserId>,
        method: &str,
        args: &A,
    ) -> Result<()> {
        self.send(Target::users(users), method, args).await
    }

    /// A snapshot of the hub's counters.
    pub fn stats(&self) -> HubStats {
        self.inner.shared.stats.snapshot()
    }

    /// Stops the receive loop and unregisters every connection (their
    /// [`Connection`]s yield `None` once drained). Afterwards this hub and
    /// its clones refuse registrations, group changes and sends with
    /// [`BackplaneError::Closed`]. Closing twice changes nothing.
    pub fn close(&self) {
        self.inner.shared.closed.store(true, Ordering::Release);
        self.inner.receive_loop.abort();
        let shared = &self.inner.shared;
        let mut index = shared.write();
        let ids: Vec<_> = index.slots().map(|slot| slot.id.clone()).collect();
        for id in &ids {
            index.remove(id, None);
        }
        tracing::debug!(hub = &*shared.name, connections = ids.len(), "hub closed");
    }

    async fn publish(&self, action: Action) -> Result<()> {
        let shared = &self.inner.shared;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope::new(&*shared.name, shared.server_id.clone(), id, action);
        self.inner.transport.publish(Arc::new(envelope)).await?;
        shared.stats.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Receives the hub's events from the transport and applies them until the
/// subscription ends or the hub is dropped.
async fn receive_loop(shared: Arc<Shared>, mut subscription: Subscription) {
    let hub = &*shared.name;
    while let Some(event) = subscription.recv().await {
        match event {
            Event::Envelope(envelope) => receive_envelope(&shared, &envelope),
            Event::ConnectionLost { reason } => {
                shared.stats.connection_lost.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    hub,
                    reason = %reason,
                    "backplane connection lost; envelopes from other instances \
                     may be missed until it is restored",
                );
            }
            Event::Resubscribed { downtime } => {
                shared.stats.resubscribed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    hub,
                    downtime_ms = downtime.as_millis() as u64,
                    "backplane subscription restored",
                );
            }
            Event::Lagged { missed } => {
                shared.stats.lagged.fetch_add(missed, Ordering::Relaxed);
                tracing::warn!(
                    hub,
                    missed,
                    "hub fell behind its subscription; envelopes were discarded",
                );
            }
        }
    }
    tracing::warn!(
        hub,
        "backplane subscription ended; this hub no longer receives"
    );
}

fn receive_envelope(shared: &Shared, envelope: &Envelope) {
    if envelope.origin == shared.server_id {
        shared.stats.echoes.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if envelope.hub != *shared.name {
        tracing::warn!(
            hub = &*shared.name,
            envelope_hub = envelope.hub,
            origin = %envelope.origin,
            "skipping envelope addressed to another hub",
        );
        return;
    }
    shared.stats.received.fetch_add(1, Ordering::Relaxed);

    match &envelope.action {
        Action::Send { target, message } => shared.deliver(target, message),
        Action::AddToGroup { connection, group } => {
            if shared.write().join(connection, group) == Some(true) {
                tracing::debug!(
                    hub = &*shared.name,
                    connection = %connection,
                    group = %group,
                    origin = %envelope.origin,
                    "connection added to group by another instance",
                );
            }
        }
        Action::RemoveFromGroup { connection, group } => {
            if shared.write().leave(connection, group) == Some(true) {
                tracing::debug!(
                    hub = &*shared.name,
                    connection = %connection,
                    group = %group,
                    origin = %envelope.origin,
                    "connection removed from group by another instance",
                );
            }
        }
    }
}

/// The receiving end of one connection's outbound queue.
///
/// Dropping it unregisters the connection.
#[derive(Debug)]
pub struct Connection {
    id: ConnectionId,
    queue: Arc<QueueStats>,
    // Weak, so that unregistering drops the queue's only sender.
    slot: Weak<Slot>,
    receiver: mpsc::Receiver<Arc<Message>>,
    hub: Weak<Shared>,
}

impl Connection {
    /// The connection's id.
    pub fn id(&self) -> &ConnectionId {
        &self.id
    }

    /// Receives the next message; `None` once the connection is
    /// unregistered (or the hub closed) and its queue drained.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call loses no message.
    pub async fn recv(&mut self) -> Option<Arc<Message>> {
        self.receiver.recv().await
    }

    /// Receives a message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Arc<Message>> {
        self.receiver.try_recv().ok()
    }

    /// How many messages this connection missed because its queue was
    /// full.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }
}

impl futures_core::Stream for Connection {
    type Item = Arc<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(shared) = self.hub.upgrade() {
            shared.unregister(&self.id, Some(&self.slot));
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    echoes: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    lagged: AtomicU64,
    connection_lost: AtomicU64,
    resubscribed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> HubStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HubStats {
            published: get(&self.published),
            received: get(&self.received),
            echoes_skipped: get(&self.echoes),
            delivered: get(&self.delivered),
            dropped: get(&self.dropped),
            lagged: get(&self.lagged),
            connection_lost: get(&self.connection_lost),
            resubscribed: get(&self.resubscribed),
        }
    }
}

/// Counters of one hub since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Envelopes this hub published.
    pub published: u64,
    /// Envelopes received from other instances.
    pub received: u64,
    /// This hub's own envelopes echoed by the bus and skipped.
    pub echoes_skipped: u64,
    /// Messages queued to local connections.
    pub delivered: u64,
    /// Messages a local connection missed because its queue was full.
    pub dropped: u64,
    /// Envelopes the subscription discarded because the hub fell behind.
    pub lagged: u64,
    /// Times the transport reported a lost connection.
    pub connection_lost: u64,
    /// Times the transport reported the subscription restored.
    pub resubscribed: u64,
}
