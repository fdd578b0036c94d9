//! [`ClientEvent`]: everything the client reports without being asked, in arrival order.
//!
//! Events are delivered on an unbounded `tokio::sync::mpsc` channel returned by
//! [`Client::connect`](crate::Client::connect). Unbounded because the producer must never
//! block: the task that turns pushes into events also completes requests' key look-ups, so
//! a full channel behind a busy UI (that is itself awaiting a request) would stall the
//! connection. The server bounds what it queues per connection and drops slow consumers,
//! which bounds this channel too; the UI should still drain it promptly.

use shared::crypto::keys::Fingerprint;
use shared::{ErrorCode, RoomName, Username};

use crate::directory::MemberView;
use crate::inbox::{DecryptedMessage, Rejection};

/// Something that happened on the connection.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A new message that decrypted and verified.
    Message(DecryptedMessage),
    /// A message that was refused (tampered, forged, replayed, from an untrusted key…).
    /// Show it as a warning; never show its content (there is none).
    Rejected(Rejection),
    /// Someone joined an open room (or any room of the user, if not open here).
    MemberJoined {
        /// The room.
        room: RoomName,
        /// The new member and the client's view of their key.
        member: MemberView,
    },
    /// Someone left a room.
    MemberLeft {
        /// The room.
        room: RoomName,
        /// Who left.
        username: Username,
    },
    /// **A user's key differs from the pinned one.** Nothing is encrypted to the new key,
    /// and nothing signed by it is believed, until the user compares fingerprints out of
    /// band and calls [`Client::accept_key`](crate::Client::accept_key). Raised once per
    /// distinct new key.
    KeyChanged {
        /// Whose key changed.
        username: Username,
        /// The fingerprint pinned before.
        pinned_fingerprint: Fingerprint,
        /// The fingerprint of the key the server now presents.
        new_fingerprint: Fingerprint,
        /// The rooms where the change was seen (may be empty).
        rooms: Vec<RoomName>,
    },
    /// The server presented a key for a user that is not an acceptable RSA key; the user
    /// cannot be encrypted to.
    InvalidKey {
        /// Whose key.
        username: Username,
        /// What is wrong with it.
        reason: String,
    },
    /// The server reported an error that answers no request (e.g. it could not decode a
    /// frame). It usually closes the connection next.
    ServerError {
        /// Stable code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The connection is closed; this is the last event. Requests in flight have failed.
    Disconnected {
        /// What closed it.
        reason: String,
    },
}
