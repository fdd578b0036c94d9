//! Rooms: listing, creation, joining and leaving.
//!
//! Membership is persistent: joining makes the user a member until they leave, and all
//! their connections receive the room's messages. Hidden rooms are never listed, and for
//! them "no such room" and "wrong password" are the same error and take the same time.

use shared::protocol::{
    CreateRoom, DeliveredMessage, HistoryPage, JoinRoom, LeaveRoom, Left, ListRooms, Push, Reply,
    RoomList, RoomSnapshot, RoomSummary, MAX_HISTORY_PAGE, MAX_ROOM_LIST_PAGE,
};
use shared::{RoomName, Username};

use super::messages::{delivered_bound, PAGE_BUDGET};
use super::{encode_push, hub_gone, member_info, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::passwords;
use crate::store::{RoomFilter, RoomQuery, RoomRecord, StoreError};

/// # ListRooms
/// One page of the public rooms in canonical-name order, each with member and
/// online-member counts, and the number of users online.
/// - `after`: only rooms whose canonical name sorts after it (it need not name a room).
/// - `filter`: only rooms whose name contains it, ignoring case (at most 48 characters;
///   empty means no filter).
/// - `limit`: the page size, capped at `MAX_ROOM_LIST_PAGE`; 0 means the cap.
/// - `next_after` is the page's last name when more rooms follow, `None` otherwise.
///
/// A page holds at most `MAX_ROOM_LIST_PAGE` short summaries, so the reply always fits in
/// a frame.
///
/// # Errors
/// [`HandlerError::InvalidInput`] for a longer filter, store failures.
pub async fn list(
    state: &AppState,
    _user: &Username,
    req: ListRooms,
) -> Result<Reply, HandlerError> {
    let filter = match req.filter.as_deref() {
        Some(text) => {
            RoomFilter::new(text).map_err(|e| HandlerError::InvalidInput(e.to_string()))?
        }
        None => None,
    };
    let limit = match req.limit {
        0 => MAX_ROOM_LIST_PAGE,
        n => n.min(MAX_ROOM_LIST_PAGE),
    };
    let page = state
        .store
        .list_public_rooms(&RoomQuery {
            after: req.after,
            filter,
            limit: usize::from(limit),
        })
        .await?;
    let groups = page
        .rooms
        .iter()
        .map(|l| l.members.iter().map(Username::canonical).collect())
        .collect();
    let counts = state.hub.online(groups).await.map_err(hub_gone)?;
    let next_after = page
        .more
        .then(|| page.rooms.last().map(|l| l.room.name.clone()))
        .flatten();
    let rooms = page
        .rooms
        .into_iter()
        .zip(counts.per_group)
        .map(|(l, online)| RoomSummary {
            name: l.room.name,
            has_password: l.room.password_hash.is_some(),
            members: u32::try_from(l.members.len()).unwrap_or(u32::MAX),
            members_online: online,
        })
        .collect();
    Ok(Reply::Rooms(RoomList {
        rooms,
        users_online: counts.users_online,
        next_after,
    }))
}

/// # CreateRoom
/// Creates the room with the caller as owner and first member. A password is stored only
/// as an argon2id hash. The cheap checks come before the hash: the password's length, the
/// caller's room quota (`--rooms-per-user` rooms created), and whether the name is taken.
///
/// # Errors
/// [`HandlerError::RoomExists`], [`HandlerError::InvalidInput`],
/// [`HandlerError::QuotaExceeded`], [`HandlerError::Busy`] (the argon2 pool is full),
/// store failures.
pub async fn create(
    state: &AppState,
    user: &Username,
    req: CreateRoom,
) -> Result<Reply, HandlerError> {
    if let Some(pw) = &req.password {
        passwords::validate(pw)?;
    }
    let quota = state.limits.rooms_per_user;
    if state.store.owned_room_count(user).await? >= quota {
        return Err(HandlerError::QuotaExceeded(format!(
            "you have created the most rooms one user may ({quota})"
        )));
    }
    if state.store.find_room(&req.name).await?.is_some() {
        return Err(HandlerError::RoomExists);
    }
    let password_hash = match req.password {
        Some(pw) => Some(state.passwords.hash(pw).await?),
        None => None,
    };
    let record = RoomRecord {
        name: req.name.clone(),
        owner: user.clone(),
        password_hash,
        hidden: req.hidden,
        created_at_ms: now_ms(),
    };
    match state.store.create_room(record.clone()).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists) => return Err(HandlerError::RoomExists),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(room = %req.name, owner = %user, hidden = req.hidden, "room created");
    let snapshot = snapshot(state, &record, user, 0).await?;
    Ok(Reply::RoomCreated(snapshot))
}

/// # JoinRoom
/// - A member re-joining gets the snapshot without a password and nobody is notified.
/// - A new member must give the right password if the room has one; the other members'
///   connections (and the joiner's other connections) get `MemberJoined` with the key.
/// - The snapshot carries all members with keys and the newest `history_limit` messages
///   the caller has copies of.
///
/// Before anything is looked up or hashed: a password longer than `MAX_PASSWORD_BYTES`
/// is refused, and so is a join while the caller's failed joins of this room (or of any)
/// have them waiting (see [`crate::limits::joins`]). A `RoomUnavailable` or
/// `WrongPassword` answer counts as a failure; a successful join clears the room's.
///
/// # Errors
/// [`HandlerError::RoomUnavailable`] (missing room; wrong or missing password for a hidden
/// room), [`HandlerError::WrongPassword`] (public room), [`HandlerError::InvalidInput`],
/// [`HandlerError::Throttled`], [`HandlerError::Busy`] (the argon2 pool is full), store
/// failures.
pub async fn join(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: JoinRoom,
) -> Result<Reply, HandlerError> {
    passwords::check_length(req.password.as_deref())?;
    let joins = &state.limits.joins;
    joins.check(user, &req.name)?;
    let name = req.name.clone();
    let outcome = join_unthrottled(state, conn, user, req).await;
    match &outcome {
        Ok(_) => joins.succeeded(user, &name),
        Err(HandlerError::RoomUnavailable | HandlerError::WrongPassword) => {
            joins.failed(user, &name);
        }
        Err(_) => {}
    }
    outcome
}

/// [`join`] past its entry checks.
async fn join_unthrottled(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: JoinRoom,
) -> Result<Reply, HandlerError> {
    let Some(room) = state.store.find_room(&req.name).await? else {
        // Spend the time a password check costs, so that timing does not tell a missing
        // room from a hidden, password-protected one (whose check runs even without a
        // password given).
        state
            .passwords
            .verify(None, req.password.unwrap_or_default())
            .await?;
        return Err(HandlerError::RoomUnavailable);
    };
    let is_member = state
        .store
        .members(&room.name)
        .await?
        .iter()
        .any(|m| m.username.same_as(user));
    if !is_member {
        if let Some(hash) = &room.password_hash {
            let given = req.password.clone().unwrap_or_default();
            if !state.passwords.verify(Some(hash.clone()), given).await? {
                return Err(if room.hidden {
                    HandlerError::RoomUnavailable
                } else {
                    HandlerError::WrongPassword
                });
            }
        }
        match state.store.add_member(&room.name, user).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => return Err(HandlerError::RoomUnavailable),
            Err(StoreError::RoomFull) => {
                return Err(HandlerError::InvalidInput("the room is full".into()))
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(room = %room.name, user = %user, "joined");
    }
    let snapshot = snapshot(state, &room, user, req.history_limit).await?;
    if !is_member {
        let me = snapshot
            .members
            .iter()
            .find(|m| m.username.same_as(user))
            .cloned()
            .ok_or_else(|| HandlerError::Internal("joined member missing from room".into()))?;
        let frame = encode_push(Push::MemberJoined {
            room: room.name.clone(),
            member: me,
        })?;
        let recipients = snapshot
            .members
            .iter()
            .map(|m| m.username.canonical())
            .collect();
        state
            .hub
            .broadcast(recipients, frame, Some(conn))
            .await
            .map_err(hub_gone)?;
    }
    Ok(Reply::Joined(snapshot))
}

/// # LeaveRoom
/// Ends the membership; remaining members and the leaver's other connections get
/// `MemberLeft`.
///
/// # Errors
/// [`HandlerError::NotAMember`], store failures.
pub async fn leave(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: LeaveRoom,
) -> Result<Reply, HandlerError> {
    let room = state
        .store
        .find_room(&req.room)
        .await?
        .ok_or(HandlerError::NotAMember)?;
    if !state.store.remove_member(&room.name, user).await? {
        return Err(HandlerError::NotAMember);
    }
    tracing::info!(room = %room.name, user = %user, "left");
    let remaining = state.store.members(&room.name).await?;
    let frame = encode_push(Push::MemberLeft {
        room: room.name.clone(),
        username: user.clone(),
    })?;
    let recipients = remaining
        .iter()
        .map(|m| m.username.canonical())
        .chain(std::iter::once(user.canonical()))
        .collect();
    state
        .hub
        .broadcast(recipients, frame, Some(conn))
        .await
        .map_err(hub_gone)?;
    Ok(Reply::Left(Left { room: room.name }))
}

async fn snapshot(
    state: &AppState,
    room: &RoomRecord,
    user: &Username,
    history_limit: u16,
) -> Result<RoomSnapshot, HandlerError> {
    let members = state.store.members(&room.name).await?;
    let history = history_page(state, &room.name, user, None, history_limit).await?;
    Ok(RoomSnapshot {
        room: room.name.clone(),
        owner: room.owner.clone(),
        has_password: room.password_hash.is_some(),
        hidden: room.hidden,
        members: members.iter().map(member_info).collect(),
        history,
    })
}

/// Store reads one history request may make while every message it finds is too large for
/// a page (copies stored before sizes were checked) or the store's bounded scan found none.
const MAX_PAGE_READS: usize = 4;

/// Reads one page of `user`'s history in `room`: at most `limit` (capped at
/// `MAX_HISTORY_PAGE`) of their newest messages older than `before_seq`, within
/// [`PAGE_BUDGET`] bytes, so the reply fits in one frame.
///
/// A page never stops a client from paging further: a page with `has_more` names the
/// `before_seq` to ask for next (`next_before_seq`): below its oldest message, or, when
/// [`MAX_PAGE_READS`] reads found nothing deliverable (a gap longer than the store scans in
/// that many reads), where the last read stopped. A message too large for any page on its
/// own (possible only for copies stored before sizes were checked) is left out and
/// logged, and the page reads on past it.
///
/// # Errors
/// Store failures.
pub async fn history_page(
    state: &AppState,
    room: &RoomName,
    user: &Username,
    before_seq: Option<u64>,
    limit: u16,
) -> Result<HistoryPage, HandlerError> {
    let limit = limit.min(MAX_HISTORY_PAGE);
    let page = |messages: Vec<DeliveredMessage>, has_more: bool, scanned_to: Option<u64>| {
        let next_before_seq = match messages.first() {
            _ if !has_more => None,
            Some(oldest) => Some(oldest.seq),
            None => scanned_to.or(before_seq),
        };
        HistoryPage {
            room: room.clone(),
            messages,
            has_more,
            next_before_seq,
        }
    };
    if limit == 0 {
        let probe = state.store.history_for(room, user, before_seq, 1).await?;
        return Ok(page(
            Vec::new(),
            probe.has_more || !probe.messages.is_empty(),
            before_seq,
        ));
    }
    let mut before = before_seq;
    for _ in 0..MAX_PAGE_READS {
        let slice = state
            .store
            .history_for(room, user, before, usize::from(limit))
            .await?;
        let (messages, trimmed) = fit(slice.messages);
        if !messages.is_empty() || !slice.has_more {
            return Ok(page(messages, slice.has_more || trimmed, before));
        }
        match slice.next_before {
            Some(next) => before = Some(next),
            None => return Ok(page(Vec::new(), false, None)),
        }
    }
    // Nothing deliverable within the scan bound: an empty page that says where to go on.
    Ok(page(Vec::new(), true, before))
}

/// The newest of `messages` (ascending by seq) whose sizes add up to at most
/// [`PAGE_BUDGET`], leaving out any message too large for a page on its own; and whether
/// older ones were left out for want of room.
fn fit(mut messages: Vec<DeliveredMessage>) -> (Vec<DeliveredMessage>, bool) {
    let mut kept = Vec::with_capacity(messages.len());
    let mut total = 0usize;
    let mut trimmed = false;
    while let Some(m) = messages.pop() {
        let size = delivered_bound(&m);
        if size > PAGE_BUDGET {
            tracing::warn!(room = %m.room, seq = m.seq, size, "a stored copy is too large for any history page; left out");
            continue;
        }
        if total + size > PAGE_BUDGET {
            trimmed = true;
            break;
        }
        total += size;
        kept.push(m);
    }
    kept.reverse();
    (kept, trimmed)
}
