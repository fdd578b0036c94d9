//! What operators read from the embedded store (`server admin`): pages of every account
//! and every room, a room's message count, and the store's totals.
//!
//! Pages walk `users` and `rooms` in key order from just after the previous page's last
//! key, so a page costs about its own size. Totals are redb's table lengths (kept in each
//! table's tree, no scan) and the database file's size on disk.

use std::ops::Bound;

use redb::{ReadTransaction, ReadableTableMetadata};
use shared::Username;

use super::{backend, decode, scan_pairs, successor, MESSAGES, ROOMS, ROOM_MEMBERS, USERS};
use crate::store::{RoomKey, RoomListing, RoomRecord, StoreError, StoreStats, UserRecord};

/// [`Store::list_users`](crate::store::Store::list_users) in a read transaction.
pub(super) fn list_users(
    txn: &ReadTransaction,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<UserRecord>, StoreError> {
    let users = txn.open_table(USERS).map_err(backend)?;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    users
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend)?
        .take(limit)
        .map(|entry| decode(entry.map_err(backend)?.1.value()))
        .collect()
}

/// [`Store::list_all_rooms`](crate::store::Store::list_all_rooms) in a read transaction.
pub(super) fn list_all_rooms(
    txn: &ReadTransaction,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(RoomKey, RoomListing)>, StoreError> {
    let rooms = txn.open_table(ROOMS).map_err(backend)?;
    let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut page = Vec::new();
    for entry in rooms
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(backend)?
        .take(limit)
    {
        let (key, value) = entry.map_err(backend)?;
        let key = key.value();
        let room: RoomRecord = decode(value.value())?;
        let members = scan_pairs::<Username, _>(&members, key)?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        page.push((
            RoomKey::from_stored(key.to_owned()),
            RoomListing { room, members },
        ));
    }
    Ok(page)
}

/// [`Store::message_count`](crate::store::Store::message_count) in a read transaction.
pub(super) fn message_count(txn: &ReadTransaction, room_key: &str) -> Result<u64, StoreError> {
    let rooms = txn.open_table(ROOMS).map_err(backend)?;
    if rooms.get(room_key).map_err(backend)?.is_none() {
        return Err(StoreError::NotFound);
    }
    let messages = txn.open_table(MESSAGES).map_err(backend)?;
    let end = successor(room_key);
    let count = messages
        .range((room_key, 0)..(end.as_str(), 0))
        .map_err(backend)?
        .count();
    Ok(u64::try_from(count).unwrap_or(u64::MAX))
}

/// The table counts of [`Store::stats`](crate::store::Store::stats); the caller adds the
/// file size.
pub(super) fn counts(txn: &ReadTransaction) -> Result<StoreStats, StoreError> {
    Ok(StoreStats {
        users: txn
            .open_table(USERS)
            .map_err(backend)?
            .len()
            .map_err(backend)?,
        rooms: txn
            .open_table(ROOMS)
            .map_err(backend)?
            .len()
            .map_err(backend)?,
        messages: txn
            .open_table(MESSAGES)
            .map_err(backend)?
            .len()
            .map_err(backend)?,
        bytes: None,
    })
}
