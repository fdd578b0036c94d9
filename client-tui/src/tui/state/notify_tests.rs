//! State tests of desktop notifications: which [`Notice`]s a message asks for.

use super::super::command::Action;
use super::super::event::UiEvent;
use super::super::notify::Notice;
use super::running_tests::direct_view;
use super::tests::{logged_in, msg, name, open, room};
use super::{AppState, Effect, Level};
use crate::events::ClientEvent;

/// Alice, signed in with notifications on, in `#a` (not shown) and `#b` (shown), with a
/// direct conversation with bob (not shown).
fn watching() -> AppState {
    let mut state = logged_in();
    state.notify = true;
    open(&mut state, "a", false, Vec::new());
    open(&mut state, "b", true, Vec::new());
    state.apply(UiEvent::RoomOpened {
        view: direct_view("bob", Vec::new()),
        focus: false,
    });
    state
}

fn arrives(state: &mut AppState, r: &str, seq: u64, text: &str) -> Vec<Notice> {
    let mut message = msg(r, seq, "bob", text);
    if r == "dm" {
        message.room = shared::protocol::direct_room_name(&name("alice"), &name("bob"));
    }
    state
        .apply(UiEvent::Client(ClientEvent::Message(message)))
        .into_iter()
        .filter_map(|e| match e {
            Effect::Notify(notice) => Some(notice),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mention_in_a_room_not_shown_asks_for_one_notification() {
    let mut state = watching();
    assert_eq!(
        arrives(&mut state, "a", 1, "alice: lunch?"),
        vec![Notice::Mention {
            from: name("bob"),
            room: room("a"),
        }]
    );
    assert!(
        arrives(&mut state, "a", 2, "no name here").is_empty(),
        "only mentions in group rooms"
    );
}

#[test]
fn nothing_is_asked_for_the_room_shown() {
    let mut state = watching();
    assert!(arrives(&mut state, "b", 1, "alice: lunch?").is_empty());
}

#[test]
fn a_direct_message_not_shown_asks_for_one_notification() {
    let mut state = watching();
    assert_eq!(
        arrives(&mut state, "dm", 1, "hi"),
        vec![Notice::Direct { from: name("bob") }]
    );
}

#[test]
fn switched_off_nothing_is_asked_but_the_bell_still_rings() {
    let mut state = watching();
    let effects = state.act(Action::NotifySetting(false));
    assert!(matches!(effects.as_slice(), [Effect::SaveSettings(s)] if !s.notify));
    let message = msg("a", 1, "bob", "alice: lunch?");
    let effects = state.apply(UiEvent::Client(ClientEvent::Message(message)));
    assert_eq!(effects, vec![Effect::Bell]);
    assert!(arrives(&mut state, "dm", 1, "hi").is_empty());
    let effects = state.act(Action::NotifySetting(true));
    assert!(matches!(effects.as_slice(), [Effect::SaveSettings(s)] if s.notify));
    assert_eq!(arrives(&mut state, "dm", 2, "hi").len(), 1);
}

#[test]
fn after_a_failure_nothing_more_is_asked_this_run() {
    let mut state = watching();
    assert!(state.apply(UiEvent::NotificationsFailed).is_empty());
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
    assert!(arrives(&mut state, "a", 1, "alice: lunch?").is_empty());
    assert!(arrives(&mut state, "dm", 1, "hi").is_empty());
    // Switching them on again keeps the choice for the next run, and says why not now.
    let effects = state.act(Action::NotifySetting(true));
    assert!(matches!(effects.as_slice(), [Effect::SaveSettings(s)] if s.notify));
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
    assert!(arrives(&mut state, "dm", 2, "hi").is_empty());
}
