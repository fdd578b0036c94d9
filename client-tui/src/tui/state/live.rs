//! Protocol 5's hints as the UI takes them: who of a room's members is online, and a
//! lobby that re-lists itself while shown when the server says the listing changed.

use std::time::Instant;

use shared::Username;

use super::super::command::Command;
use super::{AppState, Effect, Focus};

impl AppState {
    /// `user` came online or went offline: marked in every room that lists them (the
    /// session already dropped anyone in none of the user's rooms).
    pub(super) fn member_online(&mut self, user: &Username, online: bool) {
        for buffer in &mut self.rooms {
            buffer.set_online(user, online);
        }
    }

    /// The server hinted that the public listing changed: re-listed now if the lobby is
    /// shown and no hint caused a re-listing lately, else when it is due (see
    /// [`relist_stale_lobby`](Self::relist_stale_lobby)).
    pub(super) fn lobby_changed(&mut self, now: Instant) -> Vec<Effect> {
        self.lobby.stale = true;
        self.relist_stale_lobby(now)
    }

    /// Re-lists a stale lobby that is shown, at most once per interval (called on hints
    /// and once a second).
    pub(super) fn relist_stale_lobby(&mut self, now: Instant) -> Vec<Effect> {
        let shown = matches!(self.focus, Focus::Lobby);
        if self.lobby.take_relist(shown, now) {
            vec![Effect::Command(Command::RefreshRooms)]
        } else {
            Vec::new()
        }
    }
}
