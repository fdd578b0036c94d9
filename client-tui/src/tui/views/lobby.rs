//! The lobby pane: the public rooms with their members online, the number of users online,
//! and the ways in (Up/Down to a room and Enter, F7 to join a hidden room by name, F6 to
//! create one). The list is only read: its cursor is the state's
//! [`Lobby::cursor`](super::super::state::Lobby::cursor), moved from the input line.
//!
//! ```text
//! ┌──────────────────────── Lobby ──────────────────────────┐
//! │3 users online · 2 public rooms                          │
//! │room       online  members                               │
//! │general         3        3  (joined)                     │
//! │rust-lang       1        1  password                     │
//! │↑/↓ choose · Enter join · F6 create · F7 join by name    │
//! └─────────────────────────────────────────────────────────┘
//! ```

use cursive::style::{Effect, Style};
use cursive::traits::{Nameable, Resizable, Scrollable};
use cursive::utils::markup::StyledString;
use cursive::view::View;
use cursive::views::NamedView;
use cursive::views::{HideableView, LinearLayout, Panel, ScrollView, TextView};
use cursive::Cursive;
use shared::RoomName;

use super::super::state::{plural, AppState, Level};
use super::level_style;

/// One public room in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LobbyItem {
    /// The room.
    pub room: RoomName,
    /// Whether joining needs a password.
    pub has_password: bool,
    /// Whether the user is in it already.
    pub joined: bool,
}

/// The lobby list's scroll view, kept on the cursor's row.
const LOBBY_SCROLL: &str = "lobby_scroll";

/// Builds the (initially visible) lobby pane.
pub fn build() -> impl View {
    let list = TextView::new("")
        .with_name(super::LOBBY_LIST)
        .scrollable()
        .with_name(LOBBY_SCROLL)
        .full_height();
    let content = LinearLayout::vertical()
        .child(TextView::new("Loading the room list…").with_name(super::LOBBY_HEADER))
        .child(list)
        .child(TextView::new(StyledString::styled(
            "↑/↓ choose · Enter join · F6 create · F7 join by name (hidden rooms)",
            level_style(Level::Info),
        )));
    HideableView::new(Panel::new(content).title("Lobby").full_screen()).with_name(super::LOBBY_PANE)
}

/// The list's lines, for rendering and tests.
pub fn items(state: &AppState) -> Vec<(String, LobbyItem)> {
    let width = state
        .lobby
        .rooms
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    state
        .lobby
        .rooms
        .iter()
        .map(|r| {
            let joined = state.room(&r.name).is_some();
            let mut label = format!(
                "{:<width$}  {:>6}  {:>7}",
                r.name.as_str(),
                r.members_online,
                r.members
            );
            if r.has_password {
                label.push_str("  password");
            }
            if joined {
                label.push_str("  (joined)");
            }
            if let Some(topic) = &r.topic {
                label.push_str(&format!("  — {topic}"));
            }
            let item = LobbyItem {
                room: r.name.clone(),
                has_password: r.has_password,
                joined,
            };
            (label, item)
        })
        .collect()
}

/// The header: users online and the column titles.
pub fn header(state: &AppState) -> StyledString {
    if !state.lobby.loaded {
        return StyledString::plain("Loading the room list…");
    }
    let width = state
        .lobby
        .rooms
        .iter()
        .map(|r| r.name.as_str().len())
        .max()
        .unwrap_or(4)
        .clamp(4, 48);
    let mut out = StyledString::styled(
        format!(
            "{} online · {}\n",
            plural(state.lobby.users_online as usize, "user"),
            plural(state.lobby.rooms.len(), "public room")
        ),
        Style::from(Effect::Bold),
    );
    if state.lobby.rooms.is_empty() {
        out.append_plain("No public rooms yet. Create one with F6.");
    } else {
        out.append_styled(
            format!("  {:<width$}  {:>6}  {:>7}", "room", "online", "members"),
            Style::from(Effect::Underline),
        );
    }
    out
}

/// Re-renders the lobby pane and shows or hides it.
pub fn render(siv: &mut Cursive, state: &AppState) {
    let visible = state.current_room().is_none();
    siv.call_on_name(
        super::LOBBY_PANE,
        |v: &mut HideableView<cursive::views::ResizedView<Panel<LinearLayout>>>| {
            v.set_visible(visible)
        },
    );
    siv.call_on_name(super::LOBBY_HEADER, |v: &mut TextView| {
        v.set_content(header(state))
    });
    let mut text = StyledString::new();
    for (i, (label, _)) in items(state).into_iter().enumerate() {
        if state.lobby.cursor == Some(i) {
            text.append_styled(format!("▶ {label}"), Style::from(Effect::Reverse));
        } else {
            text.append_plain(format!("  {label}"));
        }
        text.append_plain("\n");
    }
    siv.call_on_name(super::LOBBY_LIST, |v: &mut TextView| v.set_content(text));
    if let Some(row) = state.lobby.cursor {
        siv.call_on_name(LOBBY_SCROLL, |v: &mut ScrollView<NamedView<TextView>>| {
            let viewport = v.content_viewport();
            if row < viewport.top() {
                let _ = v.set_offset((0, row));
            } else if row > viewport.bottom() && viewport.height() > 0 {
                let _ = v.set_offset((0, row + 1 - viewport.height()));
            }
        });
    }
}
