//! The lobby pane: the public rooms with their members online, the number of users online,
//! and the ways in (Enter on a room, F7 to join a hidden room by name, F6 to create one).
//!
//! ```text
//! ┌──────────────────────── Lobby ──────────────────────────┐
//! │3 users online · 2 public rooms                          │
//! │room       online  members                               │
//! │general         3        3  (joined)                     │
//! │rust-lang       1        1  password                     │
//! │Enter join · F5 refresh · F6 create · F7 join by name    │
//! └─────────────────────────────────────────────────────────┘
//! ```

use cursive::style::{Effect, Style};
use cursive::traits::{Nameable, Resizable, Scrollable};
use cursive::utils::markup::StyledString;
use cursive::view::View;
use cursive::views::{HideableView, LinearLayout, Panel, SelectView, TextView};
use cursive::Cursive;
use shared::RoomName;

use super::super::app::dispatch;
use super::super::command::Action;
use super::super::state::{plural, AppState, DialogKind, Level};
use super::{dialogs, level_style};

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

/// Builds the (initially visible) lobby pane.
pub fn build() -> impl View {
    let list = SelectView::<LobbyItem>::new()
        .on_submit(|s: &mut Cursive, item: &LobbyItem| {
            if item.joined || !item.has_password {
                dispatch(
                    s,
                    Action::Join {
                        room: item.room.clone(),
                        password: None,
                    },
                );
            } else {
                dialogs::open(
                    s,
                    DialogKind::Password {
                        room: item.room.clone(),
                        wrong: false,
                    },
                );
            }
        })
        .with_name(super::LOBBY_LIST)
        .scrollable()
        .full_height();
    let content = LinearLayout::vertical()
        .child(TextView::new("Loading the room list…").with_name(super::LOBBY_HEADER))
        .child(list)
        .child(TextView::new(StyledString::styled(
            "Enter join · F5 refresh · F6 create · F7 join by name (hidden rooms)",
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
            format!("{:<width$}  {:>6}  {:>7}", "room", "online", "members"),
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
    siv.call_on_name(super::LOBBY_LIST, |v: &mut SelectView<LobbyItem>| {
        let selected = v.selection().map(|item| item.room.canonical());
        v.clear();
        let mut index = 0;
        for (i, (label, item)) in items(state).into_iter().enumerate() {
            if selected.as_deref() == Some(item.room.canonical().as_str()) {
                index = i;
            }
            v.add_item(label, item);
        }
        if !v.is_empty() {
            let _ = v.set_selection(index);
        }
    });
}
