//! Stable error codes that a server puts on the wire.
//!
//! Codes are part of the protocol: their numbers never change meaning, and a client can
//! match on [`ErrorCode`] without parsing the human message that accompanies it.

use serde::{Deserialize, Serialize};

use crate::protocol::MemberInfo;

/// What went wrong, as a stable, machine-readable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded (garbage, trailing bytes, unknown variant).
    MalformedFrame,
    /// The frame exceeds the maximum frame size.
    FrameTooLarge,
    /// The first frame was not `Hello`, or its protocol version is not supported.
    ProtocolVersion,
    /// The request needs a logged-in session.
    Unauthenticated,
    /// The request is not valid in the session's current state (e.g. login twice).
    InvalidState,
    /// A field failed validation (name rules, key size, sizes, counts).
    InvalidInput,
    /// The username is already registered (case-insensitively).
    UsernameTaken,
    /// No account has this username.
    UnknownUser,
    /// The login proof did not verify, or no valid challenge was outstanding.
    AuthFailed,
    /// The login challenge expired before the proof arrived.
    ChallengeExpired,
    /// A room with this name already exists.
    RoomExists,
    /// No such room, or (for hidden or password rooms) a wrong password: the two are
    /// deliberately indistinguishable.
    RoomUnavailable,
    /// The password for a public, password-protected room is wrong.
    WrongPassword,
    /// The user is not a member of the room.
    NotAMember,
    /// The envelopes' recipients are not exactly the room's current members; the
    /// [`ErrorDetail::CurrentMembers`] detail lists them so the client can re-encrypt.
    RecipientMismatch,
    /// A message with this id was already stored in this room.
    DuplicateMessage,
    /// Too many requests; slow down.
    RateLimited,
    /// The server is shutting down or overloaded.
    Unavailable,
    /// Something failed inside the server; details are in its logs, never on the wire.
    Internal,
    /// The server's storage is full or cannot be written now; nothing was stored. Retry
    /// later. (Added in protocol 3; listed last so earlier codes keep their encoding.)
    StorageUnavailable,
    /// A quota that does not refill with time is used up (e.g. the rooms one user may
    /// own). (Added in protocol 3.)
    QuotaExceeded,
    /// The user's role in the room does not allow the action, the room is a direct
    /// conversation (which nobody moderates), or the other user blocked direct
    /// conversations with this one. (Added in protocol 4.)
    NotPermitted,
    /// The user is banned from the room. (Added in protocol 4.)
    Banned,
}

impl ErrorCode {
    /// The numeric code, stable across versions (documented in docs/PROTOCOL.md).
    pub fn number(self) -> u16 {
        match self {
            Self::MalformedFrame => 1000,
            Self::FrameTooLarge => 1001,
            Self::ProtocolVersion => 1002,
            Self::Unauthenticated => 1100,
            Self::InvalidState => 1101,
            Self::InvalidInput => 1102,
            Self::UsernameTaken => 1200,
            Self::UnknownUser => 1201,
            Self::AuthFailed => 1202,
            Self::ChallengeExpired => 1203,
            Self::RoomExists => 1300,
            Self::RoomUnavailable => 1301,
            Self::WrongPassword => 1302,
            Self::NotAMember => 1303,
            Self::NotPermitted => 1304,
            Self::Banned => 1305,
            Self::RecipientMismatch => 1400,
            Self::DuplicateMessage => 1401,
            Self::RateLimited => 1500,
            Self::Unavailable => 1501,
            Self::StorageUnavailable => 1502,
            Self::QuotaExceeded => 1503,
            Self::Internal => 1599,
        }
    }
}

/// Structured data attached to some errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorDetail {
    /// With [`ErrorCode::RecipientMismatch`]: the room's members now, with their keys.
    CurrentMembers(Vec<MemberInfo>),
}
