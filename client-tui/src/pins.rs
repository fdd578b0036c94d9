//! Trust-on-first-use key pins: which key fingerprint the user has accepted for each
//! username.
//!
//! The store is a small JSON file (by convention beside the user's key file, see
//! [`pins_path_for`]):
//!
//! ```json
//! { "version": 2,
//!   "pins": { "alice": { "fingerprint": "3f2a91bc…(64 hex digits)", "verified": true } },
//!   "servers": { "wss://chat.example.org/ws": "9c1e…(32 hex digits)" } }
//! ```
//!
//! Pin keys are canonical (lowercase) usernames; fingerprints are SHA-256 of the
//! SubjectPublicKeyInfo DER, as plain lowercase hex. `verified` records that the user
//! compared the fingerprint out of band (as opposed to trusting it on first use).
//! `servers` pins each server address to the server id it announced on first contact
//! (login proofs sign that id). Version 1 files (pins as plain fingerprint strings, no
//! servers) are still read. Every change is written atomically
//! (temporary file, fsync, rename), so a crash never leaves a half-written store. The
//! store only records decisions; comparing keys and raising alarms is the job of the
//! client core that uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::crypto::keys::Fingerprint;
use shared::{ServerId, Username};

use crate::atomic_file;

/// The file format version this code writes.
const FORMAT_VERSION: u32 = 2;

/// The oldest format version this code still reads.
const OLDEST_READABLE_VERSION: u32 = 1;

/// Why the pin store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The file could not be read or written.
    #[error("pin store {path}: {source}")]
    Io {
        /// The pin file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a valid pin store. It is left untouched so the user can
    /// inspect it; the client refuses to continue rather than silently trusting anew.
    #[error("pin store {path} is corrupt: {reason}")]
    Corrupt {
        /// The pin file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// How a key compares with the pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// No key was pinned for this user before.
    Unknown,
    /// The key is the pinned one.
    Matches,
    /// A different key is pinned.
    Mismatch {
        /// The fingerprint the user accepted earlier.
        pinned: Fingerprint,
    },
}

/// How a server's announced id compares with the pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCheck {
    /// Nothing is pinned for this address, and no other address has this id.
    FirstContact,
    /// The id is the one pinned for this address.
    Matches,
    /// Another id is pinned for this address.
    Changed {
        /// The id pinned earlier.
        pinned: ServerId,
    },
    /// This id is pinned for another address: a server claiming another server's identity
    /// (a login proof for it would be valid there).
    PinnedElsewhere {
        /// The address it is pinned for.
        address: String,
    },
}

/// One pinned key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pin {
    fingerprint: Fingerprint,
    verified: bool,
}

/// A pin as stored: a bare fingerprint (version 1) or a fingerprint with its verification.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredPin {
    Full { fingerprint: String, verified: bool },
    Bare(String),
}

/// The on-disk shape.
#[derive(Serialize, Deserialize)]
struct PinFile {
    version: u32,
    pins: BTreeMap<String, StoredPin>,
    #[serde(default)]
    servers: BTreeMap<String, String>,
}

/// The pinned fingerprints and server ids, optionally backed by a file.
#[derive(Debug, Clone, Default)]
pub struct PinStore {
    /// Where changes are persisted; `None` keeps pins in memory only (tests, load tools).
    path: Option<PathBuf>,
    /// Canonical username → pinned key.
    pins: BTreeMap<String, Pin>,
    /// Server address → the server id pinned for it.
    servers: BTreeMap<String, ServerId>,
}

/// A per-account file beside the pin store at `pins_path`, for the server `server`:
/// `<key path>.<kind>-<server id>.json` (the ledger, the history cache).
pub(crate) fn account_file(pins_path: &Path, kind: &str, server: &ServerId) -> PathBuf {
    let name = pins_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pins.json").unwrap_or(&name);
    pins_path.with_file_name(format!("{stem}.{kind}-{server}.json"))
}

/// The conventional pin file for a key file: `<key path>.pins.json`.
pub fn pins_path_for(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".pins.json");
    PathBuf::from(name)
}

impl PinStore {
    /// A store that is never written to disk.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens the store at `path`; a missing file is an empty store (created on first pin).
    ///
    /// # Errors
    /// [`PinError::Io`] if the file exists but cannot be read; [`PinError::Corrupt`] if it
    /// is not a valid pin store.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, PinError> {
        let path = path.into();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: Some(path),
                    ..Self::default()
                })
            }
            Err(source) => return Err(PinError::Io { path, source }),
        };
        let (pins, servers) = parse(&text).map_err(|reason| PinError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        Ok(Self {
            path: Some(path),
            pins,
            servers,
        })
    }

    /// The backing file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The fingerprint pinned for `username`, if any.
    pub fn get(&self, username: &Username) -> Option<Fingerprint> {
        self.pins.get(&username.canonical()).map(|p| p.fingerprint)
    }

    /// Whether the user marked `username`'s pinned key as verified (compared out of band).
    pub fn is_verified(&self, username: &Username) -> bool {
        self.pins
            .get(&username.canonical())
            .is_some_and(|p| p.verified)
    }

    /// Compares `fingerprint` with the pin for `username` without changing anything.
    pub fn check(&self, username: &Username, fingerprint: &Fingerprint) -> PinStatus {
        match self.get(username) {
            None => PinStatus::Unknown,
            Some(pinned) if pinned == *fingerprint => PinStatus::Matches,
            Some(pinned) => PinStatus::Mismatch { pinned },
        }
    }

    /// Trust on first use: pins `fingerprint` if nothing is pinned for `username` yet, and
    /// reports how the key compared before the call. A mismatch changes nothing.
    ///
    /// # Errors
    /// [`PinError::Io`] if a new pin cannot be persisted (it is then not kept in memory
    /// either).
    pub fn pin_if_new(
        &mut self,
        username: &Username,
        fingerprint: &Fingerprint,
    ) -> Result<PinStatus, PinError> {
        let status = self.check(username, fingerprint);
        if status == PinStatus::Unknown {
            self.pin(username, fingerprint)?;
        }
        Ok(status)
    }

    /// Pins `fingerprint` for `username`, replacing any earlier pin (the user accepted a
    /// changed key, or rotated their own), and persists the store. The new pin is not
    /// verified: a key accepted after a change is trusted, not verified.
    ///
    /// # Errors
    /// [`PinError::Io`] if the store cannot be persisted; the in-memory pins are then left
    /// as they were.
    pub fn pin(&mut self, username: &Username, fingerprint: &Fingerprint) -> Result<(), PinError> {
        self.put(username, *fingerprint, false)
    }

    /// Moves the pin for `username` to `fingerprint` along a verified rotation chain: the
    /// pinned key itself endorsed the new one, so a verified pin stays verified.
    ///
    /// # Errors
    /// As [`PinStore::pin`].
    pub fn pin_rotated(
        &mut self,
        username: &Username,
        fingerprint: &Fingerprint,
    ) -> Result<(), PinError> {
        let verified = self.is_verified(username);
        self.put(username, *fingerprint, verified)
    }

    /// Marks the pinned key of `username` as verified, if `fingerprint` is the pinned one.
    /// Returns whether it was marked.
    ///
    /// # Errors
    /// As [`PinStore::pin`].
    pub fn set_verified(
        &mut self,
        username: &Username,
        fingerprint: &Fingerprint,
    ) -> Result<bool, PinError> {
        if self.get(username) != Some(*fingerprint) {
            return Ok(false);
        }
        self.put(username, *fingerprint, true)?;
        Ok(true)
    }

    /// Compares the id a server announced at `address` with the server pins.
    pub fn check_server(&self, address: &str, id: &ServerId) -> ServerCheck {
        match self.servers.get(address) {
            Some(pinned) if pinned == id => ServerCheck::Matches,
            Some(pinned) => ServerCheck::Changed { pinned: *pinned },
            None => match self.servers.iter().find(|(_, pinned)| *pinned == id) {
                Some((other, _)) => ServerCheck::PinnedElsewhere {
                    address: other.clone(),
                },
                None => ServerCheck::FirstContact,
            },
        }
    }

    /// Pins `id` for `address` (first contact).
    ///
    /// # Errors
    /// [`PinError::Io`] if the store cannot be persisted (nothing is kept then).
    pub fn pin_server(&mut self, address: &str, id: &ServerId) -> Result<(), PinError> {
        let previous = self.servers.insert(address.to_owned(), *id);
        if previous == Some(*id) {
            return Ok(());
        }
        if let Err(e) = self.save() {
            match previous {
                Some(old) => self.servers.insert(address.to_owned(), old),
                None => self.servers.remove(address),
            };
            return Err(e);
        }
        Ok(())
    }

    fn put(
        &mut self,
        username: &Username,
        fingerprint: Fingerprint,
        verified: bool,
    ) -> Result<(), PinError> {
        let key = username.canonical();
        let pin = Pin {
            fingerprint,
            verified,
        };
        let previous = self.pins.insert(key.clone(), pin);
        if previous == Some(pin) {
            return Ok(());
        }
        if let Err(e) = self.save() {
            match previous {
                Some(old) => self.pins.insert(key, old),
                None => self.pins.remove(&key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// Forgets the pin for `username` (the next key seen is trusted on first use again).
    /// Returns whether there was one.
    ///
    /// # Errors
    /// [`PinError::Io`] if the store cannot be persisted.
    pub fn remove(&mut self, username: &Username) -> Result<bool, PinError> {
        let key = username.canonical();
        let Some(old) = self.pins.remove(&key) else {
            return Ok(false);
        };
        if let Err(e) = self.save() {
            self.pins.insert(key, old);
            return Err(e);
        }
        Ok(true)
    }

    /// All pins, as (canonical username, fingerprint), sorted by username.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Fingerprint)> {
        self.pins.iter().map(|(k, v)| (k.as_str(), &v.fingerprint))
    }

    /// Writes the whole store atomically: a temporary file in the same directory, fsync,
    /// rename over the old file.
    fn save(&self) -> Result<(), PinError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |source| PinError::Io {
            path: path.clone(),
            source,
        };
        let file = PinFile {
            version: FORMAT_VERSION,
            pins: self
                .pins
                .iter()
                .map(|(k, v)| {
                    let pin = StoredPin::Full {
                        fingerprint: hex::encode(v.fingerprint.0),
                        verified: v.verified,
                    };
                    (k.clone(), pin)
                })
                .collect(),
            servers: self
                .servers
                .iter()
                .map(|(k, v)| (k.clone(), hex::encode(v.0)))
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        text.push('\n');
        atomic_file::write(path, text.as_bytes(), 0o600).map_err(io)
    }
}

/// The pins and server pins a file holds.
type Parsed = (BTreeMap<String, Pin>, BTreeMap<String, ServerId>);

/// Parses and validates the file contents.
fn parse(text: &str) -> Result<Parsed, String> {
    let file: PinFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&file.version) {
        return Err(format!("unsupported format version {}", file.version));
    }
    let mut pins = BTreeMap::new();
    for (name, stored) in file.pins {
        let username = Username::parse(&name).map_err(|e| format!("bad username {name:?}: {e}"))?;
        if username.canonical() != name {
            return Err(format!(
                "username {name:?} is not in canonical (lowercase) form"
            ));
        }
        let (hex_fp, verified) = match stored {
            StoredPin::Full {
                fingerprint,
                verified,
            } if file.version >= 2 => (fingerprint, verified),
            StoredPin::Bare(fingerprint) if file.version == 1 => (fingerprint, false),
            _ => {
                return Err(format!(
                    "pin for {name} does not match format {}",
                    file.version
                ))
            }
        };
        let bytes: [u8; 32] =
            decode_hex(&hex_fp).map_err(|e| format!("fingerprint for {name}: {e}"))?;
        pins.insert(
            name,
            Pin {
                fingerprint: Fingerprint(bytes),
                verified,
            },
        );
    }
    let mut servers = BTreeMap::new();
    for (address, hex_id) in file.servers {
        let bytes: [u8; 16] =
            decode_hex(&hex_id).map_err(|e| format!("server id for {address}: {e}"))?;
        servers.insert(address, ServerId(bytes));
    }
    Ok((pins, servers))
}

/// Decodes lowercase hex of exactly `N` bytes.
fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let bytes = hex::decode(text).map_err(|e| e.to_string())?;
    bytes.try_into().map_err(|_| format!("expected {N} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid username")
    }

    fn fp(byte: u8) -> Fingerprint {
        Fingerprint([byte; 32])
    }

    #[test]
    fn first_sight_pins_and_persists_across_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.pem.pins.json");
        let mut store = PinStore::open(&path).expect("missing file is an empty store");
        assert_eq!(
            store.pin_if_new(&user("Bob"), &fp(1)).expect("pins"),
            PinStatus::Unknown
        );
        assert_eq!(store.check(&user("bob"), &fp(1)), PinStatus::Matches);

        let reloaded = PinStore::open(&path).expect("reloads");
        assert_eq!(reloaded.get(&user("BOB")), Some(fp(1)));
        let text = std::fs::read_to_string(&path).expect("file written");
        assert!(text.contains(&hex::encode([1u8; 32])));
        assert!(text.contains("\"bob\""), "keys are canonical usernames");
    }

    #[test]
    fn mismatch_is_detected_and_not_pinned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let mut store = PinStore::open(&path).expect("opens");
        store.pin_if_new(&user("bob"), &fp(1)).expect("pins");
        assert_eq!(
            store.pin_if_new(&user("bob"), &fp(2)).expect("checks"),
            PinStatus::Mismatch { pinned: fp(1) }
        );
        let reloaded = PinStore::open(&path).expect("reloads");
        assert_eq!(
            reloaded.get(&user("bob")),
            Some(fp(1)),
            "mismatch must not re-pin"
        );
    }

    #[test]
    fn accepting_re_pins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let mut store = PinStore::open(&path).expect("opens");
        store.pin_if_new(&user("bob"), &fp(1)).expect("pins");
        store.pin(&user("bob"), &fp(2)).expect("re-pins");
        assert_eq!(store.check(&user("bob"), &fp(2)), PinStatus::Matches);
        let reloaded = PinStore::open(&path).expect("reloads");
        assert_eq!(reloaded.get(&user("bob")), Some(fp(2)));
        assert_eq!(
            reloaded.check(&user("bob"), &fp(1)),
            PinStatus::Mismatch { pinned: fp(2) }
        );
    }

    #[test]
    fn corrupted_file_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "not json",
            r#"{"version": 1, "pins": {"bob": "zz"}}"#,
            r#"{"version": 1, "pins": {"bob": "0101"}}"#,
            r#"{"version": 1, "pins": {"Bob": "0000000000000000000000000000000000000000000000000000000000000000"}}"#,
            r#"{"version": 3, "pins": {}}"#,
            r#"{"version": 2, "pins": {"bob": "0000000000000000000000000000000000000000000000000000000000000000"}}"#,
            r#"{"version": 2, "pins": {}, "servers": {"ws://x/ws": "00"}}"#,
        ] {
            let path = dir.path().join("pins.json");
            std::fs::write(&path, bad).expect("write");
            assert!(
                matches!(PinStore::open(&path), Err(PinError::Corrupt { .. })),
                "accepted corrupt store {bad:?}"
            );
        }
    }

    #[test]
    fn version_1_files_are_read_and_verification_survives_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let v1 = format!(
            r#"{{"version": 1, "pins": {{"bob": "{}"}}}}"#,
            hex::encode([1u8; 32])
        );
        std::fs::write(&path, v1).expect("write");
        let mut store = PinStore::open(&path).expect("reads version 1");
        assert_eq!(store.get(&user("bob")), Some(fp(1)));
        assert!(!store.is_verified(&user("bob")));
        assert!(
            !store.set_verified(&user("bob"), &fp(2)).expect("saves"),
            "not the pinned key"
        );
        assert!(store.set_verified(&user("bob"), &fp(1)).expect("saves"));
        let reloaded = PinStore::open(&path).expect("reloads");
        assert!(reloaded.is_verified(&user("bob")));
        // A rotation keeps the verification, an accepted change does not.
        let mut store = reloaded;
        store.pin_rotated(&user("bob"), &fp(3)).expect("moves");
        assert!(store.is_verified(&user("bob")));
        store.pin(&user("bob"), &fp(4)).expect("re-pins");
        assert!(!store.is_verified(&user("bob")));
    }

    #[test]
    fn server_ids_are_pinned_per_address_and_never_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let mut store = PinStore::open(&path).expect("opens");
        let (a, b) = (ServerId([1; 16]), ServerId([2; 16]));
        assert_eq!(
            store.check_server("wss://a/ws", &a),
            ServerCheck::FirstContact
        );
        store.pin_server("wss://a/ws", &a).expect("pins");
        let store = PinStore::open(&path).expect("reloads");
        assert_eq!(store.check_server("wss://a/ws", &a), ServerCheck::Matches);
        assert_eq!(
            store.check_server("wss://a/ws", &b),
            ServerCheck::Changed { pinned: a }
        );
        assert_eq!(
            store.check_server("wss://evil/ws", &a),
            ServerCheck::PinnedElsewhere {
                address: "wss://a/ws".into()
            }
        );
        assert_eq!(
            store.check_server("wss://b/ws", &b),
            ServerCheck::FirstContact
        );
    }

    #[test]
    fn in_memory_store_writes_nothing_and_remove_forgets() {
        let mut store = PinStore::in_memory();
        store.pin_if_new(&user("bob"), &fp(3)).expect("pins");
        assert!(store.path().is_none());
        assert!(store.remove(&user("bob")).expect("removes"));
        assert_eq!(store.check(&user("bob"), &fp(3)), PinStatus::Unknown);
    }

    #[cfg(unix)]
    #[test]
    fn pin_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pins.json");
        let mut store = PinStore::open(&path).expect("opens");
        store.pin(&user("bob"), &fp(1)).expect("pins");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn pins_path_sits_beside_the_key() {
        assert_eq!(
            pins_path_for(Path::new("/x/alice.pem")),
            PathBuf::from("/x/alice.pem.pins.json")
        );
    }
}
