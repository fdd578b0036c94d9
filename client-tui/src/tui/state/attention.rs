//! The hotlist, as weechat shows it: the rooms other than the one shown where something
//! arrived, those that mention the user and direct conversations first.

use super::AppState;

/// A room in the hotlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hot {
    /// How the room is labelled (`#town`, `@bob`).
    pub label: String,
    /// Messages not seen yet.
    pub unread: usize,
    /// Those of them that mention the user.
    pub mentions: usize,
}

impl AppState {
    /// The rooms not shown that have unread messages: mentions and direct conversations
    /// first, otherwise in the room list's order.
    pub fn hotlist(&self) -> Vec<Hot> {
        let shown = self.current_room().map(|r| r.name.canonical());
        let mut hot: Vec<(bool, Hot)> = self
            .listed_rooms()
            .into_iter()
            .filter(|r| r.unread > 0 && Some(r.name.canonical()) != shown)
            .map(|r| {
                let urgent = r.mentions > 0 || r.peer.is_some();
                let room = Hot {
                    label: r.label(),
                    unread: r.unread,
                    mentions: r.mentions,
                };
                (urgent, room)
            })
            .collect();
        // A stable sort keeps the list's order within each group.
        hot.sort_by_key(|(urgent, _)| !urgent);
        hot.into_iter().map(|(_, room)| room).collect()
    }
}
