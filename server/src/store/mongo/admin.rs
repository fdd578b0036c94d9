//! What operators read from MongoDB (`server admin`): pages of every account and every
//! room, a room's message count, and the database's totals.
//!
//! Pages are `_id` (accounts) and `key` (rooms) ranges after the previous page's last
//! one, in index order (`_id_`, `room_key_unique`), so a page costs about its own size.
//! Counts are `countDocuments` (a collection scan for accounts, which skips deleted ones,
//! and the `room_seq_unique` index for one room's messages). The size is `dbStats`'
//! `storageSize` plus `indexSize`; a server that does not answer `dbStats` leaves it
//! unknown rather than failing the statistics.

use futures_util::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;

use super::errors::map_err;
use super::{members_from_doc, room_from_doc, user_from_doc, Fields, MongoStore, ROOMS};
use crate::store::{RoomKey, RoomListing, StoreError, StoreStats, UserRecord};
use shared::Username;

/// Up to `limit` documents of `collection` matching `filter`, in `order` (an indexed
/// field), with `projection`.
async fn page(
    collection: &Collection<Document>,
    filter: Document,
    projection: Document,
    order: &str,
    limit: usize,
) -> Result<Vec<Document>, StoreError> {
    collection
        .find(filter)
        .projection(projection)
        .sort(doc! { order: 1 })
        .limit(i64::try_from(limit).unwrap_or(i64::MAX))
        .await
        .map_err(map_err)?
        .try_collect()
        .await
        .map_err(map_err)
}

impl MongoStore {
    /// [`Store::list_users`](crate::store::Store::list_users) on MongoDB.
    pub(super) async fn list_user_page(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> Result<Vec<UserRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "deleted": { "$ne": true } };
        if let Some(after) = after {
            filter.insert("_id", doc! { "$gt": after.canonical() });
        }
        let docs = page(&self.users, filter, doc! { "key_history": 0 }, "_id", limit).await?;
        docs.iter().map(user_from_doc).collect()
    }

    /// [`Store::list_all_rooms`](crate::store::Store::list_all_rooms) on MongoDB.
    pub(super) async fn list_room_page(
        &self,
        after: Option<&RoomKey>,
        limit: usize,
    ) -> Result<Vec<(RoomKey, RoomListing)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = match after {
            Some(after) => doc! { "key": { "$gt": after.as_str() } },
            None => Document::new(),
        };
        // A ban list may hold a thousand names: a listing never needs it.
        let docs = page(&self.rooms, filter, doc! { "bans": 0 }, "key", limit).await?;
        docs.iter()
            .map(|d| {
                let key = RoomKey::from_stored(Fields::new(ROOMS, d).str("key")?.to_owned());
                let members = members_from_doc(d)?
                    .into_iter()
                    .map(|(_, name)| name)
                    .collect();
                Ok((
                    key,
                    RoomListing {
                        room: room_from_doc(d)?,
                        members,
                    },
                ))
            })
            .collect()
    }

    /// [`Store::message_count`](crate::store::Store::message_count) on MongoDB.
    pub(super) async fn messages_in_room(&self, room: &RoomKey) -> Result<u64, StoreError> {
        let id = self.room_id(room).await?.ok_or(StoreError::NotFound)?;
        self.messages
            .count_documents(doc! { "room": id })
            .await
            .map_err(map_err)
    }

    /// [`Store::stats`](crate::store::Store::stats) on MongoDB.
    pub(super) async fn database_stats(&self) -> Result<StoreStats, StoreError> {
        let users = self
            .users
            .count_documents(doc! { "deleted": { "$ne": true } })
            .await
            .map_err(map_err)?;
        let rooms = self.rooms.count_documents(doc! {}).await.map_err(map_err)?;
        let messages = self
            .messages
            .count_documents(doc! {})
            .await
            .map_err(map_err)?;
        let bytes = match self.db.run_command(doc! { "dbStats": 1 }).await {
            Ok(stats) => {
                let fields = Fields::new("dbStats", &stats);
                match (fields.seq("storageSize"), fields.seq("indexSize")) {
                    (Ok(data), Ok(indexes)) => Some(data.saturating_add(indexes)),
                    _ => None,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "dbStats unavailable; store size unknown");
                None
            }
        };
        Ok(StoreStats {
            users,
            rooms,
            messages,
            bytes,
        })
    }
}
