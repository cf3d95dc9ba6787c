//! The hub's indexes of local connections, and delivery to them.
//!
//! Connections are indexed by id, by user and by group, each index holding
//! the connection's [`Slot`] directly, so that selecting the members of a
//! group or the connections of a user costs one lookup plus one step per
//! match, however many connections the hub holds.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::{ConnectionId, GroupName, Message, Target, UserId};

/// The sending side of one local connection's outbound queue.
///
/// Only the index holds slots, so unregistering a connection drops its
/// sender and its queue ends once drained.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: ConnectionId,
    sender: mpsc::Sender<Arc<Message>>,
    pub(crate) queue: Arc<QueueStats>,
}

/// What happened to one connection's queue, shared with its receiver.
#[derive(Debug, Default)]
pub(crate) struct QueueStats {
    dropped: AtomicU64,
    // Set while the queue is full, so that a burst of drops logs once.
    lagging: AtomicBool,
    // When the last warning was logged, in milliseconds since `EPOCH` plus
    // one (zero: never), so that a reader that keeps falling behind and
    // catching up warns at most once per `WARN_INTERVAL`.
    warned_at: AtomicU64,
}

/// The shortest time between two queue-full warnings for one connection.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The reference point of `QueueStats::warned_at`.
static EPOCH: OnceLock<Instant> = OnceLock::new();

impl QueueStats {
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether a new burst of drops should be logged now; if so, records
    /// that it was.
    fn should_warn(&self) -> bool {
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.warned_at.load(Ordering::Relaxed);
        if last != 0 && now - last < WARN_INTERVAL.as_millis() as u64 {
            return false;
        }
        self.warned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl Slot {
    pub(crate) fn new(id: ConnectionId, sender: mpsc::Sender<Arc<Message>>) -> Self {
        Self {
            id,
            sender,
            queue: Arc::default(),
        }
    }
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delivered {
    pub(crate) delivered: u64,
    pub(crate) dropped: u64,
}

#[derive(Debug)]
struct Entry {
    slot: Arc<Slot>,
    user: Option<UserId>,
    groups: HashSet<GroupName>,
}

type Members = HashMap<ConnectionId, Arc<Slot>>;

/// Local connections of one hub, indexed by id, user and group.
#[derive(Debug, Default)]
pub(crate) struct Index {
    connections: HashMap<ConnectionId, Entry>,
    users: HashMap<UserId, Members>,
    groups: HashMap<GroupName, Members>,
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.connections.len()
    }

    pub(crate) fn contains(&self, id: &ConnectionId) -> bool {
        self.connections.contains_key(id)
    }

    /// Adds a connection; returns `false` if the id is taken.
    pub(crate) fn insert(&mut self, slot: Arc<Slot>, user: Option<UserId>) -> bool {
        let id = slot.id.clone();
        if self.connections.contains_key(&id) {
            return false;
        }
        if let Some(user) = &user {
            let members = self.users.entry(user.clone()).or_default();
            members.insert(id.clone(), slot.clone());
        }
        let entry = Entry {
            slot,
            user,
            groups: HashSet::new(),
        };
        self.connections.insert(id, entry);
        true
    }

    /// Removes a connection from every index. With `only`, removes it only
    /// if it is still that very registration (not a later one reusing the
    /// id). Returns whether it was removed.
    pub(crate) fn remove(&mut self, id: &ConnectionId, only: Option<&Weak<Slot>>) -> bool {
        match (self.connections.get(id), only) {
            (None, _) => return false,
            (Some(entry), Some(slot)) if !std::ptr::eq(Arc::as_ptr(&entry.slot), slot.as_ptr()) => {
                return false;
            }
            _ => {}
        }
        let Some(entry) = self.connections.remove(id) else {
            return false;
        };
        if let Some(user) = &entry.user {
            remove_member(&mut self.users, user, id);
        }
        for group in &entry.groups {
            remove_member(&mut self.groups, group, id);
        }
        true
    }

    /// Adds a local connection to a group. Returns `None` if the connection
    /// is not held here, else whether it was newly added.
    pub(crate) fn join(&mut self, id: &ConnectionId, group: &GroupName) -> Option<bool> {
        let entry = self.connections.get_mut(id)?;
        if !entry.groups.insert(group.clone()) {
            return Some(false);
        }
        let members = self.groups.entry(group.clone()).or_default();
        members.insert(id.clone(), entry.slot.clone());
        Some(true)
    }

    /// Removes a local connection from a group. Returns `None` if the
    /// connection is not held here, else whether it was a member.
    pub(crate) fn leave(&mut self, id: &ConnectionId, group: &GroupName) -> Option<bool> {
        let entry = self.connections.get_mut(id)?;
        if !entry.groups.remove(group) {
            return Some(false);
        }
        remove_member(&mut self.groups, group, id);
        Some(true)
    }

    pub(crate) fn groups_of(&self, id: &ConnectionId) -> Option<Vec<GroupName>> {
        let entry = self.connections.get(id)?;
        let mut groups: Vec<_> = entry.groups.iter().cloned().collect();
        groups.sort();
        Some(groups)
    }

    pub(crate) fn group_len(&self, group: &GroupName) -> usize {
        self.groups.get(group).map_or(0, HashMap::len)
    }

    pub(crate) fn slots(&self) -> impl Iterator<Item = &Arc<Slot>> {
        self.connections.values().map(|entry| &entry.slot)
    }

    /// Delivers `message` to every local connection `target` selects, once
    /// each.
    pub(crate) fn deliver(&self, hub: &str, target: &Target, message: &Arc<Message>) -> Delivered {
        let mut out = Outbox {
            hub,
            message,
            done: Delivered::default(),
        };
        match target {
            Target::All => {
                self.connections.values().for_each(|e| out.push(&e.slot));
            }
            Target::AllExcept { except } => {
                let except = Except::new(except);
                for entry in self.connections.values() {
                    if !except.contains(&entry.slot.id) {
                        out.push(&entry.slot);
                    }
                }
            }
            Target::Connection { id } => {
                if let Some(entry) = self.connections.get(id) {
                    out.push(&entry.slot);
                }
            }
            Target::Connections { ids } => {
                let slots = ids.iter().filter_map(|id| self.connections.get(id));
                out.push_unique(slots.map(|entry| &entry.slot));
            }
            Target::Group { name } => {
                if let Some(members) = self.groups.get(name) {
                    members.values().for_each(|slot| out.push(slot));
                }
            }
            Target::GroupExcept { name, except } => {
                let except = Except::new(except);
                let members = self.groups.get(name).into_iter().flat_map(HashMap::values);
                for slot in members {
                    if !except.contains(&slot.id) {
                        out.push(slot);
                    }
                }
            }
            Target::Groups { names } => {
                let members = names.iter().filter_map(|name| self.groups.get(name));
                out.push_unique(members.flat_map(HashMap::values));
            }
            Target::User { id } => {
                if let Some(members) = self.users.get(id) {
                    members.values().for_each(|slot| out.push(slot));
                }
            }
            Target::Users { ids } => {
                let members = ids.iter().filter_map(|id| self.users.get(id));
                out.push_unique(members.flat_map(HashMap::values));
            }
        }
        out.done
    }
}

fn remove_member<K>(index: &mut HashMap<K, Members>, key: &K, id: &ConnectionId)
where
    K: std::hash::Hash + Eq,
{
    if let Some(members) = index.get_mut(key) {
        members.remove(id);
        if members.is_empty() {
            index.remove(key);
        }
    }
}

/// A set of excluded connections; small lists are scanned, large ones
/// hashed.
enum Except<'a> {
    Few(&'a [ConnectionId]),
    Many(HashSet<&'a ConnectionId>),
}

impl<'a> Except<'a> {
    const SCAN_LIMIT: usize = 16;

    fn new(ids: &'a [ConnectionId]) -> Self {
        if ids.len() <= Self::SCAN_LIMIT {
            Self::Few(ids)
        } else {
            Self::Many(ids.iter().collect())
        }
    }

    fn contains(&self, id: &ConnectionId) -> bool {
        match self {
            Self::Few(ids) => ids.contains(id),
            Self::Many(ids) => ids.contains(id),
        }
    }
}

struct Outbox<'a> {
    hub: &'a str,
    message: &'a Arc<Message>,
    done: Delivered,
}

impl Outbox<'_> {
    /// Delivers to slots that may repeat, once each.
    fn push_unique<'s>(&mut self, slots: impl Iterator<Item = &'s Arc<Slot>>) {
        let mut seen = HashSet::new();
        for slot in slots {
            if seen.insert(Arc::as_ptr(slot)) {
                self.push(slot);
            }
        }
    }

    /// Queues the message for one connection without waiting: a full queue
    /// costs that connection this message and nobody else anything.
    fn push(&mut self, slot: &Arc<Slot>) {
        match slot.sender.try_send(self.message.clone()) {
            Ok(()) => {
                self.done.delivered += 1;
                let queue = &slot.queue;
                if queue.lagging.load(Ordering::Relaxed) {
                    queue.lagging.store(false, Ordering::Relaxed);
                    tracing::debug!(
                        hub = self.hub,
                        connection = %slot.id,
                        dropped_total = queue.dropped(),
                        "connection queue has room again",
                    );
                }
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.done.dropped += 1;
                let queue = &slot.queue;
                let dropped_total = queue.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if !queue.lagging.swap(true, Ordering::Relaxed) && queue.should_warn() {
                    tracing::warn!(
                        hub = self.hub,
                        connection = %slot.id,
                        dropped_total,
                        "connection queue full; dropping messages for it \
                         (further drops within 10 s are counted, not logged)",
                    );
                }
            }
            // The connection's receiver is gone and its unregistration is on
            // its way; nothing to deliver to.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}
