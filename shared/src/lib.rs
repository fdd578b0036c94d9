//! Everything the chat server and its clients must agree on.
//!
//! - [`ids`]: validated names and identifiers (usernames, room names, message ids).
//! - [`protocol`]: the two wire enums, [`protocol::ClientMsg`] and [`protocol::ServerMsg`],
//!   and the one [`protocol::codec`] that turns them into WebSocket frames.
//! - [`error`]: the stable error codes a server puts on the wire.
//! - [`crypto`]: key handling, domain-separated RSA-PSS signatures and the per-recipient
//!   hybrid envelope (RSA-OAEP-SHA256 + AES-256-GCM).
//!
//! This crate does no I/O and is not async: it is pure functions and types, so both sides
//! (and any third-party client) get exactly the same behaviour.

pub mod crypto;
pub mod error;
pub mod ids;
pub mod protocol;

pub use error::{ErrorCode, ErrorDetail};
pub use ids::{DeviceId, IdError, MessageId, RequestId, RoomName, ServerId, Username};
