//! [`Identity`]: who the user is (a username) and the private key that proves it.
//!
//! The public half is derived once, at construction, as SubjectPublicKeyInfo DER together
//! with its [`Fingerprint`], because every registration, login and pin check needs them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use shared::crypto::keys::{self, Fingerprint};
use shared::crypto::{CryptoError, RsaPrivateKey, RsaPublicKey};
use shared::Username;

use crate::keystore::{self, KeystoreError};

/// A username and its RSA private key. Cheap to clone: the key is shared, not copied.
///
/// `Debug` prints the username and fingerprint only, never key material.
#[derive(Clone)]
pub struct Identity {
    /// The account name.
    username: Username,
    /// Shared so that blocking crypto tasks can hold it without copying the key.
    private_key: Arc<RsaPrivateKey>,
    /// The public half, kept so callers need not re-derive it from the private key.
    public_key: RsaPublicKey,
    /// SPKI DER of the public key: what the server stores and what fingerprints hash.
    public_der: Arc<[u8]>,
    /// SHA-256 of `public_der`.
    fingerprint: Fingerprint,
}

impl Identity {
    /// Wraps an existing key, validating its public half (2048–4096 bits, e = 65537).
    ///
    /// # Errors
    /// [`CryptoError::WeakKey`] for unacceptable parameters, [`CryptoError::Operation`] if
    /// the public key cannot be encoded.
    pub fn new(username: Username, private_key: RsaPrivateKey) -> Result<Self, CryptoError> {
        let public_key = private_key.to_public_key();
        keys::validate_public(&public_key)?;
        let public_der: Arc<[u8]> = keys::public_to_der(&public_key)?.into();
        let fingerprint = Fingerprint::of_der(&public_der);
        Ok(Self {
            username,
            private_key: Arc::new(private_key),
            public_key,
            public_der,
            fingerprint,
        })
    }

    /// Parses a private key PEM (encrypted or plain PKCS#8, or PKCS#1) for `username`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] for a wrong passphrase or unparsable input,
    /// [`CryptoError::WeakKey`] for unacceptable parameters.
    pub fn from_pem(
        username: Username,
        pem: &str,
        passphrase: Option<&str>,
    ) -> Result<Self, CryptoError> {
        Self::new(username, keys::private_from_pem(pem, passphrase)?)
    }

    /// Loads the key file at `path` (see [`keystore::load_private_key`]).
    ///
    /// # Errors
    /// [`KeystoreError`] if the file cannot be read, needs a passphrase, or does not parse.
    pub fn load(
        username: Username,
        path: &Path,
        passphrase: Option<&str>,
    ) -> Result<Self, KeystoreError> {
        let key = keystore::load_private_key(path, passphrase)?;
        Self::new(username, key).map_err(KeystoreError::Crypto)
    }

    /// Generates a fresh key of [`keys::DEFAULT_KEY_BITS`] bits.
    ///
    /// This takes seconds: call it from `tokio::task::spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`CryptoError::Operation`] if generation fails.
    pub fn generate(username: Username) -> Result<Self, CryptoError> {
        Self::new(username, keys::generate(keys::DEFAULT_KEY_BITS)?)
    }

    /// The account name.
    pub fn username(&self) -> &Username {
        &self.username
    }

    /// The private key.
    pub fn private_key(&self) -> &RsaPrivateKey {
        &self.private_key
    }

    /// The private key as a shared handle, for blocking tasks.
    pub(crate) fn private_key_arc(&self) -> Arc<RsaPrivateKey> {
        Arc::clone(&self.private_key)
    }

    /// The public key.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public_key
    }

    /// The public key as SubjectPublicKeyInfo DER.
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// The public key's fingerprint, to compare out of band.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("username", &self.username.as_str())
            .field("fingerprint", &self.fingerprint.to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/keys/rsa2048-00.pem"
    ));

    #[test]
    fn identity_derives_public_half_and_hides_key_in_debug() {
        let name = Username::parse("alice").expect("valid");
        let id = Identity::from_pem(name, PEM, None).expect("fixture key parses");
        assert_eq!(id.fingerprint(), Fingerprint::of_der(id.public_der()));
        let parsed = keys::public_from_der(id.public_der()).expect("valid DER");
        assert_eq!(&parsed, id.public_key());
        let shown = format!("{id:?}");
        assert!(shown.contains("alice"));
        assert!(
            !shown.contains("BigUint"),
            "debug output leaks key material"
        );
    }
}
