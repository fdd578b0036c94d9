//! The profile chooser at start: when several profiles exist and none was named
//! (`--profile`, `E2E_CHAT_PROFILE`), the user picks one before anything else opens (the
//! log file, the keys and the onboarding forms all depend on it).
//!
//! It runs on a cursive of its own, before [`super::run`], so the rest of the client
//! starts as if the choice had been given on the command line.

use cursive::event::{Event, Key};
use cursive::theme::Theme;
use cursive::views::{Dialog, SelectView};
use cursive::{Cursive, View};

/// What the user chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// This profile (`None`: the default one).
    Profile(Option<String>),
    /// Nothing: the user quit (Esc, Ctrl-Q, Ctrl-C).
    Quit,
}

/// How the chooser names a profile.
pub fn label(profile: Option<&str>) -> String {
    match profile {
        None => "default".to_owned(),
        Some(name) => format!("profile {name}"),
    }
}

/// The chooser dialog over `profiles` (as listed by
/// [`existing_profiles`](super::profile::existing_profiles)): the first one is
/// preselected, and Enter keeps the choice in the user data as a [`Choice`] and quits.
pub fn dialog(profiles: &[Option<String>]) -> impl View {
    let mut list = SelectView::<Option<String>>::new();
    for profile in profiles {
        list.add_item(label(profile.as_deref()), profile.clone());
    }
    list.set_on_submit(|siv, profile: &Option<String>| {
        siv.set_user_data(Choice::Profile(profile.clone()));
        siv.quit();
    });
    Dialog::around(list).title("Which profile?")
}

/// Shows the chooser over `profiles` on the terminal and returns the choice.
///
/// # Errors
/// If the terminal cannot be set up.
pub fn choose(profiles: &[Option<String>]) -> anyhow::Result<Choice> {
    let mut siv = Cursive::new();
    siv.set_theme(Theme::terminal_default());
    siv.add_layer(dialog(profiles));
    for quit in [
        Event::Key(Key::Esc),
        Event::CtrlChar('q'),
        Event::CtrlChar('c'),
    ] {
        siv.add_global_callback(quit, Cursive::quit);
    }
    siv.try_run_with(cursive::backends::crossterm::Backend::init)
        .map_err(|e| anyhow::anyhow!("cannot use the terminal: {e}"))?;
    Ok(siv.take_user_data::<Choice>().unwrap_or(Choice::Quit))
}
