//! The wire protocol: what a client may say ([`ClientMsg`]), what a server answers or
//! pushes ([`ServerMsg`]), and the shared value types both carry.
//!
//! Every WebSocket binary message is exactly one frame, encoded by [`codec`]. A client
//! frame is a [`ClientFrame`]: a client-chosen [`RequestId`](crate::RequestId) and one
//! [`ClientMsg`]. The server answers each request with exactly one [`ServerMsg::Reply`] or
//! [`ServerMsg::Error`] naming that id, and sends [`ServerMsg::Push`] frames on its own.
//! docs/PROTOCOL.md describes the exchange in prose.

pub mod client;
pub mod codec;
pub mod rooms;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, RoomName, Username};

pub use client::{
    ClientFrame, ClientMsg, CreateRoom, DeleteAccount, FetchHistory, GetKeyHistory, GetUserKey,
    Hello, JoinRoom, LeaveRoom, ListRooms, LoginProof, LoginStart, MarkRead, Moderate, OpenDirect,
    Register, RotateKey, SendMessage, SetBlocked, SetTyping, WatchLobby,
};
pub use rooms::{
    check_topic, direct_room_name, is_direct_room_name, ModerationAction, Role, RoomChange,
    RoomEvent, RoomKind, TopicError,
};
pub use server::{
    Challenge, HelloAck, HistoryPage, KeyHistory, KeyRotated, Left, LoggedIn, Push, Registered,
    Reply, RoomList, RoomSnapshot, RoomSummary, SendAck, ServerMsg,
};

/// The protocol version this crate speaks. A server refuses any other in `Hello`.
pub const PROTOCOL_VERSION: u16 = 5;

/// The largest frame either side accepts, in bytes. Bounds memory per connection.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The most envelopes (recipients) one message may carry; also the cap on room size.
pub const MAX_ROOM_MEMBERS: usize = 256;

/// The largest history page a server returns.
pub const MAX_HISTORY_PAGE: u16 = 200;

/// The largest page of a room listing a server returns.
pub const MAX_ROOM_LIST_PAGE: u16 = 100;

/// How many rotation certificates a server keeps per user (the newest ones).
pub const MAX_KEY_HISTORY: usize = 16;

/// The most counter marks one rotation certificate may carry.
pub const MAX_ROTATION_MARKS: usize = 4096;

/// The WebSocket close code a server uses when it ends a session because the user's key
/// was rotated on another session: the old key no longer logs in.
pub const CLOSE_KEY_ROTATED: u16 = 4001;

/// The WebSocket close code a server uses when it ends a session because its account was
/// deleted (by this session or another).
pub const CLOSE_ACCOUNT_DELETED: u16 = 4002;

/// The longest room topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 200;

/// The most users one room's ban list holds.
pub const MAX_ROOM_BANS: usize = 1024;

/// The most users one account may block.
pub const MAX_BLOCKED_USERS: usize = 1024;

/// How long a client shows a member as typing after their last `Push::Typing` with
/// `typing: true`; a typing client repeats `SetTyping` more often than this.
pub const TYPING_LAPSE_SECS: u64 = 6;

/// The least time between two `Push::LobbyChanged` one server instance sends a watching
/// connection; changes within it are told together. Clients re-list at most this often
/// too, whatever a server pushes.
pub const LOBBY_PUSH_INTERVAL_SECS: u64 = 2;

/// One recipient's copy of a message: a fresh AES-256-GCM key wrapped with RSA-OAEP-SHA256
/// for that recipient, and the payload encrypted under it. See `crypto::envelope`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Who can open this copy.
    pub recipient: Username,
    /// The AES key, RSA-OAEP-SHA256-encrypted to the recipient's public key.
    #[serde(with = "serde_bytes")]
    pub wrapped_key: Vec<u8>,
    /// The 96-bit AES-GCM nonce.
    pub nonce: [u8; 12],
    /// AES-256-GCM ciphertext and tag of the signed payload.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// The recipient list that `copies` spell out, in copy order: what the server delivers
/// beside each copy as [`DeliveredMessage::recipients`].
#[must_use]
pub fn recipients_of(copies: &[Envelope]) -> Vec<Username> {
    copies.iter().map(|c| c.recipient.clone()).collect()
}

/// What every copy of one message shares when it is delivered: a [`DeliveredMessage`]
/// without the recipient list (which the copies spell out) and without the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryHead {
    /// The room it was sent to.
    pub room: RoomName,
    /// Its position in the room's history.
    pub seq: u64,
    /// The sender's id for the message.
    pub message_id: MessageId,
    /// Who sent it.
    pub sender: Username,
    /// When the server stored it, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
}

/// A room member as the server describes it. Clients must recompute the fingerprint from
/// the key and compare it with their pins: the server is never trusted to vouch for keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's username.
    pub username: Username,
    /// The member's RSA public key, SubjectPublicKeyInfo DER.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
    /// SHA-256 of `public_key`, hex in groups of four (informational).
    pub fingerprint: String,
}

/// A stored message as one recipient receives it: the metadata plus their own copy only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredMessage {
    /// The room it was sent to.
    pub room: RoomName,
    /// Position in the room's history, assigned by the server; increases with each message.
    pub seq: u64,
    /// The sender's id for the message.
    pub message_id: MessageId,
    /// Who sent it (as authenticated by the server; the signature inside proves it).
    pub sender: Username,
    /// When the server stored it, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
    /// Everyone the sender sealed a copy for, in the order of the copies. It travels
    /// beside the copy rather than inside it; the sender's signature covers it, so the
    /// recipient's client detects any change (see `crypto::message`).
    pub recipients: Vec<Username>,
    /// The recipient's copy.
    pub envelope: Envelope,
}
