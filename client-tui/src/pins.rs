//! Trust-on-first-use key pins: which key fingerprint the user has accepted for each
//! username.
//!
//! The store is a small JSON file (by convention beside the user's key file, see
//! [`pins_path_for`]):
//!
//! ```json
//! { "version": 1, "pins": { "alice": "3f2a91bc…(64 hex digits)" } }
//! ```
//!
//! Keys are canonical (lowercase) usernames; values are SHA-256 fingerprints of the
//! SubjectPublicKeyInfo DER, as plain lowercase hex. Every change is written atomically
//! (temporary file, fsync, rename), so a crash never leaves a half-written store. The
//! store only records decisions; comparing keys and raising alarms is the job of the
//! client core that uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::crypto::keys::Fingerprint;
use shared::Username;

use crate::atomic_file;

/// The file format version this code writes and understands.
const FORMAT_VERSION: u32 = 1;

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

/// The on-disk shape.
#[derive(Serialize, Deserialize)]
struct PinFile {
    version: u32,
    pins: BTreeMap<String, String>,
}

/// The pinned fingerprints, optionally backed by a file.
#[derive(Debug, Clone, Default)]
pub struct PinStore {
    /// Where changes are persisted; `None` keeps pins in memory only (tests, load tools).
    path: Option<PathBuf>,
    /// Canonical username → pinned fingerprint.
    pins: BTreeMap<String, Fingerprint>,
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
                    pins: BTreeMap::new(),
                })
            }
            Err(source) => return Err(PinError::Io { path, source }),
        };
        let pins = parse(&text).map_err(|reason| PinError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        Ok(Self {
            path: Some(path),
            pins,
        })
    }

    /// The backing file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The fingerprint pinned for `username`, if any.
    pub fn get(&self, username: &Username) -> Option<Fingerprint> {
        self.pins.get(&username.canonical()).copied()
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
    /// changed key, or rotated their own), and persists the store.
    ///
    /// # Errors
    /// [`PinError::Io`] if the store cannot be persisted; the in-memory pins are then left
    /// as they were.
    pub fn pin(&mut self, username: &Username, fingerprint: &Fingerprint) -> Result<(), PinError> {
        let key = username.canonical();
        let previous = self.pins.insert(key.clone(), *fingerprint);
        if previous == Some(*fingerprint) {
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
        self.pins.iter().map(|(k, v)| (k.as_str(), v))
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
                .map(|(k, v)| (k.clone(), hex::encode(v.0)))
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&file)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        text.push('\n');
        atomic_file::write(path, text.as_bytes(), 0o600).map_err(io)
    }
}

/// Parses and validates the file contents.
fn parse(text: &str) -> Result<BTreeMap<String, Fingerprint>, String> {
    let file: PinFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if file.version != FORMAT_VERSION {
        return Err(format!("unsupported format version {}", file.version));
    }
    let mut pins = BTreeMap::new();
    for (name, hex_fp) in file.pins {
        let username = Username::parse(&name).map_err(|e| format!("bad username {name:?}: {e}"))?;
        if username.canonical() != name {
            return Err(format!(
                "username {name:?} is not in canonical (lowercase) form"
            ));
        }
        let bytes = hex::decode(&hex_fp).map_err(|e| format!("bad fingerprint for {name}: {e}"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("fingerprint for {name} is not 32 bytes"))?;
        pins.insert(name, Fingerprint(bytes));
    }
    Ok(pins)
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
            r#"{"version": 2, "pins": {}}"#,
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
