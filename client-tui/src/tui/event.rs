//! [`UiEvent`]: what the network task reports to the UI, and [`describe`], which turns a
//! [`ClientError`] into plain words for a dialog or the status line.

use std::path::PathBuf;
use std::time::Duration;

use shared::crypto::keys::Fingerprint;
use shared::protocol::{RoomList, SendAck};
use shared::{ErrorCode, RoomName, Username};

use crate::directory::MemberView;
use crate::error::ClientError;
use crate::events::ClientEvent;
use crate::keystore::KeystoreError;
use crate::rooms::{HistoryView, RoomView};

/// The logged-in user, as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// The account name.
    pub username: Username,
    /// The user's own key fingerprint, to compare out of band.
    pub fingerprint: Fingerprint,
    /// Where the private key is saved.
    pub key_path: PathBuf,
}

/// The state of the connection, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the connection and logging in.
    Connecting,
    /// Logged in.
    Online,
    /// The connection is down; the next attempt is scheduled.
    Offline {
        /// Why it went down (or why the last attempt failed), in plain words.
        reason: String,
        /// When the next attempt starts.
        retry_in: Duration,
        /// How many attempts failed in a row.
        attempt: u32,
    },
    /// The client stopped trying (e.g. the account no longer exists on the server).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// Something the network task reports.
#[derive(Debug, Clone)]
pub enum UiEvent {
    /// A slow onboarding step is under way (key generation, key encryption, connecting).
    Progress {
        /// What is happening.
        title: String,
        /// How long it has been running.
        elapsed: Duration,
    },
    /// Onboarding failed; the form stays open with this message.
    OnboardingFailed {
        /// In plain words.
        message: String,
    },
    /// The key is unlocked (or created): the main screen can open.
    Ready(Me),
    /// The connection changed state.
    Connection(ConnectionState),
    /// The public rooms.
    RoomList(RoomList),
    /// A room was created or joined (or re-opened after a reconnect).
    RoomOpened {
        /// The room with its members and newest history.
        view: RoomView,
        /// Whether the user asked for it (switch to it) or it was re-opened automatically.
        focus: bool,
    },
    /// A page of history arrived.
    HistoryLoaded(HistoryView),
    /// A room's member list changed (e.g. after accepting a key).
    Members {
        /// The room.
        room: RoomName,
        /// Its members.
        members: Vec<MemberView>,
    },
    /// A message the user sent is stored.
    Sent {
        /// The room.
        room: RoomName,
        /// The UI's id for the pending line.
        local_id: u64,
        /// The server's acknowledgement.
        ack: SendAck,
    },
    /// A message could not be sent.
    SendFailed {
        /// The room.
        room: RoomName,
        /// The UI's id for the pending line.
        local_id: u64,
        /// Why, in plain words.
        reason: String,
        /// The connection failed under it (rather than the server refusing it): it is
        /// sent again once the client is online.
        waiting: bool,
    },
    /// A message sent again was already stored (an earlier attempt's ack was lost); the
    /// server refused the duplicate, so it is stored exactly once.
    AlreadyStored {
        /// The room.
        room: RoomName,
        /// The UI's id for the pending line.
        local_id: u64,
    },
    /// The user left a room.
    Left(RoomName),
    /// Logged in (again): the rooms the user is a member of now. A room shown that is not
    /// among them was left behind while the user was away (removed, or deleted).
    Memberships(Vec<RoomName>),
    /// A block or unblock is in place.
    Blocked {
        /// Who.
        user: Username,
        /// Blocked, or unblocked.
        blocked: bool,
    },
    /// Opening the direct conversation with a user failed.
    DirectFailed {
        /// The other user.
        user: Username,
        /// Why, in plain words.
        message: String,
    },
    /// Joining needs a password (or the room does not exist: the server does not say).
    PasswordNeeded {
        /// The room.
        room: RoomName,
        /// Whether a password was given and refused.
        wrong: bool,
    },
    /// A changed key is now trusted.
    KeyAccepted {
        /// Whose key.
        username: Username,
        /// Its fingerprint.
        fingerprint: Fingerprint,
    },
    /// A member's key is now marked verified.
    Verified {
        /// Whose key.
        username: Username,
        /// The fingerprint marked.
        fingerprint: Fingerprint,
    },
    /// The send of a pending message was refused because members were added to the room;
    /// nothing was sent. The additions are shown, then the message is sent once more.
    MembersAdded {
        /// The room.
        room: RoomName,
        /// The UI's id for the pending line.
        local_id: u64,
        /// Who was added.
        added: Vec<Username>,
    },
    /// The user's own key was rotated: the server uses the new key.
    OwnKeyRotated {
        /// The fingerprint before.
        old: Fingerprint,
        /// The new fingerprint.
        new: Fingerprint,
        /// Where the old key file is kept (`None` if the new key could not be put in
        /// place; a [`UiEvent::Failed`] follows saying what to do).
        backup: Option<PathBuf>,
    },
    /// Rotating the user's own key failed.
    RotationFailed {
        /// Why, in plain words, and what became of the files.
        message: String,
    },
    /// Something worth a warning on the status line (e.g. an old key that did not load).
    Warning(String),
    /// A desktop notification could not be shown (no session bus or notification
    /// daemon): notifications are off for the rest of the run.
    NotificationsFailed,
    /// Something the client core reported on its own.
    Client(ClientEvent),
    /// A request failed; shown as a dialog.
    Failed {
        /// What was being done ("Joining #den").
        action: String,
        /// Why, in plain words.
        message: String,
    },
}

/// A [`ClientError`] in plain words, for users rather than developers.
pub fn describe(err: &ClientError) -> String {
    match err {
        ClientError::Server { code, message, .. } => describe_code(*code, message),
        ClientError::InvalidUrl(m) => {
            format!(
                "The server address is not valid ({m}). Use ws://host:port/ws or wss://host/ws."
            )
        }
        ClientError::Transport(e) => format!("Could not reach the server: {}.", transport_words(e)),
        ClientError::ProtocolVersion { message } => {
            format!("The server speaks another protocol version ({message}). Update the client.")
        }
        ClientError::UnexpectedReply { .. } => {
            "The server answered something unexpected; see the log file for details.".into()
        }
        ClientError::Codec(_) => "The message is too large to send.".into(),
        ClientError::Disconnected { .. } => "The connection to the server was lost.".into(),
        ClientError::Timeout(d) => format!("The server did not answer within {} s.", d.as_secs()),
        ClientError::NotLoggedIn => "You are not logged in yet.".into(),
        ClientError::RoomNotOpen(room) => format!("Join #{room} first."),
        ClientError::UntrustedKeys { usernames, .. } => {
            let names: Vec<&str> = usernames.iter().map(Username::as_str).collect();
            format!(
                "The key of {} changed and is not accepted yet. Compare fingerprints \
                 out of band, then accept it (F3).",
                names.join(", ")
            )
        }
        ClientError::MessageTooLarge { max } => format!(
            "The message is too long for this server (at most about {} KiB).",
            max / 1024
        ),
        ClientError::DirectIntruders { usernames, .. } => format!(
            "The server lists {} in your direct conversation, which only its two users may \
             be in: nothing is sent while it does.",
            list(usernames)
        ),
        ClientError::MembersAdded { room, added } => format!(
            "{} joined #{room}; the message was not encrypted to them.",
            list(added)
        ),
        ClientError::ServerIdentityChanged { address, .. } => format!(
            "The server at {address} is not the one this client talked to before: it presents \
             another server identity. It may be an impostor, so the client will not log in \
             there. If its operator confirms that the server was reinstalled, remove its entry \
             under \"servers\" in your trusted-keys file (<key file>.pins.json)."
        ),
        ClientError::ServerIdentityClaimed {
            address,
            other_address,
        } => format!(
            "The server at {address} claims to be the server at {other_address}. A login \
             there could be relayed to the other server, so the client will not log in."
        ),
        ClientError::NoPendingKeyChange(user) => {
            format!("{user}'s key has no pending change, or is not trusted yet.")
        }
        ClientError::WrongIdentity { .. } => "That key belongs to another account.".into(),
        ClientError::Crypto(e) => format!("A cryptographic operation failed: {e}."),
        ClientError::Pins(e) => format!("The trusted-keys file could not be used: {e}."),
        ClientError::Ledger(e) => format!(
            "The record of messages already received could not be used: {e}. Protection \
             against replayed messages needs it."
        ),
        ClientError::Keystore(e) => describe_keystore(e),
        ClientError::Task(_) => "An internal task failed; see the log file.".into(),
        // The core may grow variants; its own message is the best fallback.
        #[allow(unreachable_patterns)]
        other => other.to_string(),
    }
}

/// A transport failure in plain words, without the operating system's error numbers
/// ("os error 111"): what a user can act on.
pub fn transport_words(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e {
        WsError::Io(io) => io_words(io),
        WsError::Tls(_) => "the secure (TLS) connection could not be set up".into(),
        WsError::Http(response) => format!(
            "the address answered with HTTP status {} instead of a chat server",
            response.status()
        ),
        WsError::Url(_) => "the server address is not valid".into(),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "the connection was closed".into(),
        WsError::Protocol(_) => "the server broke the WebSocket protocol".into(),
        other => other.to_string(),
    }
}

/// An I/O failure in plain words, by its kind rather than its OS error number.
pub fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => {
            "nothing answers at that address (is the server running?)".into()
        }
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
            "the connection was cut".into()
        }
        ErrorKind::TimedOut => "the server did not answer in time".into(),
        ErrorKind::NotFound => "no such file or address".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::AddrNotAvailable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::HostUnreachable => "the network or the server cannot be reached".into(),
        ErrorKind::UnexpectedEof => "the connection ended unexpectedly".into(),
        ErrorKind::AlreadyExists => "it exists already".into(),
        _ => {
            // The name resolver's failures carry no kind of their own.
            let text = e.to_string();
            if text.contains("failed to lookup address") || text.contains("Name or service") {
                "the server's name could not be resolved".into()
            } else {
                strip_os_error(&text)
            }
        }
    }
}

/// `"Broken thing (os error 32)"` → `"broken thing"`.
fn strip_os_error(text: &str) -> String {
    let trimmed = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why the connection closed, in plain words: a flood (see
/// [`FLOOD_REASON`](crate::events::FLOOD_REASON)) is said so, other reasons pass through.
pub fn describe_disconnect(reason: &str) -> String {
    if reason == crate::events::FLOOD_REASON {
        "The server sent far more than this client can process, so the client closed the \
         connection to protect itself (the server may be misbehaving)"
            .to_owned()
    } else {
        reason.to_owned()
    }
}

/// `carol`, `carol and dave`, `carol, dave and erin`.
pub fn list(names: &[Username]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(Username::as_str).collect();
            format!("{} and {last}", init.join(", "))
        }
    }
}

/// A [`KeystoreError`] in plain words.
pub fn describe_keystore(err: &KeystoreError) -> String {
    match err {
        KeystoreError::BadPassphrase(_) => "Wrong passphrase.".into(),
        KeystoreError::PassphraseRequired(_) => {
            "This key file is encrypted: enter its passphrase.".into()
        }
        KeystoreError::Io { path, source } => {
            format!(
                "Cannot read or write the key file {}: {}.",
                path.display(),
                io_words(source)
            )
        }
        KeystoreError::InvalidKey { path, source } => format!(
            "{} is not a usable RSA private key ({source}).",
            path.display()
        ),
        KeystoreError::Crypto(e) => format!("A key operation failed: {e}."),
        KeystoreError::NoConfigDir => {
            "No configuration directory is known for this user; pass --key PATH.".into()
        }
        #[allow(unreachable_patterns)]
        other => other.to_string(),
    }
}

fn describe_code(code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::UsernameTaken => "That username is already taken; choose another.".into(),
        ErrorCode::UnknownUser => "The server has no account with that username.".into(),
        ErrorCode::AuthFailed => "The server did not accept this key for the account.".into(),
        ErrorCode::ChallengeExpired => "Logging in took too long; try again.".into(),
        ErrorCode::RoomExists => "A room with that name already exists.".into(),
        ErrorCode::RoomUnavailable => "No room by that name, or its password is wrong.".into(),
        ErrorCode::WrongPassword => "Wrong room password.".into(),
        ErrorCode::NotAMember => "You are not a member of that room.".into(),
        ErrorCode::NotPermitted => {
            "You are not permitted to do that (your role in the room does not allow it, or \
             the other user does not accept direct messages from you)."
                .into()
        }
        ErrorCode::Banned => "You are banned from that room.".into(),
        ErrorCode::RateLimited => "Too many requests; wait a moment and try again.".into(),
        ErrorCode::Unavailable => "The server is busy or shutting down; try again soon.".into(),
        ErrorCode::StorageUnavailable => {
            "The server's storage is full or unavailable, so nothing was stored. Try again \
             later."
                .into()
        }
        ErrorCode::QuotaExceeded => format!("The server's limit is reached: {message}."),
        ErrorCode::Internal => "The server hit an internal error; try again later.".into(),
        ErrorCode::InvalidInput => format!("The server refused the input: {message}."),
        ErrorCode::ProtocolVersion => format!("Protocol version mismatch: {message}."),
        _ => format!("The server refused the request: {message}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_plain_words() {
        let err = ClientError::Server {
            code: ErrorCode::RoomUnavailable,
            message: "room unavailable".into(),
            detail: None,
        };
        assert_eq!(
            describe(&err),
            "No room by that name, or its password is wrong."
        );
        let err = ClientError::Timeout(Duration::from_secs(30));
        assert!(describe(&err).contains("30 s"));
    }

    #[test]
    fn server_identity_and_flood_failures_are_plain_words() {
        let changed = ClientError::ServerIdentityChanged {
            address: "ws://chat/ws".into(),
            pinned: shared::ServerId([1; 16]),
            presented: shared::ServerId([2; 16]),
        };
        let text = describe(&changed);
        assert!(
            text.contains("ws://chat/ws") && text.contains("impostor"),
            "{text}"
        );
        assert!(!text.contains("ServerId"), "no Debug output: {text}");
        let claimed = ClientError::ServerIdentityClaimed {
            address: "ws://evil/ws".into(),
            other_address: "ws://chat/ws".into(),
        };
        assert!(describe(&claimed).contains("claims to be the server at ws://chat/ws"));
        let flood = describe_disconnect(crate::events::FLOOD_REASON);
        assert!(flood.contains("to protect itself"), "{flood}");
        assert_eq!(
            describe_disconnect("connection closed"),
            "connection closed"
        );
        let names = [
            Username::parse("carol").expect("valid"),
            Username::parse("dave").expect("valid"),
            Username::parse("erin").expect("valid"),
        ];
        assert_eq!(list(&names), "carol, dave and erin");
        assert_eq!(list(&names[..1]), "carol");
        let full = ClientError::Server {
            code: shared::ErrorCode::StorageUnavailable,
            message: "storage unavailable".into(),
            detail: None,
        };
        assert!(describe(&full).contains("nothing was stored"));
    }
}
