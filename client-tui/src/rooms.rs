//! Rooms open in this session: their settings and member lists (in the server's order,
//! which is the order envelopes are sealed in), and the views handed to callers.
//!
//! Member *keys* live in the [`KeyDirectory`](crate::directory), keyed by user, because a
//! user's key is the same in every room; a room only lists who is in it.

use std::collections::HashMap;

use shared::protocol::{RoomKind, RoomSnapshot};
use shared::{RoomName, Username};

use crate::directory::MemberView;
use crate::inbox::{DecryptedMessage, Rejection};

/// A room as returned by `create_room` and `join_room`.
#[derive(Debug, Clone)]
pub struct RoomView {
    /// The room's name.
    pub room: RoomName,
    /// A group room, or a direct conversation (checked to be named for its two users).
    pub kind: RoomKind,
    /// Who runs it: its creator, or whom ownership passed to.
    pub owner: Username,
    /// The members the owner made admins.
    pub admins: Vec<Username>,
    /// The topic, if one is set (a topic with control characters is dropped).
    pub topic: Option<String>,
    /// The highest `seq` the user marked read on any session (0: none).
    pub read_up_to: u64,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Whether it is hidden from listings.
    pub hidden: bool,
    /// The members, in the server's order, with the client's view of their keys.
    pub members: Vec<MemberView>,
    /// The members the server said were online when the room was opened (names that are
    /// not members are dropped); [`ClientEvent::Presence`](crate::ClientEvent::Presence)
    /// updates it.
    pub online: Vec<Username>,
    /// The newest messages, decrypted.
    pub history: HistoryView,
}

/// A page of history after decryption.
#[derive(Debug, Clone)]
pub struct HistoryView {
    /// The room.
    pub room: RoomName,
    /// Messages that decrypted and verified, ascending by `seq`.
    pub messages: Vec<DecryptedMessage>,
    /// Messages that were refused, ascending by `seq`.
    pub rejected: Vec<Rejection>,
    /// Whether older messages exist before this page.
    pub has_more: bool,
    /// With `has_more`: the `before_seq` to fetch the page before this one with (the
    /// server's word; a page may hold fewer messages than asked for, or none).
    pub next_before: Option<u64>,
}

impl HistoryView {
    /// The smallest `seq` in the page (decrypted or not), to pass as `before_seq` when
    /// fetching the page before it.
    pub fn oldest_seq(&self) -> Option<u64> {
        let decrypted = self.messages.iter().map(|m| m.seq);
        let refused = self.rejected.iter().map(|r| r.seq);
        decrypted.chain(refused).min()
    }
}

/// What the session remembers about one open room.
#[derive(Debug, Clone)]
pub(crate) struct RoomState {
    pub(crate) name: RoomName,
    /// Members in the server's order.
    pub(crate) members: Vec<Username>,
    /// For a direct conversation, the other user: nobody else is ever sealed for.
    pub(crate) direct_peer: Option<Username>,
}

/// The open rooms, by canonical name.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    open: HashMap<String, RoomState>,
}

impl Rooms {
    /// Opens (or refreshes) a room from a create/join snapshot.
    pub(crate) fn open(&mut self, snapshot: &RoomSnapshot) {
        self.open.insert(
            snapshot.room.canonical(),
            RoomState {
                name: snapshot.room.clone(),
                members: snapshot
                    .members
                    .iter()
                    .map(|m| m.username.clone())
                    .collect(),
                direct_peer: match &snapshot.kind {
                    RoomKind::Direct { peer } => Some(peer.clone()),
                    RoomKind::Group => None,
                },
            },
        );
    }

    /// Closes a room (after leaving it).
    pub(crate) fn close(&mut self, room: &RoomName) {
        self.open.remove(&room.canonical());
    }

    /// The room's state, if open.
    pub(crate) fn get(&self, room: &RoomName) -> Option<&RoomState> {
        self.open.get(&room.canonical())
    }

    /// Whether any open room lists `user` as a member.
    pub(crate) fn lists(&self, user: &Username) -> bool {
        self.open
            .values()
            .any(|r| r.members.iter().any(|m| m.same_as(user)))
    }

    /// Every open room's name.
    pub(crate) fn names(&self) -> Vec<RoomName> {
        let mut names: Vec<RoomName> = self.open.values().map(|r| r.name.clone()).collect();
        names.sort_by_key(RoomName::canonical);
        names
    }

    /// Adds a member at the end, if the room is open and they are not listed yet.
    pub(crate) fn add_member(&mut self, room: &RoomName, user: &Username) {
        if let Some(state) = self.open.get_mut(&room.canonical()) {
            if !state.members.iter().any(|m| m.same_as(user)) {
                state.members.push(user.clone());
            }
        }
    }

    /// Removes a member, if the room is open.
    pub(crate) fn remove_member(&mut self, room: &RoomName, user: &Username) {
        if let Some(state) = self.open.get_mut(&room.canonical()) {
            state.members.retain(|m| !m.same_as(user));
        }
    }

    /// Replaces the member list (from a recipient mismatch), if the room is open.
    pub(crate) fn set_members(&mut self, room: &RoomName, members: Vec<Username>) {
        if let Some(state) = self.open.get_mut(&room.canonical()) {
            state.members = members;
        }
    }
}
