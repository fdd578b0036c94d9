//! Ambiguous write outcomes, settled by reading back.
//!
//! A write that fails with a network error, a lost reply or a write-concern timeout may
//! still have happened: the driver's retryable writes retry it once (on a replica set, with
//! a transaction number the server uses to apply it at most once), and when that retry
//! fails too the outcome is unknown. Reporting it as a failure would make the sender retry
//! and then be told `DuplicateMessage` (or `UsernameTaken`, `RoomExists`) about their own
//! write. So the adapter reads the record back by its id:
//!
//! - found with read concern `majority`: the write happened and can no longer be rolled
//!   back (MongoDB's documented guarantee for majority reads), so it is reported as done;
//! - not found by a majority read, but found by a `local` read of the primary: it happened
//!   on the primary and may still be rolled back, or may still be acknowledged by a
//!   majority; the outcome stays unknown and the original error is reported;
//! - found by neither: it did not happen on the primary, and the original error is
//!   reported (the caller may undo its own earlier steps).

use mongodb::bson::Document;
use mongodb::options::ReadConcern;
use mongodb::Collection;

use super::errors::map_err;
use crate::store::StoreError;

/// What reading back a write found.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The record, majority-committed.
    Durable(Document),
    /// Found on the primary only: it may still be rolled back.
    Pending,
    /// Not on the primary.
    Absent,
}

/// Reads back the one record `filter` selects, after a write whose outcome is unknown.
///
/// # Errors
/// Driver failures of the reads themselves (the outcome is then still unknown).
pub(super) async fn settle(
    collection: &Collection<Document>,
    filter: Document,
) -> Result<Outcome, StoreError> {
    let durable = collection
        .find_one(filter.clone())
        .read_concern(ReadConcern::majority())
        .await
        .map_err(map_err)?;
    if let Some(d) = durable {
        return Ok(Outcome::Durable(d));
    }
    let local = collection
        .find_one(filter)
        .read_concern(ReadConcern::local())
        .await
        .map_err(map_err)?;
    Ok(if local.is_some() {
        Outcome::Pending
    } else {
        Outcome::Absent
    })
}
