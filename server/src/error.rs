//! The handler layer's error type and its sanitised wire form.
//!
//! Every way a request can fail is a [`HandlerError`] variant. [`HandlerError::to_wire`]
//! turns it into the stable [`ErrorCode`] and a human message; store and internal errors
//! become `StorageUnavailable`/`Internal` with a generic message, so no backend detail ever
//! reaches a client. The full cause chain is logged once, at the session boundary
//! ([`CauseChain`]).

use shared::protocol::{MemberInfo, PROTOCOL_VERSION};
use shared::{ErrorCode, ErrorDetail};

use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The client speaks another protocol version, or did not start with `Hello`.
    #[error(
        "protocol version {0} is not supported; this server speaks version {PROTOCOL_VERSION}"
    )]
    ProtocolVersion(u16),
    /// The first frame must be `Hello`.
    #[error("the first frame must be Hello")]
    HelloFirst,
    /// The request needs a logged-in session.
    #[error("log in first")]
    Unauthenticated,
    /// The request does not fit the session's state.
    #[error("{0}")]
    InvalidState(&'static str),
    /// A field is invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// The username is registered already.
    #[error("that username is taken")]
    UsernameTaken,
    /// No such account.
    #[error("no account has that username")]
    UnknownUser,
    /// The login proof failed, or no challenge was outstanding.
    #[error("authentication failed")]
    AuthFailed,
    /// The account's key was rotated while this login was in progress: the proof was made
    /// with a retired key. (On the wire it is `AuthFailed`; the session then closes with
    /// `CLOSE_KEY_ROTATED`.)
    #[error("the account's key was rotated during this login; log in with the new key")]
    KeyRotated,
    /// The challenge expired.
    #[error("the login challenge expired; ask for a new one")]
    ChallengeExpired,
    /// The room name is taken.
    #[error("a room with that name exists")]
    RoomExists,
    /// No such room, or a wrong password for a hidden room (indistinguishable on purpose).
    #[error("no such room, or wrong password")]
    RoomUnavailable,
    /// Wrong password for a public room.
    #[error("wrong password")]
    WrongPassword,
    /// The user is a member of another room with this name (a public and a hidden room may
    /// share a name; one user belongs to at most one of them). On the wire it is
    /// `InvalidState`: the user knows their own room exists, and the other one is public
    /// or they gave its password.
    #[error("you are a member of another room with this name; leave it first")]
    RoomNameInUse,
    /// The user is not a member of the room.
    #[error("you are not a member of that room")]
    NotAMember,
    /// The user's role does not allow the action, the room is a direct conversation, or
    /// the other user blocked this one.
    #[error("{0}")]
    NotPermitted(&'static str),
    /// The user is banned from the room.
    #[error("you are banned from that room")]
    Banned,
    /// The envelopes do not match the room's members.
    #[error(
        "the recipients are not the room's current members; re-encrypt for the members listed"
    )]
    RecipientMismatch(Vec<MemberInfo>),
    /// The message id was used before in this room.
    #[error("a message with that id exists in this room")]
    DuplicateMessage,
    /// Too many requests.
    #[error("too many requests; slow down")]
    RateLimited,
    /// Every slot for this kind of expensive work is taken; nothing was queued. (On the
    /// wire it is `RateLimited`.)
    #[error("the server is busy with other {0}; try again in a moment")]
    Busy(&'static str),
    /// Too many recent failures or requests of this kind from this client; retrying before
    /// the delay is over is refused the same way. (On the wire it is `RateLimited`.)
    #[error("{what}; retry after {} s", whole_seconds(*retry_after))]
    Throttled {
        /// What was refused, in words.
        what: &'static str,
        /// How long until a retry can succeed.
        retry_after: std::time::Duration,
    },
    /// A quota that does not refill with time is used up. (On the wire it is
    /// `InvalidInput`.)
    #[error("{0}")]
    QuotaExceeded(String),
    /// The store failed.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// Anything else that went wrong inside the server.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `d` in whole seconds, rounded up, and at least 1: a client that waits that long is
/// never early.
fn whole_seconds(d: std::time::Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

impl HandlerError {
    /// The sanitised code, message and detail to send to the client.
    pub fn to_wire(&self) -> (ErrorCode, String, Option<ErrorDetail>) {
        let code = match self {
            Self::ProtocolVersion(_) | Self::HelloFirst => ErrorCode::ProtocolVersion,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::InvalidState(_) | Self::RoomNameInUse => ErrorCode::InvalidState,
            Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Self::UsernameTaken => ErrorCode::UsernameTaken,
            Self::UnknownUser => ErrorCode::UnknownUser,
            Self::AuthFailed | Self::KeyRotated => ErrorCode::AuthFailed,
            Self::ChallengeExpired => ErrorCode::ChallengeExpired,
            Self::RoomExists => ErrorCode::RoomExists,
            Self::RoomUnavailable => ErrorCode::RoomUnavailable,
            Self::WrongPassword => ErrorCode::WrongPassword,
            Self::NotAMember => ErrorCode::NotAMember,
            Self::NotPermitted(_) => ErrorCode::NotPermitted,
            Self::Banned => ErrorCode::Banned,
            Self::RecipientMismatch(_) => ErrorCode::RecipientMismatch,
            Self::DuplicateMessage => ErrorCode::DuplicateMessage,
            Self::RateLimited | Self::Busy(_) | Self::Throttled { .. } => ErrorCode::RateLimited,
            Self::Store(StoreError::Unavailable { .. }) => ErrorCode::StorageUnavailable,
            Self::Store(_) | Self::Internal(_) => ErrorCode::Internal,
        };
        let message = match self {
            Self::Store(StoreError::Unavailable { .. }) => {
                "the server's storage is full or unavailable right now; try again later".to_owned()
            }
            Self::Store(_) | Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        };
        let detail = match self {
            Self::RecipientMismatch(members) => Some(ErrorDetail::CurrentMembers(members.clone())),
            _ => None,
        };
        (code, message, detail)
    }

    /// Whether this error is the server's fault (logged at error level) rather than the
    /// client's (logged at debug level).
    pub fn is_server_fault(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Internal(_))
    }
}

/// Displays an error with every source after it (`outer: inner: root cause`), so a log
/// line names the root cause (an ENOSPC, a driver's timeout) and not only the outermost
/// message.
pub struct CauseChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for CauseChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}
