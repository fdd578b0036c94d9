//! The `server` command line: with no subcommand it serves; `server admin …` operates a
//! running server (see [`crate::admin`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::cli::AdminArgs;
use crate::config::Config;
use crate::startup::serve_blocking;
use crate::telemetry;

/// `server [settings] [admin …]`.
#[derive(Debug, Parser)]
#[command(name = "server", version, about = "End-to-end encrypted chat server")]
pub struct Cli {
    /// The server's settings (also what `admin` reads to find the socket).
    #[command(flatten)]
    pub config: Config,

    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Operate the running server through its admin socket: list, show and delete users
    /// and rooms, statistics, purge (docs/OPERATIONS.md).
    Admin(AdminArgs),
}

/// Runs what the command line asks: serves until Ctrl-C or SIGTERM, or carries out an
/// admin command. Both server binaries (`server`, the tests' `chat-server`) end here.
///
/// # Errors
/// Start-up failures and I/O errors of the server; an admin command reports its own
/// errors and says so in the exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => {
            telemetry::init(&cli.config.log_filter);
            serve_blocking(cli.config)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Admin(args)) => Ok(crate::admin::cli::run(
            &cli.config.admin_socket_path(),
            args,
        )),
    }
}
