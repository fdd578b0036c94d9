//! State tests of the habits of issue 14: multi-line messages, actions, attention.

use super::super::command::{Action, Command};
use super::super::event::UiEvent;
use super::attention::Hot;
use super::tests::{logged_in, msg, open};
use super::{DialogKind, Effect};
use crate::events::ClientEvent;

#[test]
fn a_long_message_asks_first_and_waits_in_the_input_line() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let long = "1\n2\n3\n4\n5\n6";
    assert_eq!(
        state.act(Action::Send(long.into())),
        vec![
            Effect::SetInput(long.into()),
            Effect::Dialog(DialogKind::ConfirmLongMessage { text: long.into() }),
        ],
        "nothing is sent before the user says so, and the text is not lost"
    );
    assert!(state.outbox.items().is_empty());
    let effects = state.act(Action::SendLong(long.into()));
    assert_eq!(effects.first(), Some(&Effect::SetInput(String::new())));
    assert!(
        effects.iter().any(|e| matches!(e,
            Effect::Command(Command::Send { text, .. }) if text == long)),
        "one message with every line: {effects:?}"
    );
}

#[test]
fn a_message_of_a_few_lines_goes_at_once() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let short = "1\n2\n3\n4\n5";
    let effects = state.act(Action::Send(short.into()));
    assert!(matches!(effects.as_slice(),
        [Effect::Command(Command::Send { text, .. })] if text == short));
}

#[test]
fn the_hotlist_lists_rooms_with_news_mentions_first_but_not_the_one_shown() {
    let mut state = logged_in();
    open(&mut state, "a", false, Vec::new());
    open(&mut state, "b", false, Vec::new());
    open(&mut state, "c", true, Vec::new());
    for (r, seq, text) in [
        ("a", 1, "x"),
        ("a", 2, "y"),
        ("b", 1, "hi @alice"),
        ("c", 1, "z"),
    ] {
        state.apply(UiEvent::Client(ClientEvent::Message(msg(
            r, seq, "bob", text,
        ))));
    }
    let hot = |label: &str, unread, mentions| Hot {
        label: label.into(),
        unread,
        mentions,
    };
    assert_eq!(state.hotlist(), vec![hot("#b", 1, 1), hot("#a", 2, 0)]);
}
