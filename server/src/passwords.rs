//! Room passwords: argon2id hashes in PHC string format, computed on a pool of their own.
//!
//! Hashing and verifying take tens of milliseconds of CPU and 19 MiB of memory each, by
//! design. They run on the [`Hasher`]'s own threads (a rayon pool), never on the async
//! workers that serve connections nor on the blocking pool the embedded store does its I/O
//! on, and at most as many run at once as the pool has threads: a request that finds
//! every thread busy is refused with [`HandlerError::RateLimited`] at once instead of
//! queueing, so a flood of joins costs a bounded amount of CPU and memory and cannot
//! starve anything else.

use std::sync::Arc;

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{oneshot, Semaphore};

use crate::error::HandlerError;

/// Longest accepted room password, in bytes, on create and on join (a longer one can match
/// no room, so it is refused before any hashing).
pub const MAX_PASSWORD_BYTES: usize = 256;

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

/// Checks a password given to join a room: at most [`MAX_PASSWORD_BYTES`] (an empty or
/// missing one is allowed: the room may have none).
///
/// # Errors
/// [`HandlerError::InvalidInput`] for an overlong password.
pub fn check_length(password: Option<&str>) -> Result<(), HandlerError> {
    if password.is_some_and(|p| p.len() > MAX_PASSWORD_BYTES) {
        return Err(HandlerError::InvalidInput(format!(
            "a room password is at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Runs argon2 on a bounded pool of its own; cheap to share behind an `Arc`.
pub struct Hasher {
    pool: rayon::ThreadPool,
    /// One permit per pool thread: a job runs only with one, so nothing ever waits in the
    /// pool's queue.
    slots: Arc<Semaphore>,
    /// The cost of new hashes (verification reads the cost from the stored hash).
    params: Params,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("threads", &self.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

/// The pool's threads could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the argon2 pool")]
pub struct PoolError(#[from] rayon::ThreadPoolBuildError);

impl Hasher {
    /// A pool of `threads` threads (at least one), so at most that many argon2 runs at once.
    ///
    /// # Errors
    /// [`PoolError`] if the threads cannot be spawned.
    pub fn new(threads: usize) -> Result<Self, PoolError> {
        Self::with_params(threads, Params::default())
    }

    /// A pool as [`Hasher::new`] whose new hashes cost `params` instead of argon2id's
    /// defaults (19 MiB, two passes). Only the fuzzing harness uses a lower cost, so that
    /// millions of inputs reach the handlers behind a password; a server always runs
    /// [`Hasher::new`].
    ///
    /// # Errors
    /// [`PoolError`] if the threads cannot be spawned.
    pub fn with_params(threads: usize, params: Params) -> Result<Self, PoolError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("argon2-{i}"))
            .build()?;
        Ok(Self {
            pool,
            slots: Arc::new(Semaphore::new(threads)),
            params,
        })
    }

    /// Runs `job` on a free pool thread.
    ///
    /// # Errors
    /// [`HandlerError::RateLimited`] when every thread is busy; [`HandlerError::Internal`]
    /// if the job panicked.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HandlerError> {
        let permit = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| HandlerError::Busy("password checks"))?;
        let (done, result) = oneshot::channel();
        self.pool.spawn(move || {
            let output = job();
            // The slot is free before anyone hears the result, so a caller that goes on to
            // its next check finds it free.
            drop(permit);
            let _ = done.send(output);
        });
        result
            .await
            .map_err(|_| HandlerError::Internal("argon2 job ended without a result".into()))
    }

    /// Hashes a password with argon2id (the pool's parameters) and a random salt.
    ///
    /// # Errors
    /// [`HandlerError::RateLimited`] when the pool is full; [`HandlerError::Internal`] if
    /// hashing fails.
    pub async fn hash(&self, password: String) -> Result<String, HandlerError> {
        let params = self.params.clone();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HandlerError::Internal(format!("argon2 hash: {e}")))
        })
        .await?
    }

    /// Verifies `password` against a stored PHC hash. (Only public rooms and legacy hidden
    /// rooms keep one: a missing or hidden room is a keyed lookup, so no decoy hash is needed
    /// to make "no such room" cost what "wrong password" does.)
    ///
    /// # Errors
    /// [`HandlerError::RateLimited`] when the pool is full; [`HandlerError::Internal`] if
    /// the stored hash is corrupt.
    pub async fn verify(&self, stored: String, password: String) -> Result<bool, HandlerError> {
        self.run(move || {
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| HandlerError::Internal(format!("stored argon2 hash: {e}")))?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = Hasher::new(2).expect("pool");
        let h = hasher.hash("s3cret".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(hasher
            .verify(h.clone(), "s3cret".into())
            .await
            .expect("verify"));
        assert!(!hasher.verify(h, "wrong".into()).await.expect("verify"));
    }

    #[tokio::test]
    async fn new_hashes_carry_the_pools_cost_and_verify_by_their_own() {
        let server = Hasher::new(1).expect("pool");
        let default = server.hash("pw".into()).await.expect("hash");
        assert!(default.contains("m=19456,t=2,p=1"), "{default}");
        let cheap =
            Hasher::with_params(1, Params::new(8, 1, 1, None).expect("params")).expect("pool");
        let low = cheap.hash("pw".into()).await.expect("hash");
        assert!(low.contains("m=8,t=1,p=1"), "{low}");
        // Each pool verifies the other's hashes: the cost is read from the hash.
        assert!(server.verify(low, "pw".into()).await.expect("verify"));
        assert!(cheap.verify(default, "pw".into()).await.expect("verify"));
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_frees_its_slots() {
        let hasher = Hasher::new(1).expect("pool");
        let first = hasher.hash("one".into());
        let second = hasher.hash("two".into());
        let (first, second) = tokio::join!(first, second);
        assert!(first.is_ok(), "the first takes the only slot");
        assert!(
            matches!(second, Err(HandlerError::Busy(_))),
            "the second finds it taken: {second:?}"
        );
        assert!(
            hasher.hash("three".into()).await.is_ok(),
            "the slot is free again"
        );
    }

    #[test]
    fn length_rules() {
        assert!(validate("").is_err());
        assert!(validate(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        assert!(validate("ok").is_ok());
        assert!(check_length(None).is_ok());
        assert!(check_length(Some("")).is_ok());
        assert!(check_length(Some(&"x".repeat(MAX_PASSWORD_BYTES + 1))).is_err());
    }
}
