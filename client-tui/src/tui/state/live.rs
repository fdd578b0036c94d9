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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::protocol::LOBBY_PUSH_INTERVAL_SECS;

    use super::super::super::event::UiEvent;
    use super::super::tests::{logged_in, open};
    use super::*;
    use crate::events::ClientEvent;

    fn presence(state: &mut AppState, who: &str, online: bool) {
        state.apply(UiEvent::Client(ClientEvent::Presence {
            username: Username::parse(who).expect("name"),
            online,
        }));
    }

    #[test]
    fn members_are_marked_online_and_offline_and_strangers_change_nothing() {
        let mut state = logged_in();
        open(&mut state, "den", true, Vec::new());
        let bob = Username::parse("bob").expect("name");
        let den = |s: &AppState| s.rooms[0].clone();
        assert!(!den(&state).is_online(&bob));
        presence(&mut state, "Bob", true);
        assert!(den(&state).is_online(&bob));
        presence(&mut state, "mallory", true);
        assert_eq!(den(&state).online.len(), 1, "not a member: not listed");
        assert_eq!(den(&state).members.len(), 2, "presence adds no member");
        presence(&mut state, "bob", false);
        assert!(!den(&state).is_online(&bob));
    }

    #[test]
    fn a_lobby_hint_relists_while_shown_at_most_once_per_interval() {
        let mut state = logged_in();
        let relist = vec![Effect::Command(Command::RefreshRooms)];
        let now = Instant::now();
        assert_eq!(state.lobby_changed(now), relist, "shown: at once");
        let soon = now + Duration::from_millis(500);
        assert!(state.lobby_changed(soon).is_empty(), "within the interval");
        let later = now + Duration::from_secs(LOBBY_PUSH_INTERVAL_SECS);
        assert_eq!(state.relist_stale_lobby(later), relist, "kept for later");
        assert!(state
            .relist_stale_lobby(later + Duration::from_secs(9))
            .is_empty());
        // Not shown: kept until the lobby is shown again.
        open(&mut state, "den", true, Vec::new());
        let much_later = later + Duration::from_secs(60);
        assert!(state.lobby_changed(much_later).is_empty());
        state.focus = Focus::Lobby;
        assert_eq!(state.relist_stale_lobby(much_later), relist);
    }
}
