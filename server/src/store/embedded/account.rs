//! Deleting an account in the embedded store: one write transaction that leaves a
//! tombstone (the name stays reserved), and deletes the key, its history, the block list,
//! any membership left, and every stored copy addressed to the account.
//!
//! The account's copies are found through `member_first_seq`, which keeps an entry for
//! every room the account was ever a member of (it survives leaving): each such room's
//! messages from that sequence number on are read, and those holding a copy for the
//! account are rewritten without it. The cost follows the history of the rooms the
//! account was in; `member_first_seq` itself is scanned once. A message left with no copy
//! keeps its place (its number and id), so numbering is untouched.

use redb::{ReadableTable, WriteTransaction};

use super::rooms::{drop_membership, read_room, write_room};
use super::{
    backend, decode, encode, successor, EnvelopeView, MessageRecord, MessageView, StoredMembership,
    BLOCKS, FIRST_SEQ, KEY_HISTORY, MEMBERSHIPS, MESSAGES, TOMBSTONES, USERS,
};
use crate::store::StoreError;

/// [`Store::delete_account`](crate::store::Store::delete_account) in a transaction.
pub(super) fn delete_account(txn: &WriteTransaction, user_key: &str) -> Result<(), StoreError> {
    let existed = txn
        .open_table(USERS)
        .map_err(backend)?
        .remove(user_key)
        .map_err(backend)?
        .is_some();
    {
        let mut tombstones = txn.open_table(TOMBSTONES).map_err(backend)?;
        if !existed && tombstones.get(user_key).map_err(backend)?.is_none() {
            return Err(StoreError::NotFound);
        }
        tombstones.insert(user_key, ()).map_err(backend)?;
    }
    txn.open_table(KEY_HISTORY)
        .map_err(backend)?
        .retain_in((user_key, 0)..=(user_key, u64::MAX), |_, _| false)
        .map_err(backend)?;
    let end = successor(user_key);
    txn.open_table(BLOCKS)
        .map_err(backend)?
        .retain_in((user_key, "")..(end.as_str(), ""), |_, _| false)
        .map_err(backend)?;
    let memberships: Vec<StoredMembership> = {
        let table = txn.open_table(MEMBERSHIPS).map_err(backend)?;
        super::scan_pairs::<StoredMembership, _>(&table, user_key)?
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    };
    for membership in memberships {
        if let Some(mut record) = read_room(txn, &membership.key)? {
            if drop_membership(txn, &membership.key, &mut record, user_key)? {
                write_room(txn, &membership.key, &record)?;
            }
        }
    }
    delete_copies(txn, user_key)
}

/// Rewrites every stored message with a copy for `user_key` without it, and forgets the
/// account's first sequence numbers.
fn delete_copies(txn: &WriteTransaction, user_key: &str) -> Result<(), StoreError> {
    let rooms: Vec<(String, u64)> = {
        let first = txn.open_table(FIRST_SEQ).map_err(backend)?;
        let mut rooms = Vec::new();
        for entry in first.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let (room, user) = key.value();
            if user == user_key {
                rooms.push((room.to_owned(), value.value()));
            }
        }
        rooms
    };
    let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
    for (room, first_seq) in &rooms {
        let mut rewritten = Vec::new();
        for entry in messages
            .range((room.as_str(), *first_seq)..=(room.as_str(), u64::MAX))
            .map_err(backend)?
        {
            let (key, value) = entry.map_err(backend)?;
            let view: MessageView<'_> = decode(value.value())?;
            if !view.copies.iter().any(|c| c.is_for(user_key)) {
                continue;
            }
            let copies = view
                .copies
                .iter()
                .filter(|c| !c.is_for(user_key))
                .map(EnvelopeView::to_envelope)
                .collect::<Result<Vec<_>, StoreError>>()?;
            let record = encode(&MessageRecord {
                message_id: view.message_id,
                sender: &view.sender,
                server_time_ms: view.server_time_ms,
                copies: &copies,
            })?;
            rewritten.push((key.value().1, record));
        }
        for (seq, record) in rewritten {
            messages
                .insert((room.as_str(), seq), record.as_slice())
                .map_err(backend)?;
        }
    }
    let mut first = txn.open_table(FIRST_SEQ).map_err(backend)?;
    for (room, _) in &rooms {
        first.remove((room.as_str(), user_key)).map_err(backend)?;
    }
    Ok(())
}
