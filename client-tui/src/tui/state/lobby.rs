//! [`Lobby`]: the public rooms as the server last listed them, the row the user moved
//! to with Up and Down (the only row Enter on an empty input line acts on), and whether
//! the server hinted that the listing changed since (it is re-listed while shown, at most
//! once per [`LOBBY_PUSH_INTERVAL_SECS`], whatever the server pushes).

use std::time::{Duration, Instant};

use shared::protocol::{RoomList, RoomSummary, LOBBY_PUSH_INTERVAL_SECS};

/// The least time between two re-listings the server's hints cause.
const RELIST_INTERVAL: Duration = Duration::from_secs(LOBBY_PUSH_INTERVAL_SECS);

/// The public rooms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lobby {
    /// Public rooms with their member counts.
    pub rooms: Vec<RoomSummary>,
    /// Users online on the server.
    pub users_online: u32,
    /// Whether a listing arrived yet.
    pub loaded: bool,
    /// The row the user moved to (`None` until they press Up or Down in the lobby, so
    /// Enter never joins a room the user did not choose).
    pub cursor: Option<usize>,
    /// The server hinted that the listing changed since it was last asked for.
    pub stale: bool,
    /// When a hint last caused a re-listing.
    pub relisted_at: Option<Instant>,
}

impl Lobby {
    /// Takes a new listing, keeping the cursor on the same room if it is still listed.
    pub fn replace(&mut self, list: RoomList) {
        let chosen = self.chosen().map(|r| r.name.canonical());
        self.rooms = list.rooms;
        self.users_online = list.users_online;
        self.loaded = true;
        self.cursor = chosen.and_then(|c| self.rooms.iter().position(|r| r.name.canonical() == c));
    }

    /// Whether to re-list now: the listing is stale, `shown`, and no hint caused a
    /// re-listing within the last interval. Saying yes clears the staleness.
    pub fn take_relist(&mut self, shown: bool, now: Instant) -> bool {
        let recent = self
            .relisted_at
            .is_some_and(|at| now.saturating_duration_since(at) < RELIST_INTERVAL);
        if !self.stale || !shown || recent {
            return false;
        }
        self.stale = false;
        self.relisted_at = Some(now);
        true
    }

    /// Moves the cursor `step` rows (Down is +1), stopping at either end; the first press
    /// lands on the first or last row.
    pub fn move_cursor(&mut self, step: isize) {
        let Some(last) = self.rooms.len().checked_sub(1) else {
            self.cursor = None;
            return;
        };
        self.cursor = Some(match self.cursor {
            None if step < 0 => last,
            None => 0,
            Some(i) => i.saturating_add_signed(step).min(last),
        });
    }

    /// The room under the cursor.
    pub fn chosen(&self) -> Option<&RoomSummary> {
        self.rooms.get(self.cursor?)
    }
}
