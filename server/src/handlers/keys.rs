//! Public keys: looking them up, rotating one's own, and the rotation history.
//!
//! The server hands out keys but never vouches for them: clients pin fingerprints on first
//! sight and warn when a pinned key changes. A rotation carries a certificate signed by
//! the old key (the hand-over) and the new key (proof of possession); the server keeps the
//! newest certificates, so a client that pinned an older key can follow the chain to the
//! current one instead of taking the server's word. A rotation is announced to everyone
//! who shares a room with the user and ends the user's other sessions, which logged in
//! with the retired key.

use std::collections::BTreeMap;

use shared::crypto::keys::Fingerprint;
use shared::crypto::rotation::RotationCertificate;
use shared::crypto::CryptoError;
use shared::protocol::{
    codec, GetKeyHistory, GetUserKey, KeyHistory, KeyRotated, Push, Reply, RotateKey,
    MAX_FRAME_BYTES, MAX_ROTATION_MARKS,
};
use shared::{RoomName, Username};

use super::{encode_push, hub_gone, member_info, AppState};
use crate::error::HandlerError;
use crate::hub::{ConnId, Eviction};
use crate::store::{StoreError, UserRecord};

/// Room a `KeyHistory` reply keeps for everything but the certificates (frame tags, the
/// request id, the username, the list's length): far more than they take.
const KEY_HISTORY_OVERHEAD: usize = 1024;

/// # GetUserKey
/// The user's current key and fingerprint.
///
/// # Errors
/// [`HandlerError::UnknownUser`], store failures.
pub async fn get(
    state: &AppState,
    _user: &Username,
    req: GetUserKey,
) -> Result<Reply, HandlerError> {
    Ok(Reply::UserKey(member_info(
        &known_user(state, &req.username).await?,
    )))
}

/// # RotateKey
/// - The certificate must name the user, carry at most `MAX_ROTATION_MARKS` counter marks,
///   retire the account's current key, introduce an acceptable key (2048–4096 bits,
///   e = 65537), and both signatures must verify.
/// - The key is replaced only if it is still the one the certificate retires (the store
///   compares and swaps): of two concurrent rotations, one wins and the other gets
///   `AuthFailed`. The certificate joins the user's key history.
/// - The user's other logged-in connections are closed with `CLOSE_KEY_ROTATED`; this one
///   stays.
/// - Everyone sharing a room with the user gets `KeyChanged` naming the shared rooms.
///
/// # Errors
/// [`HandlerError::InvalidInput`] (too many marks, an unacceptable new key),
/// [`HandlerError::AuthFailed`], [`HandlerError::UnknownUser`], store failures.
pub async fn rotate(
    state: &AppState,
    conn: ConnId,
    user: &Username,
    req: RotateKey,
) -> Result<Reply, HandlerError> {
    let cert = req.certificate;
    if cert.final_counters.len() > MAX_ROTATION_MARKS {
        return Err(HandlerError::InvalidInput(format!(
            "a rotation certificate carries at most {MAX_ROTATION_MARKS} counter marks"
        )));
    }
    let current = known_user(state, user).await?;
    if !cert.username.same_as(user) || cert.old_public_key != current.public_key {
        return Err(HandlerError::AuthFailed);
    }
    cert.verify().map_err(|e| match e {
        CryptoError::BadSignature => HandlerError::AuthFailed,
        other => HandlerError::InvalidInput(other.to_string()),
    })?;
    match state.store.rotate_key(user, &cert).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(HandlerError::UnknownUser),
        // Another rotation replaced the key since it was read above.
        Err(StoreError::Conflict) => return Err(HandlerError::AuthFailed),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %user, "key rotated");
    // The other sessions logged in with the retired key: they end first, so none of them
    // acts on the new state.
    state
        .hub
        .evict(user.canonical(), Some(conn), Eviction::KeyRotated)
        .await
        .map_err(hub_gone)?;

    // Who shares which rooms with the user.
    let mut shared_rooms: BTreeMap<String, Vec<RoomName>> = BTreeMap::new();
    shared_rooms.insert(user.canonical(), Vec::new());
    for room in state.store.rooms_of(user).await? {
        for member in state.store.member_names(&room.key).await? {
            shared_rooms
                .entry(member.canonical())
                .or_default()
                .push(room.name.clone());
        }
    }
    let fingerprint = Fingerprint::of_der(&cert.new_public_key).to_string();
    let member = member_info(&UserRecord {
        public_key: cert.new_public_key,
        ..current
    });
    let mut frames = Vec::with_capacity(shared_rooms.len());
    for (recipient, rooms) in shared_rooms {
        let frame = encode_push(Push::KeyChanged {
            member: member.clone(),
            rooms,
        })?;
        frames.push((recipient, frame.into()));
    }
    state
        .hub
        .deliver(frames, Some(conn))
        .await
        .map_err(hub_gone)?;
    Ok(Reply::KeyRotated(KeyRotated { fingerprint }))
}

/// # GetKeyHistory
/// The rotation certificates that lead to the user's current key, oldest first: the
/// newest `MAX_KEY_HISTORY` the store keeps, fewer if they would not fit in one frame
/// (certificates with many counter marks are large; the oldest are left out).
///
/// # Errors
/// [`HandlerError::UnknownUser`], store failures.
pub async fn history(
    state: &AppState,
    _user: &Username,
    req: GetKeyHistory,
) -> Result<Reply, HandlerError> {
    let record = known_user(state, &req.username).await?;
    let certificates = match state.store.key_history(&req.username).await {
        Ok(certificates) => certificates,
        Err(StoreError::NotFound) => return Err(HandlerError::UnknownUser),
        Err(e) => return Err(e.into()),
    };
    Ok(Reply::KeyHistory(KeyHistory {
        username: record.username,
        certificates: newest_that_fit(certificates, MAX_FRAME_BYTES - KEY_HISTORY_OVERHEAD)?,
    }))
}

/// The newest of `certificates` (oldest first) whose encodings add up to at most
/// `budget` bytes, still oldest first.
///
/// # Errors
/// [`HandlerError::Internal`] if a stored certificate does not encode.
fn newest_that_fit(
    mut certificates: Vec<RotationCertificate>,
    budget: usize,
) -> Result<Vec<RotationCertificate>, HandlerError> {
    let mut used = 0usize;
    let mut keep = 0;
    for cert in certificates.iter().rev() {
        let size = codec::encode(cert)
            .map_err(|e| HandlerError::Internal(format!("encode a stored certificate: {e}")))?
            .len();
        used = used.saturating_add(size);
        if used > budget {
            break;
        }
        keep += 1;
    }
    Ok(certificates.split_off(certificates.len() - keep))
}

/// The account named `username`.
///
/// # Errors
/// [`HandlerError::UnknownUser`], store failures.
async fn known_user(state: &AppState, username: &Username) -> Result<UserRecord, HandlerError> {
    state
        .store
        .find_user(username)
        .await?
        .ok_or(HandlerError::UnknownUser)
}

#[cfg(test)]
mod tests {
    use shared::crypto::rotation::CounterMark;
    use shared::protocol::{ServerMsg, MAX_KEY_HISTORY};
    use shared::{DeviceId, RequestId};

    use super::*;

    /// A certificate as large as a rotation may make it: `MAX_ROTATION_MARKS` marks with
    /// the longest room names. (The store and this code never check signatures.)
    fn largest_certificate(issued_at_ms: u64) -> RotationCertificate {
        let room =
            |i: usize| RoomName::parse(&format!("r{i:0>47}")).expect("a 48-character room name");
        RotationCertificate {
            username: Username::parse(&"u".repeat(32)).expect("a 32-character username"),
            old_public_key: vec![1; 550],
            new_public_key: vec![2; 550],
            issued_at_ms,
            final_counters: (0..MAX_ROTATION_MARKS)
                .map(|i| CounterMark {
                    room: room(i),
                    device: DeviceId([7; 16]),
                    last_counter: u64::MAX,
                })
                .collect(),
            old_key_signature: vec![3; 512],
            new_key_signature: vec![4; 512],
        }
    }

    #[test]
    fn a_full_history_of_the_largest_certificates_is_cut_to_one_frame() {
        let full: Vec<_> = (0..MAX_KEY_HISTORY as u64)
            .map(largest_certificate)
            .collect();
        let kept =
            newest_that_fit(full.clone(), MAX_FRAME_BYTES - KEY_HISTORY_OVERHEAD).expect("encodes");
        assert!(
            kept.len() < full.len(),
            "the protocol's limits allow more than a frame"
        );
        assert!(!kept.is_empty());
        assert_eq!(
            kept[..],
            full[full.len() - kept.len()..],
            "the newest, oldest first"
        );
        let reply = ServerMsg::Reply {
            request_id: RequestId(u64::MAX),
            reply: Reply::KeyHistory(KeyHistory {
                username: Username::parse(&"u".repeat(32)).expect("valid"),
                certificates: kept,
            }),
        };
        codec::encode_server(&reply).expect("the reply fits in a frame");
    }

    #[test]
    fn small_histories_are_returned_whole() {
        let small: Vec<_> = (0..3)
            .map(|i| RotationCertificate {
                final_counters: Vec::new(),
                ..largest_certificate(i)
            })
            .collect();
        assert_eq!(
            newest_that_fit(small.clone(), 1 << 20).expect("encodes"),
            small
        );
        assert!(newest_that_fit(small, 10).expect("encodes").is_empty());
    }
}
