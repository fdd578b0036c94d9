//! The rooms-per-user quota: one counter document per owner, taken before a room is
//! inserted and given back when the insert is refused.
//!
//! ```text
//! room_owners { _id: "alice", rooms: NumberLong(3) }
//! ```
//!
//! # Why a counter, and why it is atomic on a replica set
//! Counting an owner's rooms and then inserting one are two operations, so concurrent
//! creations could all see `quota - 1` rooms and all insert (issue 11 saw 21 rooms of a
//! quota of 20). MongoDB makes every write to a single document atomic, and a filter and
//! the update it guards are evaluated together on the primary, so one conditional update
//! is an atomic "count and take one": `{ _id: owner, rooms: { $lt: quota } }` with
//! `{ $inc: { rooms: 1 } }`. With `upsert`, a first room inserts the counter at 1. When the
//! counter is at the quota the filter matches nothing, so the upsert tries to insert a
//! second document with the same `_id` and fails with a duplicate key: that is the refusal.
//! Two *first* creations at once can also collide on that insert (the server retries such
//! an upsert itself only when the filter is nothing but equality on the unique key, which
//! this one is not), so a duplicate key is tried once more: by then the counter exists and
//! the update either takes a slot or proves the quota used up.
//!
//! The count is of rooms taken, not rooms stored: a creation refused after taking its slot
//! (the name is in use, the key is taken) gives it back with `$inc: -1`. If the give-back
//! itself fails, or the process dies between the two writes, the owner keeps one slot too
//! few: the error is on the safe side of a quota. Writes use the adapter's
//! `w: "majority"` write concern, so an acknowledged count survives a failover.

use mongodb::bson::doc;
use shared::Username;

use super::errors::{is_duplicate_key, map_err};
use super::{Fields, MongoStore, OWNERS};
use crate::store::StoreError;

impl MongoStore {
    /// Takes one of `owner_key`'s `quota` room slots.
    ///
    /// # Errors
    /// [`StoreError::QuotaExceeded`] when all are taken; driver failures.
    pub(super) async fn take_room_slot(
        &self,
        owner_key: &str,
        quota: usize,
    ) -> Result<(), StoreError> {
        if quota == 0 {
            // An upsert would insert the counter at 1 whatever the filter says.
            return Err(StoreError::QuotaExceeded);
        }
        let quota = i64::try_from(quota).unwrap_or(i64::MAX);
        for _ in 0..2 {
            let taken = self
                .owners
                .update_one(
                    doc! { "_id": owner_key, "rooms": { "$lt": quota } },
                    doc! { "$inc": { "rooms": 1_i64 } },
                )
                .upsert(true)
                .await;
            match taken {
                Ok(_) => return Ok(()),
                // The counter exists and is full, or a concurrent first room inserted it.
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        Err(StoreError::QuotaExceeded)
    }

    /// Gives back a slot [`take_room_slot`](Self::take_room_slot) took for a room that was
    /// not created. A failure is logged, not returned: the caller reports why the room was
    /// not created, and the owner is left one slot short (see the module docs).
    pub(super) async fn give_back_room_slot(&self, owner_key: &str) {
        let given = self
            .owners
            .update_one(
                doc! { "_id": owner_key, "rooms": { "$gt": 0 } },
                doc! { "$inc": { "rooms": -1_i64 } },
            )
            .await;
        if let Err(e) = given {
            tracing::warn!(
                error.cause_chain = ?e,
                "could not give back a room slot; the owner's quota stays one short"
            );
        }
    }

    /// How many room slots `owner` has taken: the rooms they created.
    pub(super) async fn room_slots(&self, owner: &Username) -> Result<usize, StoreError> {
        let found = self
            .owners
            .find_one(doc! { "_id": owner.canonical() })
            .projection(doc! { "rooms": 1 })
            .await
            .map_err(map_err)?;
        let taken = match found {
            Some(d) => Fields::new(OWNERS, &d).counter("rooms")?,
            None => 0,
        };
        Ok(usize::try_from(taken).unwrap_or(usize::MAX))
    }
}
