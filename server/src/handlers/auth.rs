//! The handshake and authentication.
//!
//! Login is challenge-response: the server sends 32 random bytes from the OS RNG; the
//! client signs them (RSA-PSS-SHA256, domain-separated, bound to the username and to this
//! server's [`ServerId`](shared::ServerId)) with its private key. The client never decrypts
//! anything the server chose, so a malicious server cannot use login to turn clients into
//! decryption oracles, and a proof made for one server fails on every other, so a server
//! cannot relay another's challenge and log in there as its client. A challenge is
//! single-use (consumed by the first proof, right or wrong) and expires after the
//! configured TTL.
//!
//! A login ends with the key it was proven with still current: a key rotation between
//! the challenge and the proof fails the proof, and one that races the login's
//! registration with the hub ends the new session as it ends the user's others.

use std::time::Instant;

use rand::RngCore;
use shared::crypto::{keys, signing};
use shared::protocol::{
    Challenge, Hello, HelloAck, LoggedIn, LoginProof, LoginStart, Register, Registered, Reply,
    MAX_FRAME_BYTES, PROTOCOL_VERSION,
};

use super::{hub_gone, now_ms, AppState, Auth, Connection};
use crate::error::HandlerError;
use crate::store::{StoreError, UserRecord};

/// # Hello
/// - Must be the first frame; a second one is `InvalidState`.
/// - A different protocol version is refused (the session then closes).
///
/// # Errors
/// [`HandlerError::ProtocolVersion`], [`HandlerError::InvalidState`].
pub fn hello(state: &AppState, conn: &mut Connection, req: Hello) -> Result<Reply, HandlerError> {
    if conn.greeted {
        return Err(HandlerError::InvalidState("hello was already exchanged"));
    }
    if req.protocol_version != PROTOCOL_VERSION {
        return Err(HandlerError::ProtocolVersion(req.protocol_version));
    }
    conn.greeted = true;
    Ok(Reply::Hello(HelloAck {
        protocol_version: PROTOCOL_VERSION,
        server: concat!("e2e-chat-server/", env!("CARGO_PKG_VERSION")).to_owned(),
        server_id: state.server_id,
        max_frame_bytes: u32::try_from(MAX_FRAME_BYTES).unwrap_or(u32::MAX),
        max_message_bytes: u32::try_from(state.limits.max_message_bytes).unwrap_or(u32::MAX),
    }))
}

/// # Register
/// - Only before login.
/// - The key must be an RSA SubjectPublicKeyInfo of 2048–4096 bits with e = 65537.
/// - A valid request takes one registration from the client address's quota and the
///   server's (taken or not, the name costs one).
/// - Usernames are unique ignoring case; a taken name leaves the existing account as is.
///
/// # Errors
/// [`HandlerError::InvalidState`], [`HandlerError::InvalidInput`],
/// [`HandlerError::Throttled`] (a quota is used up), [`HandlerError::UsernameTaken`],
/// store failures.
pub async fn register(
    state: &AppState,
    conn: &Connection,
    req: Register,
) -> Result<Reply, HandlerError> {
    if conn.is_authenticated() {
        return Err(HandlerError::InvalidState("already logged in"));
    }
    keys::public_from_der(&req.public_key)
        .map_err(|e| HandlerError::InvalidInput(e.to_string()))?;
    state.limits.registrations.take(conn.address)?;
    let record = UserRecord {
        username: req.username.clone(),
        public_key: req.public_key,
        created_at_ms: now_ms(),
    };
    match state.store.create_user(record).await {
        Ok(()) => {
            tracing::info!(user = %req.username, "registered");
            Ok(Reply::Registered(Registered {
                username: req.username,
            }))
        }
        Err(StoreError::AlreadyExists) => Err(HandlerError::UsernameTaken),
        Err(e) => Err(e.into()),
    }
}

/// # LoginStart
/// - Only before login. Replaces any outstanding challenge.
/// - Replies with a fresh 32-byte nonce valid for the configured TTL.
///
/// # Errors
/// [`HandlerError::InvalidState`], [`HandlerError::UnknownUser`], store failures.
pub async fn login_start(
    state: &AppState,
    conn: &mut Connection,
    req: LoginStart,
) -> Result<Reply, HandlerError> {
    if conn.is_authenticated() {
        return Err(HandlerError::InvalidState("already logged in"));
    }
    let user = state
        .store
        .find_user(&req.username)
        .await?
        .ok_or(HandlerError::UnknownUser)?;
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    conn.auth = Auth::ChallengeSent {
        user,
        nonce,
        expires: Instant::now() + state.challenge_ttl,
    };
    Ok(Reply::Challenge(Challenge {
        nonce,
        expires_in_secs: u32::try_from(state.challenge_ttl.as_secs()).unwrap_or(u32::MAX),
    }))
}

/// # LoginProof
/// - Consumes the outstanding challenge whatever the outcome, so a proof can never be
///   tried twice against one nonce.
/// - The proof must sign (username, nonce, this server's id) with the account's key as it
///   was when the challenge was issued, and that key must still be current once the
///   connection is registered: registering first and reading the key after means a
///   rotation either shows up in that read or comes after the registration, and then
///   ends this connection with the user's others.
/// - On success the connection is registered with the hub and receives pushes for every
///   room the user is a member of.
///
/// # Errors
/// [`HandlerError::AuthFailed`] (no challenge, or bad signature),
/// [`HandlerError::KeyRotated`] (the key was rotated during the login; the session then
/// closes), [`HandlerError::ChallengeExpired`], [`HandlerError::InvalidState`], store
/// failures.
pub async fn login_proof(
    state: &AppState,
    conn: &mut Connection,
    req: LoginProof,
) -> Result<Reply, HandlerError> {
    let (user, nonce, expires) = match std::mem::replace(&mut conn.auth, Auth::Anonymous) {
        Auth::ChallengeSent {
            user,
            nonce,
            expires,
        } => (user, nonce, expires),
        already @ Auth::Authenticated { .. } => {
            conn.auth = already;
            return Err(HandlerError::InvalidState("already logged in"));
        }
        Auth::Anonymous => return Err(HandlerError::AuthFailed),
    };
    if Instant::now() > expires {
        return Err(HandlerError::ChallengeExpired);
    }
    let key = keys::public_from_der(&user.public_key)
        .map_err(|e| HandlerError::Internal(format!("stored key unusable: {e}")))?;
    if signing::verify_login(
        &key,
        &user.username,
        &nonce,
        &state.server_id,
        &req.signature,
    )
    .is_err()
    {
        tracing::info!(user = %user.username, "login proof rejected");
        return Err(HandlerError::AuthFailed);
    }
    let rooms = state
        .store
        .rooms_of(&user.username)
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    let registration = conn
        .registration
        .take()
        .ok_or_else(|| HandlerError::Internal("outbound queue already handed over".into()))?;
    state
        .hub
        .connect(conn.id, user.username.canonical(), registration)
        .await
        .map_err(hub_gone)?;
    let current = state.store.find_user(&user.username).await?;
    if current.is_none_or(|current| current.public_key != user.public_key) {
        tracing::info!(user = %user.username, "key rotated during login; proof refused");
        // No registration is left for a later login on this connection: it closes.
        state
            .hub
            .disconnect(conn.id, user.username.canonical())
            .await
            .map_err(hub_gone)?;
        return Err(HandlerError::KeyRotated);
    }
    tracing::info!(user = %user.username, conn = conn.id, "logged in");
    conn.auth = Auth::Authenticated {
        user: user.username.clone(),
    };
    let blocked = state.store.blocked_users(&user.username).await?;
    Ok(Reply::LoggedIn(LoggedIn {
        username: user.username,
        rooms,
        blocked,
    }))
}
