//! The profile chooser at start (issue 14), through cursive's puppet backend: the
//! default profile is preselected, and the choice is what the user moved to.

use client_tui::tui::chooser::{self, Choice};
use cursive::backends::puppet::Backend;
use cursive::event::{Event, Key};
use cursive::{Cursive, Vec2};

/// Shows the chooser over `profiles`, presses `keys`, and returns the choice left in the
/// user data (`None`: nothing chosen yet).
fn choose(profiles: &[Option<String>], keys: &[Key]) -> Option<Choice> {
    let backend = Backend::init(Some(Vec2::new(60, 20)));
    let input = backend.input();
    let mut siv = Cursive::new();
    siv.add_layer(chooser::dialog(profiles));
    let mut runner = siv.runner(backend);
    runner.refresh();
    for key in keys {
        input.send(Some(Event::Key(*key))).expect("backend alive");
        runner.step();
    }
    runner.take_user_data::<Choice>()
}

fn profiles() -> Vec<Option<String>> {
    vec![None, Some("alt".into()), Some("work".into())]
}

#[test]
fn enter_takes_the_preselected_default_profile() {
    assert_eq!(
        choose(&profiles(), &[Key::Enter]),
        Some(Choice::Profile(None))
    );
}

#[test]
fn moving_down_chooses_a_named_profile() {
    assert_eq!(
        choose(&profiles(), &[Key::Down, Key::Down, Key::Enter]),
        Some(Choice::Profile(Some("work".into())))
    );
    assert_eq!(
        choose(&profiles(), &[Key::Down]),
        None,
        "nothing until Enter"
    );
}

#[test]
fn profiles_are_labelled_by_name() {
    assert_eq!(chooser::label(None), "default");
    assert_eq!(chooser::label(Some("work")), "profile work");
}
