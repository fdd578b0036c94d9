//! Rooms: listing, creation, joining and leaving.
//!
//! Membership is persistent: joining makes the user a member until they leave, and all
//! their connections receive the room's messages.
//!
//! # Hidden rooms, by construction
//! A request names a room by its name only, and no request tells a non-member anything
//! about a hidden room, by its answer or by its timing, because no request from a
//! non-member ever reads one:
//!
//! - A hidden room with a password is stored under a key derived from its name *and*
//!   password ([`RoomSecret::hidden_key`](crate::store::RoomSecret::hidden_key)); one
//!   without a password under a key in its own namespace. Public rooms are stored under
//!   their name. Creating a room writes under its own key, so it collides with a hidden
//!   room only when the creator gives that room's name and password (and could join it).
//! - Everything a member does in a room (re-open by join, leave, history, send) first
//!   resolves "the room named X that I am a member of" through the caller's memberships
//!   ([`Store::room_of`](crate::store::Store::room_of)); a non-member gets `NotAMember`
//!   from that one lookup, whatever rooms named X exist.
//! - A join by a non-member looks up the public room of that name, then the hidden room
//!   that name and the given password key, then the hidden room without a password of
//!   that name. A missing room and a wrong password for a hidden room are the same
//!   lookups with the same outcome, `RoomUnavailable`: no password check runs, and none
//!   needs padding.
//!
//! A hidden room keyed by its password keeps no argon2 hash: finding it proves the
//! password (an HMAC under the store's secret), and a hash next to the key would add
//! nothing, since whoever can read the stored hash can read the key and the secret too.
//! Public rooms keep argon2 hashes: they are found by name, so the password is checked
//! separately.
//!
//! When names coincide, a public room wins for joiners who are not yet members (so nobody
//! can hijack a public room's joiners with a hidden room of its name): a hidden room is
//! joined only when no public room of its name exists, or the password given is not the
//! public room's and keys the hidden room. A user is a member of at most one room per
//! name; joining or creating a second is refused with `InvalidState`.
//!
//! Direct conversations live in their own namespace (`~direct:`), which no join by name
//! looks in: a non-member's `JoinRoom` of one's name is `RoomUnavailable`, the same
//! lookups as for a missing room; its participants re-open it through their membership
//! (see [`super::direct`]). A banned user's join is refused (`Banned`) only after the room
//! was found, by the store in the same write that would add them.
//!
//! Legacy hidden rooms (made before hidden namespaces, stored under their name) stay where
//! they are: the server does not have their passwords to re-key them. They are found and
//! checked as before (argon2), so they remain detectable by a create of their name and by
//! the time a wrong password takes; re-creating such a room moves it to the new scheme.

use shared::protocol::rooms::DIRECT_ROOM_PREFIX;
use shared::protocol::{
    is_direct_room_name, CreateRoom, DeliveredMessage, HistoryPage, JoinRoom, LeaveRoom, Left,
    ListRooms, Push, Reply, RoomChange, RoomEvent, RoomKind, RoomList, RoomSnapshot, RoomSummary,
    WatchLobby, MAX_HISTORY_PAGE, MAX_ROOM_LIST_PAGE,
};
use shared::{RoomName, Username};

use super::messages::{delivered_bound, PAGE_BUDGET};
use super::{announce, encode_push, hub_gone, member_info, now_ms, AppState};
use crate::error::HandlerError;
use crate::hub::ConnId;
use crate::passwords;
use crate::store::{Membership, RoomFilter, RoomKey, RoomQuery, RoomRecord, StoreError};

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
            topic: l.room.topic,
        })
        .collect();
    Ok(Reply::Rooms(RoomList {
        rooms,
        users_online: counts.users_online,
        next_after,
    }))
}

/// # WatchLobby
/// Starts or stops this connection's `LobbyChanged` hints (see [`crate::lobby`]).
///
/// # Errors
/// [`HandlerError::Internal`] if the hub has stopped.
pub async fn watch_lobby(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: WatchLobby,
) -> Result<Reply, HandlerError> {
    state
        .hub
        .watch_lobby(conn, user.canonical(), req.watch)
        .await
        .map_err(hub_gone)?;
    Ok(Reply::Done)
}

/// # CreateRoom
/// Creates the room with the caller as owner and first member.
/// - A public room is stored under its name; its password, if any, only as an argon2id
///   hash.
/// - A hidden room is stored under the key its name and password derive (or, without a
///   password, under its name in the hidden namespace), and keeps no hash.
///
/// The cheap checks come before any hash: the password's length, the caller's room quota
/// (`--rooms-per-user` rooms created), and whether a public room has the name.
///
/// Names starting with `dm.` belong to direct conversations and are refused.
///
/// # Errors
/// [`HandlerError::RoomExists`] (a public room of that name; the hidden room with that
/// name and password), [`HandlerError::RoomNameInUse`] (the caller is a member of another
/// room of that name), [`HandlerError::InvalidInput`], [`HandlerError::QuotaExceeded`],
/// [`HandlerError::Busy`] (the argon2 pool is full), store failures.
pub async fn create(
    state: &AppState,
    user: &Username,
    req: CreateRoom,
) -> Result<Reply, HandlerError> {
    if is_direct_room_name(&req.name) {
        return Err(HandlerError::InvalidInput(format!(
            "room names starting with {DIRECT_ROOM_PREFIX:?} are kept for direct conversations"
        )));
    }
    if let Some(pw) = &req.password {
        passwords::validate(pw)?;
    }
    let quota = state.limits.rooms_per_user;
    // A cheap early refusal, before any argon2 hash; the store's create enforces the quota
    // atomically (concurrent creates may all pass this read).
    if state.store.owned_room_count(user).await? >= quota {
        return Err(quota_exceeded(quota));
    }
    let (key, password_hash) = if req.hidden {
        let key = state
            .room_secret
            .hidden_key(&req.name, req.password.as_deref());
        (key, None)
    } else {
        let key = RoomKey::public(&req.name);
        // Public rooms are listed: saying the name is taken reveals nothing.
        if state.store.find_room(&key).await?.is_some() {
            return Err(HandlerError::RoomExists);
        }
        let hash = match req.password {
            Some(pw) => Some(state.passwords.hash(pw).await?),
            None => None,
        };
        (key, hash)
    };
    let record = RoomRecord::group(
        req.name.clone(),
        user.clone(),
        password_hash,
        req.hidden,
        now_ms(),
    );
    match state.store.create_room(&key, record.clone(), quota).await {
        Ok(()) => {}
        Err(StoreError::QuotaExceeded) => return Err(quota_exceeded(quota)),
        Err(StoreError::AlreadyExists) => return Err(HandlerError::RoomExists),
        Err(StoreError::NameInUse) => return Err(HandlerError::RoomNameInUse),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(room = %req.name, owner = %user, hidden = req.hidden, "room created");
    if record.is_listed() {
        state.lobby.changed();
    }
    let snapshot = snapshot(state, &key, &record, user, 0).await?;
    Ok(Reply::RoomCreated(snapshot))
}

/// The refusal of a create past the rooms-per-user `quota`.
fn quota_exceeded(quota: usize) -> HandlerError {
    HandlerError::QuotaExceeded(format!(
        "you have created the most rooms one user may ({quota})"
    ))
}

/// # JoinRoom
/// - A member of a room of that name re-opens it: the snapshot, without a password, and
///   nobody is notified. A password that names another room of that name (the hidden
///   room it keys, or the public room) is refused instead.
/// - Anyone else joins the room [`find_to_join`] finds; the other members' connections
///   (and the joiner's other connections) get `MemberJoined` with the key.
/// - The snapshot carries all members with keys and the newest `history_limit` messages
///   the caller has copies of.
///
/// Before anything is looked up or hashed: a password longer than `MAX_PASSWORD_BYTES`
/// is refused, and so is a join while the caller's failed joins of this room (or of any)
/// have them waiting (see [`crate::limits::joins`]). A `RoomUnavailable` or
/// `WrongPassword` answer counts as a failure; a successful join clears the room's.
///
/// # Errors
/// [`HandlerError::RoomUnavailable`] (no room found: a missing name, or a hidden room
/// with another password, or a direct conversation the caller is not in),
/// [`HandlerError::WrongPassword`] (public room), [`HandlerError::Banned`] (only once the
/// room was found: the name, and the password if it has one, were right),
/// [`HandlerError::RoomNameInUse`], [`HandlerError::InvalidInput`],
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
    if let Some(mine) = state.store.room_of(user, &req.name).await? {
        return reopen(state, user, mine, &req).await;
    }
    let (key, room) = find_to_join(state, &req.name, req.password.as_deref()).await?;
    let added = match state.store.add_member(&key, user).await {
        Ok(added) => added,
        Err(StoreError::NotFound) => return Err(HandlerError::RoomUnavailable),
        Err(StoreError::Banned) => return Err(HandlerError::Banned),
        Err(StoreError::RoomFull) => {
            return Err(HandlerError::InvalidInput("the room is full".into()))
        }
        // A concurrent join of another room of this name got there first.
        Err(StoreError::NameInUse) => return Err(HandlerError::RoomNameInUse),
        Err(e) => return Err(e.into()),
    };
    let snapshot = snapshot(state, &key, &room, user, req.history_limit).await?;
    if added {
        tracing::info!(room = %room.name, user = %user, "joined");
        if room.is_listed() {
            state.lobby.changed();
        }
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

/// A join by a member of a room of the requested name: the snapshot of their room, unless
/// the password given names another room of that name.
///
/// # Errors
/// [`HandlerError::RoomNameInUse`], [`HandlerError::RoomUnavailable`] if the room is
/// gone, store failures.
async fn reopen(
    state: &AppState,
    user: &Username,
    mine: Membership,
    req: &JoinRoom,
) -> Result<Reply, HandlerError> {
    if let Some(password) = req.password.as_deref() {
        if names_another_room(state, &mine, &req.name, password).await? {
            return Err(HandlerError::RoomNameInUse);
        }
    }
    let room = state
        .store
        .find_room(&mine.key)
        .await?
        .ok_or(HandlerError::RoomUnavailable)?;
    let snapshot = snapshot(state, &mine.key, &room, user, req.history_limit).await?;
    Ok(Reply::Joined(snapshot))
}

/// Whether a member of `mine`, joining `name` again with `password`, asks for another
/// room of that name: the hidden room `name` and `password` key, if it is not theirs, or
/// the public room of that name, if theirs is not it. Either answer tells them nothing
/// new: they gave the hidden room's password, or the public room is listed.
///
/// # Errors
/// Store failures.
async fn names_another_room(
    state: &AppState,
    mine: &Membership,
    name: &RoomName,
    password: &str,
) -> Result<bool, HandlerError> {
    let keyed = state.room_secret.hidden_key(name, Some(password));
    if keyed == mine.key {
        return Ok(false);
    }
    if state.store.find_room(&keyed).await?.is_some() {
        return Ok(true);
    }
    let public = RoomKey::public(name);
    if public == mine.key {
        return Ok(false);
    }
    Ok(state
        .store
        .find_room(&public)
        .await?
        .is_some_and(|room| !room.hidden))
}

/// The room a non-member joining `name` with `password` gets, in this order:
///
/// 1. the public room of that name, if the password is right for it (a public room
///    without a password takes any, unless the password keys a hidden room of that name);
/// 2. the hidden room `name` and `password` key;
/// 3. the hidden room of that name without a password.
///
/// A hidden room is never read unless the caller gave what finds it, so for a name that
/// is not a public room's, a missing room and a hidden room under another password cost
/// the same lookups and give the same [`HandlerError::RoomUnavailable`]. (A legacy hidden
/// room, under its name, is checked against its argon2 hash in step 1.)
///
/// # Errors
/// [`HandlerError::WrongPassword`] when a public room of that name has a password and the
/// one given is neither its own nor one that keys a hidden room of the name;
/// [`HandlerError::RoomUnavailable`]; store failures.
async fn find_to_join(
    state: &AppState,
    name: &RoomName,
    password: Option<&str>,
) -> Result<(RoomKey, RoomRecord), HandlerError> {
    let public_key = RoomKey::public(name);
    let mut open_public = None;
    let mut public_refused = false;
    if let Some(room) = state.store.find_room(&public_key).await? {
        match &room.password_hash {
            Some(hash) => {
                let given = password.unwrap_or_default().to_owned();
                if state.passwords.verify(hash.clone(), given).await? {
                    return Ok((public_key, room));
                }
                // A legacy hidden room refuses like a missing one, below.
                public_refused = !room.hidden;
            }
            None if password.is_none() || room.hidden => return Ok((public_key, room)),
            None => open_public = Some(room),
        }
    }
    if let Some(password) = password {
        let keyed = state.room_secret.hidden_key(name, Some(password));
        if let Some(room) = state.store.find_room(&keyed).await? {
            return Ok((keyed, room));
        }
    }
    if let Some(room) = open_public {
        return Ok((public_key, room));
    }
    if public_refused {
        return Err(HandlerError::WrongPassword);
    }
    let open = state.room_secret.hidden_key(name, None);
    match state.store.find_room(&open).await? {
        Some(room) => Ok((open, room)),
        None => Err(HandlerError::RoomUnavailable),
    }
}

/// # LeaveRoom
/// Ends the membership of the caller's room of that name (see [`depart`]).
///
/// # Errors
/// [`HandlerError::NotAMember`], store failures.
pub async fn leave(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: LeaveRoom,
) -> Result<Reply, HandlerError> {
    let mine = my_room(state, user, &req.room).await?;
    if !depart(state, Some(conn), user, &mine, Departure::Left).await? {
        return Err(HandlerError::NotAMember);
    }
    Ok(Reply::Left(Left { room: mine.name }))
}

/// The caller's room named `name`, found through their own memberships.
///
/// # Errors
/// [`HandlerError::NotAMember`] when they are in no room of that name; store failures.
pub async fn my_room(
    state: &AppState,
    user: &Username,
    name: &RoomName,
) -> Result<Membership, HandlerError> {
    state
        .store
        .room_of(user, name)
        .await?
        .ok_or(HandlerError::NotAMember)
}

/// Why a member leaves a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// By their own choice (`LeaveRoom`, or blocking the other side of a direct
    /// conversation): a room left empty stays.
    Left,
    /// Their account is being deleted: a room left empty is deleted with its history.
    AccountDeleted,
}

/// Ends `user`'s membership of their room `mine`. If they own a group room, it first
/// passes to the first admin by canonical name, else to the first other member
/// (`RoomEvent` `OwnerChanged`, with the leaver as actor). The remaining members and the
/// leaver's connections but `except` (the one that asked, which has the reply) get
/// `MemberLeft`. Returns whether `user` was a member.
///
/// # Errors
/// Store failures; [`HandlerError::Internal`] if the hub has stopped.
pub async fn depart(
    state: &AppState,
    except: Option<ConnId>,
    user: &Username,
    mine: &Membership,
    why: Departure,
) -> Result<bool, HandlerError> {
    let Some(room) = state.store.find_room(&mine.key).await? else {
        return Ok(false);
    };
    let new_owner = match room.participants() {
        None => state.store.hand_over(&mine.key, user).await?,
        Some(_) => None,
    };
    if !state.store.remove_member(&mine.key, user).await? {
        return Ok(false);
    }
    tracing::info!(room = %mine.name, user = %user, "left");
    if room.is_listed() {
        state.lobby.changed();
    }
    let remaining = state.store.member_names(&mine.key).await?;
    let mut told = remaining.clone();
    told.push(user.clone());
    if let Some(to) = new_owner {
        tracing::info!(room = %mine.name, owner = %to, "ownership passed on");
        let event = RoomEvent {
            room: mine.name.clone(),
            actor: user.clone(),
            at_ms: now_ms(),
            change: RoomChange::OwnerChanged { to },
        };
        announce(state, event, &told, except).await?;
    }
    let frame = encode_push(Push::MemberLeft {
        room: mine.name.clone(),
        username: user.clone(),
    })?;
    state
        .hub
        .broadcast(
            told.iter().map(Username::canonical).collect(),
            frame,
            except,
        )
        .await
        .map_err(hub_gone)?;
    if why == Departure::AccountDeleted && remaining.is_empty() {
        match state.store.delete_room(&mine.key).await {
            Ok(_) | Err(StoreError::NotFound) => {
                tracing::info!(room = %mine.name, "room deleted with its last member's account");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// The room under `key` as `user` sees it on joining: its kind, roles, topic, members
/// with keys and who of them is online, the newest `history_limit` messages they have
/// copies of, and their read marker.
///
/// # Errors
/// Store failures.
pub async fn snapshot(
    state: &AppState,
    key: &RoomKey,
    room: &RoomRecord,
    user: &Username,
    history_limit: u16,
) -> Result<RoomSnapshot, HandlerError> {
    let members = state.store.members(key).await?;
    let alone = members
        .iter()
        .map(|m| vec![m.username.canonical()])
        .collect();
    let counts = state.hub.online(alone).await.map_err(hub_gone)?;
    let online = members
        .iter()
        .zip(counts.per_group)
        .filter(|(_, n)| *n > 0)
        .map(|(m, _)| m.username.clone())
        .collect();
    let history = history_page(state, key, &room.name, user, None, history_limit).await?;
    let kind = match room.participants() {
        None => RoomKind::Group,
        Some(pair) => RoomKind::Direct {
            peer: pair
                .iter()
                .find(|p| !p.same_as(user))
                .unwrap_or(&pair[0])
                .clone(),
        },
    };
    Ok(RoomSnapshot {
        room: room.name.clone(),
        kind,
        owner: room.owner.clone(),
        admins: room.admins.clone(),
        topic: room.topic.clone(),
        has_password: room.password_hash.is_some() || key.password_in_key(),
        hidden: room.hidden,
        members: members.iter().map(member_info).collect(),
        history,
        read_up_to: state.store.read_marker(key, user).await?,
        online,
    })
}

/// Store reads one history request may make while every message it finds is too large for
/// a page (copies stored before sizes were checked) or the store's bounded scan found none.
const MAX_PAGE_READS: usize = 4;

/// Reads one page of `user`'s history in the room under `key`, named `room`: at most
/// `limit` (capped at `MAX_HISTORY_PAGE`) of their newest messages older than
/// `before_seq`, within [`PAGE_BUDGET`] bytes, so the reply fits in one frame.
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
    key: &RoomKey,
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
        let probe = state.store.history_for(key, user, before_seq, 1).await?;
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
            .history_for(key, user, before, usize::from(limit))
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
