//! Protocol 4's room pushes, as the session takes them in: room events (moderation and
//! ownership), direct conversations opened by others, typing, read markers, and the
//! user's block list; and protocol 5's presence. Each is checked before it acts: the server is trusted to deliver,
//! not to vouch, so nothing here is believed because the server says so.

use shared::protocol::{MemberInfo, RoomChange, RoomEvent};
use shared::{RoomName, Username};

use super::{forget_room, remove_member, Session, State, RECENT_EVENTS};
use crate::credence::{check_event, is_direct_between};
use crate::events::ClientEvent;
use crate::net::Connection;

impl Session {
    /// Applies a room event (a push, or the answer to the user's `Moderate`) and reports
    /// it once as [`ClientEvent::RoomChanged`]. A kicked or banned member leaves the
    /// member set exactly as one who left does; a room the user was removed from or that
    /// was deleted is forgotten. Returns whether the event was applied (it is dropped for
    /// a room the user is not in, a direct conversation, or a topic breaking the rules).
    pub(crate) fn room_event(&self, event: RoomEvent) -> bool {
        self.update(|st| {
            if !st.member_of.contains(&event.room.canonical()) {
                tracing::warn!(room = %event.room, "room event for a room the user is not in");
                return (false, Vec::new());
            }
            if let Err(why) = check_event(&event) {
                tracing::warn!(room = %event.room, ?why, "room event not believed");
                return (false, Vec::new());
            }
            if st.recent_events.contains(&event) {
                return (true, Vec::new());
            }
            apply(st, &event);
            if st.recent_events.len() == RECENT_EVENTS {
                st.recent_events.pop_front();
            }
            st.recent_events.push_back(event.clone());
            (true, vec![ClientEvent::RoomChanged(event)])
        })
    }

    /// Another user opened a direct conversation with this one. It is believed only if
    /// it is named for the two of them and the peer is not blocked; the peer's key goes
    /// through the pins (a mismatch raises `KeyChanged`) and the user becomes a member.
    pub(crate) async fn direct_opened(
        &self,
        conn: Option<&Connection>,
        room: &RoomName,
        peer: &MemberInfo,
    ) {
        let Some(me) = self.username() else {
            return;
        };
        if !is_direct_between(room, &me, &peer.username) {
            tracing::warn!(%room, peer = %peer.username, "direct conversation not named for its users");
            return;
        }
        if self.is_blocked(&peer.username) {
            tracing::info!(peer = %peer.username, "direct conversation from a blocked user");
            return;
        }
        let view = self.observe_one(conn, peer, room).await;
        self.update(|st| {
            st.member_of.insert(room.canonical());
            let event = ClientEvent::DirectOpened {
                room: room.clone(),
                peer: view,
            };
            ((), vec![event])
        });
    }

    /// A member of a room is typing (or stopped): reported for the user's rooms only, and
    /// never for the user themself.
    pub(crate) fn typing(&self, room: &RoomName, username: &Username, typing: bool) {
        let believable = {
            let st = self.lock();
            st.member_of.contains(&room.canonical())
                && !st
                    .identity
                    .as_ref()
                    .is_some_and(|i| i.username().same_as(username))
        };
        if believable {
            self.emit(ClientEvent::Typing {
                room: room.clone(),
                username: username.clone(),
                typing,
            });
        }
    }

    /// A user came online or went offline: reported only for someone listed in one of the
    /// user's open rooms, and never for the user themself.
    pub(crate) fn presence(&self, username: &Username, online: bool) {
        let believable = {
            let st = self.lock();
            st.rooms.lists(username)
                && !st
                    .identity
                    .as_ref()
                    .is_some_and(|i| i.username().same_as(username))
        };
        if believable {
            self.emit(ClientEvent::Presence {
                username: username.clone(),
                online,
            });
        } else {
            tracing::debug!(user = %username, "presence for nobody in the user's rooms dropped");
        }
    }

    /// The user read a room up to `seq` on another session: reported if it moves the
    /// room's marker forward (markers never move back) in one of the user's rooms.
    pub(crate) fn read_up_to(&self, room: &RoomName, seq: u64) {
        if self.advance_read_mark(room, seq) {
            self.emit(ClientEvent::ReadUpTo {
                room: room.clone(),
                seq,
            });
        }
    }

    /// Moves the user's read marker for `room` to `seq` if that is forward and the user is
    /// a member. Returns whether it moved.
    pub(crate) fn advance_read_mark(&self, room: &RoomName, seq: u64) -> bool {
        let mut st = self.lock();
        if !st.member_of.contains(&room.canonical()) {
            return false;
        }
        let mark = st.read_marks.entry(room.canonical()).or_insert(0);
        if seq <= *mark {
            return false;
        }
        *mark = seq;
        true
    }

    /// The user's read marker for `room` (0: none).
    pub(crate) fn read_mark(&self, room: &RoomName) -> u64 {
        self.lock()
            .read_marks
            .get(&room.canonical())
            .copied()
            .unwrap_or(0)
    }

    /// Whether the user blocked `user`.
    pub(crate) fn is_blocked(&self, user: &Username) -> bool {
        self.lock().blocked.iter().any(|b| b.same_as(user))
    }

    /// The users this one blocked.
    pub(crate) fn blocked(&self) -> Vec<Username> {
        self.lock().blocked.clone()
    }

    /// Records a block (which ends the user's membership of the direct conversation with
    /// `user`, so it is forgotten) or an unblock.
    pub(crate) fn set_blocked(&self, user: &Username, blocked: bool) {
        self.update(|st| {
            st.blocked.retain(|b| !b.same_as(user));
            if blocked {
                st.blocked.push(user.clone());
                if let Some(me) = st.identity.as_ref().map(|i| i.username().clone()) {
                    let room = shared::protocol::direct_room_name(&me, user);
                    forget_room(st, &room);
                }
            }
            ((), Vec::new())
        });
    }
}

/// What a believed room event changes in the session: only membership (roles, topics and
/// settings are for the UI to show).
fn apply(st: &mut State, event: &RoomEvent) {
    match &event.change {
        RoomChange::Kicked { user } | RoomChange::Banned { user } => {
            remove_member(st, &event.room, user);
            if !st.member_of.contains(&event.room.canonical()) {
                forget_room(st, &event.room);
            }
        }
        RoomChange::RoomDeleted => forget_room(st, &event.room),
        RoomChange::Unbanned { .. }
        | RoomChange::RoleChanged { .. }
        | RoomChange::TopicChanged { .. }
        | RoomChange::PasswordChanged { .. }
        | RoomChange::VisibilityChanged { .. }
        | RoomChange::OwnerChanged { .. } => {}
    }
}
