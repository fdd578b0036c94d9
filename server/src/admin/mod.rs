//! Operating the server: `server admin` and the admin socket it talks to.
//!
//! # Design
//! The running server takes operators' requests on a Unix domain socket ([`socket`]),
//! as Mattermost's `mmctl --local` does, and `server admin …` ([`cli`]) is a client of
//! it. This works on both stores and while the server runs, which the alternative (the
//! command opening the store itself) cannot: the embedded store is one redb file that one
//! process holds an exclusive lock on, and on MongoDB a separate process could delete an
//! account but not close its live sessions. Through the socket, deletions take the
//! protocol's own code paths ([`service`]), so their sessions are closed (4002), members
//! are told, and scale-out instances hear of it through the fan-out.
//!
//! Access is the socket file's: mode 0600, so only the server's OS user (and root) may
//! use it, checked again on each connection by the peer's credentials. There are no
//! passwords or tokens to leak.
//!
//! - [`protocol`] — the request and response types, one JSON line each.
//! - [`service`] — carrying requests out on the server's state.
//! - [`socket`] — the listener: binding, permissions, bounds, removal.
//! - [`cli`] — the `server admin` command line.

pub mod cli;
pub mod protocol;
pub mod service;
pub mod socket;
