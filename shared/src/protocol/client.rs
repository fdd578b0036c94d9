//! Messages a client sends. Each variant of [`ClientMsg`] wraps a struct named after the
//! request; the reply each one gets is documented on the struct.

use serde::{Deserialize, Serialize};

use super::rooms::ModerationAction;
use super::Envelope;
use crate::crypto::rotation::RotationCertificate;
use crate::ids::{MessageId, RequestId, RoomName, Username};

/// One client frame: a request and the id its reply will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the reply.
    pub request_id: RequestId,
    /// The request.
    pub msg: ClientMsg,
}

/// Every request a client can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// Must be the first frame of a connection.
    Hello(Hello),
    /// Create an account.
    Register(Register),
    /// Ask for a login challenge.
    LoginStart(LoginStart),
    /// Answer the outstanding challenge.
    LoginProof(LoginProof),
    /// List public rooms.
    ListRooms(ListRooms),
    /// Create a room and become its owner and first member.
    CreateRoom(CreateRoom),
    /// Join a room (or re-open one the user is already a member of).
    JoinRoom(JoinRoom),
    /// Leave a room for good.
    LeaveRoom(LeaveRoom),
    /// Send one message as one envelope per current member.
    SendMessage(SendMessage),
    /// Fetch an older page of a room's history.
    FetchHistory(FetchHistory),
    /// Fetch one user's current public key.
    GetUserKey(GetUserKey),
    /// Replace the logged-in user's public key.
    RotateKey(RotateKey),
    /// Fetch the rotation certificates that lead to a user's current key.
    GetKeyHistory(GetKeyHistory),
    /// Run a group room: kick, ban, roles, topic, password, visibility, ownership,
    /// deletion. (Added in protocol 4, as are the variants after it.)
    Moderate(Moderate),
    /// Start (or re-open) the direct conversation with another user.
    OpenDirect(OpenDirect),
    /// Block or unblock a user's direct conversations with this user.
    SetBlocked(SetBlocked),
    /// Tell a room's other members that this user is, or stopped, typing.
    SetTyping(SetTyping),
    /// Record how far this user has read a room, for their other sessions.
    MarkRead(MarkRead),
    /// Delete the logged-in user's account.
    DeleteAccount(DeleteAccount),
    /// Start or stop this connection's `Push::LobbyChanged` hints. (Added in protocol 5.)
    WatchLobby(WatchLobby),
}

/// Opens the conversation. Reply: `Reply::Hello`; a different `protocol_version` gets
/// `ErrorCode::ProtocolVersion` and the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks; must equal `PROTOCOL_VERSION`.
    pub protocol_version: u16,
    /// Free-form client name and version, for server logs.
    pub client: String,
}

/// Reply: `Reply::Registered`, or `UsernameTaken` / `InvalidInput`. Only before login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// The requested username.
    pub username: Username,
    /// RSA public key, SubjectPublicKeyInfo DER, 2048–4096 bits, e = 65537.
    #[serde(with = "serde_bytes")]
    pub public_key: Vec<u8>,
}

/// Reply: `Reply::Challenge` with a fresh nonce, or `UnknownUser`. Only before login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStart {
    /// The account to log in to.
    pub username: Username,
}

/// Reply: `Reply::LoggedIn`, or `AuthFailed` / `ChallengeExpired`. The challenge is
/// consumed either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginProof {
    /// RSA-PSS-SHA256 signature over the login context (see `crypto::signing`).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Reply: `Reply::Rooms`: one page of the public rooms in canonical-name order.
/// `ListRooms::default()` asks for the first full page, unfiltered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRooms {
    /// Only rooms whose canonical name sorts after this one (`RoomList::next_after` of the
    /// previous page); `None` for the first page.
    pub after: Option<RoomName>,
    /// Only rooms whose name contains this text, ignoring case (at most 48 characters).
    pub filter: Option<String>,
    /// Page size (capped at `MAX_ROOM_LIST_PAGE`; 0 means the cap).
    pub limit: u16,
}

/// Reply: `Reply::RoomCreated`, or `RoomExists` / `InvalidInput`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRoom {
    /// The new room's name.
    pub name: RoomName,
    /// A password joiners must give; stored only as an argon2id hash.
    pub password: Option<String>,
    /// Hidden rooms are never listed and can only be joined by exact name.
    pub hidden: bool,
}

/// Reply: `Reply::Joined` with members, keys and the latest history page, or
/// `RoomUnavailable` (missing room, or wrong password for a hidden room) / `WrongPassword`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRoom {
    /// The room's name.
    pub name: RoomName,
    /// The room's password, if it has one. Members re-joining need none.
    pub password: Option<String>,
    /// How many recent messages to include (capped at `MAX_HISTORY_PAGE`).
    pub history_limit: u16,
}

/// Reply: `Reply::Left`, or `NotAMember`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveRoom {
    /// The room to leave.
    pub room: RoomName,
}

/// Reply: `Reply::Sent` once the message is durably stored, or `RecipientMismatch` (with
/// the current members), `NotAMember`, `DuplicateMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    /// Target room.
    pub room: RoomName,
    /// The sender-chosen id, also signed inside each envelope.
    pub message_id: MessageId,
    /// Exactly one envelope per current member, the sender's own included.
    pub envelopes: Vec<Envelope>,
}

/// Reply: `Reply::History`, or `NotAMember`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchHistory {
    /// The room.
    pub room: RoomName,
    /// Only messages with `seq` strictly below this; `None` for the newest.
    pub before_seq: Option<u64>,
    /// Page size (capped at `MAX_HISTORY_PAGE`).
    pub limit: u16,
}

/// Reply: `Reply::UserKey`, or `UnknownUser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetUserKey {
    /// Whose key.
    pub username: Username,
}

/// Reply: `Reply::KeyRotated`; members of the user's rooms get `Push::KeyChanged`, and the
/// user's other sessions are closed with `CLOSE_KEY_ROTATED`. `AuthFailed` if the
/// certificate's old key is not the account's current key or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateKey {
    /// The hand-over from the current key to the new one, signed by both
    /// (see `crypto::rotation`).
    pub certificate: RotationCertificate,
}

/// Reply: `Reply::KeyHistory`, or `UnknownUser`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetKeyHistory {
    /// Whose rotations.
    pub username: Username,
}

/// Reply: `Reply::Moderated` with the event every member is pushed (`Push::RoomEvent`), or
/// `NotAMember`, `NotPermitted` (the actor's role does not allow it, or the room is a
/// direct conversation), `UnknownUser`, `InvalidInput` (a topic too long, acting on
/// oneself, a target who is not a member where one must be), `RoomExists` (making a room
/// public, or setting a hidden room's password, would give it a name or key another room
/// has), `QuotaExceeded` (the room's ban list is full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderate {
    /// The room; the actor must be a member.
    pub room: RoomName,
    /// What to do.
    pub action: ModerationAction,
}

/// Reply: `Reply::Joined` with the conversation's snapshot (its `kind` is `Direct`); the
/// other user is made a member too and pushed `Push::DirectOpened`. `UnknownUser`,
/// `InvalidInput` (oneself), `NotPermitted` (the other user has blocked this one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDirect {
    /// Who to talk to.
    pub with: Username,
    /// How many recent messages to include (capped at `MAX_HISTORY_PAGE`).
    pub history_limit: u16,
}

/// Reply: `Reply::Done`. Blocking a user ends this user's membership of the direct
/// conversation with them and refuses their `OpenDirect` from then on; it does not touch
/// group rooms. `UnknownUser`, `InvalidInput` (oneself), `QuotaExceeded` (the block list
/// holds `MAX_BLOCKED_USERS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBlocked {
    /// Who.
    pub user: Username,
    /// Block (`true`) or unblock.
    pub blocked: bool,
}

/// Reply: `Reply::Done`; the room's other members' connections are pushed `Push::Typing`.
/// Nothing is stored. `NotAMember`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetTyping {
    /// The room.
    pub room: RoomName,
    /// Typing now (`true`), or stopped.
    pub typing: bool,
}

/// Reply: `Reply::Done`. The user's read marker for the room becomes `seq` if that is
/// higher than the stored one (markers never move back), and the user's other
/// connections are pushed `Push::ReadUpTo`. `NotAMember`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkRead {
    /// The room.
    pub room: RoomName,
    /// The highest `seq` the user has seen.
    pub seq: u64,
}

/// Reply: `Reply::AccountDeleted`, after which the server closes every session of the
/// account with `CLOSE_ACCOUNT_DELETED`. The user leaves every room (members are pushed
/// `MemberLeft`); rooms they own pass to an admin, else to another member, and are deleted
/// when nobody is left. The username stays reserved: nobody can register it again.
/// `InvalidInput` if `confirm` is not the logged-in username.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAccount {
    /// The account's username again, as a guard against a mistaken request.
    pub confirm: Username,
}

/// Reply: `Reply::Done`. While `watch` is on, this connection (only this one, not the
/// user's other sessions) is pushed `Push::LobbyChanged` when the public listing may have
/// changed: a public room created or deleted, made hidden or public, its topic or password
/// changed, or a member joined or left it. The hints are coalesced: a connection gets at
/// most one per `LOBBY_PUSH_INTERVAL_SECS` from each server instance. Hidden rooms and
/// direct conversations never cause one. Watching ends with the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchLobby {
    /// Start (`true`) or stop.
    pub watch: bool,
}
