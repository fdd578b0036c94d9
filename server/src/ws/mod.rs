//! The WebSocket endpoint: upgrading `GET /ws` and running one task per connection.

pub mod outbound;
pub mod session;
pub mod socket;
