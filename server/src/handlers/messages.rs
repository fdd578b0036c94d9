//! Sending messages and reading history.
//!
//! A send carries one envelope per current member. The server checks that the recipients
//! are exactly the members (so nobody is silently left out or added), stores the message
//! with all its copies, acknowledges only once the store has it durably, and then hands
//! each online member their own copy. Offline members read theirs from history later.

use std::collections::HashSet;

use bytes::Bytes;
use shared::protocol::{
    codec, DeliveredMessage, FetchHistory, Push, Reply, SendAck, SendMessage, ServerMsg,
    MAX_ROOM_MEMBERS,
};
use shared::Username;

use super::rooms::history_page;
use super::{hub_gone, member_info, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::store::{NewMessage, StoreError};

/// # SendMessage
/// - The sender must be a member.
/// - The envelopes' recipients must equal the member set exactly (each member once);
///   otherwise `RecipientMismatch` lists the current members with their keys.
/// - Replies `Sent` after the store has durably written the message, then delivers each
///   online member's copy to their connections (not to the sending connection).
///
/// # Errors
/// [`HandlerError::NotAMember`], [`HandlerError::RecipientMismatch`],
/// [`HandlerError::DuplicateMessage`], [`HandlerError::InvalidInput`], store failures.
pub async fn send(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: SendMessage,
) -> Result<Reply, HandlerError> {
    if req.envelopes.len() > MAX_ROOM_MEMBERS {
        return Err(HandlerError::InvalidInput(format!(
            "at most {MAX_ROOM_MEMBERS} envelopes per message"
        )));
    }
    let members = match state.store.members(&req.room).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Err(HandlerError::NotAMember),
        Err(e) => return Err(e.into()),
    };
    if !members.iter().any(|m| m.username.same_as(user)) {
        return Err(HandlerError::NotAMember);
    }
    let member_set: HashSet<String> = members.iter().map(|m| m.username.canonical()).collect();
    let mut seen = HashSet::with_capacity(req.envelopes.len());
    let exact = req.envelopes.len() == member_set.len()
        && req.envelopes.iter().all(|e| {
            let name = e.recipient.canonical();
            member_set.contains(&name) && seen.insert(name)
        });
    if !exact {
        return Err(HandlerError::RecipientMismatch(
            members.iter().map(member_info).collect(),
        ));
    }

    let room = req.room;
    let server_time_ms = now_ms();
    let message = NewMessage {
        room: room.clone(),
        message_id: req.message_id,
        sender: user.clone(),
        server_time_ms,
        envelopes: req.envelopes,
    };
    // The store consumes the message; keep the envelopes for delivery.
    let envelopes = message.envelopes.clone();
    let seq = match state.store.append_message(message).await {
        Ok(seq) => seq,
        Err(StoreError::AlreadyExists) => return Err(HandlerError::DuplicateMessage),
        Err(StoreError::NotFound) => return Err(HandlerError::NotAMember),
        Err(e) => return Err(e.into()),
    };

    let frames = envelopes
        .into_iter()
        .map(|envelope| {
            let recipient = envelope.recipient.canonical();
            let push = ServerMsg::Push(Push::Message(DeliveredMessage {
                room: room.clone(),
                seq,
                message_id: req.message_id,
                sender: user.clone(),
                server_time_ms,
                envelope,
            }));
            codec::encode_server(&push)
                .map(|f| (recipient, Bytes::from(f)))
                .map_err(|e| HandlerError::Internal(format!("encode delivery: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    state
        .hub
        .deliver(frames, Some(conn))
        .await
        .map_err(hub_gone)?;
    Ok(Reply::Sent(SendAck {
        room,
        message_id: req.message_id,
        seq,
        server_time_ms,
    }))
}

/// # FetchHistory
/// A page of the caller's copies older than `before_seq`.
///
/// # Errors
/// [`HandlerError::NotAMember`], store failures.
pub async fn history(
    state: &AppState,
    user: &Username,
    req: FetchHistory,
) -> Result<Reply, HandlerError> {
    let is_member = match state.store.members(&req.room).await {
        Ok(m) => m.iter().any(|m| m.username.same_as(user)),
        Err(StoreError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    if !is_member {
        return Err(HandlerError::NotAMember);
    }
    let page = history_page(state, &req.room, user, req.before_seq, req.limit).await?;
    Ok(Reply::History(page))
}
