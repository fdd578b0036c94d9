//! [`AppState::act`]: how a user intent (a key, a form, the input line) changes the state.

use std::time::Duration;

use shared::Username;

use super::super::command::{Action, Command};
use super::super::event::ConnectionState;
use super::{AppState, DialogKind, Effect, Level};
use crate::directory::{KeyStatus, MemberView};

impl AppState {
    /// Carries out a user intent.
    pub fn act(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Send(text) => {
                let Some(room) = self.current_room().map(|r| r.name.clone()) else {
                    self.set_status(
                        "Open a room first: pick one in the lobby, or press F7 to join by name.",
                        Level::Warning,
                    );
                    return Vec::new();
                };
                let Some(me) = self.my_name().cloned() else {
                    return Vec::new();
                };
                let local_id = self.next_local_id;
                self.next_local_id += 1;
                if let Some(buffer) = self.room_mut(&room) {
                    buffer.timeline.push_pending(local_id, me, text.clone());
                }
                vec![Effect::Command(Command::Send {
                    room,
                    text,
                    local_id,
                })]
            }
            Action::Join { room, password } => {
                if password.is_none() && self.room(&room).is_some() {
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
            Action::Quit => vec![Effect::Quit],
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
                self.set_status(format!("#{room} has no older messages."), Level::Info);
                Vec::new()
            }
        }
    }
}
