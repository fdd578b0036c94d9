//! Speaking the chat protocol over raw WebSocket connections.
//!
//! The load driver talks to the server (and to the bare relay) the way the client core
//! does on the wire, but without the client core's bookkeeping, so the client side costs
//! as little as possible and the server is what gets measured:
//!
//! - [`SetupConn`]: request/answer exchanges for the set-up phase (hello, register, login,
//!   rooms), skipping any push that arrives meanwhile.
//! - [`SendTemplate`]: a `SendMessage` frame encoded once, into which each send patches a
//!   fresh request id and message id (replay mode).
//! - [`classify`]: reads just enough of a server frame to tell an answer from a message
//!   push and to get the push's message id, without decoding the envelope.
//!
//! [`classify`] and [`SendTemplate`] rely on the codec's fixed bincode configuration
//! (variable-length integers); both are checked against [`codec`] in the tests below, so a
//! codec change fails here rather than skewing measurements.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use shared::protocol::{
    codec, ClientFrame, ClientMsg, CreateRoom, Envelope, Hello, JoinRoom, LoggedIn, LoginProof,
    LoginStart, Register, Reply, SendMessage, ServerMsg, PROTOCOL_VERSION,
};
use shared::{ErrorCode, MessageId, RequestId, RoomName, ServerId, Username};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::keys::LoginSigner;

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a set-up request may take before the run is abandoned.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens a WebSocket with Nagle disabled. `small_buffers` shrinks tungstenite's 128 KiB
/// read and write buffers to 4 KiB, for runs that hold thousands of idle connections.
///
/// # Errors
/// When the TCP connection or the WebSocket handshake fails.
pub async fn connect(url: &str, small_buffers: bool) -> anyhow::Result<Ws> {
    let config = if small_buffers {
        WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
    } else {
        WebSocketConfig::default()
    };
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("cannot open a WebSocket to {url}"))?;
    Ok(ws)
}

/// A refused request: the server's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// The human-readable message.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// A connection in its set-up phase: one request at a time, pushes ignored.
pub struct SetupConn {
    ws: Ws,
    next_id: u64,
    /// The server's id from its `HelloAck`, which login proofs sign.
    server_id: ServerId,
}

impl SetupConn {
    /// Connects and exchanges `Hello`.
    ///
    /// # Errors
    /// Connection failures, or a refused `Hello`.
    pub async fn open(url: &str, small_buffers: bool) -> anyhow::Result<Self> {
        let mut conn = Self {
            ws: connect(url, small_buffers).await?,
            next_id: 1,
            server_id: ServerId([0; 16]),
        };
        let ack = conn
            .request(ClientMsg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client: concat!("loadgen/", env!("CARGO_PKG_VERSION")).to_owned(),
            }))
            .await?
            .map_err(|r| anyhow!("hello refused: {r}"))?;
        let Reply::Hello(ack) = ack else {
            bail!("expected a hello, got {ack:?}");
        };
        conn.server_id = ack.server_id;
        Ok(conn)
    }

    /// Sends one request and waits for its answer; `Err` only for transport failures.
    ///
    /// # Errors
    /// Connection closed, undecodable frame, or no answer within [`SETUP_TIMEOUT`].
    pub async fn request(&mut self, msg: ClientMsg) -> anyhow::Result<Result<Reply, Refusal>> {
        let request_id = RequestId(self.next_id);
        self.next_id += 1;
        let bytes = codec::encode_client(&ClientFrame { request_id, msg })?;
        self.ws.send(Message::binary(bytes)).await?;
        tokio::time::timeout(SETUP_TIMEOUT, self.answer(request_id))
            .await
            .map_err(|_| {
                anyhow!(
                    "no answer to request {} within {SETUP_TIMEOUT:?}",
                    request_id.0
                )
            })?
    }

    async fn answer(&mut self, id: RequestId) -> anyhow::Result<Result<Reply, Refusal>> {
        loop {
            let frame = match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Close(c))) => bail!("connection closed by peer: {c:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection closed"),
            };
            match codec::decode_server(&frame)? {
                ServerMsg::Reply { request_id, reply } if request_id == id => return Ok(Ok(reply)),
                ServerMsg::Error {
                    request_id: Some(rid),
                    code,
                    message,
                    ..
                } if rid == id => return Ok(Err(Refusal { code, message })),
                ServerMsg::Error {
                    request_id: None,
                    code,
                    message,
                    ..
                } => bail!("connection-level error {code:?}: {message}"),
                _ => {}
            }
        }
    }

    /// Registers `user`; an already taken name counts as success (reruns reuse accounts,
    /// and every account made by this tool uses a pool key).
    ///
    /// # Errors
    /// Transport failures or any other refusal.
    pub async fn register(&mut self, user: &Username, der: &[u8]) -> anyhow::Result<()> {
        match self
            .request(ClientMsg::Register(Register {
                username: user.clone(),
                public_key: der.to_vec(),
            }))
            .await?
        {
            Ok(_) => Ok(()),
            Err(r) if r.code == ErrorCode::UsernameTaken => Ok(()),
            Err(r) => bail!("register {user} refused: {r}"),
        }
    }

    /// Challenge-response login: `LoginStart`, sign the nonce (on the blocking pool: an
    /// RSA-3072 signature takes milliseconds), `LoginProof`.
    ///
    /// # Errors
    /// Transport failures or a refused login.
    pub async fn login(&mut self, user: &Username, key: &LoginSigner) -> anyhow::Result<LoggedIn> {
        let nonce = match self
            .request(ClientMsg::LoginStart(LoginStart {
                username: user.clone(),
            }))
            .await?
        {
            Ok(Reply::Challenge(c)) => c.nonce,
            Ok(other) => bail!("expected a challenge, got {other:?}"),
            Err(r) => bail!("login start for {user} refused: {r}"),
        };
        let (key, name, server) = (key.clone(), user.clone(), self.server_id);
        let signature =
            tokio::task::spawn_blocking(move || key.sign_login(&name, &nonce, &server)).await??;
        match self
            .request(ClientMsg::LoginProof(LoginProof { signature }))
            .await?
        {
            Ok(Reply::LoggedIn(l)) => Ok(l),
            Ok(other) => bail!("expected LoggedIn, got {other:?}"),
            Err(r) => bail!("login proof for {user} refused: {r}"),
        }
    }

    /// Registration with the bare relay: `LoginStart` naming the user, then a `LoginProof`
    /// the relay does not check (nothing to sign).
    ///
    /// # Errors
    /// Transport failures or an unexpected answer.
    pub async fn relay_login(&mut self, user: &Username) -> anyhow::Result<()> {
        let start = self
            .request(ClientMsg::LoginStart(LoginStart {
                username: user.clone(),
            }))
            .await?;
        if !matches!(start, Ok(Reply::Challenge(_))) {
            bail!("the relay answered LoginStart with {start:?}");
        }
        match self
            .request(ClientMsg::LoginProof(LoginProof {
                signature: Vec::new(),
            }))
            .await?
        {
            Ok(Reply::LoggedIn(_)) => Ok(()),
            other => bail!("the relay answered LoginProof with {other:?}"),
        }
    }

    /// Creates a public room without a password; `false` if it already existed.
    ///
    /// # Errors
    /// Transport failures or any other refusal.
    pub async fn create_room(&mut self, room: &RoomName) -> anyhow::Result<bool> {
        match self
            .request(ClientMsg::CreateRoom(CreateRoom {
                name: room.clone(),
                password: None,
                hidden: false,
            }))
            .await?
        {
            Ok(_) => Ok(true),
            Err(r) if r.code == ErrorCode::RoomExists => Ok(false),
            Err(r) => bail!("create room {room} refused: {r}"),
        }
    }

    /// Joins (or re-opens) a room, asking for no history.
    ///
    /// # Errors
    /// Transport failures or a refusal.
    pub async fn join_room(&mut self, room: &RoomName) -> anyhow::Result<()> {
        match self
            .request(ClientMsg::JoinRoom(JoinRoom {
                name: room.clone(),
                password: None,
                history_limit: 0,
            }))
            .await?
        {
            Ok(_) => Ok(()),
            Err(r) => bail!("join room {room} refused: {r}"),
        }
    }

    /// Sends one frame without waiting for its answer.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_raw(&mut self, frame: Bytes) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(frame)).await?;
        Ok(())
    }

    /// The next request id this connection would use.
    pub fn next_request_id(&self) -> u64 {
        self.next_id
    }

    /// Closes the connection politely (close frame), ignoring errors.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The WebSocket, for the measuring phase.
    pub fn into_ws(self) -> Ws {
        self.ws
    }
}

/// What a server frame is, as far as the driver cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A `Reply` to one of our requests.
    Reply,
    /// An `Error`, answering a request (`request_id` present) or not.
    Error,
    /// A `Push::Message`, with the message's id.
    Message {
        /// The sender-chosen message id.
        message_id: [u8; 16],
    },
    /// Any other push (member joined, key changed …).
    OtherPush,
    /// Not a frame this protocol version produces.
    Unknown,
}

/// `ServerMsg` variant indices (declaration order).
const SERVER_REPLY: u64 = 0;
const SERVER_ERROR: u64 = 1;
const SERVER_PUSH: u64 = 2;
/// `Push::Message` variant index.
const PUSH_MESSAGE: u64 = 3;

/// Reads one bincode variable-length integer.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let first = *buf.get(*pos)?;
    *pos += 1;
    let mut fixed = |n: usize| -> Option<u64> {
        let bytes = buf.get(*pos..*pos + n)?;
        *pos += n;
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(bytes);
        Some(u64::from_le_bytes(le))
    };
    match first {
        0..=250 => Some(u64::from(first)),
        251 => fixed(2),
        252 => fixed(4),
        253 => fixed(8),
        _ => None,
    }
}

/// Classifies a server frame by reading its first few fields only.
pub fn classify(frame: &[u8]) -> Incoming {
    classify_inner(frame).unwrap_or(Incoming::Unknown)
}

fn classify_inner(frame: &[u8]) -> Option<Incoming> {
    let mut pos = 0;
    Some(match varint(frame, &mut pos)? {
        SERVER_REPLY => Incoming::Reply,
        SERVER_ERROR => Incoming::Error,
        SERVER_PUSH => {
            if varint(frame, &mut pos)? != PUSH_MESSAGE {
                return Some(Incoming::OtherPush);
            }
            // DeliveredMessage { room: String, seq: u64, message_id: [u8; 16], … }
            let room_len = usize::try_from(varint(frame, &mut pos)?).ok()?;
            pos = pos.checked_add(room_len)?;
            varint(frame, &mut pos)?;
            let id = frame.get(pos..pos + 16)?;
            let mut message_id = [0u8; 16];
            message_id.copy_from_slice(id);
            Incoming::Message { message_id }
        }
        _ => return None,
    })
}

/// A message id carrying its send time: 8 bytes of [`crate::clock`] nanoseconds, then the
/// sender's index and its own counter, so ids are unique within a run.
pub fn timestamped_id(sent_at_nanos: u64, sender: u32, counter: u32) -> MessageId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&sent_at_nanos.to_le_bytes());
    id[8..12].copy_from_slice(&sender.to_le_bytes());
    id[12..].copy_from_slice(&counter.to_le_bytes());
    MessageId(id)
}

/// The send time inside an id made by [`timestamped_id`].
pub fn sent_at_nanos(id: &[u8; 16]) -> u64 {
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&id[..8]);
    u64::from_le_bytes(ns)
}

/// Request ids from here on encode to a fixed nine bytes, so they can be patched in place.
pub const PATCHABLE_REQUEST_BASE: u64 = 1 << 40;

/// A `SendMessage` frame encoded once; each send patches in a fresh request id and message
/// id (the envelopes are replayed byte for byte).
#[derive(Debug, Clone)]
pub struct SendTemplate {
    bytes: Vec<u8>,
    id_offset: usize,
}

impl SendTemplate {
    /// Encodes the frame for `room` with these envelopes.
    ///
    /// # Errors
    /// When the frame does not encode (too large), or the codec's layout is not the one
    /// patching assumes.
    pub fn new(room: &RoomName, envelopes: Vec<Envelope>) -> anyhow::Result<Self> {
        let sentinel = MessageId(*b"\x01loadgen-sentry\x02");
        let bytes = codec::encode_client(&ClientFrame {
            request_id: RequestId(PATCHABLE_REQUEST_BASE),
            msg: ClientMsg::SendMessage(SendMessage {
                room: room.clone(),
                message_id: sentinel,
                envelopes,
            }),
        })?;
        // The request id comes first: marker 253 and eight little-endian bytes.
        if bytes.first() != Some(&253) {
            bail!("unexpected request id encoding");
        }
        let id_offset = bytes
            .windows(16)
            .position(|w| w == sentinel.0)
            .context("message id not found in the encoded frame")?;
        let template = Self { bytes, id_offset };
        // Check the patching against the real decoder once.
        let probe = template.frame(PATCHABLE_REQUEST_BASE + 7, MessageId([9; 16]));
        match codec::decode_client(&probe)? {
            ClientFrame {
                request_id: RequestId(rid),
                msg: ClientMsg::SendMessage(m),
            } if rid == PATCHABLE_REQUEST_BASE + 7 && m.message_id == MessageId([9; 16]) => {}
            _ => bail!("patched frame does not decode to what was patched in"),
        }
        Ok(template)
    }

    /// The frame with `request_id` (at least [`PATCHABLE_REQUEST_BASE`]) and `message_id`.
    pub fn frame(&self, request_id: u64, message_id: MessageId) -> Bytes {
        let mut bytes = self.bytes.clone();
        let rid = request_id.max(PATCHABLE_REQUEST_BASE);
        bytes[1..9].copy_from_slice(&rid.to_le_bytes());
        bytes[self.id_offset..self.id_offset + 16].copy_from_slice(&message_id.0);
        Bytes::from(bytes)
    }

    /// The encoded frame's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the frame is empty (never).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::protocol::{DeliveredMessage, Push, SendAck};

    fn envelope(to: &str, len: usize) -> Envelope {
        Envelope {
            recipient: Username::parse(to).expect("name"),
            wrapped_key: vec![7; 384],
            nonce: [3; 12],
            ciphertext: vec![5; len],
        }
    }

    #[test]
    fn classify_matches_the_codec() {
        for (seq, room) in [
            (0u64, "r"),
            (250, "room-x"),
            (70_000, "a"),
            (u64::MAX, "zz.z"),
        ] {
            let id = timestamped_id(123_456_789, 4, 9);
            let push = ServerMsg::Push(Push::Message(DeliveredMessage {
                room: RoomName::parse(room).expect("room"),
                seq,
                message_id: id,
                sender: Username::parse("alice").expect("name"),
                server_time_ms: 1,
                recipients: vec![Username::parse("bob").expect("name")],
                envelope: envelope("bob", 300),
            }));
            let bytes = codec::encode_server(&push).expect("encodes");
            assert_eq!(classify(&bytes), Incoming::Message { message_id: id.0 });
            assert_eq!(sent_at_nanos(&id.0), 123_456_789);
        }
        let reply = ServerMsg::Reply {
            request_id: RequestId(PATCHABLE_REQUEST_BASE + 3),
            reply: Reply::Sent(SendAck {
                room: RoomName::parse("r").expect("room"),
                message_id: MessageId([1; 16]),
                seq: 1,
                server_time_ms: 2,
            }),
        };
        let bytes = codec::encode_server(&reply).expect("encodes");
        assert_eq!(classify(&bytes), Incoming::Reply);
        let error = ServerMsg::Error {
            request_id: None,
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
            detail: None,
        };
        let bytes = codec::encode_server(&error).expect("encodes");
        assert_eq!(classify(&bytes), Incoming::Error);
        let other = ServerMsg::Push(Push::MemberLeft {
            room: RoomName::parse("r").expect("room"),
            username: Username::parse("bob").expect("name"),
        });
        let bytes = codec::encode_server(&other).expect("encodes");
        assert_eq!(classify(&bytes), Incoming::OtherPush);
        assert_eq!(classify(&[]), Incoming::Unknown);
        assert_eq!(classify(&[2, 3, 200]), Incoming::Unknown);
    }

    #[test]
    fn template_patches_ids() {
        let room = RoomName::parse("lg-room").expect("room");
        let envelopes = vec![envelope("alice", 600), envelope("bob", 600)];
        let t = SendTemplate::new(&room, envelopes.clone()).expect("template");
        let id = timestamped_id(42, 1, 2);
        let frame = t.frame(PATCHABLE_REQUEST_BASE + 99, id);
        assert_eq!(frame.len(), t.len());
        let decoded = codec::decode_client(&frame).expect("decodes");
        assert_eq!(decoded.request_id, RequestId(PATCHABLE_REQUEST_BASE + 99));
        assert_eq!(
            decoded.msg,
            ClientMsg::SendMessage(SendMessage {
                room,
                message_id: id,
                envelopes,
            })
        );
    }
}
