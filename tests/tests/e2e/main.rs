//! End-to-end tests: each starts the real server (actix-web, embedded store in a temporary
//! directory, ephemeral port) and talks to it over WebSockets as clients do. One test
//! binary, several modules.

mod account;
mod admin;
mod adversary;
mod adversary_rooms;
mod auth;
mod backpressure;
mod client_core;
mod direct;
mod hidden;
mod limits;
mod live_lobby;
mod messaging;
mod moderation;
mod persistence;
mod presence;
mod robustness;
mod rooms;
mod rotation;
mod running_client;
mod scale_out;
mod server_id;
mod shutdown;
mod starting;
mod storage;
