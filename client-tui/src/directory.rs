//! The key directory: every user's current public key as this session has seen it, and
//! whether the user trusts it, decided against the [`PinStore`].
//!
//! Every key the server reports (join snapshots, `MemberJoined`, `KeyChanged`, the current
//! members on a recipient mismatch, `GetUserKey`) goes through [`KeyDirectory::observe`].
//! The fingerprint is recomputed here from the DER; the server's `fingerprint` field is
//! never read. A first sight is pinned (trust on first use); a key that differs from the
//! pin is recorded as *unaccepted*: nothing is encrypted to it and nothing signed by it is
//! believed until [`KeyDirectory::accept`] re-pins it.
//!
//! Keys that were trusted earlier in the session and then replaced are kept (in memory
//! only) so that older messages signed with them still verify.

use std::collections::HashMap;

use shared::crypto::keys::{self, Fingerprint};
use shared::crypto::RsaPublicKey;
use shared::protocol::MemberInfo;
use shared::Username;

use crate::identity::Identity;
use crate::pins::{PinError, PinStatus, PinStore};

/// Whether a member's current key may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    /// The key matches the pin (or was pinned on first sight).
    Trusted,
    /// The key differs from the pinned one and the user has not accepted the change.
    Unaccepted {
        /// The fingerprint the user accepted earlier.
        pinned: Fingerprint,
    },
    /// The server sent something that is not an acceptable RSA public key.
    Invalid {
        /// What is wrong with it.
        reason: String,
    },
}

/// A user's key as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The user.
    pub username: Username,
    /// The fingerprint the client computed from the key it was given.
    pub fingerprint: Fingerprint,
    /// Whether that key is trusted.
    pub status: KeyStatus,
}

/// A key change waiting for the user's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// The user whose key changed.
    pub username: Username,
    /// The fingerprint pinned before.
    pub pinned_fingerprint: Fingerprint,
    /// The fingerprint of the key the server now presents.
    pub new_fingerprint: Fingerprint,
}

/// Something the user must be told about after observing a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// The key differs from the pin.
    Changed(KeyChange),
    /// The key is unusable.
    Invalid {
        /// Whose key.
        username: Username,
        /// What is wrong with it.
        reason: String,
    },
}

/// One user's current key.
#[derive(Debug, Clone)]
struct KnownKey {
    username: Username,
    /// `None` when the DER did not parse or was unacceptable.
    key: Option<RsaPublicKey>,
    fingerprint: Fingerprint,
    status: KeyStatus,
}

impl KnownKey {
    fn view(&self) -> MemberView {
        MemberView {
            username: self.username.clone(),
            fingerprint: self.fingerprint,
            status: self.status.clone(),
        }
    }
}

/// Which keys may verify a sender's signatures.
#[derive(Debug, Clone)]
pub(crate) enum SenderKeys {
    /// Never seen: the caller should fetch the key (`GetUserKey`) and observe it.
    Unknown,
    /// Keys to try, current trusted key first. `current_unaccepted` says the current key
    /// is an unaccepted change (so a failed verification means "untrusted", not "forged").
    Known {
        keys: Vec<RsaPublicKey>,
        current_unaccepted: bool,
    },
}

/// Why a recipient cannot be encrypted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotUsable {
    /// The client has never seen the user's key.
    Unknown,
    /// The key is unaccepted or invalid.
    Untrusted,
}

/// Current keys, trust decisions and the pins behind them.
#[derive(Debug)]
pub(crate) struct KeyDirectory {
    pins: PinStore,
    /// Canonical username → current key.
    current: HashMap<String, KnownKey>,
    /// Canonical username → keys trusted earlier in this session, newest first.
    retired: HashMap<String, Vec<RsaPublicKey>>,
}

impl KeyDirectory {
    pub(crate) fn new(pins: PinStore) -> Self {
        Self {
            pins,
            current: HashMap::new(),
            retired: HashMap::new(),
        }
    }

    /// Records the user's own key as current and pins it unconditionally: the client holds
    /// the private key, so no server claim can override it.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted.
    pub(crate) fn set_own(&mut self, identity: &Identity) -> Result<(), PinError> {
        self.pins
            .pin(identity.username(), &identity.fingerprint())?;
        self.replace(KnownKey {
            username: identity.username().clone(),
            key: Some(identity.public_key().clone()),
            fingerprint: identity.fingerprint(),
            status: KeyStatus::Trusted,
        });
        Ok(())
    }

    /// Runs a key reported by the server through pin checking and records it as the
    /// user's current key. Returns the resulting view and, the first time a given bad key
    /// is seen, an alarm to raise.
    ///
    /// # Errors
    /// [`PinError`] if a first-sight pin cannot be persisted (the key is then not
    /// trusted).
    pub(crate) fn observe(
        &mut self,
        info: &MemberInfo,
    ) -> Result<(MemberView, Option<Alarm>), PinError> {
        let name = info.username.canonical();
        let fingerprint = Fingerprint::of_der(&info.public_key);
        if let Some(known) = self.current.get(&name) {
            if known.fingerprint == fingerprint {
                return Ok((known.view(), None));
            }
        }
        let (key, status) = match keys::public_from_der(&info.public_key) {
            Err(e) => (
                None,
                KeyStatus::Invalid {
                    reason: e.to_string(),
                },
            ),
            Ok(key) => match self.pins.pin_if_new(&info.username, &fingerprint)? {
                PinStatus::Unknown | PinStatus::Matches => (Some(key), KeyStatus::Trusted),
                PinStatus::Mismatch { pinned } => (Some(key), KeyStatus::Unaccepted { pinned }),
            },
        };
        let alarm = match &status {
            KeyStatus::Trusted => None,
            KeyStatus::Unaccepted { pinned } => Some(Alarm::Changed(KeyChange {
                username: info.username.clone(),
                pinned_fingerprint: *pinned,
                new_fingerprint: fingerprint,
            })),
            KeyStatus::Invalid { reason } => Some(Alarm::Invalid {
                username: info.username.clone(),
                reason: reason.clone(),
            }),
        };
        let known = KnownKey {
            username: info.username.clone(),
            key,
            fingerprint,
            status,
        };
        let view = known.view();
        self.replace(known);
        Ok((view, alarm))
    }

    /// Accepts the unaccepted current key of `username`: re-pins it and trusts it.
    /// Returns its fingerprint, or `None` if there is no unaccepted change for the user.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted (nothing changes then).
    pub(crate) fn accept(&mut self, username: &Username) -> Result<Option<Fingerprint>, PinError> {
        let Some(known) = self.current.get_mut(&username.canonical()) else {
            return Ok(None);
        };
        if !matches!(known.status, KeyStatus::Unaccepted { .. }) {
            return Ok(None);
        }
        self.pins.pin(&known.username, &known.fingerprint)?;
        known.status = KeyStatus::Trusted;
        Ok(Some(known.fingerprint))
    }

    /// The user's current key, if it is trusted.
    ///
    /// # Errors
    /// [`NotUsable`] saying why not.
    pub(crate) fn recipient_key(&self, username: &Username) -> Result<RsaPublicKey, NotUsable> {
        match self.current.get(&username.canonical()) {
            None => Err(NotUsable::Unknown),
            Some(KnownKey {
                key: Some(key),
                status: KeyStatus::Trusted,
                ..
            }) => Ok(key.clone()),
            Some(_) => Err(NotUsable::Untrusted),
        }
    }

    /// The keys that may verify `username`'s signatures.
    pub(crate) fn sender_keys(&self, username: &Username) -> SenderKeys {
        let name = username.canonical();
        let Some(known) = self.current.get(&name) else {
            return SenderKeys::Unknown;
        };
        let mut keys = Vec::new();
        if let (Some(key), KeyStatus::Trusted) = (&known.key, &known.status) {
            keys.push(key.clone());
        }
        keys.extend(self.retired.get(&name).into_iter().flatten().cloned());
        SenderKeys::Known {
            keys,
            current_unaccepted: matches!(known.status, KeyStatus::Unaccepted { .. }),
        }
    }

    /// How the client sees `username`'s key, if it has seen one.
    pub(crate) fn view(&self, username: &Username) -> Option<MemberView> {
        self.current.get(&username.canonical()).map(KnownKey::view)
    }

    /// Every key change still waiting for the user's decision.
    pub(crate) fn pending_changes(&self) -> Vec<KeyChange> {
        let mut out: Vec<KeyChange> = self
            .current
            .values()
            .filter_map(|k| match k.status {
                KeyStatus::Unaccepted { pinned } => Some(KeyChange {
                    username: k.username.clone(),
                    pinned_fingerprint: pinned,
                    new_fingerprint: k.fingerprint,
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|a| a.username.canonical());
        out
    }

    /// Makes `new` the current key, keeping the previous one for verification if it was
    /// trusted.
    fn replace(&mut self, new: KnownKey) {
        let name = new.username.canonical();
        if let (Some(retired), Some(key)) = (self.retired.get_mut(&name), &new.key) {
            retired.retain(|k| k != key);
        }
        if let Some(KnownKey {
            key: Some(old),
            status: KeyStatus::Trusted,
            fingerprint,
            ..
        }) = self.current.insert(name.clone(), new)
        {
            let is_current = self
                .current
                .get(&name)
                .is_some_and(|k| k.fingerprint == fingerprint);
            let retired = self.retired.entry(name).or_default();
            if !is_current && !retired.contains(&old) {
                retired.insert(0, old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(n: usize) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        let pem = std::fs::read_to_string(path).expect("fixture exists");
        let key = keys::private_from_pem(&pem, None).expect("parses");
        keys::public_to_der(&key.to_public_key()).expect("encodes")
    }

    fn info(name: &str, public_key: Vec<u8>) -> MemberInfo {
        MemberInfo {
            username: Username::parse(name).expect("valid"),
            public_key,
            // Deliberately wrong: the directory must never read it.
            fingerprint: "0000".into(),
        }
    }

    #[test]
    fn first_sight_is_trusted_and_change_needs_acceptance() {
        let mut dir = KeyDirectory::new(PinStore::in_memory());
        let bob = Username::parse("bob").expect("valid");
        let (view, alarm) = dir.observe(&info("bob", der(1))).expect("observes");
        assert_eq!(view.status, KeyStatus::Trusted);
        assert_eq!(view.fingerprint, Fingerprint::of_der(&der(1)));
        assert!(alarm.is_none());
        assert!(dir.recipient_key(&bob).is_ok());

        let (view, alarm) = dir.observe(&info("Bob", der(2))).expect("observes");
        let pinned = Fingerprint::of_der(&der(1));
        assert_eq!(view.status, KeyStatus::Unaccepted { pinned });
        assert!(matches!(alarm, Some(Alarm::Changed(_))));
        assert_eq!(dir.recipient_key(&bob), Err(NotUsable::Untrusted));
        assert_eq!(dir.pending_changes().len(), 1);
        // The same change again raises no second alarm.
        let (_, again) = dir.observe(&info("bob", der(2))).expect("observes");
        assert!(again.is_none());
        // Old messages still verify with the previously trusted key, new ones do not.
        match dir.sender_keys(&bob) {
            SenderKeys::Known {
                keys,
                current_unaccepted,
            } => {
                assert!(current_unaccepted);
                assert_eq!(keys.len(), 1);
            }
            SenderKeys::Unknown => panic!("bob is known"),
        }

        assert_eq!(
            dir.accept(&bob).expect("accepts"),
            Some(Fingerprint::of_der(&der(2)))
        );
        assert!(dir.recipient_key(&bob).is_ok());
        assert!(dir.pending_changes().is_empty());
        assert_eq!(dir.accept(&bob).expect("no-op"), None);
    }

    #[test]
    fn garbage_key_is_invalid() {
        let mut dir = KeyDirectory::new(PinStore::in_memory());
        let (view, alarm) = dir.observe(&info("eve", vec![1, 2, 3])).expect("observes");
        assert!(matches!(view.status, KeyStatus::Invalid { .. }));
        assert!(matches!(alarm, Some(Alarm::Invalid { .. })));
        let eve = Username::parse("eve").expect("valid");
        assert_eq!(dir.recipient_key(&eve), Err(NotUsable::Untrusted));
    }
}
