//! Validated identifiers. A value of these types is always valid: handlers never see a
//! name that breaks the rules below, because deserialisation goes through `parse`.
//!
//! # Naming rules
//! - **Username**: 3–32 characters from `A–Z a–z 0–9 _ -`, starting with a letter.
//!   Uniqueness ignores case: `Alice` and `alice` are the same account, and the
//!   [`Username::canonical`] form (ASCII lowercase) is the key every store uses.
//! - **Room name**: 1–48 characters from `A–Z a–z 0–9 _ - .`, starting with a letter or digit.
//!   Uniqueness and lookup also ignore case ([`RoomName::canonical`]).

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The name is shorter or longer than the rules allow.
    #[error("{kind} must be {min}–{max} characters long, got {len}")]
    Length {
        /// Which kind of name ("username", "room name").
        kind: &'static str,
        /// Minimum length.
        min: usize,
        /// Maximum length.
        max: usize,
        /// Length that was given.
        len: usize,
    },
    /// The name contains a character outside the allowed set, or starts wrongly.
    #[error("{kind} {reason}")]
    Charset {
        /// Which kind of name.
        kind: &'static str,
        /// What is wrong, in plain words.
        reason: &'static str,
    },
}

fn check_name(
    kind: &'static str,
    value: &str,
    (min, max): (usize, usize),
    extra: &[char],
    first_ok: fn(char) -> bool,
    first_reason: &'static str,
) -> Result<(), IdError> {
    let len = value.chars().count();
    if !(min..=max).contains(&len) {
        return Err(IdError::Length {
            kind,
            min,
            max,
            len,
        });
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    {
        return Err(IdError::Charset {
            kind,
            reason: "may only contain ASCII letters, digits and the characters allowed for it",
        });
    }
    match value.chars().next() {
        Some(c) if first_ok(c) => Ok(()),
        _ => Err(IdError::Charset {
            kind,
            reason: first_reason,
        }),
    }
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $min:literal, $max:literal, $extra:expr, $first:expr, $first_reason:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` against the naming rules in the module documentation.
            ///
            /// # Errors
            /// [`IdError`] naming the rule that was broken.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_name($kind, value, ($min, $max), $extra, $first, $first_reason)?;
                Ok(Self(value.to_owned()))
            }

            /// The name as the user typed it (case preserved), for display.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The case-folded form that uniqueness and lookups use.
            pub fn canonical(&self) -> String {
                self.0.to_ascii_lowercase()
            }

            /// Whether two names denote the same entity (case-insensitive).
            pub fn same_as(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                check_name($kind, &value, ($min, $max), $extra, $first, $first_reason)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    };
}

validated_name!(
    /// A registered account's name; see the module docs for the rules.
    Username,
    "username",
    3,
    32,
    &['_', '-'],
    |c: char| c.is_ascii_alphabetic(),
    "must start with a letter"
);

validated_name!(
    /// A room's name; see the module docs for the rules.
    RoomName,
    "room name",
    1,
    48,
    &['_', '-', '.'],
    |c: char| c.is_ascii_alphanumeric(),
    "must start with a letter or digit"
);

/// A message identifier chosen by the sender: 16 random bytes.
///
/// It is signed inside the encrypted payload and bound into every copy's AES-GCM
/// associated data, so a recipient can detect a server that replays or relabels messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// A fresh random id from the OS-seeded thread RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A server's identity: 16 random bytes the server generates once, when its store is
/// first created, and announces in `HelloAck`. Every login proof signs it, so a proof made
/// for one server never verifies on another; clients pin it per server address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerId(pub [u8; 16]);

impl ServerId {
    /// A fresh random id from the OS RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// One installation of a client (a device) for one account: 16 random bytes the client
/// generates once and keeps. A message's replay counter counts per (sender, device, room),
/// so two devices of one account never reuse each other's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(pub [u8; 16]);

impl DeviceId {
    /// A fresh random id from the OS RNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A request identifier chosen by the client; every reply names the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_follow_the_rules() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("Al_ice-9").is_ok());
        assert!(matches!(
            Username::parse("al"),
            Err(IdError::Length { len: 2, .. })
        ));
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("9alice").is_err());
        assert!(Username::parse("ali ce").is_err());
        assert!(Username::parse("alicé").is_err());
    }

    #[test]
    fn canonical_form_ignores_case() {
        let a = Username::parse("Alice").expect("valid");
        let b = Username::parse("aLICE").expect("valid");
        assert_eq!(a.canonical(), b.canonical());
        assert!(a.same_as(&b));
        assert_eq!(a.as_str(), "Alice");
    }

    #[test]
    fn deserialisation_validates() {
        let bad: Result<Username, _> = serde_json_like("x y");
        assert!(bad.is_err());
        let room: RoomName = serde_json_like("general.2").expect("valid room");
        assert_eq!(room.as_str(), "general.2");
    }

    fn serde_json_like<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, bincode::Error> {
        let bytes = bincode::serialize(&s.to_owned())?;
        bincode::deserialize(&bytes)
    }

    #[test]
    fn room_names_follow_the_rules() {
        assert!(RoomName::parse("general").is_ok());
        assert!(RoomName::parse("2024.plans").is_ok());
        assert!(RoomName::parse("").is_err());
        assert!(RoomName::parse(".hidden").is_err());
        assert!(RoomName::parse(&"r".repeat(49)).is_err());
    }
}
