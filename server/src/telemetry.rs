//! Logging setup. Structured `tracing` events to stderr, filtered by an EnvFilter
//! expression. Nothing secret is ever logged: no keys, nonces, passwords, signatures or
//! envelope contents — only names, ids, sizes and error chains.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless (the second call is
/// ignored), so tests may call it freely.
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a PaaS log pipeline.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
