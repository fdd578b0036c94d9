//! The MongoDB adapter: [`MongoStore`] implements [`Store`] with the official `mongodb`
//! driver (3.x, bson 2). Selected when `--mongodb-uri` / `MONGODB_URI` is set.
//!
//! # Collections
//! Names are keyed by their [`canonical`](Username::canonical) (lowercase) form in `_id`, so
//! the always-present unique `_id` index is the case-insensitive uniqueness rule; the
//! display case is kept in a separate field.
//!
//! ```text
//! users     { _id: "alice", username: "Alice", public_key: BinData, created_at: ISODate,
//!             key_history?: [ BinData, … ] }
//! rooms     { _id: "general", canonical: "general", name: "General", owner: "Alice",
//!             password_hash?: "$argon2id$…", hidden: false, created_at: ISODate,
//!             members: [ { user: "alice", username: "Alice", joined_at: ISODate }, … ] }
//! messages  { _id: ObjectId, room: "general", room_name: "General", seq: NumberLong(42),
//!             message_id: BinData(16 bytes), sender: "Alice", server_time: ISODate,
//!             copies: [ { recipient: "bob", recipient_name: "Bob", wrapped_key: BinData,
//!                         nonce: BinData(12 bytes), ciphertext: BinData }, … ] }
//! meta      { _id: "server_id", server_id: BinData(16 bytes) }
//!           { _id: "room_secret", room_secret: BinData(32 bytes) }
//! ```
//!
//! A room's `_id` is its [`RoomKey`]: the canonical name for a public room, a key in a
//! hidden namespace otherwise (see [`super`]), so a public and a hidden room may share a
//! name. `canonical` is the lowercase name in every room, for the per-member lookup
//! ([`Store::room_of`]). Rooms stored before hidden namespaces have no `canonical`;
//! [`MongoStore::connect`] sets it from `_id` (then their canonical name) before it builds
//! the index that needs it, and drops the old `name_ci_unique` index, which made names
//! unique across namespaces.
//!
//! `key_history` holds the user's rotation certificates, oldest first, each the protocol
//! encoding ([`codec`]) of a [`RotationCertificate`]: signed artefacts the server hands
//! back as they came and never queries into. Account reads that do not need them
//! (`find_user`, `members`) project them out.
//!
//! A message is one document holding every recipient's copy. A history page filters on
//! `copies.recipient` and projects `copies` through `$elemMatch`, so only the asking
//! recipient's copy ever leaves the database (handlers send one copy per member; were a
//! recipient named twice, the first copy would be returned).
//!
//! # Indexes (created idempotently by [`MongoStore::connect`])
//! | collection | name                    | keys                                     | why |
//! |------------|-------------------------|------------------------------------------|-----|
//! | `users`    | `_id_`                  | `_id` (canonical username)               | unique username, ignoring case |
//! | `users`    | `username_ci_unique`    | `username`, collation `en` strength 2    | the same rule, visible on the display field |
//! | `rooms`    | `public_by_name`        | `hidden, _id`                            | `list_public_rooms`: a page is an `_id` range after the last name, in order; never reads a hidden room |
//! | `rooms`    | `member_rooms`          | `members.user, canonical`                | `room_of` (one lookup per member and name) and `rooms_of` (multikey) |
//! | `rooms`    | `owner_ci`              | `owner`, collation `en` strength 2       | `owned_room_count` (the rooms-per-user quota) |
//! | `messages` | `room_seq_unique`       | `room, seq` (unique)                     | history by room and time; the next sequence number |
//! | `messages` | `room_message_id_unique`| `room, message_id` (unique)              | one message per sender-chosen id per room |
//! | `messages` | `room_recipient_seq`    | `room, copies.recipient, seq: -1`        | recipient-scoped history pages |
//!
//! # Atomicity without transactions
//! Multi-document transactions need a replica set and cost extra round trips, so every
//! operation the [`Store`] contract calls atomic is a single-document write:
//!
//! - **Members live inside the room document** (bounded: at most
//!   [`MAX_ROOM_MEMBERS`] entries of ~60 bytes). `create_room` inserts the room with its
//!   owner already in `members`, so a room never exists without its owner. `add_member` is
//!   one conditional `$push` whose filter says "not yet a member" and "fewer than
//!   `MAX_ROOM_MEMBERS` members" (`members.255` does not exist), so two concurrent joins can
//!   never overfill a room.
//! - **Sequence numbers come from the unique `room_seq_unique` index**, not a counter: the
//!   adapter reads the room's last `seq` and inserts the message with `seq + 1`; if another
//!   writer took that number first, the insert fails with a duplicate key and the adapter
//!   reads again. Unlike a `$inc` counter on the room (a second majority write per message),
//!   a failed or interrupted insert can never leave a gap, so a room's sequence is always
//!   1, 2, 3, … as the contract promises. The message and all its copies are one document
//!   (at most 256 copies of a frame-limited payload, well below the 16 MiB document limit).
//! - **A key rotation is one conditional update** of the user document: its filter names
//!   the key the certificate retires, and the update sets the new key and `$push`es the
//!   certificate with `$slice: -MAX_KEY_HISTORY`. Of two concurrent rotations from one key
//!   only one matches; the other finds the account with another key and reports
//!   [`StoreError::Conflict`]. (At most [`MAX_KEY_HISTORY`] certificates of at most one
//!   frame each: the document stays below the 16 MiB limit.)
//! - **The server id and the room secret are inserted if absent**: [`MongoStore::connect`]
//!   inserts a random value under each fixed `_id` (`"server_id"`, `"room_secret"`); the
//!   unique `_id` index lets exactly one insert win, so every instance that connects to the
//!   database, even at the same moment, then reads the same values.
//! - **One room per name per member is checked, not enforced by an index**: `create_room`
//!   and `add_member` look for another room of the same `canonical` name holding the user
//!   before they write. Two joins *by the same user* to two rooms of one name at the same
//!   moment can both pass the check (a document-level write cannot see the other room);
//!   the user then holds both, and [`Store::room_of`] answers with one of them. Only that
//!   user is affected, and leaving either room undoes it. (A unique multikey index on
//!   `canonical, members.user` would enforce it, but also collides rooms whose member
//!   lists are empty.)
//!
//! # Durability
//! Every collection handle writes with `{ w: "majority", j: true, wtimeout: 10 s }`,
//! overriding the URI, so a write — above all a message, which is acknowledged to its
//! sender only after [`Store::append_message`] returns — has been journaled on a majority
//! of the replica set and survives a primary failover. Reads go to the primary regardless
//! of the URI's read preference, so a write is visible to the next read (and the last `seq`
//! is never read from a lagging secondary). Production needs a replica set (Atlas, or the
//! single-node set in `docker-compose.yml`); a standalone `mongod` works but has no
//! failover to survive.
//!
//! # Errors
//! Duplicate-key errors (code 11000) become [`StoreError::AlreadyExists`]; server
//! selection, network, failover, shutdown, timeouts, not-primary and write-concern failures,
//! as command errors or as write errors, become [`StoreError::Unavailable`] (the client
//! gets `StorageUnavailable`), and so does a full disk (`OutOfDiskSpace`, 14031, reported
//! as [`StorageFull`](super::StorageFull)); anything else is [`StoreError::Backend`]. The driver's error
//! is kept only as the `source`, for logs: [`StoreError`]'s own message never contains it,
//! so driver text cannot reach a client.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use mongodb::error::{
    Error as DriverError, ErrorKind, WriteFailure, RETRYABLE_ERROR, RETRYABLE_WRITE_ERROR,
};
use mongodb::options::{
    Acknowledgment, ClientOptions, Collation, CollationStrength, CollectionOptions, IndexOptions,
    ReadPreference, SelectionCriteria, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use shared::crypto::rotation::RotationCertificate;
use shared::protocol::{codec, DeliveredMessage, Envelope, MAX_KEY_HISTORY, MAX_ROOM_MEMBERS};
use shared::{MessageId, RoomName, ServerId, Username};

use super::{
    HistorySlice, Membership, NewMessage, PendingAppend, RoomKey, RoomListing, RoomPage, RoomQuery,
    RoomRecord, RoomSecret, Store, StoreError, UserRecord,
};

/// The adapter's name in errors, logs and `/health`.
pub const STORE: &str = "mongodb";

/// How long start-up waits for a usable server when the URI does not say
/// (`serverSelectionTimeoutMS`). Short, so a wrong URI fails start-up instead of hanging.
pub const DEFAULT_SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one TCP/TLS connection attempt may take when the URI does not say
/// (`connectTimeoutMS`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write waits for a majority of the replica set before it is reported as
/// [`StoreError::Unavailable`] (the write may still complete; a retry with the same message
/// id then reports [`StoreError::AlreadyExists`]).
const WRITE_CONCERN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often `insert_message` re-reads the last sequence number after losing a race for
/// the next one. Each lost race means another message was stored, so this only bounds one
/// writer's wait in a very hot room.
const MAX_SEQ_ATTEMPTS: usize = 64;

/// How often `add_member` retries when the room changed between its write and its check.
const MAX_MEMBER_ATTEMPTS: usize = 8;

const USERS: &str = "users";
const ROOMS: &str = "rooms";
const MESSAGES: &str = "messages";
const META: &str = "meta";

/// The `_id` of the `meta` document that holds the server id.
const SERVER_ID_DOC: &str = "server_id";

/// The `_id` of the `meta` document that holds the room secret.
const ROOM_SECRET_DOC: &str = "room_secret";

/// Indexes earlier versions created that this one replaces: `name_ci_unique` made room
/// names unique across namespaces; `members_user` is covered by `member_rooms`.
const RETIRED_ROOM_INDEXES: [&str; 2] = ["name_ci_unique", "members_user"];

/// The server's code for dropping an index that does not exist.
const INDEX_NOT_FOUND: i32 = 27;

/// Server error codes for a duplicate key (11001 is the pre-2.6 spelling).
const DUPLICATE_KEY_CODES: [i32; 2] = [11000, 11001];

/// Server error codes that mean "try again later": unreachable hosts, network timeouts, a
/// primary stepping down or shutting down, `maxTimeMS` and write-concern timeouts.
const UNAVAILABLE_CODES: [i32; 15] = [
    6, 7, 50, 64, 89, 91, 189, 202, 262, 9001, 10107, 11600, 11602, 13435, 13436,
];

/// Server error code for a server whose disk is full (`OutOfDiskSpace`).
const OUT_OF_DISK_SPACE: i32 = 14031;

/// MongoDB storage; see the module docs for the document shapes and guarantees.
///
/// Cloning is cheap: the driver's [`Client`] is a handle to one shared connection pool.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    users: Collection<Document>,
    rooms: Collection<Document>,
    messages: Collection<Document>,
    meta: Collection<Document>,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the client options: they hold the credentials.
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

/// Why [`MongoStore::connect`] failed, with the step and the hosts (never credentials).
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("invalid MongoDB connection string")]
    Uri(#[source] DriverError),
    #[error("invalid MongoDB database name {name:?}: {reason}")]
    DatabaseName { name: String, reason: &'static str },
    #[error("could not reach a MongoDB primary at {hosts} within {timeout:?} (is MONGODB_URI right and the server up?)")]
    Unreachable {
        hosts: String,
        timeout: Duration,
        #[source]
        source: DriverError,
    },
    #[error("MongoDB at {hosts} refused {step}")]
    Refused {
        hosts: String,
        step: &'static str,
        #[source]
        source: DriverError,
    },
}

/// A stored document that does not have the shape this adapter writes.
#[derive(Debug, thiserror::Error)]
#[error("malformed {collection} document: field `{field}` {problem}")]
struct MalformedDocument {
    collection: &'static str,
    field: &'static str,
    problem: String,
}

/// A value the adapter cannot represent in BSON.
#[derive(Debug, thiserror::Error)]
#[error("{0} does not fit in a BSON 64-bit integer")]
struct OutOfRange(&'static str);

/// `insert_message` lost the race for the next sequence number too often.
#[derive(Debug, thiserror::Error)]
#[error("room {room}: gave up after {attempts} attempts to take the next sequence number")]
struct SequenceContention {
    room: String,
    attempts: usize,
}

/// `add_member` kept seeing the room change under it.
#[derive(Debug, thiserror::Error)]
#[error("room {room}: membership kept changing during add_member")]
struct MembershipContention {
    room: String,
}

impl MongoStore {
    /// Connects to `uri`, checks that a primary answers, and creates the indexes the queries
    /// need (idempotently: an index that already exists with the same definition is kept).
    ///
    /// Unless the URI sets them, server selection and connection attempts time out after
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`] and [`DEFAULT_CONNECT_TIMEOUT`], so a wrong URI
    /// or a stopped server fails start-up within seconds.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if no primary can be reached in time;
    /// [`StoreError::Backend`] if the URI or database name is invalid, authentication fails,
    /// or an index cannot be created (for example, an index of the same name with a
    /// different definition exists). The source names the hosts and the failed step.
    pub async fn connect(uri: &str, database: &str) -> Result<Self, StoreError> {
        check_database_name(database).map_err(backend)?;
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| map_err_with(e, ConnectError::Uri))?;
        apply_defaults(&mut options);
        let hosts = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let timeout = options
            .server_selection_timeout
            .unwrap_or(DEFAULT_SERVER_SELECTION_TIMEOUT);
        let client =
            Client::with_options(options).map_err(|e| map_err_with(e, ConnectError::Uri))?;
        let store = Self::with_client(&client, database);

        let step_error = |step: &'static str| {
            let hosts = hosts.clone();
            move |source: DriverError| {
                if is_unavailable(&source) {
                    unavailable(ConnectError::Unreachable {
                        hosts,
                        timeout,
                        source,
                    })
                } else {
                    backend(ConnectError::Refused {
                        hosts,
                        step,
                        source,
                    })
                }
            }
        };
        store.ping_primary().await.map_err(step_error("ping"))?;
        store
            .migrate_rooms()
            .await
            .map_err(step_error("room migration"))?;
        store
            .create_indexes()
            .await
            .map_err(step_error("index creation"))?;
        store
            .ensure_server_id()
            .await
            .map_err(step_error("server id creation"))?;
        store
            .ensure_room_secret()
            .await
            .map_err(step_error("room secret creation"))?;
        tracing::info!(hosts, database, "connected to MongoDB");
        Ok(store)
    }

    /// Deletes the whole database: every account, room and message. For test harnesses
    /// that create a database per run; a server never calls it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Backend`] if the drop fails.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        self.db.drop().await.map_err(map_err)
    }

    /// Builds the collection handles, with the write concern and read preference the module
    /// docs promise. Does no I/O.
    fn with_client(client: &Client, database: &str) -> Self {
        let db = client.database(database);
        let options = || {
            CollectionOptions::builder()
                .write_concern(durable_write_concern())
                .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
                .build()
        };
        Self {
            users: db.collection_with_options(USERS, options()),
            rooms: db.collection_with_options(ROOMS, options()),
            messages: db.collection_with_options(MESSAGES, options()),
            meta: db.collection_with_options(META, options()),
            db,
        }
    }

    async fn ping_primary(&self) -> Result<(), DriverError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .await?;
        Ok(())
    }

    /// Gives the database a server id unless it has one: a random id inserted under the
    /// fixed `_id`, so of concurrent first connections exactly one insert wins (the others
    /// get a duplicate key, which is the expected outcome here).
    async fn ensure_server_id(&self) -> Result<(), DriverError> {
        let inserted = self
            .meta
            .insert_one(doc! {
                "_id": SERVER_ID_DOC,
                "server_id": binary(ServerId::random().0.to_vec()),
            })
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives the database a room secret unless it has one, as [`ensure_server_id`] does.
    ///
    /// [`ensure_server_id`]: Self::ensure_server_id
    async fn ensure_room_secret(&self) -> Result<(), DriverError> {
        let inserted = self
            .meta
            .insert_one(doc! {
                "_id": ROOM_SECRET_DOC,
                "room_secret": binary(RoomSecret::random().to_bytes().to_vec()),
            })
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Brings rooms stored by earlier versions to this version's shape: each gets
    /// `canonical` (their `_id` was their canonical name), and the indexes this version
    /// replaces are dropped. Idempotent: once done, it reads the rooms' `_id`s and finds
    /// nothing to change.
    async fn migrate_rooms(&self) -> Result<(), DriverError> {
        let old: Vec<Document> = self
            .rooms
            .find(doc! { "canonical": { "$exists": false } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        for d in &old {
            if let Ok(id) = d.get_str("_id") {
                self.rooms
                    .update_one(doc! { "_id": id }, doc! { "$set": { "canonical": id } })
                    .await?;
            }
        }
        if !old.is_empty() {
            tracing::info!(
                rooms = old.len(),
                "MongoDB rooms migrated to name namespaces"
            );
        }
        for name in RETIRED_ROOM_INDEXES {
            match self.rooms.drop_index(name).await {
                Ok(()) => tracing::info!(index = name, "dropped a retired index"),
                Err(e) if is_index_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn create_indexes(&self) -> Result<(), DriverError> {
        self.users
            .create_indexes([index(
                doc! { "username": 1 },
                "username_ci_unique",
                true,
                Some(case_insensitive()),
            )])
            .await?;
        self.rooms
            .create_indexes([
                index(
                    doc! { "hidden": 1, "_id": 1 },
                    "public_by_name",
                    false,
                    None,
                ),
                index(
                    doc! { "members.user": 1, "canonical": 1 },
                    "member_rooms",
                    false,
                    None,
                ),
                index(
                    doc! { "owner": 1 },
                    "owner_ci",
                    false,
                    Some(case_insensitive()),
                ),
            ])
            .await?;
        self.messages
            .create_indexes([
                index(doc! { "room": 1, "seq": 1 }, "room_seq_unique", true, None),
                index(
                    doc! { "room": 1, "message_id": 1 },
                    "room_message_id_unique",
                    true,
                    None,
                ),
                index(
                    doc! { "room": 1, "copies.recipient": 1, "seq": -1 },
                    "room_recipient_seq",
                    false,
                    None,
                ),
            ])
            .await?;
        Ok(())
    }

    /// The room's members as (canonical, display) names, sorted by canonical name.
    async fn member_list(&self, room: &RoomKey) -> Result<Vec<(String, Username)>, StoreError> {
        let Some(d) = self
            .rooms
            .find_one(doc! { "_id": room.as_str() })
            .projection(doc! { "members": 1 })
            .await
            .map_err(map_err)?
        else {
            return Err(StoreError::NotFound);
        };
        members_from_doc(&d)
    }

    /// Refuses with [`StoreError::NameInUse`] if `user` is a member of a room named
    /// `canonical` other than the one under `except` (see the module docs on why this is a
    /// check, not an index).
    async fn check_name_free(
        &self,
        user: &str,
        canonical: &str,
        except: Option<&RoomKey>,
    ) -> Result<(), StoreError> {
        let mut filter = doc! { "members.user": user, "canonical": canonical };
        if let Some(except) = except {
            filter.insert("_id", doc! { "$ne": except.as_str() });
        }
        let found = self
            .rooms
            .find_one(filter)
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        match found {
            Some(_) => Err(StoreError::NameInUse),
            None => Ok(()),
        }
    }

    /// The display form of `user`: the registered account's, or `user` itself when there
    /// is no account (the store does not require one, like the embedded store).
    async fn display_username(&self, user: &Username) -> Result<Username, StoreError> {
        let found = self
            .users
            .find_one(doc! { "_id": user.canonical() })
            .projection(doc! { "username": 1 })
            .await
            .map_err(map_err)?;
        match found {
            Some(d) => Fields::new(USERS, &d).username("username"),
            None => Ok(user.clone()),
        }
    }

    /// Inserts a message under the room's next sequence number, retrying when a concurrent
    /// insert took that number first.
    async fn insert_message(&self, message: &NewMessage) -> Result<u64, StoreError> {
        let room_key = message.room.as_str().to_owned();
        let Some(room) = self
            .rooms
            .find_one(doc! { "_id": &room_key })
            .projection(doc! { "name": 1 })
            .await
            .map_err(map_err)?
        else {
            return Err(StoreError::NotFound);
        };
        let room_name = Fields::new(ROOMS, &room).room_name("name")?;
        let message_id = binary(message.message_id.0.to_vec());
        let mut d = message_to_doc(message, &room_name)?;

        for _ in 0..MAX_SEQ_ATTEMPTS {
            let last = self
                .messages
                .find_one(doc! { "room": &room_key })
                .sort(doc! { "seq": -1 })
                .projection(doc! { "_id": 0, "seq": 1 })
                .await
                .map_err(map_err)?
                .map(|d| Fields::new(MESSAGES, &d).seq("seq"))
                .transpose()?
                .unwrap_or(0);
            let seq = last
                .checked_add(1)
                .ok_or_else(|| backend(OutOfRange("message sequence number")))?;
            d.insert("seq", to_i64(seq, "message sequence number")?);
            d.remove("_id"); // the driver adds an ObjectId on each insert attempt
            match self.messages.insert_one(d.clone()).await {
                Ok(_) => return Ok(seq),
                Err(e) if is_duplicate_key(&e) => {
                    // Either this message id is taken, or another message took `seq`.
                    let taken = self
                        .messages
                        .find_one(doc! { "room": &room_key, "message_id": message_id.clone() })
                        .projection(doc! { "_id": 1 })
                        .await
                        .map_err(map_err)?;
                    if taken.is_some() {
                        return Err(StoreError::AlreadyExists);
                    }
                }
                Err(e) => return Err(map_err(e)),
            }
        }
        Err(unavailable(SequenceContention {
            room: room_key,
            attempts: MAX_SEQ_ATTEMPTS,
        }))
    }
}

#[async_trait]
impl Store for MongoStore {
    fn backend(&self) -> &'static str {
        STORE
    }

    async fn server_id(&self) -> Result<ServerId, StoreError> {
        let d = self
            .meta
            .find_one(doc! { "_id": SERVER_ID_DOC })
            .await
            .map_err(map_err)?
            .ok_or_else(|| {
                backend(MalformedDocument {
                    collection: META,
                    field: "server_id",
                    problem: "is missing (the meta document is gone)".into(),
                })
            })?;
        let f = Fields::new(META, &d);
        let bytes: [u8; 16] = f
            .bytes("server_id")?
            .try_into()
            .map_err(|_| f.malformed("server_id", "is not 16 bytes"))?;
        Ok(ServerId(bytes))
    }

    async fn room_secret(&self) -> Result<RoomSecret, StoreError> {
        let d = self
            .meta
            .find_one(doc! { "_id": ROOM_SECRET_DOC })
            .await
            .map_err(map_err)?
            .ok_or_else(|| {
                backend(MalformedDocument {
                    collection: META,
                    field: "room_secret",
                    problem: "is missing (the meta document is gone)".into(),
                })
            })?;
        let f = Fields::new(META, &d);
        let bytes: [u8; 32] = f
            .bytes("room_secret")?
            .try_into()
            .map_err(|_| f.malformed("room_secret", "is not 32 bytes"))?;
        Ok(RoomSecret::from_bytes(bytes))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.ping_primary().await.map_err(|e| match map_err(e) {
            StoreError::Backend { store, source } => StoreError::Unavailable { store, source },
            other => other,
        })
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.users
            .insert_one(user_to_doc(&user)?)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn find_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .find_one(doc! { "_id": username.canonical() })
            .projection(doc! { "key_history": 0 })
            .await
            .map_err(map_err)?
            .map(|d| user_from_doc(&d))
            .transpose()
    }

    async fn rotate_key(
        &self,
        username: &Username,
        certificate: &RotationCertificate,
    ) -> Result<(), StoreError> {
        let user_key = username.canonical();
        let stored = codec::encode(certificate).map_err(backend)?;
        let keep = -to_i64(
            u64::try_from(MAX_KEY_HISTORY).unwrap_or(u64::MAX),
            "key history length",
        )?;
        let result = self
            .users
            .update_one(
                doc! {
                    "_id": &user_key,
                    "public_key": binary(certificate.old_public_key.clone()),
                },
                doc! {
                    "$set": { "public_key": binary(certificate.new_public_key.clone()) },
                    "$push": { "key_history": { "$each": [binary(stored)], "$slice": keep } },
                },
            )
            .await
            .map_err(map_err)?;
        if result.matched_count == 1 {
            return Ok(());
        }
        // Nothing matched: no such account, or its key is not the one being retired.
        let exists = self
            .users
            .find_one(doc! { "_id": &user_key })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        Err(match exists {
            Some(_) => StoreError::Conflict,
            None => StoreError::NotFound,
        })
    }

    async fn key_history(
        &self,
        username: &Username,
    ) -> Result<Vec<RotationCertificate>, StoreError> {
        let d = self
            .users
            .find_one(doc! { "_id": username.canonical() })
            .projection(doc! { "key_history": 1 })
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        let f = Fields::new(USERS, &d);
        let entries = match d.get("key_history") {
            None => return Ok(Vec::new()),
            Some(Bson::Array(entries)) => entries,
            Some(_) => return Err(f.malformed("key_history", "is not an array")),
        };
        entries
            .iter()
            .map(|entry| match entry {
                Bson::Binary(b) => codec::decode(&b.bytes).map_err(|e| {
                    f.malformed("key_history", format!("holds a bad certificate: {e}"))
                }),
                _ => Err(f.malformed("key_history", "holds a non-binary entry")),
            })
            .collect()
    }

    async fn create_room(&self, key: &RoomKey, room: RoomRecord) -> Result<(), StoreError> {
        let owner = self.display_username(&room.owner).await?;
        // The owner's own room under this key is `AlreadyExists`, from the insert.
        self.check_name_free(&owner.canonical(), &room.name.canonical(), Some(key))
            .await?;
        let member = member_doc(&owner, room.created_at_ms)?;
        let mut d = room_to_doc(key, &room)?;
        d.insert("members", vec![Bson::Document(member)]);
        self.rooms.insert_one(d).await.map_err(map_err)?;
        Ok(())
    }

    async fn owned_room_count(&self, owner: &Username) -> Result<usize, StoreError> {
        let count = self
            .rooms
            .count_documents(doc! { "owner": owner.as_str() })
            .collation(case_insensitive())
            .await
            .map_err(map_err)?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    async fn find_room(&self, key: &RoomKey) -> Result<Option<RoomRecord>, StoreError> {
        self.rooms
            .find_one(doc! { "_id": key.as_str() })
            .projection(doc! { "members": 0 })
            .await
            .map_err(map_err)?
            .map(|d| room_from_doc(&d))
            .transpose()
    }

    async fn room_of(
        &self,
        user: &Username,
        name: &RoomName,
    ) -> Result<Option<Membership>, StoreError> {
        self.rooms
            .find_one(doc! { "members.user": user.canonical(), "canonical": name.canonical() })
            .projection(doc! { "_id": 1, "name": 1 })
            .await
            .map_err(map_err)?
            .map(|d| membership_from_doc(&d))
            .transpose()
    }

    async fn list_public_rooms(&self, query: &RoomQuery) -> Result<RoomPage, StoreError> {
        let mut name = Document::new();
        if let Some(after) = &query.after {
            name.insert("$gt", after.canonical());
        }
        if let Some(filter) = &query.filter {
            if !filter.can_match() {
                return Ok(RoomPage {
                    rooms: Vec::new(),
                    more: false,
                });
            }
            name.insert("$regex", literal_regex(filter.as_lowercase()));
        }
        let mut selector = doc! { "hidden": false };
        if !name.is_empty() {
            selector.insert("_id", name);
        }
        // One room more than the page tells whether more follow.
        let fetch = i64::try_from(query.limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let docs: Vec<Document> = self
            .rooms
            .find(selector)
            .sort(doc! { "_id": 1 })
            .limit(fetch)
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let more = docs.len() > query.limit;
        let rooms = docs
            .iter()
            .take(query.limit)
            .map(|d| {
                Ok(RoomListing {
                    room: room_from_doc(d)?,
                    members: members_from_doc(d)?
                        .into_iter()
                        .map(|(_, name)| name)
                        .collect(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(RoomPage { rooms, more })
    }

    async fn add_member(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError> {
        let room_key = room.as_str().to_owned();
        let user_key = user.canonical();
        let Some(current) = self
            .rooms
            .find_one(doc! { "_id": &room_key })
            .projection(doc! { "canonical": 1, "members": 1 })
            .await
            .map_err(map_err)?
        else {
            return Err(StoreError::NotFound);
        };
        if members_from_doc(&current)?
            .iter()
            .any(|(key, _)| *key == user_key)
        {
            return Ok(false);
        }
        let canonical = Fields::new(ROOMS, &current).str("canonical")?;
        self.check_name_free(&user_key, canonical, Some(room))
            .await?;
        let display = self.display_username(user).await?;
        let member = member_doc(&display, now_ms())?;
        let full_marker = format!("members.{}", MAX_ROOM_MEMBERS - 1);
        for _ in 0..MAX_MEMBER_ATTEMPTS {
            let result = self
                .rooms
                .update_one(
                    doc! {
                        "_id": &room_key,
                        "members.user": { "$ne": &user_key },
                        (full_marker.as_str()): { "$exists": false },
                    },
                    doc! { "$push": { "members": member.clone() } },
                )
                .await
                .map_err(map_err)?;
            if result.matched_count == 1 {
                return Ok(true);
            }
            // Nothing matched: find out which condition failed.
            let members = self.member_list(room).await?;
            if members.iter().any(|(key, _)| *key == user_key) {
                return Ok(false);
            }
            if members.len() >= MAX_ROOM_MEMBERS {
                return Err(StoreError::RoomFull);
            }
            // Someone left between the update and the read; try again.
        }
        Err(unavailable(MembershipContention { room: room_key }))
    }

    async fn remove_member(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError> {
        let result = self
            .rooms
            .update_one(
                doc! { "_id": room.as_str() },
                doc! { "$pull": { "members": { "user": user.canonical() } } },
            )
            .await
            .map_err(map_err)?;
        Ok(result.modified_count == 1)
    }

    async fn members(&self, room: &RoomKey) -> Result<Vec<UserRecord>, StoreError> {
        let keys: Vec<String> = self
            .member_list(room)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Members without an account have no key to report and are left out, as in the
        // embedded store.
        let users: Vec<Document> = self
            .users
            .find(doc! { "_id": { "$in": keys } })
            .projection(doc! { "key_history": 0 })
            .sort(doc! { "_id": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        users.iter().map(user_from_doc).collect()
    }

    async fn member_names(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        Ok(self
            .member_list(room)
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .collect())
    }

    async fn rooms_of(&self, user: &Username) -> Result<Vec<Membership>, StoreError> {
        let docs: Vec<Document> = self
            .rooms
            .find(doc! { "members.user": user.canonical() })
            .projection(doc! { "_id": 1, "name": 1, "canonical": 1 })
            .sort(doc! { "canonical": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        docs.iter().map(membership_from_doc).collect()
    }

    async fn queue_message(&self, message: &NewMessage) -> Result<PendingAppend, StoreError> {
        // The insert is acknowledged by a majority and journaled before it returns, so the
        // message's place and durability are settled here; one caller's messages are
        // therefore stored in the order it queues them.
        let stored = self.insert_message(message).await;
        Ok(Box::pin(std::future::ready(stored)))
    }

    async fn history_for(
        &self,
        room: &RoomKey,
        recipient: &Username,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<HistorySlice, StoreError> {
        let recipient_key = recipient.canonical();
        let mut filter = doc! { "room": room.as_str(), "copies.recipient": &recipient_key };
        if let Some(before) = before_seq {
            // A bound past every storable seq means "no bound".
            if let Ok(before) = i64::try_from(before) {
                filter.insert("seq", doc! { "$lt": before });
            }
        }
        // One extra document tells whether older messages remain.
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1;
        let docs: Vec<Document> = self
            .messages
            .find(filter)
            .sort(doc! { "seq": -1 })
            .limit(fetch)
            .projection(doc! {
                "_id": 0,
                "room_name": 1,
                "seq": 1,
                "message_id": 1,
                "sender": 1,
                "server_time": 1,
                "recipients": 1,
                // Only this recipient's copy leaves the server.
                "copies": { "$elemMatch": { "recipient": &recipient_key } },
            })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let has_more = docs.len() > limit;
        let mut messages = docs
            .iter()
            .take(limit)
            .map(delivered_from_doc)
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        let next_before = has_more.then(|| messages.first().map(|m| m.seq)).flatten();
        Ok(HistorySlice {
            messages,
            has_more,
            next_before,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Options

/// `{ w: "majority", j: true, wtimeout: 10 s }`: acknowledged once journaled on a majority.
fn durable_write_concern() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .w_timeout(WRITE_CONCERN_TIMEOUT)
        .build()
}

/// Fills in the fail-fast timeouts and the app name, keeping whatever the URI set.
fn apply_defaults(options: &mut ClientOptions) {
    options
        .server_selection_timeout
        .get_or_insert(DEFAULT_SERVER_SELECTION_TIMEOUT);
    options
        .connect_timeout
        .get_or_insert(DEFAULT_CONNECT_TIMEOUT);
    options
        .app_name
        .get_or_insert_with(|| "e2e-chat-server".to_owned());
}

/// MongoDB's rules for database names (the subset that applies on every platform).
fn check_database_name(name: &str) -> Result<(), ConnectError> {
    let reason = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 63 {
        Some("is longer than 63 bytes")
    } else if name.chars().any(|c| {
        matches!(
            c,
            '/' | '\\' | '.' | ' ' | '"' | '$' | '*' | '<' | '>' | ':' | '|' | '?' | '\0'
        )
    }) {
        Some("contains a character MongoDB forbids (/\\. \"$*<>:|? or NUL)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConnectError::DatabaseName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Case-insensitive comparison for ASCII names: ICU `en` at strength 2 ignores case only.
fn case_insensitive() -> Collation {
    Collation::builder()
        .locale("en")
        .strength(CollationStrength::Secondary)
        .build()
}

/// A regular expression matching `text` literally: every character that is not an ASCII
/// letter or digit is escaped (an escaped punctuation character is always itself).
fn literal_regex(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

fn index(keys: Document, name: &str, unique: bool, collation: Option<Collation>) -> IndexModel {
    let options = IndexOptions::builder()
        .name(name.to_owned())
        .unique(unique.then_some(true))
        .collation(collation)
        .build();
    IndexModel::builder().keys(keys).options(options).build()
}

// ---------------------------------------------------------------------------------------
// Errors

fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: source.into(),
    }
}

fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Unavailable {
        store: STORE,
        source: source.into(),
    }
}

/// Maps a driver error into the store's typed errors; the driver error stays the source.
fn map_err(err: DriverError) -> StoreError {
    if is_duplicate_key(&err) {
        StoreError::AlreadyExists
    } else if error_code(&err) == Some(OUT_OF_DISK_SPACE) {
        unavailable(super::StorageFull(err.to_string()))
    } else if is_unavailable(&err) {
        unavailable(err)
    } else {
        backend(err)
    }
}

/// Like [`map_err`], but wraps the driver error in `context` first.
fn map_err_with(err: DriverError, context: impl FnOnce(DriverError) -> ConnectError) -> StoreError {
    if is_unavailable(&err) {
        unavailable(context(err))
    } else {
        backend(context(err))
    }
}

fn is_duplicate_key(err: &DriverError) -> bool {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => DUPLICATE_KEY_CODES.contains(&e.code),
        ErrorKind::Command(e) => DUPLICATE_KEY_CODES.contains(&e.code),
        _ => false,
    }
}

fn is_index_not_found(err: &DriverError) -> bool {
    matches!(err.kind.as_ref(), ErrorKind::Command(e) if e.code == INDEX_NOT_FOUND)
}

/// The server's error code, for a command or write error.
fn error_code(err: &DriverError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Command(e) => Some(e.code),
        _ => None,
    }
}

fn is_unavailable(err: &DriverError) -> bool {
    if err.contains_label(RETRYABLE_WRITE_ERROR) || err.contains_label(RETRYABLE_ERROR) {
        return true;
    }
    match err.kind.as_ref() {
        // A write refused because the node stepped down, timed out or ran out of disk.
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            UNAVAILABLE_CODES.contains(&e.code) || e.code == OUT_OF_DISK_SPACE
        }
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown
        | ErrorKind::Write(WriteFailure::WriteConcernError(_)) => true,
        ErrorKind::Command(e) => UNAVAILABLE_CODES.contains(&e.code),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Documents

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| backend(OutOfRange(what)))
}

fn datetime(ms: u64, what: &'static str) -> Result<DateTime, StoreError> {
    Ok(DateTime::from_millis(to_i64(ms, what)?))
}

fn user_to_doc(user: &UserRecord) -> Result<Document, StoreError> {
    Ok(doc! {
        "_id": user.username.canonical(),
        "username": user.username.as_str(),
        "public_key": binary(user.public_key.clone()),
        "created_at": datetime(user.created_at_ms, "user creation time")?,
    })
}

fn user_from_doc(d: &Document) -> Result<UserRecord, StoreError> {
    let f = Fields::new(USERS, d);
    Ok(UserRecord {
        username: f.username("username")?,
        public_key: f.bytes("public_key")?,
        created_at_ms: f.millis("created_at")?,
    })
}

/// The room under `key`, without its members (the caller adds them).
fn room_to_doc(key: &RoomKey, room: &RoomRecord) -> Result<Document, StoreError> {
    let mut d = doc! {
        "_id": key.as_str(),
        "canonical": room.name.canonical(),
        "name": room.name.as_str(),
        "owner": room.owner.as_str(),
        "hidden": room.hidden,
        "created_at": datetime(room.created_at_ms, "room creation time")?,
    };
    if let Some(hash) = &room.password_hash {
        d.insert("password_hash", hash.as_str());
    }
    Ok(d)
}

fn room_from_doc(d: &Document) -> Result<RoomRecord, StoreError> {
    let f = Fields::new(ROOMS, d);
    Ok(RoomRecord {
        name: f.room_name("name")?,
        owner: f.username("owner")?,
        password_hash: f.opt_str("password_hash")?.map(str::to_owned),
        hidden: f.bool("hidden")?,
        created_at_ms: f.millis("created_at")?,
    })
}

/// A room document projected to `_id` and `name`, as one of a member's rooms.
fn membership_from_doc(d: &Document) -> Result<Membership, StoreError> {
    let f = Fields::new(ROOMS, d);
    Ok(Membership {
        key: RoomKey::from_stored(f.str("_id")?.to_owned()),
        name: f.room_name("name")?,
    })
}

fn member_doc(user: &Username, joined_at_ms: u64) -> Result<Document, StoreError> {
    Ok(doc! {
        "user": user.canonical(),
        "username": user.as_str(),
        "joined_at": datetime(joined_at_ms, "join time")?,
    })
}

/// A room document's members as (canonical, display) pairs, ordered by canonical name.
fn members_from_doc(d: &Document) -> Result<Vec<(String, Username)>, StoreError> {
    let f = Fields::new(ROOMS, d);
    let array = match d.get("members") {
        None => return Ok(Vec::new()),
        Some(Bson::Array(a)) => a,
        Some(_) => return Err(f.malformed("members", "is not an array")),
    };
    let mut members = array
        .iter()
        .map(|m| match m {
            Bson::Document(m) => {
                let username = Fields::new(ROOMS, m).username("username")?;
                Ok((username.canonical(), username))
            }
            _ => Err(f.malformed("members", "has an entry that is not a document")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    members.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(members)
}

/// The message without `seq` (set per insert attempt). `room_name` is the room's display
/// name, as history returns it.
fn message_to_doc(message: &NewMessage, room_name: &RoomName) -> Result<Document, StoreError> {
    let copies: Vec<Bson> = message
        .envelopes
        .iter()
        .map(|e| {
            Bson::Document(doc! {
                "recipient": e.recipient.canonical(),
                "recipient_name": e.recipient.as_str(),
                "wrapped_key": binary(e.wrapped_key.clone()),
                "nonce": binary(e.nonce.to_vec()),
                "ciphertext": binary(e.ciphertext.clone()),
            })
        })
        .collect();
    Ok(doc! {
        "room": message.room.as_str(),
        "room_name": room_name.as_str(),
        "message_id": binary(message.message_id.0.to_vec()),
        "sender": message.sender.as_str(),
        "server_time": datetime(message.server_time_ms, "server time")?,
        // Every recipient's display name, in copy order: each reader gets the whole list
        // with their one copy (the sender's signature covers it).
        "recipients": message
            .envelopes
            .iter()
            .map(|e| e.recipient.as_str())
            .collect::<Vec<_>>(),
        "copies": copies,
    })
}

/// A history document, projected to the recipient's copy only, as that recipient gets it.
fn delivered_from_doc(d: &Document) -> Result<DeliveredMessage, StoreError> {
    let f = Fields::new(MESSAGES, d);
    let copy = match d.get("copies") {
        Some(Bson::Array(a)) => match a.as_slice() {
            [Bson::Document(copy)] => copy,
            _ => return Err(f.malformed("copies", "does not hold exactly one copy document")),
        },
        _ => return Err(f.malformed("copies", "is missing or not an array")),
    };
    let c = Fields::new(MESSAGES, copy);
    let message_id: [u8; 16] = f
        .bytes("message_id")?
        .try_into()
        .map_err(|_| f.malformed("message_id", "is not 16 bytes"))?;
    let nonce: [u8; 12] = c
        .bytes("nonce")?
        .try_into()
        .map_err(|_| c.malformed("nonce", "is not 12 bytes"))?;
    Ok(DeliveredMessage {
        room: f.room_name("room_name")?,
        seq: f.seq("seq")?,
        message_id: MessageId(message_id),
        sender: f.username("sender")?,
        server_time_ms: f.millis("server_time")?,
        recipients: f.usernames("recipients")?,
        envelope: Envelope {
            recipient: c.username("recipient_name")?,
            wrapped_key: c.bytes("wrapped_key")?,
            nonce,
            ciphertext: c.bytes("ciphertext")?,
        },
    })
}

/// Typed field access that reports which field of which collection is malformed.
struct Fields<'a> {
    collection: &'static str,
    doc: &'a Document,
}

impl<'a> Fields<'a> {
    fn new(collection: &'static str, doc: &'a Document) -> Self {
        Self { collection, doc }
    }

    fn malformed(&self, field: &'static str, problem: impl fmt::Display) -> StoreError {
        backend(MalformedDocument {
            collection: self.collection,
            field,
            problem: problem.to_string(),
        })
    }

    fn access<T>(
        &self,
        field: &'static str,
        value: Result<T, mongodb::bson::document::ValueAccessError>,
    ) -> Result<T, StoreError> {
        value.map_err(|e| self.malformed(field, format!("{e:?}")))
    }

    fn str(&self, field: &'static str) -> Result<&'a str, StoreError> {
        self.access(field, self.doc.get_str(field))
    }

    fn opt_str(&self, field: &'static str) -> Result<Option<&'a str>, StoreError> {
        match self.doc.get(field) {
            None | Some(Bson::Null) => Ok(None),
            Some(_) => self.str(field).map(Some),
        }
    }

    fn bool(&self, field: &'static str) -> Result<bool, StoreError> {
        self.access(field, self.doc.get_bool(field))
    }

    fn bytes(&self, field: &'static str) -> Result<Vec<u8>, StoreError> {
        self.access(field, self.doc.get_binary_generic(field))
            .cloned()
    }

    fn seq(&self, field: &'static str) -> Result<u64, StoreError> {
        let value = self.access(field, self.doc.get_i64(field))?;
        u64::try_from(value).map_err(|_| self.malformed(field, "is negative"))
    }

    fn millis(&self, field: &'static str) -> Result<u64, StoreError> {
        let value = self.access(field, self.doc.get_datetime(field))?;
        u64::try_from(value.timestamp_millis()).map_err(|_| self.malformed(field, "is before 1970"))
    }

    fn username(&self, field: &'static str) -> Result<Username, StoreError> {
        Username::parse(self.str(field)?).map_err(|e| self.malformed(field, e))
    }

    fn usernames(&self, field: &'static str) -> Result<Vec<Username>, StoreError> {
        self.access(field, self.doc.get_array(field))?
            .iter()
            .map(|name| match name {
                Bson::String(name) => Username::parse(name).map_err(|e| self.malformed(field, e)),
                _ => Err(self.malformed(field, "holds a non-string")),
            })
            .collect()
    }

    fn room_name(&self, field: &'static str) -> Result<RoomName, StoreError> {
        RoomName::parse(self.str(field)?).map_err(|e| self.malformed(field, e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures_util::future::join_all;
    use mongodb::bson::from_document;
    use mongodb::error::{CommandError, WriteConcernError, WriteError};

    use super::*;
    use crate::store::conformance::Harness;

    /// The variable naming the MongoDB deployment the gated tests use.
    const URI_VAR: &str = "TEST_MONGODB_URI";

    /// A fresh database per test, dropped by `finish` (or, if the test panicked, by `Drop`).
    struct MongoHarness {
        store: MongoStore,
        uri: String,
        database: String,
        dropped: bool,
    }

    fn test_uri() -> String {
        std::env::var(URI_VAR).unwrap_or_else(|_| {
            panic!(
                "{URI_VAR} is not set: the MongoDB tests need a MongoDB replica set \
                 (they are #[ignore]d by default; run them with .ci/mongo-conformance)"
            )
        })
    }

    /// `e2e_chat_test_<pid>_<random>`: unique per test, valid as a MongoDB database name.
    fn unique_database_name() -> String {
        format!(
            "e2e_chat_test_{}_{:016x}",
            std::process::id(),
            rand::random::<u64>()
        )
    }

    #[async_trait]
    impl Harness for MongoHarness {
        async fn start() -> Self {
            let uri = test_uri();
            let database = unique_database_name();
            let store = MongoStore::connect(&uri, &database)
                .await
                .unwrap_or_else(|e| panic!("connecting to {URI_VAR} failed: {e:?}"));
            Self {
                store,
                uri,
                database,
                dropped: false,
            }
        }

        fn store(&self) -> &dyn Store {
            &self.store
        }

        async fn reopen(&mut self) {
            self.store = MongoStore::connect(&self.uri, &self.database)
                .await
                .unwrap_or_else(|e| panic!("reconnecting to {URI_VAR} failed: {e:?}"));
        }

        async fn finish(mut self) {
            self.store
                .db
                .drop()
                .await
                .unwrap_or_else(|e| panic!("dropping {} failed: {e:?}", self.database));
            self.dropped = true;
        }
    }

    impl Drop for MongoHarness {
        /// A test that panicked never reached `finish`: drop its database from a fresh
        /// runtime and client on another thread (this test's runtime is blocked here).
        fn drop(&mut self) {
            if self.dropped {
                return;
            }
            let (uri, database) = (self.uri.clone(), self.database.clone());
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cleanup runtime");
                runtime.block_on(async {
                    let store = MongoStore::connect(&uri, &database).await?;
                    store.db.drop().await.map_err(map_err)
                })
            });
            if !matches!(cleanup.join(), Ok(Ok(()))) {
                eprintln!("could not drop test database {}", self.database);
            }
        }
    }

    crate::conformance_tests!(
        #[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
        MongoHarness
    );

    /// Connecting again to a database that already has the indexes keeps them (start-up
    /// is idempotent), and the indexes the module docs list are there.
    #[tokio::test]
    #[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
    async fn mongo_indexes_are_created_idempotently() {
        let h = MongoHarness::start().await;
        let again = MongoStore::connect(&h.uri, &h.database)
            .await
            .expect("second connect to the same database");
        let mut names = Vec::new();
        for coll in [&again.users, &again.rooms, &again.messages] {
            names.extend(coll.list_index_names().await.expect("list indexes"));
        }
        names.sort();
        let mut expected = vec![
            "_id_",
            "_id_",
            "_id_",
            "member_rooms",
            "owner_ci",
            "public_by_name",
            "room_message_id_unique",
            "room_recipient_seq",
            "room_seq_unique",
            "username_ci_unique",
        ];
        expected.sort_unstable();
        assert_eq!(names, expected);
        h.finish().await;
    }

    /// Server instances that connect to a new database at the same moment all end up
    /// with the same server id: one insert wins, the others read it.
    #[tokio::test]
    #[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
    async fn mongo_concurrent_first_connects_agree_on_the_server_id() {
        let uri = test_uri();
        let database = unique_database_name();
        let stores = join_all((0..4).map(|_| MongoStore::connect(&uri, &database))).await;
        let mut ids = Vec::new();
        for store in &stores {
            let store = store.as_ref().expect("connect");
            ids.push(store.server_id().await.expect("server id"));
        }
        let cleanup = stores
            .into_iter()
            .next()
            .expect("a store")
            .expect("connect");
        cleanup
            .drop_database()
            .await
            .expect("drop the test database");
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }

    /// The stored message document is the shape the module docs describe: one document
    /// with a copy per recipient, keyed by canonical recipient.
    #[tokio::test]
    #[ignore = "needs TEST_MONGODB_URI (run .ci/mongo-conformance)"]
    async fn mongo_message_is_one_document_with_all_copies() {
        let h = MongoHarness::start().await;
        let store = &h.store;
        store
            .create_room(&general(), sample_room())
            .await
            .expect("create room");
        let seq = store
            .append_message(sample_message())
            .await
            .expect("append");
        assert_eq!(seq, 1);
        let stored = store
            .messages
            .find_one(doc! { "room": "general" })
            .await
            .expect("find")
            .expect("message stored");
        assert_eq!(stored.get_i64("seq").expect("seq"), 1);
        let recipients: Vec<&str> = stored
            .get_array("copies")
            .expect("copies")
            .iter()
            .filter_map(|c| c.as_document()?.get_str("recipient").ok())
            .collect();
        assert_eq!(recipients, ["alice", "bob"]);
        h.finish().await;
    }

    fn driver_error(kind: ErrorKind) -> DriverError {
        DriverError::from(kind)
    }

    fn command_error(code: i32, errmsg: &str) -> DriverError {
        let e: CommandError =
            from_document(doc! { "code": code, "codeName": "X", "errmsg": errmsg })
                .expect("command error");
        driver_error(ErrorKind::Command(e))
    }

    fn write_error(code: i32, errmsg: &str) -> DriverError {
        let e: WriteError =
            from_document(doc! { "code": code, "errmsg": errmsg }).expect("write error");
        driver_error(ErrorKind::Write(WriteFailure::WriteError(e)))
    }

    const SECRET: &str =
        "E11000 duplicate key error collection: e2e_chat.users dup key: { _id: \"secret-detail\" }";

    #[test]
    fn duplicate_key_is_already_exists() {
        assert!(matches!(
            map_err(write_error(11000, SECRET)),
            StoreError::AlreadyExists
        ));
        assert!(matches!(
            map_err(command_error(11000, SECRET)),
            StoreError::AlreadyExists
        ));
    }

    #[test]
    fn connectivity_failures_are_unavailable() {
        let io = driver_error(ErrorKind::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        let not_primary = command_error(10107, "not primary");
        let wc: WriteConcernError = from_document(doc! {
            "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out",
        })
        .expect("write concern error");
        let wc = driver_error(ErrorKind::Write(WriteFailure::WriteConcernError(wc)));
        for err in [io, not_primary, wc] {
            let mapped = map_err(err);
            assert!(
                matches!(mapped, StoreError::Unavailable { store: STORE, .. }),
                "{mapped:?}"
            );
        }
    }

    #[test]
    fn write_errors_from_a_failing_primary_or_a_full_disk_are_unavailable() {
        // Not-primary, a timeout and an interrupted shutdown, as write errors.
        for code in [10107, 50, 11600] {
            let mapped = map_err(write_error(code, "write refused"));
            assert!(
                matches!(mapped, StoreError::Unavailable { store: STORE, .. })
                    && !mapped.is_storage_full(),
                "{code}: {mapped:?}"
            );
        }
        for err in [
            write_error(14031, "OutOfDiskSpace"),
            command_error(14031, "OutOfDiskSpace"),
        ] {
            let mapped = map_err(err);
            assert!(
                matches!(mapped, StoreError::Unavailable { store: STORE, .. })
                    && mapped.is_storage_full(),
                "{mapped:?}"
            );
        }
    }

    #[test]
    fn other_failures_are_backend_and_never_show_driver_text() {
        let mapped = map_err(command_error(2, "BadValue: secret-detail"));
        assert!(matches!(mapped, StoreError::Backend { store: STORE, .. }));
        assert_eq!(mapped.to_string(), "mongodb store failed");
        // The driver's text is kept for logs, as the source.
        let source = std::error::Error::source(&mapped)
            .expect("source")
            .to_string();
        assert!(source.contains("secret-detail"), "{source}");
        for err in [
            write_error(11000, SECRET),
            command_error(91, "secret-detail"),
        ] {
            assert!(!map_err(err).to_string().contains("secret"));
        }
    }

    #[tokio::test]
    async fn collections_write_majority_journaled_and_read_the_primary() {
        let options = ClientOptions::parse("mongodb://127.0.0.1:1/?w=1&readPreference=secondary")
            .await
            .expect("parse");
        let client = Client::with_options(options).expect("client");
        let store = MongoStore::with_client(&client, "e2e_chat");
        for coll in [&store.users, &store.rooms, &store.messages, &store.meta] {
            let wc = coll.write_concern().expect("write concern set");
            assert_eq!(wc.w, Some(Acknowledgment::Majority), "{}", coll.name());
            assert_eq!(wc.journal, Some(true));
            assert_eq!(wc.w_timeout, Some(WRITE_CONCERN_TIMEOUT));
            assert!(matches!(
                coll.selection_criteria(),
                Some(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            ));
        }
    }

    #[tokio::test]
    async fn defaults_fill_only_what_the_uri_left_unset() {
        let mut bare = ClientOptions::parse("mongodb://db.example:27017/")
            .await
            .expect("parse");
        apply_defaults(&mut bare);
        assert_eq!(
            bare.server_selection_timeout,
            Some(DEFAULT_SERVER_SELECTION_TIMEOUT)
        );
        assert_eq!(bare.connect_timeout, Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(bare.app_name.as_deref(), Some("e2e-chat-server"));

        let mut explicit = ClientOptions::parse(
            "mongodb://db.example:27017/?serverSelectionTimeoutMS=1500&connectTimeoutMS=700&appName=ops",
        )
        .await
        .expect("parse");
        apply_defaults(&mut explicit);
        assert_eq!(
            explicit.server_selection_timeout,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(explicit.connect_timeout, Some(Duration::from_millis(700)));
        assert_eq!(explicit.app_name.as_deref(), Some("ops"));
    }

    /// Nothing listens on port 1 of the loopback address: start-up must fail quickly with
    /// `Unavailable`, and say which host it tried.
    #[tokio::test]
    async fn unreachable_server_fails_fast() {
        let started = Instant::now();
        let err = MongoStore::connect(
            "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300",
            "e2e_chat",
        )
        .await
        .expect_err("nothing listens there");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(err, StoreError::Unavailable { store: STORE, .. }),
            "{err:?}"
        );
        let source = std::error::Error::source(&err).expect("source").to_string();
        assert!(source.contains("127.0.0.1:1"), "{source}");
    }

    #[tokio::test]
    async fn bad_configuration_is_rejected_before_connecting() {
        for (uri, database) in [
            ("http://not-mongodb", "e2e_chat"),
            ("mongodb://127.0.0.1:1/", "bad.name"),
            ("mongodb://127.0.0.1:1/", ""),
        ] {
            let started = Instant::now();
            let err = MongoStore::connect(uri, database)
                .await
                .expect_err("invalid configuration");
            assert!(
                matches!(err, StoreError::Backend { .. }),
                "{uri} {database}: {err:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn literal_regex_escapes_everything_but_letters_and_digits() {
        assert_eq!(literal_regex("ab9"), "ab9");
        assert_eq!(literal_regex("a.b-c_d"), r"a\.b\-c\_d");
        assert_eq!(literal_regex(".*[x]$"), r"\.\*\[x\]\$");
    }

    #[test]
    fn database_names_follow_mongodb_rules() {
        assert!(check_database_name("e2e_chat").is_ok());
        assert!(check_database_name(&unique_database_name()).is_ok());
        for bad in ["", "a.b", "a b", "a/b", "a$b", &"x".repeat(64)] {
            assert!(check_database_name(bad).is_err(), "{bad:?}");
        }
        assert_ne!(unique_database_name(), unique_database_name());
    }

    fn name(s: &str) -> Username {
        Username::parse(s).expect("valid username")
    }

    fn general() -> RoomKey {
        RoomKey::public(&RoomName::parse("General").expect("valid room"))
    }

    fn sample_room() -> RoomRecord {
        RoomRecord {
            name: RoomName::parse("General").expect("valid room"),
            owner: name("Alice"),
            password_hash: Some("$argon2id$v=19$stub".into()),
            hidden: true,
            created_at_ms: 1_700_000_000_123,
        }
    }

    fn envelope(recipient: &str, byte: u8) -> Envelope {
        Envelope {
            recipient: name(recipient),
            wrapped_key: vec![byte; 256],
            nonce: [byte; 12],
            ciphertext: vec![byte; 40],
        }
    }

    fn sample_message() -> NewMessage {
        NewMessage {
            room: general(),
            message_id: MessageId([7; 16]),
            sender: name("Alice"),
            server_time_ms: 1_700_000_000_456,
            envelopes: vec![envelope("Alice", 1), envelope("Bob", 2)],
        }
    }

    #[test]
    fn user_and_room_documents_round_trip() {
        let user = UserRecord {
            username: name("Alice"),
            public_key: vec![1, 2, 3],
            created_at_ms: 1_700_000_000_000,
        };
        let d = user_to_doc(&user).expect("encode");
        assert_eq!(d.get_str("_id").expect("_id"), "alice");
        assert_eq!(user_from_doc(&d).expect("decode"), user);

        let room = sample_room();
        let mut d = room_to_doc(&general(), &room).expect("encode");
        assert_eq!(d.get_str("_id").expect("_id"), "general");
        assert_eq!(room_from_doc(&d).expect("decode"), room);
        let open = RoomRecord {
            password_hash: None,
            ..sample_room()
        };
        let open_doc = room_to_doc(&general(), &open).expect("encode");
        assert!(!open_doc.contains_key("password_hash"));
        assert_eq!(room_from_doc(&open_doc).expect("decode"), open);

        d.insert(
            "members",
            vec![
                Bson::Document(member_doc(&name("carol"), 1).expect("member")),
                Bson::Document(member_doc(&name("Bob"), 2).expect("member")),
            ],
        );
        let members: Vec<_> = members_from_doc(&d).expect("members");
        assert_eq!(
            members,
            [
                ("bob".to_owned(), name("Bob")),
                ("carol".to_owned(), name("carol"))
            ]
        );
    }

    /// What `history_for` gets back after the `$elemMatch` projection decodes into the
    /// recipient's delivered message.
    #[test]
    fn projected_message_decodes_to_the_recipients_copy() {
        let message = sample_message();
        let room = RoomName::parse("General").expect("valid room");
        let mut d = message_to_doc(&message, &room).expect("encode");
        d.insert("seq", 42_i64);
        let copies = d.get_array("copies").expect("copies").clone();
        assert_eq!(copies.len(), 2);
        // Simulate the projection: keep Bob's copy only.
        d.insert("copies", vec![copies[1].clone()]);
        let delivered = delivered_from_doc(&d).expect("decode");
        assert_eq!(
            delivered,
            DeliveredMessage {
                room,
                seq: 42,
                message_id: MessageId([7; 16]),
                sender: name("Alice"),
                server_time_ms: 1_700_000_000_456,
                recipients: vec![name("Alice"), name("Bob")],
                envelope: envelope("Bob", 2),
            }
        );
        // More than one copy is a malformed projection, not a leak.
        d.insert("copies", copies);
        assert!(matches!(
            delivered_from_doc(&d),
            Err(StoreError::Backend { .. })
        ));
    }

    #[test]
    fn out_of_range_times_are_backend_errors() {
        let user = UserRecord {
            username: name("Alice"),
            public_key: Vec::new(),
            created_at_ms: u64::MAX,
        };
        assert!(matches!(
            user_to_doc(&user),
            Err(StoreError::Backend { .. })
        ));
    }
}
