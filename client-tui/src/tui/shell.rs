//! What cursive keeps between callbacks: the [`App`] in its user data, and the
//! [`Hooks`] through which widget callbacks hand on what the user did.
//!
//! The flow is one way: a key or a form → a hook → [`AppState`] → effects and a render →
//! the views. Views call the hooks, never the app layer by name, and the app layer
//! ([`super::app`]) installs them; so the views and the app do not call each other in a
//! circle.

use std::path::PathBuf;

use cursive::Cursive;

use super::command::{Action, Command};
use super::network::CommandSender;
use super::notify::Notifications;
use super::state::AppState;

/// The functions widget callbacks call, installed by [`super::app::install`].
#[derive(Debug, Clone, Copy)]
pub struct Hooks {
    /// Carries out a user intent, runs its effects and re-renders.
    pub act: fn(&mut Cursive, Action),
    /// Sends an onboarding command to the network task.
    pub submit: fn(&mut Cursive, Command),
    /// Re-renders every view from the state.
    pub render: fn(&mut Cursive),
}

impl Default for Hooks {
    /// Hooks that do nothing, until the app layer installs its own.
    fn default() -> Self {
        Self {
            act: |_, _| {},
            submit: |_, _| {},
            render: |_| {},
        }
    }
}

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
    /// What widget callbacks call (set by [`super::app::install`]).
    pub hooks: Hooks,
    /// Where desktop notifications go (`None`: nowhere, e.g. in tests).
    pub notifications: Option<Notifications>,
}

impl App {
    /// An app over `state`, with hooks that do nothing until it is installed.
    pub fn new(
        state: AppState,
        commands: CommandSender,
        key_bits: usize,
        config_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            state,
            commands,
            key_bits,
            config_dir,
            hooks: Hooks::default(),
            notifications: None,
        }
    }
}

/// Runs `f` with the app taken out of cursive's user data, so `f` may use both.
pub fn with_app<R>(siv: &mut Cursive, f: impl FnOnce(&mut Cursive, &mut App) -> R) -> Option<R> {
    let mut app = siv.take_user_data::<App>()?;
    let out = f(siv, &mut app);
    siv.set_user_data(app);
    Some(out)
}

fn hooks(siv: &mut Cursive) -> Hooks {
    siv.user_data::<App>()
        .map(|app| app.hooks)
        .unwrap_or_default()
}

/// Hands a user intent to the app layer.
pub fn act(siv: &mut Cursive, action: Action) {
    (hooks(siv).act)(siv, action);
}

/// Hands an onboarding command to the app layer.
pub fn submit(siv: &mut Cursive, command: Command) {
    (hooks(siv).submit)(siv, command);
}

/// Asks the app layer to re-render.
pub fn render(siv: &mut Cursive) {
    (hooks(siv).render)(siv);
}
