//! End-to-end tests: each starts the real server (actix-web, embedded store in a temporary
//! directory, ephemeral port) and talks to it over WebSockets as clients do. One test
//! binary, several modules.

mod adversary;
mod auth;
mod backpressure;
mod client_core;
mod hidden;
mod limits;
mod messaging;
mod persistence;
mod robustness;
mod rooms;
mod rotation;
mod scale_out;
mod server_id;
mod shutdown;
mod storage;
