//! A load generator for the end-to-end encrypted chat server, and the bare relay it is
//! measured against.
//!
//! The binary (`src/main.rs`) is a thin clap front end; every scenario is a library
//! function, so the smoke tests in `tests/smoke.rs` run each one with tiny parameters.
//!
//! # Scenarios
//! - [`fanout`]: rooms of members all online, senders posting at a rate or closed-loop;
//!   delivered envelopes/s and send→deliver latency. [`fanout::compare`] runs the same
//!   driver against the bare relay and the server and gives the ratio (the "ceiling").
//! - [`logins`]: concurrent RSA-3072 challenge-response logins/s, related to this
//!   machine's PSS-verify rate measured in the same run.
//! - [`idle`]: thousands of authenticated idle connections; server RSS per connection and
//!   whether keepalive holds them.
//! - [`crypto_floor`]: the client's seal-for-N cost against its RSA floor.
//! - [`abuse`]: 100 ordinary users chatting, without and then with one attacker doing
//!   the worst one user can (floods, password guessing, slow reading, malformed sends,
//!   bursts); their p99 and errors with and without it, and what the attacker was refused.
//!
//! # Support
//! - [`relay`]: the bare WebSocket relay (no auth, no store, no checks).
//! - [`wire`]: raw protocol connections, frame templates and a cheap frame classifier.
//! - [`keys`]: the pre-generated RSA-3072 fixture keys.
//! - [`machine`]: `/proc` readings (RSS, CPU time, fd limits, machine description).
//! - [`stats`], [`clock`], [`report`], [`summary`]: percentiles, the shared monotonic
//!   clock, tables and JSON, and medians over several runs' JSON reports.
//!
//! Traffic goes only where the caller points it; the tool never starts the server itself
//! (measure a separate release-build process: see `run-bench.sh`).

pub mod abuse;
pub mod clock;
pub mod crypto_floor;
pub mod fanout;
pub mod idle;
pub mod keys;
pub mod logins;
pub mod machine;
pub mod relay;
pub mod report;
pub mod stats;
pub mod summary;
pub mod wire;
