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
//! rooms     { _id: "#3f9c…", key: "general", canonical: "general", name: "General",
//!             owner: "Alice", last_seq: NumberLong(41),
//!             password_hash?: "$argon2id$…", hidden: false, created_at: ISODate,
//!             admins: [ "bob" ], bans?: [ "mallory" ], topic?: "…", direct?: [ "a", "b" ],
//!             members: [ { user: "alice", username: "Alice", joined_at: ISODate,
//!                          read?: NumberLong(40) }, … ] }
//! messages  { _id: ObjectId, room: "#3f9c…", room_name: "General", seq: NumberLong(42),
//!             message_id: BinData(16 bytes), sender: "Alice", server_time: ISODate,
//!             copies: [ { recipient: "bob", recipient_name: "Bob", wrapped_key: BinData,
//!                         nonce: BinData(12 bytes), ciphertext: BinData }, … ] }
//! meta      { _id: "server_id", server_id: BinData(16 bytes) }
//!           { _id: "room_secret", room_secret: BinData(32 bytes) }
//!           { _id: "schema", version: NumberLong(2) }
//! room_owners { _id: "alice", rooms: NumberLong(3) }
//! ```
//!
//! A room's `key` is its [`RoomKey`]: the canonical name for a public room, a key in a
//! hidden namespace otherwise (see [`super`]), so a public and a hidden room may share a
//! name. Its `_id` is permanent and internal: `#` and 32 random hex digits (a room stored
//! before schema 3 keeps its key of that time as its `_id`); messages refer to the `_id`,
//! so moving a room to another key (a password or visibility change) is one update of its
//! `key` and never touches its messages. Handlers never see the `_id`. The fields the
//! moderation features added, and how room deletion and account deletion survive an
//! interruption, are described in `mongo/moderation.rs`. `canonical` is the lowercase name in every room, for the per-member lookup
//! ([`Store::room_of`]). Rooms stored before hidden namespaces have no `canonical`;
//! the migration to schema 2 sets it from `_id` (then their canonical name); see `mongo/migrate.rs`
//! for the schema versions and what each migration does.
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
//! | `rooms`    | `public_by_key`         | `hidden, key`                            | `list_public_rooms`: a page is a `key` range after the last name, in order; never reads a hidden room |
//! | `rooms`    | `room_key_unique`       | `key` (unique)                           | one room per key; every lookup by key; a move to a taken key fails on it |
//! | `rooms`    | `member_rooms`          | `members.user, canonical`                | `room_of` (one lookup per member and name) and `rooms_of` (multikey) |
//! | `messages` | `room_seq_unique`       | `room, seq` (unique)                     | history by room (its `_id`) and time; the next sequence number |
//! | `messages` | `room_message_id_unique`| `room, message_id` (unique)              | one message per sender-chosen id per room |
//! | `messages` | `room_recipient_seq`    | `room, copies.recipient, seq: -1`        | recipient-scoped history pages |
//! | `messages` | `retention_by_time`     | `server_time`                            | retention by age (`mongo/retention.rs`) |
//!
//! No index has a collation: names are compared in their lowercase form, which `_id`
//! holds, so the unique `_id` index is the case-insensitive rule (a collation index is
//! used only by queries that name the same collation, and none does).
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
//! - **Sequence numbers come from a counter in the room document** (`last_seq`), taken
//!   with one atomic `findOneAndUpdate` `$inc` before the insert: two round trips per
//!   message, no retries; a message refused after taking its number may leave a gap, and a
//!   number is never reused (see `mongo/sequence.rs`). The unique `room_seq_unique` index
//!   still guards the numbers. The message and all its copies are one document (at most
//!   256 copies of a frame-limited payload, well below the 16 MiB document limit).
//! - **The rooms-per-user quota is a per-owner counter** in `room_owners`, taken with one
//!   conditional upsert before the room is inserted and given back if the insert is
//!   refused (see `mongo/owners.rs`), so concurrent creations never exceed it.
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
//! Every collection handle reads with read concern `majority`: MongoDB documents that such
//! a read returns only data a majority has acknowledged, which can never be rolled back, so
//! history, membership and accounts never show a write a failover would undo. A write
//! acknowledged with `w: "majority"` is in that majority snapshot when it returns, so the
//! writer's next read sees it. Every collection handle writes with `{ w: "majority", j: true, wtimeout: 10 s }`,
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
use std::time::Duration;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as DriverError, ErrorKind};
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, ReadConcern, ReadPreference,
    SelectionCriteria, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use shared::crypto::rotation::RotationCertificate;
use shared::protocol::{codec, MAX_KEY_HISTORY, MAX_ROOM_MEMBERS};
use shared::{RoomName, ServerId, Username};

mod admin;
mod documents;
mod errors;
mod migrate;
mod moderation;
mod owners;
mod pipeline;
mod retention;
mod sequence;
mod settle;
mod topology;

pub use topology::{Deployment, Standalone};

use documents::*;
use errors::*;
use migrate::SCHEMA_VERSION;
use settle::{settle, Outcome};

use super::{
    HistorySlice, Membership, NewMessage, PendingAppend, Retention, RoomKey, RoomListing, RoomPage,
    RoomQuery, RoomRecord, RoomSecret, RoomUpdate, Store, StoreError, StoreStats, UserRecord,
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

/// How often `add_member` retries when the room changed between its write and its check.
const MAX_MEMBER_ATTEMPTS: usize = 8;

const USERS: &str = "users";
const ROOMS: &str = "rooms";
const MESSAGES: &str = "messages";
const META: &str = "meta";
const OWNERS: &str = "room_owners";

/// The `_id` of the `meta` document that holds the server id.
const SERVER_ID_DOC: &str = "server_id";

/// The `_id` of the `meta` document that holds the room secret.
const ROOM_SECRET_DOC: &str = "room_secret";

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
    owners: Collection<Document>,
    /// Message ids whose first copy is being stored (see `pipeline.rs`).
    in_flight: pipeline::InFlight,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the client options: they hold the credentials.
        f.debug_struct("MongoStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to `uri`, checks that a primary answers, and creates the indexes the queries
    /// need (idempotently: an index that already exists with the same definition is kept).
    ///
    /// Unless the URI sets them, server selection and connection attempts time out after
    /// [`DEFAULT_SERVER_SELECTION_TIMEOUT`] and [`DEFAULT_CONNECT_TIMEOUT`], so a wrong URI
    /// or a stopped server fails start-up within seconds.
    ///
    /// The deployment must be a replica set or a sharded cluster, unless `standalone` is
    /// [`Standalone::Allow`] (see `mongo/topology.rs` for why).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] if no primary can be reached in time, or the SRV records
    /// of a `mongodb+srv://` URI cannot be looked up; [`StoreError::Backend`] if the URI or
    /// database name is invalid, authentication fails, the server is a refused standalone,
    /// the database was written by a newer server, or an index cannot be created (for
    /// example, an index of the same name with a different definition exists). The source
    /// names the hosts and the failed step.
    pub async fn connect(
        uri: &str,
        database: &str,
        standalone: Standalone,
    ) -> Result<Self, StoreError> {
        check_database_name(database).map_err(backend)?;
        let options = ClientOptions::parse(uri).await.map_err(|e| {
            if matches!(e.kind.as_ref(), ErrorKind::DnsResolve { .. }) {
                map_err_with(e, ConnectError::SrvLookup)
            } else {
                map_err_with(e, ConnectError::Uri)
            }
        })?;
        Self::connect_with(options, database, standalone).await
    }

    /// [`connect`](Self::connect) with parsed client options (tests add event handlers).
    async fn connect_with(
        mut options: ClientOptions,
        database: &str,
        standalone: Standalone,
    ) -> Result<Self, StoreError> {
        check_database_name(database).map_err(backend)?;
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
                if matches!(source.kind.as_ref(), ErrorKind::Authentication { .. }) {
                    backend(ConnectError::Authentication { hosts, source })
                } else if is_unavailable(&source) {
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
        let deployment = store
            .deployment()
            .await
            .map_err(step_error("topology check"))?;
        match (&deployment, standalone) {
            (Deployment::Standalone, Standalone::Refuse) => {
                return Err(backend(ConnectError::Standalone {
                    hosts: hosts.clone(),
                }));
            }
            (Deployment::Standalone, Standalone::Allow) => tracing::warn!(
                hosts,
                "MongoDB is a standalone server (allowed by MONGODB_ALLOW_STANDALONE): \
                 acknowledged writes are on one node only and do not survive its loss"
            ),
            _ => {}
        }
        let found = store
            .schema_version()
            .await
            .map_err(step_error("schema version read"))?;
        if found > SCHEMA_VERSION {
            return Err(backend(ConnectError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            }));
        }
        store
            .migrate(found)
            .await
            .map_err(step_error("migration"))?;
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
        store.finish_room_deletions().await?;
        tracing::info!(hosts, database, %deployment, "connected to MongoDB");
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
                .read_concern(ReadConcern::majority())
                .build()
        };
        Self {
            users: db.collection_with_options(USERS, options()),
            rooms: db.collection_with_options(ROOMS, options()),
            messages: db.collection_with_options(MESSAGES, options()),
            meta: db.collection_with_options(META, options()),
            owners: db.collection_with_options(OWNERS, options()),
            in_flight: pipeline::InFlight::default(),
            db,
        }
    }

    /// What the primary says the deployment is (`hello`).
    async fn deployment(&self) -> Result<Deployment, DriverError> {
        let hello = self
            .db
            .run_command(doc! { "hello": 1 })
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .await?;
        Ok(Deployment::from_hello(&hello))
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

    async fn create_indexes(&self) -> Result<(), DriverError> {
        self.rooms
            .create_indexes([
                index(doc! { "hidden": 1, "key": 1 }, "public_by_key", false),
                index(doc! { "key": 1 }, "room_key_unique", true),
                index(
                    doc! { "members.user": 1, "canonical": 1 },
                    "member_rooms",
                    false,
                ),
            ])
            .await?;
        self.messages
            .create_indexes([
                index(doc! { "room": 1, "seq": 1 }, "room_seq_unique", true),
                index(doc! { "server_time": 1 }, "retention_by_time", false),
                index(
                    doc! { "room": 1, "message_id": 1 },
                    "room_message_id_unique",
                    true,
                ),
                index(
                    doc! { "room": 1, "copies.recipient": 1, "seq": -1 },
                    "room_recipient_seq",
                    false,
                ),
            ])
            .await?;
        Ok(())
    }

    /// The room document under `key`, with `projection`, if there is one.
    async fn find_room_doc(
        &self,
        key: &RoomKey,
        projection: Document,
    ) -> Result<Option<Document>, StoreError> {
        self.rooms
            .find_one(doc! { "key": key.as_str() })
            .projection(projection)
            .await
            .map_err(map_err)
    }

    /// The room's members as (canonical, display) names, sorted by canonical name.
    async fn member_list(&self, room: &RoomKey) -> Result<Vec<(String, Username)>, StoreError> {
        let d = self
            .find_room_doc(room, doc! { "members": 1 })
            .await?
            .ok_or(StoreError::NotFound)?;
        members_from_doc(&d)
    }

    /// The permanent internal id (`_id`) of the room under `key`, which its messages
    /// refer to; `None` if no room is there.
    async fn room_id(&self, key: &RoomKey) -> Result<Option<String>, StoreError> {
        self.find_room_doc(key, doc! { "_id": 1 })
            .await?
            .map(|d| Fields::new(ROOMS, &d).str("_id").map(str::to_owned))
            .transpose()
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
            filter.insert("key", doc! { "$ne": except.as_str() });
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

    /// Inserts the room with its owner as the first member, unless the owner is a member of
    /// another room of that name (the owner's own room under this key is `AlreadyExists`,
    /// from the insert).
    async fn insert_room(
        &self,
        key: &RoomKey,
        room: &RoomRecord,
        owner: &Username,
    ) -> Result<(), StoreError> {
        self.check_name_free(&owner.canonical(), &room.name.canonical(), Some(key))
            .await?;
        let member = member_doc(owner, room.created_at_ms)?;
        let mut d = room_to_doc(key, room)?;
        d.insert("members", vec![Bson::Document(member)]);
        self.rooms.insert_one(d).await.map_err(map_err)?;
        Ok(())
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
        let error = match self.users.insert_one(user_to_doc(&user)?).await {
            Ok(_) => return Ok(()),
            Err(e) => map_err(e),
        };
        if !matches!(error, StoreError::Unavailable { .. }) {
            return Err(error);
        }
        // The insert may have happened: read the account back (see `settle.rs`).
        match settle(&self.users, doc! { "_id": user.username.canonical() }).await {
            Ok(Outcome::Durable(d)) if user_from_doc(&d)? == user => Ok(()),
            Ok(Outcome::Durable(_)) => Err(StoreError::AlreadyExists),
            Ok(Outcome::Pending | Outcome::Absent) | Err(_) => Err(error),
        }
    }

    async fn find_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        self.users
            .find_one(doc! { "_id": username.canonical(), "deleted": { "$ne": true } })
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
            .find_one(doc! { "_id": username.canonical(), "deleted": { "$ne": true } })
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

    async fn create_room(
        &self,
        key: &RoomKey,
        room: RoomRecord,
        quota: usize,
    ) -> Result<(), StoreError> {
        let owner = self.display_username(&room.owner).await?;
        let owner_key = owner.canonical();
        self.take_room_slot(&owner_key, quota).await?;
        let inserted = self.insert_room(key, &room, &owner).await;
        let settled = match inserted {
            Ok(()) => return Ok(()),
            Err(e @ StoreError::Unavailable { .. }) => {
                // The insert may have happened: read the room back (see `settle`).
                match settle(&self.rooms, doc! { "key": key.as_str() }).await {
                    Ok(Outcome::Durable(d)) => {
                        let stored = room_from_doc(&d)?;
                        if stored.owner.same_as(&owner)
                            && stored.created_at_ms == room.created_at_ms
                        {
                            return Ok(());
                        }
                        // Another creator's room: ours was not inserted.
                        (StoreError::AlreadyExists, true)
                    }
                    Ok(Outcome::Absent) => (e, true),
                    // Unknown: the slot stays taken (the safe side of a quota).
                    Ok(Outcome::Pending) | Err(_) => (e, false),
                }
            }
            Err(e) => (e, true),
        };
        let (error, not_created) = settled;
        if not_created {
            self.give_back_room_slot(&owner_key).await;
        }
        Err(error)
    }

    async fn owned_room_count(&self, owner: &Username) -> Result<usize, StoreError> {
        self.room_slots(owner).await
    }

    async fn find_room(&self, key: &RoomKey) -> Result<Option<RoomRecord>, StoreError> {
        self.rooms
            .find_one(doc! { "key": key.as_str() })
            .projection(doc! { "members": 0, "bans": 0 })
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
            .projection(doc! { "key": 1, "name": 1 })
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
            selector.insert("key", name);
        }
        // One room more than the page tells whether more follow.
        let fetch = i64::try_from(query.limit)
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1);
        let docs: Vec<Document> = self
            .rooms
            .find(selector)
            // A ban list may hold a thousand names: a listing never needs it.
            .projection(doc! { "bans": 0 })
            .sort(doc! { "key": 1 })
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
            .find_one(doc! { "key": &room_key })
            .projection(doc! { "canonical": 1, "members": 1, "bans": 1 })
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
        if is_listed(&current, "bans", &user_key) {
            return Err(StoreError::Banned);
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
                        "key": &room_key,
                        "members.user": { "$ne": &user_key },
                        "bans": { "$ne": &user_key },
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
            if self
                .bans(room)
                .await?
                .iter()
                .any(|b| b.canonical() == user_key)
            {
                return Err(StoreError::Banned);
            }
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
        let user_key = user.canonical();
        let result = self
            .rooms
            .update_one(
                doc! { "key": room.as_str(), "members.user": &user_key },
                doc! { "$pull": { "members": { "user": &user_key }, "admins": &user_key } },
            )
            .await
            .map_err(map_err)?;
        Ok(result.modified_count == 1)
    }

    async fn list_users(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        self.list_user_page(after, limit).await
    }

    async fn list_all_rooms(
        &self,
        after: Option<&RoomKey>,
        limit: usize,
    ) -> Result<Vec<(RoomKey, RoomListing)>, StoreError> {
        self.list_room_page(after, limit).await
    }

    async fn message_count(&self, room: &RoomKey) -> Result<u64, StoreError> {
        self.messages_in_room(room).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.database_stats().await
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
            .find(doc! { "_id": { "$in": keys }, "deleted": { "$ne": true } })
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
            .projection(doc! { "key": 1, "name": 1, "canonical": 1 })
            .sort(doc! { "canonical": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        docs.iter().map(membership_from_doc).collect()
    }

    async fn hand_over(
        &self,
        room: &RoomKey,
        leaver: &Username,
    ) -> Result<Option<Username>, StoreError> {
        self.hand_over_room(room, leaver).await
    }

    async fn update_room(
        &self,
        room: &RoomKey,
        update: RoomUpdate,
    ) -> Result<RoomRecord, StoreError> {
        self.update_room_doc(room, update).await
    }

    async fn move_room(
        &self,
        from: &RoomKey,
        to: &RoomKey,
        hidden: bool,
        password_hash: Option<String>,
    ) -> Result<(), StoreError> {
        self.move_room_doc(from, to, hidden, password_hash).await
    }

    async fn delete_room(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        self.delete_room_doc(room).await
    }

    async fn ban(
        &self,
        room: &RoomKey,
        user: &Username,
        max_bans: usize,
    ) -> Result<bool, StoreError> {
        self.ban_user(room, user, max_bans).await
    }

    async fn unban(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError> {
        self.unban_user(room, user).await
    }

    async fn bans(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        self.ban_list(room).await
    }

    async fn open_direct(
        &self,
        key: &RoomKey,
        room: RoomRecord,
    ) -> Result<Vec<Username>, StoreError> {
        self.open_direct_doc(key, room).await
    }

    async fn set_blocked(
        &self,
        user: &Username,
        target: &Username,
        blocked: bool,
        max: usize,
    ) -> Result<bool, StoreError> {
        self.set_blocked_doc(user, target, blocked, max).await
    }

    async fn blocked_users(&self, user: &Username) -> Result<Vec<Username>, StoreError> {
        self.blocked_list(user).await
    }

    async fn has_blocked(&self, user: &Username, target: &Username) -> Result<bool, StoreError> {
        self.has_blocked_user(user, target).await
    }

    async fn mark_read(
        &self,
        room: &RoomKey,
        user: &Username,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.mark_read_doc(room, user, seq).await
    }

    async fn read_marker(&self, room: &RoomKey, user: &Username) -> Result<u64, StoreError> {
        self.read_marker_doc(room, user).await
    }

    async fn delete_account(&self, user: &Username) -> Result<(), StoreError> {
        self.delete_account_doc(user).await
    }

    async fn queue_message(&self, message: &NewMessage) -> Result<PendingAppend, StoreError> {
        self.queue(message).await
    }

    async fn prune_messages(&self, policy: &Retention) -> Result<u64, StoreError> {
        self.prune(policy).await
    }

    async fn history_for(
        &self,
        room: &RoomKey,
        recipient: &Username,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<HistorySlice, StoreError> {
        let recipient_key = recipient.canonical();
        let Some(room_id) = self.room_id(room).await? else {
            return Ok(HistorySlice {
                messages: Vec::new(),
                has_more: false,
                next_before: None,
            });
        };
        let mut filter = doc! { "room": room_id, "copies.recipient": &recipient_key };
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

/// Whether the array `field` of `d` holds the string `value`.
fn is_listed(d: &Document, field: &str, value: &str) -> bool {
    d.get_array(field)
        .is_ok_and(|a| a.iter().any(|v| v.as_str() == Some(value)))
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

fn index(keys: Document, name: &str, unique: bool) -> IndexModel {
    let options = IndexOptions::builder()
        .name(name.to_owned())
        .unique(unique.then_some(true))
        .build();
    IndexModel::builder().keys(keys).options(options).build()
}

#[cfg(test)]
mod tests;
