//! `client-tui`: the terminal client of the end-to-end encrypted chat.
//!
//! Thin on purpose: parse the arguments, send logs to a file (never to the terminal the UI
//! draws on), and hand over to [`client_tui::tui::run`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use client_tui::keystore;
use client_tui::tui;
use client_tui::tui::chooser::{self, Choice};
use client_tui::tui::profile::{self, LaunchOptions};
use shared::Username;

/// Terminal client for the end-to-end encrypted chat.
#[derive(Debug, Parser)]
#[command(name = "client-tui", version, about)]
struct Args {
    /// The server's WebSocket URL (ws:// or wss://).
    #[arg(
        long,
        env = "E2E_CHAT_SERVER",
        default_value = "ws://127.0.0.1:8080/ws"
    )]
    server: String,
    /// The private key file to use, or to create on first run (default: the config dir).
    #[arg(long, env = "E2E_CHAT_KEY", value_name = "PATH")]
    key: Option<PathBuf>,
    /// Import an existing RSA key (e.g. from `openssl genpkey`) for a new or restored account.
    #[arg(long, value_name = "PATH")]
    import: Option<PathBuf>,
    /// The account name (pre-fills the forms; picks the key when several exist).
    #[arg(long, env = "E2E_CHAT_USERNAME")]
    username: Option<String>,
    /// The log file (default: the state or data dir, e.g. ~/.local/state/e2e-chat/client-tui.log).
    #[arg(long, env = "E2E_CHAT_LOG", value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// A separate profile (its own keys, pins, state and log under `profiles/NAME`);
    /// without it the default profile keeps the usual directories.
    #[arg(long, env = "E2E_CHAT_PROFILE", value_name = "NAME")]
    profile: Option<String>,
    /// Size of a newly generated RSA key, in bits.
    #[arg(long, env = "E2E_CHAT_KEY_BITS", default_value_t = 3072,
          value_parser = clap::value_parser!(u16).range(2048..=4096))]
    key_bits: u16,
    /// Desktop notifications for mentions and direct messages in rooms not shown, for
    /// this run (`/notify on|off` switches them and keeps the choice). They name the
    /// sender and the room, never the text. In the environment any value but 0, false,
    /// no or off switches them on.
    #[arg(long, env = "E2E_CHAT_NOTIFY",
          value_parser = clap::builder::FalseyValueParser::new())]
    notify: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let username = args
        .username
        .as_deref()
        .map(Username::parse)
        .transpose()
        .context("invalid --username")?;
    let profile = match args.profile {
        Some(name) => Some(name),
        None => match choose_profile()? {
            Choice::Profile(name) => name,
            Choice::Quit => return Ok(()),
        },
    };
    let profile = profile.as_deref();
    // Checked before anything is created, so a bad name leaves no directory behind.
    keystore::profile_dir(Path::new("."), profile).map_err(anyhow::Error::msg)?;
    let log_file = match args.log_file {
        Some(path) => path,
        None => {
            default_log_file(profile).context("no directory for the log file; pass --log-file")?
        }
    };
    let _guard = init_logging(&log_file)?;
    let options = LaunchOptions {
        server_url: args.server,
        key: args.key,
        import: args.import,
        username,
        key_bits: usize::from(args.key_bits),
        config_dir: keystore::default_config_dir()
            .ok()
            .and_then(|base| keystore::profile_dir(&base, profile).ok()),
        notify: args.notify,
    };
    let result = tui::run(options);
    if let Err(e) = &result {
        tracing::error!(error = %e, "client stopped");
    }
    result
}

/// Without `--profile`: asks which profile to use when several exist (the default one
/// preselected), else takes the default one, as before profiles existed.
fn choose_profile() -> anyhow::Result<Choice> {
    let profiles = keystore::default_config_dir()
        .map(|base| profile::existing_profiles(&base))
        .unwrap_or_default();
    if profiles.len() <= 1 {
        return Ok(Choice::Profile(None));
    }
    chooser::choose(&profiles)
}

fn default_log_file(profile: Option<&str>) -> Option<PathBuf> {
    let dirs = keystore::project_dirs()?;
    let dir = dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir());
    let dir = keystore::profile_dir(dir, profile).ok()?;
    Some(dir.join("client-tui.log"))
}

/// Logs to `path` through a background writer; DON'T use stdout after this: the UI owns it.
fn init_logging(
    path: &std::path::Path,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(".".as_ref());
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let name = path
        .file_name()
        .context("the log file path has no file name")?;
    let (writer, guard) =
        tracing_appender::non_blocking(tracing_appender::rolling::never(dir, name));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .init();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic");
        default_hook(info);
    }));
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_off_unless_asked_for() {
        let parse = |args: &[&str]| Args::try_parse_from(args).expect("parses");
        assert!(!parse(&["client-tui"]).notify);
        assert!(parse(&["client-tui", "--notify"]).notify);
    }
}
