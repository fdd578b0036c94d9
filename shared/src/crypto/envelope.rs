//! One recipient's copy of a message (the hybrid envelope).
//!
//! For each copy: a fresh random 256-bit AES key and 96-bit nonce; the payload is
//! encrypted with AES-256-GCM; the AES key is encrypted to the recipient's public key with
//! RSA-OAEP (SHA-256, MGF1-SHA256, empty label). The GCM associated data binds the copy to
//! its context, so the server cannot move a copy to another room, message, sender or
//! recipient without the recipient noticing:
//!
//! ```text
//! aad = length_prefixed("e2e-chat/v1/envelope",
//!                       [room canonical, message id (16 bytes), sender canonical, recipient canonical])
//! ```

use rand::RngCore;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::signing::length_prefixed;
use super::{aead, CryptoError};
use crate::ids::{MessageId, RoomName, Username};
use crate::protocol::Envelope;

/// Tag of the associated data.
const AAD_TAG: &[u8] = b"e2e-chat/v1/envelope";

/// Where a copy belongs: everything bound into its associated data except the recipient.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeContext<'a> {
    /// The room the message is sent to.
    pub room: &'a RoomName,
    /// The message's id.
    pub message_id: &'a MessageId,
    /// Who sends it.
    pub sender: &'a Username,
}

impl EnvelopeContext<'_> {
    fn aad(&self, recipient: &Username) -> Vec<u8> {
        length_prefixed(
            AAD_TAG,
            &[
                self.room.canonical().as_bytes(),
                &self.message_id.0,
                self.sender.canonical().as_bytes(),
                recipient.canonical().as_bytes(),
            ],
        )
    }
}

/// A fresh AES-256 key and its RSA-OAEP-SHA256 wrapping for one recipient: the expensive
/// half of sealing a copy, which does not depend on the plaintext (so it can run while the
/// message is still being signed).
pub struct WrappedKey {
    key: Zeroizing<[u8; 32]>,
    wrapped: Vec<u8>,
}

impl WrappedKey {
    /// Generates a key from the OS RNG and wraps it for `recipient_key`.
    ///
    /// # Errors
    /// [`CryptoError::Operation`] if RSA encryption fails.
    pub fn fresh(recipient_key: &RsaPublicKey) -> Result<Self, CryptoError> {
        let mut rng = rand::rngs::OsRng;
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        let wrapped = recipient_key
            .encrypt(&mut rng, Oaep::new::<Sha256>(), key.as_ref())
            .map_err(|_| CryptoError::Operation)?;
        Ok(Self { key, wrapped })
    }

    /// Encrypts `plaintext` under this key for `recipient`, completing the copy.
    ///
    /// # Errors
    /// [`CryptoError::Operation`] if AES encryption fails.
    pub fn seal(
        self,
        ctx: &EnvelopeContext<'_>,
        recipient: &Username,
        plaintext: &[u8],
    ) -> Result<Envelope, CryptoError> {
        let (nonce, ciphertext) = aead::seal(&self.key, &ctx.aad(recipient), plaintext)?;
        Ok(Envelope {
            recipient: recipient.clone(),
            wrapped_key: self.wrapped,
            nonce,
            ciphertext,
        })
    }
}

/// Encrypts `plaintext` for one recipient.
///
/// # Errors
/// [`CryptoError::Operation`] if RSA or AES encryption fails.
pub fn seal(
    ctx: &EnvelopeContext<'_>,
    recipient: &Username,
    recipient_key: &RsaPublicKey,
    plaintext: &[u8],
) -> Result<Envelope, CryptoError> {
    WrappedKey::fresh(recipient_key)?.seal(ctx, recipient, plaintext)
}

/// Decrypts a copy addressed to `own_name`.
///
/// # Errors
/// [`CryptoError::Decrypt`] if the copy is for someone else, the key does not unwrap, or
/// the ciphertext or its context fails authentication. The cases are not distinguished.
pub fn open(
    ctx: &EnvelopeContext<'_>,
    own_name: &Username,
    own_key: &RsaPrivateKey,
    envelope: &Envelope,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if !envelope.recipient.same_as(own_name) {
        return Err(CryptoError::Decrypt);
    }
    // Blinded: the private-key operation runs on a randomised ciphertext, so its timing
    // does not follow the ciphertext the server chose (RUSTSEC-2023-0071, the Marvin
    // attack, is a timing side channel in the `rsa` crate's unblinded path). The plain
    // `decrypt` is forbidden by clippy.toml.
    let key = Zeroizing::new(
        own_key
            .decrypt_blinded(
                &mut rand::rngs::OsRng,
                Oaep::new::<Sha256>(),
                &envelope.wrapped_key,
            )
            .map_err(|_| CryptoError::Decrypt)?,
    );
    let key: &[u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Decrypt)?;
    aead::open(
        key,
        &envelope.nonce,
        &ctx.aad(own_name),
        &envelope.ciphertext,
    )
}
