//! The glue between cursive and the state: the [`App`] kept in cursive's user data, the
//! global key bindings, and the three entry points every callback goes through:
//!
//! - [`dispatch`]: a user [`Action`] → [`AppState::act`] → effects → re-render;
//! - [`on_event`]: a network [`UiEvent`] → [`AppState::apply`] → effects → re-render;
//! - [`submit`]: an onboarding [`Command`] straight to the network task.

use std::path::PathBuf;

use cursive::event::{Event, Key};
use cursive::theme::Theme;
use cursive::Cursive;

use super::command::{Action, Command};
use super::event::UiEvent;
use super::network::CommandSender;
use super::state::{AppState, Effect, Level, Phase, StatusLine};
use super::views::{self, chat, dialogs, lobby, onboarding};

/// Everything the UI thread keeps: the state, and the way to reach the network task.
#[derive(Debug)]
pub struct App {
    /// What is shown.
    pub state: AppState,
    /// Commands to the network task.
    pub commands: CommandSender,
    /// Size of a generated key.
    pub key_bits: usize,
    /// The configuration directory, for default key paths.
    pub config_dir: Option<PathBuf>,
}

/// Runs `f` with the app taken out of cursive's user data, so `f` may use both.
pub fn with_app<R>(siv: &mut Cursive, f: impl FnOnce(&mut Cursive, &mut App) -> R) -> Option<R> {
    let mut app = siv.take_user_data::<App>()?;
    let out = f(siv, &mut app);
    siv.set_user_data(app);
    Some(out)
}

/// Sets up `siv`: theme, key bindings, and the first screen.
pub fn install(siv: &mut Cursive, app: App) {
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

/// Binds a key to an action on the main screen (ignored under a dialog or onboarding).
fn bind(siv: &mut Cursive, event: impl Into<Event>, action: Action) {
    siv.add_global_callback(event, move |s| {
        if in_main(s) && !dialog_open(s) {
            dispatch(s, action.clone());
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
    siv.add_global_callback(Key::PageUp, |s| {
        if in_main(s) && !dialog_open(s) && chat::page_up(s) {
            dispatch(s, Action::LoadOlder);
        }
    });
    siv.add_global_callback(Key::PageDown, |s| {
        if in_main(s) && !dialog_open(s) {
            chat::page_down(s);
        }
    });
    siv.add_global_callback(Event::WindowResize, render);
    for quit in [
        Event::CtrlChar('q'),
        Event::CtrlChar('c'),
        Event::Key(Key::F10),
    ] {
        siv.add_global_callback(quit, Cursive::quit);
    }
}

/// Carries out a user intent.
pub fn dispatch(siv: &mut Cursive, action: Action) {
    let effects = with_app(siv, |_, app| app.state.act(action)).unwrap_or_default();
    run_effects(siv, effects);
    render(siv);
}

/// Takes in a report from the network task (called through cursive's callback sink).
pub fn on_event(siv: &mut Cursive, event: UiEvent) {
    let effects = with_app(siv, |_, app| app.state.apply(event)).unwrap_or_default();
    run_effects(siv, effects);
    render(siv);
}

/// Sends a command to the network task, reporting a full queue on the status line.
pub fn submit(siv: &mut Cursive, command: Command) {
    with_app(siv, |_, app| {
        if let Err(message) = app.commands.send(command) {
            app.state.status = Some(StatusLine {
                text: message,
                level: Level::Error,
            });
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
            Effect::FocusInput => {
                let _ = siv.focus_name(views::INPUT);
            }
            Effect::FocusLobby => {
                // Rendered first, so the lobby pane is visible and can take the focus.
                render(siv);
                if siv.focus_name(views::LOBBY_LIST).is_err() {
                    let _ = siv.focus_name(views::INPUT);
                }
            }
            Effect::CloseKeyAlert(user) => {
                let name = dialogs::key_alert_name(&user);
                if let Some(position) = siv.screen_mut().find_layer_from_name(&name) {
                    siv.screen_mut().remove_layer(position);
                }
            }
            Effect::Quit => siv.quit(),
        }
    }
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
