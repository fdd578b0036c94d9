//! [`ClientEvent`]: everything the client reports without being asked, in arrival order,
//! and the [`EventReceiver`] that delivers them.
//!
//! The channel is bounded ([`EVENT_QUEUE`]) and the producer never blocks on it: the task
//! that turns pushes into events also completes requests' key look-ups, so waiting for a
//! busy UI (that is itself awaiting a request) would stall the connection. Instead, a
//! server that makes the client produce events faster than the UI takes them (a flood) is
//! disconnected: the client closes the connection and the receiver's last event is
//! [`ClientEvent::Disconnected`] saying so. The queue between the socket and the push
//! processor is bounded the same way.

use std::sync::Arc;

use shared::crypto::keys::Fingerprint;
use shared::protocol::RoomEvent;
use shared::{ErrorCode, RoomName, Username};
use tokio::sync::{mpsc, watch};

use crate::directory::MemberView;
use crate::inbox::{DecryptedMessage, Rejection};

/// Events queued for the UI before the client treats the server as flooding it.
pub const EVENT_QUEUE: usize = 4096;

/// Why a connection was closed because the server sent more than the client could take.
pub const FLOOD_REASON: &str =
    "the server sent more than this client can process; disconnected to protect it";

/// How the client learned that a room's members changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipSource {
    /// A `MemberJoined`/`MemberLeft` push.
    Push,
    /// The room's member list when it was opened again (after a reconnect or restart)
    /// differs from the one last shown.
    Reopened,
    /// The server refused a send because the members are not the ones the client
    /// encrypted for, and listed the current ones.
    SendRefused,
}

/// Something that happened on the connection.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// A new message that decrypted and verified.
    Message(DecryptedMessage),
    /// A message that was refused (tampered, forged, replayed, from an untrusted key…).
    /// Show it as a warning; never show its content (there is none).
    Rejected(Rejection),
    /// Someone joined a room of the user. Every addition to a member list the client
    /// learns of, from any source, is reported before anything is encrypted to the new
    /// member.
    MemberJoined {
        /// The room.
        room: RoomName,
        /// The new member and the client's view of their key.
        member: MemberView,
        /// How the client learned of it.
        source: MembershipSource,
    },
    /// Someone left a room.
    MemberLeft {
        /// The room.
        room: RoomName,
        /// Who left.
        username: Username,
        /// How the client learned of it.
        source: MembershipSource,
    },
    /// **A user's key differs from the pinned one.** Nothing is encrypted to the new key,
    /// and nothing signed by it is believed, until the user compares fingerprints out of
    /// band and calls [`Client::accept_key`](crate::Client::accept_key). Raised once per
    /// distinct new key.
    ///
    /// No rotation certificate chain signed by the pinned key leads to the new key: it may
    /// be a substitution by the server.
    KeyChanged {
        /// Whose key changed.
        username: Username,
        /// The fingerprint pinned before.
        pinned_fingerprint: Fingerprint,
        /// The fingerprint of the key the server now presents.
        new_fingerprint: Fingerprint,
        /// The pinned key had been verified out of band: the strongest warning.
        verified: bool,
        /// The rooms where the change was seen (may be empty).
        rooms: Vec<RoomName>,
    },
    /// A user rotated their key, proven by a certificate chain signed by the key pinned
    /// for them: the pin moved to the new key. A calm notice, no decision needed.
    KeyRotated {
        /// Whose key.
        username: Username,
        /// The fingerprint pinned before.
        old_fingerprint: Fingerprint,
        /// The new pinned fingerprint.
        new_fingerprint: Fingerprint,
        /// The rooms where the change was seen (may be empty).
        rooms: Vec<RoomName>,
    },
    /// **The server presents a different key for the user themself.** The client keeps
    /// using its own key; nothing can be accepted. Someone may be trying to read the
    /// user's messages.
    OwnKeyMismatch {
        /// The fingerprint the server presented.
        presented_fingerprint: Fingerprint,
        /// The user's real fingerprint.
        own_fingerprint: Fingerprint,
    },
    /// A sender's counters skipped while the client was receiving live: messages sent to
    /// the user did not arrive (withheld by the server, or lost).
    MessagesWithheld {
        /// The room.
        room: RoomName,
        /// Whose messages.
        sender: Username,
        /// How many are missing.
        missing: u64,
    },
    /// The client could not save what it must remember (pins, replay record); protection
    /// against replays after a restart may be weakened until it can.
    LocalStateError {
        /// What failed.
        reason: String,
    },
    /// The server presented a key for a user that is not an acceptable RSA key; the user
    /// cannot be encrypted to.
    InvalidKey {
        /// Whose key.
        username: Username,
        /// What is wrong with it.
        reason: String,
    },
    /// A room of the user was moderated or changed hands (protocol 4's `RoomEvent`),
    /// already applied: a `Kicked`/`Banned` member is out of the member set (nothing is
    /// sealed for them from now on), and a room the user was removed from, or that was
    /// deleted, is closed. Reported once, whether it came as a push or as the answer to
    /// the user's own request. Events for rooms the user is not in, for direct
    /// conversations (never moderated) and topics with control characters are dropped.
    RoomChanged(RoomEvent),
    /// Another user started a direct conversation with this one. The conversation's name
    /// was checked to be the one of these two users, the peer is not blocked, and their
    /// key went through the pins like any other (a mismatch raised
    /// [`ClientEvent::KeyChanged`] first). Open it with
    /// [`Client::join_room`](crate::Client::join_room) to read it.
    DirectOpened {
        /// The conversation.
        room: RoomName,
        /// Who started it, with the client's view of their key.
        peer: MemberView,
    },
    /// A member of one of the user's rooms is typing (or stopped). Lapses after
    /// [`TYPING_LAPSE_SECS`](shared::protocol::TYPING_LAPSE_SECS) without a repeat.
    Typing {
        /// The room.
        room: RoomName,
        /// Who.
        username: Username,
        /// Typing now, or stopped.
        typing: bool,
    },
    /// The user read a room up to `seq` on another session: a marker that only moves
    /// forward (a lower one is dropped).
    ReadUpTo {
        /// The room.
        room: RoomName,
        /// The highest `seq` read.
        seq: u64,
    },
    /// A user who shares one of the user's open rooms came online or went offline. Only
    /// the online mark changes: never a key or a member list. A presence for anyone who
    /// is in none of the user's open rooms (or for the user themself) is dropped; the same
    /// state may be reported twice.
    Presence {
        /// Who.
        username: Username,
        /// Online now, or offline.
        online: bool,
    },
    /// The public listing may have changed (only while watching it, see
    /// [`Client::watch_lobby`](crate::Client::watch_lobby)): re-list to see how. A hint
    /// only; it carries nothing to believe.
    LobbyChanged,
    /// The account was deleted (by this session or another): the server closed the
    /// connection with `CLOSE_ACCOUNT_DELETED`. Reconnecting is pointless; a
    /// [`ClientEvent::Disconnected`] follows.
    AccountDeleted,
    /// The account's key was rotated on another session: the server closed this one, and
    /// the key this client holds no longer logs in. Reconnecting with it is pointless;
    /// the user needs the new key (import it from the other device).
    KeyRotatedElsewhere,
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

/// The receiving end of a client's events. After the connection ends it yields one
/// [`ClientEvent::Disconnected`] (saying why) and then `None`.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<ClientEvent>,
    /// Set when the client closed the connection itself (a flood).
    flooded: watch::Receiver<Option<String>>,
    finished: bool,
}

/// The sending half, used by the push processor.
#[derive(Debug, Clone)]
pub(crate) struct EventSender {
    tx: mpsc::Sender<ClientEvent>,
    flooded: Arc<watch::Sender<Option<String>>>,
}

/// A bounded event channel.
pub(crate) fn channel() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let (flood_tx, flooded) = watch::channel(None);
    (
        EventSender {
            tx,
            flooded: Arc::new(flood_tx),
        },
        EventReceiver {
            rx,
            flooded,
            finished: false,
        },
    )
}

impl EventSender {
    /// Queues an event. Returns `false` if the queue is full (the caller must then treat
    /// the server as flooding); a receiver that is gone is not an error.
    pub(crate) fn send(&self, event: ClientEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
        }
    }

    /// Records that the client is closing the connection because of a flood: the receiver
    /// ends with a `Disconnected` saying so once it has drained the queue.
    pub(crate) fn flooded(&self) {
        self.flooded.send_replace(Some(FLOOD_REASON.to_owned()));
    }
}

impl EventReceiver {
    /// The next event; `None` once the final [`ClientEvent::Disconnected`] was returned.
    pub async fn recv(&mut self) -> Option<ClientEvent> {
        loop {
            match self.try_recv() {
                Ok(event) => return Some(event),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                event = self.rx.recv() => return self.finish(event),
                changed = self.flooded.changed() => {
                    if changed.is_err() {
                        // The client is gone; only the queue can still end the stream.
                        let event = self.rx.recv().await;
                        return self.finish(event);
                    }
                }
            }
        }
    }

    /// The next event if one is ready.
    ///
    /// # Errors
    /// [`mpsc::error::TryRecvError::Empty`] when none is ready,
    /// [`mpsc::error::TryRecvError::Disconnected`] after the final event.
    pub fn try_recv(&mut self) -> Result<ClientEvent, mpsc::error::TryRecvError> {
        if self.finished {
            return Err(mpsc::error::TryRecvError::Disconnected);
        }
        match self.rx.try_recv() {
            Ok(event) => self
                .finish(Some(event))
                .ok_or(mpsc::error::TryRecvError::Disconnected),
            Err(mpsc::error::TryRecvError::Disconnected) => self
                .finish(None)
                .ok_or(mpsc::error::TryRecvError::Disconnected),
            Err(mpsc::error::TryRecvError::Empty) => match self.flood_reason() {
                Some(reason) => {
                    self.finished = true;
                    Ok(ClientEvent::Disconnected { reason })
                }
                None => Err(mpsc::error::TryRecvError::Empty),
            },
        }
    }

    fn flood_reason(&self) -> Option<String> {
        self.flooded.borrow().clone()
    }

    /// Turns the channel's end into one final `Disconnected`, preferring a flood reason.
    fn finish(&mut self, event: Option<ClientEvent>) -> Option<ClientEvent> {
        match event {
            Some(ClientEvent::Disconnected { reason }) => {
                self.finished = true;
                Some(ClientEvent::Disconnected {
                    reason: self.flood_reason().unwrap_or(reason),
                })
            }
            Some(other) => Some(other),
            None => {
                self.finished = true;
                Some(ClientEvent::Disconnected {
                    reason: self
                        .flood_reason()
                        .unwrap_or_else(|| "connection closed".to_owned()),
                })
            }
        }
    }
}
