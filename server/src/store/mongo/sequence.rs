//! Message sequence numbers: a counter in each room document, taken with one atomic
//! `findOneAndUpdate`.
//!
//! ```text
//! rooms { _id: "general", …, last_seq: NumberLong(41) }
//! ```
//!
//! # Why a counter
//! The adapter used to read a room's last `seq` and insert the message under `seq + 1`,
//! retrying on a duplicate key in the unique `(room, seq)` index. Each message cost three
//! round trips, and concurrent writers in one room kept losing that race: 20 concurrent
//! messages cost 94 inserts and 188 reads through the emulator (the test
//! `mongo_appends_cost_two_commands_each_without_retries` measures it). A single-document
//! update is atomic in MongoDB, so `findOneAndUpdate({_id: room}, {$inc: {last_seq: 1}})`
//! with `returnDocument: "after"` hands every writer its own number, in one round trip that
//! also returns the room's display name (and proves the room exists). The insert follows:
//! two round trips per message, whatever the concurrency. `findAndModify` is a retryable
//! write, so on a replica set the driver retries it once after a failover without
//! incrementing twice.
//!
//! # Gaps, and numbers never reused
//! A number is taken before the message is stored, so a message that is then not stored
//! leaves a gap, which readers page past (`HistorySlice::next_before`, protocol 3's
//! `next_before_seq`):
//!
//! - a refused duplicate message id gives its number back if no later number was taken
//!   (`$inc: -1` guarded by `last_seq` still being that number), so a sender's repeated
//!   id costs nothing in the usual case;
//! - an insert whose outcome is unknown is read back (see `settle.rs`); if it did not
//!   happen, its number stays unused.
//!
//! The counter only grows (the give-back only undoes the last increment, before any
//! message holds it), and deleting messages never touches it, so a number, once a
//! message's, is never used again, also after retention deletes a room's newest messages.
//! Should a number be held already (a message written by an older server version during
//! an upgrade, or restored data), the insert fails on the unique `(room, seq)` index; the
//! counter is then raised to the room's last stored `seq` and the message takes the next
//! number, at most [`MAX_SEQ_ATTEMPTS`] times.

use std::sync::Arc;

use mongodb::bson::{doc, Binary};
use mongodb::error::Error as DriverError;
use mongodb::options::ReturnDocument;
use shared::RoomName;

use super::errors::{is_duplicate_key, map_err, unavailable, SequenceContention};
use super::{binary, message_to_doc, settle, to_i64, Fields, MongoStore, Outcome, MESSAGES, ROOMS};
use crate::store::{NewMessage, StoreError};

/// Attempts at storing one message when its number turns out to be held already (only
/// after data written outside the counter; see the module docs).
const MAX_SEQ_ATTEMPTS: usize = 3;

/// A number taken from a room's counter for one message.
pub(super) struct Numbered {
    /// The message's sequence number.
    seq: u64,
    /// The room's display name, stored with the message.
    room_name: RoomName,
    /// The room's permanent id, which the message refers to.
    room_id: String,
}

impl MongoStore {
    /// Stores a message under the number `numbered` took for it (see `pipeline.rs`). Should
    /// that number turn out to be held already (only after data written outside the counter;
    /// see the module docs), the counter is raised and the message takes a later number.
    pub(super) async fn store_numbered(
        &self,
        message: &NewMessage,
        numbered: Numbered,
    ) -> Result<u64, StoreError> {
        let message_id = binary(message.message_id.0.to_vec());
        let mut d = message_to_doc(message, &numbered.room_name)?;
        // Messages refer to the room's permanent id, which a move never changes.
        d.insert("room", numbered.room_id.as_str());
        let mut seq = numbered.seq;
        for attempt in 0..MAX_SEQ_ATTEMPTS {
            let room_key = numbered.room_id.as_str();
            if attempt > 0 {
                seq = self.take_seq(message.room.as_str()).await?.seq;
            }
            d.insert("seq", to_i64(seq, "message sequence number")?);
            d.remove("_id"); // the driver adds an ObjectId on each insert
            let error = match self.messages.insert_one(d.clone()).await {
                Ok(_) => return Ok(seq),
                Err(e) if is_duplicate_key(&e) => {
                    if self.message_id_taken(room_key, &message_id).await? {
                        self.give_back_seq(room_key, seq).await;
                        return Err(StoreError::AlreadyExists);
                    }
                    // The number is held by a message the counter did not hand out.
                    self.raise_seq_to_last(room_key).await?;
                    continue;
                }
                Err(e) => map_err(e),
            };
            if !matches!(error, StoreError::Unavailable { .. }) {
                // Refused outright (a malformed or oversized document): nothing was stored.
                self.give_back_seq(room_key, seq).await;
                return Err(error);
            }
            // The insert may have happened: read it back (see `settle.rs`).
            let filter = doc! { "room": room_key, "message_id": message_id.clone() };
            return match settle(&self.messages, filter).await {
                Ok(Outcome::Durable(found)) => {
                    if Fields::new(MESSAGES, &found).seq("seq")? == seq {
                        Ok(seq)
                    } else {
                        Err(StoreError::AlreadyExists)
                    }
                }
                Ok(Outcome::Pending | Outcome::Absent) | Err(_) => Err(error),
            };
        }
        Err(unavailable(SequenceContention {
            room: message.room.as_str().to_owned(),
            attempts: MAX_SEQ_ATTEMPTS,
        }))
    }

    /// Takes the next number of the room under `room_key`, with its display name and its
    /// permanent id (what its messages refer to).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if there is no such room.
    pub(super) async fn take_seq(&self, room_key: &str) -> Result<Numbered, StoreError> {
        let room = self
            .rooms
            .find_one_and_update(
                doc! { "key": room_key },
                doc! { "$inc": { "last_seq": 1_i64 } },
            )
            .return_document(ReturnDocument::After)
            .projection(doc! { "_id": 1, "name": 1, "last_seq": 1 })
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        let f = Fields::new(ROOMS, &room);
        Ok(Numbered {
            seq: f.seq("last_seq")?,
            room_name: f.room_name("name")?,
            room_id: f.str("_id")?.to_owned(),
        })
    }

    /// Gives back `seq` of the room with id `room_key` if it is still the room's last number
    /// (no later one was taken). A
    /// failure only leaves a gap, so it is logged, not returned.
    async fn give_back_seq(&self, room_key: &str, seq: u64) {
        let Ok(seq) = i64::try_from(seq) else { return };
        let given = self
            .rooms
            .update_one(
                doc! { "_id": room_key, "last_seq": seq },
                doc! { "$inc": { "last_seq": -1_i64 } },
            )
            .await;
        if let Err(e) = given {
            tracing::warn!(error.cause_chain = ?e, "could not give back a sequence number (a gap remains)");
        }
    }

    async fn message_id_taken(&self, room_key: &str, id: &Binary) -> Result<bool, StoreError> {
        let found = self
            .messages
            .find_one(doc! { "room": room_key, "message_id": id.clone() })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(map_err)?;
        Ok(found.is_some())
    }

    /// Raises the room's counter to its last stored `seq` (`$max`: never lowers it).
    async fn raise_seq_to_last(&self, room_key: &str) -> Result<(), StoreError> {
        self.raise_seq_counter(room_key).await.map_err(map_err)
    }

    /// [`raise_seq_to_last`](Self::raise_seq_to_last) with the driver's error, for the
    /// migration (a malformed stored `seq` is a custom driver error there).
    pub(super) async fn raise_seq_counter(&self, room_key: &str) -> Result<(), DriverError> {
        let last = self
            .messages
            .find_one(doc! { "room": room_key })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "_id": 0, "seq": 1 })
            .await?
            .map(|d| Fields::new(MESSAGES, &d).seq("seq"))
            .transpose()
            .map_err(|e| DriverError::custom(Arc::new(e)))?
            .unwrap_or(0);
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        self.rooms
            .update_one(
                doc! { "_id": room_key },
                doc! { "$max": { "last_seq": last } },
            )
            .await?;
        Ok(())
    }
}
