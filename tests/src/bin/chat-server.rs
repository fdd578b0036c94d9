//! The server, as a binary of the test package: the scale-out tests run it as processes of
//! their own (to kill and restart them), and an integration test can find a binary of its
//! own package (`CARGO_BIN_EXE_chat-server`) built from the same sources, never a stale
//! one. It is the server binary but for the allocator (the system's, not jemalloc).

use clap::Parser;
use server::config::Config;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    server::telemetry::init(&config.log_filter);
    server::startup::serve_blocking(config)
}
