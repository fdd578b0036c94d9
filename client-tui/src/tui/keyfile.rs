//! The key file around a rotation of the user's own key, and the old keys kept after it.
//!
//! A rotation must never leave the user without the key the server expects, so the files
//! change in this order (the network task drives it, see `super::network`):
//!
//! 1. the new key is written, encrypted like the key file, to a *pending* file beside it
//!    ([`pending_path`], `<key>.rotating`) by [`write_pending`];
//! 2. the server is asked to switch to it (`Client::rotate_key`);
//! 3. when it did, [`install`] copies the old key file to a *retired* backup
//!    (`<key>.retired-<unix time>`, the same bytes, so the same encryption, mode `0600`)
//!    and renames the pending file over the key file (atomic: the key file always holds a
//!    whole key);
//! 4. when the server refused, [`discard`] deletes the pending file; when the outcome is
//!    unknown (the connection dropped), the pending file is kept for the user.
//!
//! At unlock, [`load_retired`] reads every backup with the same passphrase, so messages
//! sealed to an old key still open after a restart.

use std::path::{Path, PathBuf};

use shared::crypto::RsaPrivateKey;

use crate::atomic_file;
use crate::keystore::{self, KeystoreError};

/// Why the key files could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// A file could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The new key could not be encoded or written.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// The pending file for a rotation of the key at `key_path`: `<key>.rotating`.
pub fn pending_path(key_path: &Path) -> PathBuf {
    with_suffix(key_path, ".rotating")
}

/// The backup name for the key at `key_path` retired at `unix_time` (seconds):
/// `<key>.retired-<unix time>`.
pub fn retired_path(key_path: &Path, unix_time: u64) -> PathBuf {
    with_suffix(key_path, &format!("{RETIRED}{unix_time}"))
}

/// What follows the key file's name in a backup's name.
const RETIRED: &str = ".retired-";

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `key` to the pending file beside `key_path`, encrypted with `passphrase` (or
/// plain when `None`, as the key file is), mode `0600`. Returns the pending file.
///
/// Encrypting runs scrypt: call it off the UI thread.
///
/// # Errors
/// [`KeystoreError`] if the key cannot be encoded or written.
pub fn write_pending(
    key_path: &Path,
    key: &RsaPrivateKey,
    passphrase: Option<&str>,
) -> Result<PathBuf, KeystoreError> {
    let pending = pending_path(key_path);
    keystore::save_private_key(&pending, key, passphrase)?;
    Ok(pending)
}

/// Puts the pending file in place of the key file, after keeping the old key file as a
/// retired backup (a copy of its bytes, mode `0600`, named for `unix_time`; a name taken
/// already gets a `-2`, `-3`… suffix). Returns the backup.
///
/// # Errors
/// [`KeyFileError::Io`] if the old key cannot be read or copied (nothing changed then) or
/// the pending file cannot be renamed (the backup exists then, the key file is unchanged).
pub fn install(key_path: &Path, pending: &Path, unix_time: u64) -> Result<PathBuf, KeyFileError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Io { path, source }
    };
    let old = std::fs::read(key_path).map_err(io(key_path))?;
    let mut backup = retired_path(key_path, unix_time);
    let mut n = 2;
    while backup.exists() {
        backup = with_suffix(&retired_path(key_path, unix_time), &format!("-{n}"));
        n += 1;
    }
    atomic_file::write(&backup, &old, 0o600).map_err(io(&backup))?;
    std::fs::rename(pending, key_path).map_err(io(pending))?;
    Ok(backup)
}

/// Deletes the pending file of a rotation the server refused. A file already gone is fine.
///
/// # Errors
/// The I/O error if it exists and cannot be deleted.
pub fn discard(pending: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(pending) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The retired backups of the key at `key_path`, newest first.
pub fn retired_files(key_path: &Path) -> Vec<PathBuf> {
    let Some(name) = key_path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!("{name}{RETIRED}");
    let dir = match key_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_owned();
            let rest = file.strip_prefix(&prefix)?;
            let time = rest.split('-').next()?.parse::<u64>().ok()?;
            Some((time, file, e.path()))
        })
        .collect();
    found.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    found.into_iter().map(|(_, _, path)| path).collect()
}

/// Loads every retired backup of the key at `key_path` with `passphrase`, newest first.
/// Returns the keys that loaded and, for the others, why not (in plain words).
///
/// Decrypting runs scrypt once per file: call it off the UI thread.
pub fn load_retired(
    key_path: &Path,
    passphrase: Option<&str>,
) -> (Vec<RsaPrivateKey>, Vec<String>) {
    let mut keys = Vec::new();
    let mut failures = Vec::new();
    for path in retired_files(key_path) {
        match keystore::load_private_key(&path, passphrase) {
            Ok(key) => keys.push(key),
            Err(e) => failures.push(super::event::describe_keystore(&e)),
        }
    }
    (keys, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(n: usize) -> RsaPrivateKey {
        let path = format!(
            "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
            env!("CARGO_MANIFEST_DIR")
        );
        keystore::load_private_key(Path::new(&path), None).expect("fixture loads")
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_rotation_keeps_the_old_key_as_an_encrypted_backup_and_installs_the_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("alice.pem");
        let (old, new) = (fixture(0), fixture(1));
        keystore::save_private_key(&key_path, &old, Some("pass phrase")).expect("saves");
        let old_bytes = std::fs::read(&key_path).expect("written");

        let pending = write_pending(&key_path, &new, Some("pass phrase")).expect("pending");
        assert_eq!(pending, dir.path().join("alice.pem.rotating"));
        // Until the server switched, the key file is untouched.
        assert_eq!(std::fs::read(&key_path).expect("still there"), old_bytes);

        let backup = install(&key_path, &pending, 1_700_000_000).expect("installs");
        assert_eq!(backup, dir.path().join("alice.pem.retired-1700000000"));
        assert!(!pending.exists());
        assert_eq!(std::fs::read(&backup).expect("backup"), old_bytes);
        assert_eq!(
            keystore::load_private_key(&key_path, Some("pass phrase")).expect("new loads"),
            new
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&backup), 0o600);
            assert_eq!(mode(&key_path), 0o600);
        }

        // A second rotation in the same second keeps both backups; newest first.
        let pending = write_pending(&key_path, &fixture(2), Some("pass phrase")).expect("pending");
        let second = install(&key_path, &pending, 1_700_000_000).expect("installs");
        assert_eq!(second, dir.path().join("alice.pem.retired-1700000000-2"));
        let later = write_pending(&key_path, &fixture(3), Some("pass phrase")).expect("pending");
        let third = install(&key_path, &later, 1_700_000_100).expect("installs");
        assert_eq!(
            retired_files(&key_path),
            vec![third.clone(), second.clone(), backup.clone()]
        );

        // All backups open with the passphrase, newest first; the pins file is no backup.
        std::fs::write(dir.path().join("alice.pem.pins.json"), "{}").expect("write");
        let (keys, failures) = load_retired(&key_path, Some("pass phrase"));
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(keys, vec![fixture(2), new, old]);

        // A wrong passphrase is reported per file, not fatal.
        let (keys, failures) = load_retired(&key_path, Some("wrong"));
        assert!(keys.is_empty());
        assert_eq!(failures.len(), 3);
        assert!(failures[0].contains("Wrong passphrase"), "{failures:?}");
    }

    #[test]
    fn a_refused_rotation_leaves_only_the_old_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("bob.pem");
        keystore::save_private_key(&key_path, &fixture(0), None).expect("saves");
        let pending = write_pending(&key_path, &fixture(1), None).expect("pending");
        discard(&pending).expect("deleted");
        discard(&pending).expect("already gone is fine");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["bob.pem".to_owned()]);
        assert!(retired_files(&key_path).is_empty());
    }

    #[test]
    fn install_without_a_pending_file_changes_nothing_but_the_backup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_path = dir.path().join("carol.pem");
        keystore::save_private_key(&key_path, &fixture(0), None).expect("saves");
        let missing = pending_path(&key_path);
        assert!(matches!(
            install(&key_path, &missing, 5),
            Err(KeyFileError::Io { .. })
        ));
        assert_eq!(
            keystore::load_private_key(&key_path, None).expect("unchanged"),
            fixture(0)
        );
    }
}
