//! Receiving messages: turning a [`DeliveredMessage`] into a [`DecryptedMessage`] or a
//! [`Rejection`], with no socket involved.
//!
//! [`open_delivered`] decrypts the user's copy and verifies the author's signature with
//! the keys the caller trusts for the sender (through
//! `shared::crypto::message::open_message`, which also checks that the signed room, id and
//! sender match the server's metadata and that the user is a signed recipient). A key the
//! sender retired verifies only messages whose signed counter is within the limit recorded
//! for it. Whether the message was accepted before is the [`Ledger`](crate::ledger)'s
//! question, asked by the session.

use std::fmt;
use std::sync::Arc;

use shared::crypto::message::{open_message, MessageBody, Received};
use shared::crypto::{CryptoError, RsaPrivateKey};
use shared::protocol::DeliveredMessage;
use shared::{DeviceId, MessageId, RoomName, Username};

use crate::directory::SenderKey;
use crate::ledger::{Ledger, Replayed, Seen};

/// How far the signed send time may differ from the server's time before the message is
/// flagged: clocks drift, but minutes mean one of them is wrong or the server held the
/// message back.
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

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
    /// The author's device (signed).
    pub device: DeviceId,
    /// The author's counter for this device and room (signed).
    pub counter: u64,
    /// The author's clock when sending, milliseconds since the Unix epoch (signed, but only
    /// as trustworthy as the author's clock). Show this time.
    pub sent_at_ms: u64,
    /// When the server stored it, milliseconds since the Unix epoch (not signed).
    pub server_time_ms: u64,
    /// Everyone the author encrypted it for (signed).
    pub recipients: Vec<Username>,
    /// Signed recipients this client does not know as members of the room (checked for
    /// live messages): someone the user was not shown may be reading along.
    pub unknown_recipients: Vec<Username>,
    /// The text.
    pub text: String,
}

impl DecryptedMessage {
    /// Whether the signed send time and the server's time differ by more than
    /// [`MAX_CLOCK_SKEW_MS`].
    pub fn time_disputed(&self) -> bool {
        self.sent_at_ms.abs_diff(self.server_time_ms) > MAX_CLOCK_SKEW_MS
    }
}

impl fmt::Debug for DecryptedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecryptedMessage")
            .field("room", &self.room)
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .field("sender", &self.sender)
            .field("counter", &self.counter)
            .field("sent_at_ms", &self.sent_at_ms)
            .field("server_time_ms", &self.server_time_ms)
            .field("recipients", &self.recipients.len())
            .field("unknown_recipients", &self.unknown_recipients)
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
    /// The same message at the same position again, as a live push (nothing new).
    #[error("already shown (at seq {first_seq})")]
    Duplicate {
        /// Where it was first seen.
        first_seq: u64,
    },
    /// A message this client accepted before, delivered again at another position (or
    /// out of its sender's order): a replay.
    #[error("replayed: message {counter} from this sender was already received")]
    Replayed {
        /// The sender's counter.
        counter: u64,
    },
    /// Signed with a key its owner retired, after the last message that key may vouch for.
    #[error("signed with a retired key after its rotation")]
    RetiredKey,
    /// Pushed for a room the user is not a member of.
    #[error("for a room you are not in")]
    NotAMember,
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

/// A message [`open_delivered`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    /// The message.
    pub(crate) message: DecryptedMessage,
    /// Which of the sender keys it was given verified the signature.
    pub(crate) verified_by: usize,
}

/// Decrypts `msg` with the first of `own_keys` that opens it (the current key first, then
/// keys replaced by rotation) and verifies it under the first of `sender_keys` that matches
/// (the sender's current trusted key first, then earlier ones; a retired key only within
/// its limit).
///
/// Pure and CPU-bound (one RSA decryption per own key tried): run it on the blocking pool.
///
/// # Errors
/// [`RejectReason::Undecryptable`], [`RejectReason::BadSignature`],
/// [`RejectReason::RetiredKey`] or [`RejectReason::Mismatch`].
pub(crate) fn open_delivered(
    msg: &DeliveredMessage,
    own_name: &Username,
    own_keys: &[Arc<RsaPrivateKey>],
    sender_keys: &[SenderKey],
) -> Result<Opened, RejectReason> {
    let received = Received {
        room: &msg.room,
        message_id: &msg.message_id,
        sender: &msg.sender,
        recipients: &msg.recipients,
    };
    let mut verdict = RejectReason::Undecryptable;
    'own: for own_key in own_keys {
        for (index, sender_key) in sender_keys.iter().enumerate() {
            match open_message(received, own_name, own_key, &msg.envelope, &sender_key.key) {
                Ok(body) if vouches(sender_key, &body.room, &body.device, body.counter) => {
                    return Ok(Opened {
                        message: decrypted(msg, body),
                        verified_by: index,
                    })
                }
                Ok(_) => return Err(RejectReason::RetiredKey),
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

/// Whether `key` may vouch for the message with this signed room, device and counter: any
/// key without a limit may, a retired one only up to its mark.
pub(crate) fn vouches(key: &SenderKey, room: &RoomName, device: &DeviceId, counter: u64) -> bool {
    key.limit.as_ref().is_none_or(|marks| {
        marks
            .iter()
            .any(|m| m.room.same_as(room) && m.device == *device && counter <= m.last_counter)
    })
}

/// The message as shown: the signed `body` with the server's label for its position and
/// time.
pub(crate) fn decrypted(msg: &DeliveredMessage, body: MessageBody) -> DecryptedMessage {
    DecryptedMessage {
        room: msg.room.clone(),
        seq: msg.seq,
        message_id: msg.message_id,
        sender: msg.sender.clone(),
        device: body.device,
        counter: body.counter,
        sent_at_ms: body.sent_at_ms,
        server_time_ms: msg.server_time_ms,
        recipients: body.recipients,
        unknown_recipients: Vec::new(),
        text: body.text,
    }
}

/// Records an opened message in the ledger, or says why it may not be shown.
///
/// # Errors
/// [`RejectReason::Duplicate`] for a live push of a message already accepted at the same
/// position; [`RejectReason::Replayed`] for a message accepted before at another position.
pub(crate) fn admit(
    ledger: &mut Ledger,
    msg: &DecryptedMessage,
    origin: Origin,
) -> Result<(), RejectReason> {
    match ledger.record(&msg.room, &msg.sender, &msg.device, msg.counter, msg.seq) {
        Ok(Seen::New) => Ok(()),
        Ok(Seen::Again) if origin == Origin::History => Ok(()),
        Ok(Seen::Again) => Err(RejectReason::Duplicate { first_seq: msg.seq }),
        Err(Replayed { counter }) => Err(RejectReason::Replayed { counter }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::key;
    use shared::crypto::message::{seal_message, MessageBody, Recipient};
    use shared::protocol::{recipients_of, Envelope};

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

    fn trusted(key: &RsaPrivateKey) -> SenderKey {
        SenderKey {
            key: key.to_public_key(),
            limit: None,
        }
    }

    /// What the session does: decrypt and verify, then admit to the ledger.
    fn receive(
        ledger: &mut Ledger,
        f: &Fixture,
        msg: &DeliveredMessage,
        origin: Origin,
    ) -> Result<DecryptedMessage, RejectReason> {
        let out = open_delivered(
            msg,
            &user("bob"),
            &[Arc::clone(&f.bob)],
            &[trusted(&f.alice)],
        )?
        .message;
        admit(ledger, &out, origin)?;
        Ok(out)
    }

    #[test]
    fn valid_message_decrypts_with_signed_metadata() {
        let f = fixture();
        let msg = send(&f, "general", 7, "hello bob");
        let mut ledger = Ledger::in_memory();
        let out = receive(&mut ledger, &f, &msg, Origin::Live).expect("accepted");
        assert_eq!(out.text, "hello bob");
        assert_eq!(out.seq, 7);
        assert_eq!(out.sender, user("alice"));
        assert_eq!(out.sent_at_ms, 1_700_000_000_000);
        assert_eq!(out.server_time_ms, 1_700_000_000_500);
        assert_eq!(out.recipients.len(), 2);
        assert_eq!(out.counter, 7);
        assert!(!out.time_disputed(), "half a second apart");
        assert!(
            !format!("{out:?}").contains("hello bob"),
            "Debug leaks text"
        );
    }

    #[test]
    fn duplicate_push_is_rejected() {
        let f = fixture();
        let msg = send(&f, "general", 1, "once");
        let mut ledger = Ledger::in_memory();
        receive(&mut ledger, &f, &msg, Origin::Live).expect("first copy accepted");
        assert_eq!(
            receive(&mut ledger, &f, &msg, Origin::Live),
            Err(RejectReason::Duplicate { first_seq: 1 })
        );
    }

    #[test]
    fn replay_at_a_new_seq_is_rejected_even_in_history() {
        let f = fixture();
        let msg = send(&f, "general", 1, "once");
        let mut ledger = Ledger::in_memory();
        receive(&mut ledger, &f, &msg, Origin::Live).expect("accepted");
        // Re-reading history at the same position is fine…
        receive(&mut ledger, &f, &msg, Origin::History).expect("same position again");
        // …but the same id at another position is a replay.
        let mut replay = msg.clone();
        replay.seq = 9;
        assert_eq!(
            receive(&mut ledger, &f, &replay, Origin::History),
            Err(RejectReason::Replayed { counter: 1 })
        );
        assert_eq!(
            receive(&mut ledger, &f, &replay, Origin::Live),
            Err(RejectReason::Replayed { counter: 1 })
        );
    }

    #[test]
    fn same_id_in_another_room_is_not_a_duplicate_but_fails_crypto() {
        let f = fixture();
        let msg = send(&f, "general", 1, "for general only");
        let mut ledger = Ledger::in_memory();
        receive(&mut ledger, &f, &msg, Origin::Live).expect("accepted");
        let mut moved = msg.clone();
        moved.room = room("random");
        assert_eq!(
            receive(&mut ledger, &f, &moved, Origin::Live),
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
            receive(&mut Ledger::in_memory(), &f, &msg, Origin::Live),
            Err(RejectReason::Undecryptable)
        );
        let mut msg = send(&f, "general", 2, "intact");
        msg.envelope.wrapped_key[5] ^= 0x80;
        assert_eq!(
            receive(&mut Ledger::in_memory(), &f, &msg, Origin::Live),
            Err(RejectReason::Undecryptable)
        );
    }

    #[test]
    fn relabelled_sender_or_id_is_rejected() {
        let f = fixture();
        let mut msg = send(&f, "general", 1, "from alice");
        msg.sender = user("mallory");
        assert!(receive(&mut Ledger::in_memory(), &f, &msg, Origin::Live).is_err());
        let mut msg = send(&f, "general", 1, "from alice");
        msg.message_id = MessageId::random();
        assert_eq!(
            receive(&mut Ledger::in_memory(), &f, &msg, Origin::Live),
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
            &[trusted(&f.mallory)],
        );
        assert_eq!(result, Err(RejectReason::BadSignature));
        // An earlier trusted key is tried after the current one.
        let result = open_delivered(
            &msg,
            &user("bob"),
            &[Arc::clone(&f.bob)],
            &[trusted(&f.mallory), trusted(&f.alice)],
        );
        assert_eq!(
            result.map(|o| o.verified_by),
            Ok(1),
            "the second key verified"
        );
    }

    #[test]
    fn copy_for_someone_else_is_rejected_and_old_own_keys_are_tried() {
        let f = fixture();
        let msg = send(&f, "general", 1, "for bob");
        let alice_keys = [trusted(&f.alice)];
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

    #[test]
    fn a_retired_key_vouches_only_up_to_its_mark() {
        let f = fixture();
        let mark = |last_counter| SenderKey {
            key: f.alice.to_public_key(),
            limit: Some(vec![shared::crypto::rotation::CounterMark {
                room: room("general"),
                device: shared::DeviceId([1; 16]),
                last_counter,
            }]),
        };
        let msg = send(&f, "general", 5, "signed before the rotation");
        let open = |key| open_delivered(&msg, &user("bob"), &[Arc::clone(&f.bob)], &[key]);
        assert!(open(mark(5)).is_ok());
        assert_eq!(open(mark(4)), Err(RejectReason::RetiredKey));
        // A mark for another room does not cover it.
        let mut other = mark(9);
        if let Some(marks) = other.limit.as_mut() {
            marks[0].room = room("random");
        }
        assert_eq!(open(other), Err(RejectReason::RetiredKey));
    }

    #[test]
    fn a_time_far_from_the_servers_is_disputed() {
        let f = fixture();
        let msg = send(&f, "general", 1, "late");
        let mut out = open_delivered(
            &msg,
            &user("bob"),
            &[Arc::clone(&f.bob)],
            &[trusted(&f.alice)],
        )
        .expect("opens")
        .message;
        out.server_time_ms = out.sent_at_ms + MAX_CLOCK_SKEW_MS + 1;
        assert!(out.time_disputed());
    }
}
