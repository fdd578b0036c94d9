//! Private key files: where they live by default, and how they are written and read.
//!
//! Keys are saved as PKCS#8 PEM, encrypted with the user's passphrase when one is given
//! (PBES2: scrypt + AES-256-CBC, see `shared::crypto::keys`), with file mode `0600`, and
//! replaced atomically. Loading also accepts keys made by openssl (`openssl genpkey`,
//! plain PKCS#8, or the legacy PKCS#1 `BEGIN RSA PRIVATE KEY`), and
//! [`import_private_key`] re-saves such a key in our format.
//!
//! Default layout (via `directories`, e.g. `~/.config/e2e-chat/` on Linux):
//!
//! ```text
//! <config dir>/keys/<username>.pem             the private key
//! <config dir>/keys/<username>.pem.pins.json   the user's key pins (see crate::pins)
//! ```

use std::path::{Path, PathBuf};

use directories::ProjectDirs;
use shared::crypto::keys;
use shared::crypto::{CryptoError, RsaPrivateKey};
use shared::Username;
use zeroize::Zeroizing;

use crate::atomic_file;
use crate::pins::pins_path_for;

/// Why a key file could not be read, written or located.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The file or its directory could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The key file is encrypted and no passphrase was given.
    #[error("key file {0} is encrypted: a passphrase is needed")]
    PassphraseRequired(PathBuf),
    /// The passphrase is wrong (or the encrypted key is corrupt; the two cannot be told
    /// apart).
    #[error("wrong passphrase for key file {0} (or the file is corrupt)")]
    BadPassphrase(PathBuf),
    /// The file is not a usable private key (unparsable, or unacceptable parameters).
    #[error("key file {path}: {source}")]
    InvalidKey {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: CryptoError,
    },
    /// A key operation failed (encoding, encryption, deriving the public half).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The platform has no home/config directory to derive default paths from.
    #[error("no configuration directory could be determined for this user")]
    NoConfigDir,
}

/// The application's platform directories (qualifier "", organisation and application
/// "e2e-chat"), or `None` when the platform has no home directory.
pub fn project_dirs() -> Option<ProjectDirs> {
    ProjectDirs::from("", "e2e-chat", "e2e-chat")
}

/// The configuration directory, e.g. `~/.config/e2e-chat` on Linux.
///
/// # Errors
/// [`KeystoreError::NoConfigDir`].
pub fn default_config_dir() -> Result<PathBuf, KeystoreError> {
    project_dirs()
        .map(|d| d.config_dir().to_path_buf())
        .ok_or(KeystoreError::NoConfigDir)
}

/// The directory of a named profile under `base` (a config or state directory):
/// `<base>/profiles/<name>`, each with its own keys, pins and state; no name is the
/// default profile, which keeps `base` itself, so existing users keep their files.
///
/// # Errors
/// A plain-words reason if the name is not 1 to 32 ASCII letters, digits, `-` or `_`
/// (so it can never leave `base`).
pub fn profile_dir(base: &Path, name: Option<&str>) -> Result<PathBuf, String> {
    let Some(name) = name else {
        return Ok(base.to_path_buf());
    };
    let valid = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "invalid profile name {name:?}: use 1 to 32 letters, digits, - or _"
        ));
    }
    Ok(base.join("profiles").join(name))
}

/// The default key file for `username`: `<config dir>/keys/<canonical username>.pem`.
///
/// # Errors
/// [`KeystoreError::NoConfigDir`].
pub fn default_key_path(username: &Username) -> Result<PathBuf, KeystoreError> {
    Ok(default_config_dir()?
        .join("keys")
        .join(format!("{}.pem", username.canonical())))
}

/// The default pin file for `username`: beside the default key file.
///
/// # Errors
/// [`KeystoreError::NoConfigDir`].
pub fn default_pins_path(username: &Username) -> Result<PathBuf, KeystoreError> {
    Ok(pins_path_for(&default_key_path(username)?))
}

/// Saves `key` to `path` as PKCS#8 PEM (encrypted when `passphrase` is given), with mode
/// `0600`, creating missing parent directories (mode `0700` on Unix). An existing file is
/// replaced atomically.
///
/// Encrypting derives the key with scrypt, which takes a noticeable fraction of a second:
/// call it from `spawn_blocking` in async code.
///
/// # Errors
/// [`KeystoreError::Crypto`] if encoding fails; [`KeystoreError::Io`] if writing fails.
pub fn save_private_key(
    path: &Path,
    key: &RsaPrivateKey,
    passphrase: Option<&str>,
) -> Result<(), KeystoreError> {
    let pem = keys::private_to_pem(key, passphrase)?;
    let io = |source| KeystoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent).map_err(io)?;
    }
    atomic_file::write(path, pem.as_bytes(), 0o600).map_err(io)
}

/// Loads a private key PEM from `path`: our encrypted PKCS#8, or an openssl-made plain
/// PKCS#8 or PKCS#1 key. The passphrase is only used for encrypted files.
///
/// # Errors
/// [`KeystoreError::Io`], [`KeystoreError::PassphraseRequired`],
/// [`KeystoreError::BadPassphrase`] or [`KeystoreError::InvalidKey`].
pub fn load_private_key(
    path: &Path,
    passphrase: Option<&str>,
) -> Result<RsaPrivateKey, KeystoreError> {
    let pem =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| KeystoreError::Io {
                path: path.to_path_buf(),
                source,
            })?,
        );
    let encrypted = pem.contains("BEGIN ENCRYPTED PRIVATE KEY");
    if encrypted && passphrase.is_none() {
        return Err(KeystoreError::PassphraseRequired(path.to_path_buf()));
    }
    keys::private_from_pem(&pem, passphrase).map_err(|source| match source {
        CryptoError::InvalidKey(_) if encrypted => KeystoreError::BadPassphrase(path.to_path_buf()),
        source => KeystoreError::InvalidKey {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Imports an existing key file (e.g. made with `openssl genpkey -algorithm RSA`) by
/// loading `source` (with `source_passphrase` if it is encrypted) and saving it to `dest`
/// in our format, encrypted with `new_passphrase`. Returns the key.
///
/// # Errors
/// As [`load_private_key`] for the source and [`save_private_key`] for the destination.
pub fn import_private_key(
    source: &Path,
    source_passphrase: Option<&str>,
    dest: &Path,
    new_passphrase: Option<&str>,
) -> Result<RsaPrivateKey, KeystoreError> {
    let key = load_private_key(source, source_passphrase)?;
    save_private_key(dest, &key, new_passphrase)?;
    Ok(key)
}

/// Creates `dir` and its missing parents; new directories get mode `0700` on Unix.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_named_profile_has_its_own_directory_and_the_default_keeps_the_old_one() {
        let base = Path::new("/cfg/e2e-chat");
        assert_eq!(profile_dir(base, None), Ok(base.to_path_buf()));
        assert_eq!(
            profile_dir(base, Some("work")),
            Ok(base.join("profiles").join("work"))
        );
        for bad in ["", "../x", "a/b", "x".repeat(33).as_str(), "é"] {
            assert!(profile_dir(base, Some(bad)).is_err(), "{bad:?} accepted");
        }
    }

    use super::*;

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/keys/rsa2048-00.pem"
    );

    fn fixture_key() -> RsaPrivateKey {
        load_private_key(Path::new(FIXTURE), None).expect("fixture loads without passphrase")
    }

    #[test]
    fn round_trip_with_passphrase_and_wrong_passphrase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("alice.pem");
        let key = fixture_key();
        save_private_key(&path, &key, Some("correct horse")).expect("saves");

        let text = std::fs::read_to_string(&path).expect("written");
        assert!(text.contains("BEGIN ENCRYPTED PRIVATE KEY"));

        let loaded = load_private_key(&path, Some("correct horse")).expect("loads");
        assert_eq!(loaded, key);

        assert!(matches!(
            load_private_key(&path, Some("wrong")),
            Err(KeystoreError::BadPassphrase(_))
        ));
        assert!(matches!(
            load_private_key(&path, None),
            Err(KeystoreError::PassphraseRequired(_))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn saved_key_is_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.pem");
        save_private_key(&path, &fixture_key(), None).expect("saves");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn imports_openssl_pkcs8_and_pkcs1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = fixture_key();

        let dest = dir.path().join("imported.pem");
        let imported =
            import_private_key(Path::new(FIXTURE), None, &dest, Some("pw")).expect("imports");
        assert_eq!(imported, key);
        assert_eq!(load_private_key(&dest, Some("pw")).expect("loads"), key);

        use shared::crypto::keys::private_from_pem;
        // A PKCS#1 ("BEGIN RSA PRIVATE KEY") file, as older openssl versions write.
        let pkcs1 = pkcs1_pem(&key);
        let pkcs1_path = dir.path().join("legacy.pem");
        std::fs::write(&pkcs1_path, pkcs1.as_bytes()).expect("write");
        assert_eq!(
            load_private_key(&pkcs1_path, None).expect("PKCS#1 loads"),
            key
        );
        assert!(private_from_pem(&pkcs1, None).is_ok());
    }

    #[test]
    fn garbage_is_invalid_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        assert!(matches!(
            load_private_key(&path, None),
            Err(KeystoreError::InvalidKey { .. })
        ));
        assert!(matches!(
            load_private_key(&dir.path().join("missing.pem"), None),
            Err(KeystoreError::Io { .. })
        ));
    }

    #[test]
    fn default_paths_use_canonical_username() {
        let user = Username::parse("Alice").expect("valid");
        if let Ok(path) = default_key_path(&user) {
            assert!(path.ends_with("keys/alice.pem"));
            assert_eq!(
                default_pins_path(&user).expect("same base"),
                pins_path_for(&path)
            );
        }
    }

    fn pkcs1_pem(key: &RsaPrivateKey) -> String {
        use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
        key.to_pkcs1_pem(LineEnding::LF)
            .expect("encodes")
            .to_string()
    }
}
