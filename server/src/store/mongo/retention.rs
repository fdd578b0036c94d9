//! Retention on MongoDB: deleting messages by age and by count per room.
//!
//! Age: one `deleteMany` on `server_time`, through the `retention_by_time` index. Count:
//! per room, the `seq` of the newest message past the ones kept (one indexed read on
//! `room_seq_unique`, skipping `keep_newest`), then one `deleteMany` of it and everything
//! older. Sequence numbers come from the room's counter, which deleting messages never
//! lowers, so a deleted message's number is never given out again.
//!
//! Each `deleteMany` is atomic per document, not as a whole: a failure part-way leaves some
//! messages deleted, and the next run deletes the rest.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};

use super::errors::map_err;
use super::{datetime, Fields, MongoStore, MESSAGES, ROOMS};
use crate::store::{Retention, StoreError};

impl MongoStore {
    /// [`Store::prune_messages`](crate::store::Store::prune_messages) on MongoDB.
    pub(super) async fn prune(&self, policy: &Retention) -> Result<u64, StoreError> {
        let mut deleted = 0;
        if let Some(cutoff) = policy.older_than_ms {
            let cutoff = datetime(cutoff, "retention cutoff")?;
            deleted += self
                .messages
                .delete_many(doc! { "server_time": { "$lt": cutoff } })
                .await
                .map_err(map_err)?
                .deleted_count;
        }
        let Some(keep) = policy.keep_newest else {
            return Ok(deleted);
        };
        let rooms: Vec<Document> = self
            .rooms
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        for room in &rooms {
            let room_key = Fields::new(ROOMS, room).str("_id")?;
            let edge = self
                .messages
                .find_one(doc! { "room": room_key })
                .sort(doc! { "seq": -1 })
                .skip(keep)
                .projection(doc! { "_id": 0, "seq": 1 })
                .await
                .map_err(map_err)?;
            let Some(edge) = edge else { continue };
            let seq = i64::try_from(Fields::new(MESSAGES, &edge).seq("seq")?).unwrap_or(i64::MAX);
            deleted += self
                .messages
                .delete_many(doc! { "room": room_key, "seq": { "$lte": seq } })
                .await
                .map_err(map_err)?
                .deleted_count;
        }
        Ok(deleted)
    }
}
