//! The local cache of messages this client already decrypted and verified, so a room
//! opens without redoing the RSA work for every message it showed before.
//!
//! One file per account and server, beside the ledger (`<key>.history-<server id>.json`).
//! Its key is a random AES-256 key, wrapped to the user's own public key and signed with
//! their private key ([`shared::crypto::local`]): only the holder of the private key can
//! read the cache or have written it. Each entry is one message's signed body, sealed
//! with that key and bound (in the AES-GCM associated data) to the room, the `seq` and a
//! SHA-256 digest of the whole [`DeliveredMessage`] as the server delivered it, so:
//!
//! - an entry is used only for byte-identical delivered content: a server that swaps a
//!   message's ciphertext at the same `seq` gets it decrypted and verified afresh;
//! - an entry only ever comes from a message that decrypted, verified and was admitted to
//!   the ledger; on use it is admitted again (the replay checks still apply), and only if
//!   the key that verified it is still one the user trusts for the sender, within its
//!   limit if retired;
//! - a damaged or foreign file, or an entry that fails authentication, is ignored (the
//!   message is decrypted as if never cached).
//!
//! The cache holds at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of ciphertext; the
//! oldest entries go first. It is written atomically like the ledger.
//!
//! ```json
//! { "version": 1, "wrapped_key": "…hex", "signature": "…hex",
//!   "entries": [ { "room": "general", "seq": 7, "stamp": 3, "digest": "…hex",
//!                  "nonce": "…hex", "ciphertext": "…hex" } ] }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::crypto::keys::Fingerprint;
use shared::crypto::local::{LocalKey, SealedRecord, WrappedLocalKey};
use shared::crypto::message::MessageBody;
use shared::crypto::RsaPrivateKey;
use shared::protocol::{codec, DeliveredMessage};
use shared::{ServerId, Username};

use crate::atomic_file;
use crate::directory::SenderKey;
use crate::inbox::{decrypted, vouches, DecryptedMessage};

/// At most this many messages are kept (about 20 pages of 200).
pub(crate) const MAX_ENTRIES: usize = 4096;
/// At most this much ciphertext is kept, so a few long messages cannot grow the file
/// without limit.
pub(crate) const MAX_BYTES: usize = 8 * 1024 * 1024;
/// The file format's version.
const VERSION: u32 = 1;

/// The cache file for the pin store at `pins_path` and the server `server`, beside the
/// ledger.
pub(crate) fn history_cache_path_for(pins_path: &Path, server: &ServerId) -> PathBuf {
    crate::pins::account_file(pins_path, "history", server)
}

/// What an entry seals: the body the sender signed and the key that verified it.
#[derive(Serialize, Deserialize)]
struct Cached {
    /// The fingerprint of the sender key the signature verified under.
    verified_by: [u8; 32],
    body: MessageBody,
}

/// One cached message, still sealed.
struct Entry {
    /// SHA-256 of the delivered message's encoding.
    digest: [u8; 32],
    record: SealedRecord,
    /// Insertion order: the smallest go first when the cache is full.
    stamp: u64,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    wrapped_key: String,
    signature: String,
    entries: Vec<StoredEntry>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    room: String,
    seq: u64,
    stamp: u64,
    digest: String,
    nonce: String,
    ciphertext: String,
}

/// The cache of one account on one server (in memory only without a path).
pub(crate) struct HistoryCache {
    path: Option<PathBuf>,
    key: LocalKey,
    wrapped: WrappedLocalKey,
    /// (canonical room, seq) → entry.
    entries: HashMap<(String, u64), Entry>,
    /// Ciphertext bytes held.
    bytes: usize,
    next_stamp: u64,
    dirty: bool,
}

impl HistoryCache {
    /// Opens the cache at `path` for `owner`. A missing file, or one that is damaged, not
    /// this user's or not unwrappable with `own_key`, starts an empty cache under a fresh
    /// key (written on the next save).
    ///
    /// CPU-bound (one RSA decryption and one verification, or a signature for a fresh
    /// key): run it on the blocking pool.
    ///
    /// # Errors
    /// [`shared::crypto::CryptoError`] if a fresh key cannot be wrapped.
    pub(crate) fn open(
        path: Option<PathBuf>,
        owner: &Username,
        own_key: &RsaPrivateKey,
    ) -> Result<Self, shared::crypto::CryptoError> {
        if let Some(p) = &path {
            match std::fs::read_to_string(p) {
                Ok(text) => match load(&text, owner, own_key) {
                    Ok(cache) => return Ok(Self { path, ..cache }),
                    Err(reason) => {
                        tracing::warn!(%reason, "ignoring the history cache; starting afresh");
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the history cache"),
            }
        }
        let key = LocalKey::generate();
        let wrapped = key.wrap(owner, own_key)?;
        Ok(Self {
            path,
            key,
            wrapped,
            entries: HashMap::new(),
            bytes: 0,
            next_stamp: 0,
            dirty: true,
        })
    }

    /// The cached message for `msg`, if an entry exists for exactly this delivered
    /// content and one of `sender_keys` (the keys trusted for the sender now) is the one
    /// that verified it and still vouches for it.
    pub(crate) fn lookup(
        &self,
        msg: &DeliveredMessage,
        sender_keys: &[SenderKey],
    ) -> Option<DecryptedMessage> {
        let entry = self.entries.get(&(msg.room.canonical(), msg.seq))?;
        let digest = digest(msg)?;
        if entry.digest != digest {
            return None;
        }
        let plain = self
            .key
            .open(
                &context(msg, &digest).each_ref().map(Vec::as_slice),
                &entry.record,
            )
            .map_err(|_| {
                tracing::warn!(seq = msg.seq, "a history cache entry fails authentication")
            })
            .ok()?;
        let cached: Cached = codec::decode(&plain).ok()?;
        let body = cached.body;
        let labelled = body.room.same_as(&msg.room)
            && body.message_id == msg.message_id
            && body.sender.same_as(&msg.sender);
        let trusted = sender_keys.iter().any(|k| {
            Fingerprint::of_key(&k.key).is_ok_and(|f| f.0 == cached.verified_by)
                && vouches(k, &body.room, &body.device, body.counter)
        });
        (labelled && trusted).then(|| decrypted(msg, body))
    }

    /// Remembers `message`, opened from `msg` and verified under `verified_by`. Only call
    /// it for a message that was admitted.
    pub(crate) fn insert(
        &mut self,
        msg: &DeliveredMessage,
        message: &DecryptedMessage,
        verified_by: &SenderKey,
    ) {
        let (Some(digest), Ok(fingerprint)) = (digest(msg), Fingerprint::of_key(&verified_by.key))
        else {
            return;
        };
        let cached = Cached {
            verified_by: fingerprint.0,
            body: MessageBody {
                room: message.room.clone(),
                message_id: message.message_id,
                sender: message.sender.clone(),
                device: message.device,
                counter: message.counter,
                sent_at_ms: message.sent_at_ms,
                recipients: message.recipients.clone(),
                text: message.text.clone(),
            },
        };
        let Ok(plain) = codec::encode(&cached).map(zeroize::Zeroizing::new) else {
            return;
        };
        let context = context(msg, &digest);
        let Ok(record) = self
            .key
            .seal(&context.each_ref().map(Vec::as_slice), &plain)
        else {
            return;
        };
        self.bytes += record.ciphertext.len();
        let entry = Entry {
            digest,
            record,
            stamp: self.next_stamp,
        };
        self.next_stamp += 1;
        if let Some(old) = self.entries.insert((msg.room.canonical(), msg.seq), entry) {
            self.bytes -= old.record.ciphertext.len();
        }
        self.dirty = true;
        self.trim();
    }

    /// Writes the cache if it changed.
    ///
    /// # Errors
    /// An I/O error if the file cannot be written.
    pub(crate) fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let file = CacheFile {
            version: VERSION,
            wrapped_key: hex::encode(&self.wrapped.wrapped),
            signature: hex::encode(&self.wrapped.signature),
            entries: self
                .entries
                .iter()
                .map(|((room, seq), e)| StoredEntry {
                    room: room.clone(),
                    seq: *seq,
                    stamp: e.stamp,
                    digest: hex::encode(e.digest),
                    nonce: hex::encode(e.record.nonce),
                    ciphertext: hex::encode(&e.record.ciphertext),
                })
                .collect(),
        };
        let text = serde_json::to_string(&file).map_err(std::io::Error::other)?;
        atomic_file::write(path, text.as_bytes(), 0o600)?;
        self.dirty = false;
        Ok(())
    }

    /// Drops the oldest entries until both bounds hold.
    fn trim(&mut self) {
        if self.entries.len() <= MAX_ENTRIES && self.bytes <= MAX_BYTES {
            return;
        }
        let mut by_age: Vec<((String, u64), u64)> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.stamp))
            .collect();
        by_age.sort_by_key(|(_, stamp)| *stamp);
        for (key, _) in by_age {
            if self.entries.len() <= MAX_ENTRIES && self.bytes <= MAX_BYTES {
                break;
            }
            if let Some(old) = self.entries.remove(&key) {
                self.bytes -= old.record.ciphertext.len();
            }
        }
    }
}

/// Reads a cache file written for `owner` under a key `own_key` unwraps.
fn load(text: &str, owner: &Username, own_key: &RsaPrivateKey) -> Result<HistoryCache, String> {
    let file: CacheFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.version != VERSION {
        return Err(format!("unknown version {}", file.version));
    }
    let unhex = |s: &str| hex::decode(s).map_err(|e| e.to_string());
    let wrapped = WrappedLocalKey {
        wrapped: unhex(&file.wrapped_key)?,
        signature: unhex(&file.signature)?,
    };
    let key = wrapped
        .unwrap_for(owner, own_key)
        .map_err(|e| format!("the cache key: {e}"))?;
    let mut entries = HashMap::with_capacity(file.entries.len());
    let (mut bytes, mut next_stamp) = (0, 0);
    for e in file.entries {
        let digest: [u8; 32] = unhex(&e.digest)?
            .try_into()
            .map_err(|_| "bad digest length".to_owned())?;
        let nonce: [u8; 12] = unhex(&e.nonce)?
            .try_into()
            .map_err(|_| "bad nonce length".to_owned())?;
        let record = SealedRecord {
            nonce,
            ciphertext: unhex(&e.ciphertext)?,
        };
        bytes += record.ciphertext.len();
        next_stamp = next_stamp.max(e.stamp + 1);
        entries.insert(
            (e.room, e.seq),
            Entry {
                digest,
                record,
                stamp: e.stamp,
            },
        );
    }
    let mut cache = HistoryCache {
        path: None,
        key,
        wrapped,
        entries,
        bytes,
        next_stamp,
        dirty: false,
    };
    cache.trim();
    Ok(cache)
}

/// SHA-256 of the delivered message's encoding (every field the server sent).
fn digest(msg: &DeliveredMessage) -> Option<[u8; 32]> {
    codec::encode(msg)
        .ok()
        .map(|bytes| Sha256::digest(bytes).into())
}

/// What an entry is bound to: the room, the position and the delivered content.
fn context(msg: &DeliveredMessage, digest: &[u8; 32]) -> [Vec<u8>; 3] {
    [
        msg.room.canonical().into_bytes(),
        msg.seq.to_be_bytes().to_vec(),
        digest.to_vec(),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared::crypto::message::{seal_message, Recipient};
    use shared::crypto::rotation::CounterMark;
    use shared::protocol::recipients_of;
    use shared::{DeviceId, MessageId, RoomName};

    use super::*;
    use crate::inbox::open_delivered;
    use crate::test_keys::key;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid")
    }

    fn room() -> RoomName {
        RoomName::parse("general").expect("valid")
    }

    struct Fixture {
        alice: Arc<RsaPrivateKey>,
        bob: Arc<RsaPrivateKey>,
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                alice: key(0),
                bob: key(1),
                dir: tempfile::tempdir().expect("temp dir"),
            }
        }

        fn path(&self) -> PathBuf {
            self.dir.path().join("bob.pem.history-test.json")
        }

        /// Bob's cache at the fixture's path.
        fn open(&self) -> HistoryCache {
            HistoryCache::open(Some(self.path()), &user("bob"), &self.bob).expect("opens")
        }

        fn alice_key(&self) -> SenderKey {
            SenderKey {
                key: self.alice.to_public_key(),
                limit: None,
            }
        }

        /// Alice's message at `seq`, bob's copy.
        fn delivered(&self, seq: u64, text: &str) -> DeliveredMessage {
            let message_id = MessageId::random();
            let recipients = [
                Recipient {
                    username: user("alice"),
                    key: self.alice.to_public_key(),
                },
                Recipient {
                    username: user("bob"),
                    key: self.bob.to_public_key(),
                },
            ];
            let body = MessageBody {
                room: room(),
                message_id,
                sender: user("alice"),
                device: DeviceId([1; 16]),
                counter: seq,
                sent_at_ms: 1_700_000_000_000,
                recipients: vec![user("alice"), user("bob")],
                text: text.to_owned(),
            };
            let envelopes = seal_message(&self.alice, body, &recipients).expect("seals");
            DeliveredMessage {
                room: room(),
                seq,
                message_id,
                sender: user("alice"),
                server_time_ms: 1_700_000_000_500,
                recipients: recipients_of(&envelopes),
                envelope: envelopes[1].clone(),
            }
        }

        /// What the session does on a miss: decrypt and verify, then cache.
        fn verify_and_cache(
            &self,
            cache: &mut HistoryCache,
            msg: &DeliveredMessage,
        ) -> DecryptedMessage {
            let keys = [self.alice_key()];
            let opened = open_delivered(msg, &user("bob"), &[Arc::clone(&self.bob)], &keys)
                .expect("verifies");
            cache.insert(msg, &opened.message, &keys[opened.verified_by]);
            opened.message
        }
    }

    #[test]
    fn a_verified_message_round_trips_through_the_file() {
        let f = Fixture::new();
        let msg = f.delivered(7, "hello bob");
        let mut cache = f.open();
        assert_eq!(cache.lookup(&msg, &[f.alice_key()]), None, "empty at first");
        let shown = f.verify_and_cache(&mut cache, &msg);
        cache.save().expect("saves");
        let text = std::fs::read_to_string(f.path()).expect("written");
        assert!(!text.contains("hello bob"), "the text is sealed");

        let reopened = f.open();
        assert_eq!(reopened.lookup(&msg, &[f.alice_key()]), Some(shown));
    }

    #[test]
    fn a_tampered_or_foreign_file_is_ignored_without_panicking() {
        let f = Fixture::new();
        let msg = f.delivered(1, "first");
        let mut cache = f.open();
        f.verify_and_cache(&mut cache, &msg);
        cache.save().expect("saves");
        let text = std::fs::read_to_string(f.path()).expect("written");

        // One entry's ciphertext altered: that entry misses.
        let mut file: CacheFile = serde_json::from_str(&text).expect("parses");
        let c = &mut file.entries[0].ciphertext;
        let flipped = if c.starts_with('0') { "1" } else { "0" };
        c.replace_range(0..1, flipped);
        std::fs::write(f.path(), serde_json::to_string(&file).expect("encodes")).expect("writes");
        assert_eq!(f.open().lookup(&msg, &[f.alice_key()]), None);

        // Garbage, or another user's cache: an empty cache.
        std::fs::write(f.path(), "{ not json").expect("writes");
        assert!(f.open().entries.is_empty());
        std::fs::write(f.path(), &text).expect("writes");
        let mallory = HistoryCache::open(Some(f.path()), &user("mallory"), &key(2)).expect("opens");
        assert!(mallory.entries.is_empty(), "not unwrappable by another key");
        let bob_name_other_key =
            HistoryCache::open(Some(f.path()), &user("bob"), &key(2)).expect("opens");
        assert!(bob_name_other_key.entries.is_empty());
    }

    #[test]
    fn changed_content_at_the_same_seq_is_not_served_from_the_cache() {
        let f = Fixture::new();
        let msg = f.delivered(3, "original");
        let mut cache = f.open();
        f.verify_and_cache(&mut cache, &msg);

        let mut swapped = msg.clone();
        swapped.envelope.ciphertext[0] ^= 1;
        assert_eq!(cache.lookup(&swapped, &[f.alice_key()]), None);
        let mut other = f.delivered(3, "another message at the same seq");
        assert_eq!(cache.lookup(&other, &[f.alice_key()]), None);
        // Nor is the entry valid at another position or with other metadata.
        other = msg.clone();
        other.seq = 4;
        assert_eq!(cache.lookup(&other, &[f.alice_key()]), None);
        other = msg.clone();
        other.server_time_ms += 1;
        assert_eq!(cache.lookup(&other, &[f.alice_key()]), None);
        assert!(cache.lookup(&msg, &[f.alice_key()]).is_some());
    }

    #[test]
    fn a_hit_needs_the_verifying_key_to_be_trusted_still() {
        let f = Fixture::new();
        let msg = f.delivered(5, "signed by alice");
        let mut cache = f.open();
        f.verify_and_cache(&mut cache, &msg);
        let other = SenderKey {
            key: key(2).to_public_key(),
            limit: None,
        };
        assert_eq!(
            cache.lookup(&msg, std::slice::from_ref(&other)),
            None,
            "key no longer trusted"
        );
        assert!(cache.lookup(&msg, &[other, f.alice_key()]).is_some());
        let retired = |last_counter| SenderKey {
            key: f.alice.to_public_key(),
            limit: Some(vec![CounterMark {
                room: room(),
                device: DeviceId([1; 16]),
                last_counter,
            }]),
        };
        assert!(cache.lookup(&msg, &[retired(5)]).is_some());
        assert_eq!(
            cache.lookup(&msg, &[retired(4)]),
            None,
            "beyond the retired key's mark"
        );
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest_first() {
        let f = Fixture::new();
        let msg = f.delivered(1, "one");
        let mut cache = f.open();
        let shown = f.verify_and_cache(&mut cache, &msg);
        for seq in 2..=(MAX_ENTRIES as u64 + 1) {
            let mut copy = msg.clone();
            copy.seq = seq;
            let mut message = shown.clone();
            message.seq = seq;
            cache.insert(&copy, &message, &f.alice_key());
        }
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        assert_eq!(
            cache.lookup(&msg, &[f.alice_key()]),
            None,
            "the oldest went"
        );
        let mut newest = msg.clone();
        newest.seq = MAX_ENTRIES as u64 + 1;
        assert!(cache.lookup(&newest, &[f.alice_key()]).is_some());
    }
}
