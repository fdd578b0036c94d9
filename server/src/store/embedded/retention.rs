//! Retention in the embedded store: deleting a room's oldest messages, and the floor that
//! keeps their sequence numbers from being reused.
//!
//! A room's last sequence number is the last key of its `messages` range, so deleting the
//! newest messages would hand their numbers out again. When pruning deletes a room's
//! newest message, the room's `room_seq_floor` entry records that message's number, and
//! [`super::last_seq`] never answers less.
//!
//! | table            | key      | value |
//! |------------------|----------|-------|
//! | `room_seq_floor` | room key | `u64`: the highest seq a deleted message held, when no stored message is higher |

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{backend, decode, MessageView, MESSAGES, MESSAGE_IDS};
use crate::store::{Retention, StoreError};

const SEQ_FLOOR: TableDefinition<&str, u64> = TableDefinition::new("room_seq_floor");

/// The highest sequence number pruning took from the room's end (0 if none).
pub(super) fn seq_floor(txn: &WriteTransaction, room_key: &str) -> Result<u64, StoreError> {
    let floor = txn.open_table(SEQ_FLOOR).map_err(backend)?;
    let value = floor
        .get(room_key)
        .map_err(backend)?
        .map_or(0, |v| v.value());
    Ok(value)
}

/// Deletes the room's messages `policy` does not keep, with their ids; returns how many.
///
/// Messages are in `seq` order, which is the order they were accepted in, so both limits
/// delete a prefix: the oldest messages beyond the newest `keep_newest`, and the leading
/// messages older than the cutoff.
pub(super) fn prune_room(
    txn: &WriteTransaction,
    room_key: &str,
    policy: &Retention,
) -> Result<u64, StoreError> {
    let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
    let mut stored = Vec::new();
    for entry in messages
        .range((room_key, 0)..=(room_key, u64::MAX))
        .map_err(backend)?
    {
        let (key, value) = entry.map_err(backend)?;
        let view: MessageView<'_> = decode(value.value())?;
        stored.push((key.value().1, view.message_id, view.server_time_ms));
    }
    let by_count = policy.keep_newest.map_or(0, |keep| {
        stored
            .len()
            .saturating_sub(usize::try_from(keep).unwrap_or(usize::MAX))
    });
    let by_age = policy.older_than_ms.map_or(0, |cutoff| {
        stored.iter().take_while(|(_, _, at)| *at < cutoff).count()
    });
    let doomed = &stored[..by_count.max(by_age)];
    let Some(&(last_deleted, _, _)) = doomed.last() else {
        return Ok(0);
    };
    let mut ids = txn.open_table(MESSAGE_IDS).map_err(backend)?;
    for (seq, id, _) in doomed {
        messages.remove((room_key, *seq)).map_err(backend)?;
        ids.remove((room_key, &id.0)).map_err(backend)?;
    }
    if doomed.len() == stored.len() {
        // The room's newest message went: its number must not come back.
        let floor = seq_floor(txn, room_key)?.max(last_deleted);
        txn.open_table(SEQ_FLOOR)
            .map_err(backend)?
            .insert(room_key, floor)
            .map_err(backend)?;
    }
    Ok(u64::try_from(doomed.len()).unwrap_or(u64::MAX))
}

/// Moves the room's floor, if it has one, from key `from` to key `to`.
pub(super) fn move_floor(txn: &WriteTransaction, from: &str, to: &str) -> Result<(), StoreError> {
    let mut floor = txn.open_table(SEQ_FLOOR).map_err(backend)?;
    let value = floor.remove(from).map_err(backend)?.map(|v| v.value());
    if let Some(value) = value {
        floor.insert(to, value).map_err(backend)?;
    }
    Ok(())
}

/// Deletes the room's floor (the room is deleted).
pub(super) fn drop_floor(txn: &WriteTransaction, room_key: &str) -> Result<(), StoreError> {
    txn.open_table(SEQ_FLOOR)
        .map_err(backend)?
        .remove(room_key)
        .map_err(backend)?;
    Ok(())
}
