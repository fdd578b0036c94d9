//! [`Lobby`]: the public rooms as the server last listed them.

use shared::protocol::RoomSummary;

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
