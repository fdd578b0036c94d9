//! Key rotation certificates: how a user moves from one key to the next so that peers can
//! check the move instead of taking the server's word for it.
//!
//! A [`RotationCertificate`] names the user, the old and the new key, when the rotation
//! was made, and the last message counter the rotating device signed with the old key in
//! each room ([`CounterMark`]). Both keys sign the same fields
//! ([`RotationCertificate::signed_fields`]): the old key under
//! [`Purpose::KeyEndorsement`] (the holder of the pinned key hands over), the new key under
//! [`Purpose::KeyRotation`] (proof of possession). A server cannot forge either half, so a
//! key change that does not come with a chain of valid certificates from the key a peer
//! pinned is a substitution, not a rotation.
//!
//! The counter marks bound what the retired key may still vouch for: after a rotation, a
//! message that verifies only under the old key is believed only if its counter is at or
//! below the mark for its room and device. A thief of the old key cannot sign new messages
//! that peers accept.

use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};

use super::keys::{self, Fingerprint};
use super::signing::{self, Purpose};
use super::CryptoError;
use crate::ids::{DeviceId, RoomName, Username};
use crate::protocol::codec;

/// The last counter a device signed with the old key in one room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterMark {
    /// The room.
    pub room: RoomName,
    /// The device that signed.
    pub device: DeviceId,
    /// The highest counter it used there under the old key.
    pub last_counter: u64,
}

/// A signed hand-over from one key to the next (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationCertificate {
    /// Whose key rotates.
    pub username: Username,
    /// The key being retired, SubjectPublicKeyInfo DER.
    #[serde(with = "serde_bytes")]
    pub old_public_key: Vec<u8>,
    /// The key replacing it, SubjectPublicKeyInfo DER.
    #[serde(with = "serde_bytes")]
    pub new_public_key: Vec<u8>,
    /// The rotating client's clock, milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
    /// Per room and device, the last counter signed with the old key.
    pub final_counters: Vec<CounterMark>,
    /// RSA-PSS by the old key over [`Self::signed_fields`], purpose
    /// [`Purpose::KeyEndorsement`].
    #[serde(with = "serde_bytes")]
    pub old_key_signature: Vec<u8>,
    /// RSA-PSS by the new key over [`Self::signed_fields`], purpose
    /// [`Purpose::KeyRotation`].
    #[serde(with = "serde_bytes")]
    pub new_key_signature: Vec<u8>,
}

impl RotationCertificate {
    /// Makes a certificate moving `username` from `old_key` to `new_key`, signed by both.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] if a public key does not encode, or
    /// [`CryptoError::Payload`] if the two keys are the same or the marks do not encode.
    pub fn issue(
        username: &Username,
        old_key: &RsaPrivateKey,
        new_key: &RsaPrivateKey,
        issued_at_ms: u64,
        final_counters: Vec<CounterMark>,
    ) -> Result<Self, CryptoError> {
        let mut cert = Self {
            username: username.clone(),
            old_public_key: keys::public_to_der(&old_key.to_public_key())?,
            new_public_key: keys::public_to_der(&new_key.to_public_key())?,
            issued_at_ms,
            final_counters,
            old_key_signature: Vec::new(),
            new_key_signature: Vec::new(),
        };
        if cert.old_public_key == cert.new_public_key {
            return Err(CryptoError::Payload(
                "the new key equals the old one".into(),
            ));
        }
        let fields = cert.signed_fields()?;
        let refs = fields.iter().map(Vec::as_slice).collect::<Vec<_>>();
        cert.old_key_signature = signing::sign(old_key, Purpose::KeyEndorsement, &refs);
        cert.new_key_signature = signing::sign(new_key, Purpose::KeyRotation, &refs);
        Ok(cert)
    }

    /// The fields both signatures cover: username (canonical), old key DER, new key DER,
    /// `issued_at_ms` (8 bytes, big-endian) and the codec encoding of `final_counters`.
    ///
    /// # Errors
    /// [`CryptoError::Payload`] if the marks do not encode.
    pub fn signed_fields(&self) -> Result<Vec<Vec<u8>>, CryptoError> {
        let marks =
            codec::encode(&self.final_counters).map_err(|e| CryptoError::Payload(e.to_string()))?;
        Ok(vec![
            self.username.canonical().into_bytes(),
            self.old_public_key.clone(),
            self.new_public_key.clone(),
            self.issued_at_ms.to_be_bytes().to_vec(),
            marks,
        ])
    }

    /// Checks that both keys are acceptable RSA keys, that they differ, and that both
    /// signatures verify.
    ///
    /// # Errors
    /// [`CryptoError::InvalidKey`] / [`CryptoError::WeakKey`] for a bad key,
    /// [`CryptoError::Payload`] if the keys are equal, [`CryptoError::BadSignature`].
    pub fn verify(&self) -> Result<(), CryptoError> {
        let old = keys::public_from_der(&self.old_public_key)?;
        let new = keys::public_from_der(&self.new_public_key)?;
        if self.old_public_key == self.new_public_key {
            return Err(CryptoError::Payload(
                "the new key equals the old one".into(),
            ));
        }
        let fields = self.signed_fields()?;
        let refs = fields.iter().map(Vec::as_slice).collect::<Vec<_>>();
        signing::verify(
            &old,
            Purpose::KeyEndorsement,
            &refs,
            &self.old_key_signature,
        )?;
        signing::verify(&new, Purpose::KeyRotation, &refs, &self.new_key_signature)
    }

    /// The retired key's fingerprint.
    #[must_use]
    pub fn old_fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.old_public_key)
    }

    /// The new key's fingerprint.
    #[must_use]
    pub fn new_fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.new_public_key)
    }

    /// The last counter the old key signed in `room` on `device`, if the certificate
    /// names one.
    #[must_use]
    pub fn last_counter(&self, room: &RoomName, device: &DeviceId) -> Option<u64> {
        self.final_counters
            .iter()
            .find(|m| m.room.same_as(room) && m.device == *device)
            .map(|m| m.last_counter)
    }
}

/// Why a chain of certificates does not lead from a pinned key to the current one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No certificate continues the chain from this fingerprint.
    #[error("no rotation certificate leads on from key {0}")]
    Broken(Fingerprint),
    /// A certificate on the path names another user.
    #[error("a rotation certificate names another user")]
    WrongUser,
    /// A certificate on the path does not verify.
    #[error("a rotation certificate does not verify: {0}")]
    Invalid(CryptoError),
}

/// The certificates that lead from `pinned` to `current` for `username`, in order, each
/// verified. `chain` may hold certificates in any order, unrelated ones, invalid ones and
/// cycles (a malicious server chooses it): the search tries every certificate that leads
/// on from a key, never visits a key twice, and ends after at most `chain.len()` steps
/// per path.
///
/// # Errors
/// [`ChainError`] if no verified path exists: the reason met on the way (a certificate
/// for another user, an invalid one), or [`ChainError::Broken`] at the last key reached.
pub fn follow_chain<'a>(
    username: &Username,
    pinned: &Fingerprint,
    current: &Fingerprint,
    chain: &'a [RotationCertificate],
) -> Result<Vec<&'a RotationCertificate>, ChainError> {
    let mut path = Vec::new();
    let mut visited = vec![*pinned];
    let mut failure = ChainError::Broken(*pinned);
    if search(
        username,
        *pinned,
        current,
        chain,
        &mut visited,
        &mut path,
        &mut failure,
    ) {
        Ok(path)
    } else {
        Err(failure)
    }
}

/// Depth-first search for [`follow_chain`]: extends `path` from `at` to `current`.
fn search<'a>(
    username: &Username,
    at: Fingerprint,
    current: &Fingerprint,
    chain: &'a [RotationCertificate],
    visited: &mut Vec<Fingerprint>,
    path: &mut Vec<&'a RotationCertificate>,
    failure: &mut ChainError,
) -> bool {
    if at == *current {
        return true;
    }
    if matches!(failure, ChainError::Broken(_)) {
        // The deepest key reached so far, unless a worse reason was met on the way.
        *failure = ChainError::Broken(at);
    }
    for cert in chain.iter().filter(|c| c.old_fingerprint() == at) {
        let next = cert.new_fingerprint();
        if visited.contains(&next) {
            continue;
        }
        if !cert.username.same_as(username) {
            *failure = ChainError::WrongUser;
            continue;
        }
        if let Err(e) = cert.verify() {
            *failure = ChainError::Invalid(e);
            continue;
        }
        visited.push(next);
        path.push(cert);
        if search(username, next, current, chain, visited, path, failure) {
            return true;
        }
        path.pop();
    }
    false
}
