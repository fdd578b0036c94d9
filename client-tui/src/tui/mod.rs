//! The cursive terminal client: a thin shell over the UI-free client core.
//!
//! # Layout (after ncspot, see `STYLE.md` §1.4 and §2.17)
//! - [`command`]: [`Action`](command::Action)s (what the user asked for) and
//!   [`Command`](command::Command)s (what the network task is asked to do), plus the input
//!   line's `/commands`.
//! - [`editing`]: word-wise editing of the input line (Ctrl-W, Ctrl-←/→).
//! - [`multiline`]: line breaks in the input line and in the timeline.
//! - [`paste`]: the backend wrapper that keeps a paste one message.
//! - [`event`]: [`UiEvent`](event::UiEvent)s, what the network task reports, and plain-words
//!   error descriptions.
//! - [`notify`]: desktop notifications, shown from a thread of their own.
//! - [`state`]: [`AppState`](state::AppState), everything shown, with no cursive types:
//!   `act(action)` and `apply(event)` return [`Effect`](state::Effect)s. Split by concern:
//!   timeline, room, lobby, outbox (unsent messages), input history and completion,
//!   status line.
//! - [`network`]: the tokio task that owns the [`Client`](crate::Client), runs commands one
//!   after another off the UI thread, forwards client events, and reconnects with back-off.
//! - [`keyfile`]: the key file around a rotation of the own key, and the retired keys.
//! - [`moderation`]: running a room in plain words (room events as timeline lines, who may
//!   do what).
//! - [`profile`]: the remembered account, the profiles kept, and which onboarding form a
//!   start-up needs.
//! - [`chooser`]: which profile to use, asked at start when several exist.
//! - [`shell`]: what cursive keeps between callbacks (the [`App`](shell::App)) and the
//!   hooks widget callbacks call, so views never call the app layer by name.
//! - [`app`]: the glue: key bindings (every key of the main screen), effects, rendering.
//! - [`views`]: the widgets, one module per screen (onboarding, lobby, chat, dialogs, help).
//!
//! # Threads
//! Cursive runs on the calling thread. The network task runs on a small multi-threaded
//! tokio runtime; RSA work (key generation, sealing for every member, opening) runs on its
//! blocking pool, so the screen never freezes. Commands go to the task over a bounded
//! channel with `try_send`; events come back through cursive's callback sink, and every
//! view is re-rendered from the state. Views hold no network handles.

pub mod app;
pub mod chooser;
pub mod command;
pub mod editing;
pub mod event;
pub mod keyfile;
pub mod moderation;
pub mod multiline;
pub mod network;
pub mod notify;
pub mod paste;
pub mod profile;
pub mod shell;
pub mod state;
pub mod views;

use std::time::Duration;

use cursive::Cursive;

use self::app::App;
use self::command::Command;
use self::event::UiEvent;
use self::network::{CommandSender, NetworkConfig, UiSink};
use self::notify::{DesktopNotifier, Notifications};
use self::profile::LaunchOptions;
use self::state::AppState;

/// How long quitting waits for the network task to close the connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How often the UI checks whether the status line has expired.
const TICK: Duration = Duration::from_secs(1);

/// A [`UiSink`] delivering every event to the cursive loop behind `sink`.
pub fn cursive_sink(sink: cursive::CbSink) -> UiSink {
    UiSink::new(move |event| {
        // A closed sink means the UI has quit; the event no longer matters.
        let _ = sink.send(Box::new(move |siv: &mut Cursive| app::on_event(siv, event)));
    })
}

/// Wakes the UI every [`TICK`] so a status line expires without a key press.
async fn tick(sink: cursive::CbSink) {
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let now = std::time::Instant::now();
        if sink
            .send(Box::new(move |siv: &mut Cursive| app::tick(siv, now)))
            .is_err()
        {
            return;
        }
    }
}

/// Starts the desktop notification thread; its failure is reported to the UI. Without
/// the thread the client runs on, without notifications.
fn start_notifications(sink: cursive::CbSink) -> Option<Notifications> {
    let report = move |_reason: String| {
        let _ = sink.send(Box::new(|siv: &mut Cursive| {
            app::on_event(siv, UiEvent::NotificationsFailed);
        }));
    };
    Notifications::start(DesktopNotifier, report)
        .inspect_err(|e| tracing::warn!(error = %e, "no desktop notification thread"))
        .ok()
}

/// Runs the terminal client until the user quits.
///
/// # Errors
/// If the tokio runtime cannot start or the terminal cannot be set up.
pub fn run(options: LaunchOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client-net")
        .enable_all()
        .build()?;
    let start = profile::plan(&options);
    tracing::info!(server = %options.server_url, ?start, "starting");

    let mut siv = Cursive::new();
    let (commands, command_rx) = CommandSender::channel();
    let mut config = NetworkConfig::new(options.server_url.clone(), options.config_dir.clone());
    config.key_bits = options.key_bits;
    let network = runtime.spawn(network::run(
        config,
        command_rx,
        cursive_sink(siv.cb_sink().clone()),
    ));
    let ticks = runtime.spawn(tick(siv.cb_sink().clone()));
    let mut state = AppState::new(options.server_url.clone(), start);
    state.settings = profile::load_settings(options.config_dir.as_deref());
    state.notify = state.settings.notify || options.notify;
    let mut app = App::new(
        state,
        commands.clone(),
        options.key_bits,
        options.config_dir.clone(),
    );
    app.notifications = start_notifications(siv.cb_sink().clone());
    app::install(&mut siv, app);
    let result = siv.try_run_with(|| {
        cursive::backends::crossterm::Backend::init().map(paste::PasteAware::boxed)
    });

    ticks.abort();
    let _ = commands.send(Command::Quit);
    runtime.block_on(async {
        if tokio::time::timeout(SHUTDOWN_GRACE, network).await.is_err() {
            tracing::warn!("network task did not stop in time");
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.map_err(|e| anyhow::anyhow!("cannot use the terminal: {e}"))
}
