//! The end-to-end encrypted chat server.
//!
//! - [`cli`] — the command line: serve, or `server admin`.
//! - [`config`] — flags and environment.
//! - [`admin`] — operating the server: the admin socket and `server admin`.
//! - [`startup`] — building, running and stopping the application.
//! - [`warmup`] — the port during start-up: bound at once, answering 503 "starting".
//! - [`ws`] — the WebSocket endpoint; one task per connection.
//! - [`handlers`] — one function per request kind.
//! - [`hub`] — the task that routes frames to online connections.
//! - [`presence`] — telling co-members when a user comes online or goes offline.
//! - [`lobby`] — the coalesced hints that the public listing changed.
//! - [`fanout`] — scale-out: deliveries between instances through MongoDB change streams.
//! - [`store`] — the persistence trait and its adapters (embedded redb, MongoDB).
//! - [`passwords`] — argon2id room passwords, on a bounded pool of their own.
//! - [`retention`] — the background task that deletes messages past the retention limits.
//! - [`limits`] — per-address and per-user limits: connections, registrations, failed
//!   joins.
//! - [`error`] — the handler error and its sanitised wire form.
//! - [`telemetry`] — logging.
//!
//! The server never sees plaintext: it authenticates users by RSA challenge-response,
//! keeps rooms and memberships, and stores and routes opaque per-recipient envelopes.

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod fanout;
pub mod handlers;
pub mod hub;
pub mod limits;
pub mod lobby;
pub mod passwords;
pub mod presence;
pub mod retention;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod warmup;
pub mod ws;
