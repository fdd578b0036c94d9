//! The server, as a binary of the test package: the scale-out tests run it as processes of
//! their own (to kill and restart them), and an integration test can find a binary of its
//! own package (`CARGO_BIN_EXE_chat-server`) built from the same sources, never a stale
//! one. It is the server binary but for the allocator (the system's, not jemalloc), with
//! the same command line (`chat-server admin …` too).

use std::process::ExitCode;

use clap::Parser;
use server::cli::{run, Cli};

fn main() -> anyhow::Result<ExitCode> {
    run(Cli::parse())
}
