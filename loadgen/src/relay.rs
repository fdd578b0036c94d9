//! The bare relay: the ceiling the server's fan-out is quoted against.
//!
//! It speaks just enough of the real protocol that the same driver, with the same frames,
//! drives it and the server:
//!
//! - `Hello` is answered with a `HelloAck`.
//! - `LoginStart { username }` registers the connection under that name and is answered
//!   with a `Challenge` of 32 random bytes; `LoginProof` is answered with `LoggedIn`
//!   without looking at the signature. The frames of a login are the server's, with no
//!   account, no store and no verification: the login scenario's ceiling.
//! - `SendMessage` is decoded like the server decodes it; each envelope becomes a
//!   `Push::Message` frame (the same `DeliveredMessage` the server builds, so the same
//!   size), sent to every connection registered under the envelope's recipient except the
//!   sending connection; then the sender gets `Sent`.
//! - Anything else gets an `InvalidState` error.
//!
//! There is no store, no membership, no recipient check, no rate limit and no heartbeat.
//! Like the server, each connection has a bounded outbound queue drained by a writer task
//! (which batches whatever is queued into one flush), and a connection whose queue is
//! full is dropped from the routing table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use shared::protocol::{
    codec, Challenge, ClientFrame, ClientMsg, DeliveryHead, HelloAck, LoggedIn, Reply, SendAck,
    ServerMsg, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use shared::{ErrorCode, RequestId, Username};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Frames queued per connection before it is dropped as too slow (the server's default).
pub const OUTBOUND_QUEUE: usize = 1024;

type ConnId = u64;

/// A name's connections and their outbound queues.
type Routes = HashMap<String, Vec<(ConnId, mpsc::Sender<Bytes>)>>;

/// Who is connected under which (canonical) name.
#[derive(Default)]
struct Registry {
    by_name: RwLock<Routes>,
    next_conn: AtomicU64,
    next_seq: AtomicU64,
}

impl Registry {
    fn add(&self, name: String, conn: ConnId, tx: mpsc::Sender<Bytes>) {
        if let Ok(mut map) = self.by_name.write() {
            map.entry(name).or_default().push((conn, tx));
        }
    }

    fn remove(&self, name: &str, conn: ConnId) {
        if let Ok(mut map) = self.by_name.write() {
            if let Some(list) = map.get_mut(name) {
                list.retain(|(c, _)| *c != conn);
                if list.is_empty() {
                    map.remove(name);
                }
            }
        }
    }
}

/// A running relay; stops accepting when dropped (open connections finish on their own).
pub struct RelayHandle {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl RelayHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The WebSocket URL drivers connect to.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (port 0 picks one) and serves on the current tokio runtime.
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn(addr: SocketAddr) -> anyhow::Result<RelayHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(serve(listener));
    Ok(RelayHandle { addr, task })
}

/// The accept loop: one task per connection, forever.
pub async fn serve(listener: TcpListener) {
    let registry = Arc::new(Registry::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let conn = registry.next_conn.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(stream, conn, Arc::clone(&registry)));
            }
            Err(e) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(error = %e, "relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, conn: ConnId, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "relay handshake failed");
            return;
        }
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(Message::Binary(more)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut name: Option<(String, Username)> = None;
    while let Some(msg) = source.next().await {
        let bytes = match msg {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let answer = handle(&bytes, conn, &mut name, &tx, &registry);
        if tx.send(answer).await.is_err() {
            break;
        }
    }
    if let Some((canonical, _)) = &name {
        registry.remove(canonical, conn);
    }
    drop(tx);
    let _ = writer.await;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Answers one frame; forwards a message's copies as a side effect.
fn handle(
    bytes: &[u8],
    conn: ConnId,
    name: &mut Option<(String, Username)>,
    own_tx: &mpsc::Sender<Bytes>,
    registry: &Registry,
) -> Bytes {
    let ClientFrame { request_id, msg } = match codec::decode_client(bytes) {
        Ok(frame) => frame,
        Err(_) => return error(None, ErrorCode::MalformedFrame, "malformed frame"),
    };
    let reply = match msg {
        ClientMsg::Hello(_) => Reply::Hello(HelloAck {
            protocol_version: PROTOCOL_VERSION,
            server: "loadgen-bare-relay".into(),
            server_id: shared::ServerId([0; 16]),
            max_frame_bytes: u32::try_from(MAX_FRAME_BYTES).unwrap_or(u32::MAX),
            max_message_bytes: u32::try_from(MAX_FRAME_BYTES).unwrap_or(u32::MAX),
        }),
        ClientMsg::LoginStart(req) => {
            let canonical = req.username.canonical();
            if let Some((old, _)) = name.take() {
                registry.remove(&old, conn);
            }
            registry.add(canonical.clone(), conn, own_tx.clone());
            *name = Some((canonical, req.username));
            let mut nonce = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut nonce);
            Reply::Challenge(Challenge {
                nonce,
                expires_in_secs: 60,
            })
        }
        ClientMsg::LoginProof(_) => {
            let Some((_, username)) = name.as_ref() else {
                return error(Some(request_id), ErrorCode::AuthFailed, "no challenge");
            };
            Reply::LoggedIn(LoggedIn {
                username: username.clone(),
                rooms: Vec::new(),
                blocked: Vec::new(),
            })
        }
        ClientMsg::SendMessage(req) => {
            let Some((_, sender)) = name.as_ref() else {
                return error(Some(request_id), ErrorCode::Unauthenticated, "log in first");
            };
            let seq = registry.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
            let server_time_ms = now_ms();
            let mut too_slow = Vec::new();
            let head = DeliveryHead {
                room: req.room.clone(),
                seq,
                message_id: req.message_id,
                sender: sender.clone(),
                server_time_ms,
            };
            let deliveries = codec::Deliveries::new(head, &req.envelopes);
            if let (Ok(deliveries), Ok(map)) = (deliveries, registry.by_name.read()) {
                for copy in &req.envelopes {
                    let recipient = copy.recipient.canonical();
                    let Some(conns) = map.get(&recipient) else {
                        continue;
                    };
                    let Ok(frame) = deliveries.whole(copy) else {
                        continue;
                    };
                    let frame = Bytes::from(frame);
                    for (c, tx) in conns {
                        if *c == conn {
                            continue;
                        }
                        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(frame.clone())
                        {
                            too_slow.push((recipient.clone(), *c));
                        }
                    }
                }
            }
            for (recipient, c) in too_slow {
                tracing::warn!(conn = c, user = recipient, "relay queue full; dropping");
                registry.remove(&recipient, c);
            }
            Reply::Sent(SendAck {
                room: req.room,
                message_id: req.message_id,
                seq,
                server_time_ms,
            })
        }
        _ => {
            return error(
                Some(request_id),
                ErrorCode::InvalidState,
                "the bare relay only relays",
            )
        }
    };
    codec::encode_server(&ServerMsg::Reply { request_id, reply })
        .map_or_else(|_| Bytes::new(), Bytes::from)
}

fn error(request_id: Option<RequestId>, code: ErrorCode, message: &str) -> Bytes {
    codec::encode_server(&ServerMsg::Error {
        request_id,
        code,
        message: message.to_owned(),
        detail: None,
    })
    .map_or_else(|_| Bytes::new(), Bytes::from)
}
