//! Room passwords: argon2id hashes in PHC string format.
//!
//! Hashing and verifying take tens of milliseconds of CPU by design, so both run on the
//! blocking thread pool and never stall the async workers that serve connections.

use std::sync::LazyLock;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::HandlerError;

/// Longest accepted room password, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// A hash of a random password, verified against when a room does not exist so that
/// "no such room" takes as long as "wrong password".
static DECOY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(b"decoy password for timing equalisation", &salt)
        .ok()
        .map(|h| h.to_string())
});

/// Checks a new room password against the length rules.
///
/// # Errors
/// [`HandlerError::InvalidInput`] for an empty or overlong password.
pub fn validate(password: &str) -> Result<(), HandlerError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(HandlerError::InvalidInput(format!(
            "a room password must be 1–{MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Hashes a password with argon2id (default parameters) and a random salt.
///
/// # Errors
/// [`HandlerError::Internal`] if hashing fails or the blocking pool is gone.
pub async fn hash(password: String) -> Result<String, HandlerError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| HandlerError::Internal(format!("argon2 hash: {e}")))
    })
    .await
    .map_err(|e| HandlerError::Internal(format!("blocking pool: {e}")))?
}

/// Verifies `password` against a stored PHC hash. `None` as the hash verifies against a
/// decoy (and returns `false`), costing the same time.
///
/// # Errors
/// [`HandlerError::Internal`] if the stored hash is corrupt or the blocking pool is gone.
pub async fn verify(stored: Option<String>, password: String) -> Result<bool, HandlerError> {
    tokio::task::spawn_blocking(move || {
        let (phc, real) = match &stored {
            Some(h) => (h.as_str(), true),
            None => match DECOY_HASH.as_deref() {
                Some(h) => (h, false),
                None => return Ok(false),
            },
        };
        let parsed = PasswordHash::new(phc)
            .map_err(|e| HandlerError::Internal(format!("stored argon2 hash: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && real)
    })
    .await
    .map_err(|e| HandlerError::Internal(format!("blocking pool: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let h = hash("s3cret".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(Some(h.clone()), "s3cret".into())
            .await
            .expect("verify"));
        assert!(!verify(Some(h), "wrong".into()).await.expect("verify"));
        assert!(
            !verify(None, "decoy password for timing equalisation".into())
                .await
                .expect("verify")
        );
    }

    #[test]
    fn length_rules() {
        assert!(validate("").is_err());
        assert!(validate(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert!(validate("ok").is_ok());
    }
}
