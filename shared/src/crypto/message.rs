//! A whole chat message: signed once by its author, sealed once per recipient.
//!
//! The author signs a [`MessageBody`] with RSA-PSS (purpose [`Purpose::Message`]) over its
//! encoding. The body repeats the room, message id and sender, and lists every recipient in
//! the order of the copies, so a recipient can tell who else got the message and a copy
//! replayed into another room, under another id, or forwarded to someone the author did not
//! address is rejected.
//!
//! The plaintext of every copy is the codec encoding of a [`SignedMessage`]: the body
//! *without* its recipient list, and the signature. The signature sits inside the
//! encryption, so the server cannot use it to test guesses of the plaintext. The recipient
//! list travels once, beside the copies, in the clear (each copy already names its
//! recipient for the server, so this reveals nothing new); the server hands it to every
//! recipient with their copy ([`crate::protocol::DeliveredMessage::recipients`]), and
//! [`open_message`] puts it back into the body before it checks the signature, so a list
//! the server altered fails verification. Carrying the list inside every copy instead made
//! a message's size grow with the square of the room's size.

use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};

use super::envelope::{self, EnvelopeContext, WrappedKey};
use super::signing::{self, Purpose};
use super::CryptoError;
use crate::ids::{DeviceId, MessageId, RoomName, Username};
use crate::protocol::{codec, Envelope};

/// The start of the text of an action (`/me waves`, shown as "* alice waves").
///
/// An action is marked inside the signed, encrypted text, never beside it: only the
/// author can make a message an action, the server cannot tell one from a message, and a
/// client that does not know the convention shows the text as typed (`/me waves`).
pub const ACTION_PREFIX: &str = "/me ";

/// What the author does, if the text is an action (`/me waves` → `waves`).
#[must_use]
pub fn action(text: &str) -> Option<&str> {
    text.strip_prefix(ACTION_PREFIX)
}

/// What the author signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// The room the author sent it to.
    pub room: RoomName,
    /// The author's id for it.
    pub message_id: MessageId,
    /// The author.
    pub sender: Username,
    /// The author's device (installation) that sent it.
    pub device: DeviceId,
    /// The author's counter for (this device, this room): 1 for the first message, one
    /// more for each after. Recipients refuse a counter they accepted before and report
    /// skipped counters as withheld messages.
    pub counter: u64,
    /// The author's clock when sending, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// Everyone the author encrypted it for.
    pub recipients: Vec<Username>,
    /// The text (an action if it starts with [`ACTION_PREFIX`]).
    pub text: String,
}

/// The plaintext inside each envelope: the signed [`MessageBody`] without its recipient
/// list, and the signature over the whole body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMessage {
    /// The room the author sent it to.
    pub room: RoomName,
    /// The author's id for it.
    pub message_id: MessageId,
    /// The author.
    pub sender: Username,
    /// The author's device (installation) that sent it.
    pub device: DeviceId,
    /// The author's counter for (this device, this room).
    pub counter: u64,
    /// The author's clock when sending, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The text.
    pub text: String,
    /// RSA-PSS-SHA256 over `signing_input(Message, [codec::encode(body)])`, where `body` is
    /// the [`MessageBody`] with the recipient list.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedMessage {
    /// What each copy of `body` carries, given the author's `signature` over it.
    #[must_use]
    pub fn new(body: &MessageBody, signature: Vec<u8>) -> Self {
        Self {
            room: body.room.clone(),
            message_id: body.message_id,
            sender: body.sender.clone(),
            device: body.device,
            counter: body.counter,
            sent_at_ms: body.sent_at_ms,
            text: body.text.clone(),
            signature,
        }
    }

    /// The body as the author signed it, with the delivered `recipients` put back.
    #[must_use]
    pub fn body(&self, recipients: &[Username]) -> MessageBody {
        MessageBody {
            room: self.room.clone(),
            message_id: self.message_id,
            sender: self.sender.clone(),
            device: self.device,
            counter: self.counter,
            sent_at_ms: self.sent_at_ms,
            recipients: recipients.to_vec(),
            text: self.text.clone(),
        }
    }
}

/// One recipient of a message and the key to seal their copy with.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// Their username.
    pub username: Username,
    /// Their (pinned) public key.
    pub key: RsaPublicKey,
}

/// Signs `body` once and seals one copy per recipient, spreading the RSA work over the
/// machine's cores when there are many recipients.
///
/// # Errors
/// [`CryptoError::Payload`] if the body does not encode or its recipients differ from
/// `recipients`; [`CryptoError::Operation`] if encryption fails.
pub fn seal_message(
    author_key: &RsaPrivateKey,
    body: MessageBody,
    recipients: &[Recipient],
) -> Result<Vec<Envelope>, CryptoError> {
    let listed: Vec<&Username> = recipients.iter().map(|r| &r.username).collect();
    if listed.len() != body.recipients.len()
        || listed
            .iter()
            .zip(&body.recipients)
            .any(|(a, b)| !a.same_as(b))
    {
        return Err(CryptoError::Payload(
            "body recipients differ from the keys given".into(),
        ));
    }
    // The RSA-OAEP key wrapping does not depend on the signed plaintext, so it runs on
    // worker threads while this thread signs; the AES part follows and is cheap.
    let (signed, wrapped) = std::thread::scope(|scope| {
        let wrapping = scope.spawn(|| wrap_keys(recipients));
        let signed = sign_body(author_key, body);
        let wrapped = wrapping.join().map_err(|_| CryptoError::Operation)?;
        Ok::<_, CryptoError>((signed?, wrapped?))
    })?;
    let plaintext = zeroize::Zeroizing::new(
        codec::encode(&signed).map_err(|e| CryptoError::Payload(e.to_string()))?,
    );
    let ctx = EnvelopeContext {
        room: &signed.room,
        message_id: &signed.message_id,
        sender: &signed.sender,
    };
    recipients
        .iter()
        .zip(wrapped)
        .map(|(r, key)| key.seal(&ctx, &r.username, &plaintext))
        .collect()
}

fn sign_body(author_key: &RsaPrivateKey, body: MessageBody) -> Result<SignedMessage, CryptoError> {
    let encoded = codec::encode(&body).map_err(|e| CryptoError::Payload(e.to_string()))?;
    let signature = signing::sign(author_key, Purpose::Message, &[&encoded]);
    Ok(SignedMessage::new(&body, signature))
}

/// Below this many recipients, one wrapping thread is faster than spawning more.
const PARALLEL_THRESHOLD: usize = 8;

/// A fresh wrapped key per recipient, in recipient order, spread over the machine's cores
/// when there are many recipients.
fn wrap_keys(recipients: &[Recipient]) -> Result<Vec<WrappedKey>, CryptoError> {
    let wrap_one = |r: &Recipient| WrappedKey::fresh(&r.key);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if recipients.len() < PARALLEL_THRESHOLD || threads == 1 {
        return recipients.iter().map(wrap_one).collect();
    }
    let chunk = recipients.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = recipients
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(wrap_one).collect::<Result<Vec<_>, _>>())
            })
            .collect();
        let mut out = Vec::with_capacity(recipients.len());
        for handle in handles {
            out.extend(handle.join().map_err(|_| CryptoError::Operation)??);
        }
        Ok(out)
    })
}

/// Where a received copy claims to come from (from the server's metadata).
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Room the server says it was sent to.
    pub room: &'a RoomName,
    /// Message id the server reports.
    pub message_id: &'a MessageId,
    /// Sender the server reports.
    pub sender: &'a Username,
    /// The recipient list the server delivered with the copy; the signature covers it.
    pub recipients: &'a [Username],
}

/// Decrypts the recipient's copy, verifies the author's signature with `sender_key` over
/// the body with the delivered recipient list put back, and checks that the signed room, id
/// and sender match the envelope metadata and that the recipient is among the signed
/// recipients.
///
/// # Errors
/// [`CryptoError::Decrypt`], [`CryptoError::BadSignature`] or [`CryptoError::Payload`].
pub fn open_message(
    received: Received<'_>,
    own_name: &Username,
    own_key: &RsaPrivateKey,
    envelope: &Envelope,
    sender_key: &RsaPublicKey,
) -> Result<MessageBody, CryptoError> {
    let ctx = EnvelopeContext {
        room: received.room,
        message_id: received.message_id,
        sender: received.sender,
    };
    let plaintext = envelope::open(&ctx, own_name, own_key, envelope)?;
    let signed: SignedMessage =
        codec::decode(&plaintext).map_err(|e| CryptoError::Payload(e.to_string()))?;
    let body = signed.body(received.recipients);
    let encoded = codec::encode(&body).map_err(|e| CryptoError::Payload(e.to_string()))?;
    signing::verify(sender_key, Purpose::Message, &[&encoded], &signed.signature)?;
    if !body.room.same_as(received.room)
        || body.message_id != *received.message_id
        || !body.sender.same_as(received.sender)
    {
        return Err(CryptoError::Payload(
            "signed room, id or sender differ from the envelope".into(),
        ));
    }
    if !body.recipients.iter().any(|r| r.same_as(own_name)) {
        return Err(CryptoError::Payload(
            "not among the signed recipients".into(),
        ));
    }
    Ok(body)
}
