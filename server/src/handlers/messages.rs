//! Sending messages and reading history.
//!
//! A send carries one envelope per current member. The server checks that the recipients
//! are exactly the members (so nobody is silently left out or added) and queues the
//! message in the store ([`queue_send`]); the connection can then read its next request
//! while the store writes. Once the message is durable, [`QueuedSend::complete`] hands each
//! online member their own copy and acknowledges. Offline members read theirs from
//! history later.

use std::collections::HashSet;

use bytes::Bytes;
use shared::protocol::{
    codec, DeliveryHead, FetchHistory, Reply, SendAck, SendMessage, MAX_ROOM_MEMBERS,
};
use shared::Username;

use super::rooms::history_page;
use super::{hub_gone, member_info, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::store::{NewMessage, PendingAppend, StoreError};

/// A send that passed its checks and is queued in the store, in order behind the
/// connection's earlier sends. [`complete`](Self::complete) finishes it.
pub struct QueuedSend {
    message: NewMessage,
    stored: PendingAppend,
}

/// # SendMessage, first half
/// - The sender must be a member.
/// - The envelopes' recipients must equal the member set exactly (each member once);
///   otherwise `RecipientMismatch` lists the current members with their keys.
/// - The message is then queued in the store, which fixes its place in the room's order;
///   the connection may go on to its next request while it is written.
///
/// # Errors
/// [`HandlerError::NotAMember`], [`HandlerError::RecipientMismatch`],
/// [`HandlerError::InvalidInput`], store failures.
pub async fn queue_send(
    state: &AppState,
    user: &Username,
    req: SendMessage,
) -> Result<QueuedSend, HandlerError> {
    if req.envelopes.len() > MAX_ROOM_MEMBERS {
        return Err(HandlerError::InvalidInput(format!(
            "at most {MAX_ROOM_MEMBERS} envelopes per message"
        )));
    }
    let members = match state.store.member_names(&req.room).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Err(HandlerError::NotAMember),
        Err(e) => return Err(e.into()),
    };
    if !members.iter().any(|m| m.same_as(user)) {
        return Err(HandlerError::NotAMember);
    }
    let member_set: HashSet<String> = members.iter().map(Username::canonical).collect();
    let mut seen = HashSet::with_capacity(req.envelopes.len());
    let exact = req.envelopes.len() == member_set.len()
        && req.envelopes.iter().all(|e| {
            let name = e.recipient.canonical();
            member_set.contains(&name) && seen.insert(name)
        });
    if !exact {
        let members = state.store.members(&req.room).await?;
        return Err(HandlerError::RecipientMismatch(
            members.iter().map(member_info).collect(),
        ));
    }

    let message = NewMessage {
        room: req.room,
        message_id: req.message_id,
        sender: user.clone(),
        server_time_ms: now_ms(),
        envelopes: req.envelopes,
    };
    let stored = state
        .store
        .queue_message(&message)
        .await
        .map_err(append_refused)?;
    Ok(QueuedSend { message, stored })
}

impl QueuedSend {
    /// # SendMessage, second half
    /// Waits until the store has the message durably, then hands each online member their
    /// copy (not to the sending connection `conn`) and replies `Sent`. Nothing is delivered
    /// or acknowledged before the message is durable.
    ///
    /// # Errors
    /// [`HandlerError::DuplicateMessage`], [`HandlerError::NotAMember`] (the room is gone),
    /// store failures.
    pub async fn complete(self, state: &AppState, conn: ConnId) -> Result<Reply, HandlerError> {
        let seq = self.stored.await.map_err(append_refused)?;
        let NewMessage {
            room,
            message_id,
            sender,
            server_time_ms,
            envelopes,
        } = self.message;
        let head = DeliveryHead {
            room: room.clone(),
            seq,
            message_id,
            sender,
            server_time_ms,
        };
        let frames = codec::encode_deliveries(head, &envelopes)
            .map_err(|e| HandlerError::Internal(format!("encode delivery: {e}")))?
            .into_iter()
            .zip(&envelopes)
            .map(|(frame, copy)| (copy.recipient.canonical(), Bytes::from(frame)))
            .collect();
        state
            .hub
            .deliver(frames, Some(conn))
            .await
            .map_err(hub_gone)?;
        Ok(Reply::Sent(SendAck {
            room,
            message_id,
            seq,
            server_time_ms,
        }))
    }
}

/// The handler error for a store refusing an append.
fn append_refused(err: StoreError) -> HandlerError {
    match err {
        StoreError::AlreadyExists => HandlerError::DuplicateMessage,
        StoreError::NotFound => HandlerError::NotAMember,
        other => other.into(),
    }
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
    let is_member = match state.store.member_names(&req.room).await {
        Ok(m) => m.iter().any(|m| m.same_as(user)),
        Err(StoreError::NotFound) => false,
        Err(e) => return Err(e.into()),
    };
    if !is_member {
        return Err(HandlerError::NotAMember);
    }
    let page = history_page(state, &req.room, user, req.before_seq, req.limit).await?;
    Ok(Reply::History(page))
}
