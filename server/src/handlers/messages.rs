//! Sending messages and reading history.
//!
//! A send carries one envelope per current member. The server checks that the recipients
//! are exactly the members (so nobody is silently left out or added) and queues the
//! message in the store ([`queue_send`]); the connection can then read its next request
//! while the store writes. Once the message is durable, [`QueuedSend::complete`] hands each
//! online member their own copy and acknowledges. Offline members read theirs from
//! history later. A connection's sends hand over their copies in the order they were
//! queued ([`DeliveryOrder`]), whichever completion runs first.

use std::sync::Arc;

use bytes::Bytes;
use rsa::traits::PublicKeyParts;
use shared::crypto::keys;
use shared::protocol::{
    codec, DeliveredMessage, DeliveryHead, Envelope, FetchHistory, Reply, SendAck, SendMessage,
    MAX_FRAME_BYTES, MAX_ROOM_MEMBERS,
};
use shared::{RoomName, Username};
use tokio::sync::oneshot;

use super::rooms::history_page;
use super::{hub_gone, member_info, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::{ConnId, PushFrame};
use crate::store::{NewMessage, PendingAppend, StoreError, UserRecord};

/// The bytes a history page may give its messages: a frame less room for the reply's
/// other fields, of which a snapshot's member list is the largest (up to
/// `MAX_ROOM_MEMBERS` members with keys of up to 4096 bits, about 170 KiB).
pub const PAGE_BUDGET: usize = MAX_FRAME_BYTES - 256 * 1024;

/// An upper bound on the bytes one copy adds to a history page, or makes up of its push
/// frame: the copy, every recipient's name, and 256 bytes for the other fields (room,
/// sender, ids, times, length prefixes and tags take under 200).
pub fn copy_bound(copy: &Envelope, recipients: usize, names: usize) -> usize {
    copy.ciphertext.len() + copy.wrapped_key.len() + names + recipients * 8 + 256
}

/// [`copy_bound`] of a delivered message.
pub fn delivered_bound(m: &DeliveredMessage) -> usize {
    let names = m.recipients.iter().map(|r| r.as_str().len()).sum();
    copy_bound(&m.envelope, m.recipients.len(), names)
}

/// A send that passed its checks and is queued in the store, in order behind the
/// connection's earlier sends. [`complete`](Self::complete) finishes it.
pub struct QueuedSend {
    message: NewMessage,
    /// The room's display name, which deliveries and the acknowledgement carry.
    room: RoomName,
    stored: PendingAppend,
    turn: DeliveryTurn,
}

/// The order in which one connection's queued sends hand their copies to the hub: each
/// waits until every send queued before it has delivered (or failed), so pipelined sends
/// reach every recipient in the order they were stored.
#[derive(Debug, Default)]
pub struct DeliveryOrder {
    last: Option<oneshot::Receiver<()>>,
}

impl DeliveryOrder {
    /// The place of the connection's next send.
    pub fn next_turn(&mut self) -> DeliveryTurn {
        let (done, next) = oneshot::channel();
        DeliveryTurn {
            after: self.last.replace(next),
            done: Some(done),
        }
    }
}

/// One send's place in its connection's [`DeliveryOrder`]. Dropping it, delivered or not,
/// lets the next send deliver, but never before the sends queued ahead of this one: a
/// send that fails before its turn (a duplicate id, a refused check) passes its place on
/// only once its predecessor is done.
#[derive(Debug)]
pub struct DeliveryTurn {
    after: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl DeliveryTurn {
    /// Waits until the send before this one has delivered or given up.
    async fn wait(&mut self) {
        if let Some(previous) = self.after.as_mut() {
            // An error only means the previous send's turn was dropped: it is done too.
            let _ = previous.await;
            self.after = None;
        }
    }
}

impl Drop for DeliveryTurn {
    fn drop(&mut self) {
        let (Some(previous), Some(done)) = (self.after.take(), self.done.take()) else {
            return;
        };
        // This send never waited for its turn. Releasing the next one now would let it
        // deliver before the sends still ahead of this one; release it when they are done.
        // (Outside a runtime there is nothing left to order.)
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = previous.await;
                drop(done);
            });
        }
    }
}

/// # SendMessage, first half
/// - The copies must pass the size checks (see the module docs); they are made before
///   anything is read.
/// - The sender must be a member of a room of that name (found through their own
///   memberships, so a non-member learns nothing about other rooms of the name).
/// - The envelopes' recipients must equal the member set exactly (each member once);
///   otherwise `RecipientMismatch` lists the current members with their keys.
/// - Each wrapped key must be as long as its recipient's current key's modulus.
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
    turn: DeliveryTurn,
) -> Result<QueuedSend, HandlerError> {
    if req.envelopes.len() > MAX_ROOM_MEMBERS {
        return Err(HandlerError::InvalidInput(format!(
            "at most {MAX_ROOM_MEMBERS} envelopes per message"
        )));
    }
    check_sizes(&req.envelopes, state.limits.max_message_bytes)?;
    let mine = state
        .store
        .room_of(user, &req.room)
        .await?
        .ok_or(HandlerError::NotAMember)?;
    let members = match state.store.members(&mine.key).await {
        Ok(m) => m,
        Err(StoreError::NotFound) => return Err(HandlerError::NotAMember),
        Err(e) => return Err(e.into()),
    };
    let names: Vec<Username> = members.iter().map(|m| m.username.clone()).collect();
    if !names.iter().any(|m| m.same_as(user)) {
        return Err(HandlerError::NotAMember);
    }
    if !names_each_once(&names, &req.envelopes) {
        return Err(HandlerError::RecipientMismatch(
            members.iter().map(member_info).collect(),
        ));
    }
    check_wrapped_keys(&members, &req.envelopes)?;

    let message = NewMessage {
        room: mine.key,
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
    Ok(QueuedSend {
        message,
        room: mine.name,
        stored,
        turn,
    })
}

/// The size checks on a message's copies that need nothing but the copies.
///
/// # Errors
/// [`HandlerError::InvalidInput`] saying which rule a copy breaks.
fn check_sizes(copies: &[Envelope], max_ciphertext: usize) -> Result<(), HandlerError> {
    let refuse = |why: String| Err(HandlerError::InvalidInput(why));
    let Some(first) = copies.first() else {
        return Ok(());
    };
    let length = first.ciphertext.len();
    if length > max_ciphertext {
        return refuse(format!(
            "a copy's ciphertext is {length} bytes; this server takes at most {max_ciphertext}"
        ));
    }
    if copies.iter().any(|c| c.ciphertext.len() != length) {
        return refuse("all copies of a message must have ciphertexts of one length".into());
    }
    let names = copies.iter().map(|c| c.recipient.as_str().len()).sum();
    if copies
        .iter()
        .any(|c| copy_bound(c, copies.len(), names) > PAGE_BUDGET)
    {
        return refuse("the message is too large to deliver in one frame".into());
    }
    Ok(())
}

/// Checks that each copy's wrapped key is exactly as long as its recipient's modulus (an
/// RSA-OAEP ciphertext always is). `copies` name each of `members` once.
///
/// # Errors
/// [`HandlerError::InvalidInput`] naming the first recipient whose key size is wrong;
/// [`HandlerError::Internal`] if a stored key does not parse.
fn check_wrapped_keys(members: &[UserRecord], copies: &[Envelope]) -> Result<(), HandlerError> {
    for copy in copies {
        let Some(member) = members.iter().find(|m| m.username.same_as(&copy.recipient)) else {
            continue;
        };
        let modulus = keys::public_from_der(&member.public_key)
            .map_err(|e| HandlerError::Internal(format!("stored key unusable: {e}")))?
            .size();
        if copy.wrapped_key.len() != modulus {
            return Err(HandlerError::InvalidInput(format!(
                "the wrapped key for {} must be {modulus} bytes, the size of their key",
                copy.recipient
            )));
        }
    }
    Ok(())
}

/// Whether `copies` go to every one of `members` exactly once (names compare
/// case-insensitively, as usernames do). Both sides are sorted by canonical name and
/// compared pairwise, without allocating a name per copy.
fn names_each_once(members: &[Username], copies: &[Envelope]) -> bool {
    if members.len() != copies.len() {
        return false;
    }
    let canonical_order = |a: &&str, b: &&str| {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    };
    let mut wanted: Vec<&str> = members.iter().map(Username::as_str).collect();
    let mut given: Vec<&str> = copies.iter().map(|c| c.recipient.as_str()).collect();
    wanted.sort_unstable_by(canonical_order);
    given.sort_unstable_by(canonical_order);
    wanted
        .iter()
        .zip(&given)
        .all(|(w, g)| w.eq_ignore_ascii_case(g))
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
        let Self {
            message,
            room,
            stored,
            mut turn,
        } = self;
        let seq = stored.await.map_err(append_refused)?;
        turn.wait().await;
        let NewMessage {
            room: _,
            message_id,
            sender,
            server_time_ms,
            envelopes,
        } = message;
        let head = DeliveryHead {
            room: room.clone(),
            seq,
            message_id,
            sender,
            server_time_ms,
        };
        let encode_failed = |e| HandlerError::Internal(format!("encode delivery: {e}"));
        let deliveries = codec::Deliveries::new(head, &envelopes).map_err(encode_failed)?;
        let shared = Arc::new(Bytes::copy_from_slice(deliveries.shared()));
        let frames = envelopes
            .iter()
            .map(|copy| {
                let own = Bytes::from(deliveries.own(copy).map_err(encode_failed)?);
                Ok((
                    copy.recipient.canonical(),
                    PushFrame::new(Arc::clone(&shared), own),
                ))
            })
            .collect::<Result<_, HandlerError>>()?;
        state
            .hub
            .deliver(frames, Some(conn))
            .await
            .map_err(hub_gone)?;
        drop(turn);
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
/// A page of the caller's copies older than `before_seq`, in their room of that name.
///
/// # Errors
/// [`HandlerError::NotAMember`], store failures.
pub async fn history(
    state: &AppState,
    user: &Username,
    req: FetchHistory,
) -> Result<Reply, HandlerError> {
    let mine = state
        .store
        .room_of(user, &req.room)
        .await?
        .ok_or(HandlerError::NotAMember)?;
    let page = history_page(
        state,
        &mine.key,
        &mine.name,
        user,
        req.before_seq,
        req.limit,
    )
    .await?;
    Ok(Reply::History(page))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn names(list: &[&str]) -> Vec<Username> {
        list.iter()
            .map(|n| Username::parse(n).expect("valid name"))
            .collect()
    }

    fn copies(list: &[&str]) -> Vec<Envelope> {
        names(list)
            .into_iter()
            .map(|recipient| Envelope {
                recipient,
                wrapped_key: Vec::new(),
                nonce: [0; 12],
                ciphertext: Vec::new(),
            })
            .collect()
    }

    #[actix_web::test]
    async fn each_send_delivers_after_the_one_queued_before_it() {
        let mut order = DeliveryOrder::default();
        let mut first = order.next_turn();
        let mut second = order.next_turn();
        let mut third = order.next_turn();
        first.wait().await;
        assert!(
            futures_util::poll!(Box::pin(second.wait())).is_pending(),
            "the second waits while the first is delivering"
        );
        drop(first);
        second.wait().await;
        assert!(futures_util::poll!(Box::pin(third.wait())).is_pending());
        drop(second);
        third.wait().await;
    }

    #[actix_web::test]
    async fn a_send_that_fails_early_keeps_the_ones_after_it_waiting() {
        let mut order = DeliveryOrder::default();
        let mut first = order.next_turn();
        let second = order.next_turn();
        let mut third = order.next_turn();
        first.wait().await;
        // The second fails (say, a duplicate id) before its turn, while the first is
        // still delivering.
        drop(second);
        let third_waits = tokio::time::timeout(Duration::from_millis(50), third.wait()).await;
        assert!(
            third_waits.is_err(),
            "the third must not overtake the first"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), third.wait())
            .await
            .expect("the third goes once the first is done");
    }

    #[test]
    fn copies_must_name_each_member_once() {
        let members = names(&["Alice", "bob", "carol_2"]);
        let check = |list: &[&str]| names_each_once(&members, &copies(list));
        assert!(check(&["alice", "bob", "carol_2"]), "same names");
        assert!(check(&["CAROL_2", "Alice", "BOB"]), "any order, any case");
        assert!(!check(&["alice", "bob"]), "a member left out");
        assert!(
            !check(&["alice", "bob", "carol_2", "dave"]),
            "a stranger added"
        );
        assert!(
            !check(&["alice", "bob", "dave"]),
            "a member swapped for a stranger"
        );
        assert!(
            !check(&["alice", "bob", "BOB"]),
            "a member twice, another missing"
        );
    }
}
