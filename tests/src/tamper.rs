//! A tampering server for the client's security tests: a WebSocket proxy between a real
//! client and the real server that can drop, delay, replay, reorder and relabel what the
//! server says, inject frames of its own, and rewrite what the client says.
//!
//! Every client connection to the proxy gets its own connection to the upstream server.
//! Frames from the server are decoded, recorded ([`TamperingProxy::recorded`]), passed
//! through the current [`ServerRule`] (which returns the frames to deliver instead: none
//! drops, several inject or reorder) and re-encoded; frames from the client go through the
//! current [`ClientRule`] the same way. [`TamperingProxy::inject`] sends a frame of the
//! proxy's own to the newest client connection.

use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::{SinkExt, StreamExt};
use shared::protocol::{codec, ClientFrame, ServerMsg};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Rewrites one server frame into the frames the client gets instead.
pub type ServerRule = Box<dyn FnMut(ServerMsg) -> Vec<ServerMsg> + Send>;
/// Rewrites one client frame into the frames the server gets instead.
pub type ClientRule = Box<dyn FnMut(ClientFrame) -> Vec<ClientFrame> + Send>;

struct Shared {
    server_rule: ServerRule,
    client_rule: ClientRule,
    /// Every frame the server sent, before any rule.
    recorded: Vec<ServerMsg>,
    /// Every frame a client sent, before any rule.
    from_clients: Vec<ClientFrame>,
    /// The newest connection's injection queue.
    inject: Option<mpsc::UnboundedSender<ServerMsg>>,
}

/// A running proxy (see the module docs). It stops when dropped.
pub struct TamperingProxy {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TamperingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TamperingProxy {
    /// Starts a proxy in front of `upstream` (a `ws://` URL), passing everything through.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let port = listener.local_addr().expect("address").port();
        let shared = Arc::new(Mutex::new(Shared {
            server_rule: Box::new(|m| vec![m]),
            client_rule: Box::new(|f| vec![f]),
            recorded: Vec::new(),
            from_clients: Vec::new(),
            inject: None,
        }));
        let upstream = upstream.to_owned();
        let state = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(client) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                let Ok((server, _)) = tokio_tungstenite::connect_async(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, Arc::clone(&state)));
            }
        });
        Self { port, shared, task }
    }

    /// The URL clients dial.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Replaces the rule for frames from the server.
    pub fn on_server(&self, rule: impl FnMut(ServerMsg) -> Vec<ServerMsg> + Send + 'static) {
        self.lock().server_rule = Box::new(rule);
    }

    /// Replaces the rule for frames from the server with one that edits every reply in
    /// place (pushes and errors pass through).
    pub fn on_reply(&self, mut edit: impl FnMut(&mut shared::protocol::Reply) + Send + 'static) {
        self.on_server(move |mut m| {
            if let ServerMsg::Reply { reply, .. } = &mut m {
                edit(reply);
            }
            vec![m]
        });
    }

    /// Replaces the rule for frames from the client.
    pub fn on_client(&self, rule: impl FnMut(ClientFrame) -> Vec<ClientFrame> + Send + 'static) {
        self.lock().client_rule = Box::new(rule);
    }

    /// Passes everything through again.
    pub fn pass_through(&self) {
        self.on_server(|m| vec![m]);
        self.on_client(|f| vec![f]);
    }

    /// Every frame the server sent so far (before any rule).
    pub fn recorded(&self) -> Vec<ServerMsg> {
        self.lock().recorded.clone()
    }

    /// Every frame the clients sent so far (before any rule).
    pub fn from_clients(&self) -> Vec<ClientFrame> {
        self.lock().from_clients.clone()
    }

    /// Sends `msg` to the newest client connection as if the server had.
    pub fn inject(&self, msg: ServerMsg) {
        let tx = self.lock().inject.clone().expect("a client is connected");
        tx.send(msg).expect("the connection is open");
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

/// Pumps frames both ways between one client and its upstream connection.
async fn relay<C, S>(client: Ws<C>, server: Ws<S>, shared: Arc<Mutex<Shared>>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    let (inject_tx, mut inject_rx) = mpsc::unbounded_channel();
    lock(&shared).inject = Some(inject_tx);
    let upward = {
        let shared = Arc::clone(&shared);
        async move {
            while let Some(Ok(msg)) = from_client.next().await {
                let Message::Binary(bytes) = msg else {
                    if matches!(msg, Message::Close(_)) {
                        let _ = to_server.send(msg).await;
                        break;
                    }
                    continue;
                };
                let Ok(frame) = codec::decode_client(&bytes) else {
                    let _ = to_server.send(Message::Binary(bytes)).await;
                    continue;
                };
                let frames = {
                    let mut s = lock(&shared);
                    s.from_clients.push(frame.clone());
                    (s.client_rule)(frame)
                };
                for frame in frames {
                    let bytes = codec::encode_client(&frame).expect("encodes");
                    if to_server.send(Message::Binary(bytes.into())).await.is_err() {
                        return;
                    }
                }
            }
            let _ = to_server.close().await;
        }
    };
    let downward = async move {
        loop {
            let frames = tokio::select! {
                msg = from_server.next() => match msg {
                    Some(Ok(Message::Binary(bytes))) => match codec::decode_server(&bytes) {
                        Ok(msg) => {
                            let mut s = lock(&shared);
                            s.recorded.push(msg.clone());
                            (s.server_rule)(msg)
                        }
                        Err(_) => continue,
                    },
                    Some(Ok(Message::Close(frame))) => {
                        let _ = to_client.send(Message::Close(frame)).await;
                        break;
                    }
                    Some(Ok(_)) => continue,
                    _ => break,
                },
                Some(msg) = inject_rx.recv() => vec![msg],
            };
            for msg in frames {
                let bytes = codec::encode_server(&msg).expect("encodes");
                if to_client.send(Message::Binary(bytes.into())).await.is_err() {
                    return;
                }
            }
        }
        let _ = to_client.close().await;
    };
    tokio::join!(upward, downward);
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
