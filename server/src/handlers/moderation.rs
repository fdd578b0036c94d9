//! Running a group room: `Moderate`.
//!
//! # Who may do what
//! The owner may do everything; admins may kick and ban plain members (and ban users who
//! are not members), unban, and set the topic; changing roles, the password or the
//! visibility, transferring ownership and deleting the room are the owner's alone. Anyone
//! else gets `NotPermitted`, checked before anything about the target is looked at.
//! Nobody can act on the owner (`NotPermitted`); acting on oneself is `InvalidInput`.
//! Direct conversations are never moderated (`NotPermitted`).
//!
//! A kick, role change or transfer whose target is not a member is `InvalidInput` (the
//! caller's own membership is what `NotAMember` reports). A ban may name any existing
//! account, member or not (`UnknownUser` otherwise); an unban any name.
//!
//! # What members are told
//! Every action is answered with `Reply::Moderated(event)` and the same event is pushed
//! (`Push::RoomEvent`) to every connection of everyone who was a member when the action
//! started (the removed user's too, for a kick or ban; every former member, for a
//! deletion), except the actor's own connection, which has the reply. Events are not
//! stored in the room's history: a member offline at the time learns the result (roles,
//! topic, members) from the snapshot when they next open the room.
//!
//! # Passwords and visibility move rooms
//! A hidden room's key derives from its name and password, and a public room's from its
//! name (see [`crate::store`]): setting a hidden room's password, or switching a room
//! between hidden and public, moves it to its new key ([`Store::move_room`]), with its
//! members, history, roles and bans, so its old name and password find nothing. The new
//! key may be another room's (`RoomExists`). A public room's password is an argon2id hash
//! beside its key: changing it is an update. A room with a password cannot switch
//! between hidden and public (`InvalidInput`): the server keeps a hidden room's password
//! only as part of its key and a public room's only as a hash, so it has nothing to derive
//! the new form from; remove the password, switch, and set it again.
//!
//! [`Store::move_room`]: crate::store::Store::move_room

use shared::protocol::{
    check_topic, Moderate, ModerationAction, Reply, Role, RoomChange, RoomEvent, MAX_ROOM_BANS,
};
use shared::{RoomName, Username};

use super::rooms::my_room;
use super::{announce, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::passwords;
use crate::store::{Membership, RoomKey, RoomRecord, RoomUpdate, StoreError};

/// # Moderate
/// Applies one [`ModerationAction`] to the caller's group room of that name (see the
/// module docs for the rules), answers with the event and pushes it to the members.
///
/// # Errors
/// [`HandlerError::NotAMember`], [`HandlerError::NotPermitted`],
/// [`HandlerError::UnknownUser`], [`HandlerError::InvalidInput`],
/// [`HandlerError::RoomExists`], [`HandlerError::QuotaExceeded`] (a full ban list),
/// [`HandlerError::Busy`] (the argon2 pool is full), store failures.
pub async fn moderate(
    state: &AppState,
    conn: ConnId,
    actor: &Username,
    req: Moderate,
) -> Result<Reply, HandlerError> {
    let mine = my_room(state, actor, &req.room).await?;
    let room = state
        .store
        .find_room(&mine.key)
        .await?
        .ok_or(HandlerError::NotAMember)?;
    if room.participants().is_some() {
        return Err(HandlerError::NotPermitted(
            "direct conversations cannot be moderated",
        ));
    }
    let role = room.role_of(actor);
    let members = state.store.member_names(&mine.key).await?;
    let change = apply(state, &mine, &room, role, actor, &members, req.action).await?;
    // A listed room changed, or a hidden one became listed.
    if room.is_listed() || matches!(change, RoomChange::VisibilityChanged { hidden: false }) {
        state.lobby.changed();
    }
    let event = publish(state, mine.name, actor, change, &members, Some(conn)).await?;
    Ok(Reply::Moderated(event))
}

/// Tells `members` (everyone who was a member when the action started) what changed in
/// `room`, by `actor`, pushing the event to every connection of theirs but `except` (the
/// one that asked, which has the reply); returns the event. Moderation and an operator's
/// room deletion (`server admin rooms delete`) both end here.
///
/// # Errors
/// [`HandlerError::Internal`] if the push cannot be encoded or the hub has stopped.
pub async fn publish(
    state: &AppState,
    room: RoomName,
    actor: &Username,
    change: RoomChange,
    members: &[Username],
    except: Option<ConnId>,
) -> Result<RoomEvent, HandlerError> {
    tracing::info!(room = %room, actor = %actor, change = change_name(&change), "room moderated");
    let event = RoomEvent {
        room,
        actor: actor.clone(),
        at_ms: now_ms(),
        change,
    };
    announce(state, event.clone(), members, except).await?;
    Ok(event)
}

/// Deletes the room under `key` with its memberships and history: `DeleteRoom`'s work,
/// and an operator's (`server admin rooms delete`); [`publish`] then tells the members.
/// A room already gone counts as deleted.
///
/// # Errors
/// Store failures.
pub async fn delete_room(state: &AppState, key: &RoomKey) -> Result<RoomChange, HandlerError> {
    match state.store.delete_room(key).await {
        Ok(_) | Err(StoreError::NotFound) => Ok(RoomChange::RoomDeleted),
        Err(e) => Err(e.into()),
    }
}

/// Carries out `action` and says what changed.
async fn apply(
    state: &AppState,
    mine: &Membership,
    room: &RoomRecord,
    role: Role,
    actor: &Username,
    members: &[Username],
    action: ModerationAction,
) -> Result<RoomChange, HandlerError> {
    let key = &mine.key;
    match action {
        ModerationAction::Kick { user } => {
            at_least(role, Role::Admin)?;
            let target = member_named(members, &user)?;
            may_act_on(room, role, actor, &target)?;
            if !state.store.remove_member(key, &target).await? {
                return Err(not_a_member());
            }
            Ok(RoomChange::Kicked { user: target })
        }
        ModerationAction::Ban { user } => {
            at_least(role, Role::Admin)?;
            let target = state
                .store
                .find_user(&user)
                .await?
                .ok_or(HandlerError::UnknownUser)?
                .username;
            may_act_on(room, role, actor, &target)?;
            match state.store.ban(key, &target, MAX_ROOM_BANS).await {
                Ok(_) => Ok(RoomChange::Banned { user: target }),
                Err(StoreError::QuotaExceeded) => Err(HandlerError::QuotaExceeded(format!(
                    "the room's ban list holds {MAX_ROOM_BANS} users; unban someone first"
                ))),
                Err(e) => Err(e.into()),
            }
        }
        ModerationAction::Unban { user } => {
            at_least(role, Role::Admin)?;
            if !state.store.unban(key, &user).await? {
                return Err(HandlerError::InvalidInput(
                    "that user is not banned from this room".into(),
                ));
            }
            Ok(RoomChange::Unbanned { user })
        }
        ModerationAction::SetRole { user, role: new } => {
            at_least(role, Role::Owner)?;
            let admin = match new {
                Role::Admin => true,
                Role::Member => false,
                Role::Owner => {
                    return Err(HandlerError::InvalidInput(
                        "use TransferOwnership to make someone the owner".into(),
                    ))
                }
            };
            let target = member_named(members, &user)?;
            may_act_on(room, role, actor, &target)?;
            let update = RoomUpdate::Admin {
                user: target.clone(),
                admin,
            };
            member_update(state, key, update).await?;
            Ok(RoomChange::RoleChanged {
                user: target,
                role: new,
            })
        }
        ModerationAction::SetTopic { topic } => {
            at_least(role, Role::Admin)?;
            let topic = topic.filter(|t| !t.is_empty());
            if let Some(topic) = &topic {
                check_topic(topic).map_err(|e| HandlerError::InvalidInput(e.to_string()))?;
            }
            state
                .store
                .update_room(key, RoomUpdate::Topic(topic.clone()))
                .await?;
            Ok(RoomChange::TopicChanged { topic })
        }
        ModerationAction::SetPassword { password } => {
            at_least(role, Role::Owner)?;
            if let Some(password) = &password {
                passwords::validate(password)?;
            }
            let has_password = password.is_some();
            if room.hidden {
                // A hidden room's password is part of its key (a legacy hidden room under
                // its name moves to the hidden namespace too).
                let to = state
                    .room_secret
                    .hidden_key(&room.name, password.as_deref());
                relocate(state, key, &to, true, None).await?;
            } else {
                let hash = match password {
                    Some(password) => Some(state.passwords.hash(password).await?),
                    None => None,
                };
                state
                    .store
                    .update_room(key, RoomUpdate::PasswordHash(hash))
                    .await?;
            }
            Ok(RoomChange::PasswordChanged { has_password })
        }
        ModerationAction::SetHidden { hidden } => {
            at_least(role, Role::Owner)?;
            if room.password_hash.is_some() || key.password_in_key() {
                return Err(HandlerError::InvalidInput(
                    "a room with a password cannot change visibility: remove the password, \
                     change visibility, then set it again"
                        .into(),
                ));
            }
            let to = if hidden {
                state.room_secret.hidden_key(&room.name, None)
            } else {
                RoomKey::public(&room.name)
            };
            relocate(state, key, &to, hidden, None).await?;
            Ok(RoomChange::VisibilityChanged { hidden })
        }
        ModerationAction::TransferOwnership { to } => {
            at_least(role, Role::Owner)?;
            let target = member_named(members, &to)?;
            may_act_on(room, role, actor, &target)?;
            member_update(state, key, RoomUpdate::Owner { to: target.clone() }).await?;
            Ok(RoomChange::OwnerChanged { to: target })
        }
        ModerationAction::DeleteRoom => {
            at_least(role, Role::Owner)?;
            delete_room(state, key).await
        }
    }
}

/// Refuses with `NotPermitted` unless `role` is `needed` or higher.
fn at_least(role: Role, needed: Role) -> Result<(), HandlerError> {
    let rank = |r: Role| match r {
        Role::Owner => 2,
        Role::Admin => 1,
        Role::Member => 0,
    };
    if rank(role) >= rank(needed) {
        Ok(())
    } else {
        Err(HandlerError::NotPermitted(
            "your role in this room does not allow that",
        ))
    }
}

/// Whether an actor of `role` may act on `target`: never on oneself (`InvalidInput`) or
/// the owner, and an admin only on plain members (`NotPermitted`).
fn may_act_on(
    room: &RoomRecord,
    role: Role,
    actor: &Username,
    target: &Username,
) -> Result<(), HandlerError> {
    if target.same_as(actor) {
        return Err(HandlerError::InvalidInput(
            "you cannot do that to yourself".into(),
        ));
    }
    match (role, room.role_of(target)) {
        (_, Role::Owner) => Err(HandlerError::NotPermitted("nobody can act on the owner")),
        (Role::Owner, _) | (Role::Admin, Role::Member) => Ok(()),
        _ => Err(HandlerError::NotPermitted(
            "admins can act on plain members only",
        )),
    }
}

/// The member named `user` (any case), with their display name.
fn member_named(members: &[Username], user: &Username) -> Result<Username, HandlerError> {
    members
        .iter()
        .find(|m| m.same_as(user))
        .cloned()
        .ok_or_else(not_a_member)
}

/// The target of an action that needs a member is not one.
fn not_a_member() -> HandlerError {
    HandlerError::InvalidInput("that user is not a member of this room".into())
}

/// An update naming a member, which the store refuses if they left meanwhile.
async fn member_update(
    state: &AppState,
    key: &RoomKey,
    update: RoomUpdate,
) -> Result<(), HandlerError> {
    match state.store.update_room(key, update).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound) => Err(not_a_member()),
        Err(e) => Err(e.into()),
    }
}

/// Moves the room to key `to` (nothing to do when that is where it is).
async fn relocate(
    state: &AppState,
    from: &RoomKey,
    to: &RoomKey,
    hidden: bool,
    password_hash: Option<String>,
) -> Result<(), HandlerError> {
    if from == to {
        return Ok(());
    }
    match state.store.move_room(from, to, hidden, password_hash).await {
        Ok(()) => Ok(()),
        Err(StoreError::AlreadyExists) => Err(HandlerError::RoomExists),
        Err(e) => Err(e.into()),
    }
}

/// The change's name for logs (topics and names stay out of them).
fn change_name(change: &RoomChange) -> &'static str {
    match change {
        RoomChange::Kicked { .. } => "kicked",
        RoomChange::Banned { .. } => "banned",
        RoomChange::Unbanned { .. } => "unbanned",
        RoomChange::RoleChanged { .. } => "role changed",
        RoomChange::TopicChanged { .. } => "topic changed",
        RoomChange::PasswordChanged { .. } => "password changed",
        RoomChange::VisibilityChanged { .. } => "visibility changed",
        RoomChange::OwnerChanged { .. } => "owner changed",
        RoomChange::RoomDeleted => "room deleted",
    }
}
