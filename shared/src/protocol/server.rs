//! Messages a server sends: replies to requests, errors, and pushes.

use serde::{Deserialize, Serialize};

use super::rooms::{Role, RoomEvent, RoomKind};
use super::{DeliveredMessage, MemberInfo};
use crate::crypto::rotation::RotationCertificate;
use crate::error::{ErrorCode, ErrorDetail};
use crate::ids::{MessageId, RequestId, RoomName, ServerId, Username};

/// Every frame a server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The successful answer to request `request_id`.
    Reply {
        /// The request this answers.
        request_id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// The failed answer to a request, or (with `request_id: None`) a frame-level error
    /// such as an undecodable frame.
    Error {
        /// The request this answers, when it could be decoded.
        request_id: Option<RequestId>,
        /// Stable, machine-readable code.
        code: ErrorCode,
        /// Human-readable explanation; never contains internal details.
        message: String,
        /// Structured data for some codes.
        detail: Option<ErrorDetail>,
    },
    /// Something happened that the client did not ask about.
    Push(Push),
}

/// Successful answers, one per request kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// To `Hello`.
    Hello(HelloAck),
    /// To `Register`.
    Registered(Registered),
    /// To `LoginStart`.
    Challenge(Challenge),
    /// To `LoginProof`.
    LoggedIn(LoggedIn),
    /// To `ListRooms`.
    Rooms(RoomList),
    /// To `CreateRoom`.
    RoomCreated(RoomSnapshot),
    /// To `JoinRoom`.
    Joined(RoomSnapshot),
    /// To `LeaveRoom`.
    Left(Left),
    /// To `SendMessage`: the message is durably stored.
    Sent(SendAck),
    /// To `FetchHistory`.
    History(HistoryPage),
    /// To `GetUserKey`.
    UserKey(MemberInfo),
    /// To `RotateKey`.
    KeyRotated(KeyRotated),
    /// To `GetKeyHistory`.
    KeyHistory(KeyHistory),
    /// To `Moderate`: the change made, as pushed to the room. (Added in protocol 4, as are
    /// the variants after it.)
    Moderated(RoomEvent),
    /// To `SetBlocked`, `SetTyping`, `MarkRead` and `WatchLobby`: done, nothing to report.
    Done,
    /// To `DeleteAccount`: the account is gone; the server closes the connection next.
    AccountDeleted,
}

/// Server pushes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Push {
    /// Someone joined a room this user is in.
    MemberJoined {
        /// The room.
        room: RoomName,
        /// The new member and their key.
        member: MemberInfo,
    },
    /// Someone left a room this user is in.
    MemberLeft {
        /// The room.
        room: RoomName,
        /// Who left.
        username: Username,
    },
    /// A member of one of this user's rooms now has a different key.
    KeyChanged {
        /// The member and their new key.
        member: MemberInfo,
        /// The rooms the two users share.
        rooms: Vec<RoomName>,
    },
    /// A new message; carries this user's own copy only.
    Message(DeliveredMessage),
    /// A room this user is (or was, for removals and deletion) in was moderated or changed
    /// hands. (Added in protocol 4, as are the variants after it.)
    RoomEvent(RoomEvent),
    /// Another user started a direct conversation with this one, who is now its member.
    /// Re-open it with `JoinRoom` (no password) to get its snapshot; ignore it by leaving,
    /// or block its sender with `SetBlocked`.
    DirectOpened {
        /// The conversation's name.
        room: RoomName,
        /// Who started it, and their key.
        peer: MemberInfo,
    },
    /// A member of a room is typing, or stopped. Clients let a `typing: true` lapse after
    /// `TYPING_LAPSE_SECS` without a repeat.
    Typing {
        /// The room.
        room: RoomName,
        /// Who.
        username: Username,
        /// Typing now, or stopped.
        typing: bool,
    },
    /// This user read a room up to `seq` on another of their sessions.
    ReadUpTo {
        /// The room.
        room: RoomName,
        /// The highest `seq` read.
        seq: u64,
    },
    /// A user who shares at least one room with this one came online (their first
    /// session) or went offline (their last session ended). Only users sharing a room are
    /// told; a client may get the same state more than once. (Added in protocol 5, as is
    /// the variant after it.)
    Presence {
        /// Who.
        username: Username,
        /// Online now, or offline.
        online: bool,
    },
    /// The public listing may have changed since this connection last listed it: re-list
    /// (`ListRooms`) to see how. Sent only to connections that asked (`WatchLobby`), at
    /// most once per `LOBBY_PUSH_INTERVAL_SECS` per server instance.
    LobbyChanged,
}

/// The server's half of the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The version the server speaks (equal to the client's).
    pub protocol_version: u16,
    /// Server software name and version.
    pub server: String,
    /// The server's identity, fixed when its store was created. Login proofs sign it;
    /// clients pin it per server address and refuse one that changes.
    pub server_id: ServerId,
    /// The largest frame the server accepts.
    pub max_frame_bytes: u32,
    /// The largest ciphertext of one copy of a message the server accepts, in bytes
    /// (larger sends are refused with `InvalidInput`): clients check texts against it
    /// before sealing.
    pub max_message_bytes: u32,
}

/// The account exists now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The username as stored.
    pub username: Username,
}

/// A login challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 32 random bytes from the OS RNG, single-use.
    pub nonce: [u8; 32],
    /// How long the nonce stays valid.
    pub expires_in_secs: u32,
}

/// Login succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedIn {
    /// The account, with the case it was registered with.
    pub username: Username,
    /// Rooms the user is a member of; their messages are delivered on this connection.
    pub rooms: Vec<RoomName>,
    /// The users this one has blocked (`SetBlocked`), by canonical name.
    pub blocked: Vec<Username>,
}

/// The public rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    /// Public rooms, by canonical name.
    pub rooms: Vec<RoomSummary>,
    /// Distinct users with at least one logged-in connection on this server.
    pub users_online: u32,
    /// Where the next page starts (pass it as `ListRooms::after`); `None` on the last page.
    pub next_after: Option<RoomName>,
}

/// One public room in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room's name.
    pub name: RoomName,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Members in total.
    pub members: u32,
    /// Members online now.
    pub members_online: u32,
    /// The room's topic, if it has one.
    pub topic: Option<String>,
}

/// A room as a member sees it on creating or joining it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    /// The room's name.
    pub room: RoomName,
    /// A group room or a direct conversation.
    pub kind: RoomKind,
    /// Who runs it: its creator, or whom ownership passed to.
    pub owner: Username,
    /// The members the owner made admins, by canonical name.
    pub admins: Vec<Username>,
    /// The topic, if one is set.
    pub topic: Option<String>,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Whether it is hidden from listings.
    pub hidden: bool,
    /// Every member with their public key.
    pub members: Vec<MemberInfo>,
    /// The newest messages this member has a copy of.
    pub history: HistoryPage,
    /// The highest `seq` this user has marked read (`MarkRead`) on any session; 0 when
    /// none.
    pub read_up_to: u64,
    /// The members online now (with at least one session), in `members` order; kept up
    /// to date by `Push::Presence`. (Added in protocol 5.)
    pub online: Vec<Username>,
}

impl RoomSnapshot {
    /// `user`'s role in this room.
    #[must_use]
    pub fn role_of(&self, user: &Username) -> Role {
        if self.owner.same_as(user) {
            Role::Owner
        } else if self.admins.iter().any(|admin| admin.same_as(user)) {
            Role::Admin
        } else {
            Role::Member
        }
    }
}

/// The user left the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The room.
    pub room: RoomName,
}

/// The message is durably stored and being delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAck {
    /// The room.
    pub room: RoomName,
    /// The message's id.
    pub message_id: MessageId,
    /// Its position in the room's history.
    pub seq: u64,
    /// Server timestamp, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
}

/// A page of one member's history in a room, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// The room.
    pub room: RoomName,
    /// Messages in ascending `seq` order.
    pub messages: Vec<DeliveredMessage>,
    /// Whether older messages exist before the first one here.
    pub has_more: bool,
    /// With `has_more`: the `before_seq` to ask for next. A page may hold fewer messages
    /// than asked for, or none (the server bounds how much it reads per request), and
    /// paging goes on from here. `None` when `has_more` is false.
    pub next_before_seq: Option<u64>,
}

/// The key was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    /// The new key's fingerprint.
    pub fingerprint: String,
}

/// A user's stored rotation certificates, oldest first (at most `MAX_KEY_HISTORY`, the
/// newest ones). A client that pinned an older key follows them to the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHistory {
    /// Whose.
    pub username: Username,
    /// The certificates, oldest first.
    pub certificates: Vec<RotationCertificate>,
}
