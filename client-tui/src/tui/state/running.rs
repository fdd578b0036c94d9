//! Running rooms in the state: moderation requests and the room events that come back,
//! direct conversations (opened by the user or by someone else), blocking, and deleting
//! the account.

use shared::protocol::{ModerationAction, Role, RoomChange, RoomEvent, RoomKind};
use shared::{RoomName, Username};

use super::super::command::{Command, Secret};
use super::super::moderation::{action_title, event_line, redacted_password_change};
use super::{AppState, DialogKind, Effect, Focus, Level};
use crate::directory::MemberView;
use crate::rooms::RoomView;

impl AppState {
    /// The group room shown, for a moderation command; else says why there is none.
    fn moderated_room(&mut self) -> Option<(RoomName, String)> {
        let Some(room) = self.current_room() else {
            self.set_status("Open the room you want to run first.", Level::Warning);
            return None;
        };
        if room.peer.is_some() {
            self.set_status(
                "Direct conversations have no moderators: /ignore leaves one, /block USER \
                 refuses them.",
                Level::Warning,
            );
            return None;
        }
        if let Some(why) = &room.ended {
            let text = format!("You are no longer in {}: {why}", room.label());
            self.set_status(text, Level::Warning);
            return None;
        }
        Some((room.name.clone(), room.label()))
    }

    /// `/kick`, `/ban`, `/topic`, … on the room shown.
    pub(super) fn moderate(&mut self, action: ModerationAction) -> Vec<Effect> {
        let Some((room, label)) = self.moderated_room() else {
            return Vec::new();
        };
        self.set_status(format!("{}…", action_title(&label, &action)), Level::Info);
        vec![Effect::Command(Command::Moderate { room, action })]
    }

    /// `/password [PW]` on the room shown. The password is never shown.
    pub(super) fn set_password(&mut self, password: Option<Secret>) -> Vec<Effect> {
        let Some((room, label)) = self.moderated_room() else {
            return Vec::new();
        };
        let shown = redacted_password_change(password.is_some());
        self.set_status(format!("{}…", action_title(&label, &shown)), Level::Info);
        vec![Effect::Command(Command::SetPassword { room, password })]
    }

    /// `/delete-room`: asks first.
    pub(super) fn ask_delete_room(&mut self) -> Vec<Effect> {
        match self.moderated_room() {
            Some((room, _)) => vec![Effect::Dialog(DialogKind::ConfirmDeleteRoom(room))],
            None => Vec::new(),
        }
    }

    /// `/msg USER [TEXT]`: switches to the conversation with USER (opening it first if
    /// needed) and sends TEXT there.
    pub(super) fn message_user(&mut self, user: Username, text: Option<String>) -> Vec<Effect> {
        if self.my_name().is_some_and(|me| me.same_as(&user)) {
            self.set_status(
                "That is you: /msg needs someone else's username.",
                Level::Info,
            );
            return text
                .map(|t| vec![Effect::SetInput(format!("/msg {user} {t}"))])
                .unwrap_or_default();
        }
        let open = self
            .rooms
            .iter()
            .find(|r| r.ended.is_none() && r.peer.as_ref().is_some_and(|p| p.same_as(&user)))
            .map(|r| r.name.clone());
        if let Some(room) = open {
            let mut effects = self.show_room(&room);
            if let Some(text) = text {
                effects.extend(self.send(text));
            }
            return effects;
        }
        self.pending_direct = text.map(|t| (user.clone(), t));
        self.set_status(
            format!("Opening the conversation with {user}…"),
            Level::Info,
        );
        vec![Effect::Command(Command::OpenDirect { user })]
    }

    /// A conversation was opened: the text `/msg` was given goes out in it.
    pub(super) fn direct_ready(&mut self, view: &RoomView) -> Vec<Effect> {
        let RoomKind::Direct { peer } = &view.kind else {
            return Vec::new();
        };
        match self.pending_direct.take() {
            Some((user, text)) if user.same_as(peer) => self.send(text),
            other => {
                self.pending_direct = other;
                Vec::new()
            }
        }
    }

    /// Opening the conversation with `user` failed: the text `/msg` was given comes back
    /// to the input line, so it is not lost.
    pub(super) fn direct_failed(&mut self, user: &Username, message: String) -> Vec<Effect> {
        let title = format!("Opening the conversation with {user}");
        self.set_status(format!("{title}: {message}"), Level::Error);
        let mut effects = vec![Effect::Dialog(DialogKind::Error { title, message })];
        if let Some((pending, text)) = self.pending_direct.take() {
            if pending.same_as(user) {
                effects.push(Effect::SetInput(format!("/msg {user} {text}")));
            } else {
                self.pending_direct = Some((pending, text));
            }
        }
        effects
    }

    /// Someone started a conversation with the user: it is listed at once and opened in
    /// the background.
    pub(super) fn direct_opened(&mut self, room: &RoomName, peer: MemberView) -> Vec<Effect> {
        let name = peer.username.clone();
        let buffer = self.room_or_insert(room);
        buffer.peer = Some(name.clone());
        buffer.ended = None;
        if !buffer.has_member(&name) {
            buffer.members.push(peer);
        }
        buffer.timeline.push_notice(
            format!(
                "{name} started a direct conversation with you (/ignore leaves it, /block \
                 {name} refuses it)"
            ),
            Level::Info,
        );
        self.set_status(
            format!("{name} started a direct conversation with you (@{name} in the room list)."),
            Level::Info,
        );
        vec![Effect::Command(Command::Reopen { room: room.clone() })]
    }

    /// `/ignore`: leaves the direct conversation shown.
    pub(super) fn ignore(&mut self) -> Vec<Effect> {
        match self.current_room().filter(|r| r.peer.is_some()) {
            Some(room) => {
                let (name, label) = (room.name.clone(), room.label());
                self.set_status(format!("Leaving the conversation {label}…"), Level::Info);
                vec![Effect::Command(Command::Leave { room: name })]
            }
            None => {
                self.set_status(
                    "/ignore leaves a direct conversation: open it first (/msg USER).",
                    Level::Warning,
                );
                Vec::new()
            }
        }
    }

    /// `/block USER`, `/unblock USER`.
    pub(super) fn block(&mut self, user: Username, blocked: bool) -> Vec<Effect> {
        let doing = if blocked { "Blocking" } else { "Unblocking" };
        self.set_status(format!("{doing} {user}…"), Level::Info);
        vec![Effect::Command(Command::SetBlocked { user, blocked })]
    }

    /// A block or unblock is in place. A block ends the conversation with them.
    pub(super) fn blocked(&mut self, user: &Username, blocked: bool) -> Vec<Effect> {
        if !blocked {
            self.set_status(
                format!("{user} can start conversations with you again."),
                Level::Info,
            );
            return Vec::new();
        }
        self.set_status(
            format!("{user} is blocked: they cannot start conversations with you."),
            Level::Info,
        );
        let conversation = self
            .rooms
            .iter()
            .find(|r| r.peer.as_ref().is_some_and(|p| p.same_as(user)))
            .map(|r| r.name.clone());
        match conversation {
            Some(room) => self.forget(&room),
            None => Vec::new(),
        }
    }

    /// Drops a room from the list (and its unsent messages); shows the lobby if it was
    /// shown.
    pub(super) fn forget(&mut self, room: &RoomName) -> Vec<Effect> {
        self.outbox.remove_room(room);
        self.rooms.retain(|r| !r.name.same_as(room));
        if matches!(&self.focus, Focus::Room(key) if *key == room.canonical()) {
            self.show_lobby()
        } else {
            vec![Effect::Command(Command::RefreshRooms)]
        }
    }

    /// `/delete-account`: opens the dialog where the user types their username.
    pub(super) fn ask_delete_account(&mut self) -> Vec<Effect> {
        match self.my_name() {
            Some(me) => vec![Effect::Dialog(DialogKind::DeleteAccount {
                username: me.clone(),
            })],
            None => Vec::new(),
        }
    }

    /// Deletes the account if `typed` is the user's username.
    pub(super) fn delete_account(&mut self, typed: &str) -> Vec<Effect> {
        let matches = self
            .my_name()
            .is_some_and(|me| Username::parse(typed.trim()).is_ok_and(|t| t.same_as(me)));
        if !matches {
            self.set_status(
                "That is not your username: your account was not deleted.",
                Level::Warning,
            );
            return Vec::new();
        }
        self.set_status("Deleting your account…", Level::Warning);
        vec![Effect::Command(Command::DeleteAccount)]
    }

    /// A room event: a line in the room's timeline, and the change it makes to what is
    /// shown (members, roles, topic, settings; a room the user is out of ends).
    pub(super) fn room_changed(&mut self, event: &RoomEvent) -> Vec<Effect> {
        let me = self.my_name().cloned();
        let is_me = |user: &Username| me.as_ref().is_some_and(|m| m.same_as(user));
        let line = event_line(event);
        let Some(buffer) = self.room_mut(&event.room) else {
            return Vec::new();
        };
        let mut ended = false;
        match &event.change {
            RoomChange::Kicked { user } | RoomChange::Banned { user } => {
                buffer.members.retain(|m| !m.username.same_as(user));
                buffer.admins.retain(|a| !a.same_as(user));
                buffer.typing.retain(|(u, _)| !u.same_as(user));
                ended = is_me(user);
            }
            RoomChange::Unbanned { .. } => {}
            RoomChange::RoleChanged { user, role } => {
                buffer.admins.retain(|a| !a.same_as(user));
                match role {
                    Role::Admin => buffer.admins.push(user.clone()),
                    Role::Owner => buffer.owner = Some(user.clone()),
                    Role::Member => {}
                }
            }
            RoomChange::TopicChanged { topic } => buffer.topic.clone_from(topic),
            RoomChange::PasswordChanged { has_password } => buffer.has_password = *has_password,
            RoomChange::VisibilityChanged { hidden } => buffer.hidden = *hidden,
            RoomChange::OwnerChanged { to } => {
                let handed_over = buffer
                    .owner
                    .as_ref()
                    .is_some_and(|o| o.same_as(&event.actor))
                    && buffer.has_member(&event.actor);
                buffer.admins.retain(|a| !a.same_as(to));
                if handed_over && buffer.role_of(&event.actor) != Role::Admin {
                    buffer.admins.push(event.actor.clone());
                }
                buffer.owner = Some(to.clone());
            }
            RoomChange::RoomDeleted => {
                buffer.members.clear();
                ended = true;
            }
        }
        let level = if ended { Level::Warning } else { Level::Info };
        buffer.timeline.push_notice(line.clone(), level);
        let label = buffer.label();
        if !ended {
            return Vec::new();
        }
        buffer.ended = Some(line.clone());
        buffer.typing.clear();
        self.fail_unsent(&event.room, "you are no longer a member of the room.");
        self.set_status(
            format!("{label}: {line}. F8 (or /leave) removes it from your list."),
            Level::Warning,
        );
        Vec::new()
    }

    /// After a login: a room shown that the user is no longer a member of ends (it was
    /// left behind while the user was away).
    pub(super) fn memberships(&mut self, rooms: &[RoomName]) {
        let gone: Vec<RoomName> = self
            .rooms
            .iter()
            .filter(|r| r.ended.is_none() && r.owner.is_some())
            .filter(|r| !rooms.iter().any(|m| m.same_as(&r.name)))
            .map(|r| r.name.clone())
            .collect();
        let why = "you were removed, or the room was deleted, while you were away";
        for room in gone {
            if let Some(buffer) = self.room_mut(&room) {
                buffer.ended = Some(why.to_owned());
                buffer.members.clear();
                buffer.timeline.push_notice(
                    format!("You are no longer a member: {why}."),
                    Level::Warning,
                );
            }
            self.fail_unsent(&room, "you are no longer a member of the room.");
        }
    }

    /// Marks a room's unsent messages failed (the user can no longer send there).
    fn fail_unsent(&mut self, room: &RoomName, reason: &str) {
        let unsent: Vec<u64> = self
            .outbox
            .items()
            .iter()
            .filter(|o| o.room.same_as(room))
            .map(|o| o.local_id)
            .collect();
        for local_id in unsent {
            self.outbox.failed(local_id, false);
            if let Some(buffer) = self.room_mut(room) {
                buffer.timeline.fail(local_id, reason);
            }
        }
    }
}
