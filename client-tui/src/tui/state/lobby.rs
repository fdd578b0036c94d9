//! [`Lobby`]: the public rooms as the server last listed them, and the row the user moved
//! to with Up and Down (the only row Enter on an empty input line acts on).

use shared::protocol::{RoomList, RoomSummary};

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
