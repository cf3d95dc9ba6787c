//! `backplane-chat`: a chat server that runs as several instances over one
//! backplane, so that a message typed on one instance reaches browsers
//! connected to another.
//!
//! Each instance serves a chat page at `/` and a WebSocket at `/ws`. Every
//! WebSocket is one connection of the instance's hub; rooms are hub groups
//! and user names are hub user ids, so the hub routes room, direct and
//! broadcast messages to the right browsers on every instance.
//!
//! # Usage
//!
//! ```text
//! backplane-chat                        two instances in this process over
//!                                       the memory transport, on
//!                                       127.0.0.1:3000 and 127.0.0.1:3001
//! backplane-chat --postgres URL         one instance over PostgreSQL
//!                                       (DATABASE_URL works too)
//! backplane-chat --redis URL            one instance over Redis
//!
//! --listen ADDR   where an instance listens (default 127.0.0.1:3000); in
//!                 memory mode, give it once per instance
//! --hub NAME      the hub (bus channel); instances chat together only on
//!                 the same hub (default "chat")
//! --name NAME     the instance's name, shown on every message it delivers
//!                 (default "instance-PORT"); memory mode names its
//!                 instances "instance-A", "instance-B", ...
//! ```
//!
//! The page at `/?name=ann` says hello as `ann` as soon as it connects,
//! which saves typing when opening many tabs.
//!
//! Each instance prints `<name> listening on http://ADDR` on standard
//! output once it accepts connections; `--listen 127.0.0.1:0` picks a free
//! port. When a default port is taken, a free one is used instead. Logs go
//! to standard error; `RUST_LOG` filters them (default `info`). Ctrl-C (or
//! SIGTERM) closes every WebSocket, unregisters every connection and
//! closes the hubs.
//!
//! # Protocol
//!
//! JSON text frames, one object each, told apart by their `type`.
//!
//! From the client:
//!
//! ```text
//! {"type":"hello","name":"ann"}                 pick the user name: first,
//!                                               once
//! {"type":"join","room":"lobby"}                join a room
//! {"type":"leave","room":"lobby"}               leave it
//! {"type":"room","room":"lobby","text":"hi"}    to the members of a room
//!                                               the sender has joined
//! {"type":"direct","to":"bob","text":"hi"}      to every connection of user
//!                                               bob, on every instance, and
//!                                               to the sender's own
//! {"type":"broadcast","text":"hi"}              to every named connection
//!                                               on every instance
//! ```
//!
//! From the server:
//!
//! ```text
//! {"type":"welcome","instance":"instance-A","hub":"chat",
//!  "max_frame_bytes":65536}                     on connect
//! {"type":"ready","name":"ann","connection":"<id>"}
//!                                               after hello
//! {"type":"joined","room":"lobby"}              after join
//! {"type":"left","room":"lobby"}                after leave
//! {"type":"message","kind":"room","from":"ann","room":"lobby",
//!  "text":"hi","sent_via":"instance-A","delivered_by":"instance-B"}
//!                                               a chat message
//! {"type":"error","message":"..."}              a frame was refused
//! ```
//!
//! A message's `kind` is `room` (with `room`), `direct` (with `to`) or
//! `broadcast`; `sent_via` names the instance its sender is connected to
//! and `delivered_by` the instance that wrote this frame. A sender
//! receives its own room, direct and broadcast messages like every other
//! recipient. That copy shows the message went out, but its absence proves
//! nothing: a sender that writes faster than it reads fills its own queue
//! and misses copies like any slow reader (see Limitations); an error
//! frame is the only sign that a message was refused.
//!
//! Malformed JSON, unknown types or fields, binary frames, text frames over
//! 64 KiB, invalid names and messages the backplane refuses (too large,
//! bus unavailable) get an error frame; the connection stays open and
//! nothing else is affected. Names are 1 to 32 characters, rooms 1 to 64,
//! neither with surrounding spaces or control characters.
//!
//! # Limitations
//!
//! - Frames over 1 MiB are refused by the WebSocket layer, which closes the
//!   connection.
//! - Names are not reserved: two browsers that pick the same name are the
//!   same user and both receive its direct messages. A direct message to a
//!   name nobody uses is delivered to nobody, without an error.
//! - Delivery is at most once, like the backplane's: a browser whose queue
//!   (256 messages) is full, or an instance cut off from the bus, misses
//!   messages, without an error frame; the instance logs it at warn.

mod backend;
mod protocol;
mod server;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use backplane_api::{Hub, ServerId};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing_subscriber::EnvFilter;

use crate::backend::Backend;
use crate::server::Instance;

/// The first default port; memory mode's further instances count up.
const DEFAULT_PORT: u16 = 3000;

/// How long shutdown waits for WebSockets to close before closing the
/// hubs anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Printed once the instances of memory mode listen.
const MEMORY_HINT: &str = "Open both URLs, pick a name in each tab and chat: every message \
     shows which instance delivered it. Ctrl-C stops.";

/// Printed once the one instance of PostgreSQL or Redis mode listens.
const SCALE_OUT_HINT: &str = "Start another process on the same bus with another --listen \
     address to add an instance. Ctrl-C stops.";

/// Command line of `backplane-chat`.
#[derive(Debug, Parser)]
#[command(version, about = "Chat server that scales out over a backplane")]
struct Args {
    /// Run one instance over PostgreSQL LISTEN/NOTIFY [default: $DATABASE_URL]
    #[arg(long, value_name = "URL", conflicts_with = "redis")]
    postgres: Option<String>,

    /// Run one instance over Redis pub/sub
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// Where an instance listens; in memory mode, once per instance
    /// [default: 127.0.0.1:3000, and 127.0.0.1:3001 in memory mode]
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// The hub: instances chat together only on the same hub
    #[arg(long, value_name = "NAME", default_value = "chat")]
    hub: String,

    /// This instance's name, shown on the messages it delivers
    /// [default: instance-PORT]; not in memory mode
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// One instance to start: its name and where it listens.
struct Plan {
    name: Option<String>,
    addr: SocketAddr,
    /// Whether `addr` is a default, to be replaced by a free port if taken.
    default: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let backend = backend(&args);
    let plans = plan(&args, &backend)?;
    let transport = backend.connect().await?;
    tracing::info!(
        transport = backend.kind(),
        server = backend.server(),
        hub = args.hub,
        "backplane ready",
    );

    // Every instance of this process shares one shutdown signal and one
    // session tally.
    let (stop, stopped) = watch::channel(false);
    let (sessions, mut sessions_done) = mpsc::channel::<()>(1);
    let server_id = ServerId::random();
    let mut hubs = Vec::new();
    let mut servers = Vec::new();

    for (index, plan) in plans.into_iter().enumerate() {
        let listener = bind(&plan).await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let name = plan
            .name
            .unwrap_or_else(|| format!("instance-{}", addr.port()));

        // Instances in one process share the memory bus but must not share
        // a server id, or each would skip the other's envelopes as echoes.
        let hub = Hub::builder(args.hub.as_str(), transport.clone())
            .server_id(format!("{server_id}-{index}").into())
            .build()
            .await
            .map_err(|e| format!("cannot subscribe to hub {:?}: {e}", args.hub))?;
        hubs.push(hub.clone());

        let instance = Arc::new(Instance {
            name: name.clone(),
            hub,
            shutdown: stopped.clone(),
            sessions: sessions.clone(),
        });
        let app = server::router(instance);
        let mut until = stopped.clone();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = until.wait_for(|down| *down).await;
        });
        servers.push(tokio::spawn(async move { serve.await }));

        println!("{name} listening on http://{addr}");
    }
    drop(sessions);
    match backend {
        Backend::Memory if hubs.len() > 1 => println!("{MEMORY_HINT}"),
        Backend::Memory => {}
        _ => println!("{SCALE_OUT_HINT}"),
    }

    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = stop.send(true);

    // The servers stop accepting; then the WebSocket sessions close
    // themselves and unregister their connections.
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "server failed"),
            Err(error) => tracing::warn!(%error, "server task failed"),
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions_done.recv())
        .await
        .is_err()
    {
        tracing::warn!("websockets still open after the grace period");
    }
    for hub in &hubs {
        hub.close();
    }
    // Dropping the last handles closes the transport's connections.
    drop(hubs);
    drop(transport);
    tracing::info!("stopped");
    Ok(())
}

/// The transport the command line asks for.
fn backend(args: &Args) -> Backend {
    if let Some(url) = &args.redis {
        return Backend::Redis(url.clone());
    }
    let from_env = || std::env::var("DATABASE_URL").ok().filter(|v| !v.is_empty());
    match args.postgres.clone().or_else(from_env) {
        Some(url) => Backend::Postgres(url),
        None => Backend::Memory,
    }
}

/// The instances to start: two by default in memory mode, one otherwise.
fn plan(args: &Args, backend: &Backend) -> Result<Vec<Plan>, String> {
    let memory = matches!(backend, Backend::Memory);
    if memory && args.name.is_some() {
        return Err(
            "--name needs --postgres or --redis; memory mode names instances A, B, ...".into(),
        );
    }
    if !memory && args.listen.len() > 1 {
        return Err(format!(
            "--listen is given {} times, but with {} this process is one instance",
            args.listen.len(),
            backend.kind(),
        ));
    }

    if args.listen.is_empty() {
        let count = if memory { 2 } else { 1 };
        return Ok((0..count)
            .map(|i| Plan {
                name: memory.then(|| instance_letter(i)),
                addr: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT + i as u16)),
                default: true,
            })
            .collect());
    }
    Ok(args
        .listen
        .iter()
        .enumerate()
        .map(|(i, &addr)| Plan {
            name: if memory {
                Some(instance_letter(i))
            } else {
                args.name.clone()
            },
            addr,
            default: false,
        })
        .collect())
}

/// `instance-A`, `instance-B`, ... for the instances of memory mode.
fn instance_letter(index: usize) -> String {
    match u8::try_from(index).ok().filter(|i| *i < 26) {
        Some(i) => format!("instance-{}", char::from(b'A' + i)),
        None => format!("instance-{}", index + 1),
    }
}

/// Binds an instance's listener; a default address that is taken falls
/// back to a free port, an explicit one is an error.
async fn bind(plan: &Plan) -> Result<TcpListener, String> {
    match TcpListener::bind(plan.addr).await {
        Ok(listener) => Ok(listener),
        Err(error) if plan.default && error.kind() == ErrorKind::AddrInUse => {
            tracing::warn!(addr = %plan.addr, "default address taken; using a free port");
            let any = SocketAddr::new(plan.addr.ip(), 0);
            TcpListener::bind(any)
                .await
                .map_err(|e| format!("cannot listen on {any}: {e}"))
        }
        Err(error) => Err(format!("cannot listen on {}: {error}", plan.addr)),
    }
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops"),
        }
    }
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot watch Ctrl-C; stopping now");
    }
}
