//! End-to-end tests: each starts the real server (actix-web, embedded store in a temporary
//! directory, ephemeral port) and talks to it over WebSockets as clients do. One test
//! binary, several modules.

mod adversary;
mod adversary_rooms;
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
mod server_id;
mod shutdown;
mod storage;
