//! Direct conversations (`OpenDirect`) and block lists (`SetBlocked`).
//!
//! A direct conversation is a two-member room named by
//! [`direct_room_name`](shared::protocol::direct_room_name) (`dm.` and a hash of both
//! usernames) and stored under `~direct:` and that name
//! ([`RoomKey::direct`]): a namespace no join by name and no listing looks in, so it is
//! never listed and nobody but its two participants can enter it. A participant re-opens
//! it with `JoinRoom` (found through their own membership); to anyone else a `JoinRoom`
//! of its name is `RoomUnavailable`, as for a missing room. It has no password, no roles
//! and no topic, and cannot be moderated.
//!
//! Opening one does not count against the rooms-per-user quota of `CreateRoom`: there is
//! one conversation per pair of accounts, so a user can have at most as many as there are
//! other accounts, and opening them is paced by the per-connection and per-user request
//! rates like any request.
//!
//! Blocking is per user and bounded ([`MAX_BLOCKED_USERS`]). A blocked user's
//! `OpenDirect` to the blocker is refused (`NotPermitted`), and blocking ends the
//! blocker's membership of their conversation with that user, if any. Group rooms are not
//! affected.

use shared::protocol::{direct_room_name, OpenDirect, Push, Reply, SetBlocked, MAX_BLOCKED_USERS};
use shared::Username;

use super::rooms::{depart, snapshot, Departure};
use super::{encode_push, hub_gone, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::store::{RoomKey, RoomKindRecord, RoomRecord, StoreError};

/// # OpenDirect
/// Makes the conversation with `with` exist with both users as members (creating it, or
/// re-adding whichever of them left) and answers with its snapshot (kind `Direct`). The
/// other user, if they were not a member, is pushed `DirectOpened` with the opener's key;
/// if only the opener was re-added, the other user is pushed `MemberJoined`.
///
/// # Errors
/// [`HandlerError::InvalidInput`] (oneself), [`HandlerError::UnknownUser`],
/// [`HandlerError::NotPermitted`] (`with` blocked the caller),
/// [`HandlerError::RoomNameInUse`], store failures.
pub async fn open(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: OpenDirect,
) -> Result<Reply, HandlerError> {
    if req.with.same_as(user) {
        return Err(HandlerError::InvalidInput(
            "you cannot open a direct conversation with yourself".into(),
        ));
    }
    let peer = state
        .store
        .find_user(&req.with)
        .await?
        .ok_or(HandlerError::UnknownUser)?
        .username;
    if state.store.has_blocked(&peer, user).await? {
        return Err(HandlerError::NotPermitted(
            "that user does not accept direct conversations from you",
        ));
    }
    let name = direct_room_name(user, &peer);
    let key = RoomKey::direct(&name);
    let mut participants = [canonical(user)?, canonical(&peer)?];
    participants.sort();
    let record = RoomRecord {
        kind: RoomKindRecord::Direct { participants },
        ..RoomRecord::group(name.clone(), user.clone(), None, true, now_ms())
    };
    let added = match state.store.open_direct(&key, record).await {
        Ok(added) => added,
        Err(StoreError::NameInUse) => return Err(HandlerError::RoomNameInUse),
        Err(e) => return Err(e.into()),
    };
    let room = state.store.find_room(&key).await?.ok_or_else(|| {
        HandlerError::Internal("direct conversation missing after opening".into())
    })?;
    let snapshot = snapshot(state, &key, &room, user, req.history_limit).await?;
    let me = snapshot
        .members
        .iter()
        .find(|m| m.username.same_as(user))
        .cloned()
        .ok_or_else(|| HandlerError::Internal("opener missing from direct conversation".into()))?;
    let push = if added.iter().any(|a| a.same_as(&peer)) {
        tracing::info!(user = %user, "direct conversation opened");
        Some(Push::DirectOpened {
            room: name.clone(),
            peer: me,
        })
    } else if added.iter().any(|a| a.same_as(user)) {
        Some(Push::MemberJoined {
            room: name.clone(),
            member: me,
        })
    } else {
        None
    };
    if let Some(push) = push {
        state
            .hub
            .broadcast(vec![peer.canonical()], encode_push(push)?, Some(conn))
            .await
            .map_err(hub_gone)?;
    }
    Ok(Reply::Joined(snapshot))
}

/// # SetBlocked
/// Blocks or unblocks `user` for the caller. Blocking also ends the caller's membership
/// of their direct conversation with `user`, if any (the other participant is pushed
/// `MemberLeft`). Answered `Done`, also when nothing changed.
///
/// # Errors
/// [`HandlerError::InvalidInput`] (oneself), [`HandlerError::UnknownUser`],
/// [`HandlerError::QuotaExceeded`] (the list holds `MAX_BLOCKED_USERS`), store failures.
pub async fn set_blocked(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: SetBlocked,
) -> Result<Reply, HandlerError> {
    if req.user.same_as(user) {
        return Err(HandlerError::InvalidInput(
            "you cannot block yourself".into(),
        ));
    }
    let target = state
        .store
        .find_user(&req.user)
        .await?
        .ok_or(HandlerError::UnknownUser)?
        .username;
    match state
        .store
        .set_blocked(user, &target, req.blocked, MAX_BLOCKED_USERS)
        .await
    {
        Ok(_) => {}
        Err(StoreError::QuotaExceeded) => {
            return Err(HandlerError::QuotaExceeded(format!(
                "you have blocked {MAX_BLOCKED_USERS} users; unblock someone first"
            )))
        }
        Err(e) => return Err(e.into()),
    }
    if req.blocked {
        let name = direct_room_name(user, &target);
        if let Some(mine) = state.store.room_of(user, &name).await? {
            depart(state, Some(conn), user, &mine, Departure::Left).await?;
        }
    }
    Ok(Reply::Done)
}

/// `user`'s canonical name as a username.
fn canonical(user: &Username) -> Result<Username, HandlerError> {
    Username::parse(&user.canonical())
        .map_err(|e| HandlerError::Internal(format!("canonical username: {e}")))
}
