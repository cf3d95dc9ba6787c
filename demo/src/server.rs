//! One chat instance: the HTTP routes and the WebSocket session that ties a
//! browser to a hub connection.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use backplane_api::{BackplaneError, Connection, ConnectionId, Hub, Target, Transport};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::protocol::{
    CHAT_METHOD, ChatMessage, Command, Frame, Kind, MAX_FRAME_BYTES, check_name, check_room,
    check_text,
};

/// The chat page, served at `/`.
const PAGE: &str = include_str!("page.html");

/// Frames larger than this are refused by the WebSocket layer itself, which
/// closes the connection. Between [`MAX_FRAME_BYTES`] and this size the
/// session answers with an error frame and stays open.
const MAX_WEBSOCKET_MESSAGE_BYTES: usize = 1024 * 1024;

/// WebSocket close code for "going away", sent when the instance shuts
/// down.
const CLOSE_GOING_AWAY: u16 = 1001;

/// What the routes of one instance share.
pub(crate) struct Instance<T: Transport + 'static> {
    /// Shown to clients as the instance that delivered each message.
    pub(crate) name: String,
    pub(crate) hub: Hub<T>,
    /// Turns `true` when the instance shuts down; every session closes.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Never sent on: every live session holds a clone, so shutdown knows
    /// that the last session has ended when the receiving end yields
    /// `None`.
    pub(crate) sessions: mpsc::Sender<()>,
}

impl<T: Transport + 'static> Instance<T> {
    /// Sends a chat message through the hub. The sender receives its own
    /// copy like every other selected connection, so there is no reply.
    async fn publish(
        &self,
        target: Target,
        message: ChatMessage,
    ) -> Result<Option<String>, String> {
        self.hub
            .send(target, CHAT_METHOD, &message)
            .await
            .map_err(refused)?;
        Ok(None)
    }
}

/// The routes of one instance: the page at `/`, the WebSocket at `/ws`.
pub(crate) fn router<T: Transport + 'static>(instance: Arc<Instance<T>>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/ws", get(upgrade::<T>))
        .with_state(instance)
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn upgrade<T: Transport + 'static>(
    State(instance): State<Arc<Instance<T>>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_WEBSOCKET_MESSAGE_BYTES)
        .max_frame_size(MAX_WEBSOCKET_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            let session = Session::new(instance, socket);
            let span = tracing::info_span!(
                "websocket",
                instance = session.instance.name,
                connection = %session.id,
            );
            session.run().instrument(span)
        })
        .into_response()
}

/// One browser connection. Before `hello` it holds no hub connection; after
/// it, its hub connection is registered under the chosen name, so direct
/// messages to that name reach it on whichever instance it is held.
struct Session<T: Transport + 'static> {
    instance: Arc<Instance<T>>,
    socket: WebSocket,
    id: ConnectionId,
    name: Option<String>,
    connection: Option<Connection>,
}

/// Why a session ends.
enum End {
    /// The client closed the socket or it failed.
    Client,
    /// The hub unregistered the connection (the hub was closed).
    Hub,
    /// The instance is shutting down.
    Shutdown,
}

impl<T: Transport + 'static> Session<T> {
    fn new(instance: Arc<Instance<T>>, socket: WebSocket) -> Self {
        Self {
            instance,
            socket,
            id: ConnectionId::random(),
            name: None,
            connection: None,
        }
    }

    /// Serves the client until it leaves or the instance shuts down. One
    /// loop reads client frames and forwards the hub connection's queue, so
    /// the socket has a single owner; messages that arrive while a command
    /// is being sent wait in the connection's bounded queue.
    async fn run(mut self) {
        let _alive = self.instance.sessions.clone();
        let mut shutdown = self.instance.shutdown.clone();
        tracing::debug!("websocket opened");

        let welcome = Frame::Welcome {
            instance: &self.instance.name,
            hub: self.instance.hub.name(),
            max_frame_bytes: MAX_FRAME_BYTES,
        }
        .to_json();
        let end = if self.send_text(welcome).await {
            self.serve(&mut shutdown).await
        } else {
            End::Client
        };

        if !matches!(end, End::Client) {
            let close = CloseFrame {
                code: CLOSE_GOING_AWAY,
                reason: Utf8Bytes::from_static("server shutting down"),
            };
            let _ = self.socket.send(WsMessage::Close(Some(close))).await;
        }
        // Dropping the hub connection unregisters it.
        drop(self.connection.take());
        tracing::debug!(user = self.name, "websocket closed");
    }

    async fn serve(&mut self, shutdown: &mut watch::Receiver<bool>) -> End {
        loop {
            tokio::select! {
                frame = self.socket.recv() => match frame {
                    Some(Ok(frame)) => {
                        if !self.on_frame(frame).await {
                            return End::Client;
                        }
                    }
                    Some(Err(error)) => {
                        tracing::debug!(%error, "websocket failed");
                        return End::Client;
                    }
                    None => return End::Client,
                },
                message = next_message(&mut self.connection), if self.connection.is_some() => {
                    match message {
                        Some(message) => {
                            if !self.forward(&message).await {
                                return End::Client;
                            }
                        }
                        None => return End::Hub,
                    }
                }
                _ = stopping(shutdown) => return End::Shutdown,
            }
        }
    }

    /// Handles one frame from the client; `false` once the socket is gone.
    async fn on_frame(&mut self, frame: WsMessage) -> bool {
        let text = match frame {
            WsMessage::Text(text) => text,
            WsMessage::Binary(_) => {
                return self
                    .send_error("binary frames are not supported; send JSON text")
                    .await;
            }
            WsMessage::Close(_) => return false,
            // axum answers pings itself.
            WsMessage::Ping(_) | WsMessage::Pong(_) => return true,
        };
        if text.len() > MAX_FRAME_BYTES {
            tracing::debug!(bytes = text.len(), "frame too large");
            let message = format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", text.len());
            return self.send_error(&message).await;
        }
        let command = match serde_json::from_str::<Command>(text.as_str()) {
            Ok(command) => command,
            Err(error) => {
                tracing::debug!(%error, "malformed command");
                return self
                    .send_error(&format!("malformed command: {error}"))
                    .await;
            }
        };

        let kind = command.kind();
        match self.execute(command).await {
            Ok(reply) => self.send_reply(reply).await,
            Err(message) => {
                tracing::debug!(command = kind, message, "command refused");
                self.send_error(&message).await
            }
        }
    }

    /// Carries out one command; returns the frame to answer with, if any,
    /// or the text of an error frame.
    async fn execute(&mut self, command: Command) -> Result<Option<String>, String> {
        let Some(name) = self.name.clone() else {
            return match command {
                Command::Hello { name } => self.hello(name).map(Some),
                _ => Err("say hello first: {\"type\":\"hello\",\"name\":\"...\"}".into()),
            };
        };

        let instance = self.instance.clone();
        let hub = &instance.hub;
        let message = |kind, room, to, text| ChatMessage {
            kind,
            from: name.clone(),
            room,
            to,
            text,
            sent_via: instance.name.clone(),
        };
        match command {
            Command::Hello { .. } => Err(format!("already named {name:?}")),
            Command::Join { room } => {
                check_room(&room)?;
                hub.add_to_group(&self.id, room.as_str())
                    .await
                    .map_err(refused)?;
                Ok(Some(Frame::Joined { room: &room }.to_json()))
            }
            Command::Leave { room } => {
                check_room(&room)?;
                hub.remove_from_group(&self.id, room.as_str())
                    .await
                    .map_err(refused)?;
                Ok(Some(Frame::Left { room: &room }.to_json()))
            }
            Command::Room { room, text } => {
                check_text(&text)?;
                let member = hub
                    .groups_of(&self.id)
                    .is_some_and(|groups| groups.iter().any(|g| g.as_str() == room));
                if !member {
                    return Err(format!("join room {room:?} before sending to it"));
                }
                let target = Target::group(room.as_str());
                instance
                    .publish(target, message(Kind::Room, Some(room), None, text))
                    .await
            }
            Command::Direct { to, text } => {
                check_name(&to)?;
                check_text(&text)?;
                // The sender's own tabs see the message too.
                let target = Target::users([to.as_str().into(), name.as_str().into()]);
                instance
                    .publish(target, message(Kind::Direct, None, Some(to), text))
                    .await
            }
            Command::Broadcast { text } => {
                check_text(&text)?;
                let broadcast = message(Kind::Broadcast, None, None, text);
                instance.publish(Target::All, broadcast).await
            }
        }
    }

    /// Registers the hub connection under `name`.
    fn hello(&mut self, name: String) -> Result<String, String> {
        check_name(&name)?;
        let connection = self
            .instance
            .hub
            .register(self.id.clone(), Some(name.as_str().into()))
            .map_err(refused)?;
        tracing::info!(user = name, "user connected");
        let ready = Frame::Ready {
            name: &name,
            connection: self.id.as_str(),
        }
        .to_json();
        self.connection = Some(connection);
        self.name = Some(name);
        Ok(ready)
    }

    /// Writes a hub message to the client, stamped with this instance.
    async fn forward(&mut self, message: &backplane_api::Message) -> bool {
        if message.method() != CHAT_METHOD {
            tracing::debug!(method = message.method(), "skipping unknown hub method");
            return true;
        }
        let chat = match message.args::<ChatMessage>() {
            Ok(chat) => chat,
            Err(error) => {
                tracing::warn!(%error, "skipping malformed chat message from the hub");
                return true;
            }
        };
        let frame = Frame::Message {
            message: &chat,
            delivered_by: &self.instance.name,
        };
        self.send_text(frame.to_json()).await
    }

    async fn send_reply(&mut self, reply: Option<String>) -> bool {
        match reply {
            Some(reply) => self.send_text(reply).await,
            None => true,
        }
    }

    async fn send_error(&mut self, message: &str) -> bool {
        self.send_text(Frame::Error { message }.to_json()).await
    }

    async fn send_text(&mut self, text: String) -> bool {
        self.socket.send(WsMessage::Text(text.into())).await.is_ok()
    }
}

/// Resolves once the instance shuts down (or can no longer tell).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|down| *down).await;
}

async fn next_message(connection: &mut Option<Connection>) -> Option<Arc<backplane_api::Message>> {
    match connection {
        Some(connection) => connection.recv().await,
        None => std::future::pending().await,
    }
}

/// The text of the error frame for a hub or transport error. Transport
/// errors are logged here, where the decision to refuse is made; their
/// details stay in the log.
fn refused(error: BackplaneError) -> String {
    if error.is_payload_too_large() {
        return format!("message refused by the backplane: {error}");
    }
    tracing::warn!(error = %error, "backplane refused a command");
    if error.is_transient() {
        "the backplane is unavailable; try again".into()
    } else {
        format!("the backplane refused the command: {error}")
    }
}

#[cfg(test)]
mod tests {
    use backplane_memory::MemoryBackplane;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::Message as Ws;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

    use super::*;
    use std::time::Duration;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// Serves one instance over `bus` on a free port; returns its address
    /// and hub.
    async fn serve(bus: MemoryBackplane) -> (std::net::SocketAddr, Hub<MemoryBackplane>) {
        let hub = Hub::new("chat", bus).await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        let (sessions, _) = mpsc::channel(1);
        let instance = Arc::new(Instance {
            name: "instance-T".into(),
            hub: hub.clone(),
            shutdown,
            sessions,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _stop = stop;
            axum::serve(listener, router(instance)).await
        });
        (addr, hub)
    }

    async fn recv(client: &mut Client) -> serde_json::Value {
        let next = tokio::time::timeout(Duration::from_secs(30), client.next());
        match next.await.expect("a frame in time") {
            Some(Ok(Ws::Text(text))) => serde_json::from_str(text.as_str()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn send(client: &mut Client, frame: serde_json::Value) {
        client.send(Ws::text(frame.to_string())).await.unwrap();
    }

    async fn named(addr: std::net::SocketAddr, name: &str) -> Client {
        let (mut client, _) = connect_async(format!("ws://{addr}/ws")).await.unwrap();
        assert_eq!(recv(&mut client).await["type"], "welcome");
        send(
            &mut client,
            serde_json::json!({"type": "hello", "name": name}),
        )
        .await;
        assert_eq!(recv(&mut client).await["type"], "ready");
        client
    }

    #[tokio::test]
    async fn a_send_the_backplane_refuses_gets_an_error_frame() {
        let (addr, _hub) = serve(MemoryBackplane::new().with_max_message_size(512)).await;
        let mut ann = named(addr, "ann").await;

        let long = serde_json::json!({"type": "broadcast", "text": "x".repeat(1000)});
        send(&mut ann, long).await;
        let error = recv(&mut ann).await;
        assert_eq!(error["type"], "error", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("refused by the backplane"), "{message}");

        send(
            &mut ann,
            serde_json::json!({"type": "broadcast", "text": "ok"}),
        )
        .await;
        let frame = recv(&mut ann).await;
        assert_eq!(
            (&frame["type"], &frame["text"]),
            (&"message".into(), &"ok".into())
        );
        assert_eq!(frame["delivered_by"], "instance-T");
    }

    #[tokio::test]
    async fn closing_the_hub_closes_the_websockets() {
        let (addr, hub) = serve(MemoryBackplane::new()).await;
        let mut ann = named(addr, "ann").await;
        assert_eq!(hub.connection_count(), 1);

        hub.close();
        let next = tokio::time::timeout(Duration::from_secs(30), ann.next());
        match next.await.expect("a close frame in time") {
            Some(Ok(Ws::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn closing_the_websocket_unregisters_the_connection() {
        let (addr, hub) = serve(MemoryBackplane::new()).await;
        let mut ann = named(addr, "ann").await;
        assert_eq!(hub.connection_count(), 1);

        ann.close(None).await.unwrap();
        while ann.next().await.is_some() {}
        // The session unregisters as it ends, just after the close
        // handshake; wait for it rather than for a fixed time.
        let unregistered = async {
            while hub.connection_count() != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), unregistered)
            .await
            .expect("the connection is unregistered");
    }

    #[tokio::test]
    async fn the_page_is_served() {
        let (addr, _hub) = serve(MemoryBackplane::new()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("text/html"));
        assert!(response.contains("<title>backplane chat</title>"));
    }
}
