//! The client core's error type, [`ClientError`].
//!
//! Every fallible [`Client`](crate::Client) call returns it. Server refusals keep the
//! server's stable [`ErrorCode`] (plus its message and structured detail), so callers match
//! on codes rather than parse text. The pin store and the key store have their own error
//! types ([`PinError`], [`KeystoreError`]) that convert into this one.

use shared::crypto::CryptoError;
use shared::protocol::codec::CodecError;
use shared::{ErrorCode, ErrorDetail, RoomName, ServerId, Username};

use crate::keystore::KeystoreError;
use crate::ledger::LedgerError;
use crate::pins::PinError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL could not be parsed, or its scheme is not `ws`/`wss`.
    #[error("invalid server URL: {0}")]
    InvalidUrl(String),
    /// The WebSocket connection could not be opened, or a frame could not be written.
    /// Boxed because tungstenite's error is large and this path is cold.
    #[error("connection failed: {0}")]
    Transport(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server does not speak our protocol version.
    #[error("protocol version mismatch: {message}")]
    ProtocolVersion {
        /// The server's explanation (it names the versions it supports).
        message: String,
    },
    /// The server refused the request.
    #[error("server refused the request ({code:?}): {message}")]
    Server {
        /// Stable, machine-readable code.
        code: ErrorCode,
        /// The server's human-readable message.
        message: String,
        /// Structured data for some codes (e.g. the current members on a mismatch).
        detail: Option<ErrorDetail>,
    },
    /// The server answered with a reply of the wrong kind: a protocol violation.
    #[error("unexpected reply: expected {expected}, got {got}")]
    UnexpectedReply {
        /// The reply variant the request calls for.
        expected: &'static str,
        /// The variant that arrived.
        got: String,
    },
    /// A frame could not be encoded (e.g. a message too large for one frame).
    #[error("frame encoding failed: {0}")]
    Codec(#[from] CodecError),
    /// The connection is closed; requests in flight when it closed fail with this.
    #[error("disconnected: {reason}")]
    Disconnected {
        /// What closed it, as far as the client can tell.
        reason: String,
    },
    /// No reply arrived within the configured request timeout.
    #[error("the server did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The call needs a logged-in session.
    #[error("not logged in")]
    NotLoggedIn,
    /// The call needs the room to be open in this session (`join_room` or `create_room`
    /// first), because the client must know the members' keys.
    #[error("room {0} is not open in this session; join it first")]
    RoomNotOpen(RoomName),
    /// Sending is refused because some members' keys changed and the change has not been
    /// accepted with [`Client::accept_key`](crate::Client::accept_key), or the server sent
    /// an unusable key for them.
    #[error("room {room} has members whose keys are not trusted: {}", list(.usernames))]
    UntrustedKeys {
        /// The room.
        room: RoomName,
        /// The members whose current key is unaccepted or invalid.
        usernames: Vec<Username>,
    },
    /// Sending to a direct conversation is refused because the server lists members
    /// besides its two users: nothing is ever sealed for a third party there.
    #[error("the direct conversation {room} lists others besides its two users: {}", list(.usernames))]
    DirectIntruders {
        /// The conversation.
        room: RoomName,
        /// Who should not be in it.
        usernames: Vec<Username>,
    },
    /// The send was refused because members were added to the room. The additions were
    /// reported as [`ClientEvent::MemberJoined`](crate::ClientEvent::MemberJoined) first;
    /// nothing was encrypted to the new members. Show them, then send again.
    #[error("{room} has new members ({}); the message was not sent to them", list(.added))]
    MembersAdded {
        /// The room.
        room: RoomName,
        /// Who was added.
        added: Vec<Username>,
    },
    /// The message is larger than the server accepts (`HelloAck::max_message_bytes` for
    /// one sealed copy); nothing was sent.
    #[error("the message is too large: a sealed copy may hold at most {max} bytes")]
    MessageTooLarge {
        /// The server's limit for one sealed copy, in bytes.
        max: u32,
    },
    /// The server at this address announced another identity than on first contact:
    /// it may be another server. Login proofs would be signed for a server the user never
    /// chose, so the client refuses to go on.
    #[error("the server at {address} changed its identity (pinned {pinned}, now {presented})")]
    ServerIdentityChanged {
        /// The address dialled.
        address: String,
        /// The id pinned for it.
        pinned: ServerId,
        /// The id it announced now.
        presented: ServerId,
    },
    /// The server at this address claims the identity pinned for another address: a proof
    /// signed for it would log in there (a relay). The client refuses to go on.
    #[error("the server at {address} claims to be the server at {other_address}")]
    ServerIdentityClaimed {
        /// The address dialled.
        address: String,
        /// The address the identity is pinned for.
        other_address: String,
    },
    /// `accept_key` was called for a user with no unaccepted key change.
    #[error("no unaccepted key change for {0}")]
    NoPendingKeyChange(Username),
    /// The identity given does not belong to the logged-in user.
    #[error("identity is for {given}, but the session is logged in as {session}")]
    WrongIdentity {
        /// The identity's username.
        given: Username,
        /// The session's username.
        session: Username,
    },
    /// A key operation failed (invalid key, signing, sealing).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Reading or writing the pin store failed.
    #[error(transparent)]
    Pins(#[from] PinError),
    /// Reading or writing the ledger (replay record, counters, members) failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Reading or writing a key file failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A background computation (on the blocking pool) was cancelled or panicked.
    #[error("internal task failed: {0}")]
    Task(String),
}

fn list(names: &[Username]) -> String {
    names
        .iter()
        .map(Username::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientError {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server { code, .. } => Some(*code),
            Self::ProtocolVersion { .. } => Some(ErrorCode::ProtocolVersion),
            _ => None,
        }
    }

    pub(crate) fn unexpected(expected: &'static str, got: &shared::protocol::Reply) -> Self {
        Self::UnexpectedReply {
            expected,
            got: reply_name(got).to_owned(),
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(err: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::Transport(Box::new(err))
    }
}

impl From<tokio::task::JoinError> for ClientError {
    fn from(err: tokio::task::JoinError) -> Self {
        Self::Task(err.to_string())
    }
}

/// The variant name of a reply, for error messages (never its contents).
fn reply_name(reply: &shared::protocol::Reply) -> &'static str {
    use shared::protocol::Reply;
    match reply {
        Reply::Hello(_) => "Hello",
        Reply::Registered(_) => "Registered",
        Reply::Challenge(_) => "Challenge",
        Reply::LoggedIn(_) => "LoggedIn",
        Reply::Rooms(_) => "Rooms",
        Reply::RoomCreated(_) => "RoomCreated",
        Reply::Joined(_) => "Joined",
        Reply::Left(_) => "Left",
        Reply::Sent(_) => "Sent",
        Reply::History(_) => "History",
        Reply::UserKey(_) => "UserKey",
        Reply::KeyRotated(_) => "KeyRotated",
        Reply::KeyHistory(_) => "KeyHistory",
        Reply::Moderated(_) => "Moderated",
        Reply::Done => "Done",
        Reply::AccountDeleted => "AccountDeleted",
    }
}
