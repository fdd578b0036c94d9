//! [`AppState`]: everything the terminal client shows, with no cursive types in it.
//!
//! The UI keeps exactly one `AppState` (in cursive's user data). Two entry points change
//! it, and both return [`Effect`]s for the cursive layer to carry out:
//!
//! - [`AppState::act`] for an [`Action`](super::command::Action) (a key, a form, the
//!   input line), in `act.rs`;
//! - [`AppState::apply`] for a [`UiEvent`](super::event::UiEvent) from the network task,
//!   in `apply.rs`.
//!
//! The parts, one concern each: [`Timeline`] (a room's lines), [`RoomBuffer`] (a joined
//! room), [`Lobby`] (the public rooms and the row chosen), [`Outbox`] (messages not
//! confirmed yet, sent again under the same id), [`InputHistory`] and [`complete`] (the
//! input line's Up/Down and Tab), [`StatusLine`] (with its expiry), plain words, running
//! rooms (`running.rs`: moderation, room events, direct conversations, blocking, deleting
//! the account), presence (`presence.rs`: typing and read markers) and attention
//! (`attention.rs`: the hotlist, the bell and desktop notifications).
//!
//! Views are re-rendered from the state after each call, so the logic here is tested
//! without a terminal (`state/tests.rs`, `tests/tui_views.rs`, `tests/tui_focus.rs`).

mod act;
mod apply;
mod attention;
#[cfg(test)]
mod habits_tests;
mod input;
mod live;
mod lobby;
#[cfg(test)]
mod notify_tests;
mod outbox;
mod presence;
mod room;
mod running;
#[cfg(test)]
mod running_tests;
mod status;
#[cfg(test)]
mod tests;
mod timeline;
mod words;

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use shared::crypto::keys::Fingerprint;
use shared::{RoomName, Username};

use super::command::Command;
use super::event::{ConnectionState, Me};
use super::notify::Notice;
use super::profile::{Settings, Start};
use crate::directory::MemberView;

pub use self::attention::Hot;
pub use self::input::{complete, Completion, InputHistory};
pub use self::lobby::Lobby;
pub use self::outbox::{OutState, Outbox, Outgoing};
pub use self::room::RoomBuffer;
pub use self::status::{Level, StatusLine};
pub use self::timeline::{Delivery, Entry, EntryKind, Timeline};
pub use self::words::{mentions, now_ms, plural, rejection_words, short_fingerprint};

/// What the centre of the main screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    /// The public rooms.
    Lobby,
    /// A joined room, by canonical name.
    Room(String),
}

/// A changed key waiting for the user's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAlert {
    /// Whose key changed.
    pub username: Username,
    /// The fingerprint the user trusted before.
    pub pinned: Fingerprint,
    /// The fingerprint the server now presents.
    pub new: Fingerprint,
    /// The user had verified the pinned key out of band: the strongest warning.
    pub verified: bool,
    /// Rooms where the change was seen.
    pub rooms: Vec<RoomName>,
}

/// The first-run or unlock screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onboarding {
    /// Which form to show.
    pub start: Start,
    /// The last failure, shown in the form.
    pub error: Option<String>,
    /// A slow step under way: what, and for how long.
    pub busy: Option<(String, Duration)>,
}

/// Which screen is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Creating an account or unlocking the key.
    Onboarding(Onboarding),
    /// Lobby and rooms.
    Main,
}

/// A dialog the cursive layer should open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogKind {
    /// Key bindings and commands.
    Help,
    /// The user's own fingerprint.
    Fingerprint(Me),
    /// The current room's members with full fingerprints, and pending key changes.
    Keys {
        /// The room, if one is shown.
        room: Option<RoomName>,
        /// Its members.
        members: Vec<MemberView>,
        /// Changed keys not accepted yet.
        pending: Vec<KeyAlert>,
    },
    /// "Join a room by name".
    Join,
    /// "Create a room".
    Create,
    /// "Leave #room?"
    ConfirmLeave(RoomName),
    /// A password prompt for a room.
    Password {
        /// The room.
        room: RoomName,
        /// Whether a password was refused.
        wrong: bool,
    },
    /// A changed key that must be acknowledged.
    KeyAlert(KeyAlert),
    /// The server presents another key for the user themself: an alarm that can only be
    /// dismissed (there is nothing to accept).
    OwnKeyAlarm {
        /// The fingerprint the server presented.
        presented: Fingerprint,
        /// The user's real fingerprint.
        own: Fingerprint,
    },
    /// "Did you compare bob's fingerprint out of band?" before marking it verified.
    ConfirmVerify {
        /// Whose key.
        username: Username,
        /// The fingerprint to compare.
        fingerprint: Fingerprint,
    },
    /// "Send these N lines?" before a long message (often a paste) goes out; the text
    /// waits in the input line meanwhile.
    ConfirmLongMessage {
        /// The message.
        text: String,
    },
    /// "Quit?" after Ctrl-C, which is pressed by accident as often as on purpose.
    ConfirmQuit {
        /// Messages not confirmed by the server, lost on quitting.
        unsent: usize,
    },
    /// "Delete #room for everyone?" before deleting a room.
    ConfirmDeleteRoom(RoomName),
    /// "Delete your account?": the user must type their username.
    DeleteAccount {
        /// The account, to be typed again.
        username: Username,
    },
    /// The account was deleted: nothing more can be done with it.
    AccountDeleted,
    /// "Replace your key?" before rotating it.
    ConfirmRotate {
        /// The user's current fingerprint.
        current: Fingerprint,
    },
    /// A failure.
    Error {
        /// What was being done.
        title: String,
        /// Why it failed.
        message: String,
    },
}

/// What the cursive layer must do after a state change (besides re-rendering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a command to the network task.
    Command(Command),
    /// Replace the onboarding screen with the main screen.
    EnterMain,
    /// Open a dialog.
    Dialog(DialogKind),
    /// Replace what the input line holds (history, completion). The input line is the
    /// only widget of the main screen that takes keys, so there is no focus to move.
    SetInput(String),
    /// Close the key-change dialog for this user if it is open (the change was settled,
    /// e.g. by a verified rotation).
    CloseKeyAlert(Username),
    /// Ring the terminal bell (a mention in a room not shown).
    Bell,
    /// Show a desktop notification (a mention or a direct message in a room not shown,
    /// when the user switched them on).
    Notify(Notice),
    /// Keep the user's settings in their profile.
    SaveSettings(Settings),
    /// Quit the application.
    Quit,
}

/// Everything the client shows.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The server's URL, for the title bar.
    pub server_url: String,
    /// The screen that is up.
    pub phase: Phase,
    /// The user, once the key is unlocked.
    pub me: Option<Me>,
    /// The connection.
    pub connection: ConnectionState,
    /// The public rooms.
    pub lobby: Lobby,
    /// Joined rooms, in the order they were opened.
    pub rooms: Vec<RoomBuffer>,
    /// What the centre shows.
    pub focus: Focus,
    /// The status line.
    pub status: Option<StatusLine>,
    /// Changed keys not accepted yet.
    pub key_changes: VecDeque<KeyAlert>,
    /// A slow task on the main screen (rotating the key): what, and for how long.
    pub busy: Option<(String, Duration)>,
    /// The key the server presented for the user, once the alarm was raised for it (the
    /// alarm dialog opens once per presented key, not once per room).
    pub own_key_alarm: Option<Fingerprint>,
    /// The user's messages not confirmed by the server yet.
    pub outbox: Outbox,
    /// Lines sent from the input line, for Up and Down.
    pub history: InputHistory,
    /// What the user switched on or off (typing notifications, read markers, desktop
    /// notifications).
    pub settings: Settings,
    /// Desktop notifications are on for this run: the kept setting, or `--notify` (which
    /// is not kept, so saving other settings never switches them on for good).
    pub notify: bool,
    /// Desktop notifications failed this run (no notification service): none are asked
    /// for any more, whatever the setting says.
    notify_failed: bool,
    /// The room last told the user is typing, and when (repeated every few seconds
    /// while they type; `None` once told they stopped).
    typing_sent: Option<(RoomName, Instant)>,
    /// `/msg USER TEXT` waiting for the conversation with USER to open.
    pending_direct: Option<(Username, String)>,
    /// Pending messages already re-sent once after members were added.
    resent: HashSet<u64>,
    /// The next id for a pending message.
    next_local_id: u64,
}

impl AppState {
    /// The state at start-up, showing the onboarding form chosen by `start`.
    pub fn new(server_url: impl Into<String>, start: Start) -> Self {
        Self {
            server_url: server_url.into(),
            phase: Phase::Onboarding(Onboarding {
                start,
                error: None,
                busy: None,
            }),
            me: None,
            connection: ConnectionState::Connecting,
            lobby: Lobby::default(),
            rooms: Vec::new(),
            focus: Focus::Lobby,
            status: None,
            key_changes: VecDeque::new(),
            busy: None,
            own_key_alarm: None,
            outbox: Outbox::default(),
            history: InputHistory::default(),
            settings: Settings::default(),
            notify: false,
            notify_failed: false,
            typing_sent: None,
            pending_direct: None,
            resent: HashSet::new(),
            next_local_id: 1,
        }
    }

    /// The room shown, if the centre shows one.
    pub fn current_room(&self) -> Option<&RoomBuffer> {
        match &self.focus {
            Focus::Room(key) => self.rooms.iter().find(|r| r.name.canonical() == *key),
            Focus::Lobby => None,
        }
    }

    /// A joined room by name.
    pub fn room(&self, name: &RoomName) -> Option<&RoomBuffer> {
        self.rooms.iter().find(|r| r.name.same_as(name))
    }

    fn room_mut(&mut self, name: &RoomName) -> Option<&mut RoomBuffer> {
        self.rooms.iter_mut().find(|r| r.name.same_as(name))
    }

    fn room_or_insert(&mut self, name: &RoomName) -> &mut RoomBuffer {
        let index = match self.rooms.iter().position(|r| r.name.same_as(name)) {
            Some(i) => i,
            None => {
                self.rooms.push(RoomBuffer::new(name.clone()));
                self.rooms.len() - 1
            }
        };
        &mut self.rooms[index]
    }

    fn is_focused(&self, name: &RoomName) -> bool {
        matches!(&self.focus, Focus::Room(key) if *key == name.canonical())
    }

    fn set_status(&mut self, text: impl Into<String>, level: Level) {
        self.status = Some(StatusLine::new(text, level));
    }

    /// The once-a-second chores: expires the status line and lapsed typing, and marks
    /// what the user has seen read. Returns whether the screen needs a render, and the
    /// effects.
    pub fn tick(&mut self, now: Instant) -> (bool, Vec<Effect>) {
        let status = self.expire_status(now);
        let typing = self.expire_typing(now);
        let mut effects = self.mark_seen_read();
        effects.extend(self.relist_stale_lobby(now));
        (status || typing, effects)
    }

    /// Clears the status line once it has been up for its level's lifetime. Returns
    /// whether it changed (the screen then needs a render).
    pub fn expire_status(&mut self, now: Instant) -> bool {
        if self.status.as_ref().is_some_and(|s| s.expired(now)) {
            self.status = None;
            return true;
        }
        false
    }

    /// Informational status lines describe the moment; moving elsewhere retires them.
    fn clear_info_status(&mut self) {
        if self.status.as_ref().is_some_and(|s| s.level == Level::Info) {
            self.status = None;
        }
    }

    fn my_name(&self) -> Option<&Username> {
        self.me.as_ref().map(|m| &m.username)
    }

    /// Shows a joined room (resetting its unread count).
    fn show_room(&mut self, name: &RoomName) -> Vec<Effect> {
        let effects = self.stop_typing();
        let Some(room) = self.room_mut(name) else {
            return effects;
        };
        room.unread = 0;
        room.mentions = 0;
        self.focus = Focus::Room(name.canonical());
        self.clear_info_status();
        effects
    }

    fn show_lobby(&mut self) -> Vec<Effect> {
        let mut effects = self.stop_typing();
        self.focus = Focus::Lobby;
        self.clear_info_status();
        effects.push(Effect::Command(Command::RefreshRooms));
        effects
    }

    /// The joined rooms in the order the room list shows them: group rooms in the order
    /// they were opened, then the direct conversations.
    pub fn listed_rooms(&self) -> Vec<&RoomBuffer> {
        let groups = self.rooms.iter().filter(|r| r.peer.is_none());
        groups
            .chain(self.rooms.iter().filter(|r| r.peer.is_some()))
            .collect()
    }

    /// Moves through the room list (the lobby, then [`listed_rooms`](Self::listed_rooms)).
    fn cycle(&mut self, step: isize) -> Vec<Effect> {
        let listed: Vec<RoomName> = self.listed_rooms().iter().map(|r| r.name.clone()).collect();
        let count = listed.len() as isize + 1;
        let current = match &self.focus {
            Focus::Lobby => 0,
            Focus::Room(key) => listed
                .iter()
                .position(|r| r.canonical() == *key)
                .map_or(0, |i| i as isize + 1),
        };
        let next = (current + step).rem_euclid(count);
        if next == 0 {
            let effects = self.stop_typing();
            self.focus = Focus::Lobby;
            self.clear_info_status();
            return effects;
        }
        self.show_room(&listed[(next - 1) as usize])
    }
}
