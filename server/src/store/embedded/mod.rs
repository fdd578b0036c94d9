//! The embedded store: one [redb](https://docs.rs/redb) file, `chat.redb`, in the data
//! directory. It is the zero-configuration default.
//!
//! # Durability
//! Every mutation is exactly one redb write transaction, committed with
//! [`Durability::Immediate`] before the method returns `Ok`: once it returns, the change
//! survives a crash or power loss, and a failed or interrupted operation leaves nothing
//! behind (redb is copy-on-write; an uncommitted transaction is never visible). redb allows
//! one writer at a time, so every check-then-insert (uniqueness, membership cap, the next
//! sequence number) is atomic without further locking. redb's API is blocking, so writes and
//! the larger reads run on [`tokio::task::spawn_blocking`]; the small reads on the request
//! path (an account, a room, a member list, a user's rooms) run in place, because the hop
//! to the blocking pool costs more than they do.
//! Appending messages, the hot path, goes through a group-commit writer thread that
//! shares one durable commit among all the messages waiting at that moment (see
//! `AppendWriter`); each caller is still answered only after its message is committed.
//!
//! # Table layout
//! Keys are built from the [`canonical`](Username::canonical) (lowercase) forms of names, so
//! uniqueness and lookups ignore case; the values keep the display case. Values are
//! document-shaped records encoded with [`shared::protocol::codec`]. Composite keys are redb
//! tuples, which compare element by element (a variable-length element carries its length),
//! so a scan over room `ab` never reaches room `abc`.
//!
//! | table          | key                              | value                              |
//! |----------------|----------------------------------|------------------------------------|
//! | `meta`         | `&str` setting                   | `u64` (`schema_version`)           |
//! | `identity`     | `"server_id"`                    | the [`ServerId`]'s 16 bytes        |
//! | `secrets`      | `"room_secret"`                  | the [`RoomSecret`]'s 32 bytes      |
//! | `users`        | user                             | [`UserRecord`]                     |
//! | `rooms`        | room key                         | [`RoomRecord`]                     |
//! | `room_members` | (room key, user)                 | the member's display [`Username`]  |
//! | `memberships`  | (user, canonical room name)      | the room's key and display name    |
//! | `message_ids`  | (room key, message id bytes)     | `u64` seq (per-room id uniqueness) |
//! | `messages`     | (room key, seq)                  | id, sender, server time and every copy |
//! | `member_first_seq` | (room key, user)             | first seq the member can hold      |
//! | `key_history`  | (user, rotation number)          | an encoded [`RotationCertificate`] |
//! | `owned_rooms`  | (owner, room)                    | `()`: counts a user's rooms for the rooms-per-user quota |
//! | `room_seq_floor` | room key                       | `u64`: the last seq retention deleted (`retention.rs`) |
//! | `room_bans`    | (room key, user)                 | `()`: the room's ban list          |
//! | `read_markers` | (room key, user)                 | `u64`: the highest seq the member marked read |
//! | `blocks`       | (user, blocked user)             | `()`: the user's block list        |
//! | `tombstones`   | user                             | `()`: a deleted account, whose name stays reserved |
//!
//! `owned_rooms` entries written since protocol 4 are (owner, `#` and the owner's count
//! before it, zero-padded), not (owner, room key): a room that is deleted or moves keeps
//! counting against its creator, and a later room under the same key by the same creator
//! is counted again. (`#` is in no room key, so these never meet older entries.)
//!
//! Moving a room to another key ([`Store::move_room`]) moves its entries in every table
//! keyed by room key, and rewrites its members' `memberships` values, in one write
//! transaction; deleting a room deletes them all in one.
//! Schema 5 added roles, topics and kinds to room records; schema 4 records are rewritten
//! on open.
//!
//! Room keys are [`RoomKey`]s: a public room's canonical name, or a key in a hidden
//! namespace (see [`super`]). `memberships` is keyed by the room's canonical *name*, not
//! its key, so it both resolves "the room named X that this user is in" in one lookup
//! and makes "one room per name per member" a uniqueness check inside the write.
//!
//! The server id and the room secret are generated in the transaction that creates the
//! tables, so a data directory has them from its first open on (a directory made by an
//! older version gets them the first time this version opens it). Schema 3 (before
//! hidden namespaces) is migrated in place on open: its `user_rooms` table, keyed by
//! (user, room key), becomes `memberships`; in schema 3 every room key was the room's
//! canonical name, so each entry keeps its key. A key rotation is one write transaction that
//! checks the current key, replaces it, appends the certificate under the user's next
//! rotation number and deletes the numbers that fell out of the newest
//! [`MAX_KEY_HISTORY`]. The room listing walks `rooms` in key order from the page's lower
//! bound and stops once it has one room more than the page holds.
//!
//! A room's last sequence number is the last key of its `messages` range, so there is no
//! separate counter to drift. A message and all its copies are one value, appended at the
//! right edge of the room's range: an append writes one entry however many recipients
//! there are (earlier layouts with one entry per copy cost several times the write CPU;
//! `docs/PERFORMANCE.md` has the measurements). History for one recipient walks the room's
//! messages newest first, down to the first sequence number the member could hold
//! (`member_first_seq`); each value is read without copying (the copies borrow from the
//! stored bytes) and only the recipient's own copy is taken out.

use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shared::crypto::rotation::RotationCertificate;
use shared::protocol::{codec, DeliveredMessage, Envelope, MAX_KEY_HISTORY, MAX_ROOM_MEMBERS};
use shared::{MessageId, RoomName, ServerId, Username};
use tokio::sync::{mpsc, oneshot};

use super::disk::{DbHandle, Disk};

mod account;
mod admin;
mod retention;
mod rooms;
use super::{
    HistorySlice, Membership, NewMessage, PendingAppend, Retention, RoomKey, RoomListing, RoomPage,
    RoomQuery, RoomRecord, RoomSecret, RoomUpdate, Store, StoreError, StoreStats, UserRecord,
    HIDDEN_KEY_MARK,
};

/// The adapter's name in errors, logs and `/health`.
pub const STORE: &str = "embedded";

/// Messages one `history_for` call looks at, at most (and [`HISTORY_SCAN_BYTES`] of them):
/// the bound on one history request's reading, whatever gaps the recipient's history has.
const HISTORY_SCAN_ENTRIES: usize = 4096;

/// Stored bytes one `history_for` call reads, at most (a message may hold 4 MiB of copies).
const HISTORY_SCAN_BYTES: usize = 64 * 1024 * 1024;

/// The database file inside the data directory.
const DB_FILE: &str = "chat.redb";

/// The layout this code reads and writes; bumped on incompatible changes.
const SCHEMA_VERSION: u64 = 5;
/// The layout before room records had kinds, roles and topics, which
/// [`EmbeddedStore::open`] migrates.
const SCHEMA_BEFORE_ROLES: u64 = 4;
/// The layout before hidden namespaces, which [`EmbeddedStore::open`] migrates.
const SCHEMA_BEFORE_NAMESPACES: u64 = 3;
const SCHEMA_KEY: &str = "schema_version";
const SERVER_ID_KEY: &str = "server_id";
const ROOM_SECRET_KEY: &str = "room_secret";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const IDENTITY: TableDefinition<&str, [u8; 16]> = TableDefinition::new("identity");
const SECRETS: TableDefinition<&str, [u8; 32]> = TableDefinition::new("secrets");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");
const ROOM_MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("room_members");
const MEMBERSHIPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("memberships");
/// Schema 3's (user, room key) → display room name; read once by the migration.
const USER_ROOMS_V3: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("user_rooms");
const MESSAGE_IDS: TableDefinition<(&str, &[u8; 16]), u64> = TableDefinition::new("message_ids");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const FIRST_SEQ: TableDefinition<(&str, &str), u64> = TableDefinition::new("member_first_seq");
const KEY_HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("key_history");
const OWNED_ROOMS: TableDefinition<(&str, &str), ()> = TableDefinition::new("owned_rooms");
const BANS: TableDefinition<(&str, &str), ()> = TableDefinition::new("room_bans");
const READ_MARKERS: TableDefinition<(&str, &str), u64> = TableDefinition::new("read_markers");
const BLOCKS: TableDefinition<(&str, &str), ()> = TableDefinition::new("blocks");
const TOMBSTONES: TableDefinition<&str, ()> = TableDefinition::new("tombstones");
/// Set once `owned_rooms` holds every room: a data directory made before the table
/// existed has it filled from `rooms` on its first open by this version.
const OWNED_ROOMS_FILLED_KEY: &str = "owned_rooms_filled";

/// A `memberships` value: where the user's room of that name is stored, and its display
/// name.
#[derive(Serialize, Deserialize)]
struct StoredMembership {
    key: String,
    name: RoomName,
}

impl StoredMembership {
    fn into_membership(self) -> Membership {
        Membership {
            key: RoomKey::from_stored(self.key),
            name: self.name,
        }
    }
}

/// A message as `messages` stores it: its metadata and every recipient's copy.
#[derive(Serialize)]
struct MessageRecord<'a> {
    message_id: MessageId,
    sender: &'a Username,
    server_time_ms: u64,
    copies: &'a [Envelope],
}

/// A stored [`MessageRecord`] read back without copying the copies' bytes.
#[derive(Deserialize)]
struct MessageView<'a> {
    message_id: MessageId,
    sender: Username,
    server_time_ms: u64,
    #[serde(borrow)]
    copies: Vec<EnvelopeView<'a>>,
}

/// An [`Envelope`] borrowed from stored bytes; it has the same encoding.
#[derive(Deserialize)]
struct EnvelopeView<'a> {
    recipient: &'a str,
    wrapped_key: &'a [u8],
    nonce: [u8; 12],
    ciphertext: &'a [u8],
}

impl MessageView<'_> {
    /// Everyone the message has a copy for, in the order of the copies.
    fn recipients(&self) -> Result<Vec<Username>, StoreError> {
        self.copies
            .iter()
            .map(|c| Username::parse(c.recipient).map_err(backend))
            .collect()
    }

    /// `user`'s copy (by canonical name), if the message has one.
    fn copy_for(&self, user_key: &str) -> Result<Option<Envelope>, StoreError> {
        self.copies
            .iter()
            .find(|c| c.is_for(user_key))
            .map(EnvelopeView::to_envelope)
            .transpose()
    }
}

impl EnvelopeView<'_> {
    /// Whether this copy is for the user with canonical name `user_key`.
    fn is_for(&self, user_key: &str) -> bool {
        self.recipient.eq_ignore_ascii_case(user_key)
    }

    /// The copy as an owned [`Envelope`].
    fn to_envelope(&self) -> Result<Envelope, StoreError> {
        Ok(Envelope {
            recipient: Username::parse(self.recipient).map_err(backend)?,
            wrapped_key: self.wrapped_key.to_vec(),
            nonce: self.nonce,
            ciphertext: self.ciphertext.to_vec(),
        })
    }
}

/// Crash-safe storage in a single redb file; see the module docs for the layout.
pub struct EmbeddedStore {
    handle: Arc<DbHandle>,
    appends: AppendWriter,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.handle.path())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir`, creating the directory and `dir/chat.redb` if missing.
    ///
    /// This blocks (file I/O, and redb's recovery after an unclean shutdown), so call it
    /// at startup or from a blocking context.
    ///
    /// # Errors
    /// [`StoreError::Backend`] if the directory cannot be created, the file is not a redb
    /// database, another process has it open, or it was written by an incompatible schema.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// [`open`](Self::open) with a page cache of `cache_bytes`. Under write load memory
    /// grows to about this and stops; a larger cache serves more history from memory.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        Self::open_disk(dir, cache_bytes, Disk::File)
    }

    /// [`open`](Self::open) on a disk whose writes fail when the test says so.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    #[cfg(any(test, feature = "test-util"))]
    pub fn open_on(dir: &Path, disk: super::disk::faults::FaultyDisk) -> Result<Self, StoreError> {
        Self::open_disk(dir, DEFAULT_CACHE_BYTES, Disk::Faulty(disk))
    }

    fn open_disk(dir: &Path, cache_bytes: usize, disk: Disk) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let handle = DbHandle::open(&dir.join(DB_FILE), cache_bytes, disk)?;
        write_txn(&*handle.db()?, |txn| {
            // The version decides whether the other tables can be read at all.
            let mut meta = txn.open_table(META).map_err(backend)?;
            let found = meta.get(SCHEMA_KEY).map_err(backend)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(backend)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(SCHEMA_BEFORE_NAMESPACES) => {
                    migrate_memberships(txn)?;
                    migrate_room_records(txn)?;
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(backend)?;
                }
                Some(SCHEMA_BEFORE_ROLES) => {
                    migrate_room_records(txn)?;
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(backend)?;
                }
                Some(other) => {
                    return Err(backend(format!(
                        "{DB_FILE} has schema version {other}, this server reads {SCHEMA_VERSION}; \
                         start with an empty data directory"
                    )))
                }
            }
            // The server id: made once, in the same transaction as the tables.
            let mut identity = txn.open_table(IDENTITY).map_err(backend)?;
            if identity.get(SERVER_ID_KEY).map_err(backend)?.is_none() {
                identity
                    .insert(SERVER_ID_KEY, ServerId::random().0)
                    .map_err(backend)?;
            }
            // The room secret likewise: every hidden room's key depends on it.
            let mut secrets = txn.open_table(SECRETS).map_err(backend)?;
            if secrets.get(ROOM_SECRET_KEY).map_err(backend)?.is_none() {
                secrets
                    .insert(ROOM_SECRET_KEY, RoomSecret::random().to_bytes())
                    .map_err(backend)?;
            }
            // Create every table up front, so read transactions never meet a missing one.
            txn.open_table(USERS).map_err(backend)?;
            txn.open_table(ROOMS).map_err(backend)?;
            txn.open_table(ROOM_MEMBERS).map_err(backend)?;
            txn.open_table(MEMBERSHIPS).map_err(backend)?;
            txn.open_table(MESSAGE_IDS).map_err(backend)?;
            txn.open_table(MESSAGES).map_err(backend)?;
            txn.open_table(FIRST_SEQ).map_err(backend)?;
            txn.open_table(KEY_HISTORY).map_err(backend)?;
            txn.open_table(BANS).map_err(backend)?;
            txn.open_table(READ_MARKERS).map_err(backend)?;
            txn.open_table(BLOCKS).map_err(backend)?;
            txn.open_table(TOMBSTONES).map_err(backend)?;
            if meta.get(OWNED_ROOMS_FILLED_KEY).map_err(backend)?.is_none() {
                fill_owned_rooms(txn)?;
                meta.insert(OWNED_ROOMS_FILLED_KEY, 1).map_err(backend)?;
            }
            Ok(())
        })?;
        let handle = Arc::new(handle);
        let appends = AppendWriter::start(Arc::clone(&handle))?;
        Ok(Self { handle, appends })
    }

    /// The database file's path, for logs.
    pub fn path(&self) -> &Path {
        self.handle.path()
    }

    /// Notes a failed operation: a disk failure starts an outage, which the writer thread
    /// probes until the store can write again.
    fn note(&self, result: &Result<impl Sized, StoreError>) {
        if let Err(err) = result {
            if self.handle.failed(err) {
                self.appends.recover();
            }
        }
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on the calling thread. Only
    /// for small reads (a point lookup, or a scan bounded by a few entries) of pages that
    /// are nearly always in memory: there the hop to the blocking pool costs more than the
    /// read itself.
    fn read_now<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self
            .handle
            .db()
            .and_then(|db| db.begin_read().map_err(backend))
            .and_then(|txn| f(&txn));
        self.note(&result);
        result
    }

    /// Runs `f` in a read transaction (a consistent snapshot) on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.handle.db()?;
        let result = blocking(move || {
            let txn = db.begin_read().map_err(backend)?;
            f(&txn)
        })
        .await;
        self.note(&result);
        result
    }

    /// Runs `f` in one durable write transaction on the blocking pool; see [`write_txn`].
    /// During an outage it is refused at once.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        self.handle.check_writable()?;
        let db = self.handle.db()?;
        let result = blocking(move || write_txn(&db, f)).await;
        self.note(&result);
        result
    }
}

/// Runs blocking redb work off the async workers.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(backend)?
}

/// Runs `f` in a write transaction and commits it durably if `f` succeeds; otherwise the
/// transaction is aborted and nothing `f` wrote becomes visible.
fn write_txn<T>(
    db: &Database,
    f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    match f(&txn) {
        Ok(value) => {
            txn.commit().map_err(backend)?;
            Ok(value)
        }
        Err(err) => {
            if let Err(abort) = txn.abort() {
                tracing::warn!(error = %abort, "aborting a redb write transaction failed");
            }
            Err(err)
        }
    }
}

/// Moves schema 3's `user_rooms` entries into `memberships` and deletes the old table.
/// Schema 3 stored every room under its canonical name, so the name is also the key.
fn migrate_memberships(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut entries = Vec::new();
    {
        let old = txn.open_table(USER_ROOMS_V3).map_err(backend)?;
        for entry in old.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let (user, room) = key.value();
            let name: RoomName = decode(value.value())?;
            entries.push((user.to_owned(), room.to_owned(), name));
        }
    }
    let mut memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
    for (user, room, name) in &entries {
        let value = encode(&StoredMembership {
            key: room.clone(),
            name: name.clone(),
        })?;
        memberships
            .insert((user.as_str(), room.as_str()), value.as_slice())
            .map_err(backend)?;
    }
    txn.delete_table(USER_ROOMS_V3).map_err(backend)?;
    tracing::info!(
        memberships = entries.len(),
        "embedded store migrated to schema {SCHEMA_VERSION}"
    );
    Ok(())
}

/// A room record as schemas 3 and 4 stored it, before kinds, roles and topics.
#[derive(Serialize, Deserialize)]
struct RoomRecordV4 {
    name: RoomName,
    owner: Username,
    password_hash: Option<String>,
    hidden: bool,
    created_at_ms: u64,
}

/// Rewrites every room record from the schema 4 layout: a group room with no admins and
/// no topic.
fn migrate_room_records(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut rooms = txn.open_table(ROOMS).map_err(backend)?;
    let mut rewritten = Vec::new();
    for entry in rooms.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let old: RoomRecordV4 = decode(value.value())?;
        let record = RoomRecord::group(
            old.name,
            old.owner,
            old.password_hash,
            old.hidden,
            old.created_at_ms,
        );
        rewritten.push((key.value().to_owned(), encode(&record)?));
    }
    for (key, bytes) in &rewritten {
        rooms
            .insert(key.as_str(), bytes.as_slice())
            .map_err(backend)?;
    }
    tracing::info!(
        rooms = rewritten.len(),
        "embedded store room records migrated to schema {SCHEMA_VERSION}"
    );
    Ok(())
}

/// Maps an error into the store's: a redb failure to use the disk (I/O, or an earlier I/O
/// failure redb has latched) is [`StoreError::Unavailable`], anything else
/// [`StoreError::Backend`]. The redb error stays the source, with its I/O cause reachable
/// (redb's own errors do not expose it), so logs and
/// [`StoreError::is_storage_full`] see an ENOSPC.
pub(super) fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    match into_redb(source.into()) {
        Ok(err) => {
            let unavailable = matches!(
                err,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            );
            let source = Box::new(RedbFailure(err));
            if unavailable {
                StoreError::Unavailable {
                    store: STORE,
                    source,
                }
            } else {
                StoreError::Backend {
                    store: STORE,
                    source,
                }
            }
        }
        Err(source) => StoreError::Backend {
            store: STORE,
            source,
        },
    }
}

/// The error as a [`redb::Error`], if it is one of redb's error types.
fn into_redb(
    source: Box<dyn std::error::Error + Send + Sync>,
) -> Result<redb::Error, Box<dyn std::error::Error + Send + Sync>> {
    fn take<E: std::error::Error + Send + Sync + 'static + Into<redb::Error>>(
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> Result<redb::Error, Box<dyn std::error::Error + Send + Sync>> {
        source.downcast::<E>().map(|e| (*e).into())
    }
    let source = match take::<redb::Error>(source) {
        Ok(err) => return Ok(err),
        Err(source) => source,
    };
    take::<redb::StorageError>(source)
        .or_else(take::<redb::CommitError>)
        .or_else(take::<redb::TransactionError>)
        .or_else(take::<redb::TableError>)
        .or_else(take::<redb::DatabaseError>)
        .or_else(take::<redb::SetDurabilityError>)
}

/// A redb error whose I/O cause, if any, is its `source`.
#[derive(Debug)]
struct RedbFailure(redb::Error);

impl fmt::Display for RedbFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            redb::Error::Io(_) => f.write_str("redb I/O failure"),
            other => write!(f, "redb: {other}"),
        }
    }
}

impl std::error::Error for RedbFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            redb::Error::Io(io) => Some(io),
            _ => None,
        }
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    codec::encode(value).map_err(backend)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(backend)
}

/// The smallest string greater than every string that has `key` as its first tuple
/// element, i.e. the exclusive upper bound of a scan over `(key, _)`.
fn successor(key: &str) -> String {
    format!("{key}\0")
}

/// The second elements of the `(first, _)` range of a two-string-key set table, as
/// usernames (they are canonical names).
fn canonical_names<Tbl>(table: &Tbl, first: &str) -> Result<Vec<Username>, StoreError>
where
    Tbl: ReadableTable<(&'static str, &'static str), ()>,
{
    let end = successor(first);
    let mut out = Vec::new();
    for entry in table
        .range((first, "")..(end.as_str(), ""))
        .map_err(backend)?
    {
        let (key, _) = entry.map_err(backend)?;
        out.push(Username::parse(key.value().1).map_err(backend)?);
    }
    Ok(out)
}

/// Every `(second, value)` in the `(first, _)` range of a two-string-key table, in key
/// order, with the values decoded.
fn scan_pairs<T, Tbl>(table: &Tbl, first: &str) -> Result<Vec<(String, T)>, StoreError>
where
    T: DeserializeOwned,
    Tbl: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    let end = successor(first);
    let range = table
        .range((first, "")..(end.as_str(), ""))
        .map_err(backend)?;
    let mut out = Vec::new();
    for entry in range {
        let (key, value) = entry.map_err(backend)?;
        let second = key.value().1.to_owned();
        out.push((second, decode(value.value())?));
    }
    Ok(out)
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        STORE
    }

    async fn server_id(&self) -> Result<ServerId, StoreError> {
        self.read_now(|txn| {
            let identity = txn.open_table(IDENTITY).map_err(backend)?;
            let found = identity.get(SERVER_ID_KEY).map_err(backend)?;
            found
                .map(|v| ServerId(v.value()))
                .ok_or_else(|| backend(format!("{DB_FILE} has no server id")))
        })
    }

    async fn room_secret(&self) -> Result<RoomSecret, StoreError> {
        self.read_now(|txn| {
            let secrets = txn.open_table(SECRETS).map_err(backend)?;
            let found = secrets.get(ROOM_SECRET_KEY).map_err(backend)?;
            found
                .map(|v| RoomSecret::from_bytes(v.value()))
                .ok_or_else(|| backend(format!("{DB_FILE} has no room secret")))
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.handle.check_writable()?;
        self.read(|txn| {
            txn.open_table(META).map_err(backend)?;
            Ok(())
        })
        .await
        .map_err(|err| match err {
            StoreError::Backend { store, source } => StoreError::Unavailable { store, source },
            other => other,
        })
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        let key = user.username.canonical();
        let bytes = encode(&user)?;
        self.write(move |txn| {
            let mut users = txn.open_table(USERS).map_err(backend)?;
            if users.get(key.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            // A deleted account's name stays reserved.
            let tombstones = txn.open_table(TOMBSTONES).map_err(backend)?;
            if tombstones.get(key.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            users
                .insert(key.as_str(), bytes.as_slice())
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn find_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let key = username.canonical();
        self.read_now(|txn| {
            let users = txn.open_table(USERS).map_err(backend)?;
            let found = users.get(key.as_str()).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
    }

    async fn rotate_key(
        &self,
        username: &Username,
        certificate: &RotationCertificate,
    ) -> Result<(), StoreError> {
        let key = username.canonical();
        let stored = encode(certificate)?;
        let (expected, new_key) = (
            certificate.old_public_key.clone(),
            certificate.new_public_key.clone(),
        );
        self.write(move |txn| {
            let key = key.as_str();
            let mut users = txn.open_table(USERS).map_err(backend)?;
            let mut user: UserRecord = match users.get(key).map_err(backend)? {
                Some(v) => decode(v.value())?,
                None => return Err(StoreError::NotFound),
            };
            if user.public_key != expected {
                return Err(StoreError::Conflict);
            }
            user.public_key = new_key;
            users
                .insert(key, encode(&user)?.as_slice())
                .map_err(backend)?;
            let mut history = txn.open_table(KEY_HISTORY).map_err(backend)?;
            let last = history
                .range((key, 0)..=(key, u64::MAX))
                .map_err(backend)?
                .next_back()
                .transpose()
                .map_err(backend)?
                .map_or(0, |(k, _)| k.value().1);
            let number = last
                .checked_add(1)
                .ok_or_else(|| backend("rotation numbers exhausted"))?;
            history
                .insert((key, number), stored.as_slice())
                .map_err(backend)?;
            // Keep the newest MAX_KEY_HISTORY: numbers up to `number - MAX_KEY_HISTORY` go.
            let keep = u64::try_from(MAX_KEY_HISTORY).unwrap_or(u64::MAX);
            if let Some(oldest_dropped) = number.checked_sub(keep) {
                history
                    .retain_in((key, 0)..=(key, oldest_dropped), |_, _| false)
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn key_history(
        &self,
        username: &Username,
    ) -> Result<Vec<RotationCertificate>, StoreError> {
        let key = username.canonical();
        // Up to MAX_KEY_HISTORY certificates of a few hundred kilobytes at most: not a
        // small read, so it goes to the blocking pool.
        self.read(move |txn| {
            let key = key.as_str();
            let users = txn.open_table(USERS).map_err(backend)?;
            if users.get(key).map_err(backend)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let history = txn.open_table(KEY_HISTORY).map_err(backend)?;
            let mut out = Vec::new();
            for entry in history.range((key, 0)..=(key, u64::MAX)).map_err(backend)? {
                let (_, value) = entry.map_err(backend)?;
                out.push(decode(value.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn create_room(
        &self,
        key: &RoomKey,
        room: RoomRecord,
        quota: usize,
    ) -> Result<(), StoreError> {
        let room_key = key.as_str().to_owned();
        let owner_key = room.owner.canonical();
        let room_bytes = encode(&room)?;
        // redb has one writer at a time: the count and the insert below are one atomic step.
        self.write(move |txn| {
            let owned = owned_rooms(txn, &owner_key, quota)?;
            if owned >= quota {
                return Err(StoreError::QuotaExceeded);
            }
            if let Some(held) = membership_of(txn, &owner_key, &room.name)? {
                return Err(if held.key == room_key {
                    StoreError::AlreadyExists
                } else {
                    StoreError::NameInUse
                });
            }
            let mut rooms = txn.open_table(ROOMS).map_err(backend)?;
            if rooms.get(room_key.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::AlreadyExists);
            }
            rooms
                .insert(room_key.as_str(), room_bytes.as_slice())
                .map_err(backend)?;
            // Numbered, not keyed by the room: the entry stays when the room is deleted
            // or moves, and a later room under this key counts again. (`owned` is exact
            // here: it is below the quota it was counted up to.)
            let entry = format!("#{owned:020}");
            txn.open_table(OWNED_ROOMS)
                .map_err(backend)?
                .insert((owner_key.as_str(), entry.as_str()), ())
                .map_err(backend)?;
            let owner = display_username(txn, &owner_key, room.owner)?;
            insert_membership(txn, &room_key, &room.name, &owner_key, &owner)
        })
        .await
    }

    async fn owned_room_count(&self, owner: &Username) -> Result<usize, StoreError> {
        let owner_key = owner.canonical();
        self.read(move |txn| {
            let owned = txn.open_table(OWNED_ROOMS).map_err(backend)?;
            count_owned(&owned, &owner_key, usize::MAX)
        })
        .await
    }

    async fn find_room(&self, key: &RoomKey) -> Result<Option<RoomRecord>, StoreError> {
        self.read_now(|txn| {
            let rooms = txn.open_table(ROOMS).map_err(backend)?;
            let found = rooms.get(key.as_str()).map_err(backend)?;
            found.map(|v| decode(v.value())).transpose()
        })
    }

    async fn room_of(
        &self,
        user: &Username,
        name: &RoomName,
    ) -> Result<Option<Membership>, StoreError> {
        let (user_key, name_key) = (user.canonical(), name.canonical());
        self.read_now(|txn| {
            let memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
            let found = memberships
                .get((user_key.as_str(), name_key.as_str()))
                .map_err(backend)?;
            Ok(found
                .map(|v| decode::<StoredMembership>(v.value()))
                .transpose()?
                .map(StoredMembership::into_membership))
        })
    }

    async fn list_public_rooms(&self, query: &RoomQuery) -> Result<RoomPage, StoreError> {
        if query.filter.as_ref().is_some_and(|f| !f.can_match()) {
            return Ok(RoomPage {
                rooms: Vec::new(),
                more: false,
            });
        }
        let after = query.after.as_ref().map(RoomName::canonical);
        let filter = query.filter.clone();
        let limit = query.limit;
        self.read(move |txn| {
            let rooms = txn.open_table(ROOMS).map_err(backend)?;
            let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
            let lower = match &after {
                Some(after) => Bound::Excluded(after.as_str()),
                None => Bound::Unbounded,
            };
            // Hidden namespaces start at the mark and run to the end: never entered.
            let mark = HIDDEN_KEY_MARK.to_string();
            let upper = Bound::Excluded(mark.as_str());
            let mut page = Vec::new();
            let mut more = false;
            for entry in rooms.range::<&str>((lower, upper)).map_err(backend)? {
                let (key, value) = entry.map_err(backend)?;
                let key = key.value();
                if filter.as_ref().is_some_and(|f| !f.matches(key)) {
                    continue;
                }
                let room: RoomRecord = decode(value.value())?;
                if room.hidden {
                    continue;
                }
                if page.len() == limit {
                    more = true;
                    break;
                }
                let members = scan_pairs::<Username, _>(&members, key)?
                    .into_iter()
                    .map(|(_, name)| name)
                    .collect();
                page.push(RoomListing { room, members });
            }
            Ok(RoomPage { rooms: page, more })
        })
        .await
    }

    async fn add_member(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError> {
        let room_key = room.as_str().to_owned();
        let user_key = user.canonical();
        let user = user.clone();
        self.write(move |txn| {
            let record: RoomRecord = {
                let rooms = txn.open_table(ROOMS).map_err(backend)?;
                let found = rooms.get(room_key.as_str()).map_err(backend)?;
                match found {
                    Some(v) => decode(v.value())?,
                    None => return Err(StoreError::NotFound),
                }
            };
            {
                let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
                let key = (room_key.as_str(), user_key.as_str());
                if members.get(key).map_err(backend)?.is_some() {
                    return Ok(false);
                }
                let end = successor(&room_key);
                let count = members
                    .range((room_key.as_str(), "")..(end.as_str(), ""))
                    .map_err(backend)?
                    .count();
                if count >= MAX_ROOM_MEMBERS {
                    return Err(StoreError::RoomFull);
                }
            }
            let banned = txn
                .open_table(BANS)
                .map_err(backend)?
                .get((room_key.as_str(), user_key.as_str()))
                .map_err(backend)?
                .is_some();
            if banned {
                return Err(StoreError::Banned);
            }
            if membership_of(txn, &user_key, &record.name)?.is_some() {
                return Err(StoreError::NameInUse);
            }
            let display = display_username(txn, &user_key, user)?;
            insert_membership(txn, &room_key, &record.name, &user_key, &display)?;
            Ok(true)
        })
        .await
    }

    async fn remove_member(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError> {
        let room_key = room.as_str().to_owned();
        let user_key = user.canonical();
        self.write(move |txn| {
            let Some(mut record) = rooms::read_room(txn, &room_key)? else {
                return Ok(false);
            };
            let was_member = rooms::drop_membership(txn, &room_key, &mut record, &user_key)?;
            if was_member {
                rooms::write_room(txn, &room_key, &record)?;
            }
            Ok(was_member)
        })
        .await
    }

    async fn hand_over(
        &self,
        room: &RoomKey,
        leaver: &Username,
    ) -> Result<Option<Username>, StoreError> {
        let (room_key, leaver) = (room.as_str().to_owned(), leaver.clone());
        self.write(move |txn| rooms::hand_over(txn, &room_key, &leaver))
            .await
    }

    async fn update_room(
        &self,
        room: &RoomKey,
        update: RoomUpdate,
    ) -> Result<RoomRecord, StoreError> {
        let room_key = room.as_str().to_owned();
        self.write(move |txn| rooms::update_room(txn, &room_key, update))
            .await
    }

    async fn move_room(
        &self,
        from: &RoomKey,
        to: &RoomKey,
        hidden: bool,
        password_hash: Option<String>,
    ) -> Result<(), StoreError> {
        let (from, to) = (from.as_str().to_owned(), to.as_str().to_owned());
        self.write(move |txn| rooms::move_room(txn, &from, &to, hidden, password_hash))
            .await
    }

    async fn delete_room(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        let room_key = room.as_str().to_owned();
        self.write(move |txn| rooms::delete_room(txn, &room_key))
            .await
    }

    async fn ban(
        &self,
        room: &RoomKey,
        user: &Username,
        max_bans: usize,
    ) -> Result<bool, StoreError> {
        let (room_key, user_key) = (room.as_str().to_owned(), user.canonical());
        self.write(move |txn| rooms::ban(txn, &room_key, &user_key, max_bans))
            .await
    }

    async fn unban(&self, room: &RoomKey, user: &Username) -> Result<bool, StoreError> {
        let (room_key, user_key) = (room.as_str().to_owned(), user.canonical());
        self.write(move |txn| {
            rooms::read_room(txn, &room_key)?.ok_or(StoreError::NotFound)?;
            let mut bans = txn.open_table(BANS).map_err(backend)?;
            let removed = bans
                .remove((room_key.as_str(), user_key.as_str()))
                .map_err(backend)?;
            Ok(removed.is_some())
        })
        .await
    }

    async fn bans(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        let room_key = room.as_str();
        self.read_now(|txn| {
            let rooms = txn.open_table(ROOMS).map_err(backend)?;
            if rooms.get(room_key).map_err(backend)?.is_none() {
                return Err(StoreError::NotFound);
            }
            canonical_names(&txn.open_table(BANS).map_err(backend)?, room_key)
        })
    }

    async fn open_direct(
        &self,
        key: &RoomKey,
        room: RoomRecord,
    ) -> Result<Vec<Username>, StoreError> {
        let room_key = key.as_str().to_owned();
        self.write(move |txn| rooms::open_direct(txn, &room_key, room))
            .await
    }

    async fn set_blocked(
        &self,
        user: &Username,
        target: &Username,
        blocked: bool,
        max: usize,
    ) -> Result<bool, StoreError> {
        let (user_key, target_key) = (user.canonical(), target.canonical());
        self.write(move |txn| {
            let mut blocks = txn.open_table(BLOCKS).map_err(backend)?;
            let entry = (user_key.as_str(), target_key.as_str());
            let present = blocks.get(entry).map_err(backend)?.is_some();
            if present == blocked {
                return Ok(false);
            }
            if blocked {
                let end = successor(&user_key);
                let held = blocks
                    .range((user_key.as_str(), "")..(end.as_str(), ""))
                    .map_err(backend)?
                    .take(max)
                    .count();
                if held >= max {
                    return Err(StoreError::QuotaExceeded);
                }
                blocks.insert(entry, ()).map_err(backend)?;
            } else {
                blocks.remove(entry).map_err(backend)?;
            }
            Ok(true)
        })
        .await
    }

    async fn blocked_users(&self, user: &Username) -> Result<Vec<Username>, StoreError> {
        let user_key = user.canonical();
        self.read_now(|txn| canonical_names(&txn.open_table(BLOCKS).map_err(backend)?, &user_key))
    }

    async fn has_blocked(&self, user: &Username, target: &Username) -> Result<bool, StoreError> {
        let (user_key, target_key) = (user.canonical(), target.canonical());
        self.read_now(|txn| {
            let blocks = txn.open_table(BLOCKS).map_err(backend)?;
            let found = blocks
                .get((user_key.as_str(), target_key.as_str()))
                .map_err(backend)?;
            Ok(found.is_some())
        })
    }

    async fn mark_read(
        &self,
        room: &RoomKey,
        user: &Username,
        seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let (room_key, user_key) = (room.as_str().to_owned(), user.canonical());
        self.write(move |txn| {
            rooms::read_room(txn, &room_key)?.ok_or(StoreError::NotFound)?;
            let entry = (room_key.as_str(), user_key.as_str());
            if txn
                .open_table(ROOM_MEMBERS)
                .map_err(backend)?
                .get(entry)
                .map_err(backend)?
                .is_none()
            {
                return Ok(None);
            }
            let newest = last_seq(txn, &txn.open_table(MESSAGES).map_err(backend)?, &room_key)?;
            let target = seq.min(newest);
            let mut markers = txn.open_table(READ_MARKERS).map_err(backend)?;
            let current = markers
                .get(entry)
                .map_err(backend)?
                .map_or(0, |v| v.value());
            if target <= current {
                return Ok(None);
            }
            markers.insert(entry, target).map_err(backend)?;
            Ok(Some(target))
        })
        .await
    }

    async fn read_marker(&self, room: &RoomKey, user: &Username) -> Result<u64, StoreError> {
        let (room_key, user_key) = (room.as_str(), user.canonical());
        self.read_now(|txn| {
            let markers = txn.open_table(READ_MARKERS).map_err(backend)?;
            let found = markers
                .get((room_key, user_key.as_str()))
                .map_err(backend)?;
            Ok(found.map_or(0, |v| v.value()))
        })
    }

    async fn delete_account(&self, user: &Username) -> Result<(), StoreError> {
        let user_key = user.canonical();
        self.write(move |txn| account::delete_account(txn, &user_key))
            .await
    }

    async fn list_users(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let after = after.map(Username::canonical);
        self.read(move |txn| admin::list_users(txn, after.as_deref(), limit))
            .await
    }

    async fn list_all_rooms(
        &self,
        after: Option<&RoomKey>,
        limit: usize,
    ) -> Result<Vec<(RoomKey, RoomListing)>, StoreError> {
        let after = after.map(|k| k.as_str().to_owned());
        self.read(move |txn| admin::list_all_rooms(txn, after.as_deref(), limit))
            .await
    }

    async fn message_count(&self, room: &RoomKey) -> Result<u64, StoreError> {
        let room_key = room.as_str().to_owned();
        self.read(move |txn| admin::message_count(txn, &room_key))
            .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let counts = self.read(admin::counts).await?;
        let bytes = std::fs::metadata(self.handle.path()).ok().map(|m| m.len());
        Ok(StoreStats { bytes, ..counts })
    }

    async fn members(&self, room: &RoomKey) -> Result<Vec<UserRecord>, StoreError> {
        let room_key = room.as_str().to_owned();
        self.read(move |txn| {
            let rooms = txn.open_table(ROOMS).map_err(backend)?;
            if rooms.get(room_key.as_str()).map_err(backend)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
            let users = txn.open_table(USERS).map_err(backend)?;
            let mut out = Vec::new();
            for (user_key, _) in scan_pairs::<Username, _>(&members, &room_key)? {
                match users.get(user_key.as_str()).map_err(backend)? {
                    Some(v) => out.push(decode(v.value())?),
                    // The store does not require members to be registered; one without an
                    // account has no key to report.
                    None => tracing::warn!(room = %room_key, user = %user_key,
                        "room member has no account; left out of members()"),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn member_names(&self, room: &RoomKey) -> Result<Vec<Username>, StoreError> {
        let room_key = room.as_str();
        self.read_now(|txn| {
            let rooms = txn.open_table(ROOMS).map_err(backend)?;
            if rooms.get(room_key).map_err(backend)?.is_none() {
                return Err(StoreError::NotFound);
            }
            let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
            Ok(scan_pairs::<Username, _>(&members, room_key)?
                .into_iter()
                .map(|(_, name)| name)
                .collect())
        })
    }

    async fn rooms_of(&self, user: &Username) -> Result<Vec<Membership>, StoreError> {
        let user_key = user.canonical();
        self.read_now(|txn| {
            let memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
            Ok(scan_pairs::<StoredMembership, _>(&memberships, &user_key)?
                .into_iter()
                .map(|(_, m)| m.into_membership())
                .collect())
        })
    }

    async fn queue_message(&self, message: &NewMessage) -> Result<PendingAppend, StoreError> {
        let record = encode(&MessageRecord {
            message_id: message.message_id,
            sender: &message.sender,
            server_time_ms: message.server_time_ms,
            copies: &message.envelopes,
        })?;
        self.appends
            .queue(AppendJob {
                room_key: message.room.as_str().to_owned(),
                id: message.message_id,
                record,
            })
            .await
    }

    async fn prune_messages(&self, policy: &Retention) -> Result<u64, StoreError> {
        if policy.keeps_everything() {
            return Ok(0);
        }
        let rooms = self
            .read(|txn| {
                let rooms = txn.open_table(ROOMS).map_err(backend)?;
                let mut keys = Vec::new();
                for entry in rooms.iter().map_err(backend)? {
                    keys.push(entry.map_err(backend)?.0.value().to_owned());
                }
                Ok(keys)
            })
            .await?;
        let mut deleted = 0;
        // One write transaction per room: appends to other rooms are not held up for long.
        for room_key in rooms {
            let policy = *policy;
            deleted += self
                .write(move |txn| retention::prune_room(txn, &room_key, &policy))
                .await?;
        }
        Ok(deleted)
    }

    async fn history_for(
        &self,
        room: &RoomKey,
        recipient: &Username,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<HistorySlice, StoreError> {
        let room_key = room.as_str().to_owned();
        let user_key = recipient.canonical();
        let empty = HistorySlice {
            messages: Vec::new(),
            has_more: false,
            next_before: None,
        };
        if before_seq == Some(0) {
            return Ok(empty);
        }
        self.read(move |txn| {
            let rooms = txn.open_table(ROOMS).map_err(backend)?;
            let room_name = match rooms.get(room_key.as_str()).map_err(backend)? {
                Some(v) => decode::<RoomRecord>(v.value())?.name,
                None => return Ok(empty),
            };
            let messages = txn.open_table(MESSAGES).map_err(backend)?;
            let first_seq = txn.open_table(FIRST_SEQ).map_err(backend)?;
            let (r, u) = (room_key.as_str(), user_key.as_str());
            // Walk the room's messages newest first, down to the first one this user could
            // hold a copy of, and pick the ones with a copy for them.
            let floor = first_seq
                .get((r, u))
                .map_err(backend)?
                .map_or(1, |v| v.value());
            let upper = match before_seq {
                Some(before) => Bound::Excluded((r, before)),
                None => Bound::Included((r, u64::MAX)),
            };
            let mut page = Vec::new();
            let mut has_more = false;
            let mut next_before = None;
            // The walk is bounded: a member back after a long absence has a long run of
            // messages without a copy for them, and one request must not read it all.
            let (mut entries, mut bytes) = (0usize, 0usize);
            let walk = messages
                .range((Bound::Included((r, floor)), upper))
                .map_err(backend)?
                .rev();
            for entry in walk {
                let (key, value) = entry.map_err(backend)?;
                let seq = key.value().1;
                if entries == HISTORY_SCAN_ENTRIES || bytes >= HISTORY_SCAN_BYTES {
                    has_more = true;
                    next_before = Some(seq.saturating_add(1));
                    break;
                }
                let stored = value.value();
                entries += 1;
                bytes += stored.len();
                let message: MessageView<'_> = decode(stored)?;
                let Some(envelope) = message.copy_for(u)? else {
                    continue;
                };
                if page.len() == limit {
                    has_more = true;
                    next_before = Some(seq.saturating_add(1));
                    break;
                }
                let recipients = message.recipients()?;
                page.push(DeliveredMessage {
                    room: room_name.clone(),
                    seq,
                    message_id: message.message_id,
                    sender: message.sender,
                    server_time_ms: message.server_time_ms,
                    recipients,
                    envelope,
                });
            }
            page.reverse();
            Ok(HistorySlice {
                messages: page,
                has_more,
                next_before,
            })
        })
        .await
    }
}

/// Fills `owned_rooms` from `rooms` (for a data directory made before it existed).
fn fill_owned_rooms(txn: &WriteTransaction) -> Result<(), StoreError> {
    let rooms = txn.open_table(ROOMS).map_err(backend)?;
    let mut owned = txn.open_table(OWNED_ROOMS).map_err(backend)?;
    for entry in rooms.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let room: RoomRecord = decode(value.value())?;
        owned
            .insert((room.owner.canonical().as_str(), key.value()), ())
            .map_err(backend)?;
    }
    Ok(())
}

/// The display form of `user_key`: the registered account's, or `fallback` when the user
/// has no account (the store does not require one).
/// How many rooms the owner with canonical name `owner_key` created, counting no further
/// than `limit` (a quota check needs to know no more).
fn count_owned(
    owned: &impl ReadableTable<(&'static str, &'static str), ()>,
    owner_key: &str,
    limit: usize,
) -> Result<usize, StoreError> {
    let upper = successor(owner_key);
    let mut count = 0;
    for entry in owned
        .range((owner_key, "")..(upper.as_str(), ""))
        .map_err(backend)?
        .take(limit)
    {
        entry.map_err(backend)?;
        count += 1;
    }
    Ok(count)
}

/// [`count_owned`] inside a write transaction.
fn owned_rooms(txn: &WriteTransaction, owner_key: &str, limit: usize) -> Result<usize, StoreError> {
    count_owned(
        &txn.open_table(OWNED_ROOMS).map_err(backend)?,
        owner_key,
        limit,
    )
}

fn display_username(
    txn: &WriteTransaction,
    user_key: &str,
    fallback: Username,
) -> Result<Username, StoreError> {
    let users = txn.open_table(USERS).map_err(backend)?;
    let found = users.get(user_key).map_err(backend)?;
    match found {
        Some(v) => Ok(decode::<UserRecord>(v.value())?.username),
        None => Ok(fallback),
    }
}

/// The `memberships` entry of `user_key` for rooms named `name` (in any case), inside a
/// write.
fn membership_of(
    txn: &WriteTransaction,
    user_key: &str,
    name: &RoomName,
) -> Result<Option<StoredMembership>, StoreError> {
    let memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
    let name_key = name.canonical();
    let found = memberships
        .get((user_key, name_key.as_str()))
        .map_err(backend)?;
    found.map(|v| decode(v.value())).transpose()
}

/// Writes both directions of a membership of the room under `room_key` named `room_name`.
fn insert_membership(
    txn: &WriteTransaction,
    room_key: &str,
    room_name: &RoomName,
    user_key: &str,
    user: &Username,
) -> Result<(), StoreError> {
    let mut members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
    members
        .insert((room_key, user_key), encode(user)?.as_slice())
        .map_err(backend)?;
    let mut memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
    let name_key = room_name.canonical();
    let value = encode(&StoredMembership {
        key: room_key.to_owned(),
        name: room_name.clone(),
    })?;
    memberships
        .insert((user_key, name_key.as_str()), value.as_slice())
        .map_err(backend)?;
    // The first message a member can hold a copy of; kept across leaving and rejoining, so
    // history scans stop there.
    let mut first = txn.open_table(FIRST_SEQ).map_err(backend)?;
    if first.get((room_key, user_key)).map_err(backend)?.is_none() {
        let next =
            last_seq(txn, &txn.open_table(MESSAGES).map_err(backend)?, room_key)?.saturating_add(1);
        first.insert((room_key, user_key), next).map_err(backend)?;
    }
    Ok(())
}

/// The room's newest sequence number, 0 when it never had messages: its last message's,
/// or the highest one retention deleted when that is higher (numbers are never reused).
fn last_seq(
    txn: &WriteTransaction,
    messages: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    room_key: &str,
) -> Result<u64, StoreError> {
    let stored = messages
        .range((room_key, 0)..=(room_key, u64::MAX))
        .map_err(backend)?
        .next_back()
        .transpose()
        .map_err(backend)?
        .map_or(0, |(key, _)| key.value().1);
    Ok(stored.max(retention::seq_floor(txn, room_key)?))
}

/// One message waiting for the group-commit writer.
struct AppendJob {
    room_key: String,
    id: MessageId,
    /// The encoded [`MessageRecord`].
    record: Vec<u8>,
}

type AppendReply = oneshot::Sender<Result<u64, StoreError>>;

/// The page cache [`EmbeddedStore::open`] gives redb (the server's `STORE_CACHE_MB`
/// default): redb's own default of 1 GiB lets memory grow to that under write load, past
/// what a small PaaS instance has.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 512;

/// How often the writer probes a store that cannot write, with a durable write of its
/// own, to find out whether it can again (a disk that has been freed, say).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The `meta` key the probe writes (a counter, so each probe is a real change).
const PROBE_KEY: &str = "write_probe";

/// What the writer thread is asked to do.
enum WriterJob {
    /// Append one message.
    Append(AppendJob, AppendReply),
    /// Another write failed on the disk: probe (reopening if need be) until it works.
    Recover,
}

/// Group commit for `append_message`, the hot write path, and recovery after a failed
/// write.
///
/// A dedicated thread takes every append that is waiting, writes them all in one write
/// transaction and commits it durably once, then answers each caller. Under load, one
/// fsync is shared by many messages; an idle server commits each message on its own with
/// no added delay. Each job does all its checks (room exists, id unused) before it writes
/// anything, so a job refused for a logical reason leaves no trace and the others still
/// commit. Callers are answered only after the commit, so an acknowledged message is
/// durable.
///
/// When a commit fails, redb cannot say whether it reached the disk. The writer then
/// reopens the database and reads each message of the batch back by id: one that is not
/// there is answered [`StoreError::Unavailable`] (it is not stored, and never will be);
/// one that is there is answered with its sequence number as soon as a probe commit (an
/// fsync of its own) has succeeded, which proves it durable. Until a probe succeeds the
/// store is in an outage ([`DbHandle`]): appends and other writes are refused at once,
/// and the writer probes every [`PROBE_INTERVAL`].
struct AppendWriter {
    tx: Option<mpsc::Sender<WriterJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
    handle: Arc<DbHandle>,
}

impl AppendWriter {
    fn start(handle: Arc<DbHandle>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let thread_handle = Arc::clone(&handle);
        let thread = std::thread::Builder::new()
            .name("redb-group-commit".into())
            .spawn(move || Self::run(&thread_handle, rx))
            .map_err(backend)?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            handle,
        })
    }

    /// Puts `job` in the writer's queue (waiting for room when it is full) and returns the
    /// answer to come. The queue is first-in first-out and each batch is written in queue
    /// order, so jobs get sequence numbers in the order they were queued. During an outage
    /// the job is refused at once.
    async fn queue(&self, job: AppendJob) -> Result<PendingAppend, StoreError> {
        self.handle.check_writable()?;
        let (reply, answer) = oneshot::channel();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| backend("the group-commit writer has stopped"))?;
        tx.send(WriterJob::Append(job, reply))
            .await
            .map_err(|_| backend("the group-commit writer has stopped"))?;
        Ok(Box::pin(async move {
            answer.await.map_err(|_| {
                backend("the store closed before it knew whether the message is durable")
            })?
        }))
    }

    /// Asks the writer to probe until the store can write again (without waiting).
    fn recover(&self) {
        if let Some(tx) = &self.tx {
            // A full queue already holds work that ends in a probe or a recovery.
            let _ = tx.try_send(WriterJob::Recover);
        }
    }

    fn run(handle: &DbHandle, mut rx: mpsc::Receiver<WriterJob>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            let mut recover = false;
            match first {
                WriterJob::Append(job, reply) => batch.push((job, reply)),
                WriterJob::Recover => recover = true,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(WriterJob::Append(job, reply)) => batch.push((job, reply)),
                    Ok(WriterJob::Recover) => recover = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                Self::commit_batch(handle, &mut batch, &mut rx);
            }
            if recover && handle.in_outage() {
                Self::recover_store(handle, Vec::new(), &mut rx);
            }
        }
    }

    fn commit_batch(
        handle: &DbHandle,
        batch: &mut Vec<(AppendJob, AppendReply)>,
        rx: &mut mpsc::Receiver<WriterJob>,
    ) {
        // Jobs queued before an outage began were never tried: nothing of them is stored.
        let db = match handle.check_writable().and_then(|()| handle.db()) {
            Ok(db) => db,
            Err(_) => {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(handle.cannot_write()));
                }
                return;
            }
        };
        let outcome = write_txn(&db, |txn| {
            batch
                .iter()
                .map(|(job, _)| match append_in(txn, job) {
                    Err(err @ (StoreError::Backend { .. } | StoreError::Unavailable { .. })) => {
                        Err(err)
                    }
                    other => Ok(other),
                })
                .collect::<Result<Vec<_>, StoreError>>()
        });
        drop(db);
        match outcome {
            Ok(results) => {
                for ((_, reply), result) in batch.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error.cause_chain = %crate::error::CauseChain(&err), jobs = batch.len(),
                    "group commit failed; finding out which of its messages are durable");
                if !handle.failed(&err) {
                    // Not a disk failure (a corrupt record, say): the commit did not
                    // happen, but whether redb holds anything of it is still only known
                    // after a reopen, so it is settled like one.
                    handle.failed(&StoreError::Unavailable {
                        store: STORE,
                        source: Box::new(err),
                    });
                }
                Self::recover_store(handle, std::mem::take(batch), rx);
            }
        }
    }

    /// Probes, reopening the database when redb refuses to go on, until the store can
    /// write again; meanwhile settles `held` (the jobs of a failed commit) as soon as each
    /// one's fate is known, and refuses the appends queued behind them. Gives up, leaving
    /// the held jobs unanswered (their callers learn that the outcome is unknown), only when
    /// the store is being closed.
    fn recover_store(
        handle: &DbHandle,
        mut held: Vec<(AppendJob, AppendReply)>,
        rx: &mut mpsc::Receiver<WriterJob>,
    ) {
        loop {
            // A probe on the database as it is; redb refuses it after a latched I/O failure,
            // and only a reopen shows what the failed commit left on disk.
            let probed = handle.db().and_then(|db| probe(&db));
            let (db, durable) = match probed {
                Ok(()) => (handle.db().ok(), true),
                Err(_) => match handle.reopen() {
                    Ok(db) => {
                        let durable = probe(&db).is_ok();
                        (Some(db), durable)
                    }
                    Err(err) => {
                        tracing::debug!(error.cause_chain = %crate::error::CauseChain(&err), "reopening the embedded store failed");
                        (None, false)
                    }
                },
            };
            if let Some(db) = db {
                held = settle(&db, held, durable);
            }
            if durable {
                handle.recovered();
                return;
            }
            // Appends queued behind the failure were never tried: nothing of them is stored.
            while let Ok(job) = rx.try_recv() {
                if let WriterJob::Append(_, reply) = job {
                    let _ = reply.send(Err(handle.cannot_write()));
                }
            }
            if rx.is_closed() {
                tracing::error!(
                    unsettled = held.len(),
                    "the embedded store closed before it could write again"
                );
                return;
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
    }
}

/// A durable write of its own: whether the store can write, and an fsync that makes
/// everything before it durable.
fn probe(db: &Database) -> Result<(), StoreError> {
    write_txn(db, |txn| {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let count = meta
            .get(PROBE_KEY)
            .map_err(backend)?
            .map_or(0, |v| v.value());
        meta.insert(PROBE_KEY, count.wrapping_add(1))
            .map_err(backend)?;
        Ok(())
    })
}

/// Answers the jobs of a failed commit whose fate `db` (freshly opened, or probed) shows:
/// a job whose message is not in it is not stored; one whose message is there is answered
/// with its sequence number when `durable` (a probe has since committed), and otherwise
/// kept. A job whose id another message holds is a duplicate. Returns the jobs kept.
fn settle(
    db: &Database,
    held: Vec<(AppendJob, AppendReply)>,
    durable: bool,
) -> Vec<(AppendJob, AppendReply)> {
    let mut kept = Vec::new();
    for (job, reply) in held {
        match stored_seq(db, &job) {
            Ok(Some(Stored::Ours(seq))) if durable => {
                let _ = reply.send(Ok(seq));
            }
            Ok(Some(Stored::Ours(_))) | Err(_) => kept.push((job, reply)),
            Ok(Some(Stored::Other)) => {
                let _ = reply.send(Err(StoreError::AlreadyExists));
            }
            Ok(None) => {
                let _ = reply.send(Err(StoreError::Unavailable {
                    store: STORE,
                    source: "the commit holding the message failed; it is not stored".into(),
                }));
            }
        }
    }
    kept
}

/// What the store holds under a job's message id.
enum Stored {
    /// This very message, at this sequence number.
    Ours(u64),
    /// Another message with the same id.
    Other,
}

/// Looks the job's message up by id and compares the stored record with the job's.
fn stored_seq(db: &Database, job: &AppendJob) -> Result<Option<Stored>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let room_key = job.room_key.as_str();
    let ids = txn.open_table(MESSAGE_IDS).map_err(backend)?;
    let Some(seq) = ids
        .get((room_key, &job.id.0))
        .map_err(backend)?
        .map(|v| v.value())
    else {
        return Ok(None);
    };
    let messages = txn.open_table(MESSAGES).map_err(backend)?;
    let same = messages
        .get((room_key, seq))
        .map_err(backend)?
        .is_some_and(|v| v.value() == job.record.as_slice());
    Ok(Some(if same {
        Stored::Ours(seq)
    } else {
        Stored::Other
    }))
}

impl Drop for AppendWriter {
    /// Closes the queue and waits for the thread to commit what it holds and release the
    /// database, so the file is unlocked once the store is dropped.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks and writes one message inside `txn`. Every check comes before the first write,
/// so a logical refusal (`NotFound`, `AlreadyExists`) leaves the transaction untouched.
fn append_in(txn: &WriteTransaction, job: &AppendJob) -> Result<u64, StoreError> {
    let room_key = job.room_key.as_str();
    let rooms = txn.open_table(ROOMS).map_err(backend)?;
    if rooms.get(room_key).map_err(backend)?.is_none() {
        return Err(StoreError::NotFound);
    }
    let mut ids = txn.open_table(MESSAGE_IDS).map_err(backend)?;
    if ids.get((room_key, &job.id.0)).map_err(backend)?.is_some() {
        return Err(StoreError::AlreadyExists);
    }
    let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
    let seq = last_seq(txn, &messages, room_key)?
        .checked_add(1)
        .ok_or_else(|| backend("message sequence exhausted"))?;
    ids.insert((room_key, &job.id.0), seq).map_err(backend)?;
    messages
        .insert((room_key, seq), job.record.as_slice())
        .map_err(backend)?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::Harness;
    use crate::store::disk::faults::FaultyDisk;
    use tempfile::TempDir;

    /// A fresh store in its own temporary directory, deleted by `finish`.
    struct EmbeddedHarness {
        /// `None` only while `reopen` has closed it and not yet opened it again.
        store: Option<EmbeddedStore>,
        dir: TempDir,
    }

    impl EmbeddedHarness {
        fn embedded(&self) -> &EmbeddedStore {
            self.store.as_ref().expect("the store is open")
        }
    }

    #[async_trait]
    impl Harness for EmbeddedHarness {
        async fn start() -> Self {
            let dir = TempDir::new().expect("temp dir");
            let store = EmbeddedStore::open(dir.path()).expect("open store");
            Self {
                store: Some(store),
                dir,
            }
        }

        fn store(&self) -> &dyn Store {
            self.embedded()
        }

        async fn reopen(&mut self) {
            // The file is locked while open: close it first.
            drop(self.store.take());
            self.store = Some(EmbeddedStore::open(self.dir.path()).expect("reopen store"));
        }

        async fn finish(self) {
            drop(self.store);
            self.dir.close().expect("remove temp dir");
        }
    }

    crate::conformance_tests!(EmbeddedHarness);

    fn name(s: &str) -> Username {
        Username::parse(s).expect("valid username")
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).expect("valid room name")
    }

    fn key(s: &str) -> RoomKey {
        RoomKey::public(&room(s))
    }

    fn envelope(recipient: &str, ciphertext: &[u8]) -> Envelope {
        Envelope {
            recipient: name(recipient),
            wrapped_key: vec![9; 8],
            nonce: [3; 12],
            ciphertext: ciphertext.to_vec(),
        }
    }

    #[tokio::test]
    async fn a_group_commit_keeps_good_appends_and_refuses_bad_ones() {
        let dir = TempDir::new().expect("temp dir");
        let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        store
            .create_user(UserRecord {
                username: name("alice"),
                public_key: vec![1],
                created_at_ms: 0,
            })
            .await
            .expect("user");
        store
            .create_room(
                &key("busy"),
                RoomRecord::group(room("busy"), name("alice"), None, false, 0),
                usize::MAX,
            )
            .await
            .expect("room");
        let reused = MessageId([7; 16]);
        // 60 appends at once: 40 fresh ids, 10 copies of one id, 10 to a missing room.
        let tasks: Vec<_> = (0..60u8)
            .map(|i| {
                let store = Arc::clone(&store);
                let (room_name, id) = match i % 6 {
                    0 => ("busy", reused),
                    1 => ("nowhere", MessageId([i; 16])),
                    _ => ("busy", MessageId([i; 16])),
                };
                tokio::spawn(async move {
                    store
                        .append_message(NewMessage {
                            room: key(room_name),
                            message_id: id,
                            sender: name("alice"),
                            server_time_ms: u64::from(i),
                            envelopes: vec![envelope("alice", &[i])],
                        })
                        .await
                })
            })
            .collect();
        let mut seqs = Vec::new();
        let (mut duplicates, mut missing) = (0, 0);
        for task in tasks {
            match task.await.expect("task") {
                Ok(seq) => seqs.push(seq),
                Err(StoreError::AlreadyExists) => duplicates += 1,
                Err(StoreError::NotFound) => missing += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=41).collect::<Vec<u64>>(),
            "40 fresh + the first reuse"
        );
        assert_eq!((duplicates, missing), (9, 10));
        drop(store);

        // Everything acknowledged is on disk.
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let page = store
            .history_for(&key("busy"), &name("alice"), None, 100)
            .await
            .expect("history");
        assert_eq!(page.messages.len(), 41);
        assert!(!page.has_more);
    }

    /// A store on a faulty disk with user "alice" and room "r"; and a message to it.
    async fn store_on(dir: &Path, disk: &FaultyDisk) -> EmbeddedStore {
        let store = EmbeddedStore::open_on(dir, disk.clone()).expect("open");
        store
            .create_room(
                &key("r"),
                RoomRecord::group(room("r"), name("alice"), None, false, 0),
                usize::MAX,
            )
            .await
            .expect("room");
        store
    }

    fn message(i: u8) -> NewMessage {
        NewMessage {
            room: key("r"),
            message_id: MessageId([i; 16]),
            sender: name("alice"),
            server_time_ms: u64::from(i),
            envelopes: vec![envelope("alice", &[i])],
        }
    }

    /// The message ids (their first byte) in alice's history, after a reopen.
    async fn ids_on_disk(dir: &Path) -> Vec<u8> {
        let store = EmbeddedStore::open(dir).expect("reopen");
        let page = store
            .history_for(&key("r"), &name("alice"), None, 100)
            .await
            .expect("history");
        page.messages.iter().map(|m| m.message_id.0[0]).collect()
    }

    /// Polls `ping` until it succeeds.
    async fn until_healthy(store: &EmbeddedStore) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while store.ping().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the store never recovered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn a_disk_failure_keeps_its_cause_for_the_logs() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let err = backend(redb::CommitError::Storage(redb::StorageError::Io(enospc)));
        assert!(
            matches!(err, StoreError::Unavailable { .. }) && err.is_storage_full(),
            "{err:?}"
        );
        let chain = crate::error::CauseChain(&err).to_string();
        assert!(chain.contains("os error 28"), "{chain}");
        let other = backend(redb::StorageError::Corrupted("bad page".into()));
        assert!(matches!(other, StoreError::Backend { .. }) && !other.is_storage_full());
    }

    #[tokio::test]
    async fn a_commit_reported_failed_but_durable_is_answered_as_stored() {
        let dir = TempDir::new().expect("temp dir");
        let disk = FaultyDisk::new();
        let store = store_on(dir.path(), &disk).await;
        store.append_message(message(1)).await.expect("stored");
        disk.fail_next_commit_after_it_is_durable();
        let answer = store.append_message(message(2)).await;
        assert_eq!(disk.injected(), 1, "the commit's final sync was failed");
        assert_eq!(
            answer.ok(),
            Some(2),
            "it is on disk, so it is answered as stored"
        );
        until_healthy(&store).await;
        assert_eq!(store.append_message(message(3)).await.ok(), Some(3));
        drop(store);
        assert_eq!(ids_on_disk(dir.path()).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_full_disk_refuses_writes_honestly_and_the_store_recovers_when_freed() {
        let dir = TempDir::new().expect("temp dir");
        let disk = FaultyDisk::new();
        let store = Arc::new(store_on(dir.path(), &disk).await);
        store.append_message(message(1)).await.expect("stored");
        disk.fill();
        // The commit fails; whether it reached the disk is known only once the file can be
        // opened again, so the answer waits for that.
        let failed = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.append_message(message(2)).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let health = loop {
            match store.ping().await {
                Err(err) => break err,
                Ok(()) => {
                    assert!(tokio::time::Instant::now() < deadline, "no outage seen");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert!(health.is_storage_full(), "{health:?}");
        // Every write is refused at once while the disk is full.
        let refused = store
            .create_user(UserRecord {
                username: name("bob"),
                public_key: vec![1],
                created_at_ms: 0,
            })
            .await
            .expect_err("refused");
        assert!(matches!(refused, StoreError::Unavailable { .. }));
        let refused = store.append_message(message(3)).await.expect_err("refused");
        assert!(refused.is_storage_full(), "{refused:?}");
        disk.free();
        let failed = tokio::time::timeout(Duration::from_secs(20), failed)
            .await
            .expect("answered once the disk is free")
            .expect("task");
        assert!(
            matches!(failed, Err(StoreError::Unavailable { .. })),
            "not on disk, so not stored: {failed:?}"
        );
        until_healthy(&store).await;
        assert_eq!(store.append_message(message(4)).await.ok(), Some(2));
        let store = Arc::try_unwrap(store).expect("one owner");
        drop(store);
        assert_eq!(
            ids_on_disk(dir.path()).await,
            vec![1, 4],
            "2 and 3 were not stored"
        );
    }

    #[tokio::test]
    async fn history_stops_at_the_first_seq_and_survives_leaving() {
        let dir = TempDir::new().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        for u in ["alice", "bob"] {
            store
                .create_user(UserRecord {
                    username: name(u),
                    public_key: vec![1],
                    created_at_ms: 0,
                })
                .await
                .expect("user");
        }
        let r = key("floor");
        store
            .create_room(
                &r,
                RoomRecord::group(room("floor"), name("alice"), None, false, 0),
                usize::MAX,
            )
            .await
            .expect("room");
        let send = |i: u8, to: &'static [&'static str]| NewMessage {
            room: r.clone(),
            message_id: MessageId([i; 16]),
            sender: name("alice"),
            server_time_ms: 0,
            envelopes: to.iter().map(|u| envelope(u, &[i])).collect(),
        };
        for i in 1..=3 {
            store
                .append_message(send(i, &["alice"]))
                .await
                .expect("append");
        }
        store
            .add_member(&r, &name("bob"))
            .await
            .expect("bob joins at seq 4");
        for i in 4..=5 {
            store
                .append_message(send(i, &["alice", "bob"]))
                .await
                .expect("append");
        }
        store
            .remove_member(&r, &name("bob"))
            .await
            .expect("bob leaves");
        store
            .append_message(send(6, &["alice"]))
            .await
            .expect("append");
        store
            .add_member(&r, &name("bob"))
            .await
            .expect("bob rejoins");
        store
            .append_message(send(7, &["alice", "bob"]))
            .await
            .expect("append");

        let seqs = |slice: HistorySlice| slice.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        let bob = store
            .history_for(&r, &name("bob"), None, 10)
            .await
            .expect("history");
        assert!(!bob.has_more);
        assert_eq!(
            seqs(bob),
            vec![4, 5, 7],
            "copies from before leaving are kept"
        );
        let page = store
            .history_for(&r, &name("bob"), None, 2)
            .await
            .expect("history");
        assert!(page.has_more);
        assert_eq!(seqs(page), vec![5, 7]);
        let alice = store
            .history_for(&r, &name("alice"), Some(7), 10)
            .await
            .expect("history");
        assert_eq!(seqs(alice), vec![1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = TempDir::new().expect("temp dir");
        let data = dir.path().join("nested").join("data");
        {
            let store = EmbeddedStore::open(&data).expect("open");
            for user in ["Alice", "Bob"] {
                store
                    .create_user(UserRecord {
                        username: name(user),
                        public_key: user.as_bytes().to_vec(),
                        created_at_ms: 1,
                    })
                    .await
                    .expect("create user");
            }
            store
                .create_room(
                    &key("Lobby"),
                    RoomRecord::group(
                        room("Lobby"),
                        name("Alice"),
                        Some("$argon2id$stub".into()),
                        true,
                        2,
                    ),
                    usize::MAX,
                )
                .await
                .expect("create room");
            assert!(store
                .add_member(&key("lobby"), &name("bob"))
                .await
                .expect("join"));
            let seq = store
                .append_message(NewMessage {
                    room: key("Lobby"),
                    message_id: MessageId([1; 16]),
                    sender: name("Alice"),
                    server_time_ms: 3,
                    envelopes: vec![envelope("Alice", b"to-a"), envelope("Bob", b"to-b")],
                })
                .await
                .expect("append");
            assert_eq!(seq, 1);
        }

        let store = EmbeddedStore::open(&data).expect("reopen");
        let alice = store.find_user(&name("alice")).await.expect("find");
        assert_eq!(
            alice.map(|u| u.username.as_str().to_owned()),
            Some("Alice".into())
        );
        let lobby = store.find_room(&key("LOBBY")).await.expect("find room");
        assert_eq!(
            lobby.map(|r| (r.name.as_str().to_owned(), r.hidden)),
            Some(("Lobby".into(), true))
        );
        let members: Vec<_> = store
            .members(&key("Lobby"))
            .await
            .expect("members")
            .into_iter()
            .map(|u| u.username.as_str().to_owned())
            .collect();
        assert_eq!(members, ["Alice", "Bob"]);
        let history = store
            .history_for(&key("Lobby"), &name("Bob"), None, 10)
            .await
            .expect("history");
        assert_eq!(history.messages.len(), 1);
        assert_eq!(history.messages[0].envelope.ciphertext, b"to-b");
        // The sequence continues after the reopen rather than restarting.
        let seq = store
            .append_message(NewMessage {
                room: key("Lobby"),
                message_id: MessageId([2; 16]),
                sender: name("Bob"),
                server_time_ms: 4,
                envelopes: vec![envelope("Alice", b"x"), envelope("Bob", b"y")],
            })
            .await
            .expect("append after reopen");
        assert_eq!(seq, 2);
    }

    #[tokio::test]
    async fn stored_bytes_are_the_envelopes_bytes() {
        // A test of the end-to-end "no plaintext on disk" scan: the file does hold the
        // ciphertext bytes verbatim, so a search for a marker would find it if it leaked.
        let h = EmbeddedHarness::start().await;
        let marker = b"opaque-marker-7f3a9c";
        h.embedded()
            .create_room(
                &key("r"),
                RoomRecord::group(room("r"), name("alice"), None, false, 0),
                usize::MAX,
            )
            .await
            .expect("create room");
        h.embedded()
            .append_message(NewMessage {
                room: key("r"),
                message_id: MessageId([5; 16]),
                sender: name("alice"),
                server_time_ms: 0,
                envelopes: vec![envelope("alice", marker)],
            })
            .await
            .expect("append");
        let bytes = std::fs::read(h.embedded().path()).expect("read db file");
        assert!(bytes.windows(marker.len()).any(|w| w == marker));
        h.finish().await;
    }

    /// A data directory written by schema 3 (rooms keyed by name, `user_rooms` keyed by
    /// user and room) opens as schema 4: memberships resolve, a room secret exists, and a
    /// legacy hidden room stays under its name, unlisted.
    #[tokio::test]
    async fn schema_3_is_migrated_on_open() {
        let dir = TempDir::new().expect("temp dir");
        {
            let db = Database::create(dir.path().join(DB_FILE)).expect("create");
            write_txn(&db, |txn| {
                txn.open_table(META)
                    .map_err(backend)?
                    .insert(SCHEMA_KEY, SCHEMA_BEFORE_NAMESPACES)
                    .map_err(backend)?;
                txn.open_table(IDENTITY)
                    .map_err(backend)?
                    .insert(SERVER_ID_KEY, [5; 16])
                    .map_err(backend)?;
                let mut rooms = txn.open_table(ROOMS).map_err(backend)?;
                let mut members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
                let mut user_rooms = txn.open_table(USER_ROOMS_V3).map_err(backend)?;
                for (display, hidden) in [("Den", false), ("Vault", true)] {
                    let record = RoomRecordV4 {
                        name: room(display),
                        owner: name("alice"),
                        password_hash: None,
                        hidden,
                        created_at_ms: 0,
                    };
                    let key = display.to_ascii_lowercase();
                    rooms
                        .insert(key.as_str(), encode(&record)?.as_slice())
                        .map_err(backend)?;
                    members
                        .insert((key.as_str(), "alice"), encode(&name("alice"))?.as_slice())
                        .map_err(backend)?;
                    user_rooms
                        .insert(("alice", key.as_str()), encode(&room(display))?.as_slice())
                        .map_err(backend)?;
                }
                Ok(())
            })
            .expect("write schema 3");
        }
        let store = EmbeddedStore::open(dir.path()).expect("open migrates");
        assert_eq!(store.server_id().await.expect("id"), ServerId([5; 16]));
        store.room_secret().await.expect("a room secret was made");
        let vault = store
            .room_of(&name("alice"), &room("VAULT"))
            .await
            .expect("room_of");
        assert_eq!(
            vault,
            Some(Membership {
                key: key("vault"),
                name: room("Vault"),
            })
        );
        let rooms: Vec<RoomName> = store
            .rooms_of(&name("alice"))
            .await
            .expect("rooms_of")
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(rooms, [room("Den"), room("Vault")]);
        let page = store
            .list_public_rooms(&RoomQuery {
                after: None,
                filter: None,
                limit: 10,
            })
            .await
            .expect("list");
        let listed: Vec<&str> = page.rooms.iter().map(|l| l.room.name.as_str()).collect();
        assert_eq!(listed, ["Den"], "the legacy hidden room stays unlisted");
        assert!(store
            .remove_member(&key("den"), &name("alice"))
            .await
            .expect("leave"));
        assert_eq!(
            store
                .room_of(&name("alice"), &room("den"))
                .await
                .expect("room_of"),
            None
        );
        drop(store);
        // Opening again is a no-op: the schema is current.
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store
                .rooms_of(&name("alice"))
                .await
                .expect("rooms_of")
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_file_fails_cleanly() {
        let h = EmbeddedHarness::start().await;
        let err = EmbeddedStore::open(h.dir.path()).expect_err("file is locked");
        assert!(matches!(
            err,
            StoreError::Backend {
                store: "embedded",
                ..
            }
        ));
        h.finish().await;
    }
}
