//! Calling the user's attention to rooms other than the one shown: the hotlist, as
//! weechat shows it (rooms where something arrived, those that mention the user and
//! direct conversations first), the bell for a mention, and desktop notifications for a
//! mention or a direct message (`/notify`, off by default).

use shared::{RoomName, Username};

use super::super::notify::Notice;
use super::{AppState, Effect, Level};

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

impl AppState {
    /// What a new message from `from` in `room`, which is not shown, calls for besides
    /// the hotlist: the bell if it mentions the user, and a desktop notification (when
    /// on) if it mentions them or is in a direct conversation.
    pub(super) fn call_attention(
        &self,
        room: &RoomName,
        from: &Username,
        mentioned: bool,
    ) -> Vec<Effect> {
        let direct = self.room(room).is_some_and(|r| r.peer.is_some());
        let mut effects = Vec::new();
        if mentioned {
            effects.push(Effect::Bell);
        }
        if !self.notify || self.notify_failed {
            return effects;
        }
        let from = from.clone();
        if direct {
            effects.push(Effect::Notify(Notice::Direct { from }));
        } else if mentioned {
            effects.push(Effect::Notify(Notice::Mention {
                from,
                room: room.clone(),
            }));
        }
        effects
    }

    /// `/notify on|off`: switches desktop notifications and keeps the choice.
    pub(super) fn set_notify_setting(&mut self, on: bool) -> Vec<Effect> {
        self.settings.notify = on;
        self.notify = on;
        let (words, level) = match (on, self.notify_failed) {
            (true, false) => (
                "Desktop notifications are on for mentions and direct messages elsewhere.",
                Level::Info,
            ),
            (true, true) => (
                "Desktop notifications are kept on, but no notification service answered: \
                 they start with the next run.",
                Level::Warning,
            ),
            (false, _) => ("Desktop notifications are off.", Level::Info),
        };
        self.set_status(words, level);
        vec![Effect::SaveSettings(self.settings)]
    }

    /// A desktop notification could not be shown: none are asked for any more this run
    /// (the kept setting does not change, so the next run tries again).
    pub(super) fn notifications_failed(&mut self) -> Vec<Effect> {
        self.notify_failed = true;
        self.set_status(
            "Desktop notifications are off for this run: no notification service answered.",
            Level::Warning,
        );
        Vec::new()
    }
}
