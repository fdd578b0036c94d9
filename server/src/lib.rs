//! The end-to-end encrypted chat server.
//!
//! - [`config`]: flags and environment.
//! - [`store`]: the persistence trait and its adapters (embedded redb, MongoDB).
//!
//! The server never sees plaintext: it authenticates users by RSA challenge-response,
//! keeps rooms and memberships, and stores and routes opaque per-recipient envelopes.

pub mod config;
pub mod store;
