//! The UI-free core of the end-to-end encrypted chat client.
//!
//! A terminal UI, the end-to-end tests and the load generator all drive the server through
//! [`Client`]; nothing here touches a terminal.
//!
//! # Layout
//! - [`client`]: [`Client`], the async API (`register`, `login`, `join_room`, `send_text`,
//!   `fetch_history`, `accept_key`, and protocol 4's `moderate`, `open_direct`,
//!   `set_blocked`, `set_typing`, `mark_read`, `delete_account`, …) and its
//!   [`ClientConfig`].
//! - [`events`]: [`ClientEvent`], what the client reports unprompted (messages, rejected
//!   messages, membership, **key changes**, room events, direct conversations, typing,
//!   read markers, account deletion, disconnection).
//! - [`identity`]: [`Identity`], a username and its private key.
//! - [`keystore`]: saving and loading private keys (encrypted PKCS#8, mode 0600) and the
//!   default paths.
//! - [`pins`]: [`PinStore`], the trust-on-first-use fingerprint file (with verified
//!   contacts and the server id pinned per address).
//! - [`ledger`]: what the client remembers per account and server so the server cannot
//!   make it forget: accepted counters (replays), its own counters, members last shown,
//!   retired keys.
//! - [`inbox`]: decrypting and verifying delivered messages.
//! - [`directory`]: the session's view of everyone's keys, checked against the pins.
//! - [`rooms`]: open rooms and the [`RoomView`]/[`HistoryView`] results.
//! - `credence`: internal: the checks protocol 4's room pushes must pass (a room event's
//!   room and topic, a direct conversation's name) before anything acts on them.
//! - `session`, `pushes`, `net`: internal: shared session state (with protocol 4's room
//!   pushes in `session::running`), the push processor, and the WebSocket connection (one
//!   reader task routing replies by request id).
//!
//! # Trust model
//! The server is trusted to deliver, never to vouch for keys. Every key it reports is
//! re-fingerprinted locally and compared with the pins; a change that a rotation
//! certificate chain from the pin explains moves the pin ([`ClientEvent::KeyRotated`]),
//! any other raises [`ClientEvent::KeyChanged`] and is neither encrypted to nor believed
//! until [`Client::accept_key`]. Every message is checked against its sender's pinned key,
//! its signed room/id/sender, and the ledger's record of what was accepted before; every
//! change to a room's members is reported before anything is encrypted to a new member.
//! A kicked or banned member leaves the member set like one who left (nothing is sealed for
//! them afterwards); a direct conversation must be named for its two users and is never
//! sealed for anyone else; typing and read pushes count only for the user's rooms, and a
//! read marker only moves forward.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), client_tui::ClientError> {
//! use client_tui::{Client, ClientEvent, Identity, PinStore};
//! use shared::{RoomName, Username};
//!
//! let alice = Username::parse("alice").expect("valid name");
//! let identity = Identity::load(alice, "alice.pem".as_ref(), Some("passphrase"))?;
//! let pins = PinStore::open("alice.pem.pins.json")?;
//! let (client, mut events) = Client::connect("ws://127.0.0.1:8080/ws", pins).await?;
//! client.login(&identity).await?;
//! let room = RoomName::parse("general").expect("valid name");
//! client.join_room(&room, None).await?;
//! client.send_text(&room, "hello").await?;
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::Message(m) = event {
//!         println!("{}: {}", m.sender, m.text);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod atomic_file;
pub mod client;
mod credence;
pub mod directory;
pub mod error;
pub mod events;
mod history_cache;
pub mod identity;
pub mod inbox;
pub mod keystore;
pub mod ledger;
mod net;
pub mod pins;
mod pushes;
pub mod rooms;
mod session;
#[cfg(test)]
mod test_keys;
pub mod tui;

pub use client::{Client, ClientConfig};
pub use directory::{KeyChange, KeyStatus, MemberView};
pub use error::ClientError;
pub use events::ClientEvent;
pub use events::{EventReceiver, MembershipSource};
pub use identity::Identity;
pub use inbox::{DecryptedMessage, RejectReason, Rejection};
pub use keystore::KeystoreError;
pub use pins::{PinError, PinStatus, PinStore, ServerCheck};
pub use rooms::{HistoryView, RoomView};
