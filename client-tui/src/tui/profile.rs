//! Where the client keeps its files, and which onboarding form a start-up needs.
//!
//! Besides the key files of the client core ([`crate::keystore`]), the client writes one
//! small file, `<config dir>/client.json`, remembering the last account so later runs only
//! ask for the passphrase:
//!
//! ```json
//! { "username": "alice", "key_path": "/home/alice/.config/e2e-chat/keys/alice.pem",
//!   "settings": { "typing": true, "read_markers": true, "notify": false } }
//! ```
//!
//! The user's [`Settings`] live in the same file (a file without them gets the defaults).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::Username;

/// The remembered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// The account name.
    pub username: String,
    /// Its key file.
    pub key_path: PathBuf,
    /// The user's settings.
    #[serde(default)]
    pub settings: Settings,
}

/// What the user switched on or off (`/typing`, `/read-markers`, `/notify`). Typing and
/// read markers are on, desktop notifications off, unless the user switches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Tell a room's members while the user types (`SetTyping`).
    pub typing: bool,
    /// Tell the user's other sessions how far they have read (`MarkRead`).
    pub read_markers: bool,
    /// Show a desktop notification for a mention or a direct message in a room not shown
    /// (`/notify`; `--notify` switches them on for one run without keeping it).
    pub notify: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            typing: true,
            read_markers: true,
            notify: false,
        }
    }
}

/// The settings kept in `config_dir`'s profile (the defaults without one).
pub fn load_settings(config_dir: Option<&Path>) -> Settings {
    config_dir
        .and_then(load_profile)
        .map(|p| p.settings)
        .unwrap_or_default()
}

/// Keeps `settings` in `config_dir`'s profile, which must exist (it is written once the
/// user is signed in).
///
/// # Errors
/// The I/O error if the profile cannot be read or written.
pub fn save_settings(config_dir: &Path, settings: Settings) -> std::io::Result<()> {
    let mut profile = load_profile(config_dir).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no profile to keep them in")
    })?;
    profile.settings = settings;
    save_profile(config_dir, &profile)
}

/// The default key file for `username` under `config_dir`: `keys/<canonical name>.pem`,
/// the same layout as [`crate::keystore::default_key_path`].
pub fn default_key_path_in(config_dir: &Path, username: &Username) -> PathBuf {
    config_dir
        .join("keys")
        .join(format!("{}.pem", username.canonical()))
}

/// The profile file in `config_dir`.
pub fn profile_path(config_dir: &Path) -> PathBuf {
    config_dir.join("client.json")
}

/// Reads the profile; a missing or unreadable file is no profile (the user is asked).
pub fn load_profile(config_dir: &Path) -> Option<Profile> {
    let text = std::fs::read_to_string(profile_path(config_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the profile (temporary file, then rename).
///
/// # Errors
/// The I/O error if the directory or file cannot be written.
pub fn save_profile(config_dir: &Path, profile: &Profile) -> std::io::Result<()> {
    std::fs::create_dir_all(config_dir)?;
    let path = profile_path(config_dir);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(profile).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)
}

/// The profiles kept under `config_base` (the configuration directory without a
/// profile), for the chooser at start: the default profile (`None`) first if it holds an
/// account (a remembered profile or a key directory), then every directory under
/// `profiles/` with a valid profile name (see [`crate::keystore::profile_dir`]), sorted.
pub fn existing_profiles(config_base: &Path) -> Vec<Option<String>> {
    let default = load_profile(config_base).is_some() || config_base.join("keys").is_dir();
    let mut named: Vec<String> = std::fs::read_dir(config_base.join("profiles"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| crate::keystore::profile_dir(config_base, Some(name)).is_ok())
        .collect();
    named.sort();
    default
        .then_some(None)
        .into_iter()
        .chain(named.into_iter().map(Some))
        .collect()
}

/// What the user chose on the command line (or through the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    /// The server URL (`ws://…` or `wss://…`).
    pub server_url: String,
    /// `--key PATH`: the key file to use (or to create).
    pub key: Option<PathBuf>,
    /// `--import PATH`: an existing key to import for a new (or restored) account.
    pub import: Option<PathBuf>,
    /// `--username`.
    pub username: Option<Username>,
    /// Size of a generated key.
    pub key_bits: usize,
    /// The configuration directory (`None` if the platform has none; `--key` is needed then).
    pub config_dir: Option<PathBuf>,
    /// `--notify`: desktop notifications on for this run, whatever the profile keeps.
    pub notify: bool,
}

/// The onboarding form a start-up shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// No key yet: create an account (generating a key, or importing `import`).
    NewAccount {
        /// A username to pre-fill.
        username: Option<Username>,
        /// A key file to import, pre-filled.
        import: Option<PathBuf>,
        /// Where to save the key (`None`: the default path for the username).
        key_path: Option<PathBuf>,
    },
    /// A saved key: ask for its passphrase and log in.
    Unlock {
        /// The account (`None`: ask for it too).
        username: Option<Username>,
        /// The key file.
        key_path: PathBuf,
    },
}

/// Decides which form to show:
///
/// 1. `--import`: a new account from that key (saved at `--key` or the default path).
/// 2. `--key PATH`: unlock it if it exists, else create an account saving the key there.
/// 3. The remembered profile (or `--username` with a key at the default path): unlock.
/// 4. A single key in `<config dir>/keys`: unlock it.
/// 5. Otherwise: create an account.
pub fn plan(opts: &LaunchOptions) -> Start {
    let profile = opts.config_dir.as_deref().and_then(load_profile);
    let profile_user = profile
        .as_ref()
        .and_then(|p| Username::parse(&p.username).ok());
    if let Some(import) = &opts.import {
        return Start::NewAccount {
            username: opts.username.clone(),
            import: Some(import.clone()),
            key_path: opts.key.clone(),
        };
    }
    if let Some(key) = &opts.key {
        if !key.exists() {
            return Start::NewAccount {
                username: opts.username.clone(),
                import: None,
                key_path: Some(key.clone()),
            };
        }
        let remembered = profile
            .as_ref()
            .filter(|p| p.key_path == *key)
            .and(profile_user.clone());
        return Start::Unlock {
            username: opts.username.clone().or(remembered),
            key_path: key.clone(),
        };
    }
    if let Some(wanted) = &opts.username {
        let from_profile = profile
            .as_ref()
            .filter(|_| profile_user.as_ref().is_some_and(|u| u.same_as(wanted)))
            .map(|p| p.key_path.clone());
        let path = from_profile.or_else(|| {
            opts.config_dir
                .as_deref()
                .map(|dir| default_key_path_in(dir, wanted))
        });
        return match path.filter(|p| p.exists()) {
            Some(key_path) => Start::Unlock {
                username: Some(wanted.clone()),
                key_path,
            },
            None => Start::NewAccount {
                username: Some(wanted.clone()),
                import: None,
                key_path: None,
            },
        };
    }
    if let (Some(p), Some(user)) = (&profile, profile_user) {
        if p.key_path.exists() {
            return Start::Unlock {
                username: Some(user),
                key_path: p.key_path.clone(),
            };
        }
    }
    if let Some(found) = opts.config_dir.as_deref().and_then(single_key) {
        return found;
    }
    Start::NewAccount {
        username: None,
        import: None,
        key_path: None,
    }
}

/// The only `*.pem` in `<config dir>/keys`, as an unlock plan.
fn single_key(config_dir: &Path) -> Option<Start> {
    let entries = std::fs::read_dir(config_dir.join("keys")).ok()?;
    let keys: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    let [key_path] = keys.as_slice() else {
        return None;
    };
    let username = key_path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| Username::parse(s).ok());
    Some(Start::Unlock {
        username,
        key_path: key_path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> LaunchOptions {
        LaunchOptions {
            server_url: "ws://127.0.0.1:1/ws".into(),
            key: None,
            import: None,
            username: None,
            key_bits: 2048,
            config_dir: Some(dir.to_path_buf()),
            notify: false,
        }
    }

    #[test]
    fn first_run_creates_an_account_and_profile_leads_to_unlock() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            plan(&opts(dir.path())),
            Start::NewAccount { username: None, .. }
        ));

        let key = dir.path().join("keys").join("alice.pem");
        std::fs::create_dir_all(key.parent().expect("parent")).expect("mkdir");
        std::fs::write(&key, "x").expect("write");
        // Found without a profile: the only key file.
        assert_eq!(
            plan(&opts(dir.path())),
            Start::Unlock {
                username: Some(Username::parse("alice").expect("valid")),
                key_path: key.clone(),
            }
        );
        save_profile(
            dir.path(),
            &Profile {
                username: "Alice".into(),
                key_path: key.clone(),
                settings: Settings::default(),
            },
        )
        .expect("saves");
        assert_eq!(
            plan(&opts(dir.path())),
            Start::Unlock {
                username: Some(Username::parse("Alice").expect("valid")),
                key_path: key,
            }
        );
    }

    #[test]
    fn settings_default_to_on_and_survive_in_the_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_settings(Some(dir.path())), Settings::default());
        assert!(Settings::default().typing && Settings::default().read_markers);
        assert!(
            !Settings::default().notify,
            "notifications are off by default"
        );
        let off = Settings {
            typing: false,
            notify: true,
            ..Settings::default()
        };
        assert!(save_settings(dir.path(), off).is_err(), "no profile yet");
        // A profile written before settings existed reads with the defaults.
        std::fs::write(
            profile_path(dir.path()),
            r#"{"username":"alice","key_path":"/k.pem"}"#,
        )
        .expect("write");
        assert_eq!(load_settings(Some(dir.path())), Settings::default());
        save_settings(dir.path(), off).expect("saves");
        assert_eq!(load_settings(Some(dir.path())), off);
        assert_eq!(
            load_profile(dir.path()).expect("profile").username,
            "alice",
            "the account is kept"
        );
    }

    #[test]
    fn profiles_are_the_default_one_with_an_account_then_the_named_ones_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        assert!(existing_profiles(base).is_empty(), "nothing yet");
        assert!(existing_profiles(&base.join("missing")).is_empty());
        for name in ["work", "alt", "not a name"] {
            std::fs::create_dir_all(base.join("profiles").join(name)).expect("mkdir");
        }
        std::fs::write(base.join("profiles").join("stray.txt"), "x").expect("write");
        let named = vec![Some("alt".to_owned()), Some("work".to_owned())];
        assert_eq!(
            existing_profiles(base),
            named,
            "no account in the default profile; invalid names and files are not profiles"
        );
        std::fs::create_dir_all(base.join("keys")).expect("mkdir");
        let mut all = vec![None];
        all.extend(named);
        assert_eq!(
            existing_profiles(base),
            all,
            "the default profile comes first"
        );
    }

    #[test]
    fn a_remembered_account_alone_makes_the_default_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        save_profile(
            dir.path(),
            &Profile {
                username: "alice".into(),
                key_path: dir.path().join("k.pem"),
                settings: Settings::default(),
            },
        )
        .expect("saves");
        assert_eq!(existing_profiles(dir.path()), vec![None]);
    }

    #[test]
    fn key_and_import_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = opts(dir.path());
        o.key = Some(dir.path().join("missing.pem"));
        assert!(matches!(
            plan(&o),
            Start::NewAccount {
                key_path: Some(_),
                ..
            }
        ));
        o.import = Some(dir.path().join("openssl.pem"));
        assert!(matches!(
            plan(&o),
            Start::NewAccount {
                import: Some(_),
                ..
            }
        ));
    }
}
