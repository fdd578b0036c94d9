//! The network layer: opening the socket ([`transport`]) and request/reply plus push
//! routing over it ([`connection`]). Nothing here knows about rooms, keys or messages
//! beyond the wire types.

pub(crate) mod connection;
pub(crate) mod transport;

pub(crate) use connection::{Connection, Inbound, WeakConnection};
