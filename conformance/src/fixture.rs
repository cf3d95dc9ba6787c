//! What scenarios are built from: instances over fresh transports, local
//! connections with a model of who should receive what, and the barrier
//! that proves nothing else arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use backplane_api::{
    BackplaneError, Connection, ConnectionId, ErrorChain, GroupName, Hub, Message, ServerId,
    Target, Transport, UserId,
};
use tokio::time::Instant;

use crate::{Capabilities, TransportFactory};

/// A hub on one simulated instance.
pub(crate) type Instance = Hub<Arc<dyn Transport>>;

/// Outbound queue size of the suite's connections: large enough that a
/// connection read only at the barrier never misses a message.
pub(crate) const QUEUE_CAPACITY: usize = 8192;

/// How long to watch for stray messages after the last barrier. The
/// barrier already proves that nothing sent before it is still on its way;
/// this only catches a late duplicate of the barrier itself.
const QUIET_PERIOD: Duration = Duration::from_millis(100);

/// The method of barrier markers.
const BARRIER: &str = "conformance.barrier";

/// The method of the suite's ordinary messages; their argument is a tag.
pub(crate) const SAY: &str = "say";

/// Why a scenario failed, in words.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl From<BackplaneError> for Failure {
    fn from(error: BackplaneError) -> Self {
        Self(format!("unexpected error: {}", ErrorChain(&error)))
    }
}

/// Fails the scenario with a formatted message unless `$condition` holds.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err($crate::fixture::Failure(format!($($message)+)));
        }
    };
}
pub(crate) use ensure;

/// Returns a failure with a formatted message.
macro_rules! fail {
    ($($message:tt)+) => {
        $crate::fixture::Failure(format!($($message)+))
    };
}
pub(crate) use fail;

/// A hub name no other scenario run uses, so that runs sharing one bus do
/// not hear each other.
pub(crate) fn hub_name(tag: &str) -> String {
    let random = ServerId::random();
    format!("cf-{tag}-{}", &random.as_str()[..12])
}

/// Builds a hub named `name` over a fresh transport from `factory`.
pub(crate) async fn instance(
    factory: &dyn TransportFactory,
    name: &str,
    queue_capacity: usize,
) -> Result<Instance, Failure> {
    let transport = factory
        .instance()
        .await
        .map_err(|e| fail!("the factory could not make a transport: {}", ErrorChain(&e)))?;
    let hub = Hub::builder(name, transport)
        .queue_capacity(queue_capacity)
        .build()
        .await
        .map_err(|e| fail!("subscribing hub {name:?} failed: {}", ErrorChain(&e)))?;
    Ok(hub)
}

/// Shortens a rendered message for a failure report.
fn short(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        return text.to_owned();
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head}…({} bytes)", text.len())
}

fn list(items: &[String]) -> String {
    let shown: Vec<_> = items.iter().take(12).map(|item| short(item)).collect();
    match items.len() {
        n if n > shown.len() => format!("[{} … and {} more]", shown.join(", "), n - 12),
        _ => format!("[{}]", shown.join(", ")),
    }
}

/// How a received message appears in expectations and reports: the tag of
/// a `say`, else `method(args)`.
pub(crate) fn render(message: &Message) -> String {
    if message.method() == SAY
        && let Ok(tag) = message.args::<String>()
    {
        return tag;
    }
    format!("{}({})", message.method(), message.args_json())
}

/// One local connection of the scenario and what it must receive.
struct Client {
    label: String,
    instance: usize,
    id: ConnectionId,
    user: Option<UserId>,
    groups: BTreeSet<GroupName>,
    // `None` once the scenario disconnected it.
    connection: Option<Connection>,
    expected: Vec<String>,
}

/// Several instances of one hub, their connections, and a model of who
/// must receive each send.
pub(crate) struct Room {
    name: String,
    hubs: Vec<Instance>,
    clients: Vec<Client>,
    timeout: Duration,
    barriers: u64,
}

impl Room {
    /// A room of `instances` hubs, each over a fresh transport.
    pub(crate) async fn new(
        factory: &dyn TransportFactory,
        tag: &str,
        instances: usize,
    ) -> Result<Self, Failure> {
        let mut room = Self::empty(hub_name(tag), &factory.capabilities());
        for _ in 0..instances {
            room.add_instance(factory, QUEUE_CAPACITY).await?;
        }
        Ok(room)
    }

    /// A room with no instance yet, for hub `name`.
    pub(crate) fn empty(name: String, capabilities: &Capabilities) -> Self {
        Self {
            name,
            hubs: Vec::new(),
            clients: Vec::new(),
            timeout: capabilities.delivery_timeout,
            barriers: 0,
        }
    }

    /// Adds an instance over a fresh transport; returns its index.
    pub(crate) async fn add_instance(
        &mut self,
        factory: &dyn TransportFactory,
        queue_capacity: usize,
    ) -> Result<usize, Failure> {
        let hub = instance(factory, &self.name, queue_capacity).await?;
        Ok(self.add_hub(hub))
    }

    /// Adds an instance built by the scenario; returns its index.
    pub(crate) fn add_hub(&mut self, hub: Instance) -> usize {
        self.hubs.push(hub);
        self.hubs.len() - 1
    }

    /// The hub of instance `index`.
    pub(crate) fn hub(&self, index: usize) -> &Instance {
        &self.hubs[index]
    }

    /// Registers connection `id` on `instance`, for `user`, and adds it to
    /// `groups` locally; returns the client's index.
    pub(crate) async fn connect(
        &mut self,
        instance: usize,
        id: &str,
        user: Option<&str>,
        groups: &[&str],
    ) -> Result<usize, Failure> {
        let hub = &self.hubs[instance];
        let id = ConnectionId::from(id);
        let user = user.map(UserId::from);
        let connection = hub.register(id.clone(), user.clone())?;
        for group in groups {
            hub.add_to_group(&id, *group).await?;
        }
        self.clients.push(Client {
            label: format!("connection {id} on instance {instance}"),
            instance,
            id,
            user,
            groups: groups.iter().map(|group| GroupName::from(*group)).collect(),
            connection: Some(connection),
            expected: Vec::new(),
        });
        Ok(self.clients.len() - 1)
    }

    /// The id of client `client`.
    pub(crate) fn id(&self, client: usize) -> ConnectionId {
        self.clients[client].id.clone()
    }

    /// The instance holding client `client`.
    pub(crate) fn instance_of(&self, client: usize) -> usize {
        self.clients[client].instance
    }

    /// Records in the model that `client` joined `group` (the scenario
    /// changed the hub itself).
    pub(crate) fn model_join(&mut self, client: usize, group: &str) {
        self.clients[client].groups.insert(GroupName::from(group));
    }

    /// Records in the model that `client` left `group`.
    pub(crate) fn model_leave(&mut self, client: usize, group: &str) {
        self.clients[client].groups.remove(group);
    }

    /// Unregisters `client` from its hub and hands back its queue, which
    /// must receive nothing from now on.
    pub(crate) fn unregister(&mut self, client: usize) -> Result<Connection, Failure> {
        let entry = &mut self.clients[client];
        let hub = &self.hubs[entry.instance];
        ensure!(
            hub.unregister(&entry.id),
            "{}: unregister returned false for a registered connection",
            entry.label
        );
        let connection = entry.connection.take().expect("client connected");
        self.check_expected_is_empty(client)?;
        Ok(connection)
    }

    /// Disconnects `client` by dropping its queue, as a server does when a
    /// socket closes.
    pub(crate) fn drop_connection(&mut self, client: usize) -> Result<(), Failure> {
        drop(self.clients[client].connection.take());
        self.check_expected_is_empty(client)
    }

    fn check_expected_is_empty(&self, client: usize) -> Result<(), Failure> {
        let entry = &self.clients[client];
        ensure!(
            entry.expected.is_empty(),
            "scenario bug: {} disconnected with messages still expected",
            entry.label
        );
        Ok(())
    }

    /// Sends a `say` with argument `tag` from instance `from`, expecting it
    /// at every client the model selects.
    pub(crate) async fn send(
        &mut self,
        from: usize,
        target: Target,
        tag: &str,
    ) -> Result<(), Failure> {
        let message = Message::new(SAY, tag)?;
        self.send_message(from, target, Arc::new(message)).await
    }

    /// Sends `message` from instance `from`, expecting it at every client
    /// the model selects.
    pub(crate) async fn send_message(
        &mut self,
        from: usize,
        target: Target,
        message: Arc<Message>,
    ) -> Result<(), Failure> {
        let rendered = render(&message);
        for client in &mut self.clients {
            if client.connection.is_some() && selects(&target, client)? {
                client.expected.push(rendered.clone());
            }
        }
        self.hubs[from]
            .send_message(target.clone(), message)
            .await
            .map_err(|e| {
                fail!(
                    "send {} to {target:?} from instance {from} failed: {}",
                    short(&rendered),
                    ErrorChain(&e)
                )
            })
    }

    /// Expects `client` to receive `rendered` in addition to what the model
    /// says, for sends the model cannot follow.
    pub(crate) fn expect(&mut self, client: usize, rendered: &str) {
        self.clients[client].expected.push(rendered.to_owned());
    }

    /// Waits until `condition` holds, polling; fails after the delivery
    /// timeout with `what` in the message.
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(), Failure> {
        wait_until(self.timeout, what, &mut condition).await
    }

    /// Sends a barrier marker to every connection from every instance and
    /// waits for all of them; returns what each client received before
    /// its markers, in arrival order.
    ///
    /// Envelopes of one publisher arrive in publish order and each instance
    /// delivers locally in send order, so once a connection has every
    /// instance's marker, nothing sent before the barrier is still on its
    /// way to it.
    pub(crate) async fn barrier(&mut self) -> Result<Vec<Vec<String>>, Failure> {
        self.barriers += 1;
        let token = self.barriers;
        for (from, hub) in self.hubs.iter().enumerate() {
            let marker = serde_json::json!({ "token": token, "from": from });
            hub.send(Target::All, BARRIER, &marker).await.map_err(|e| {
                fail!(
                    "barrier send from instance {from} failed: {}",
                    ErrorChain(&e)
                )
            })?;
        }

        let deadline = Instant::now() + self.timeout;
        let instances = self.hubs.len();
        let mut all = Vec::with_capacity(self.clients.len());
        for client in &mut self.clients {
            let Some(connection) = client.connection.as_mut() else {
                all.push(Vec::new());
                continue;
            };
            let mut seen = vec![false; instances];
            let mut received = Vec::new();
            while seen.contains(&false) {
                let message = match tokio::time::timeout_at(deadline, connection.recv()).await {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        return Err(fail!("{}: queue closed unexpectedly", client.label));
                    }
                    Err(_) => {
                        let missing: Vec<_> = (0..instances).filter(|i| !seen[*i]).collect();
                        return Err(fail!(
                            "{}: barrier markers from instances {missing:?} did not arrive \
                             within {:?}; before them it received {}, expected {}",
                            client.label,
                            self.timeout,
                            list(&received),
                            list(&client.expected),
                        ));
                    }
                };
                if message.method() == BARRIER {
                    let marker: serde_json::Value = message.args()?;
                    let from = marker["from"].as_u64().unwrap_or(u64::MAX) as usize;
                    if marker["token"] == token && from < instances && !seen[from] {
                        seen[from] = true;
                        continue;
                    }
                }
                received.push(render(&message));
            }
            all.push(received);
        }
        Ok(all)
    }

    /// Runs a barrier, then checks that every connection received exactly
    /// what was expected since the last check (as a multiset: nothing
    /// missing, nothing extra, nothing twice). Returns what each client
    /// received, in arrival order.
    pub(crate) async fn verify(&mut self) -> Result<Vec<Vec<String>>, Failure> {
        let received = self.barrier().await?;
        let mut problems = Vec::new();
        for (client, got) in self.clients.iter_mut().zip(&received) {
            if let Some(problem) = compare(&client.expected, got) {
                problems.push(format!("{}: {problem}", client.label));
            }
            client.expected.clear();
        }
        ensure!(problems.is_empty(), "{}", problems.join("; "));
        Ok(received)
    }

    /// Verifies, then checks that nothing more arrives and that every
    /// instance received each envelope of the others once and its own
    /// echo once.
    pub(crate) async fn finish(mut self) -> Result<(), Failure> {
        self.verify().await?;
        let what = "every instance to receive each envelope of the others once and its own echo";
        if let Err(Failure(_)) = self
            .wait_until(what, || self.stats_problem().is_none())
            .await
        {
            let problem = self.stats_problem().unwrap_or_default();
            return Err(fail!("waited {:?} for {what}: {problem}", self.timeout));
        }

        tokio::time::sleep(QUIET_PERIOD).await;
        for client in &mut self.clients {
            if let Some(connection) = client.connection.as_mut()
                && let Some(message) = connection.try_recv()
            {
                let message = render(&message);
                return Err(fail!(
                    "{}: received {} after the last barrier",
                    client.label,
                    short(&message)
                ));
            }
        }
        if let Some(problem) = self.stats_problem() {
            return Err(fail!("after the last barrier: {problem}"));
        }
        Ok(())
    }

    /// Whether the hubs' counters disagree with exactly-once delivery of
    /// every published envelope to every other instance, and of its echo to
    /// the publisher.
    fn stats_problem(&self) -> Option<String> {
        let stats: Vec<_> = self.hubs.iter().map(Hub::stats).collect();
        let total: u64 = stats.iter().map(|s| s.published).sum();
        let mut problems = Vec::new();
        for (i, s) in stats.iter().enumerate() {
            let expected = total - s.published;
            if s.received != expected {
                problems.push(format!(
                    "instance {i} received {} envelopes, the others published {expected}",
                    s.received
                ));
            }
            if s.echoes_skipped != s.published {
                problems.push(format!(
                    "instance {i} skipped {} echoes of its own envelopes, it published {}",
                    s.echoes_skipped, s.published
                ));
            }
            if s.lagged != 0 || s.connection_lost != 0 {
                problems.push(format!(
                    "instance {i} reported {} lagged envelopes and {} lost connections",
                    s.lagged, s.connection_lost
                ));
            }
        }
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout`
/// passes.
pub(crate) async fn wait_until(
    timeout: Duration,
    what: &str,
    condition: &mut dyn FnMut() -> bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}, in vain"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Describes how `received` differs from `expected` as multisets, or
/// `None` if they are equal.
fn compare(expected: &[String], received: &[String]) -> Option<String> {
    let mut balance: BTreeMap<&str, i64> = BTreeMap::new();
    for item in expected {
        *balance.entry(item).or_default() += 1;
    }
    for item in received {
        *balance.entry(item).or_default() -= 1;
    }
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    for (item, count) in balance {
        for _ in 0..count.abs() {
            match count {
                c if c > 0 => missing.push(item.to_owned()),
                c if c < 0 => extra.push(item.to_owned()),
                _ => {}
            }
        }
    }
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut text = Vec::new();
    if !missing.is_empty() {
        text.push(format!("missing {}", list(&missing)));
    }
    if !extra.is_empty() {
        text.push(format!("extra or repeated {}", list(&extra)));
    }
    Some(format!(
        "{} (expected {}, received {})",
        text.join(", "),
        list(expected),
        list(received)
    ))
}

/// Whether `target` selects `client`: the reference routing the hub must
/// reproduce on every instance.
fn selects(target: &Target, client: &Client) -> Result<bool, Failure> {
    let id = &client.id;
    let in_group = |name: &GroupName| client.groups.contains(name);
    let is_user = |user: &UserId| client.user.as_ref() == Some(user);
    Ok(match target {
        Target::All => true,
        Target::AllExcept { except } => !except.contains(id),
        Target::Connection { id: target } => target == id,
        Target::Connections { ids } => ids.contains(id),
        Target::Group { name } => in_group(name),
        Target::GroupExcept { name, except } => in_group(name) && !except.contains(id),
        Target::Groups { names } => names.iter().any(in_group),
        Target::User { id } => is_user(id),
        Target::Users { ids } => ids.iter().any(is_user),
        other => return Err(fail!("the suite has no model of target {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_reports_missing_extra_and_repeated() {
        let s = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        assert_eq!(compare(&s(&["a", "b"]), &s(&["b", "a"])), None);
        let report = compare(&s(&["a", "b"]), &s(&["a", "a", "c"])).unwrap();
        assert!(
            report.starts_with("missing [b], extra or repeated [a, c]"),
            "{report}"
        );
    }

    #[test]
    fn hub_names_are_unique() {
        assert_ne!(hub_name("x"), hub_name("x"));
    }
}
