//! Receiving messages: turning a [`DeliveredMessage`] into a [`DecryptedMessage`] or a
//! [`Rejection`], with no socket involved.
//!
//! Two independent checks, so the socket-free parts can be tested alone:
//!
//! - [`open_delivered`] decrypts the user's copy and verifies the author's signature with
//!   the keys the caller trusts for the sender (through
//!   `shared::crypto::message::open_message`, which also checks that the signed room, id and
//!   sender match the server's metadata and that the user is a signed recipient).
//! - [`Inbox`] remembers which message ids it has accepted in each room and at which
//!   `seq`, and refuses a message id that comes back, so a server cannot replay a message
//!   as new or under a different position.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use shared::crypto::message::{open_message, Received};
use shared::crypto::{CryptoError, RsaPrivateKey, RsaPublicKey};
use shared::protocol::DeliveredMessage;
use shared::{MessageId, RoomName, Username};

/// A message that decrypted and whose signature verified under the sender's trusted key.
///
/// `Debug` omits the text, so logging a message with `?msg` never leaks plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct DecryptedMessage {
    /// The room (signed by the author and checked against the server's label).
    pub room: RoomName,
    /// Position in the room's history, assigned by the server.
    pub seq: u64,
    /// The author's id for the message (signed).
    pub message_id: MessageId,
    /// The author (signed, and the signature verified under their pinned key).
    pub sender: Username,
    /// The author's clock when sending, milliseconds since the Unix epoch (signed, but only
    /// as trustworthy as the author's clock).
    pub sent_at_ms: u64,
    /// When the server stored it, milliseconds since the Unix epoch (not signed).
    pub server_time_ms: u64,
    /// Everyone the author encrypted it for (signed).
    pub recipients: Vec<Username>,
    /// The text.
    pub text: String,
}

impl fmt::Debug for DecryptedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedMessage")
            .field("room", &self.room)
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .field("sender", &self.sender)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("server_time_ms", &self.server_time_ms)
            .field("recipients", &self.recipients.len())
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// A message the client refused to show, and why. The metadata is the server's
/// (unauthenticated) label, for display and for fetching it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The room the server says it belongs to.
    pub room: RoomName,
    /// Its position, per the server.
    pub seq: u64,
    /// Its id, per the server.
    pub message_id: MessageId,
    /// Its sender, per the server.
    pub sender: Username,
    /// Why it was refused.
    pub reason: RejectReason,
}

impl Rejection {
    pub(crate) fn new(msg: &DeliveredMessage, reason: RejectReason) -> Self {
        Self {
            room: msg.room.clone(),
            seq: msg.seq,
            message_id: msg.message_id,
            sender: msg.sender.clone(),
            reason,
        }
    }
}

/// Why a delivered message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The copy did not decrypt or authenticate: tampered, addressed to someone else, or
    /// relabelled with another room, id or sender (all bound into the AES-GCM data).
    #[error("the message does not decrypt or authenticate")]
    Undecryptable,
    /// It decrypted, but the signature does not verify under the sender's trusted key.
    #[error("the sender's signature does not verify")]
    BadSignature,
    /// The signed room, id or sender differ from the server's label, or the user is not a
    /// signed recipient, or the signed payload is malformed.
    #[error("the signed contents do not match their label: {0}")]
    Mismatch(String),
    /// This message id was already accepted in this room (at `first_seq`).
    #[error("duplicate of the message already received at seq {first_seq}")]
    Duplicate {
        /// Where it was first seen.
        first_seq: u64,
    },
    /// The sender's key changed and the change is not accepted yet, so nothing signed with
    /// the new key is trusted. Accept the key and fetch the history again to read it.
    #[error("the sender's key changed and has not been accepted")]
    UntrustedSenderKey,
    /// No usable key for the sender could be obtained.
    #[error("the sender's key is unavailable: {0}")]
    UnknownSender(String),
    /// The session is not logged in, so there is no key to decrypt with.
    #[error("not logged in")]
    NotLoggedIn,
}

/// Whether a message arrived as a live push or in a history page. A history page may
/// legitimately repeat a message already seen at the same position; a push may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A `Push::Message`.
    Live,
    /// Part of a join snapshot or a `FetchHistory` page.
    History,
}

/// Decrypts `msg` with the first of `own_keys` that opens it (the current key first, then
/// keys replaced by rotation) and verifies it under the first of `sender_keys` that matches
/// (the sender's current trusted key first, then earlier trusted ones).
///
/// Pure and CPU-bound (one RSA decryption per own key tried): run it on the blocking pool.
///
/// # Errors
/// [`RejectReason::Undecryptable`], [`RejectReason::BadSignature`] or
/// [`RejectReason::Mismatch`].
pub(crate) fn open_delivered(
    msg: &DeliveredMessage,
    own_name: &Username,
    own_keys: &[Arc<RsaPrivateKey>],
    sender_keys: &[RsaPublicKey],
) -> Result<DecryptedMessage, RejectReason> {
    let received = Received {
        room: &msg.room,
        message_id: &msg.message_id,
        sender: &msg.sender,
        recipients: &msg.recipients,
    };
    let mut verdict = RejectReason::Undecryptable;
    'own: for own_key in own_keys {
        for sender_key in sender_keys {
            match open_message(received, own_name, own_key, &msg.envelope, sender_key) {
                Ok(body) => {
                    return Ok(DecryptedMessage {
                        room: msg.room.clone(),
                        seq: msg.seq,
                        message_id: msg.message_id,
                        sender: msg.sender.clone(),
                        sent_at_ms: body.sent_at_ms,
                        server_time_ms: msg.server_time_ms,
                        recipients: body.recipients,
                        text: body.text,
                    })
                }
                // This own key does not open the copy; no sender key will change that.
                Err(CryptoError::Decrypt) => continue 'own,
                Err(CryptoError::BadSignature) => verdict = RejectReason::BadSignature,
                // Malformed payload, or verified but mislabelled: no other key helps.
                Err(CryptoError::Payload(why)) => return Err(RejectReason::Mismatch(why)),
                Err(other) => return Err(RejectReason::Mismatch(other.to_string())),
            }
        }
        // Opened with this own key but no sender key verified: the verdict stands.
        break;
    }
    Err(verdict)
}

/// Which message ids have been accepted, per room, and at which `seq`.
///
/// Memory grows by one small entry per accepted message for the life of the session.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Canonical room name → message id → seq where it was accepted.
    seen: HashMap<String, HashMap<MessageId, u64>>,
}

impl Inbox {
    /// Checks `msg` against what was accepted before, without recording it.
    ///
    /// # Errors
    /// [`RejectReason::Duplicate`] if its id was accepted before in this room, unless it is
    /// the same message at the same position in a history page.
    pub(crate) fn check(&self, msg: &DeliveredMessage, origin: Origin) -> Result<(), RejectReason> {
        let first = self
            .seen
            .get(&msg.room.canonical())
            .and_then(|ids| ids.get(&msg.message_id));
        match first {
            None => Ok(()),
            Some(&first_seq) if first_seq == msg.seq && origin == Origin::History => Ok(()),
            Some(&first_seq) => Err(RejectReason::Duplicate { first_seq }),
        }
    }

    /// Records `msg` as accepted, re-checking first (another task may have accepted the
    /// same id while this one was decrypting).
    ///
    /// # Errors
    /// As [`Inbox::check`].
    pub(crate) fn record(
        &mut self,
        msg: &DeliveredMessage,
        origin: Origin,
    ) -> Result<(), RejectReason> {
        self.check(msg, origin)?;
        self.remember(&msg.room, msg.message_id, msg.seq);
        Ok(())
    }

    /// Records a message id at `seq` without a delivered copy (the user's own sends, which
    /// the server does not echo to the sending connection).
    pub(crate) fn remember(&mut self, room: &RoomName, message_id: MessageId, seq: u64) {
        self.seen
            .entry(room.canonical())
            .or_default()
            .insert(message_id, seq);
    }

    /// Forgets a room (after leaving it).
    pub(crate) fn forget_room(&mut self, room: &RoomName) {
        self.seen.remove(&room.canonical());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::crypto::keys::private_from_pem;
    use shared::crypto::message::{seal_message, MessageBody, Recipient};
    use shared::protocol::{recipients_of, Envelope};

    fn key(n: usize) -> Arc<RsaPrivateKey> {
        let path = format!(
            "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let pem = std::fs::read_to_string(path).expect("fixture exists");
        Arc::new(private_from_pem(&pem, None).expect("fixture parses"))
    }

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid")
    }

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect("valid")
    }

    struct Fixture {
        alice: Arc<RsaPrivateKey>,
        bob: Arc<RsaPrivateKey>,
        mallory: Arc<RsaPrivateKey>,
    }

    fn fixture() -> Fixture {
        Fixture {
            alice: key(0),
            bob: key(1),
            mallory: key(2),
        }
    }

    /// Alice sends `text` to `room_name` for alice and bob; returns bob's delivered copy.
    fn send(f: &Fixture, room_name: &str, seq: u64, text: &str) -> DeliveredMessage {
        let (alice, bob) = (user("alice"), user("bob"));
        let message_id = MessageId::random();
        let body = MessageBody {
            room: room(room_name),
            message_id,
            sender: alice.clone(),
            device: shared::DeviceId([1; 16]),
            counter: seq,
            sent_at_ms: 1_700_000_000_000,
            recipients: vec![alice.clone(), bob.clone()],
            text: text.to_owned(),
        };
        let recipients = [
            Recipient {
                username: alice.clone(),
                key: f.alice.to_public_key(),
            },
            Recipient {
                username: bob.clone(),
                key: f.bob.to_public_key(),
            },
        ];
        let envelopes = seal_message(&f.alice, body, &recipients).expect("seals");
        let bobs: Envelope = envelopes
            .iter()
            .find(|e| e.recipient.same_as(&bob))
            .expect("bob's copy")
            .clone();
        DeliveredMessage {
            room: room(room_name),
            seq,
            message_id,
            sender: alice,
            server_time_ms: 1_700_000_000_500,
            recipients: recipients_of(&envelopes),
            envelope: bobs,
        }
    }

    /// What the session does: dedup check, decrypt and verify, record.
    fn receive(
        inbox: &mut Inbox,
        f: &Fixture,
        msg: &DeliveredMessage,
        origin: Origin,
    ) -> Result<DecryptedMessage, RejectReason> {
        inbox.check(msg, origin)?;
        let out = open_delivered(
            msg,
            &user("bob"),
            &[Arc::clone(&f.bob)],
            &[f.alice.to_public_key()],
        )?;
        inbox.record(msg, origin)?;
        Ok(out)
    }

    #[test]
    fn valid_message_decrypts_with_signed_metadata() {
        let f = fixture();
        let msg = send(&f, "general", 7, "hello bob");
        let mut inbox = Inbox::default();
        let out = receive(&mut inbox, &f, &msg, Origin::Live).expect("accepted");
        assert_eq!(out.text, "hello bob");
        assert_eq!(out.seq, 7);
        assert_eq!(out.sender, user("alice"));
        assert_eq!(out.sent_at_ms, 1_700_000_000_000);
        assert_eq!(out.server_time_ms, 1_700_000_000_500);
        assert_eq!(out.recipients.len(), 2);
        assert!(
            !format!("{out:?}").contains("hello bob"),
            "Debug leaks text"
        );
    }

    #[test]
    fn duplicate_push_is_rejected() {
        let f = fixture();
        let msg = send(&f, "general", 1, "once");
        let mut inbox = Inbox::default();
        receive(&mut inbox, &f, &msg, Origin::Live).expect("first copy accepted");
        assert_eq!(
            receive(&mut inbox, &f, &msg, Origin::Live),
            Err(RejectReason::Duplicate { first_seq: 1 })
        );
    }

    #[test]
    fn replay_at_a_new_seq_is_rejected_even_in_history() {
        let f = fixture();
        let msg = send(&f, "general", 1, "once");
        let mut inbox = Inbox::default();
        receive(&mut inbox, &f, &msg, Origin::Live).expect("accepted");
        // Re-reading history at the same position is fine…
        receive(&mut inbox, &f, &msg, Origin::History).expect("same position again");
        // …but the same id at another position is a replay.
        let mut replay = msg.clone();
        replay.seq = 9;
        assert_eq!(
            receive(&mut inbox, &f, &replay, Origin::History),
            Err(RejectReason::Duplicate { first_seq: 1 })
        );
    }

    #[test]
    fn same_id_in_another_room_is_not_a_duplicate_but_fails_crypto() {
        let f = fixture();
        let msg = send(&f, "general", 1, "for general only");
        let mut inbox = Inbox::default();
        receive(&mut inbox, &f, &msg, Origin::Live).expect("accepted");
        let mut moved = msg.clone();
        moved.room = room("random");
        assert_eq!(
            receive(&mut inbox, &f, &moved, Origin::Live),
            Err(RejectReason::Undecryptable),
            "the room is bound into the copy's associated data"
        );
    }

    #[test]
    fn tampered_ciphertext_is_rejected() {
        let f = fixture();
        let mut msg = send(&f, "general", 1, "intact");
        msg.envelope.ciphertext[0] ^= 1;
        assert_eq!(
            receive(&mut Inbox::default(), &f, &msg, Origin::Live),
            Err(RejectReason::Undecryptable)
        );
        let mut msg = send(&f, "general", 2, "intact");
        msg.envelope.wrapped_key[5] ^= 0x80;
        assert_eq!(
            receive(&mut Inbox::default(), &f, &msg, Origin::Live),
            Err(RejectReason::Undecryptable)
        );
    }

    #[test]
    fn relabelled_sender_or_id_is_rejected() {
        let f = fixture();
        let mut msg = send(&f, "general", 1, "from alice");
        msg.sender = user("mallory");
        assert!(receive(&mut Inbox::default(), &f, &msg, Origin::Live).is_err());
        let mut msg = send(&f, "general", 1, "from alice");
        msg.message_id = MessageId::random();
        assert_eq!(
            receive(&mut Inbox::default(), &f, &msg, Origin::Live),
            Err(RejectReason::Undecryptable)
        );
    }

    #[test]
    fn signature_under_an_untrusted_key_is_rejected() {
        let f = fixture();
        let msg = send(&f, "general", 1, "signed by alice");
        // Bob has pinned a different key for alice.
        let result = open_delivered(
            &msg,
            &user("bob"),
            &[Arc::clone(&f.bob)],
            &[f.mallory.to_public_key()],
        );
        assert_eq!(result, Err(RejectReason::BadSignature));
        // An earlier trusted key is tried after the current one.
        let result = open_delivered(
            &msg,
            &user("bob"),
            &[Arc::clone(&f.bob)],
            &[f.mallory.to_public_key(), f.alice.to_public_key()],
        );
        assert!(result.is_ok());
    }

    #[test]
    fn copy_for_someone_else_is_rejected_and_old_own_keys_are_tried() {
        let f = fixture();
        let msg = send(&f, "general", 1, "for bob");
        let alice_keys = [f.alice.to_public_key()];
        assert_eq!(
            open_delivered(
                &msg,
                &user("mallory"),
                &[Arc::clone(&f.mallory)],
                &alice_keys
            ),
            Err(RejectReason::Undecryptable)
        );
        // Bob rotated to mallory's key but still holds his previous one.
        let out = open_delivered(
            &msg,
            &user("bob"),
            &[Arc::clone(&f.mallory), Arc::clone(&f.bob)],
            &alice_keys,
        );
        assert!(out.is_ok());
    }
}
