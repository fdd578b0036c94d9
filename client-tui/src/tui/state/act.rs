//! [`AppState::act`]: how a user intent (a key, a form, the input line) changes the state.

use std::time::{Duration, Instant};

use shared::Username;

use super::super::command::{parse_input, Action, Command};
use super::super::event::ConnectionState;
use super::super::multiline::{line_count, LINES_WITHOUT_ASKING};
use super::input::{complete, Completion};
use super::{AppState, DialogKind, Effect, Level};
use crate::directory::{KeyStatus, MemberView};

impl AppState {
    /// Carries out a user intent.
    pub fn act(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Submit(line) => self.submit(line),
            Action::Send(text) if line_count(&text) > LINES_WITHOUT_ASKING => vec![
                Effect::SetInput(text.clone()),
                Effect::Dialog(DialogKind::ConfirmLongMessage { text }),
            ],
            Action::Send(text) => self.send(text),
            Action::SendLong(text) => {
                let mut effects = vec![Effect::SetInput(String::new())];
                effects.extend(self.send(text));
                effects
            }
            Action::Up { draft } => self.up(&draft),
            Action::Down => self.down(),
            Action::Complete { line } => self.complete(&line),
            Action::Retry => self.retry(),
            Action::Reconnect => self.reconnect(),
            Action::AskQuit => vec![Effect::Dialog(DialogKind::ConfirmQuit {
                unsent: self.outbox.items().len(),
            })],
            Action::Join { room, password } => {
                if password.is_none() && self.room(&room).is_some_and(|r| r.ended.is_none()) {
                    return self.show_room(&room);
                }
                self.set_status(format!("Joining #{room}…"), Level::Info);
                vec![Effect::Command(Command::JoinRoom { room, password })]
            }
            Action::Create {
                room,
                password,
                hidden,
            } => {
                self.set_status(format!("Creating #{room}…"), Level::Info);
                vec![Effect::Command(Command::CreateRoom {
                    room,
                    password,
                    hidden,
                })]
            }
            Action::LeaveCurrent => match self.current_room() {
                Some(room) => vec![Effect::Dialog(DialogKind::ConfirmLeave(room.name.clone()))],
                None => {
                    self.set_status("Open the room you want to leave first.", Level::Warning);
                    Vec::new()
                }
            },
            Action::Leave(room) => {
                // A room the user is out of already is only taken off the list.
                if self.room(&room).is_some_and(|r| r.ended.is_some()) {
                    return self.forget(&room);
                }
                self.set_status(format!("Leaving #{room}…"), Level::Info);
                vec![Effect::Command(Command::Leave { room })]
            }
            Action::Refresh => {
                self.set_status("Refreshing the room list…", Level::Info);
                vec![Effect::Command(Command::RefreshRooms)]
            }
            Action::LoadOlder => self.load_older(),
            Action::ShowLobby => self.show_lobby(),
            Action::ShowRoom(room) => self.show_room(&room),
            Action::NextRoom => self.cycle(1),
            Action::PrevRoom => self.cycle(-1),
            Action::ShowHelp => vec![Effect::Dialog(DialogKind::Help)],
            Action::ShowFingerprint => match &self.me {
                Some(me) => vec![Effect::Dialog(DialogKind::Fingerprint(me.clone()))],
                None => Vec::new(),
            },
            Action::ShowKeys => {
                let (room, members) = match self.current_room() {
                    Some(r) => (Some(r.name.clone()), r.members.clone()),
                    None => (None, Vec::new()),
                };
                vec![Effect::Dialog(DialogKind::Keys {
                    room,
                    members,
                    pending: self.key_changes.iter().cloned().collect(),
                })]
            }
            Action::OpenJoin => vec![Effect::Dialog(DialogKind::Join)],
            Action::OpenCreate => vec![Effect::Dialog(DialogKind::Create)],
            Action::AcceptKey(username) => {
                vec![Effect::Command(Command::AcceptKey { username })]
            }
            Action::AskVerify(username) => self.ask_verify(&username),
            Action::Verify(username) => {
                self.set_status(format!("Marking {username}'s key verified…"), Level::Info);
                vec![Effect::Command(Command::MarkVerified { username })]
            }
            Action::AskRotateKey => self.ask_rotate(),
            Action::RotateKey => {
                if self.busy.is_some() {
                    return Vec::new();
                }
                self.busy = Some(("Generating your new key".to_owned(), Duration::ZERO));
                vec![Effect::Command(Command::RotateKey)]
            }
            Action::Moderate(action) => self.moderate(action),
            Action::SetPassword(password) => self.set_password(password),
            Action::AskDeleteRoom => self.ask_delete_room(),
            Action::DeleteRoom(room) => {
                self.set_status(format!("Deleting #{room}…"), Level::Info);
                vec![Effect::Command(Command::Moderate {
                    room,
                    action: shared::protocol::ModerationAction::DeleteRoom,
                })]
            }
            Action::Msg { user, text } => self.message_user(user, text),
            Action::Block { user, blocked } => self.block(user, blocked),
            Action::Ignore => self.ignore(),
            Action::TypingSetting(on) => self.set_typing_setting(on),
            Action::ReadMarkersSetting(on) => self.set_read_markers_setting(on),
            Action::NotifySetting(on) => self.set_notify_setting(on),
            Action::AskDeleteAccount => self.ask_delete_account(),
            Action::DeleteAccount { typed } => self.delete_account(&typed),
            Action::Edited(line) => self.edited(&line, Instant::now()),
            Action::Quit => vec![Effect::Quit],
        }
    }

    /// The input line's Enter: a command, a message, or (on an empty line in the lobby)
    /// the room the user moved to with Up and Down.
    fn submit(&mut self, line: String) -> Vec<Effect> {
        match parse_input(&line) {
            Ok(Some(action)) => {
                if remembered(&action) {
                    self.history.push(line.trim_end());
                } else {
                    self.history.reset();
                }
                self.act(action)
            }
            Ok(None) => self.enter_on_lobby_row(),
            Err(message) => {
                self.set_status(message, Level::Warning);
                // The line is given back so a typo can be fixed rather than retyped.
                vec![Effect::SetInput(line)]
            }
        }
    }

    /// Enter on an empty line: joins the lobby row the user moved to, if any.
    fn enter_on_lobby_row(&mut self) -> Vec<Effect> {
        if self.current_room().is_some() {
            return Vec::new();
        }
        let Some(row) = self.lobby.chosen() else {
            return Vec::new();
        };
        let room = row.name.clone();
        if self.room(&room).is_none() && row.has_password {
            return vec![Effect::Dialog(DialogKind::Password { room, wrong: false })];
        }
        self.act(Action::Join {
            room,
            password: None,
        })
    }

    pub(super) fn send(&mut self, text: String) -> Vec<Effect> {
        if let Some(why) = self.current_room().and_then(|r| r.ended.clone()) {
            self.set_status(
                format!("You are no longer in this room ({why}); nothing was sent."),
                Level::Warning,
            );
            return vec![Effect::SetInput(text)];
        }
        let Some(room) = self.current_room().map(|r| r.name.clone()) else {
            self.set_status(
                "Open a room first: pick one in the lobby (Up/Down, Enter), or press F7 to \
                 join by name.",
                Level::Warning,
            );
            return vec![Effect::SetInput(text)];
        };
        let Some(me) = self.my_name().cloned() else {
            return Vec::new();
        };
        let local_id = self.next_local_id;
        self.next_local_id += 1;
        if let Some(buffer) = self.room_mut(&room) {
            buffer.timeline.push_pending(local_id, me, text.clone());
        }
        let mut effects = self.stop_typing();
        effects.push(Effect::Command(self.outbox.add(local_id, room, text)));
        effects
    }

    /// Up: the lobby's cursor in the lobby, the input history in a room.
    fn up(&mut self, draft: &str) -> Vec<Effect> {
        if self.current_room().is_none() {
            self.lobby.move_cursor(-1);
            return Vec::new();
        }
        self.history
            .older(draft)
            .map(Effect::SetInput)
            .into_iter()
            .collect()
    }

    /// Down: the lobby's cursor in the lobby, the input history in a room.
    fn down(&mut self) -> Vec<Effect> {
        if self.current_room().is_none() {
            self.lobby.move_cursor(1);
            return Vec::new();
        }
        self.history
            .newer()
            .map(Effect::SetInput)
            .into_iter()
            .collect()
    }

    /// Tab: completes the last word from the commands, the rooms known and the members of
    /// the current room.
    fn complete(&mut self, line: &str) -> Vec<Effect> {
        let mut rooms: Vec<String> = self.rooms.iter().map(|r| r.name.to_string()).collect();
        rooms.extend(self.lobby.rooms.iter().map(|r| r.name.to_string()));
        let users: Vec<String> = self
            .current_room()
            .map(|r| r.members.iter().map(|m| m.username.to_string()).collect())
            .unwrap_or_default();
        match complete(line, &rooms, &users) {
            Completion::None => Vec::new(),
            Completion::Line { line, choices } => {
                if !choices.is_empty() {
                    self.set_status(choices.join("  "), Level::Info);
                }
                vec![Effect::SetInput(line)]
            }
        }
    }

    /// `/retry`: sends the current room's unconfirmed messages again, with their ids.
    fn retry(&mut self) -> Vec<Effect> {
        let Some(room) = self.current_room().map(|r| r.name.clone()) else {
            self.set_status(
                "Open the room whose messages to send again.",
                Level::Warning,
            );
            return Vec::new();
        };
        if let Some(why) = self.current_room().and_then(|r| r.ended.clone()) {
            self.set_status(
                format!("You are no longer in this room ({why}); nothing can be sent there."),
                Level::Warning,
            );
            return Vec::new();
        }
        let again = self.outbox.resend_room(&room);
        if again.is_empty() {
            self.set_status(format!("#{room} has no unsent messages."), Level::Info);
            return Vec::new();
        }
        if let Some(buffer) = self.room_mut(&room) {
            for (local_id, _) in &again {
                buffer.timeline.sending(*local_id);
            }
        }
        self.set_status(
            format!("Sending {} again…", super::plural(again.len(), "message")),
            Level::Info,
        );
        again
            .into_iter()
            .map(|(_, command)| Effect::Command(command))
            .collect()
    }

    /// `/reconnect`: cuts a back-off short.
    fn reconnect(&mut self) -> Vec<Effect> {
        match &self.connection {
            ConnectionState::Online => {
                self.set_status("Already connected.", Level::Info);
                Vec::new()
            }
            ConnectionState::Stopped { reason } => {
                let reason = reason.clone();
                self.set_status(
                    format!("The client stopped reconnecting: {reason} Restart it to try again."),
                    Level::Error,
                );
                Vec::new()
            }
            ConnectionState::Connecting | ConnectionState::Offline { .. } => {
                self.set_status("Reconnecting now…", Level::Info);
                vec![Effect::Command(Command::Reconnect)]
            }
        }
    }

    /// A member's view, from the current room first, then any joined room.
    fn member_view(&self, username: &Username) -> Option<MemberView> {
        self.current_room()
            .into_iter()
            .chain(self.rooms.iter())
            .flat_map(|r| r.members.iter())
            .find(|m| m.username.same_as(username))
            .cloned()
    }

    /// Opens the "compare fingerprints" confirmation, or says why it cannot be marked.
    fn ask_verify(&mut self, username: &Username) -> Vec<Effect> {
        if self.my_name().is_some_and(|me| me.same_as(username)) {
            self.set_status(
                "That is you: read your fingerprint (F2) to the others so they can verify it.",
                Level::Info,
            );
            return Vec::new();
        }
        let Some(member) = self.member_view(username) else {
            self.set_status(
                format!("{username} is not a member of your open rooms; open a room they are in."),
                Level::Warning,
            );
            return Vec::new();
        };
        match member.status {
            KeyStatus::Trusted if member.verified => {
                self.set_status(
                    format!("{username}'s key is already verified."),
                    Level::Info,
                );
                Vec::new()
            }
            KeyStatus::Trusted => vec![Effect::Dialog(DialogKind::ConfirmVerify {
                username: member.username,
                fingerprint: member.fingerprint,
            })],
            KeyStatus::Unaccepted { .. } => {
                self.set_status(
                    format!(
                        "{username}'s key changed and is not accepted: compare the new \
                         fingerprint and accept it (F3) before marking it verified."
                    ),
                    Level::Warning,
                );
                Vec::new()
            }
            KeyStatus::Invalid { .. } => {
                self.set_status(
                    format!("{username}'s key is unusable and cannot be verified."),
                    Level::Warning,
                );
                Vec::new()
            }
        }
    }

    /// Opens the "replace your key?" confirmation, or says why not now.
    fn ask_rotate(&mut self) -> Vec<Effect> {
        if self.busy.is_some() {
            self.set_status("Your key is being replaced already.", Level::Info);
            return Vec::new();
        }
        if self.connection != ConnectionState::Online {
            self.set_status(
                "Replacing your key needs the server: wait until you are online.",
                Level::Warning,
            );
            return Vec::new();
        }
        match &self.me {
            Some(me) => vec![Effect::Dialog(DialogKind::ConfirmRotate {
                current: me.fingerprint,
            })],
            None => Vec::new(),
        }
    }

    fn load_older(&mut self) -> Vec<Effect> {
        let Some(room) = self.current_room().map(|r| r.name.clone()) else {
            return Vec::new();
        };
        let Some(buffer) = self.room_mut(&room) else {
            return Vec::new();
        };
        if buffer.loading_older {
            return Vec::new();
        }
        let oldest = buffer.older_before.or(buffer.timeline.oldest_seq());
        match oldest {
            Some(before_seq) if buffer.has_more => {
                buffer.loading_older = true;
                self.set_status(format!("Loading older messages of #{room}…"), Level::Info);
                vec![Effect::Command(Command::LoadOlder { room, before_seq })]
            }
            _ => {
                // History holds only the messages with a copy for this member: those sent
                // before they joined were never encrypted to them.
                self.set_status(
                    format!(
                        "No older messages in #{room} for you: messages sent before you \
                         joined were not encrypted to you."
                    ),
                    Level::Info,
                );
                Vec::new()
            }
        }
    }
}

/// Whether a submitted line goes into the input history: not a line carrying a room
/// password, which Up would otherwise show again.
fn remembered(action: &Action) -> bool {
    match action {
        Action::Join { password, .. } | Action::Create { password, .. } => password.is_none(),
        Action::SetPassword(password) => password.is_none(),
        _ => true,
    }
}
