//! The key directory: every user's current public key as this session has seen it, and
//! whether the user trusts it, decided against the [`PinStore`].
//!
//! Every key the server reports (join snapshots, `MemberJoined`, `KeyChanged`, the current
//! members on a recipient mismatch, `GetUserKey`) goes through [`KeyDirectory::observe`].
//! The fingerprint is recomputed here from the DER; the server's `fingerprint` field is
//! never read. A first sight is pinned (trust on first use); a key that differs from the
//! pin is recorded as *unaccepted*: nothing is encrypted to it and nothing signed by it is
//! believed until [`KeyDirectory::accept`] re-pins it, or a verified rotation chain moves
//! the pin ([`KeyDirectory::rotated`], decided by the session). Until then the pinned key
//! keeps verifying the user's messages.
//!
//! The user's own key is fixed from the client's side: the server can never change it. A
//! different key presented for the user raises [`Alarm::OwnKey`] and changes nothing.

use std::collections::HashMap;

use shared::crypto::keys::{self, Fingerprint};
use shared::crypto::rotation::CounterMark;
use shared::crypto::RsaPublicKey;
use shared::protocol::MemberInfo;
use shared::Username;

use crate::identity::Identity;
use crate::ledger::RetiredKey;
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
    /// Whether the user compared the pinned fingerprint out of band and marked it
    /// verified (as opposed to trusting it on first use).
    pub verified: bool,
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
    /// The pinned key was verified out of band: the strongest warning.
    pub verified: bool,
}

/// Something the user must be told about after observing a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Alarm {
    /// The key differs from the pin and no rotation chain leads to it.
    Changed(KeyChange),
    /// The key is unusable.
    Invalid {
        /// Whose key.
        username: Username,
        /// What is wrong with it.
        reason: String,
    },
    /// The server presents another key for the user themself.
    OwnKey {
        /// The fingerprint it presented.
        presented: Fingerprint,
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

/// A key that may verify a sender's signatures, and how far.
#[derive(Debug, Clone)]
pub(crate) struct SenderKey {
    pub(crate) key: RsaPublicKey,
    /// `None`: any message. `Some(marks)`: a retired key, valid only for messages whose
    /// counter is at or below the mark for their room and device.
    pub(crate) limit: Option<Vec<CounterMark>>,
}

/// Which keys may verify a sender's signatures.
#[derive(Debug, Clone)]
pub(crate) enum SenderKeys {
    /// Never seen: the caller should fetch the key (`GetUserKey`) and observe it.
    Unknown,
    /// Keys to try, current trusted key first. `current_unaccepted` says the current key
    /// is an unaccepted change (so a failed verification means "untrusted", not "forged").
    Known {
        keys: Vec<SenderKey>,
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
    /// The logged-in user's canonical name, once known.
    own: Option<String>,
    /// Canonical username → current key.
    current: HashMap<String, KnownKey>,
    /// Canonical username → trusted keys that an unaccepted key replaced in this session,
    /// newest first: the pin still names one of them, so they still verify.
    superseded: HashMap<String, Vec<RsaPublicKey>>,
}

impl KeyDirectory {
    pub(crate) fn new(pins: PinStore) -> Self {
        Self {
            pins,
            own: None,
            current: HashMap::new(),
            superseded: HashMap::new(),
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
        self.own = Some(identity.username().canonical());
        self.current.insert(
            identity.username().canonical(),
            KnownKey {
                username: identity.username().clone(),
                key: Some(identity.public_key().clone()),
                fingerprint: identity.fingerprint(),
                status: KeyStatus::Trusted,
            },
        );
        Ok(())
    }

    /// The pinned fingerprint, if the server reports a key for another user that differs
    /// from it (and was not already seen): a rotation chain may explain the change.
    pub(crate) fn unexplained_change(&self, info: &MemberInfo) -> Option<Fingerprint> {
        let name = info.username.canonical();
        if self.own.as_ref() == Some(&name) {
            return None;
        }
        let fingerprint = Fingerprint::of_der(&info.public_key);
        if self
            .current
            .get(&name)
            .is_some_and(|k| k.fingerprint == fingerprint)
        {
            return None;
        }
        match self.pins.check(&info.username, &fingerprint) {
            PinStatus::Mismatch { pinned } => Some(pinned),
            PinStatus::Unknown | PinStatus::Matches => None,
        }
    }

    /// Moves the pin of `username` to `fingerprint` along a verified rotation chain.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted.
    pub(crate) fn rotated(
        &mut self,
        username: &Username,
        fingerprint: &Fingerprint,
    ) -> Result<(), PinError> {
        self.superseded.remove(&username.canonical());
        self.pins.pin_rotated(username, fingerprint)
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
                return Ok((self.view_of(known), None));
            }
            if self.own.as_ref() == Some(&name) {
                let alarm = Alarm::OwnKey {
                    presented: fingerprint,
                };
                return Ok((self.view_of(known), Some(alarm)));
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
                verified: self.pins.is_verified(&info.username),
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
        let view = self.view_of(&known);
        self.replace(known);
        Ok((view, alarm))
    }

    /// Accepts the unaccepted current key of `username`: re-pins it and trusts it.
    /// Returns its fingerprint and the keys it replaces (to retire), or `None` if there is
    /// no unaccepted change for the user.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted (nothing changes then).
    pub(crate) fn accept(
        &mut self,
        username: &Username,
    ) -> Result<Option<(Fingerprint, Vec<RsaPublicKey>)>, PinError> {
        let name = username.canonical();
        let Some(known) = self.current.get_mut(&name) else {
            return Ok(None);
        };
        if !matches!(known.status, KeyStatus::Unaccepted { .. }) {
            return Ok(None);
        }
        self.pins.pin(&known.username, &known.fingerprint)?;
        known.status = KeyStatus::Trusted;
        let fingerprint = known.fingerprint;
        let replaced = self.superseded.remove(&name).unwrap_or_default();
        Ok(Some((fingerprint, replaced)))
    }

    /// Marks `username`'s current key verified, if it is trusted and pinned. Returns its
    /// fingerprint, or `None` if there is no such key.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted.
    pub(crate) fn mark_verified(
        &mut self,
        username: &Username,
    ) -> Result<Option<Fingerprint>, PinError> {
        let Some(known) = self.current.get(&username.canonical()) else {
            return Ok(None);
        };
        if known.status != KeyStatus::Trusted {
            return Ok(None);
        }
        let fingerprint = known.fingerprint;
        Ok(self
            .pins
            .set_verified(username, &fingerprint)?
            .then_some(fingerprint))
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

    /// The keys that may verify `username`'s signatures: the current trusted key, keys
    /// an unaccepted change superseded, then `retired` keys within their limits.
    pub(crate) fn sender_keys(&self, username: &Username, retired: &[RetiredKey]) -> SenderKeys {
        let name = username.canonical();
        let Some(known) = self.current.get(&name) else {
            return SenderKeys::Unknown;
        };
        let mut keys = Vec::new();
        if let (Some(key), KeyStatus::Trusted) = (&known.key, &known.status) {
            keys.push(SenderKey {
                key: key.clone(),
                limit: None,
            });
        }
        for key in self.superseded.get(&name).into_iter().flatten() {
            keys.push(SenderKey {
                key: key.clone(),
                limit: None,
            });
        }
        for old in retired {
            if let Ok(key) = keys::public_from_der(&old.public_key) {
                keys.push(SenderKey {
                    key,
                    limit: Some(old.marks.clone()),
                });
            }
        }
        SenderKeys::Known {
            keys,
            current_unaccepted: matches!(known.status, KeyStatus::Unaccepted { .. }),
        }
    }

    /// How the client sees `username`'s key, if it has seen one.
    pub(crate) fn view(&self, username: &Username) -> Option<MemberView> {
        self.current
            .get(&username.canonical())
            .map(|k| self.view_of(k))
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
                    verified: self.pins.is_verified(&k.username),
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|a| a.username.canonical());
        out
    }

    fn view_of(&self, known: &KnownKey) -> MemberView {
        MemberView {
            username: known.username.clone(),
            fingerprint: known.fingerprint,
            status: known.status.clone(),
            verified: known.status == KeyStatus::Trusted
                && self.pins.is_verified(&known.username)
                && self.pins.get(&known.username) == Some(known.fingerprint),
        }
    }

    /// Makes `new` the current key. A trusted key that an unaccepted one replaces is kept
    /// as superseded (the pin still names it); a key the pin no longer names is dropped
    /// here (the session retires it with limits).
    fn replace(&mut self, new: KnownKey) {
        let name = new.username.canonical();
        let unaccepted = matches!(new.status, KeyStatus::Unaccepted { .. });
        if let Some(key) = &new.key {
            if let Some(list) = self.superseded.get_mut(&name) {
                list.retain(|k| k != key);
            }
        }
        if let Some(KnownKey {
            key: Some(old),
            status: KeyStatus::Trusted,
            ..
        }) = self.current.insert(name.clone(), new)
        {
            if unaccepted {
                let list = self.superseded.entry(name).or_default();
                if !list.contains(&old) {
                    list.insert(0, old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(n: usize) -> Vec<u8> {
        keys::public_to_der(&crate::test_keys::key(n).to_public_key()).expect("encodes")
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
        match dir.sender_keys(&bob, &[]) {
            SenderKeys::Known {
                keys,
                current_unaccepted,
            } => {
                assert!(current_unaccepted);
                assert_eq!(keys.len(), 1);
                assert!(keys[0].limit.is_none(), "the pinned key is not limited");
            }
            SenderKeys::Unknown => panic!("bob is known"),
        }

        let (accepted, replaced) = dir.accept(&bob).expect("accepts").expect("pending");
        assert_eq!(accepted, Fingerprint::of_der(&der(2)));
        assert_eq!(replaced.len(), 1, "the old key is handed back for retiring");
        assert!(dir.recipient_key(&bob).is_ok());
        assert!(dir.pending_changes().is_empty());
        assert_eq!(dir.accept(&bob).expect("no-op"), None);
    }

    #[test]
    fn the_own_key_never_changes_and_verification_is_shown() {
        let mut dir = KeyDirectory::new(PinStore::in_memory());
        let pem = std::fs::read_to_string(format!(
            "{}/../tests/fixtures/keys/rsa2048-00.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture");
        let key = keys::private_from_pem(&pem, None).expect("parses");
        let me = Identity::new(Username::parse("alice").expect("valid"), key).expect("identity");
        dir.set_own(&me).expect("pins");
        let (view, alarm) = dir.observe(&info("alice", der(3))).expect("observes");
        assert_eq!(view.fingerprint, me.fingerprint(), "own key unchanged");
        assert_eq!(view.status, KeyStatus::Trusted);
        assert_eq!(
            alarm,
            Some(Alarm::OwnKey {
                presented: Fingerprint::of_der(&der(3))
            })
        );
        assert_eq!(dir.accept(me.username()).expect("no-op"), None);
        assert!(dir.unexplained_change(&info("alice", der(3))).is_none());

        let bob = Username::parse("bob").expect("valid");
        dir.observe(&info("bob", der(1))).expect("observes");
        assert_eq!(
            dir.mark_verified(&bob).expect("saves"),
            Some(Fingerprint::of_der(&der(1)))
        );
        assert!(dir.view(&bob).expect("seen").verified);
        assert_eq!(
            dir.unexplained_change(&info("bob", der(2))),
            Some(Fingerprint::of_der(&der(1)))
        );
        let (view, alarm) = dir.observe(&info("bob", der(2))).expect("observes");
        assert!(!view.verified);
        match alarm {
            Some(Alarm::Changed(change)) => assert!(change.verified, "strongest warning"),
            other => panic!("expected a change alarm, got {other:?}"),
        }
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
