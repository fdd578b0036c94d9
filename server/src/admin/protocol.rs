//! The admin socket's wire format: one [`Request`] as a line of JSON from the client, one
//! [`Response`] as a line of JSON back, then the server closes the connection.
//!
//! JSON lines keep the exchange readable (`socat - UNIX-CONNECT:admin.sock` works for a
//! look) and independent of the chat protocol's versioning. A request line may hold at
//! most [`MAX_REQUEST_BYTES`]; replies are bounded by paging (at most [`MAX_PAGE`]
//! entries), and the client reads at most [`MAX_RESPONSE_BYTES`].

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::store::StoreStats;

/// The longest request line the server reads, newline included.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The longest response line the client reads, newline included.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// The most entries one listing page holds (the server caps larger requests at this).
pub const MAX_PAGE: usize = 500;

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A page of accounts, by canonical name, after `after`.
    ListUsers {
        /// The last name of the previous page; from the first when `None`.
        after: Option<String>,
        /// At most this many (capped at [`MAX_PAGE`]).
        limit: usize,
    },
    /// One account in detail.
    ShowUser {
        /// The username, any case.
        name: String,
    },
    /// Deletes an account as `DeleteAccount` does.
    DeleteUser {
        /// The username, any case.
        name: String,
    },
    /// A page of every room (hidden ones and direct conversations too), by key.
    ListRooms {
        /// The last key of the previous page; from the first when `None`.
        after: Option<String>,
        /// At most this many (capped at [`MAX_PAGE`]).
        limit: usize,
    },
    /// One room in detail.
    ShowRoom {
        /// A room name (any case) or a room key (`~…`, as listings show it).
        room: String,
    },
    /// Deletes a room as its owner's `DeleteRoom` does.
    DeleteRoom {
        /// A room name (any case) or a room key (`~…`).
        room: String,
    },
    /// Counts and size of the store.
    Stats,
    /// Deletes messages in every room, as the retention task does.
    Purge {
        /// Delete messages accepted more than this many seconds ago.
        older_than_secs: Option<u64>,
        /// Keep only this many of each room's newest messages.
        keep_newest: Option<u64>,
    },
}

/// The server's answer: a result or a typed error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The request was carried out.
    Ok(Answer),
    /// It was not.
    Err(AdminError),
}

/// What a carried-out request gives back (tagged `answer`: a room's own `kind` is a field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// A page of accounts.
    Users {
        /// The accounts.
        users: Vec<UserSummary>,
    },
    /// One account.
    User(UserDetail),
    /// The account is deleted.
    UserDeleted {
        /// Its name, as registered.
        name: String,
        /// The rooms it left.
        rooms_left: Vec<String>,
    },
    /// A page of rooms.
    Rooms {
        /// The rooms.
        rooms: Vec<RoomSummary>,
    },
    /// One room.
    Room(RoomDetail),
    /// The room is deleted.
    RoomDeleted {
        /// The room that was deleted.
        room: RoomSummary,
    },
    /// The store's statistics.
    Stats {
        /// The adapter (`embedded`, `mongodb`).
        store: String,
        /// Counts and size.
        stats: StoreStats,
    },
    /// Messages were purged.
    Purged {
        /// How many.
        messages: u64,
    },
}

/// An account in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    /// The username as registered.
    pub name: String,
    /// Registration time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// The current key's fingerprint.
    pub fingerprint: String,
}

/// An account in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDetail {
    /// What a listing shows.
    #[serde(flatten)]
    pub summary: UserSummary,
    /// The rooms the user is a member of (display names).
    pub rooms: Vec<String>,
    /// Rooms the user ever created (the rooms-per-user quota's count).
    pub rooms_created: usize,
    /// Key rotations on record.
    pub key_rotations: usize,
}

/// What kind of room it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomKind {
    /// Listed to everyone.
    Public,
    /// Found only by its name (and password).
    Hidden,
    /// A direct conversation between two users.
    Direct,
}

/// A room in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room's name as created.
    pub name: String,
    /// Its key in the store: what tells apart rooms of one name (a public and hidden ones,
    /// which may share it), and what `rooms show`/`rooms delete` accept instead of a name.
    pub key: String,
    /// Public, hidden or direct.
    pub kind: RoomKind,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// The owner.
    pub owner: String,
    /// How many members.
    pub members: usize,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// A room in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDetail {
    /// What a listing shows.
    #[serde(flatten)]
    pub summary: RoomSummary,
    /// The members, by canonical name.
    pub member_names: Vec<String>,
    /// The admins.
    pub admins: Vec<String>,
    /// The topic, if set.
    pub topic: Option<String>,
    /// Users banned from it.
    pub banned: Vec<String>,
    /// Messages stored in it.
    pub messages: u64,
}

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum AdminError {
    /// No account of that name.
    #[error("no user named {name:?}")]
    UnknownUser {
        /// The name asked for.
        name: String,
    },
    /// No room of that name or key.
    #[error("no room named {room:?}")]
    UnknownRoom {
        /// The name or key asked for.
        room: String,
    },
    /// Several rooms have that name; a key picks one.
    #[error("several rooms are named {room:?}; name one by its key: {}", keys.join(", "))]
    AmbiguousRoom {
        /// The name asked for.
        room: String,
        /// The keys of the rooms of that name.
        keys: Vec<String>,
    },
    /// The request is malformed or asks for something impossible.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// The server is serving as many admin connections as it allows.
    #[error("the server is busy with other admin requests; try again")]
    Busy,
    /// The store failed (the server's log has the cause).
    #[error("the store failed: {reason}")]
    Store {
        /// The store error's class, never a driver's detail.
        reason: String,
    },
    /// Anything else that went wrong in the server.
    #[error("the server failed: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The peer closed before a whole line.
    #[error("the connection closed before a complete line")]
    Closed,
    /// The line is longer than allowed.
    #[error("the line is longer than {0} bytes")]
    TooLong(usize),
    /// I/O failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one line of at most `max` bytes (newline included) and returns it without the
/// newline; never buffers more than `max` bytes.
///
/// # Errors
/// [`LineError`].
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, LineError> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Err(LineError::Closed);
        }
        let (taken, done) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if line.len() + taken > max {
            return Err(LineError::TooLong(max));
        }
        line.extend_from_slice(&available[..taken]);
        reader.consume(taken);
        if done {
            line.pop();
            return Ok(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_complete() {
        let mut ok: &[u8] = b"{\"op\":\"stats\"}\nrest";
        assert_eq!(
            read_line(&mut ok, 64).await.expect("line"),
            b"{\"op\":\"stats\"}"
        );
        let mut long: &[u8] = &[b'x'; 100];
        assert!(matches!(
            read_line(&mut long, 64).await,
            Err(LineError::TooLong(64))
        ));
        let mut cut: &[u8] = b"{\"op\"";
        assert!(matches!(
            read_line(&mut cut, 64).await,
            Err(LineError::Closed)
        ));
    }

    #[test]
    fn requests_and_errors_round_trip_as_json() {
        let request = Request::Purge {
            older_than_secs: Some(60),
            keep_newest: None,
        };
        let text = serde_json::to_string(&request).expect("encodes");
        assert_eq!(
            text,
            r#"{"op":"purge","older_than_secs":60,"keep_newest":null}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(&text).expect("decodes"),
            request
        );
        let error = Response::Err(AdminError::UnknownUser { name: "bob".into() });
        let text = serde_json::to_string(&error).expect("encodes");
        assert_eq!(
            serde_json::from_str::<Response>(&text).expect("decodes"),
            error
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"drop_everything"}"#).is_err());
    }

    #[test]
    fn a_room_in_detail_round_trips() {
        let answer = Response::Ok(Answer::Room(RoomDetail {
            summary: RoomSummary {
                name: "Lobby".into(),
                key: "lobby".into(),
                kind: RoomKind::Public,
                has_password: false,
                owner: "alice".into(),
                members: 1,
                created_at_ms: 1,
            },
            member_names: vec!["alice".into()],
            admins: Vec::new(),
            topic: None,
            banned: Vec::new(),
            messages: 3,
        }));
        let text = serde_json::to_string(&answer).expect("encodes");
        assert_eq!(
            serde_json::from_str::<Response>(&text).expect("decodes"),
            answer
        );
    }
}
