//! Domain-separated RSA-PSS-SHA256 signatures.
//!
//! Every signature covers [`signing_input`]`(purpose, fields)`: the purpose's tag and each
//! field, all length-prefixed (u32 big-endian), so a signature made for one purpose can
//! never be valid for another and no two field lists encode to the same bytes.
//! PSS uses MGF1-SHA256 and a 32-byte salt.

use rsa::pss::{BlindedSigningKey, Signature, VerifyingKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

use super::CryptoError;
use crate::ids::{ServerId, Username};

/// What a signature is for. Each purpose has its own tag in the signed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Answering a login challenge: fields are username, nonce and the server's id.
    Login,
    /// Authoring a chat message: the field is the encoded message body.
    Message,
    /// A key rotation, signed by the *new* key (proof of possession): the fields are
    /// those of [`crate::crypto::rotation::RotationCertificate::signed_fields`].
    KeyRotation,
    /// A key rotation, signed by the *old* key (the old key hands over to the new one):
    /// the same fields as [`Purpose::KeyRotation`], under a tag of its own.
    KeyEndorsement,
    /// Wrapping the key of the owner's own local records (see [`crate::crypto::local`]):
    /// the fields are the owner's canonical name and the wrapped key.
    LocalKey,
}

impl Purpose {
    /// The domain-separation tag.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Self::Login => b"e2e-chat/v3/login",
            Self::Message => b"e2e-chat/v3/message",
            Self::KeyRotation => b"e2e-chat/v3/key-rotation",
            Self::KeyEndorsement => b"e2e-chat/v3/key-endorsement",
            Self::LocalKey => b"e2e-chat/v3/local-key",
        }
    }
}

/// The exact bytes a signature covers: `len(tag) tag (len(field) field)*`, lengths as u32
/// big-endian.
pub fn signing_input(purpose: Purpose, fields: &[&[u8]]) -> Vec<u8> {
    length_prefixed(purpose.tag(), fields)
}

/// `len(tag) tag (len(field) field)*` with u32 big-endian lengths: an unambiguous encoding
/// of a tagged field list, used for signatures and for AES-GCM associated data.
pub(crate) fn length_prefixed(tag: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(4 + tag.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>());
    for part in std::iter::once(tag).chain(fields.iter().copied()) {
        // Fields are bounded by the frame limit, far below u32::MAX.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Signs `fields` for `purpose` with RSA-PSS-SHA256 (blinded).
pub fn sign(key: &RsaPrivateKey, purpose: Purpose, fields: &[&[u8]]) -> Vec<u8> {
    let signer = BlindedSigningKey::<Sha256>::new(key.clone());
    signer
        .sign_with_rng(&mut rand::rngs::OsRng, &signing_input(purpose, fields))
        .to_vec()
}

/// Verifies an RSA-PSS-SHA256 signature over `fields` for `purpose`.
///
/// # Errors
/// [`CryptoError::BadSignature`] if it does not verify (including malformed signatures).
pub fn verify(
    key: &RsaPublicKey,
    purpose: Purpose,
    fields: &[&[u8]],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let signature = Signature::try_from(signature).map_err(|_| CryptoError::BadSignature)?;
    VerifyingKey::<Sha256>::new(key.clone())
        .verify(&signing_input(purpose, fields), &signature)
        .map_err(|_| CryptoError::BadSignature)
}

/// The login proof: a signature over (username canonical form, nonce, server id). The
/// server id binds the proof to the server the client meant to log in to: a server that
/// relays another server's challenge gets a proof that fails there.
pub fn sign_login(
    key: &RsaPrivateKey,
    username: &Username,
    nonce: &[u8; 32],
    server: &ServerId,
) -> Vec<u8> {
    sign(
        key,
        Purpose::Login,
        &[username.canonical().as_bytes(), nonce, &server.0],
    )
}

/// Verifies a login proof made for `server`.
///
/// # Errors
/// [`CryptoError::BadSignature`].
pub fn verify_login(
    key: &RsaPublicKey,
    username: &Username,
    nonce: &[u8; 32],
    server: &ServerId,
    signature: &[u8],
) -> Result<(), CryptoError> {
    verify(
        key,
        Purpose::Login,
        &[username.canonical().as_bytes(), nonce, &server.0],
        signature,
    )
}
