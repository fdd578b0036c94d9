//! AES-256-GCM through the `aes-gcm` crate: the one place both message envelopes and the
//! client's local records seal and open their bytes.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::CryptoError;

/// Encrypts `plaintext` under `key`, authenticating `aad`, with a fresh random 96-bit
/// nonce; returns the nonce and the ciphertext with its tag.
///
/// # Errors
/// [`CryptoError::Operation`] if AES encryption fails.
pub(crate) fn seal(
    key: &[u8; 32],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 12], Vec<u8>), CryptoError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Operation)?;
    Ok((nonce, ciphertext))
}

/// Decrypts what [`seal`] made under `key` with `nonce`, for the same `aad`.
///
/// # Errors
/// [`CryptoError::Decrypt`] if the ciphertext, the nonce or the `aad` was altered, or the
/// key is another.
pub(crate) fn open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Decrypt)
}
