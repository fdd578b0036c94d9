//! The app layer: installs the [`App`] in cursive's user data, owns every key binding of
//! the main screen, and runs the three entry points every callback goes through:
//!
//! - [`dispatch`]: a user [`Action`] → [`AppState::act`] → effects → re-render;
//! - [`on_event`]: a network [`UiEvent`] → [`AppState::apply`] → effects → re-render;
//! - [`submit`]: an onboarding [`Command`] straight to the network task.
//!
//! # Keyboard focus
//! The main screen's input line is the only widget that takes the focus (see
//! [`super::views`]), so this module needs no notion of focus: keys the input line does
//! not use (F-keys, PgUp/PgDn, Up/Down, Ctrl-N/P, Alt-arrows) bubble up to the global
//! bindings below and become [`Action`]s. Under a dialog they are ignored, so the dialog
//! gets them. (Tab is caught by the input line itself, see [`chat::show_main`].)

use std::time::Instant;

use cursive::event::{Event, Key};
use cursive::theme::Theme;
use cursive::Cursive;

pub use super::shell::{with_app, App, Hooks};

use super::command::{Action, Command};
use super::event::{io_words, UiEvent};
use super::profile::{self, Settings};
use super::state::{Effect, Level, Phase, StatusLine};
use super::views::{self, chat, dialogs, lobby, onboarding};

/// Sets up `siv`: theme, hooks, key bindings, and the first screen.
pub fn install(siv: &mut Cursive, mut app: App) {
    app.hooks = Hooks {
        act: dispatch,
        submit,
        render,
    };
    siv.set_theme(Theme::terminal_default());
    siv.set_user_data(app);
    siv.clear_all_global_callbacks();
    bind_keys(siv);
    onboarding::show(siv);
    render(siv);
}

/// Whether a dialog is open over the main screen (keys then go to the dialog only).
fn dialog_open(siv: &mut Cursive) -> bool {
    siv.screen().len() > 1
}

fn in_main(siv: &mut Cursive) -> bool {
    siv.user_data::<App>()
        .is_some_and(|app| app.state.phase == Phase::Main)
}

/// Whether a key of the main screen applies now: on the main screen, with no dialog open.
fn main_keys(siv: &mut Cursive) -> bool {
    in_main(siv) && !dialog_open(siv)
}

/// Binds a key to an action on the main screen (ignored under a dialog or onboarding).
fn bind(siv: &mut Cursive, event: impl Into<Event>, action: Action) {
    siv.add_global_callback(event, move |s| {
        if main_keys(s) {
            dispatch(s, action.clone());
        }
    });
}

/// Binds a key to an action built from the input line's content.
fn bind_with_input(siv: &mut Cursive, event: impl Into<Event>, action: fn(String) -> Action) {
    siv.add_global_callback(event, move |s| {
        if main_keys(s) {
            let line = chat::input_text(s);
            dispatch(s, action(line));
        }
    });
}

fn bind_keys(siv: &mut Cursive) {
    bind(siv, Key::F1, Action::ShowHelp);
    bind(siv, Key::F2, Action::ShowFingerprint);
    bind(siv, Key::F3, Action::ShowKeys);
    bind(siv, Key::F4, Action::ShowLobby);
    bind(siv, Key::F5, Action::Refresh);
    bind(siv, Key::F6, Action::OpenCreate);
    bind(siv, Key::F7, Action::OpenJoin);
    bind(siv, Key::F8, Action::LeaveCurrent);
    bind(siv, Key::F9, Action::LoadOlder);
    bind(siv, Event::CtrlChar('n'), Action::NextRoom);
    bind(siv, Event::CtrlChar('p'), Action::PrevRoom);
    bind(siv, Event::Alt(Key::Right), Action::NextRoom);
    bind(siv, Event::Alt(Key::Left), Action::PrevRoom);
    bind(siv, Key::Down, Action::Down);
    bind_with_input(siv, Key::Up, |draft| Action::Up { draft });
    siv.add_global_callback(Key::PageUp, |s| {
        if main_keys(s) && chat::page_up(s) {
            dispatch(s, Action::LoadOlder);
        }
    });
    siv.add_global_callback(Key::PageDown, |s| {
        if main_keys(s) {
            chat::page_down(s);
        }
    });
    siv.add_global_callback(Event::WindowResize, render);
    // Ctrl-L: redraw the whole terminal (after another program scribbled on it).
    siv.add_global_callback(Event::CtrlChar('l'), |s| {
        s.clear();
        render(s);
    });
    // Ctrl-C is pressed by accident as often as on purpose: it asks (a second Ctrl-C
    // quits); Ctrl-Q and F10 quit at once.
    siv.add_global_callback(Event::CtrlChar('c'), |s| {
        if s.screen_mut()
            .find_layer_from_name(dialogs::CONFIRM_QUIT)
            .is_some()
            || !in_main(s)
        {
            s.quit();
        } else {
            dispatch(s, Action::AskQuit);
        }
    });
    for quit in [Event::CtrlChar('q'), Event::Key(Key::F10)] {
        siv.add_global_callback(quit, Cursive::quit);
    }
}

/// Carries out a user intent. An edit of the input line changes nothing shown (it only
/// tells the room the user is typing), so it skips the re-render a keystroke would
/// otherwise cost.
pub fn dispatch(siv: &mut Cursive, action: Action) {
    let shows_nothing = matches!(action, Action::Edited(_));
    let effects = with_app(siv, |_, app| app.state.act(action)).unwrap_or_default();
    run_effects(siv, effects);
    if !shows_nothing {
        render(siv);
    }
}

/// Takes in a report from the network task (called through cursive's callback sink).
pub fn on_event(siv: &mut Cursive, event: UiEvent) {
    let effects = with_app(siv, |_, app| app.state.apply(event)).unwrap_or_default();
    run_effects(siv, effects);
    render(siv);
}

/// The once-a-second chores (called by the ticker): an expired status line or typing
/// line goes, and what the user has seen is marked read.
pub fn tick(siv: &mut Cursive, now: Instant) {
    let (changed, effects) = with_app(siv, |_, app| app.state.tick(now)).unwrap_or_default();
    run_effects(siv, effects);
    if changed {
        render(siv);
    }
}

/// Sends a command to the network task, reporting a full queue on the status line.
pub fn submit(siv: &mut Cursive, command: Command) {
    with_app(siv, |_, app| {
        if let Err(message) = app.commands.send(command) {
            app.state.status = Some(StatusLine::new(message, Level::Error));
        }
    });
}

fn run_effects(siv: &mut Cursive, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Command(command) => submit(siv, command),
            Effect::EnterMain => {
                while siv.pop_layer().is_some() {}
                chat::show_main(siv);
            }
            Effect::Dialog(kind) => dialogs::open(siv, kind),
            Effect::SetInput(text) => chat::set_input(siv, &text),
            Effect::CloseKeyAlert(user) => {
                let name = dialogs::key_alert_name(&user);
                if let Some(position) = siv.screen_mut().find_layer_from_name(&name) {
                    siv.screen_mut().remove_layer(position);
                }
            }
            Effect::Bell => ring_bell(),
            Effect::Notify(notice) => {
                with_app(siv, |_, app| {
                    if let Some(notifications) = &app.notifications {
                        notifications.show(notice);
                    }
                });
            }
            Effect::SaveSettings(settings) => save_settings(siv, settings),
            Effect::Quit => siv.quit(),
        }
    }
}

/// Keeps the settings in the user's profile, saying so on the status line if it fails
/// (they still apply until the client quits).
fn save_settings(siv: &mut Cursive, settings: Settings) {
    with_app(siv, |_, app| {
        let saved = match &app.config_dir {
            Some(dir) => profile::save_settings(dir, settings).map_err(|e| io_words(&e)),
            None => Err("no configuration directory is known".to_owned()),
        };
        if let Err(why) = saved {
            tracing::warn!(%why, "could not save the settings");
            app.state.status = Some(StatusLine::new(
                format!("The setting applies until you quit, but could not be saved: {why}."),
                Level::Warning,
            ));
        }
    });
}

/// Rings the terminal bell: BEL written straight to the terminal (cursive has no call
/// for it; the character moves nothing on screen). A failure to write is not worth more
/// than a lost beep.
fn ring_bell() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x07").and_then(|()| out.flush());
}

/// Re-renders every view from the state.
pub fn render(siv: &mut Cursive) {
    with_app(siv, |siv, app| match &app.state.phase {
        Phase::Onboarding(o) => onboarding::render(siv, o),
        Phase::Main => {
            chat::render(siv, &app.state);
            lobby::render(siv, &app.state);
            views::render_busy(siv, app.state.busy.as_ref());
        }
    });
}
