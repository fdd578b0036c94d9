//! [`AppState`]: everything the terminal client shows, with no cursive types in it.
//!
//! The UI keeps exactly one `AppState` (in cursive's user data). Two entry points change
//! it, and both return [`Effect`]s for the cursive layer to carry out:
//!
//! - [`AppState::act`] for an [`Action`] (a key, a form, the input line);
//! - [`AppState::apply`] for a [`UiEvent`] from the network task.
//!
//! Views are re-rendered from the state after each call, so the logic here is tested
//! without a terminal (see the tests at the bottom and `tests/tui_views.rs`).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::crypto::keys::Fingerprint;
use shared::protocol::{RoomSummary, SendAck};
use shared::{MessageId, RoomName, Username};

use super::command::{Action, Command};
use super::event::{describe_disconnect, list, ConnectionState, Me, UiEvent};
use super::profile::Start;
use crate::directory::{KeyStatus, MemberView};
use crate::events::{ClientEvent, MembershipSource};
use crate::inbox::{DecryptedMessage, RejectReason, Rejection};
use crate::rooms::HistoryView;

/// How loud a notice or status line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Ordinary information.
    Info,
    /// Something the user should look at (a refused message, a changed key).
    Warning,
    /// Something failed.
    Error,
}

/// The line above the help bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// What to say.
    pub text: String,
    /// How loud.
    pub level: Level,
}

/// Where a message of the timeline stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Decrypted and its signature verified under the sender's pinned key (or, for the
    /// user's own message, stored by the server).
    Verified,
    /// The user's own message, being encrypted and sent.
    Sending,
    /// The user's own message that could not be sent.
    Failed(String),
}

/// One line of a room's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A chat message.
    Message {
        /// Its position in the room (`None` while the user's own message is pending).
        seq: Option<u64>,
        /// The UI's id of the user's own pending message.
        local_id: Option<u64>,
        /// The author's id for it (signed), to show each message once whatever its `seq`
        /// (`None` while the user's own message is pending).
        message_id: Option<MessageId>,
        /// The author.
        sender: Username,
        /// The text.
        text: String,
        /// Verified, pending or failed.
        delivery: Delivery,
        /// Whether the user wrote it.
        own: bool,
        /// The server's time, when it differs from the signed send time by more than
        /// clocks drift (the author's clock is wrong, or the server held it back).
        disputed_server_time: Option<u64>,
        /// Signed recipients not shown as members of the room: someone the user was not
        /// shown may be reading along.
        unknown_recipients: Vec<Username>,
    },
    /// A message the client refused to show.
    Rejected {
        /// Its position, per the server.
        seq: u64,
        /// Its sender, per the server.
        sender: Username,
        /// Why it was refused.
        reason: String,
    },
    /// A join, a leave, a key change, a connection notice.
    Notice {
        /// What happened.
        text: String,
        /// How loud.
        level: Level,
    },
}

/// A timeline line with its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Milliseconds since the Unix epoch: for messages the author's signed send time (the
    /// user's own clock for their own lines), for notices when they happened.
    pub time_ms: u64,
    /// What it is.
    pub kind: EntryKind,
}

impl Entry {
    /// The room position, for messages and refusals.
    pub fn seq(&self) -> Option<u64> {
        match &self.kind {
            EntryKind::Message { seq, .. } => *seq,
            EntryKind::Rejected { seq, .. } => Some(*seq),
            EntryKind::Notice { .. } => None,
        }
    }
}

/// A room's lines: messages in `seq` order, notices where they happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    entries: Vec<Entry>,
}

impl Timeline {
    /// The lines, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The smallest `seq` shown.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.entries.iter().filter_map(Entry::seq).min()
    }

    /// The largest `seq` shown.
    pub fn newest_seq(&self) -> Option<u64> {
        self.entries.iter().filter_map(Entry::seq).max()
    }

    /// Inserts a decrypted message in `seq` order, shown at its signed send time. A
    /// message already shown (by position or by message id) is skipped; a refusal at the
    /// same position is replaced (the key was accepted since). Returns whether the
    /// timeline changed.
    pub fn insert_message(&mut self, msg: &DecryptedMessage, own: bool) -> bool {
        let entry = Entry {
            time_ms: msg.sent_at_ms,
            kind: EntryKind::Message {
                seq: Some(msg.seq),
                local_id: None,
                message_id: Some(msg.message_id),
                sender: msg.sender.clone(),
                text: msg.text.clone(),
                delivery: Delivery::Verified,
                own,
                disputed_server_time: msg.time_disputed().then_some(msg.server_time_ms),
                unknown_recipients: msg.unknown_recipients.clone(),
            },
        };
        let at_seq = self.position_of(msg.seq);
        if let Some(i) = at_seq {
            if !matches!(self.entries[i].kind, EntryKind::Rejected { .. }) {
                return false;
            }
        }
        if self.has_message_id(&msg.message_id) {
            return false;
        }
        match at_seq {
            Some(i) => self.entries[i] = entry,
            None => self.insert_ordered(msg.seq, msg.server_time_ms, entry),
        }
        true
    }

    /// Whether a message with this id is shown.
    pub fn has_message_id(&self, id: &MessageId) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(&e.kind, EntryKind::Message { message_id: Some(m), .. } if m == id))
    }

    /// Inserts a refusal in `seq` order unless something is already shown there.
    pub fn insert_rejection(&mut self, rejection: &Rejection) -> bool {
        if self.position_of(rejection.seq).is_some() {
            return false;
        }
        let now = now_ms();
        let entry = Entry {
            time_ms: now,
            kind: EntryKind::Rejected {
                seq: rejection.seq,
                sender: rejection.sender.clone(),
                reason: rejection_words(&rejection.reason),
            },
        };
        self.insert_ordered(rejection.seq, now, entry);
        true
    }

    /// Appends a notice.
    pub fn push_notice(&mut self, text: impl Into<String>, level: Level) {
        self.entries.push(Entry {
            time_ms: now_ms(),
            kind: EntryKind::Notice {
                text: text.into(),
                level,
            },
        });
    }

    /// Replaces the newest notice reading `old` with `new`. Returns whether one was found.
    pub fn replace_notice(&mut self, old: &str, new: String) -> bool {
        let found = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| matches!(&e.kind, EntryKind::Notice { text, .. } if text == old));
        match found {
            Some(entry) => {
                if let EntryKind::Notice { text, .. } = &mut entry.kind {
                    *text = new;
                }
                true
            }
            None => false,
        }
    }

    /// Appends the user's own message while it is being sent.
    pub fn push_pending(&mut self, local_id: u64, sender: Username, text: String) {
        self.entries.push(Entry {
            time_ms: now_ms(),
            kind: EntryKind::Message {
                seq: None,
                local_id: Some(local_id),
                message_id: None,
                sender,
                text,
                delivery: Delivery::Sending,
                own: true,
                disputed_server_time: None,
                unknown_recipients: Vec::new(),
            },
        });
    }

    /// The text of a pending message.
    pub fn pending_text(&self, local_id: u64) -> Option<&str> {
        let i = self.pending_index(local_id)?;
        match &self.entries[i].kind {
            EntryKind::Message { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Marks a pending message as stored. If that position or message id is already shown
    /// (the same message arrived through history first), the pending line is dropped. The
    /// line keeps the time it was typed at: the user's own clock, as the signed time is.
    pub fn confirm(&mut self, local_id: u64, ack: &SendAck) {
        let duplicate = self.position_of(ack.seq).is_some() || self.has_message_id(&ack.message_id);
        let Some(i) = self.pending_index(local_id) else {
            return;
        };
        if duplicate {
            self.entries.remove(i);
            return;
        }
        if let EntryKind::Message {
            seq,
            local_id: l,
            message_id,
            delivery,
            ..
        } = &mut self.entries[i].kind
        {
            *seq = Some(ack.seq);
            *l = None;
            *message_id = Some(ack.message_id);
            *delivery = Delivery::Verified;
        }
    }

    /// Marks a pending message as failed.
    pub fn fail(&mut self, local_id: u64, reason: &str) {
        if let Some(i) = self.pending_index(local_id) {
            if let EntryKind::Message { delivery, .. } = &mut self.entries[i].kind {
                *delivery = Delivery::Failed(reason.to_owned());
            }
        }
    }

    fn pending_index(&self, local_id: u64) -> Option<usize> {
        self.entries.iter().position(
            |e| matches!(&e.kind, EntryKind::Message { local_id: Some(l), .. } if *l == local_id),
        )
    }

    fn position_of(&self, seq: u64) -> Option<usize> {
        self.entries.iter().position(|e| e.seq() == Some(seq))
    }

    /// Before the first line with a larger `seq`, and before notices newer than
    /// `order_ms` (the server's time, which unlike the signed time is the same clock as
    /// the notices').
    fn insert_ordered(&mut self, seq: u64, order_ms: u64, entry: Entry) {
        let mut pos = self
            .entries
            .iter()
            .position(|e| e.seq().is_some_and(|s| s > seq))
            .unwrap_or(self.entries.len());
        while pos > 0
            && matches!(self.entries[pos - 1].kind, EntryKind::Notice { .. })
            && self.entries[pos - 1].time_ms > order_ms
        {
            pos -= 1;
        }
        self.entries.insert(pos, entry);
    }
}

/// A joined room as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomBuffer {
    /// The room.
    pub name: RoomName,
    /// Who created it (unknown until the room is opened).
    pub owner: Option<Username>,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Whether it is hidden from the lobby.
    pub hidden: bool,
    /// The members with their key fingerprints.
    pub members: Vec<MemberView>,
    /// The lines.
    pub timeline: Timeline,
    /// Messages that arrived while the user looked elsewhere.
    pub unread: usize,
    /// Whether older messages exist on the server.
    pub has_more: bool,
    /// Whether a page of older messages is on its way.
    pub loading_older: bool,
    /// While catching up after a reconnect: the newest `seq` shown before it. Pages are
    /// fetched backwards from the re-opened room's newest page until they reach it, so
    /// messages that arrived while offline are never left in a gap.
    pub gap_floor: Option<u64>,
    /// The `before_seq` to fetch older messages with, as the server said with the oldest
    /// page so far (`None`: below the oldest message shown).
    pub older_before: Option<u64>,
    /// Canonical names whose addition was shown from a refused send before the client's
    /// `MemberJoined` arrived; that event then completes the line instead of adding one.
    pub announced_joins: Vec<String>,
}

impl RoomBuffer {
    fn new(name: RoomName) -> Self {
        Self {
            name,
            owner: None,
            has_password: false,
            hidden: false,
            members: Vec::new(),
            timeline: Timeline::default(),
            unread: 0,
            has_more: false,
            loading_older: false,
            gap_floor: None,
            older_before: None,
            announced_joins: Vec::new(),
        }
    }

    /// After merging `page`, asks for the page before it while a gap down to
    /// `gap_floor` remains; clears the gap once a page reaches it or nothing older exists.
    fn continue_gap_fill(&mut self, page: &HistoryView) -> Vec<Effect> {
        let Some(floor) = self.gap_floor else {
            return Vec::new();
        };
        match page.next_before.or(page.oldest_seq()) {
            Some(oldest) if page.has_more && oldest > floor.saturating_add(1) => {
                self.loading_older = true;
                vec![Effect::Command(Command::LoadOlder {
                    room: self.name.clone(),
                    before_seq: oldest,
                })]
            }
            _ => {
                self.gap_floor = None;
                Vec::new()
            }
        }
    }

    fn has_member(&self, user: &Username) -> bool {
        self.members.iter().any(|m| m.username.same_as(user))
    }

    fn merge_history(&mut self, page: &HistoryView, me: Option<&Username>) {
        let before = self.timeline.oldest_seq();
        for msg in &page.messages {
            let own = me.is_some_and(|m| m.same_as(&msg.sender));
            self.timeline.insert_message(msg, own);
        }
        for rejection in &page.rejected {
            self.timeline.insert_rejection(rejection);
        }
        // Only a page that reaches further back than what is shown says whether even
        // older messages exist.
        match (page.oldest_seq(), before) {
            (Some(p), Some(b)) if p > b => {}
            // An empty page says where to go on when the server read a stretch that
            // holds nothing for this user.
            (None, Some(b)) => {
                if let Some(next) = page.next_before.filter(|n| *n <= b) {
                    self.has_more = true;
                    self.older_before = Some(next);
                }
            }
            _ => {
                self.has_more = page.has_more;
                self.older_before = page.next_before;
            }
        }
    }
}

/// What the centre of the main screen shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    /// The public rooms.
    Lobby,
    /// A joined room, by canonical name.
    Room(String),
}

/// The public rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lobby {
    /// Public rooms with their member counts.
    pub rooms: Vec<RoomSummary>,
    /// Users online on the server.
    pub users_online: u32,
    /// Whether a listing arrived yet.
    pub loaded: bool,
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
    /// Put the cursor in the input line.
    FocusInput,
    /// Put the cursor in the lobby's room list.
    FocusLobby,
    /// Close the key-change dialog for this user if it is open (the change was settled,
    /// e.g. by a verified rotation).
    CloseKeyAlert(Username),
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
        self.status = Some(StatusLine {
            text: text.into(),
            level,
        });
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

    /// Shows a joined room (resetting its unread count) and focuses the input line.
    fn show_room(&mut self, name: &RoomName) -> Vec<Effect> {
        let Some(room) = self.room_mut(name) else {
            return Vec::new();
        };
        room.unread = 0;
        self.focus = Focus::Room(name.canonical());
        self.clear_info_status();
        vec![Effect::FocusInput]
    }

    fn show_lobby(&mut self) -> Vec<Effect> {
        self.focus = Focus::Lobby;
        self.clear_info_status();
        vec![Effect::Command(Command::RefreshRooms), Effect::FocusLobby]
    }

    /// The order the room list shows: the lobby, then the joined rooms.
    fn cycle(&mut self, step: isize) -> Vec<Effect> {
        let count = self.rooms.len() as isize + 1;
        let current = match &self.focus {
            Focus::Lobby => 0,
            Focus::Room(key) => self
                .rooms
                .iter()
                .position(|r| r.name.canonical() == *key)
                .map_or(0, |i| i as isize + 1),
        };
        let next = (current + step).rem_euclid(count);
        if next == 0 {
            self.focus = Focus::Lobby;
            self.clear_info_status();
            return vec![Effect::FocusLobby];
        }
        let name = self.rooms[(next - 1) as usize].name.clone();
        self.show_room(&name)
    }

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

    /// Takes in a report from the network task.
    pub fn apply(&mut self, event: UiEvent) -> Vec<Effect> {
        match event {
            UiEvent::Progress { title, elapsed } => {
                match &mut self.phase {
                    Phase::Onboarding(o) => o.busy = Some((title, elapsed)),
                    Phase::Main => self.busy = Some((title, elapsed)),
                }
                Vec::new()
            }
            UiEvent::OnboardingFailed { message } => {
                if let Phase::Onboarding(o) = &mut self.phase {
                    o.busy = None;
                    o.error = Some(message);
                }
                Vec::new()
            }
            UiEvent::Ready(me) => {
                self.set_status(
                    format!("Signed in as {} · F2 shows your fingerprint", me.username),
                    Level::Info,
                );
                self.me = Some(me);
                self.phase = Phase::Main;
                vec![Effect::EnterMain, Effect::FocusLobby]
            }
            UiEvent::Connection(state) => {
                self.connection_changed(state);
                Vec::new()
            }
            UiEvent::RoomList(list) => {
                self.lobby = Lobby {
                    rooms: list.rooms,
                    users_online: list.users_online,
                    loaded: true,
                };
                if self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.text.starts_with("Refreshing"))
                {
                    self.status = None;
                }
                Vec::new()
            }
            UiEvent::RoomOpened { view, focus } => {
                let me = self.my_name().cloned();
                let buffer = self.room_or_insert(&view.room);
                let first_open = buffer.owner.is_none();
                let newest_shown = buffer.timeline.newest_seq();
                buffer.owner = Some(view.owner.clone());
                buffer.has_password = view.has_password;
                buffer.hidden = view.hidden;
                buffer.members = view.members.clone();
                buffer.merge_history(&view.history, me.as_ref());
                let mut effects = Vec::new();
                if !first_open && !buffer.loading_older {
                    buffer.gap_floor = newest_shown;
                    effects = buffer.continue_gap_fill(&view.history);
                }
                if first_open {
                    let kind = match (view.hidden, view.has_password) {
                        (true, true) => "hidden, password",
                        (true, false) => "hidden",
                        (false, true) => "public, password",
                        (false, false) => "public",
                    };
                    buffer.timeline.push_notice(
                        format!(
                            "#{} · {kind} · owner {} · end-to-end encrypted",
                            view.room, view.owner
                        ),
                        Level::Info,
                    );
                }
                if focus {
                    effects.extend(self.show_room(&view.room));
                    self.set_status(format!("Joined #{}", view.room), Level::Info);
                }
                effects
            }
            UiEvent::HistoryLoaded(page) => {
                let me = self.my_name().cloned();
                let buffer = self.room_or_insert(&page.room);
                buffer.loading_older = false;
                buffer.merge_history(&page, me.as_ref());
                let effects = buffer.continue_gap_fill(&page);
                if self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.text.starts_with("Loading older"))
                {
                    self.status = None;
                }
                effects
            }
            UiEvent::Members { room, members } => {
                if let Some(buffer) = self.room_mut(&room) {
                    buffer.members = members;
                }
                Vec::new()
            }
            UiEvent::Sent {
                room,
                local_id,
                ack,
            } => {
                self.resent.remove(&local_id);
                if let Some(buffer) = self.room_mut(&room) {
                    buffer.timeline.confirm(local_id, &ack);
                }
                Vec::new()
            }
            UiEvent::SendFailed {
                room,
                local_id,
                reason,
            } => {
                self.resent.remove(&local_id);
                if let Some(buffer) = self.room_mut(&room) {
                    buffer.timeline.fail(local_id, &reason);
                }
                self.set_status(format!("Not sent to #{room}: {reason}"), Level::Error);
                Vec::new()
            }
            UiEvent::Left(room) => {
                self.rooms.retain(|r| !r.name.same_as(&room));
                let effects = if matches!(&self.focus, Focus::Room(key) if *key == room.canonical())
                {
                    self.show_lobby()
                } else {
                    vec![Effect::Command(Command::RefreshRooms)]
                };
                self.set_status(format!("You left #{room}."), Level::Info);
                effects
            }
            UiEvent::PasswordNeeded { room, wrong } => {
                self.status = None;
                vec![Effect::Dialog(DialogKind::Password { room, wrong })]
            }
            UiEvent::KeyAccepted {
                username,
                fingerprint,
            } => {
                self.key_changes.retain(|k| !k.username.same_as(&username));
                for buffer in &mut self.rooms {
                    if buffer.has_member(&username) {
                        for m in &mut buffer.members {
                            if m.username.same_as(&username) {
                                m.status = KeyStatus::Trusted;
                                m.fingerprint = fingerprint;
                            }
                        }
                        buffer.timeline.push_notice(
                            format!("You accepted {username}'s new key {fingerprint}."),
                            Level::Info,
                        );
                    }
                }
                self.set_status(format!("{username}'s new key is trusted."), Level::Info);
                Vec::new()
            }
            UiEvent::Verified {
                username,
                fingerprint,
            } => {
                for buffer in &mut self.rooms {
                    let mut listed = false;
                    for m in &mut buffer.members {
                        if m.username.same_as(&username) && m.fingerprint == fingerprint {
                            m.verified = true;
                            listed = true;
                        }
                    }
                    if listed {
                        buffer.timeline.push_notice(
                            format!(
                                "✓✓ You verified {username}'s key {}.",
                                short_fingerprint(&fingerprint)
                            ),
                            Level::Info,
                        );
                    }
                }
                self.set_status(
                    format!("{username}'s key is verified: a change to it will be a loud alarm."),
                    Level::Info,
                );
                Vec::new()
            }
            UiEvent::MembersAdded {
                room,
                local_id,
                added,
            } => self.members_added(&room, local_id, &added),
            UiEvent::OwnKeyRotated { old, new, backup } => {
                self.busy = None;
                let me = self.me.as_mut().map(|me| {
                    me.fingerprint = new;
                    me.username.clone()
                });
                let kept = match &backup {
                    Some(path) => format!(" The old key is kept in {}.", path.display()),
                    None => String::new(),
                };
                for buffer in &mut self.rooms {
                    for m in &mut buffer.members {
                        if me.as_ref().is_some_and(|me| me.same_as(&m.username)) {
                            m.fingerprint = new;
                            m.status = KeyStatus::Trusted;
                        }
                    }
                    buffer.timeline.push_notice(
                        format!(
                            "You rotated your key: {} → {}. Others see the change signed by \
                             your old key.",
                            short_fingerprint(&old),
                            short_fingerprint(&new)
                        ),
                        Level::Info,
                    );
                }
                self.set_status(
                    format!("Your new key is in use: {}.{kept}", short_fingerprint(&new)),
                    Level::Info,
                );
                Vec::new()
            }
            UiEvent::RotationFailed { message } => {
                self.busy = None;
                self.set_status(
                    format!("Your key was not replaced: {message}"),
                    Level::Error,
                );
                vec![Effect::Dialog(DialogKind::Error {
                    title: "Replacing your key".into(),
                    message,
                })]
            }
            UiEvent::Warning(text) => {
                self.set_status(text, Level::Warning);
                Vec::new()
            }
            UiEvent::Client(event) => self.client_event(event),
            UiEvent::Failed { action, message } => {
                self.set_status(format!("{action}: {message}"), Level::Error);
                vec![Effect::Dialog(DialogKind::Error {
                    title: action,
                    message,
                })]
            }
        }
    }

    fn connection_changed(&mut self, state: ConnectionState) {
        let was_online = self.connection == ConnectionState::Online;
        match &state {
            ConnectionState::Online if !was_online => {
                self.set_status(format!("Connected to {}", self.server_url), Level::Info);
                if self.rooms.iter().any(|r| !r.timeline.entries().is_empty()) {
                    for buffer in &mut self.rooms {
                        buffer.timeline.push_notice("Reconnected.", Level::Info);
                    }
                }
            }
            ConnectionState::Offline {
                reason, retry_in, ..
            } => {
                self.set_status(
                    format!(
                        "Disconnected: {reason} Reconnecting in {} s…",
                        retry_in.as_secs().max(1)
                    ),
                    Level::Warning,
                );
                if was_online {
                    for buffer in &mut self.rooms {
                        buffer.timeline.push_notice(
                            format!("Connection lost: {reason} Reconnecting…"),
                            Level::Warning,
                        );
                    }
                }
            }
            ConnectionState::Stopped { reason } => {
                self.set_status(format!("Offline: {reason}"), Level::Error);
            }
            ConnectionState::Connecting | ConnectionState::Online => {}
        }
        self.connection = state;
    }

    /// A send refused because members were added: shows the additions the client's
    /// events have not shown yet, then sends the pending message once more (a second
    /// refusal fails it: it is never sent twice, and never silently dropped).
    fn members_added(&mut self, room: &RoomName, local_id: u64, added: &[Username]) -> Vec<Effect> {
        let first_refusal = !self.resent.contains(&local_id);
        let Some(buffer) = self.room_mut(room) else {
            return Vec::new();
        };
        for user in added {
            let key = user.canonical();
            if buffer.has_member(user) || buffer.announced_joins.contains(&key) {
                continue;
            }
            buffer
                .timeline
                .push_notice(join_line(user, "was added", None), Level::Info);
            buffer.announced_joins.push(key);
        }
        let Some(text) = buffer.timeline.pending_text(local_id).map(str::to_owned) else {
            return Vec::new();
        };
        if !first_refusal {
            let reason = "more members were added while sending; send it again to include them";
            buffer.timeline.fail(local_id, reason);
            self.resent.remove(&local_id);
            self.set_status(format!("Not sent to #{room}: {reason}."), Level::Warning);
            return Vec::new();
        }
        self.resent.insert(local_id);
        self.set_status(
            format!(
                "{} joined #{room}: your message is being sent again, now also to them.",
                list(added)
            ),
            Level::Info,
        );
        vec![Effect::Command(Command::Send {
            room: room.clone(),
            text,
            local_id,
        })]
    }

    fn client_event(&mut self, event: ClientEvent) -> Vec<Effect> {
        match event {
            ClientEvent::Message(msg) => {
                let own = self.my_name().is_some_and(|m| m.same_as(&msg.sender));
                let focused = self.is_focused(&msg.room);
                let buffer = self.room_or_insert(&msg.room);
                if buffer.timeline.insert_message(&msg, own) && !focused && !own {
                    buffer.unread += 1;
                }
                if !msg.unknown_recipients.is_empty() {
                    self.set_status(
                        format!(
                            "{}'s message in #{} was also sent to {}, not shown as a member.",
                            msg.sender,
                            msg.room,
                            list(&msg.unknown_recipients)
                        ),
                        Level::Warning,
                    );
                }
                Vec::new()
            }
            ClientEvent::Rejected(rejection) => {
                let room = rejection.room.clone();
                let sender = rejection.sender.clone();
                let reason = rejection_words(&rejection.reason);
                self.room_or_insert(&room)
                    .timeline
                    .insert_rejection(&rejection);
                self.set_status(
                    format!("Refused a message from {sender} in #{room}: {reason}"),
                    Level::Warning,
                );
                Vec::new()
            }
            ClientEvent::MemberJoined {
                room,
                member,
                source,
            } => {
                if let Some(buffer) = self.room_mut(&room) {
                    let how = match source {
                        MembershipSource::Push => "joined",
                        MembershipSource::Reopened => "joined while you were away",
                        MembershipSource::SendRefused => "was added",
                    };
                    let text = join_line(&member.username, how, Some(&member.fingerprint));
                    let key = member.username.canonical();
                    let announced = buffer.announced_joins.iter().position(|k| *k == key);
                    let replaced = announced.is_some_and(|i| {
                        buffer.announced_joins.remove(i);
                        let earlier = join_line(&member.username, "was added", None);
                        buffer.timeline.replace_notice(&earlier, text.clone())
                    });
                    if !replaced {
                        buffer.timeline.push_notice(text, Level::Info);
                    }
                    buffer
                        .members
                        .retain(|m| !m.username.same_as(&member.username));
                    buffer.members.push(member);
                }
                Vec::new()
            }
            ClientEvent::MemberLeft {
                room,
                username,
                source,
            } => {
                if let Some(buffer) = self.room_mut(&room) {
                    let how = match source {
                        MembershipSource::Push => "left",
                        MembershipSource::Reopened => "left while you were away",
                        MembershipSource::SendRefused => "is no longer a member",
                    };
                    buffer.members.retain(|m| !m.username.same_as(&username));
                    buffer
                        .announced_joins
                        .retain(|k| *k != username.canonical());
                    buffer
                        .timeline
                        .push_notice(format!("← {username} {how}"), Level::Info);
                }
                Vec::new()
            }
            ClientEvent::KeyRotated {
                username,
                old_fingerprint,
                new_fingerprint,
                rooms,
            } => {
                let text = format!(
                    "{username} rotated their key: {} → {} (signed by the old key)",
                    short_fingerprint(&old_fingerprint),
                    short_fingerprint(&new_fingerprint)
                );
                for buffer in &mut self.rooms {
                    let listed = rooms.iter().any(|r| r.same_as(&buffer.name));
                    if !(listed || buffer.has_member(&username)) {
                        continue;
                    }
                    for m in &mut buffer.members {
                        if m.username.same_as(&username) {
                            m.fingerprint = new_fingerprint;
                            m.status = KeyStatus::Trusted;
                        }
                    }
                    buffer.timeline.push_notice(text.clone(), Level::Info);
                }
                let had_alert = self
                    .key_changes
                    .iter()
                    .any(|k| k.username.same_as(&username));
                self.key_changes.retain(|k| !k.username.same_as(&username));
                self.set_status(text, Level::Info);
                if had_alert {
                    vec![Effect::CloseKeyAlert(username)]
                } else {
                    Vec::new()
                }
            }
            ClientEvent::OwnKeyMismatch {
                presented_fingerprint,
                own_fingerprint,
            } => {
                let text = format!(
                    "⚠ The server presents a different key for YOU ({}; yours is {}). Your \
                     client keeps using your own key, but someone may be trying to read your \
                     messages.",
                    short_fingerprint(&presented_fingerprint),
                    short_fingerprint(&own_fingerprint)
                );
                for buffer in &mut self.rooms {
                    buffer.timeline.push_notice(text.clone(), Level::Error);
                }
                self.set_status(text, Level::Error);
                if self.own_key_alarm == Some(presented_fingerprint) {
                    return Vec::new();
                }
                self.own_key_alarm = Some(presented_fingerprint);
                vec![Effect::Dialog(DialogKind::OwnKeyAlarm {
                    presented: presented_fingerprint,
                    own: own_fingerprint,
                })]
            }
            ClientEvent::MessagesWithheld {
                room,
                sender,
                missing,
            } => {
                let text = format!(
                    "⚠ {} from {sender} did not arrive: the server may be withholding them.",
                    plural(usize::try_from(missing).unwrap_or(usize::MAX), "message")
                );
                self.room_or_insert(&room)
                    .timeline
                    .push_notice(text.clone(), Level::Warning);
                self.set_status(format!("#{room}: {text}"), Level::Warning);
                Vec::new()
            }
            ClientEvent::KeyRotatedElsewhere => {
                self.set_status(
                    "Your key was rotated on another device: this key no longer logs in. \
                     Import the new key (--import) to use this account here.",
                    Level::Error,
                );
                Vec::new()
            }
            ClientEvent::LocalStateError { reason } => {
                self.set_status(
                    format!(
                        "Could not save what this client must remember ({reason}); replayed \
                         messages may not be recognised after a restart until it can."
                    ),
                    Level::Error,
                );
                Vec::new()
            }
            ClientEvent::KeyChanged {
                username,
                pinned_fingerprint,
                new_fingerprint,
                verified,
                rooms,
            } => {
                let alert = KeyAlert {
                    username: username.clone(),
                    pinned: pinned_fingerprint,
                    new: new_fingerprint,
                    verified,
                    rooms: rooms.clone(),
                };
                let text = if verified {
                    format!(
                        "⚠⚠ {username}'s VERIFIED key was REPLACED without a rotation signed by \
                         the verified key: {} → {}. Treat this as an attack unless {username} \
                         confirms it in person. Nothing is encrypted to the new key and its \
                         messages stay hidden.",
                        short_fingerprint(&pinned_fingerprint),
                        short_fingerprint(&new_fingerprint)
                    )
                } else {
                    format!(
                        "⚠ {username}'s key CHANGED without a rotation signed by the old key: \
                         {} → {}. Their new messages stay hidden and nothing is encrypted to \
                         them until you accept (F3).",
                        short_fingerprint(&pinned_fingerprint),
                        short_fingerprint(&new_fingerprint)
                    )
                };
                for buffer in &mut self.rooms {
                    let listed = rooms.iter().any(|r| r.same_as(&buffer.name));
                    if !(listed || buffer.has_member(&username)) {
                        continue;
                    }
                    for m in &mut buffer.members {
                        if m.username.same_as(&username) {
                            m.fingerprint = new_fingerprint;
                            m.status = KeyStatus::Unaccepted {
                                pinned: pinned_fingerprint,
                            };
                            m.verified = false;
                        }
                    }
                    let level = if verified {
                        Level::Error
                    } else {
                        Level::Warning
                    };
                    buffer.timeline.push_notice(text.clone(), level);
                }
                self.key_changes.retain(|k| !k.username.same_as(&username));
                self.key_changes.push_back(alert.clone());
                if verified {
                    self.set_status(
                        format!(
                            "{username}'s VERIFIED key was replaced: do not accept it unless \
                             {username} confirms the new fingerprint in person."
                        ),
                        Level::Error,
                    );
                } else {
                    self.set_status(
                        format!("{username}'s key changed: compare fingerprints before accepting."),
                        Level::Warning,
                    );
                }
                vec![Effect::Dialog(DialogKind::KeyAlert(alert))]
            }
            ClientEvent::InvalidKey { username, reason } => {
                for buffer in &mut self.rooms {
                    if buffer.has_member(&username) {
                        buffer.timeline.push_notice(
                            format!("⚠ The server sent an unusable key for {username}: {reason}"),
                            Level::Warning,
                        );
                    }
                }
                self.set_status(
                    format!("Unusable key for {username}: {reason}"),
                    Level::Warning,
                );
                Vec::new()
            }
            ClientEvent::ServerError { message, .. } => {
                self.set_status(format!("Server error: {message}"), Level::Error);
                Vec::new()
            }
            ClientEvent::Disconnected { reason } => {
                self.set_status(
                    format!("Disconnected: {}.", describe_disconnect(&reason)),
                    Level::Warning,
                );
                Vec::new()
            }
        }
    }
}

/// `→ carol joined · key 7777 7777…` (the key once it is known).
fn join_line(user: &Username, how: &str, fingerprint: Option<&Fingerprint>) -> String {
    match fingerprint {
        Some(fp) => format!("→ {user} {how} · key {}", short_fingerprint(fp)),
        None => format!("→ {user} {how}"),
    }
}

/// Why a message was refused, in plain words for the timeline.
pub fn rejection_words(reason: &RejectReason) -> String {
    match reason {
        RejectReason::Undecryptable => {
            "it does not decrypt: tampered with, or not meant for you".into()
        }
        RejectReason::BadSignature => {
            "its signature does not match the sender's key: it may be forged".into()
        }
        RejectReason::Mismatch(_) => {
            "what the sender signed does not match what the server says (room, sender or \
             recipients)"
                .into()
        }
        RejectReason::Duplicate { .. } => "already shown".into(),
        RejectReason::Replayed { counter } => {
            format!("replayed: this message (number {counter} from its sender) was received before")
        }
        RejectReason::RetiredKey => "signed with a retired key, after its owner replaced it".into(),
        RejectReason::NotAMember => "sent for a room you are not in".into(),
        RejectReason::UntrustedSenderKey => {
            "the sender's key changed and you have not accepted it (F3)".into()
        }
        RejectReason::UnknownSender(_) => "the sender's key could not be obtained".into(),
        RejectReason::NotLoggedIn => "it arrived before you were logged in".into(),
    }
}

/// The first two groups of a fingerprint, for compact lists (`3f2a 91bc…`).
pub fn short_fingerprint(fp: &Fingerprint) -> String {
    let full = fp.to_string();
    let short: String = full.split(' ').take(2).collect::<Vec<_>>().join(" ");
    format!("{short}…")
}

/// `1 user`, `2 users`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use shared::MessageId;

    use super::*;
    use crate::inbox::RejectReason;
    use crate::rooms::RoomView;

    fn name(s: &str) -> Username {
        Username::parse(s).expect("valid")
    }

    fn room(s: &str) -> RoomName {
        RoomName::parse(s).expect("valid")
    }

    fn msg(r: &str, seq: u64, sender: &str, text: &str) -> DecryptedMessage {
        DecryptedMessage {
            room: room(r),
            seq,
            message_id: MessageId([seq as u8; 16]),
            sender: name(sender),
            device: shared::DeviceId([1; 16]),
            counter: seq,
            sent_at_ms: 1_000 + seq,
            server_time_ms: 1_000 + seq,
            recipients: vec![name("alice"), name(sender)],
            unknown_recipients: Vec::new(),
            text: text.into(),
        }
    }

    fn ack(r: &str, seq: u64, id: u8) -> SendAck {
        SendAck {
            room: room(r),
            message_id: MessageId([id; 16]),
            seq,
            server_time_ms: 5_000,
        }
    }

    fn texts(t: &Timeline) -> Vec<String> {
        t.entries()
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Message { text, .. } => text.clone(),
                EntryKind::Rejected { seq, .. } => format!("rejected {seq}"),
                EntryKind::Notice { text, .. } => format!("notice {text}"),
            })
            .collect()
    }

    fn member(n: &str, byte: u8) -> MemberView {
        MemberView {
            username: name(n),
            fingerprint: Fingerprint([byte; 32]),
            status: KeyStatus::Trusted,
            verified: false,
        }
    }

    fn logged_in() -> AppState {
        let mut state = AppState::new(
            "ws://x/ws",
            Start::NewAccount {
                username: None,
                import: None,
                key_path: None,
            },
        );
        let effects = state.apply(UiEvent::Ready(Me {
            username: name("alice"),
            fingerprint: Fingerprint([1; 32]),
            key_path: PathBuf::from("/k.pem"),
        }));
        assert_eq!(effects, vec![Effect::EnterMain, Effect::FocusLobby]);
        state.apply(UiEvent::Connection(ConnectionState::Online));
        state
    }

    fn open(state: &mut AppState, r: &str, focus: bool, messages: Vec<DecryptedMessage>) {
        state.apply(UiEvent::RoomOpened {
            view: RoomView {
                room: room(r),
                owner: name("bob"),
                has_password: false,
                hidden: false,
                members: vec![member("alice", 1), member("bob", 2)],
                history: HistoryView {
                    room: room(r),
                    messages,
                    rejected: Vec::new(),
                    has_more: true,
                    next_before: None,
                },
            },
            focus,
        });
    }

    fn page(r: &str, seqs: std::ops::RangeInclusive<u64>, has_more: bool) -> HistoryView {
        HistoryView {
            room: room(r),
            messages: seqs.map(|q| msg(r, q, "bob", &format!("m{q}"))).collect(),
            rejected: Vec::new(),
            has_more,
            next_before: None,
        }
    }

    #[test]
    fn a_reopened_room_fills_the_gap_left_while_offline() {
        let mut state = logged_in();
        open(
            &mut state,
            "r",
            true,
            (1..=3)
                .map(|q| msg("r", q, "bob", &format!("m{q}")))
                .collect(),
        );
        // Reconnected: the newest page starts at 60, far past the 3 shown.
        let effects = state.apply(UiEvent::RoomOpened {
            view: RoomView {
                room: room("r"),
                owner: name("bob"),
                has_password: false,
                hidden: false,
                members: vec![member("alice", 1), member("bob", 2)],
                history: page("r", 60..=109, true),
            },
            focus: false,
        });
        assert_eq!(
            effects,
            vec![Effect::Command(Command::LoadOlder {
                room: room("r"),
                before_seq: 60
            })]
        );
        let effects = state.apply(UiEvent::HistoryLoaded(page("r", 10..=59, true)));
        assert_eq!(
            effects,
            vec![Effect::Command(Command::LoadOlder {
                room: room("r"),
                before_seq: 10
            })]
        );
        // This page reaches the messages shown before: the gap is closed.
        let effects = state.apply(UiEvent::HistoryLoaded(page("r", 3..=9, true)));
        assert!(effects.is_empty(), "{effects:?}");
        let buffer = state.room(&room("r")).expect("room");
        assert_eq!(buffer.gap_floor, None);
        let seqs: Vec<u64> = buffer
            .timeline
            .entries()
            .iter()
            .filter_map(Entry::seq)
            .collect();
        assert_eq!(seqs, (1..=109).collect::<Vec<u64>>());
    }

    #[test]
    fn timeline_orders_by_seq_and_skips_duplicates() {
        let mut t = Timeline::default();
        assert!(t.insert_message(&msg("r", 5, "bob", "five"), false));
        assert!(t.insert_message(&msg("r", 7, "bob", "seven"), false));
        assert!(t.insert_message(&msg("r", 6, "bob", "six"), false));
        assert!(!t.insert_message(&msg("r", 6, "bob", "six"), false));
        // An older page goes before everything.
        assert!(t.insert_message(&msg("r", 2, "bob", "two"), false));
        assert_eq!(texts(&t), ["two", "five", "six", "seven"]);
        assert_eq!(t.oldest_seq(), Some(2));

        // A refusal is replaced once the message decrypts (after accepting a key).
        let rejection = Rejection {
            room: room("r"),
            seq: 8,
            message_id: MessageId([8; 16]),
            sender: name("bob"),
            reason: RejectReason::UntrustedSenderKey,
        };
        assert!(t.insert_rejection(&rejection));
        assert!(!t.insert_rejection(&rejection));
        assert_eq!(texts(&t).last().map(String::as_str), Some("rejected 8"));
        assert!(t.insert_message(&msg("r", 8, "bob", "eight"), false));
        assert_eq!(texts(&t).last().map(String::as_str), Some("eight"));
    }

    #[test]
    fn own_pending_message_is_confirmed_or_failed() {
        let mut t = Timeline::default();
        t.push_pending(1, name("alice"), "mine".into());
        t.push_pending(2, name("alice"), "lost".into());
        t.confirm(1, &ack("r", 10, 100));
        t.fail(2, "offline");
        let kinds: Vec<(Option<u64>, Delivery)> = t
            .entries()
            .iter()
            .filter_map(|e| match &e.kind {
                EntryKind::Message { seq, delivery, .. } => Some((*seq, delivery.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Some(10), Delivery::Verified),
                (None, Delivery::Failed("offline".into()))
            ]
        );
        // History that already brought seq 10 makes a late ack drop its pending line.
        let mut t = Timeline::default();
        t.push_pending(3, name("alice"), "mine".into());
        t.insert_message(&msg("r", 11, "alice", "mine"), true);
        t.confirm(3, &ack("r", 11, 200));
        assert_eq!(texts(&t), ["mine"]);
    }

    #[test]
    fn unread_counts_grow_elsewhere_and_reset_on_view() {
        let mut state = logged_in();
        open(&mut state, "a", false, Vec::new());
        open(&mut state, "b", true, Vec::new());
        for (seq, r) in [(1, "a"), (2, "a"), (1, "b")] {
            state.apply(UiEvent::Client(ClientEvent::Message(msg(
                r, seq, "bob", "x",
            ))));
        }
        state.apply(UiEvent::Client(ClientEvent::Message(msg(
            "a", 3, "alice", "me",
        ))));
        assert_eq!(state.room(&room("a")).map(|r| r.unread), Some(2));
        assert_eq!(state.room(&room("b")).map(|r| r.unread), Some(0));
        assert_eq!(
            state.act(Action::PrevRoom),
            vec![Effect::FocusInput],
            "b → a"
        );
        assert_eq!(state.room(&room("a")).map(|r| r.unread), Some(0));
        assert_eq!(state.act(Action::PrevRoom), vec![Effect::FocusLobby]);
        assert_eq!(state.focus, Focus::Lobby);
    }

    #[test]
    fn sending_needs_a_room_and_creates_a_pending_line() {
        let mut state = logged_in();
        assert!(state.act(Action::Send("hi".into())).is_empty());
        assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
        open(&mut state, "a", true, Vec::new());
        let effects = state.act(Action::Send("hi".into()));
        assert_eq!(
            effects,
            vec![Effect::Command(Command::Send {
                room: room("a"),
                text: "hi".into(),
                local_id: 1,
            })]
        );
        let pending = state
            .room(&room("a"))
            .and_then(|r| r.timeline.entries().last().cloned());
        assert!(matches!(
            pending.map(|e| e.kind),
            Some(EntryKind::Message {
                delivery: Delivery::Sending,
                own: true,
                ..
            })
        ));
    }

    #[test]
    fn older_history_is_requested_once_and_only_when_there_is_more() {
        let mut state = logged_in();
        open(&mut state, "a", true, vec![msg("a", 40, "bob", "x")]);
        assert_eq!(
            state.act(Action::LoadOlder),
            vec![Effect::Command(Command::LoadOlder {
                room: room("a"),
                before_seq: 40,
            })]
        );
        assert!(state.act(Action::LoadOlder).is_empty(), "already loading");
        state.apply(UiEvent::HistoryLoaded(HistoryView {
            room: room("a"),
            messages: vec![msg("a", 39, "bob", "older")],
            rejected: Vec::new(),
            has_more: false,
            next_before: None,
        }));
        let buffer = state.room(&room("a")).cloned().expect("open");
        assert!(!buffer.loading_older && !buffer.has_more);
        assert!(state.act(Action::LoadOlder).is_empty());
    }

    #[test]
    fn an_empty_page_that_says_where_to_go_on_is_followed() {
        let mut state = logged_in();
        open(&mut state, "a", true, vec![msg("a", 40, "bob", "x")]);
        state.act(Action::LoadOlder);
        // The server read a long stretch with nothing for this user: no messages, but
        // more below seq 7.
        state.apply(UiEvent::HistoryLoaded(HistoryView {
            room: room("a"),
            messages: Vec::new(),
            rejected: Vec::new(),
            has_more: true,
            next_before: Some(7),
        }));
        assert_eq!(
            state.act(Action::LoadOlder),
            vec![Effect::Command(Command::LoadOlder {
                room: room("a"),
                before_seq: 7,
            })]
        );
    }

    #[test]
    fn key_change_raises_an_alert_until_accepted() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        let effects = state.apply(UiEvent::Client(ClientEvent::KeyChanged {
            username: name("bob"),
            pinned_fingerprint: Fingerprint([2; 32]),
            new_fingerprint: Fingerprint([9; 32]),
            verified: false,
            rooms: vec![room("a")],
        }));
        assert!(matches!(
            effects.as_slice(),
            [Effect::Dialog(DialogKind::KeyAlert(KeyAlert { username, .. }))] if *username == name("bob")
        ));
        let bob = |s: &AppState| {
            s.room(&room("a"))
                .and_then(|r| {
                    r.members
                        .iter()
                        .find(|m| m.username == name("bob"))
                        .cloned()
                })
                .expect("bob listed")
        };
        assert!(matches!(bob(&state).status, KeyStatus::Unaccepted { .. }));
        assert_eq!(state.key_changes.len(), 1);
        assert_eq!(
            state.act(Action::AcceptKey(name("bob"))),
            vec![Effect::Command(Command::AcceptKey {
                username: name("bob")
            })]
        );
        state.apply(UiEvent::KeyAccepted {
            username: name("bob"),
            fingerprint: Fingerprint([9; 32]),
        });
        assert_eq!(bob(&state).status, KeyStatus::Trusted);
        assert_eq!(bob(&state).fingerprint, Fingerprint([9; 32]));
        assert!(state.key_changes.is_empty());
    }

    #[test]
    fn joining_an_open_room_switches_and_a_refused_join_asks_for_a_password() {
        let mut state = logged_in();
        open(&mut state, "a", false, Vec::new());
        assert_eq!(
            state.act(Action::Join {
                room: room("A"),
                password: None
            }),
            vec![Effect::FocusInput]
        );
        assert_eq!(
            state.apply(UiEvent::PasswordNeeded {
                room: room("den"),
                wrong: false
            }),
            vec![Effect::Dialog(DialogKind::Password {
                room: room("den"),
                wrong: false
            })]
        );
    }

    #[test]
    fn connection_loss_and_return_are_noted_in_rooms() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        state.apply(UiEvent::Connection(ConnectionState::Offline {
            reason: "gone.".into(),
            retry_in: Duration::from_secs(1),
            attempt: 0,
        }));
        assert!(state
            .status
            .as_ref()
            .is_some_and(|s| s.text.contains("Reconnecting in 1 s")));
        state.apply(UiEvent::Connection(ConnectionState::Online));
        let notices = texts(&state.room(&room("a")).expect("open").timeline);
        assert!(notices.iter().any(|t| t.contains("Connection lost")));
        assert!(notices.iter().any(|t| t.contains("Reconnected")));
    }

    fn joined(r: &str, who: &str, byte: u8, source: MembershipSource) -> UiEvent {
        UiEvent::Client(ClientEvent::MemberJoined {
            room: room(r),
            member: member(who, byte),
            source,
        })
    }

    fn notices(state: &AppState, r: &str) -> Vec<String> {
        state
            .room(&room(r))
            .map(|b| {
                b.timeline
                    .entries()
                    .iter()
                    .filter_map(|e| match &e.kind {
                        EntryKind::Notice { text, .. } => Some(text.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn send_pending(state: &mut AppState, text: &str) -> u64 {
        match state.act(Action::Send(text.into())).as_slice() {
            [Effect::Command(Command::Send { local_id, .. })] => *local_id,
            other => panic!("expected a Send, got {other:?}"),
        }
    }

    #[test]
    fn joins_and_leaves_say_how_the_client_learned_of_them() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        state.apply(joined("a", "carol", 7, MembershipSource::Push));
        state.apply(joined("a", "dave", 8, MembershipSource::Reopened));
        state.apply(joined("a", "erin", 9, MembershipSource::SendRefused));
        state.apply(UiEvent::Client(ClientEvent::MemberLeft {
            room: room("a"),
            username: name("dave"),
            source: MembershipSource::Reopened,
        }));
        let lines = notices(&state, "a");
        assert!(
            lines.contains(&"→ carol joined · key 0707 0707…".to_owned()),
            "{lines:?}"
        );
        assert!(lines.contains(&"→ dave joined while you were away · key 0808 0808…".to_owned()));
        assert!(lines.contains(&"→ erin was added · key 0909 0909…".to_owned()));
        assert!(lines.contains(&"← dave left while you were away".to_owned()));
        let members: Vec<String> = state
            .room(&room("a"))
            .map(|b| b.members.iter().map(|m| m.username.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(members, ["alice", "bob", "carol", "erin"]);
    }

    #[test]
    fn a_send_refused_for_added_members_shows_them_and_is_resent_once() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        let id = send_pending(&mut state, "hello all");
        // The error arrives before the client's MemberJoined event.
        let effects = state.apply(UiEvent::MembersAdded {
            room: room("a"),
            local_id: id,
            added: vec![name("carol")],
        });
        assert_eq!(
            effects,
            vec![Effect::Command(Command::Send {
                room: room("a"),
                text: "hello all".into(),
                local_id: id,
            })],
            "re-sent once, with the same line"
        );
        assert!(notices(&state, "a").contains(&"→ carol was added".to_owned()));
        let pending = |s: &AppState| {
            s.room(&room("a"))
                .and_then(|b| b.timeline.pending_text(id).map(str::to_owned))
        };
        assert_eq!(
            pending(&state).as_deref(),
            Some("hello all"),
            "the line stays"
        );
        // The event completes the same line instead of adding a second one.
        state.apply(joined("a", "carol", 7, MembershipSource::SendRefused));
        let carol: Vec<String> = notices(&state, "a")
            .into_iter()
            .filter(|t| t.contains("carol"))
            .collect();
        assert_eq!(carol, ["→ carol was added · key 0707 0707…"]);
        // A second refusal is never re-sent automatically: the line fails, visibly.
        let effects = state.apply(UiEvent::MembersAdded {
            room: room("a"),
            local_id: id,
            added: vec![name("dave")],
        });
        assert!(effects.is_empty(), "{effects:?}");
        let failed = state.room(&room("a")).and_then(|b| {
            b.timeline.entries().iter().find_map(|e| match &e.kind {
                EntryKind::Message {
                    delivery: Delivery::Failed(why),
                    text,
                    ..
                } if text == "hello all" => Some(why.clone()),
                _ => None,
            })
        });
        assert!(failed.is_some_and(|why| why.contains("send it again")));
        assert!(notices(&state, "a").contains(&"→ dave was added".to_owned()));

        // When the event came first, the error adds no second line, and the ack confirms.
        let id = send_pending(&mut state, "again");
        state.apply(joined("a", "erin", 9, MembershipSource::SendRefused));
        let effects = state.apply(UiEvent::MembersAdded {
            room: room("a"),
            local_id: id,
            added: vec![name("erin")],
        });
        assert_eq!(effects.len(), 1);
        let erin = notices(&state, "a")
            .into_iter()
            .filter(|t| t.contains("erin"))
            .count();
        assert_eq!(erin, 1);
        state.apply(UiEvent::Sent {
            room: room("a"),
            local_id: id,
            ack: ack("a", 30, 30),
        });
        assert_eq!(
            state.room(&room("a")).and_then(|b| b.timeline.newest_seq()),
            Some(30)
        );
        assert!(state.resent.is_empty());
    }

    #[test]
    fn a_verified_rotation_is_a_calm_line_and_settles_a_pending_alert() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        open(&mut state, "b", false, Vec::new());
        state.apply(UiEvent::Client(ClientEvent::KeyChanged {
            username: name("bob"),
            pinned_fingerprint: Fingerprint([2; 32]),
            new_fingerprint: Fingerprint([0xaa; 32]),
            verified: false,
            rooms: vec![room("a")],
        }));
        assert_eq!(state.key_changes.len(), 1);
        let effects = state.apply(UiEvent::Client(ClientEvent::KeyRotated {
            username: name("bob"),
            old_fingerprint: Fingerprint([0xaa; 32]),
            new_fingerprint: Fingerprint([0xcd; 32]),
            rooms: Vec::new(),
        }));
        assert_eq!(effects, vec![Effect::CloseKeyAlert(name("bob"))]);
        assert!(state.key_changes.is_empty());
        let line = "bob rotated their key: aaaa aaaa… → cdcd cdcd… (signed by the old key)";
        for r in ["a", "b"] {
            assert!(notices(&state, r).contains(&line.to_owned()), "{r}");
            let bob = state
                .room(&room(r))
                .and_then(|b| {
                    b.members
                        .iter()
                        .find(|m| m.username == name("bob"))
                        .cloned()
                })
                .expect("bob listed");
            assert_eq!(bob.fingerprint, Fingerprint([0xcd; 32]));
            assert_eq!(bob.status, KeyStatus::Trusted);
        }
        assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Info));
        // A verified key that endorsed its successor stays verified; no alert to close.
        state.apply(UiEvent::Verified {
            username: name("bob"),
            fingerprint: Fingerprint([0xcd; 32]),
        });
        let effects = state.apply(UiEvent::Client(ClientEvent::KeyRotated {
            username: name("bob"),
            old_fingerprint: Fingerprint([0xcd; 32]),
            new_fingerprint: Fingerprint([0xef; 32]),
            rooms: vec![room("b")],
        }));
        assert!(effects.is_empty());
        let bob = state
            .room(&room("b"))
            .and_then(|b| {
                b.members
                    .iter()
                    .find(|m| m.username == name("bob"))
                    .cloned()
            })
            .expect("bob listed");
        assert!(bob.verified && bob.fingerprint == Fingerprint([0xef; 32]));
    }

    #[test]
    fn a_changed_verified_key_is_the_strongest_warning() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        let effects = state.apply(UiEvent::Client(ClientEvent::KeyChanged {
            username: name("bob"),
            pinned_fingerprint: Fingerprint([2; 32]),
            new_fingerprint: Fingerprint([9; 32]),
            verified: true,
            rooms: vec![room("a")],
        }));
        assert!(matches!(
            effects.as_slice(),
            [Effect::Dialog(DialogKind::KeyAlert(KeyAlert {
                verified: true,
                ..
            }))]
        ));
        assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Error));
        assert!(notices(&state, "a")
            .iter()
            .any(|t| t.contains("VERIFIED key was REPLACED")));
        let bob = state
            .room(&room("a"))
            .and_then(|b| {
                b.members
                    .iter()
                    .find(|m| m.username == name("bob"))
                    .cloned()
            })
            .expect("bob listed");
        assert!(!bob.verified && matches!(bob.status, KeyStatus::Unaccepted { .. }));
    }

    #[test]
    fn the_server_presenting_another_own_key_raises_one_alarm() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        open(&mut state, "b", false, Vec::new());
        let mismatch = || {
            UiEvent::Client(ClientEvent::OwnKeyMismatch {
                presented_fingerprint: Fingerprint([6; 32]),
                own_fingerprint: Fingerprint([1; 32]),
            })
        };
        assert_eq!(
            state.apply(mismatch()),
            vec![Effect::Dialog(DialogKind::OwnKeyAlarm {
                presented: Fingerprint([6; 32]),
                own: Fingerprint([1; 32]),
            })]
        );
        assert!(state.apply(mismatch()).is_empty(), "one dialog per key");
        for r in ["a", "b"] {
            assert!(notices(&state, r)
                .iter()
                .any(|t| t.contains("different key for YOU")));
        }
        assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Error));
        assert!(state.key_changes.is_empty(), "nothing to accept");
    }

    #[test]
    fn messages_show_the_signed_time_and_flag_disputes_and_unknown_readers() {
        let mut t = Timeline::default();
        let mut m = msg("r", 1, "bob", "late");
        m.sent_at_ms = 1_000;
        m.server_time_ms = 1_000 + crate::inbox::MAX_CLOCK_SKEW_MS + 1;
        m.unknown_recipients = vec![name("carol")];
        assert!(t.insert_message(&m, false));
        let entry = t.entries()[0].clone();
        assert_eq!(entry.time_ms, 1_000, "the signed time is shown");
        let EntryKind::Message {
            disputed_server_time,
            unknown_recipients,
            ..
        } = entry.kind
        else {
            panic!("a message");
        };
        assert_eq!(disputed_server_time, Some(m.server_time_ms));
        assert_eq!(unknown_recipients, vec![name("carol")]);

        // The same message id at another position is shown once.
        let mut again = msg("r", 5, "bob", "late");
        again.message_id = m.message_id;
        assert!(!t.insert_message(&again, false));
        assert_eq!(texts(&t), ["late"]);
        // An own message that history brought already is not shown twice.
        t.push_pending(1, name("alice"), "mine".into());
        let mut mine = msg("r", 7, "alice", "mine");
        mine.message_id = MessageId([0x77; 16]);
        t.insert_message(&mine, true);
        t.confirm(
            1,
            &SendAck {
                room: room("r"),
                message_id: MessageId([0x77; 16]),
                seq: 7,
                server_time_ms: 2_000,
            },
        );
        assert_eq!(texts(&t), ["late", "mine"]);

        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        let mut m = msg("a", 3, "bob", "hi");
        m.unknown_recipients = vec![name("mallory")];
        state.apply(UiEvent::Client(ClientEvent::Message(m)));
        assert!(state
            .status
            .as_ref()
            .is_some_and(|s| s.level == Level::Warning && s.text.contains("mallory")));
    }

    #[test]
    fn refusals_and_withheld_messages_are_plain_words() {
        assert_eq!(
            rejection_words(&RejectReason::Replayed { counter: 4 }),
            "replayed: this message (number 4 from its sender) was received before"
        );
        assert_eq!(
            rejection_words(&RejectReason::RetiredKey),
            "signed with a retired key, after its owner replaced it"
        );
        assert_eq!(
            rejection_words(&RejectReason::NotAMember),
            "sent for a room you are not in"
        );
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        state.apply(UiEvent::Client(ClientEvent::Rejected(Rejection {
            room: room("a"),
            seq: 4,
            message_id: MessageId([4; 16]),
            sender: name("bob"),
            reason: RejectReason::Replayed { counter: 2 },
        })));
        let shown = state.room(&room("a")).and_then(|b| {
            b.timeline.entries().iter().find_map(|e| match &e.kind {
                EntryKind::Rejected { reason, .. } => Some(reason.clone()),
                _ => None,
            })
        });
        assert!(shown.is_some_and(|r| r.starts_with("replayed")));
        state.apply(UiEvent::Client(ClientEvent::MessagesWithheld {
            room: room("a"),
            sender: name("bob"),
            missing: 3,
        }));
        assert!(notices(&state, "a").contains(
            &"⚠ 3 messages from bob did not arrive: the server may be withholding them.".to_owned()
        ));
        assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
        state.apply(UiEvent::Client(ClientEvent::Disconnected {
            reason: crate::events::FLOOD_REASON.into(),
        }));
        assert!(state
            .status
            .as_ref()
            .is_some_and(|s| s.text.contains("to protect itself")));
    }

    #[test]
    fn verifying_asks_with_the_fingerprint_or_says_why_not() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        assert_eq!(
            state.act(Action::AskVerify(name("Bob"))),
            vec![Effect::Dialog(DialogKind::ConfirmVerify {
                username: name("bob"),
                fingerprint: Fingerprint([2; 32]),
            })]
        );
        for who in ["alice", "zed"] {
            assert!(state.act(Action::AskVerify(name(who))).is_empty(), "{who}");
        }
        assert_eq!(
            state.act(Action::Verify(name("bob"))),
            vec![Effect::Command(Command::MarkVerified {
                username: name("bob")
            })]
        );
        state.apply(UiEvent::Verified {
            username: name("bob"),
            fingerprint: Fingerprint([2; 32]),
        });
        let bob = state
            .room(&room("a"))
            .and_then(|b| {
                b.members
                    .iter()
                    .find(|m| m.username == name("bob"))
                    .cloned()
            })
            .expect("bob listed");
        assert!(bob.verified);
        assert!(notices(&state, "a")
            .iter()
            .any(|t| t.starts_with("✓✓ You verified bob's key")));
        assert!(
            state.act(Action::AskVerify(name("bob"))).is_empty(),
            "already"
        );
    }

    #[test]
    fn rotating_asks_first_shows_progress_and_updates_the_fingerprint() {
        let mut state = logged_in();
        open(&mut state, "a", true, Vec::new());
        assert_eq!(
            state.act(Action::AskRotateKey),
            vec![Effect::Dialog(DialogKind::ConfirmRotate {
                current: Fingerprint([1; 32])
            })]
        );
        assert_eq!(
            state.act(Action::RotateKey),
            vec![Effect::Command(Command::RotateKey)]
        );
        assert!(state.busy.is_some());
        assert!(state.act(Action::RotateKey).is_empty(), "once at a time");
        state.apply(UiEvent::Progress {
            title: "Asking the server to switch to the new key".into(),
            elapsed: Duration::from_millis(300),
        });
        assert_eq!(
            state.busy.as_ref().map(|b| b.0.as_str()),
            Some("Asking the server to switch to the new key")
        );
        state.apply(UiEvent::OwnKeyRotated {
            old: Fingerprint([1; 32]),
            new: Fingerprint([0x5e; 32]),
            backup: Some(PathBuf::from("/k.pem.retired-1")),
        });
        assert!(state.busy.is_none());
        assert_eq!(
            state.me.as_ref().map(|m| m.fingerprint),
            Some(Fingerprint([0x5e; 32]))
        );
        let alice = state
            .room(&room("a"))
            .and_then(|b| {
                b.members
                    .iter()
                    .find(|m| m.username == name("alice"))
                    .cloned()
            })
            .expect("listed");
        assert_eq!(alice.fingerprint, Fingerprint([0x5e; 32]));
        assert!(notices(&state, "a")
            .iter()
            .any(|t| t.starts_with("You rotated your key: 0101 0101… → 5e5e 5e5e…")));

        // A failure clears the progress box and says why.
        state.act(Action::RotateKey);
        let effects = state.apply(UiEvent::RotationFailed {
            message: "Your key was not changed: the server refused.".into(),
        });
        assert!(state.busy.is_none());
        assert!(matches!(
            effects.as_slice(),
            [Effect::Dialog(DialogKind::Error { .. })]
        ));
        // Offline, it is not even offered.
        state.apply(UiEvent::Connection(ConnectionState::Stopped {
            reason: "x".into(),
        }));
        assert!(state.act(Action::AskRotateKey).is_empty());
    }
}
