//! Running rooms in the embedded store: roles, bans, moving a room to another key,
//! deleting it, and direct conversations. Each function runs inside the caller's one
//! write transaction, so every operation here is atomic.

use redb::{ReadableTable, WriteTransaction};
use shared::Username;

use super::{
    backend, decode, display_username, encode, insert_membership, membership_of, retention,
    successor, StoredMembership, BANS, FIRST_SEQ, MEMBERSHIPS, MESSAGES, MESSAGE_IDS, READ_MARKERS,
    ROOMS, ROOM_MEMBERS,
};
use crate::store::{RoomKindRecord, RoomRecord, RoomUpdate, StoreError};

/// The room record under `room_key`, if any.
pub(super) fn read_room(
    txn: &WriteTransaction,
    room_key: &str,
) -> Result<Option<RoomRecord>, StoreError> {
    let rooms = txn.open_table(ROOMS).map_err(backend)?;
    let found = rooms.get(room_key).map_err(backend)?;
    found.map(|v| decode(v.value())).transpose()
}

/// Stores `record` under `room_key`.
pub(super) fn write_room(
    txn: &WriteTransaction,
    room_key: &str,
    record: &RoomRecord,
) -> Result<(), StoreError> {
    txn.open_table(ROOMS)
        .map_err(backend)?
        .insert(room_key, encode(record)?.as_slice())
        .map_err(backend)?;
    Ok(())
}

/// The room's members: (canonical, display) pairs in canonical order.
fn members_of(
    txn: &WriteTransaction,
    room_key: &str,
) -> Result<Vec<(String, Username)>, StoreError> {
    let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
    super::scan_pairs::<Username, _>(&members, room_key)
}

/// Whether `user_key` is a member of the room.
fn is_member(txn: &WriteTransaction, room_key: &str, user_key: &str) -> Result<bool, StoreError> {
    let members = txn.open_table(ROOM_MEMBERS).map_err(backend)?;
    let found = members.get((room_key, user_key)).map_err(backend)?;
    Ok(found.is_some())
}

/// Ends `user_key`'s membership of the room (both directions, its read marker, and its
/// admin role in `record`, which the caller writes back). Returns whether they were a
/// member.
pub(super) fn drop_membership(
    txn: &WriteTransaction,
    room_key: &str,
    record: &mut RoomRecord,
    user_key: &str,
) -> Result<bool, StoreError> {
    let removed = txn
        .open_table(ROOM_MEMBERS)
        .map_err(backend)?
        .remove((room_key, user_key))
        .map_err(backend)?
        .is_some();
    if !removed {
        return Ok(false);
    }
    let name_key = record.name.canonical();
    txn.open_table(MEMBERSHIPS)
        .map_err(backend)?
        .remove((user_key, name_key.as_str()))
        .map_err(backend)?;
    txn.open_table(READ_MARKERS)
        .map_err(backend)?
        .remove((room_key, user_key))
        .map_err(backend)?;
    record.admins.retain(|a| a.canonical() != user_key);
    Ok(true)
}

/// [`Store::hand_over`](crate::store::Store::hand_over) in a transaction.
pub(super) fn hand_over(
    txn: &WriteTransaction,
    room_key: &str,
    leaver: &Username,
) -> Result<Option<Username>, StoreError> {
    let mut record = read_room(txn, room_key)?.ok_or(StoreError::NotFound)?;
    if !record.owner.same_as(leaver) {
        return Ok(None);
    }
    let others: Vec<(String, Username)> = members_of(txn, room_key)?
        .into_iter()
        .filter(|(key, _)| *key != leaver.canonical())
        .collect();
    let successor = others
        .iter()
        .find(|(key, _)| record.admins.iter().any(|a| a.canonical() == *key))
        .or_else(|| others.first());
    let Some((successor_key, successor)) = successor.cloned() else {
        return Ok(None);
    };
    record.admins.retain(|a| a.canonical() != successor_key);
    record.owner = successor.clone();
    write_room(txn, room_key, &record)?;
    Ok(Some(successor))
}

/// [`Store::update_room`](crate::store::Store::update_room) in a transaction.
pub(super) fn update_room(
    txn: &WriteTransaction,
    room_key: &str,
    update: RoomUpdate,
) -> Result<RoomRecord, StoreError> {
    let mut record = read_room(txn, room_key)?.ok_or(StoreError::NotFound)?;
    match update {
        RoomUpdate::Topic(topic) => record.topic = topic,
        RoomUpdate::PasswordHash(hash) => record.password_hash = hash,
        RoomUpdate::Admin { user, admin } => {
            let user_key = user.canonical();
            if !is_member(txn, room_key, &user_key)? {
                return Err(StoreError::NotFound);
            }
            record.admins.retain(|a| a.canonical() != user_key);
            if admin {
                record.admins.push(canonical_name(&user)?);
                record.admins.sort();
            }
        }
        RoomUpdate::Owner { to } => {
            let to_key = to.canonical();
            if !is_member(txn, room_key, &to_key)? {
                return Err(StoreError::NotFound);
            }
            let previous = record.owner.clone();
            record.admins.retain(|a| a.canonical() != to_key);
            if is_member(txn, room_key, &previous.canonical())? && !previous.same_as(&to) {
                record.admins.push(canonical_name(&previous)?);
                record.admins.sort();
            }
            record.owner = display_username(txn, &to_key, to)?;
        }
    }
    write_room(txn, room_key, &record)?;
    Ok(record)
}

/// `user`'s canonical name as a username (admins and bans are kept by canonical name).
pub(super) fn canonical_name(user: &Username) -> Result<Username, StoreError> {
    Username::parse(&user.canonical()).map_err(backend)
}

/// Moves every `(room, _)` entry of a table keyed by (room key, string) to `(to, _)`.
macro_rules! move_pairs {
    ($txn:expr, $table:expr, $from:expr, $to:expr, |$value:ident| $owned:expr, |$held:ident| $stored:expr) => {{
        let mut table = $txn.open_table($table).map_err(backend)?;
        let end = successor($from);
        let mut moved = Vec::new();
        for entry in table
            .range(($from, "")..(end.as_str(), ""))
            .map_err(backend)?
        {
            let (key, $value) = entry.map_err(backend)?;
            moved.push((key.value().1.to_owned(), $owned));
        }
        table
            .retain_in(($from, "")..(end.as_str(), ""), |_, _| false)
            .map_err(backend)?;
        for (second, $held) in moved {
            table
                .insert(($to, second.as_str()), $stored)
                .map_err(backend)?;
        }
    }};
}

/// Deletes every `(room, _)` entry of a table keyed by (room key, string).
macro_rules! delete_pairs {
    ($txn:expr, $table:expr, $room:expr) => {{
        let end = successor($room);
        $txn.open_table($table)
            .map_err(backend)?
            .retain_in(($room, "")..(end.as_str(), ""), |_, _| false)
            .map_err(backend)?;
    }};
}

/// [`Store::move_room`](crate::store::Store::move_room) in a transaction: every entry
/// keyed by the room moves, and each member's membership points at the new key.
pub(super) fn move_room(
    txn: &WriteTransaction,
    from: &str,
    to: &str,
    hidden: bool,
    password_hash: Option<String>,
) -> Result<(), StoreError> {
    let mut record = read_room(txn, from)?.ok_or(StoreError::NotFound)?;
    if read_room(txn, to)?.is_some() {
        return Err(StoreError::AlreadyExists);
    }
    record.hidden = hidden;
    record.password_hash = password_hash;
    txn.open_table(ROOMS)
        .map_err(backend)?
        .remove(from)
        .map_err(backend)?;
    write_room(txn, to, &record)?;
    let name_key = record.name.canonical();
    {
        let mut memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
        for (user_key, _) in members_of(txn, from)? {
            let value = encode(&StoredMembership {
                key: to.to_owned(),
                name: record.name.clone(),
            })?;
            memberships
                .insert((user_key.as_str(), name_key.as_str()), value.as_slice())
                .map_err(backend)?;
        }
    }
    move_pairs!(txn, ROOM_MEMBERS, from, to, |v| v.value().to_vec(), |v| v
        .as_slice());
    move_pairs!(txn, FIRST_SEQ, from, to, |v| v.value(), |v| v);
    move_pairs!(txn, READ_MARKERS, from, to, |v| v.value(), |v| v);
    move_pairs!(txn, BANS, from, to, |_v| (), |v| v);
    {
        let mut messages = txn.open_table(MESSAGES).map_err(backend)?;
        let mut moved = Vec::new();
        for entry in messages
            .range((from, 0)..=(from, u64::MAX))
            .map_err(backend)?
        {
            let (key, value) = entry.map_err(backend)?;
            moved.push((key.value().1, value.value().to_vec()));
        }
        messages
            .retain_in((from, 0)..=(from, u64::MAX), |_, _| false)
            .map_err(backend)?;
        for (seq, value) in moved {
            messages
                .insert((to, seq), value.as_slice())
                .map_err(backend)?;
        }
    }
    {
        let mut ids = txn.open_table(MESSAGE_IDS).map_err(backend)?;
        let mut moved = Vec::new();
        for entry in ids
            .range((from, &[0u8; 16])..=(from, &[u8::MAX; 16]))
            .map_err(backend)?
        {
            let (key, value) = entry.map_err(backend)?;
            moved.push((*key.value().1, value.value()));
        }
        ids.retain_in((from, &[0u8; 16])..=(from, &[u8::MAX; 16]), |_, _| false)
            .map_err(backend)?;
        for (id, seq) in moved {
            ids.insert((to, &id), seq).map_err(backend)?;
        }
    }
    retention::move_floor(txn, from, to)
}

/// [`Store::delete_room`](crate::store::Store::delete_room) in a transaction.
pub(super) fn delete_room(
    txn: &WriteTransaction,
    room_key: &str,
) -> Result<Vec<Username>, StoreError> {
    let record = read_room(txn, room_key)?.ok_or(StoreError::NotFound)?;
    let members = members_of(txn, room_key)?;
    let name_key = record.name.canonical();
    {
        let mut memberships = txn.open_table(MEMBERSHIPS).map_err(backend)?;
        for (user_key, _) in &members {
            memberships
                .remove((user_key.as_str(), name_key.as_str()))
                .map_err(backend)?;
        }
    }
    txn.open_table(ROOMS)
        .map_err(backend)?
        .remove(room_key)
        .map_err(backend)?;
    delete_pairs!(txn, ROOM_MEMBERS, room_key);
    delete_pairs!(txn, FIRST_SEQ, room_key);
    delete_pairs!(txn, READ_MARKERS, room_key);
    delete_pairs!(txn, BANS, room_key);
    txn.open_table(MESSAGES)
        .map_err(backend)?
        .retain_in((room_key, 0)..=(room_key, u64::MAX), |_, _| false)
        .map_err(backend)?;
    txn.open_table(MESSAGE_IDS)
        .map_err(backend)?
        .retain_in(
            (room_key, &[0u8; 16])..=(room_key, &[u8::MAX; 16]),
            |_, _| false,
        )
        .map_err(backend)?;
    retention::drop_floor(txn, room_key)?;
    Ok(members.into_iter().map(|(_, name)| name).collect())
}

/// [`Store::ban`](crate::store::Store::ban) in a transaction.
pub(super) fn ban(
    txn: &WriteTransaction,
    room_key: &str,
    user_key: &str,
    max_bans: usize,
) -> Result<bool, StoreError> {
    let mut record = read_room(txn, room_key)?.ok_or(StoreError::NotFound)?;
    {
        let mut bans = txn.open_table(BANS).map_err(backend)?;
        if bans.get((room_key, user_key)).map_err(backend)?.is_none() {
            let end = successor(room_key);
            let held = bans
                .range((room_key, "")..(end.as_str(), ""))
                .map_err(backend)?
                .take(max_bans)
                .count();
            if held >= max_bans {
                return Err(StoreError::QuotaExceeded);
            }
            bans.insert((room_key, user_key), ()).map_err(backend)?;
        }
    }
    let was_member = drop_membership(txn, room_key, &mut record, user_key)?;
    if was_member {
        write_room(txn, room_key, &record)?;
    }
    Ok(was_member)
}

/// [`Store::open_direct`](crate::store::Store::open_direct) in a transaction.
pub(super) fn open_direct(
    txn: &WriteTransaction,
    room_key: &str,
    room: RoomRecord,
) -> Result<Vec<Username>, StoreError> {
    let RoomKindRecord::Direct { participants } = &room.kind else {
        return Err(backend("open_direct needs a direct conversation's record"));
    };
    let participants = participants.clone();
    let existing = read_room(txn, room_key)?;
    if let Some(stored) = &existing {
        if stored.participants() != Some(&participants) {
            return Err(backend(format!(
                "room {room_key} is not the direct conversation of these users"
            )));
        }
    }
    let mut missing = Vec::new();
    for user in &participants {
        let user_key = user.canonical();
        if is_member(txn, room_key, &user_key)? {
            continue;
        }
        if membership_of(txn, &user_key, &room.name)?.is_some() {
            return Err(StoreError::NameInUse);
        }
        missing.push(user.clone());
    }
    if existing.is_none() {
        write_room(txn, room_key, &room)?;
    }
    let mut added = Vec::new();
    for user in missing {
        let user_key = user.canonical();
        let display = display_username(txn, &user_key, user)?;
        insert_membership(txn, room_key, &room.name, &user_key, &display)?;
        added.push(display);
    }
    Ok(added)
}
