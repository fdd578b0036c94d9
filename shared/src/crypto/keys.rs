//! RSA keys: generation, validation, PEM/DER formats and fingerprints.
//!
//! Public keys travel as SubjectPublicKeyInfo DER (what `openssl pkey -pubout -outform DER`
//! writes). Private keys are stored as PKCS#8 PEM, encrypted with a passphrase
//! (PBES2: scrypt + AES-256-CBC) whenever one is given; unencrypted PKCS#8 and legacy PKCS#1
//! (`BEGIN RSA PRIVATE KEY`) are accepted on import so openssl-made keys work.

use std::fmt;

use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::CryptoError;

/// Key size for newly generated keys.
pub const DEFAULT_KEY_BITS: usize = 3072;
/// Smallest accepted modulus.
pub const MIN_KEY_BITS: usize = 2048;
/// Largest accepted modulus.
pub const MAX_KEY_BITS: usize = 4096;
/// The only accepted public exponent.
pub const PUBLIC_EXPONENT: u32 = 65537;

/// Generates a fresh RSA key with `bits` bits from the OS RNG.
///
/// # Errors
/// [`CryptoError::WeakKey`] if `bits` is outside 2048–4096; [`CryptoError::Operation`] if
/// generation fails.
pub fn generate(bits: usize) -> Result<RsaPrivateKey, CryptoError> {
    if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
        return Err(CryptoError::WeakKey(format!(
            "key size {bits} is outside {MIN_KEY_BITS}–{MAX_KEY_BITS} bits"
        )));
    }
    RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|_| CryptoError::Operation)
}

/// Checks that a public key has 2048–4096 bits and e = 65537.
///
/// # Errors
/// [`CryptoError::WeakKey`] saying which rule failed.
pub fn validate_public(key: &RsaPublicKey) -> Result<(), CryptoError> {
    let bits = key.n().bits();
    if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
        return Err(CryptoError::WeakKey(format!(
            "modulus of {bits} bits is outside {MIN_KEY_BITS}–{MAX_KEY_BITS}"
        )));
    }
    if *key.e() != BigUint::from(PUBLIC_EXPONENT) {
        return Err(CryptoError::WeakKey("public exponent must be 65537".into()));
    }
    Ok(())
}

/// Parses and validates a SubjectPublicKeyInfo DER public key.
///
/// # Errors
/// [`CryptoError::InvalidKey`] for unparsable input, [`CryptoError::WeakKey`] for
/// unacceptable parameters.
pub fn public_from_der(der: &[u8]) -> Result<RsaPublicKey, CryptoError> {
    let key = RsaPublicKey::from_public_key_der(der)
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
    validate_public(&key)?;
    Ok(key)
}

/// Encodes a public key as SubjectPublicKeyInfo DER.
///
/// # Errors
/// [`CryptoError::Operation`] if encoding fails (it does not for valid keys).
pub fn public_to_der(key: &RsaPublicKey) -> Result<Vec<u8>, CryptoError> {
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| CryptoError::Operation)
}

/// Parses and validates a `BEGIN PUBLIC KEY` PEM.
///
/// # Errors
/// As [`public_from_der`].
pub fn public_from_pem(pem: &str) -> Result<RsaPublicKey, CryptoError> {
    let key = RsaPublicKey::from_public_key_pem(pem)
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
    validate_public(&key)?;
    Ok(key)
}

/// Encodes a public key as a `BEGIN PUBLIC KEY` PEM.
///
/// # Errors
/// [`CryptoError::Operation`] if encoding fails.
pub fn public_to_pem(key: &RsaPublicKey) -> Result<String, CryptoError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|_| CryptoError::Operation)
}

/// Encodes a private key as PKCS#8 PEM: encrypted (`BEGIN ENCRYPTED PRIVATE KEY`) when a
/// passphrase is given, plain (`BEGIN PRIVATE KEY`) otherwise.
///
/// # Errors
/// [`CryptoError::Operation`] if encoding or encryption fails.
pub fn private_to_pem(
    key: &RsaPrivateKey,
    passphrase: Option<&str>,
) -> Result<Zeroizing<String>, CryptoError> {
    let pem = match passphrase {
        Some(pass) => key
            .to_pkcs8_encrypted_pem(&mut rand::rngs::OsRng, pass, LineEnding::LF)
            .map_err(|_| CryptoError::Operation)?,
        None => key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| CryptoError::Operation)?,
    };
    Ok(Zeroizing::new(pem.to_string()))
}

/// Parses a private key PEM: encrypted PKCS#8 (needs the passphrase), plain PKCS#8, or
/// PKCS#1. Its public half is validated like any other public key.
///
/// # Errors
/// [`CryptoError::InvalidKey`] for a wrong passphrase or unparsable input;
/// [`CryptoError::WeakKey`] for unacceptable parameters.
pub fn private_from_pem(pem: &str, passphrase: Option<&str>) -> Result<RsaPrivateKey, CryptoError> {
    let key = if pem.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        let pass = passphrase.ok_or_else(|| {
            CryptoError::InvalidKey("the key is encrypted: a passphrase is needed".into())
        })?;
        RsaPrivateKey::from_pkcs8_encrypted_pem(pem, pass)
            .map_err(|_| CryptoError::InvalidKey("wrong passphrase or corrupt key".into()))?
    } else if pem.contains("BEGIN RSA PRIVATE KEY") {
        RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| CryptoError::InvalidKey(e.to_string()))?
    } else {
        RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| CryptoError::InvalidKey(e.to_string()))?
    };
    key.validate()
        .map_err(|e| CryptoError::InvalidKey(e.to_string()))?;
    validate_public(&key.to_public_key())?;
    Ok(key)
}

/// SHA-256 of a key's SubjectPublicKeyInfo DER: what two people compare out of band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of an SPKI DER encoding.
    pub fn of_der(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// The fingerprint of a public key.
    ///
    /// # Errors
    /// [`CryptoError::Operation`] if the key cannot be encoded.
    pub fn of_key(key: &RsaPublicKey) -> Result<Self, CryptoError> {
        Ok(Self::of_der(&public_to_der(key)?))
    }
}

impl fmt::Display for Fingerprint {
    /// Lowercase hex in 16 groups of four, e.g. `3f2a 91bc …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = hex::encode(self.0);
        for (i, chunk) in hex.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}
