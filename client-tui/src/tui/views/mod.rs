//! The cursive views, one file per screen or family of dialogs (ncspot's `ui/`).
//!
//! Views only *build* widgets and *render* [`AppState`](super::state::AppState) into them.
//! They never talk to the network: their callbacks turn keys and form submissions into
//! [`Action`](super::command::Action)s (through [`super::shell::act`]) or, during
//! onboarding, into [`Command`](super::command::Command)s.
//!
//! # Keyboard focus
//! On the main screen the input line is the only widget that takes the focus: everything
//! else is wrapped in [`Unfocusable`]. So typing always reaches the input line unless a
//! dialog (a layer above) is open, and Enter never acts on a list the user did not move
//! to. Lists are moved through the state (the lobby's cursor, the current room) by keys
//! the app layer binds.
//!
//! Views are found by name; the names are the constants below.

pub mod chat;
pub mod dialogs;
pub mod help;
pub mod lobby;
pub mod onboarding;
pub mod running;

use std::time::Duration;

use cursive::direction::Direction;
use cursive::event::{Event, EventResult, MouseEvent};
use cursive::style::{BaseColor, Color, Effect, Style};
use cursive::traits::{Nameable, Resizable};
use cursive::view::{CannotFocus, ViewWrapper};
use cursive::views::{Dialog, TextView};
use cursive::Cursive;

use super::state::Level;
use crate::directory::{KeyStatus, MemberView};

/// The main screen's layer.
pub const MAIN: &str = "main";
/// The title bar.
pub const TITLE: &str = "title";
/// The list of the lobby and joined rooms (left).
pub const ROOM_LIST: &str = "room_list";
/// The lobby panel (hideable).
pub const LOBBY_PANE: &str = "lobby_pane";
/// The lobby's header line.
pub const LOBBY_HEADER: &str = "lobby_header";
/// The lobby's list of public rooms.
pub const LOBBY_LIST: &str = "lobby_list";
/// The chat panel (hideable).
pub const CHAT_PANE: &str = "chat_pane";
/// The chat panel's frame, whose title names the room.
pub const CHAT_PANEL: &str = "chat_panel";
/// The timeline's scroll view.
pub const TIMELINE_SCROLL: &str = "timeline_scroll";
/// The timeline text.
pub const TIMELINE: &str = "timeline";
/// The member list pane (hideable).
pub const MEMBERS_PANE: &str = "members_pane";
/// The member list text.
pub const MEMBERS: &str = "members";
/// The prompt before the input line.
pub const PROMPT: &str = "prompt";
/// The input line.
pub const INPUT: &str = "input";
/// The status line.
pub const STATUS: &str = "status";
/// The onboarding form's layer.
pub const ONBOARDING: &str = "onboarding";
/// The progress layer shown over onboarding.
pub const BUSY: &str = "busy";
/// The progress text.
pub const BUSY_TEXT: &str = "busy_text";

/// Shows `inner` but never takes the keyboard focus, and passes it only the mouse wheel:
/// the main screen's panes are read, never typed into.
pub struct Unfocusable<V> {
    inner: V,
}

impl<V> Unfocusable<V> {
    /// Wraps `inner`.
    pub fn new(inner: V) -> Self {
        Self { inner }
    }
}

impl<V: cursive::View> ViewWrapper for Unfocusable<V> {
    cursive::wrap_impl!(self.inner: V);

    fn wrap_take_focus(&mut self, _source: Direction) -> Result<EventResult, CannotFocus> {
        Err(CannotFocus)
    }

    fn wrap_on_event(&mut self, event: Event) -> EventResult {
        match event {
            Event::Mouse {
                event: MouseEvent::WheelUp | MouseEvent::WheelDown,
                ..
            } => self.inner.on_event(event),
            _ => EventResult::Ignored,
        }
    }
}

/// How a member's key is trusted: a mark for lists and a few words.
///
/// `✓✓` verified out of band, `✓` trusted on first use, `!` changed and not accepted,
/// `✗` unusable.
pub fn trust_mark(member: &MemberView) -> (&'static str, String, Level) {
    match &member.status {
        KeyStatus::Trusted if member.verified => ("✓✓", "verified".to_owned(), Level::Info),
        KeyStatus::Trusted => ("✓", "trusted on first use".to_owned(), Level::Info),
        KeyStatus::Unaccepted { .. } => ("!", "CHANGED, not accepted".to_owned(), Level::Warning),
        KeyStatus::Invalid { reason } => ("✗", format!("unusable: {reason}"), Level::Error),
    }
}

/// Shows the progress box (`busy`: what is happening and for how long) over the current
/// screen, updates it, or removes it once the slow step is over.
pub fn render_busy(siv: &mut Cursive, busy: Option<&(String, Duration)>) {
    let open = siv.screen_mut().find_layer_from_name(BUSY);
    match (busy, open) {
        (Some((title, elapsed)), open) => {
            let text = onboarding::busy_text(title, *elapsed);
            if open.is_none() {
                siv.add_layer(
                    Dialog::around(TextView::new(text.clone()).with_name(BUSY_TEXT))
                        .title("Please wait")
                        .fixed_width(60)
                        .with_name(BUSY),
                );
            }
            siv.call_on_name(BUSY_TEXT, |v: &mut TextView| v.set_content(text));
        }
        (None, Some(position)) => {
            siv.screen_mut().remove_layer(position);
        }
        (None, None) => {}
    }
}

/// The style of a notice or status line of this level.
pub fn level_style(level: Level) -> Style {
    match level {
        Level::Info => Style::from(Color::Light(BaseColor::Black)),
        Level::Warning => Style::from(Color::Dark(BaseColor::Yellow)).combine(Effect::Bold),
        Level::Error => Style::from(Color::Dark(BaseColor::Red)).combine(Effect::Bold),
    }
}

/// A stable colour per user name, so a speaker is recognisable at a glance.
pub fn name_style(name: &str, own: bool) -> Style {
    const COLORS: [BaseColor; 6] = [
        BaseColor::Cyan,
        BaseColor::Green,
        BaseColor::Magenta,
        BaseColor::Blue,
        BaseColor::Yellow,
        BaseColor::Red,
    ];
    if own {
        return Style::from(Effect::Bold);
    }
    let hash = name.to_ascii_lowercase().bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    Style::from(Color::Light(COLORS[hash % COLORS.len()]))
}
