//! End to end: real `backplane-chat` processes, real WebSocket clients.
//!
//! Each test starts the built binary (two instances in one process over the
//! memory transport, or two processes over PostgreSQL or Redis), connects
//! browsers' worth of WebSocket clients to both instances and checks who
//! receives what. The PostgreSQL and Redis tests need the servers that
//! `scripts/test` starts (`BACKPLANE_POSTGRES_URL`, `BACKPLANE_REDIS_URL`)
//! and fail without them.
//!
//! Negative checks ("this client did not receive that message") need no
//! sleeping: after the message under test, the same instance sends a
//! broadcast, and the hub keeps one instance's sends in order, so a
//! client's next frame is the broadcast only if nothing came before it.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Generous: a loaded CI machine may take seconds to start a process or
/// connect to PostgreSQL. No test relies on how fast anything is.
const TIMEOUT: Duration = Duration::from_secs(30);

const NEED_SERVICES: &str = "run through scripts/test, or `source scripts/lib/services.sh && \
     start_services` first, which starts PostgreSQL and Redis and sets it";

/// A running `backplane-chat` process; killed when dropped.
struct Demo {
    child: Child,
    /// `(instance name, http://addr)` for each instance it printed.
    instances: Vec<(String, String)>,
}

impl Demo {
    /// Starts the binary with `args` and waits until it prints `count`
    /// `<name> listening on http://ADDR` lines.
    async fn start(args: &[&str], env: &[(&str, &str)], count: usize) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_backplane-chat"));
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn backplane-chat");

        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut instances = Vec::new();
        let read = async {
            while instances.len() < count {
                let line = lines
                    .next_line()
                    .await
                    .expect("read backplane-chat output")
                    .expect("backplane-chat exited before listening; see its log above");
                if let Some((name, url)) = line.split_once(" listening on ") {
                    instances.push((name.to_owned(), url.to_owned()));
                }
            }
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .expect("backplane-chat did not print its URLs in time");

        // Keep reading, so that the process never writes to a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, instances }
    }

    fn name(&self, index: usize) -> &str {
        &self.instances[index].0
    }

    fn url(&self, index: usize) -> &str {
        &self.instances[index].1
    }

    /// Sends SIGTERM and waits for the process to exit.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("process still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(TIMEOUT, self.child.wait())
            .await
            .expect("backplane-chat did not stop after SIGTERM")
            .expect("wait for backplane-chat")
    }
}

/// A hub name no other test run uses, so that runs sharing one PostgreSQL
/// or Redis do not see each other's messages.
fn unique_hub() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("chat-test-{}-{nanos}", std::process::id())
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{name} is not set: {NEED_SERVICES}"),
    }
}

/// One WebSocket client, as a browser tab would be.
struct Client {
    label: String,
    /// The instance this client is connected to.
    instance: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to the instance at `http_url` and reads its welcome.
    async fn connect(http_url: &str, label: &str) -> Self {
        let url = format!("{}/ws", http_url.replacen("http://", "ws://", 1));
        let (ws, _) = tokio::time::timeout(TIMEOUT, connect_async(url.as_str()))
            .await
            .unwrap_or_else(|_| panic!("{label}: connecting to {url} timed out"))
            .unwrap_or_else(|e| panic!("{label}: cannot connect to {url}: {e}"));
        let mut client = Self {
            label: label.to_owned(),
            instance: String::new(),
            ws,
        };
        let welcome = client.expect("welcome").await;
        client.instance = welcome["instance"].as_str().unwrap().to_owned();
        assert_eq!(welcome["max_frame_bytes"], 65536);
        client
    }

    /// Connects and says hello as `name`.
    async fn named(http_url: &str, name: &str, label: &str) -> Self {
        let mut client = Self::connect(http_url, label).await;
        client.send(json!({"type": "hello", "name": name})).await;
        let ready = client.expect("ready").await;
        assert_eq!(ready["name"], name);
        client
    }

    async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    async fn send_raw(&mut self, message: Message) {
        self.ws
            .send(message)
            .await
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.label));
    }

    /// The next JSON frame.
    async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(TIMEOUT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no frame within {TIMEOUT:?}", self.label));
            match next {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", self.label));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("{}: expected a text frame, got {other:?}", self.label),
            }
        }
    }

    /// The next frame, which must be of type `kind`.
    async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], kind,
            "{}: unexpected frame {frame}",
            self.label
        );
        frame
    }

    /// The next frame, which must be an error.
    async fn expect_error(&mut self, after: &str) -> String {
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], "error",
            "{}: {after} should get an error frame, got {frame}",
            self.label
        );
        frame["message"].as_str().unwrap().to_owned()
    }

    /// The next frame, which must be a chat message of `kind` with `text`,
    /// delivered by this client's instance; returns it.
    async fn expect_message(&mut self, kind: &str, text: &str) -> Value {
        let frame = self.expect("message").await;
        assert_eq!(
            (frame["kind"].as_str(), frame["text"].as_str()),
            (Some(kind), Some(text)),
            "{}: unexpected message {frame}",
            self.label
        );
        assert_eq!(
            frame["delivered_by"], self.instance,
            "{}: {frame}",
            self.label
        );
        frame
    }

    async fn join(&mut self, room: &str) {
        self.send(json!({"type": "join", "room": room})).await;
        assert_eq!(self.expect("joined").await["room"], room);
    }
}

/// Broadcasts `text` from `sender` and checks that every client's next
/// frame is that broadcast.
async fn broadcast_reaches_all(sender: usize, clients: &mut [&mut Client], text: &str) {
    clients[sender]
        .send(json!({"type": "broadcast", "text": text}))
        .await;
    let from = clients[sender].label.split('@').next().unwrap().to_owned();
    let sent_via = clients[sender].instance.clone();
    for client in clients.iter_mut() {
        let frame = client.expect_message("broadcast", text).await;
        assert_eq!(frame["from"], from.as_str(), "{frame}");
        assert_eq!(frame["sent_via"], sent_via.as_str(), "{frame}");
    }
}

/// The shared scenario: clients on instances `a` and `b` of one hub.
async fn chat_across_instances(a: &str, b: &str) {
    let mut ann = Client::named(a, "ann", "ann@A").await;
    let mut bob_b = Client::named(b, "bob", "bob@B").await;
    let mut bob_a = Client::named(a, "bob", "bob@A").await;
    let mut cat = Client::named(b, "cat", "cat@B").await;
    assert_ne!(
        ann.instance, bob_b.instance,
        "a and b must be two instances"
    );

    // A room message sent on A reaches the members on both instances...
    ann.join("lobby").await;
    bob_b.join("lobby").await;
    ann.send(json!({"type": "room", "room": "lobby", "text": "hello lobby"}))
        .await;
    let on_b = bob_b.expect_message("room", "hello lobby").await;
    assert_eq!(
        (&on_b["from"], &on_b["room"], &on_b["sent_via"]),
        (&json!("ann"), &json!("lobby"), &json!(ann.instance))
    );
    ann.expect_message("room", "hello lobby").await;

    // ...and not the non-members: their next frame is this broadcast,
    // which reaches everyone.
    let mut all = [&mut ann, &mut bob_b, &mut bob_a, &mut cat];
    broadcast_reaches_all(0, &mut all, "after the room message").await;

    // A direct message reaches every connection of the user, on both
    // instances, and the sender's own; nobody else.
    cat.send(json!({"type": "direct", "to": "bob", "text": "psst"}))
        .await;
    for bob in [&mut bob_b, &mut bob_a] {
        let frame = bob.expect_message("direct", "psst").await;
        assert_eq!(
            (&frame["from"], &frame["to"]),
            (&json!("cat"), &json!("bob"))
        );
        assert_eq!(frame["sent_via"], cat.instance);
    }
    cat.expect_message("direct", "psst").await;
    let mut all = [&mut ann, &mut bob_b, &mut bob_a, &mut cat];
    broadcast_reaches_all(3, &mut all, "after the direct message").await;

    // A member who leaves no longer receives the room.
    bob_b.send(json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(bob_b.expect("left").await["room"], "lobby");
    ann.send(json!({"type": "room", "room": "lobby", "text": "anyone?"}))
        .await;
    ann.expect_message("room", "anyone?").await;
    let mut all = [&mut ann, &mut bob_b, &mut bob_a, &mut cat];
    broadcast_reaches_all(0, &mut all, "after leaving").await;

    // Bad input gets an error frame and changes nothing else.
    ann.send_raw(Message::text("not json")).await;
    ann.expect_error("text that is not JSON").await;
    ann.send(json!({"type": "dance"})).await;
    ann.expect_error("an unknown command").await;
    ann.send(json!({"type": "join"})).await;
    ann.expect_error("a command without its fields").await;
    ann.send_raw(Message::binary(vec![1, 2, 3])).await;
    ann.expect_error("a binary frame").await;
    let huge = json!({"type": "broadcast", "text": "x".repeat(70 * 1024)});
    ann.send(huge).await;
    let error = ann.expect_error("a 70 KiB frame").await;
    assert!(error.contains("exceeds"), "{error}");
    ann.send(json!({"type": "room", "room": "elsewhere", "text": "hi"}))
        .await;
    ann.expect_error("a room message to a room not joined")
        .await;
    ann.send(json!({"type": "hello", "name": "ann2"})).await;
    ann.expect_error("a second hello").await;
    ann.send(json!({"type": "join", "room": ""})).await;
    ann.expect_error("an empty room name").await;

    let mut anonymous = Client::connect(b, "anonymous@B").await;
    anonymous
        .send(json!({"type": "broadcast", "text": "who am I"}))
        .await;
    anonymous.expect_error("a command before hello").await;

    // The connection that sent all that still works, and nobody received
    // any of it: everyone's next frame is this broadcast.
    let mut all = [&mut ann, &mut bob_b, &mut bob_a, &mut cat];
    broadcast_reaches_all(0, &mut all, "still here").await;
}

#[tokio::test]
async fn memory_two_instances_in_one_process() {
    let demo = Demo::start(
        &["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"],
        &[],
        2,
    )
    .await;
    assert_eq!((demo.name(0), demo.name(1)), ("instance-A", "instance-B"));

    chat_across_instances(demo.url(0), demo.url(1)).await;
}

#[tokio::test]
async fn postgres_two_processes() {
    let url = required_env("BACKPLANE_POSTGRES_URL");
    let hub = unique_hub();
    let env = [("DATABASE_URL", url.as_str())];
    let args = |name| ["--listen", "127.0.0.1:0", "--hub", &hub, "--name", name];
    let a = Demo::start(&args("instance-A"), &env, 1).await;
    let b = Demo::start(&args("instance-B"), &env, 1).await;

    chat_across_instances(a.url(0), b.url(0)).await;
}

#[tokio::test]
async fn redis_two_processes() {
    let url = required_env("BACKPLANE_REDIS_URL");
    let hub = unique_hub();
    let args = |name| {
        let listen = ["--listen", "127.0.0.1:0", "--hub", &hub, "--name", name];
        [&listen[..], &["--redis", &url]].concat()
    };
    let a = Demo::start(&args("instance-A"), &[], 1).await;
    let b = Demo::start(&args("instance-B"), &[], 1).await;

    chat_across_instances(a.url(0), b.url(0)).await;
}

#[tokio::test]
async fn sigterm_closes_websockets_and_exits_cleanly() {
    let demo = Demo::start(
        &["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"],
        &[],
        2,
    )
    .await;
    let mut ann = Client::named(demo.url(0), "ann", "ann@A").await;
    let mut anonymous = Client::connect(demo.url(1), "anonymous@B").await;

    let status = demo.terminate().await;
    assert!(status.success(), "backplane-chat exited with {status}");

    for client in [&mut ann, &mut anonymous] {
        let next = tokio::time::timeout(TIMEOUT, client.ws.next())
            .await
            .expect("no close frame in time");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001, "{}", client.label);
            }
            other => panic!("{}: expected a close frame, got {other:?}", client.label),
        }
    }
}

#[tokio::test]
async fn explicit_address_in_use_is_an_error() {
    let demo = Demo::start(
        &["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"],
        &[],
        2,
    )
    .await;
    let taken = demo.url(0).trim_start_matches("http://").to_owned();

    let output = Command::new(env!("CARGO_BIN_EXE_backplane-chat"))
        .args(["--listen", &taken, "--listen", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "error")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, output)
        .await
        .expect("backplane-chat should give up at once")
        .expect("run backplane-chat");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")),
        "{stderr}"
    );
}
