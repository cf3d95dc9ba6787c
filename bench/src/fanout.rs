//! Local delivery inside one instance: fan-out to every connection, and
//! group sends whose cost must follow the group's size, not the number of
//! connections the instance holds.
//!
//! Only the sends are timed. Connections are drained between rounds,
//! untimed, so that no queue fills and no delivery is dropped.

use std::time::{Duration, Instant};

use backplane_api::{Connection, Hub, Target};
use backplane_memory::MemoryBackplane;

use crate::load::{Result, stamp};

/// Sends per timed round; every connection's queue holds a whole round.
const SENDS_PER_ROUND: usize = 64;

/// The payload of every local send.
const PAYLOAD_BYTES: usize = 200;

/// Members of the group a group send targets; every connection is in one
/// group of this size.
pub(crate) const GROUP_SIZE: usize = 10;

/// Deliveries per second of `Target::All` sends to `connections` local
/// connections, over `rounds` rounds.
pub(crate) async fn fan_out(connections: usize, rounds: usize) -> Result<f64> {
    let hub = hub().await?;
    let mut held = register(&hub, connections)?;
    let payload = stamp::filler(PAYLOAD_BYTES);

    let mut timed = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..SENDS_PER_ROUND {
            hub.send(Target::All, "tick", payload.as_str()).await?;
        }
        timed += started.elapsed();
        drain(&mut held);
    }

    let stats = hub.stats();
    let expected = (connections * SENDS_PER_ROUND * rounds) as u64;
    if stats.delivered != expected || stats.dropped != 0 {
        return Err(format!(
            "fan-out delivered {} of {expected} ({} dropped)",
            stats.delivered, stats.dropped
        )
        .into());
    }
    Ok(expected as f64 / timed.as_secs_f64())
}

/// The median cost, per send, of a send to one group of [`GROUP_SIZE`]
/// members in a hub holding each of `sizes` connections. Rounds alternate
/// between the hubs so that all of them see the same machine noise.
pub(crate) async fn group_send_cost(sizes: &[usize], rounds: usize) -> Result<Vec<Duration>> {
    let mut setups = Vec::new();
    for &size in sizes {
        setups.push(Grouped::new(size).await?);
    }
    let payload = stamp::filler(PAYLOAD_BYTES);

    let mut samples = vec![Vec::with_capacity(rounds); setups.len()];
    for _ in 0..rounds {
        for (setup, samples) in setups.iter_mut().zip(&mut samples) {
            samples.push(setup.round(&payload).await?);
        }
    }

    let medians = samples.into_iter().map(|mut per_send| {
        per_send.sort_unstable();
        per_send[per_send.len() / 2]
    });
    Ok(medians.collect())
}

/// A hub whose connections are all in groups of [`GROUP_SIZE`].
struct Grouped {
    hub: Hub<MemoryBackplane>,
    // Dropping a connection unregisters it: every one is kept.
    held: Vec<Connection>,
    target: String,
    members: Vec<usize>,
}

impl Grouped {
    async fn new(size: usize) -> Result<Self> {
        let hub = hub().await?;
        let held = register(&hub, size)?;
        for (i, connection) in held.iter().enumerate() {
            hub.add_to_group(connection.id(), group_of(i)).await?;
        }
        let target = group_of(size / 2);
        let members = (0..size).filter(|&i| group_of(i) == target).collect();
        Ok(Self {
            hub,
            held,
            target,
            members,
        })
    }

    /// Times one round of group sends; returns the cost of one send.
    async fn round(&mut self, payload: &str) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..SENDS_PER_ROUND {
            let target = Target::group(self.target.as_str());
            self.hub.send(target, "tick", payload).await?;
        }
        let elapsed = started.elapsed();

        for &i in &self.members {
            let delivered = drain(&mut self.held[i..=i]);
            if delivered != SENDS_PER_ROUND {
                return Err(format!("a group member got {delivered} of {SENDS_PER_ROUND}").into());
            }
        }
        Ok(elapsed / SENDS_PER_ROUND as u32)
    }
}

fn group_of(index: usize) -> String {
    format!("room-{}", index / GROUP_SIZE)
}

async fn hub() -> Result<Hub<MemoryBackplane>> {
    let hub = Hub::builder("local", MemoryBackplane::new())
        .queue_capacity(SENDS_PER_ROUND)
        .build()
        .await?;
    Ok(hub)
}

fn register(hub: &Hub<MemoryBackplane>, count: usize) -> Result<Vec<Connection>> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        held.push(hub.register(format!("conn-{i}").into(), None)?);
    }
    Ok(held)
}

/// Empties the connections' queues; returns how many messages they held.
fn drain(connections: &mut [Connection]) -> usize {
    let mut drained = 0;
    for connection in connections {
        while connection.try_recv().is_some() {
            drained += 1;
        }
    }
    drained
}
