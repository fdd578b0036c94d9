//! Cryptography both sides use, built only from audited RustCrypto crates:
//! RSA-OAEP-SHA256 and RSA-PSS-SHA256 (`rsa`), AES-256-GCM (`aes-gcm`), SHA-256 (`sha2`).
//!
//! - [`keys`]: generation, PEM/DER import and export, validation, fingerprints.
//! - [`signing`]: domain-separated RSA-PSS signatures (one tag per purpose).
//! - [`envelope`]: one recipient's hybrid-encrypted copy.
//! - [`message`]: a whole message: sign once, seal one copy per recipient, open and verify.
//! - [`rotation`]: key rotation certificates, signed by the old and the new key.
//! - [`local`]: sealing a client's own records at rest under a key only it can unwrap.
//!
//! Nothing here does I/O; nothing here is async.

mod aead;
pub mod envelope;
pub mod keys;
pub mod local;
pub mod message;
pub mod rotation;
pub mod signing;

pub use rsa::{RsaPrivateKey, RsaPublicKey};

/// Why a cryptographic operation failed. Messages are deliberately terse: a failed
/// decryption or verification says no more than that it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key could not be parsed (bad DER/PEM, wrong passphrase, unsupported format).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The key is outside the accepted parameters (2048–4096 bits, e = 65537).
    #[error("unacceptable key: {0}")]
    WeakKey(String),
    /// Key generation or encryption failed inside the RSA implementation.
    #[error("cryptographic operation failed")]
    Operation,
    /// A ciphertext did not decrypt or authenticate.
    #[error("decryption failed")]
    Decrypt,
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// The decrypted payload is not a well-formed signed message, or its signed metadata
    /// does not match the envelope it arrived in.
    #[error("payload rejected: {0}")]
    Payload(String),
}
