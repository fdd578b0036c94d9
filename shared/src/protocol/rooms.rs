//! What protocol 4 added for running rooms: members' roles, the two kinds of room (groups
//! and direct conversations), the moderation actions a request carries, and the room
//! events every member is told of.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{RoomName, Username};

/// The prefix of every direct conversation's name. Group rooms may not use it (a server
/// refuses `CreateRoom` for such a name), so a direct conversation's name is never taken.
pub const DIRECT_ROOM_PREFIX: &str = "dm.";

/// The domain tag hashed into a direct conversation's name.
const DIRECT_ROOM_TAG: &[u8] = b"e2e-chat/v4/direct-room";

/// A member's standing in a group room. The owner has every right; admins may kick, ban,
/// unban and set the topic; members none of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// The one member who runs the room.
    Owner,
    /// Appointed by the owner to moderate.
    Admin,
    /// Everyone else.
    Member,
}

/// Whether a room is a group anyone may find and join (subject to its password and
/// visibility) or a private conversation between two users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomKind {
    /// An ordinary room.
    Group,
    /// A direct conversation; for the cryptography it is a two-member room. Never listed,
    /// never joinable by name, never moderated.
    Direct {
        /// The other participant, as seen by the user this snapshot is for.
        peer: Username,
    },
}

/// The name of the direct conversation between `a` and `b`, the same whichever of them
/// asks: [`DIRECT_ROOM_PREFIX`] and the first 32 hex digits of a SHA-256 over a domain
/// tag and both canonical usernames in order. It names the conversation without spelling
/// out who is in it.
#[must_use]
pub fn direct_room_name(a: &Username, b: &Username) -> RoomName {
    let (a, b) = (a.canonical(), b.canonical());
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    let mut hash = Sha256::new();
    hash.update(DIRECT_ROOM_TAG);
    hash.update([0]);
    hash.update(first.as_bytes());
    hash.update([0]);
    hash.update(second.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    RoomName::parse(&format!("{DIRECT_ROOM_PREFIX}{hex}"))
        .expect("the prefix and hex digits are valid room-name characters within its length")
}

/// Why a topic was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Longer than [`MAX_TOPIC_CHARS`](super::MAX_TOPIC_CHARS) characters.
    #[error("a topic is at most {} characters", super::MAX_TOPIC_CHARS)]
    TooLong,
    /// It holds a control character (a line break, an escape), which would let it rewrite
    /// a terminal's display.
    #[error("a topic may not contain control characters")]
    ControlCharacter,
}

/// Checks a topic against the rules both sides enforce.
///
/// # Errors
/// [`TopicError`] naming the rule broken.
pub fn check_topic(topic: &str) -> Result<(), TopicError> {
    if topic.chars().count() > super::MAX_TOPIC_CHARS {
        return Err(TopicError::TooLong);
    }
    if topic.chars().any(char::is_control) {
        return Err(TopicError::ControlCharacter);
    }
    Ok(())
}

/// Whether `name` is in the namespace of direct conversations.
#[must_use]
pub fn is_direct_room_name(name: &RoomName) -> bool {
    name.canonical().starts_with(DIRECT_ROOM_PREFIX)
}

/// What a `Moderate` request asks the server to do to a group room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModerationAction {
    /// Remove a member (owner or admin; an admin may remove plain members only). They may
    /// join again.
    Kick {
        /// Who.
        user: Username,
    },
    /// Remove a member if they are one, and refuse their joins until unbanned (owner or
    /// admin; an admin may ban plain members and non-members only).
    Ban {
        /// Who.
        user: Username,
    },
    /// Lift a ban (owner or admin).
    Unban {
        /// Who.
        user: Username,
    },
    /// Make a member an admin, or an admin a plain member (owner only).
    SetRole {
        /// Who.
        user: Username,
        /// `Admin` or `Member`; `Owner` is refused (use `TransferOwnership`).
        role: Role,
    },
    /// Set or clear the topic (owner or admin). At most `MAX_TOPIC_CHARS` characters, no
    /// control characters.
    SetTopic {
        /// The new topic; `None` clears it.
        topic: Option<String>,
    },
    /// Set, change or remove the password joiners must give (owner only). Members keep
    /// their membership.
    SetPassword {
        /// The new password; `None` removes it.
        password: Option<String>,
    },
    /// Make the room hidden (never listed, joinable by exact name only) or public (owner
    /// only).
    SetHidden {
        /// Whether it is hidden from now on.
        hidden: bool,
    },
    /// Hand the room to another member (owner only); the old owner becomes an admin.
    TransferOwnership {
        /// The new owner; must be a member.
        to: Username,
    },
    /// Delete the room and its history for everyone (owner only).
    DeleteRoom,
}

/// Something that changed about a room, as its members are told of it
/// (`Push::RoomEvent`) and as the actor's `Moderate` request is answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    /// The room.
    pub room: RoomName,
    /// Who did it.
    pub actor: Username,
    /// Server time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What changed.
    pub change: RoomChange,
}

/// The changes a [`RoomEvent`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomChange {
    /// `user` was removed from the room. They are no longer a member; no copy of a later
    /// message may be sealed for them.
    Kicked {
        /// Who.
        user: Username,
    },
    /// `user` was banned, and removed if they were a member.
    Banned {
        /// Who.
        user: Username,
    },
    /// `user`'s ban was lifted.
    Unbanned {
        /// Who.
        user: Username,
    },
    /// `user`'s role is now `role`.
    RoleChanged {
        /// Who.
        user: Username,
        /// Their new role.
        role: Role,
    },
    /// The topic is now this (`None`: cleared).
    TopicChanged {
        /// The new topic.
        topic: Option<String>,
    },
    /// The password was set, changed or removed.
    PasswordChanged {
        /// Whether joining needs one now.
        has_password: bool,
    },
    /// The room was made hidden or public.
    VisibilityChanged {
        /// Whether it is hidden now.
        hidden: bool,
    },
    /// The room has a new owner: by transfer (the actor was the owner and is an admin now),
    /// or because the owner left or deleted their account (the actor).
    OwnerChanged {
        /// The new owner.
        to: Username,
    },
    /// The room and its history are gone; nobody is a member any more.
    RoomDeleted,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Username {
        Username::parse(name).expect("valid username")
    }

    #[test]
    fn a_direct_name_is_the_same_from_both_sides_and_ignores_case() {
        let one = direct_room_name(&user("Alice"), &user("bob"));
        let other = direct_room_name(&user("BOB"), &user("alice"));
        assert_eq!(one, other);
        assert!(is_direct_room_name(&one));
        assert_eq!(one.as_str().len(), DIRECT_ROOM_PREFIX.len() + 32);
    }

    #[test]
    fn different_pairs_get_different_names_and_group_names_are_not_direct() {
        let ab = direct_room_name(&user("alice"), &user("bob"));
        let ac = direct_room_name(&user("alice"), &user("carol"));
        assert_ne!(ab, ac);
        // The separator keeps "abc"+"dxyz" apart from "abcd"+"xyz".
        assert_ne!(
            direct_room_name(&user("abc"), &user("dxyz")),
            direct_room_name(&user("abcd"), &user("xyz"))
        );
        assert!(!is_direct_room_name(
            &RoomName::parse("general").expect("valid")
        ));
        assert!(is_direct_room_name(
            &RoomName::parse("DM.x").expect("valid")
        ));
    }

    #[test]
    fn topics_are_bounded_and_free_of_control_characters() {
        assert_eq!(check_topic("Release planning — Tuesdays"), Ok(()));
        assert_eq!(check_topic(&"é".repeat(200)), Ok(()));
        assert_eq!(check_topic(&"é".repeat(201)), Err(TopicError::TooLong));
        assert_eq!(
            check_topic("line\nbreak"),
            Err(TopicError::ControlCharacter)
        );
        assert_eq!(check_topic("\u{1b}[2J"), Err(TopicError::ControlCharacter));
    }
}
