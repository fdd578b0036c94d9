//! The server binary: parse the command line, then serve until Ctrl-C or SIGTERM and
//! drain, or carry out a `server admin` command.

use std::process::ExitCode;

use clap::Parser;
use server::cli::{run, Cli};

/// jemalloc rather than glibc's allocator: in the 100-member fan-out glibc spent about a
/// tenth of the server's CPU in malloc and free (frames are allocated on one thread and
/// freed on another), and jemalloc cut the CPU per message by that much at the same memory
/// per idle connection (26.3 KiB). See docs/PERFORMANCE.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<ExitCode> {
    run(Cli::parse())
}
