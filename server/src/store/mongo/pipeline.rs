//! Pipelined sends: [`MongoStore::queue_message`](crate::store::Store::queue_message)
//! returns once a message's number is taken, and the insert runs on while the connection
//! reads and queues its next message.
//!
//! # Order
//! The number comes from the room's counter (one `findOneAndUpdate`, see `sequence.rs`)
//! before `queue_message` returns, so messages one caller queues one after another get
//! increasing numbers in that order, however their inserts interleave. The insert runs in
//! a task of its own, so it finishes even if nobody awaits its completion (a connection
//! closed with sends in flight): what a completion would have acknowledged is stored
//! either way, and a retry of it is answered as a duplicate.
//!
//! # A repeated id in flight
//! Two copies of one message id could otherwise race: both take a number, both insert,
//! and the unique `(room, message_id)` index keeps whichever lands first, possibly the
//! later copy under the later number. So each instance keeps the ids whose first copy is
//! still being stored ([`InFlight`]); a later copy takes no number and settles as that first
//! copy did: [`StoreError::AlreadyExists`] if it was stored (or was itself a duplicate),
//! [`StoreError::Unavailable`] if its insert failed (the sender retries the id later, as
//! after any failed send). Queued order thus decides, as on the embedded store. Copies on
//! two instances (a client that reconnected elsewhere and resent while its first insert
//! was in flight) still meet at the unique index: one is stored, the other is answered as
//! a duplicate, and nothing is stored twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::errors::unavailable;
use super::MongoStore;
use crate::store::{NewMessage, PendingAppend, StoreError};

/// How a message id's first copy ended, as its later copies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Stored, or refused as a duplicate of a message stored before.
    Stored,
    /// Not stored (its error went to its own sender).
    Failed,
}

/// A room's key and a message id.
type Key = (String, [u8; 16]);

/// The message ids, per room, whose first copy this instance is still storing.
#[derive(Debug, Default, Clone)]
pub(super) struct InFlight(Arc<Mutex<HashMap<Key, watch::Receiver<Option<Settled>>>>>);

/// What [`InFlight::register`] found.
enum Registration {
    /// No copy of this id is in flight: the caller stores it and settles the ticket.
    First(Ticket),
    /// A copy is in flight: wait for it.
    Later(watch::Receiver<Option<Settled>>),
}

/// The first copy's hold on its id: settling it (or dropping it, for a copy that never
/// reached its insert) releases the id and tells the later copies.
struct Ticket {
    in_flight: InFlight,
    key: Key,
    settled: watch::Sender<Option<Settled>>,
}

impl InFlight {
    fn register(&self, key: Key) -> Registration {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(earlier) = map.get(&key) {
            return Registration::Later(earlier.clone());
        }
        let (settled, watching) = watch::channel(None);
        map.insert(key.clone(), watching);
        Registration::First(Ticket {
            in_flight: self.clone(),
            key,
            settled,
        })
    }
}

impl Ticket {
    /// Tells the later copies how the insert ended; the drop that follows releases the id.
    fn settle(self, stored: &Result<u64, StoreError>) {
        let settled = match stored {
            Ok(_) | Err(StoreError::AlreadyExists) => Settled::Stored,
            Err(_) => Settled::Failed,
        };
        self.settled.send_replace(Some(settled));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Removed before later copies look: one that registers after this finds no
        // entry and meets the stored message at the unique index.
        self.in_flight
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// A later copy's error when the first copy of its id was not stored.
#[derive(Debug, thiserror::Error)]
#[error("an earlier copy of this message id, still in flight, could not be stored")]
struct EarlierCopyNotStored;

impl MongoStore {
    /// See the module docs.
    pub(super) async fn queue(&self, message: &NewMessage) -> Result<PendingAppend, StoreError> {
        let key = (message.room.as_str().to_owned(), message.message_id.0);
        let ticket = match self.in_flight.register(key) {
            Registration::Later(earlier) => return Ok(Box::pin(later_copy(earlier))),
            Registration::First(ticket) => ticket,
        };
        // On an error here the ticket is dropped: later copies see the channel close.
        let numbered = self.take_seq(message.room.as_str()).await?;
        let store = self.clone();
        let message = message.clone();
        let insert = tokio::spawn(async move {
            let stored = store.store_numbered(&message, numbered).await;
            ticket.settle(&stored);
            stored
        });
        Ok(Box::pin(async move {
            insert.await.unwrap_or_else(|e| Err(unavailable(e)))
        }))
    }
}

/// How a later copy of an id in flight ends: as its first copy did (see the module docs).
async fn later_copy(mut earlier: watch::Receiver<Option<Settled>>) -> Result<u64, StoreError> {
    // A closed channel without an outcome: the first copy never reached its insert.
    let settled = earlier
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|s| *s);
    match settled {
        Some(Settled::Stored) => Err(StoreError::AlreadyExists),
        Some(Settled::Failed) | None => Err(unavailable(EarlierCopyNotStored)),
    }
}
