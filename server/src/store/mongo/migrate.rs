//! Schema versions and the start-up migrations between them.
//!
//! The database records the layout its documents follow in one `meta` document,
//! `{ _id: "schema", version: NumberLong(n) }`. [`MongoStore::connect`] reads it, refuses a
//! database a newer server has written (it could misread it), brings an older one up to
//! [`SCHEMA_VERSION`], and records the new version last, so a migration cut short is run
//! again by the next start.
//!
//! Every step is idempotent and safe to run from several instances at once: they set
//! fields to values derived from the data, with `$set` of the same value or `$max`, never
//! a blind increment. A database with no schema document predates versioning: version 1.
//!
//! | version | what it added |
//! |---------|---------------|
//! | 1       | (no schema document) everything before versioning |
//! | 2       | every room has `canonical` and a `last_seq` counter; `room_owners` counts each owner's rooms; every message has `recipients`; no collation indexes |
//! | 3       | every room has `key` (its lookup key, uniquely indexed) beside a permanent `_id` that messages refer to; rooms stored before keep their key as their `_id`; `public_by_name` became `public_by_key` |
//!
//! Instances of an older version that keep running during a rolling upgrade do not
//! maintain the new fields: rooms they create are not counted against their owners'
//! quotas. Stop them before starting this version to avoid that.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::Error as DriverError;

use super::errors::is_index_not_found;
use super::{Fields, MongoStore, META};

/// The `_id` of the `meta` document that holds the schema version.
const SCHEMA_DOC: &str = "schema";

/// The layout this code reads and writes.
pub(super) const SCHEMA_VERSION: u64 = 3;

/// The version of a database without a schema document.
const UNVERSIONED: u64 = 1;

/// Indexes earlier versions created that this one does not use, by collection.
/// `rooms.public_by_name` listed rooms by `_id`, which is no longer their key;
/// `rooms.name_ci_unique` made room names unique across namespaces; `rooms.members_user` is
/// covered by `member_rooms`; `rooms.owner_ci` counted owners' rooms before `room_owners`;
/// `users.username_ci_unique` repeated, with a collation, the uniqueness the lowercase
/// `_id` already guarantees, and no query used it (a query uses a collation index only
/// when it names the same collation).
const RETIRED_INDEXES: [(&str, &str); 5] = [
    ("rooms", "public_by_name"),
    ("rooms", "name_ci_unique"),
    ("rooms", "members_user"),
    ("rooms", "owner_ci"),
    ("users", "username_ci_unique"),
];

impl MongoStore {
    /// The database's schema version ([`UNVERSIONED`] without a schema document).
    pub(super) async fn schema_version(&self) -> Result<u64, DriverError> {
        let found = self.meta.find_one(doc! { "_id": SCHEMA_DOC }).await?;
        Ok(match found {
            // A malformed version is treated as unversioned: every step is idempotent.
            Some(d) => Fields::new(META, &d).seq("version").unwrap_or(UNVERSIONED),
            None => UNVERSIONED,
        })
    }

    /// Brings a database at version `found` (at most [`SCHEMA_VERSION`]) up to date.
    pub(super) async fn migrate(&self, found: u64) -> Result<(), DriverError> {
        if found < 2 {
            self.set_room_canonical_names().await?;
            self.count_owned_rooms().await?;
            self.count_room_messages().await?;
            self.fill_recipients().await?;
        }
        if found < 3 {
            self.set_room_keys().await?;
        }
        self.drop_retired_indexes().await?;
        if found < SCHEMA_VERSION {
            let version = i64::try_from(SCHEMA_VERSION).unwrap_or(i64::MAX);
            self.meta
                .update_one(
                    doc! { "_id": SCHEMA_DOC },
                    doc! { "$max": { "version": version } },
                )
                .upsert(true)
                .await?;
            tracing::info!(from = found, to = SCHEMA_VERSION, "MongoDB schema migrated");
        }
        Ok(())
    }

    /// Rooms stored before hidden namespaces get `canonical`: their `_id` was their
    /// canonical name.
    async fn set_room_canonical_names(&self) -> Result<(), DriverError> {
        let rooms = self.copy_room_id_to("canonical").await?;
        if rooms > 0 {
            tracing::info!(rooms, "rooms migrated to name namespaces");
        }
        Ok(())
    }

    /// Rooms stored before internal ids get `key`: their `_id` was their key, and stays
    /// their id (their messages refer to it).
    async fn set_room_keys(&self) -> Result<(), DriverError> {
        let rooms = self.copy_room_id_to("key").await?;
        if rooms > 0 {
            tracing::info!(rooms, "rooms given lookup keys");
        }
        Ok(())
    }

    /// Sets `field` to the room's `_id` in every room that lacks it; returns how many.
    async fn copy_room_id_to(&self, field: &str) -> Result<usize, DriverError> {
        let old: Vec<Document> = self
            .rooms
            .find(doc! { (field): { "$exists": false } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        for d in &old {
            if let Ok(id) = d.get_str("_id") {
                self.rooms
                    .update_one(doc! { "_id": id }, doc! { "$set": { (field): id } })
                    .await?;
            }
        }
        Ok(old.len())
    }

    /// Every owner's `room_owners` counter is raised to the rooms they own (rooms were
    /// never deleted before schema 3, so that is every room they created).
    async fn count_owned_rooms(&self) -> Result<(), DriverError> {
        let mut owned: HashMap<String, i64> = HashMap::new();
        let mut rooms = self
            .rooms
            .find(doc! {})
            .projection(doc! { "_id": 0, "owner": 1 })
            .await?;
        while let Some(d) = rooms.try_next().await? {
            if let Ok(owner) = d.get_str("owner") {
                *owned.entry(owner.to_ascii_lowercase()).or_default() += 1;
            }
        }
        for (owner, rooms) in &owned {
            self.owners
                .update_one(doc! { "_id": owner }, doc! { "$max": { "rooms": rooms } })
                .upsert(true)
                .await?;
        }
        if !owned.is_empty() {
            tracing::info!(owners = owned.len(), "room owners counted");
        }
        Ok(())
    }

    /// Every room's `last_seq` counter is raised to its last stored message's `seq`.
    async fn count_room_messages(&self) -> Result<(), DriverError> {
        let rooms: Vec<Document> = self
            .rooms
            .find(doc! { "last_seq": { "$exists": false } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        for d in &rooms {
            if let Ok(id) = d.get_str("_id") {
                self.raise_seq_counter(id).await?;
            }
        }
        if !rooms.is_empty() {
            tracing::info!(rooms = rooms.len(), "rooms given sequence counters");
        }
        Ok(())
    }

    /// Messages stored before protocol 2 have no `recipients` (every recipient's display
    /// name, in copy order) and cannot be read without it: it is the list of their
    /// copies' `recipient_name`s.
    async fn fill_recipients(&self) -> Result<(), DriverError> {
        let mut old = self
            .messages
            .find(doc! { "recipients": { "$exists": false } })
            .projection(doc! { "copies.recipient_name": 1 })
            .await?;
        let mut filled = 0_u64;
        while let Some(d) = old.try_next().await? {
            let names: Vec<Bson> = d
                .get_array("copies")
                .map(|copies| {
                    copies
                        .iter()
                        .filter_map(|c| c.as_document()?.get("recipient_name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(id) = d.get("_id") {
                self.messages
                    .update_one(
                        doc! { "_id": id.clone() },
                        doc! { "$set": { "recipients": names } },
                    )
                    .await?;
                filled += 1;
            }
        }
        if filled > 0 {
            tracing::info!(messages = filled, "messages given their recipients lists");
        }
        Ok(())
    }

    async fn drop_retired_indexes(&self) -> Result<(), DriverError> {
        for (collection, name) in RETIRED_INDEXES {
            let collection = self.db.collection::<Document>(collection);
            match collection.drop_index(name).await {
                Ok(()) => tracing::info!(index = name, "dropped a retired index"),
                Err(e) if is_index_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
