//! Typing and reading: the "bob is typing…" line (shown until it lapses), telling a room
//! while the user types, and read markers (sent for what the user has seen, taken in from
//! the user's other sessions). Both outgoing parts obey the user's [`Settings`]: nothing
//! is sent while one is switched off.
//!
//! [`Settings`]: super::super::profile::Settings

use std::time::{Duration, Instant};

use shared::protocol::TYPING_LAPSE_SECS;
use shared::{RoomName, Username};

use super::super::command::Command;
use super::{AppState, Effect, Level};

/// How often `SetTyping(true)` is repeated while the user types: well inside the lapse.
pub const TYPING_REPEAT: Duration = Duration::from_secs(3);

/// How long another member shows as typing after they last said so.
const TYPING_LAPSE: Duration = Duration::from_secs(TYPING_LAPSE_SECS);

impl AppState {
    /// The input line changed: tells the current room the user is typing (at most every
    /// [`TYPING_REPEAT`]), or that they stopped once the line is empty or a command.
    pub(super) fn edited(&mut self, line: &str, now: Instant) -> Vec<Effect> {
        let room = self
            .current_room()
            .filter(|r| r.ended.is_none())
            .map(|r| r.name.clone());
        let composing = !line.trim().is_empty() && !line.starts_with('/');
        let (Some(room), true, true) = (room, composing, self.settings.typing) else {
            return self.stop_typing();
        };
        let mut effects = match &self.typing_sent {
            Some((sent_to, at)) if sent_to.same_as(&room) => {
                if now.saturating_duration_since(*at) < TYPING_REPEAT {
                    return Vec::new();
                }
                Vec::new()
            }
            // Typing moved to another room: the first one is told it stopped.
            _ => self.stop_typing(),
        };
        self.typing_sent = Some((room.clone(), now));
        effects.push(Effect::Command(Command::SetTyping { room, typing: true }));
        effects
    }

    /// Tells the room last told the user is typing that they stopped.
    pub(super) fn stop_typing(&mut self) -> Vec<Effect> {
        match self.typing_sent.take() {
            Some((room, _)) => vec![Effect::Command(Command::SetTyping {
                room,
                typing: false,
            })],
            None => Vec::new(),
        }
    }

    /// Another member is typing (or stopped).
    pub(super) fn member_typing(&mut self, room: &RoomName, user: &Username, typing: bool) {
        let Some(buffer) = self.room_mut(room) else {
            return;
        };
        buffer.typing.retain(|(u, _)| !u.same_as(user));
        if typing {
            buffer.typing.push((user.clone(), Instant::now()));
        }
    }

    /// Forgets typing that lapsed. Returns whether any did.
    pub(super) fn expire_typing(&mut self, now: Instant) -> bool {
        let mut changed = false;
        for buffer in &mut self.rooms {
            let before = buffer.typing.len();
            buffer
                .typing
                .retain(|(_, since)| now.saturating_duration_since(*since) < TYPING_LAPSE);
            changed |= buffer.typing.len() != before;
        }
        changed
    }

    /// Sends a read marker for the newest message of the room shown, if it moved (called
    /// once a second, so markers are debounced to that).
    pub(super) fn mark_seen_read(&mut self) -> Vec<Effect> {
        if !self.settings.read_markers {
            return Vec::new();
        }
        let Some(key) = self.current_room().map(|r| r.name.clone()) else {
            return Vec::new();
        };
        let Some(buffer) = self.room_mut(&key) else {
            return Vec::new();
        };
        match buffer.timeline.newest_seq() {
            Some(seq) if seq > buffer.read_up_to && buffer.ended.is_none() => {
                buffer.read_up_to = seq;
                vec![Effect::Command(Command::MarkRead { room: key, seq })]
            }
            _ => Vec::new(),
        }
    }

    /// The user read a room up to `seq` on another session: fewer messages are unread.
    pub(super) fn read_elsewhere(&mut self, room: &RoomName, seq: u64) {
        if let Some(buffer) = self.room_mut(room) {
            if seq > buffer.read_up_to {
                buffer.read_up_to = seq;
                buffer.recount_unread();
            }
        }
    }

    /// `/typing on|off`.
    pub(super) fn set_typing_setting(&mut self, on: bool) -> Vec<Effect> {
        self.settings.typing = on;
        let mut effects = if on { Vec::new() } else { self.stop_typing() };
        let words = if on {
            "Others now see when you are typing."
        } else {
            "Others no longer see when you are typing."
        };
        self.set_status(words, Level::Info);
        effects.push(Effect::SaveSettings(self.settings));
        effects
    }

    /// `/read-markers on|off`.
    pub(super) fn set_read_markers_setting(&mut self, on: bool) -> Vec<Effect> {
        self.settings.read_markers = on;
        let words = if on {
            "Your other sessions now learn how far you have read."
        } else {
            "Read markers are off: your other sessions no longer learn how far you have read."
        };
        self.set_status(words, Level::Info);
        vec![Effect::SaveSettings(self.settings)]
    }
}
