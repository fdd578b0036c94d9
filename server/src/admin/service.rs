//! Carrying out operators' requests in the running server, on its own [`AppState`].
//!
//! Deletions take the protocol's own paths, so an operator's deletion and a user's are one
//! code path: deleting a user is [`handlers::account::delete_account`] (their sessions are
//! closed with 4002 through the hub or the scale-out fan-out, they leave every room as
//! `LeaveRoom` does, owned rooms are handed over or, left empty, deleted, and the name
//! stays reserved); deleting a room is `DeleteRoom`'s [`handlers::moderation::delete_room`]
//! and [`handlers::moderation::publish`] (every member is pushed `RoomDeleted`, its history
//! is deleted). The protocol has no operator to name as the event's actor, so a deletion
//! is announced in the room owner's name, as if they had deleted it. Purging is the
//! retention task's [`Store::prune_messages`](crate::store::Store::prune_messages).

use shared::crypto::keys::Fingerprint;
use shared::{RoomName, Username};

use super::protocol::{
    AdminError, Answer, Request, RoomDetail, RoomKind, RoomSummary, UserDetail, UserSummary,
    MAX_PAGE,
};
use crate::error::{CauseChain, HandlerError};
use crate::handlers::{self, now_ms, AppState};
use crate::store::{Retention, RoomKey, RoomListing, StoreError, UserRecord};

/// Carries out `request`.
///
/// # Errors
/// [`AdminError`]: unknown or ambiguous names, malformed values, store failures.
pub async fn handle(state: &AppState, request: Request) -> Result<Answer, AdminError> {
    match request {
        Request::ListUsers { after, limit } => {
            let after = after.as_deref().map(username).transpose()?;
            let users = state
                .store
                .list_users(after.as_ref(), limit.min(MAX_PAGE))
                .await
                .map_err(store_failed)?;
            Ok(Answer::Users {
                users: users.iter().map(user_summary).collect(),
            })
        }
        Request::ShowUser { name } => show_user(state, &name).await,
        Request::DeleteUser { name } => {
            let user = find_user(state, &name).await?.username;
            let rooms_left = state
                .store
                .rooms_of(&user)
                .await
                .map_err(store_failed)?
                .into_iter()
                .map(|m| m.name.to_string())
                .collect();
            handlers::account::delete_account(state, &user, None)
                .await
                .map_err(handler_failed)?;
            tracing::info!(user = %user, "account deleted by an operator");
            Ok(Answer::UserDeleted {
                name: user.to_string(),
                rooms_left,
            })
        }
        Request::ListRooms { after, limit } => {
            let after = after.map(RoomKey::from_stored);
            let rooms = state
                .store
                .list_all_rooms(after.as_ref(), limit.min(MAX_PAGE))
                .await
                .map_err(store_failed)?;
            Ok(Answer::Rooms {
                rooms: rooms.iter().map(|(k, l)| room_summary(k, l)).collect(),
            })
        }
        Request::ShowRoom { room } => {
            let (key, listing) = find_room(state, &room).await?;
            show_room(state, &key, listing).await
        }
        Request::DeleteRoom { room } => {
            let (key, listing) = find_room(state, &room).await?;
            let summary = room_summary(&key, &listing);
            let change = handlers::moderation::delete_room(state, &key)
                .await
                .map_err(handler_failed)?;
            if listing.room.is_listed() {
                state.lobby.changed();
            }
            let owner = listing.room.owner.clone();
            handlers::moderation::publish(
                state,
                listing.room.name,
                &owner,
                change,
                &listing.members,
                None,
            )
            .await
            .map_err(handler_failed)?;
            tracing::info!(room = %key, "room deleted by an operator");
            Ok(Answer::RoomDeleted { room: summary })
        }
        Request::Stats => Ok(Answer::Stats {
            store: state.store.backend().to_owned(),
            stats: state.store.stats().await.map_err(store_failed)?,
        }),
        Request::Purge {
            older_than_secs,
            keep_newest,
        } => purge(state, older_than_secs, keep_newest).await,
    }
}

/// `ShowUser`: the account, its rooms, its room count and its key rotations.
async fn show_user(state: &AppState, name: &str) -> Result<Answer, AdminError> {
    let user = find_user(state, name).await?;
    let store = &state.store;
    let rooms = store.rooms_of(&user.username).await.map_err(store_failed)?;
    let rooms_created = store
        .owned_room_count(&user.username)
        .await
        .map_err(store_failed)?;
    let key_rotations = match store.key_history(&user.username).await {
        Ok(history) => history.len(),
        // Deleted meanwhile.
        Err(StoreError::NotFound) => 0,
        Err(e) => return Err(store_failed(e)),
    };
    Ok(Answer::User(UserDetail {
        summary: user_summary(&user),
        rooms: rooms.into_iter().map(|m| m.name.to_string()).collect(),
        rooms_created,
        key_rotations,
    }))
}

/// `ShowRoom`: the room, its roles, bans and message count.
async fn show_room(
    state: &AppState,
    key: &RoomKey,
    listing: RoomListing,
) -> Result<Answer, AdminError> {
    let gone = |e: StoreError| match e {
        StoreError::NotFound => AdminError::UnknownRoom {
            room: key.as_str().to_owned(),
        },
        e => store_failed(e),
    };
    let banned = state.store.bans(key).await.map_err(gone)?;
    let messages = state.store.message_count(key).await.map_err(gone)?;
    let summary = room_summary(key, &listing);
    let room = listing.room;
    Ok(Answer::Room(RoomDetail {
        summary,
        member_names: listing.members.iter().map(ToString::to_string).collect(),
        admins: room.admins.iter().map(ToString::to_string).collect(),
        topic: room.topic,
        banned: banned.iter().map(ToString::to_string).collect(),
        messages,
    }))
}

/// `Purge`: the retention task's deletion, once, with the operator's limits.
async fn purge(
    state: &AppState,
    older_than_secs: Option<u64>,
    keep_newest: Option<u64>,
) -> Result<Answer, AdminError> {
    let policy = Retention {
        older_than_ms: older_than_secs
            .map(|secs| now_ms().saturating_sub(secs.saturating_mul(1000))),
        keep_newest,
    };
    if policy.keeps_everything() {
        return Err(AdminError::BadRequest {
            reason: "say what to purge: older_than_secs, keep_newest or both".into(),
        });
    }
    let messages = state
        .store
        .prune_messages(&policy)
        .await
        .map_err(store_failed)?;
    tracing::info!(messages, "messages purged by an operator");
    Ok(Answer::Purged { messages })
}

/// The account named `name` (any case).
async fn find_user(state: &AppState, name: &str) -> Result<UserRecord, AdminError> {
    state
        .store
        .find_user(&username(name)?)
        .await
        .map_err(store_failed)?
        .ok_or_else(|| AdminError::UnknownUser { name: name.into() })
}

/// The room `spec` names: a key (it starts with `~`, which no room name holds, or is a
/// public room's canonical name), or a name, which must then be the name of exactly one
/// room. A name is looked for among every room, hidden ones included, whose keys do not
/// derive from the name alone; this walks all rooms, page by page (operators' lookups
/// are rare).
async fn find_room(state: &AppState, spec: &str) -> Result<(RoomKey, RoomListing), AdminError> {
    let unknown = || AdminError::UnknownRoom { room: spec.into() };
    if spec.starts_with(crate::store::HIDDEN_KEY_MARK) {
        let key = RoomKey::from_stored(spec.to_owned());
        let room = state
            .store
            .find_room(&key)
            .await
            .map_err(store_failed)?
            .ok_or_else(unknown)?;
        let members = match state.store.member_names(&key).await {
            Ok(members) => members,
            Err(StoreError::NotFound) => return Err(unknown()),
            Err(e) => return Err(store_failed(e)),
        };
        return Ok((key, RoomListing { room, members }));
    }
    let canonical = RoomName::parse(spec)
        .map_err(|e| AdminError::BadRequest {
            reason: format!("{spec:?} is neither a room name nor a room key: {e}"),
        })?
        .canonical();
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = state
            .store
            .list_all_rooms(after.as_ref(), MAX_PAGE)
            .await
            .map_err(store_failed)?;
        let full = page.len() == MAX_PAGE;
        after = page.last().map(|(key, _)| key.clone());
        found.extend(
            page.into_iter()
                .filter(|(_, l)| l.room.name.canonical() == canonical),
        );
        if !full {
            break;
        }
    }
    match found.len() {
        0 => Err(unknown()),
        1 => Ok(found.remove(0)),
        _ => Err(AdminError::AmbiguousRoom {
            room: spec.into(),
            keys: found.iter().map(|(k, _)| k.as_str().to_owned()).collect(),
        }),
    }
}

/// `name` as a username.
fn username(name: &str) -> Result<Username, AdminError> {
    Username::parse(name).map_err(|e| AdminError::BadRequest {
        reason: format!("{name:?} is not a username: {e}"),
    })
}

/// An account as a listing shows it.
fn user_summary(user: &UserRecord) -> UserSummary {
    UserSummary {
        name: user.username.to_string(),
        created_at_ms: user.created_at_ms,
        fingerprint: Fingerprint::of_der(&user.public_key).to_string(),
    }
}

/// A room as a listing shows it.
fn room_summary(key: &RoomKey, listing: &RoomListing) -> RoomSummary {
    let room = &listing.room;
    let kind = if room.participants().is_some() {
        RoomKind::Direct
    } else if room.hidden {
        RoomKind::Hidden
    } else {
        RoomKind::Public
    };
    RoomSummary {
        name: room.name.to_string(),
        key: key.as_str().to_owned(),
        kind,
        has_password: room.password_hash.is_some() || key.password_in_key(),
        owner: room.owner.to_string(),
        members: listing.members.len(),
        created_at_ms: room.created_at_ms,
    }
}

/// A store failure, logged with its cause; the reply names its class only.
fn store_failed(e: StoreError) -> AdminError {
    tracing::error!(error = %CauseChain(&e), "admin request: store failure");
    AdminError::Store {
        reason: e.to_string(),
    }
}

/// A failure of a shared handler path, logged with its cause.
fn handler_failed(e: HandlerError) -> AdminError {
    match e {
        HandlerError::Store(e) => store_failed(e),
        other => {
            tracing::error!(error = %other, "admin request failed");
            AdminError::Internal {
                reason: other.to_string(),
            }
        }
    }
}
