//! Sealing a client's own records at rest (a local cache of messages it already verified).
//!
//! A [`LocalKey`] is a random AES-256 key. It is stored as a [`WrappedLocalKey`]: the key
//! encrypted to the owner's own public key with RSA-OAEP-SHA256, plus the owner's RSA-PSS
//! signature (purpose [`Purpose::LocalKey`]) over the owner's name and the wrapped bytes.
//! Only the holder of the private key can read it, and only the holder of the private key
//! can have made it: a wrapped key anyone could produce with the public key alone would
//! let whoever can write the file plant records of their choosing.
//!
//! Each record is sealed with AES-256-GCM under a fresh 96-bit nonce; the associated data
//! binds it to the caller's `context` fields (for the message cache: the room, the
//! position and a digest of the delivered ciphertext), so a record moved to another place
//! or kept for different ciphertext fails authentication:
//!
//! ```text
//! aad = length_prefixed("e2e-chat/v1/local-record", context)
//! ```

use rand::RngCore;
use rsa::{Oaep, RsaPrivateKey};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::signing::{self, length_prefixed, Purpose};
use super::{aead, CryptoError};
use crate::ids::Username;

/// Tag of a record's associated data.
const AAD_TAG: &[u8] = b"e2e-chat/v1/local-record";

/// A random AES-256 key for the owner's local records. Zeroed when dropped.
pub struct LocalKey(Zeroizing<[u8; 32]>);

/// A [`LocalKey`] as stored: wrapped for its owner and signed by them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedLocalKey {
    /// The key, RSA-OAEP-SHA256-encrypted to the owner's public key.
    pub wrapped: Vec<u8>,
    /// The owner's RSA-PSS signature over (owner canonical name, `wrapped`).
    pub signature: Vec<u8>,
}

/// One sealed record: its nonce and AES-256-GCM ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// Fresh for every record.
    pub nonce: [u8; 12],
    /// The ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

impl LocalKey {
    /// A fresh key from the OS RNG.
    #[must_use]
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self(key)
    }

    /// Wraps the key for `owner` (to `own_key`'s public half) and signs the wrapping.
    ///
    /// # Errors
    /// [`CryptoError::Operation`] if RSA encryption fails.
    pub fn wrap(
        &self,
        owner: &Username,
        own_key: &RsaPrivateKey,
    ) -> Result<WrappedLocalKey, CryptoError> {
        let wrapped = own_key
            .to_public_key()
            .encrypt(
                &mut rand::rngs::OsRng,
                Oaep::new::<Sha256>(),
                self.0.as_ref(),
            )
            .map_err(|_| CryptoError::Operation)?;
        let signature = signing::sign(
            own_key,
            Purpose::LocalKey,
            &[owner.canonical().as_bytes(), &wrapped],
        );
        Ok(WrappedLocalKey { wrapped, signature })
    }

    /// Seals `plaintext` under this key, bound to `context`.
    ///
    /// # Errors
    /// [`CryptoError::Operation`] if AES encryption fails.
    pub fn seal(&self, context: &[&[u8]], plaintext: &[u8]) -> Result<SealedRecord, CryptoError> {
        let (nonce, ciphertext) =
            aead::seal(&self.0, &length_prefixed(AAD_TAG, context), plaintext)?;
        Ok(SealedRecord { nonce, ciphertext })
    }

    /// Opens a record sealed under this key for the same `context`.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] if it was altered, sealed under another key or for another
    /// context.
    pub fn open(
        &self,
        context: &[&[u8]],
        record: &SealedRecord,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        aead::open(
            &self.0,
            &record.nonce,
            &length_prefixed(AAD_TAG, context),
            &record.ciphertext,
        )
    }
}

impl WrappedLocalKey {
    /// Checks `owner`'s signature and unwraps the key with `own_key`.
    ///
    /// # Errors
    /// [`CryptoError::BadSignature`] if the owner did not make this wrapping (or it was
    /// made for another owner); [`CryptoError::Decrypt`] if it does not unwrap.
    pub fn unwrap_for(
        &self,
        owner: &Username,
        own_key: &RsaPrivateKey,
    ) -> Result<LocalKey, CryptoError> {
        signing::verify(
            &own_key.to_public_key(),
            Purpose::LocalKey,
            &[owner.canonical().as_bytes(), &self.wrapped],
            &self.signature,
        )?;
        // Blinded, as in `envelope::open`: the plain `decrypt` is forbidden by clippy.toml.
        let key = Zeroizing::new(
            own_key
                .decrypt_blinded(&mut rand::rngs::OsRng, Oaep::new::<Sha256>(), &self.wrapped)
                .map_err(|_| CryptoError::Decrypt)?,
        );
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(LocalKey(Zeroizing::new(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::private_from_pem;

    fn key(n: usize) -> RsaPrivateKey {
        let path = format!(
            "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let pem = std::fs::read_to_string(path).expect("fixture exists");
        private_from_pem(&pem, None).expect("fixture parses")
    }

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid")
    }

    #[test]
    fn a_wrapped_key_opens_only_for_its_owner() {
        let (alice, bob) = (key(0), key(1));
        let local = LocalKey::generate();
        let wrapped = local.wrap(&user("alice"), &alice).expect("wraps");
        let record = local.seal(&[b"room", b"7"], b"hello").expect("seals");
        let again = wrapped.unwrap_for(&user("alice"), &alice).expect("unwraps");
        assert_eq!(
            again
                .open(&[b"room", b"7"], &record)
                .expect("opens")
                .as_slice(),
            b"hello"
        );
        // Another user, or the same key claimed for another name, is refused.
        assert!(wrapped.unwrap_for(&user("bob"), &bob).is_err());
        assert_eq!(
            wrapped.unwrap_for(&user("mallory"), &alice).err(),
            Some(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_wrapping_made_with_the_public_key_alone_is_refused() {
        let alice = key(0);
        let planted = LocalKey::generate();
        let wrapped = alice
            .to_public_key()
            .encrypt(
                &mut rand::rngs::OsRng,
                Oaep::new::<Sha256>(),
                planted.0.as_ref(),
            )
            .expect("encrypts");
        let forged = WrappedLocalKey {
            wrapped,
            signature: vec![0; 256],
        };
        assert_eq!(
            forged.unwrap_for(&user("alice"), &alice).err(),
            Some(CryptoError::BadSignature)
        );
    }

    #[test]
    fn a_record_fails_when_altered_or_moved() {
        let local = LocalKey::generate();
        let record = local.seal(&[b"room", b"7"], b"hello").expect("seals");
        assert!(local.open(&[b"room", b"8"], &record).is_err(), "moved");
        let mut altered = record.clone();
        altered.ciphertext[0] ^= 1;
        assert!(local.open(&[b"room", b"7"], &altered).is_err(), "altered");
        assert!(LocalKey::generate()
            .open(&[b"room", b"7"], &record)
            .is_err());
    }
}
