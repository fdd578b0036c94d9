//! Persistence: one domain-level trait, [`Store`], that says what the server needs, and
//! its adapters.
//!
//! - [`embedded::EmbeddedStore`]: a crash-safe on-disk store (redb) in a data directory;
//!   the zero-configuration default.
//! - [`mongo::MongoStore`]: MongoDB, for production.
//!
//! Uniqueness (usernames case-insensitively; room keys; one room of a canonical name per
//! member; message ids per room) and atomicity (a room is created together with its
//! owner's membership; a message gets its sequence number and all its copies in one write;
//! a key rotation replaces the key only if it is still the one the certificate retires,
//! and records the certificate in the same write) are the store's job, never a
//! read-modify-write in a handler. Records are document-shaped so both adapters store them
//! naturally. Every behaviour is pinned down by [`conformance`], which both adapters run.
//!
//! # Room keys and namespaces
//! A room is stored under a [`RoomKey`], never looked up by its name alone:
//!
//! - a public room under its canonical name ([`RoomKey::public`]);
//! - a hidden room with a password under `~hidden:` and the hex HMAC-SHA256, keyed by the
//!   store's [`RoomSecret`], of its canonical name and password ([`RoomSecret::hidden_key`]),
//!   so only someone who gives both can find it;
//! - a hidden room without a password under `~open:` and its canonical name: knowing the
//!   name is the access, but it lives in its own namespace, so a public room of the same
//!   name never collides with it.
//!
//! Hidden keys start with `~`, which sorts after every character a room name may hold, so
//! they form one block after all public keys that a listing never enters. Rooms made by
//! earlier versions keep their keys: public ones are already keyed by name, and hidden ones
//! ("legacy" hidden rooms, `hidden` set under a name key) stay there, as the server does
//! not have their passwords to re-key them.
//!
//! A member's room is found through the member's own memberships ([`Store::room_of`]),
//! keyed by the user and the room's canonical name; a user is a member of at most one room
//! per canonical name.
//!
//! Direct conversations (protocol 4) live in a namespace of their own, `~direct:` and the
//! conversation's canonical name ([`RoomKey::direct`]): a hidden namespace, so they are
//! never listed, and one no join by name looks in, so nobody but their two participants
//! reaches them.
//!
//! # Moving a room to another key
//! Changing a hidden room's password, or switching a room between hidden and public,
//! changes its key ([`Store::move_room`]). Members, messages, bans, roles and read markers
//! go with it, and the old key is free at once (a hidden room's old name and password find
//! nothing). The embedded store moves every entry in one write transaction. MongoDB has no
//! transactions here, so its rooms have a permanent internal `_id` that messages refer to,
//! and the key is a uniquely indexed field of the room document: a move is one
//! single-document update of that field, atomic and crash-safe by construction, and never
//! touches the messages (see `mongo/mod.rs`).

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub(crate) mod disk;
pub mod embedded;
#[cfg(any(test, feature = "test-util"))]
pub use disk::faults;
pub mod mongo;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use ring::hmac;
use serde::{Deserialize, Serialize};
use shared::crypto::rotation::RotationCertificate;
use shared::protocol::{DeliveredMessage, Envelope, Role};
use shared::{MessageId, RoomName, ServerId, Username};

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The username with the case it was registered with.
    pub username: Username,
    /// RSA public key, SubjectPublicKeyInfo DER (validated before it reaches the store).
    pub public_key: Vec<u8>,
    /// Registration time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// A room's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The room's name with the case it was created with.
    pub name: RoomName,
    /// Who created it (its first member).
    pub owner: Username,
    /// argon2id PHC string, when the room has a password.
    pub password_hash: Option<String>,
    /// Hidden rooms are never listed.
    pub hidden: bool,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// A group room, or a direct conversation and its two participants.
    pub kind: RoomKindRecord,
    /// The members the owner made admins, by canonical name, sorted. Only members are
    /// admins: leaving, a kick or a ban ends it.
    pub admins: Vec<Username>,
    /// The topic, if one is set (checked with `shared::protocol::check_topic`).
    pub topic: Option<String>,
}

impl RoomRecord {
    /// A group room with no admins and no topic, as `CreateRoom` makes one.
    pub fn group(
        name: RoomName,
        owner: Username,
        password_hash: Option<String>,
        hidden: bool,
        created_at_ms: u64,
    ) -> Self {
        Self {
            name,
            owner,
            password_hash,
            hidden,
            created_at_ms,
            kind: RoomKindRecord::Group,
            admins: Vec::new(),
            topic: None,
        }
    }

    /// `user`'s role in the room by this record (membership is not checked here).
    pub fn role_of(&self, user: &Username) -> Role {
        if self.owner.same_as(user) {
            Role::Owner
        } else if self.admins.iter().any(|a| a.same_as(user)) {
            Role::Admin
        } else {
            Role::Member
        }
    }

    /// The two participants of a direct conversation; `None` for a group room.
    pub fn participants(&self) -> Option<&[Username; 2]> {
        match &self.kind {
            RoomKindRecord::Group => None,
            RoomKindRecord::Direct { participants } => Some(participants),
        }
    }

    /// Whether the public listing shows it: a group room that is not hidden.
    pub fn is_listed(&self) -> bool {
        !self.hidden && self.participants().is_none()
    }
}

/// Whether a room is a group or a direct conversation, as the store keeps it (the
/// protocol's `RoomKind` names the peer as one participant sees it; this names both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomKindRecord {
    /// An ordinary room.
    Group,
    /// A direct conversation.
    Direct {
        /// Both participants, by canonical name, in order.
        participants: [Username; 2],
    },
}

/// A change to a room's record that is one atomic write ([`Store::update_room`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomUpdate {
    /// Set or clear the topic.
    Topic(Option<String>),
    /// Make a member an admin (`true`) or a plain member.
    Admin {
        /// Who; must be a member.
        user: Username,
        /// Admin from now on, or not.
        admin: bool,
    },
    /// Make a member the owner; the previous owner becomes an admin if still a member.
    Owner {
        /// The new owner; must be a member.
        to: Username,
    },
    /// Set or remove a public room's argon2id password hash (the key stays).
    PasswordHash(Option<String>),
}

/// The first character of every hidden room's key: it sorts after every character a room
/// name may hold (ASCII letters, digits and `_-.`), so hidden keys come after all public
/// ones.
pub const HIDDEN_KEY_MARK: char = '~';

/// The prefix of a hidden room's key when its password is part of the key.
const KEYED_PREFIX: &str = "~hidden:";

/// The prefix of a hidden room's key when it has no password.
const OPEN_PREFIX: &str = "~open:";

/// The prefix of a direct conversation's key.
const DIRECT_PREFIX: &str = "~direct:";

/// Where a room is stored: the store's primary key for it (see the module docs for the
/// namespaces). Opaque to handlers, which get one from [`RoomKey::public`],
/// [`RoomSecret::hidden_key`] or a membership, and never show it to a client.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomKey(String);

impl RoomKey {
    /// The key of the public room (or legacy hidden room) named `name`: its canonical name.
    pub fn public(name: &RoomName) -> Self {
        Self(name.canonical())
    }

    /// A key as an adapter stored it.
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of the direct conversation named `name` (`shared::protocol::direct_room_name`).
    pub fn direct(name: &RoomName) -> Self {
        Self(format!("{DIRECT_PREFIX}{}", name.canonical()))
    }

    /// Whether the key is in a hidden namespace (not a public room's or a legacy one's).
    pub fn is_hidden(&self) -> bool {
        self.0.starts_with(HIDDEN_KEY_MARK)
    }

    /// Whether the room's password is part of its key: a hidden room created with a
    /// password, which keeps no password hash because finding it proves the password.
    pub fn password_in_key(&self) -> bool {
        self.0.starts_with(KEYED_PREFIX)
    }
}

impl std::fmt::Debug for RoomKey {
    /// A hidden key is a keyed hash of a name and a password: logs show only its
    /// namespace and first few characters, enough to tell rooms apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.password_in_key() {
            let shown: String = self.0.chars().take(KEYED_PREFIX.len() + 8).collect();
            write!(f, "RoomKey({shown}…)")
        } else {
            write!(f, "RoomKey({})", self.0)
        }
    }
}

impl std::fmt::Display for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// The store's secret for deriving hidden rooms' keys: 32 random bytes, generated once
/// when the store is created and kept in it. Never logged (its `Debug` is redacted).
#[derive(Clone, PartialEq, Eq)]
pub struct RoomSecret([u8; 32]);

impl RoomSecret {
    /// A fresh random secret.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The secret from its stored bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key of the hidden room named `name` with this `password` (`None`: a hidden room
    /// without a password, found by its name alone). The password is used as given, byte
    /// for byte; names are canonical (lowercase).
    pub fn hidden_key(&self, name: &RoomName, password: Option<&str>) -> RoomKey {
        let canonical = name.canonical();
        match password {
            None => RoomKey(format!("{OPEN_PREFIX}{canonical}")),
            Some(password) => {
                // A name never holds a NUL, so (name, password) pairs map to distinct inputs.
                let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
                let mut ctx = hmac::Context::with_key(&key);
                ctx.update(canonical.as_bytes());
                ctx.update(&[0]);
                ctx.update(password.as_bytes());
                let tag = ctx.sign();
                RoomKey(format!("{KEYED_PREFIX}{}", hex::encode(tag.as_ref())))
            }
        }
    }
}

impl std::fmt::Debug for RoomSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomSecret(..)")
    }
}

/// One of a user's memberships, as [`Store::room_of`] and [`Store::rooms_of`] give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Where the room is stored.
    pub key: RoomKey,
    /// The room's display name.
    pub name: RoomName,
}

/// A public room and its members, as listings need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomListing {
    /// The room.
    pub room: RoomRecord,
    /// Its members.
    pub members: Vec<Username>,
}

/// Which public rooms a listing page holds: a window of the rooms in canonical-name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomQuery {
    /// Only rooms whose canonical name sorts strictly after this one's; from the first
    /// room when `None`.
    pub after: Option<RoomName>,
    /// Only rooms whose name contains this text, ignoring case.
    pub filter: Option<RoomFilter>,
    /// The most rooms to return. The caller bounds it (the protocol's
    /// `MAX_ROOM_LIST_PAGE`); a store reads about this many rooms' entries, never all.
    pub limit: usize,
}

/// One page of public rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPage {
    /// At most [`RoomQuery::limit`] rooms, by canonical name, with their members.
    pub rooms: Vec<RoomListing>,
    /// Whether more matching rooms follow the last one here.
    pub more: bool,
}

/// The longest room-name filter, in characters: a room name's own maximum length (a longer
/// text can match no room).
pub const MAX_ROOM_FILTER_CHARS: usize = 48;

/// A case-insensitive substring filter on room names: the text in lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomFilter(String);

/// A filter text longer than [`MAX_ROOM_FILTER_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the room filter is longer than {MAX_ROOM_FILTER_CHARS} characters")]
pub struct FilterTooLong;

impl RoomFilter {
    /// The filter for `text`; `None` when `text` is empty (it matches every room).
    ///
    /// # Errors
    /// [`FilterTooLong`] past [`MAX_ROOM_FILTER_CHARS`] characters.
    pub fn new(text: &str) -> Result<Option<Self>, FilterTooLong> {
        if text.chars().count() > MAX_ROOM_FILTER_CHARS {
            return Err(FilterTooLong);
        }
        Ok((!text.is_empty()).then(|| Self(text.to_lowercase())))
    }

    /// The text in lowercase, as canonical names are written.
    pub fn as_lowercase(&self) -> &str {
        &self.0
    }

    /// Whether the filter can match any room at all: room names are ASCII letters, digits
    /// and `_-.`, so a text with any other character matches none (a store can answer
    /// such a query without reading anything).
    pub fn can_match(&self) -> bool {
        self.0
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    }

    /// Whether the room with this canonical (lowercase) name matches.
    pub fn matches(&self, canonical: &str) -> bool {
        canonical.contains(self.0.as_str())
    }
}

/// A message to store: metadata plus one envelope per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room.
    pub room: RoomKey,
    /// The sender-chosen id; unique within the room.
    pub message_id: MessageId,
    /// The authenticated sender.
    pub sender: Username,
    /// Server time of acceptance, milliseconds since the Unix epoch.
    pub server_time_ms: u64,
    /// One copy per recipient.
    pub envelopes: Vec<Envelope>,
}

/// A page of one recipient's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySlice {
    /// Messages in ascending `seq` order, each with the recipient's copy only.
    pub messages: Vec<DeliveredMessage>,
    /// Whether the recipient has older messages before the first one here.
    pub has_more: bool,
    /// With `has_more`: the `before_seq` a further read continues from (the lowest seq the
    /// store looked at). A store that bounds its scan may stop before the page is full,
    /// even with no messages; this is then the way on.
    pub next_before: Option<u64>,
}

/// What the store holds, for operators (`server admin stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Accounts (deleted ones, whose names stay reserved, are not counted).
    pub users: u64,
    /// Rooms of every kind: public, hidden and direct conversations.
    pub rooms: u64,
    /// Stored messages, in all rooms.
    pub messages: u64,
    /// Bytes the store occupies, when it can tell: the embedded store's file size, or
    /// MongoDB's `dbStats` storage and index size.
    pub bytes: Option<u64>,
}

/// Which messages [`Store::prune_messages`] deletes, in every room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete the messages accepted before this server time (milliseconds since the Unix
    /// epoch); `None` keeps messages of any age.
    pub older_than_ms: Option<u64>,
    /// Keep at most this many of each room's newest messages; `None` keeps any number.
    pub keep_newest: Option<u64>,
}

impl Retention {
    /// Whether the policy deletes nothing (both limits off).
    pub fn keeps_everything(&self) -> bool {
        self.older_than_ms.is_none() && self.keep_newest.is_none()
    }
}

/// A message the store has taken and placed in its room's order, on its way to durable
/// storage. Awaiting it gives the message's sequence number once it is durable, or the
/// reason it was refused.
pub type PendingAppend = Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>>;

/// Backend-agnostic storage errors. Adapters map their own errors into these; handlers
/// match on them and never see a driver's error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user, room or membership the operation needs does not exist.
    #[error("not found")]
    NotFound,
    /// A conditional write found the record changed: a key rotation whose certificate
    /// retires a key that is no longer the account's current key (another rotation got
    /// there first).
    #[error("the record changed since it was read")]
    Conflict,
    /// A unique key (username, room name, message id in a room) is already taken.
    #[error("already exists")]
    AlreadyExists,
    /// The owner has created as many rooms as the quota given to
    /// [`Store::create_room`] allows.
    #[error("room quota used up")]
    QuotaExceeded,
    /// The room already has `MAX_ROOM_MEMBERS` members.
    #[error("room is full")]
    RoomFull,
    /// The user is a member of another room with the same canonical name (a public and a
    /// hidden room may share a name, but one user belongs to at most one of them).
    #[error("the user is a member of another room with this name")]
    NameInUse,
    /// The user is banned from the room.
    #[error("the user is banned from the room")]
    Banned,
    /// The backend cannot be reached now (connection refused, timeout, failover).
    #[error("{store} store unavailable")]
    Unavailable {
        /// Which adapter.
        store: &'static str,
        /// The underlying error, for logs only.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other backend failure (corruption, encoding, I/O).
    #[error("{store} store failed")]
    Backend {
        /// Which adapter.
        store: &'static str,
        /// The underlying error, for logs only.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether the cause is a full disk (ENOSPC, or MongoDB's `OutOfDiskSpace`) anywhere in
    /// the source chain: `/health` reports the class, never the detail.
    pub fn is_storage_full(&self) -> bool {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = next {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28) {
                    return true;
                }
            }
            if error.downcast_ref::<StorageFull>().is_some() {
                return true;
            }
            next = error.source();
        }
        false
    }
}

/// A backend's report that its storage is full, for adapters whose driver does not say so
/// with an I/O error.
#[derive(Debug, thiserror::Error)]
#[error("storage full: {0}")]
pub struct StorageFull(pub String);

/// What the server needs from persistence.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The adapter's name, for logs and `/health`.
    fn backend(&self) -> &'static str;

    /// This deployment's [`ServerId`]: generated at random when the store was first
    /// created (the first open of a data directory, the first connect to a database) and
    /// never changed after. Every server instance sharing the store announces the same id,
    /// and two stores never share one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`] if it cannot be read.
    async fn server_id(&self) -> Result<ServerId, StoreError>;

    /// This store's [`RoomSecret`]: generated at random when the store was first created
    /// (as the [`server_id`](Self::server_id) is) and never changed after, since every
    /// hidden room's key depends on it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`] if it cannot be read.
    async fn room_secret(&self) -> Result<RoomSecret, StoreError>;

    /// Checks that the backend is reachable and, as far as the store knows, can write: the
    /// embedded store fails it from a failed write until a probe write succeeds again.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it is not (with the cause as its source;
    /// [`StoreError::is_storage_full`] tells a full disk apart).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates an account.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the username is taken, ignoring case; the existing
    /// account is left untouched.
    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError>;

    /// Looks an account up by username, ignoring case.
    async fn find_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError>;

    /// Rotates an account's key, atomically: if the account's current key is still
    /// `certificate.old_public_key`, it becomes `certificate.new_public_key` and the
    /// certificate is appended to the account's key history, which keeps the newest
    /// [`MAX_KEY_HISTORY`](shared::protocol::MAX_KEY_HISTORY) certificates. Of concurrent
    /// rotations from the same key, exactly one succeeds. The store does not check the
    /// certificate's signatures; the caller has.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no such account; [`StoreError::Conflict`] if
    /// its current key is not `certificate.old_public_key` (nothing is written then).
    async fn rotate_key(
        &self,
        username: &Username,
        certificate: &RotationCertificate,
    ) -> Result<(), StoreError>;

    /// The account's stored rotation certificates, oldest first (at most
    /// [`MAX_KEY_HISTORY`](shared::protocol::MAX_KEY_HISTORY), the newest ones).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no such account.
    async fn key_history(
        &self,
        username: &Username,
    ) -> Result<Vec<RotationCertificate>, StoreError>;

    /// Creates a room under `key` and makes its owner the first member, atomically, if the
    /// owner has created fewer than `quota` rooms so far. The count and the creation are one
    /// atomic step: of any number of concurrent creations by one owner, at most `quota`
    /// minus their earlier rooms succeed.
    ///
    /// # Errors
    /// Checked in this order, and nothing is written when one is returned:
    /// [`StoreError::QuotaExceeded`] if the owner has created `quota` rooms already;
    /// [`StoreError::NameInUse`] if the owner is a member of another room with the same
    /// canonical name; [`StoreError::AlreadyExists`] if `key` is taken.
    async fn create_room(
        &self,
        key: &RoomKey,
        room: RoomRecord,
        quota: usize,
    ) -> Result<(), StoreError>;

    /// How many rooms `owner` created (every room they ever created, whether they are still
    /// a member or its owner or not, and whether it was deleted or moved since): what
    /// [`create_room`](Self::create_room) compares with its quota.
    async fn owned_room_count(&self, owner: &Username) -> Result<usize, StoreError>;

    /// Looks a room up by its key.
    async fn find_room(&self, key: &RoomKey) -> Result<Option<RoomRecord>, StoreError>;

    /// The room named `name` (any case) that `user` is a member of, if any: one lookup in
    /// the user's own memberships, whose cost does not depend on what other rooms exist.
    async fn room_of(
        &self,
        user: &Username,
        name: &RoomName,
    ) -> Result<Option<Membership>, StoreError>;

    /// One page of the rooms that are not hidden, with their members, ordered by canonical
    /// name (see [`RoomQuery`]). A store walks its public keys in order from
    /// [`RoomQuery::after`] and stops after `limit + 1` matches, so the cost follows the
    /// page, not the number of rooms (apart from public rooms skipped as not matching, and
    /// legacy hidden rooms); it never reads a room in a hidden namespace.
    async fn list_public_rooms(&self, query: &RoomQuery) -> Result<RoomPage, StoreError>;

    /// Makes `user` a member of the room under `key`. Returns `true` if they were not a
    /// member before.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist; [`StoreError::Banned`] if the
    /// user is on its ban list (checked in the same atomic write); [`StoreError::RoomFull`]
    /// if it has `MAX_ROOM_MEMBERS` members already; [`StoreError::NameInUse`] if the user
    /// is a member of another room with the same canonical name.
    async fn add_member(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError>;

    /// Ends `user`'s membership of the room under `key`, with their admin role and read
    /// marker. Returns `true` if they were a member.
    async fn remove_member(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError>;

    /// If `leaver` owns the room under `key`, hands it to the first admin by canonical
    /// name other than them, else to the first other member by canonical name, and
    /// returns the new owner; `None` when they are not the owner or nobody else is a
    /// member. One atomic write; the caller removes the leaver afterwards, so an
    /// interruption leaves them a plain member of a room that has an owner.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn hand_over(
        &self,
        room: &RoomKey,
        leaver: &Username,
    ) -> Result<Option<Username>, StoreError>;

    /// Applies one change to the room's record atomically and returns the record after it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist, or the change names a user who
    /// is not a member ([`RoomUpdate::Admin`], [`RoomUpdate::Owner`]).
    async fn update_room(
        &self,
        room: &RoomKey,
        update: RoomUpdate,
    ) -> Result<RoomRecord, StoreError>;

    /// Moves the room under `from` to the key `to`, setting whether it is `hidden` and its
    /// `password_hash`, atomically: members, messages and their ids, roles, bans, read
    /// markers and the owner's room count go with it, and `from` is free afterwards (see
    /// the module docs on how each adapter makes this atomic).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if no room is under `from`; [`StoreError::AlreadyExists`]
    /// if `to` is taken (nothing changes then).
    async fn move_room(
        &self,
        from: &RoomKey,
        to: &RoomKey,
        hidden: bool,
        password_hash: Option<String>,
    ) -> Result<(), StoreError>;

    /// Deletes the room under `key` with its memberships, roles, bans, read markers and
    /// every message, and returns who were its members. Its creator's room count is not
    /// given back.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn delete_room(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError>;

    /// Puts `user` on the room's ban list and ends their membership (with their role and
    /// read marker) in one atomic write. Returns whether they were a member. Banning a
    /// banned user changes nothing.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist; [`StoreError::QuotaExceeded`]
    /// if the ban list holds `max_bans` users already.
    async fn ban(
        &self,
        room: &RoomKey,
        user: &Username,
        max_bans: usize,
    ) -> Result<bool, StoreError>;

    /// Takes `user` off the room's ban list. Returns whether they were on it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn unban(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError>;

    /// The room's ban list, by canonical name, sorted.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn bans(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError>;

    /// Makes the direct conversation `room` (a record of kind
    /// [`RoomKindRecord::Direct`], stored under `key`) exist with both participants as
    /// members: creates it with both at once, or adds whichever participant is not a
    /// member. Returns the participants it added (both when it created the room). Does not
    /// count against anyone's room quota.
    ///
    /// # Errors
    /// [`StoreError::NameInUse`] if a participant is a member of another room of the
    /// conversation's name; [`StoreError::Backend`] if `room` is not a direct
    /// conversation's record.
    async fn open_direct(
        &self,
        key: &RoomKey,
        room: RoomRecord,
    ) -> Result<Vec<Username>, StoreError>;

    /// Blocks (`blocked`) or unblocks `target` for `user`; returns whether the list
    /// changed.
    ///
    /// # Errors
    /// [`StoreError::QuotaExceeded`] when blocking a new user while the list holds
    /// `max` users.
    async fn set_blocked(
        &self,
        user: &Username,
        target: &Username,
        blocked: bool,
        max: usize,
    ) -> Result<bool, StoreError>;

    /// The users `user` blocked, by canonical name, sorted.
    async fn blocked_users(&self, user: &Username) -> Result<Vec<Username>, StoreError>;

    /// Whether `user` blocked `target`.
    async fn has_blocked(&self, user: &Username, target: &Username) -> Result<bool, StoreError>;

    /// Moves `user`'s read marker in the room forward to `seq` (clamped to the room's
    /// newest sequence number); never back. Returns the marker when it moved, `None` when
    /// it did not (also when `user` is not a member).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn mark_read(
        &self,
        room: &RoomKey,
        user: &Username,
        seq: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// `user`'s read marker in the room; 0 when none.
    async fn read_marker(&self, room: &RoomKey, user: &Username) -> Result<u64, StoreError>;

    /// Deletes the account of `user`, keeping its name reserved: afterwards
    /// [`find_user`](Self::find_user) finds nothing and [`create_user`](Self::create_user)
    /// of the name (any case) is [`StoreError::AlreadyExists`]. Its key and key history,
    /// its block list, any membership left (with roles and read markers) and every stored
    /// copy addressed to it are deleted; copies it sent to others stay (they are the
    /// recipients' history). Running it again finishes an interrupted deletion.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no such account (nor a deleted one).
    async fn delete_account(&self, user: &Username) -> Result<(), StoreError>;

    /// The room's members with their current keys, ordered by canonical username.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn members(&self, room: &RoomKey) -> Result<Vec<UserRecord>, StoreError>;

    /// The usernames of the room's members (display case), ordered by canonical username:
    /// the cheap form of [`members`](Self::members) for membership checks.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn member_names(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError>;

    /// The rooms `user` is a member of, ordered by canonical name.
    async fn rooms_of(&self, user: &Username) -> Result<Vec<Membership>, StoreError>;

    /// Up to `limit` accounts whose canonical name sorts after `after` (from the first
    /// when `None`), by canonical name; deleted accounts are not listed. For operators: a
    /// page costs about `limit` reads.
    async fn list_users(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError>;

    /// Up to `limit` rooms of every kind (public, hidden, direct conversations) whose key
    /// sorts after `after` (from the first when `None`), by key, with their members. For
    /// operators, who must see every room; a page costs about `limit` rooms' reads.
    async fn list_all_rooms(
        &self,
        after: Option<&RoomKey>,
        limit: usize,
    ) -> Result<Vec<(RoomKey, RoomListing)>, StoreError>;

    /// How many messages the room under `key` holds.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn message_count(&self, room: &RoomKey) -> Result<u64, StoreError>;

    /// Counts of what the store holds, and its size where it can tell ([`StoreStats`]).
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// Takes a message for storing with all its copies, and returns once its place in the
    /// room's order is fixed: messages queued one after another (each call awaited before
    /// the next) get increasing sequence numbers in that order, even while earlier ones
    /// are still pending. This lets one connection have several sends in flight, and a
    /// store that batches writes commit them together, without reordering them.
    ///
    /// # Errors
    /// The returned [`PendingAppend`] resolves as [`append_message`](Self::append_message)
    /// does; a store may also report those errors here, before the message is queued.
    async fn queue_message(&self, message: &NewMessage) -> Result<PendingAppend, StoreError>;

    /// Durably stores a message with all its copies and returns its sequence number:
    /// greater than every earlier message's in the room, and never one an earlier message
    /// held (also after that message is deleted). Numbers are consecutive, except that a
    /// store may leave a gap where a message took a number and was then not stored (the
    /// MongoDB adapter, after a lost race it cannot undo or an unknown write outcome);
    /// readers page past gaps. When this returns `Ok`, the message survives a crash.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the room already has a message with this id;
    /// [`StoreError::NotFound`] if the room does not exist.
    async fn append_message(&self, message: NewMessage) -> Result<u64, StoreError> {
        self.queue_message(&message).await?.await
    }

    /// Deletes, in every room, the messages `policy` does not keep: those accepted before
    /// [`Retention::older_than_ms`], and all but the [`Retention::keep_newest`] newest.
    /// Deleted messages' sequence numbers are never given to later messages, also when a
    /// room's newest messages go. Returns how many messages were deleted.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`]; messages deleted before the
    /// failure stay deleted.
    async fn prune_messages(&self, policy: &Retention) -> Result<u64, StoreError>;

    /// Up to `limit` of the newest messages in `room` with `seq < before_seq` (all, when
    /// `None`) that have a copy for `recipient`, in ascending order. A store may bound the
    /// work one call does and return fewer (see [`HistorySlice::next_before`]).
    async fn history_for(
        &self,
        room: &RoomKey,
        recipient: &Username,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<HistorySlice, StoreError>;
}
