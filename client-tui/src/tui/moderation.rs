//! Running a room in plain words: each room event as a timeline line ("alice kicked bob"),
//! what a moderation request is called while it runs or fails, and why the server refused
//! it ("only the owner can …", "you are banned from …").

use shared::protocol::{ModerationAction, Role, RoomChange, RoomEvent};
use shared::ErrorCode;

use super::event::describe;
use crate::error::ClientError;

/// A room event as a line of the room's timeline.
pub fn event_line(event: &RoomEvent) -> String {
    let actor = &event.actor;
    match &event.change {
        RoomChange::Kicked { user } => format!("{actor} kicked {user}"),
        RoomChange::Banned { user } => format!("{actor} banned {user}"),
        RoomChange::Unbanned { user } => format!("{actor} lifted the ban on {user}"),
        RoomChange::RoleChanged { user, role } => match role {
            Role::Owner => format!("{actor} made {user} the owner"),
            Role::Admin => format!("{actor} made {user} an admin"),
            Role::Member => format!("{actor} made {user} a plain member"),
        },
        RoomChange::TopicChanged { topic: Some(topic) } => {
            format!("{actor} set the topic to “{topic}”")
        }
        RoomChange::TopicChanged { topic: None } => format!("{actor} cleared the topic"),
        RoomChange::PasswordChanged { has_password: true } => {
            format!("{actor} changed the room's password")
        }
        RoomChange::PasswordChanged {
            has_password: false,
        } => format!("{actor} removed the room's password"),
        RoomChange::VisibilityChanged { hidden: true } => {
            format!("{actor} made the room hidden")
        }
        RoomChange::VisibilityChanged { hidden: false } => {
            format!("{actor} made the room public")
        }
        RoomChange::OwnerChanged { to } => {
            format!("the room passed from {actor} to {to}, the new owner")
        }
        RoomChange::RoomDeleted => format!("the room was deleted by {actor}"),
    }
}

/// What a moderation request does, for the status line and error dialogs
/// ("Kicking bob from #den").
pub fn action_title(room: &str, action: &ModerationAction) -> String {
    match action {
        ModerationAction::Kick { user } => format!("Kicking {user} from {room}"),
        ModerationAction::Ban { user } => format!("Banning {user} from {room}"),
        ModerationAction::Unban { user } => format!("Lifting the ban on {user} in {room}"),
        ModerationAction::SetRole { user, role } => match role {
            Role::Admin => format!("Making {user} an admin of {room}"),
            _ => format!("Making {user} a plain member of {room}"),
        },
        ModerationAction::SetTopic { topic: Some(_) } => format!("Setting the topic of {room}"),
        ModerationAction::SetTopic { topic: None } => format!("Clearing the topic of {room}"),
        ModerationAction::SetPassword { password: Some(_) } => {
            format!("Changing the password of {room}")
        }
        ModerationAction::SetPassword { password: None } => {
            format!("Removing the password of {room}")
        }
        ModerationAction::SetHidden { hidden: true } => format!("Hiding {room}"),
        ModerationAction::SetHidden { hidden: false } => format!("Making {room} public"),
        ModerationAction::TransferOwnership { to } => format!("Handing {room} to {to}"),
        ModerationAction::DeleteRoom => format!("Deleting {room}"),
    }
}

/// A password change as it is named in words: whether a password is set, never which
/// (the password itself goes only into the request).
pub fn redacted_password_change(set: bool) -> ModerationAction {
    ModerationAction::SetPassword {
        password: set.then(String::new),
    }
}

/// Who may do `action`, as the sentence shown when the server says the user may not.
pub fn who_may(action: &ModerationAction) -> &'static str {
    match action {
        ModerationAction::Kick { .. } => "Only the owner or an admin can kick members.",
        ModerationAction::Ban { .. } => "Only the owner or an admin can ban users.",
        ModerationAction::Unban { .. } => "Only the owner or an admin can lift a ban.",
        ModerationAction::SetTopic { .. } => "Only the owner or an admin can set the topic.",
        ModerationAction::SetRole { .. } => "Only the owner can appoint or remove admins.",
        ModerationAction::SetPassword { .. } => "Only the owner can change the password.",
        ModerationAction::SetHidden { .. } => "Only the owner can hide the room or make it public.",
        ModerationAction::TransferOwnership { .. } => "Only the owner can hand the room over.",
        ModerationAction::DeleteRoom => "Only the owner can delete the room.",
    }
}

/// Why a moderation request failed, in plain words.
pub fn refusal(room: &str, action: &ModerationAction, error: &ClientError) -> String {
    match error.code() {
        Some(ErrorCode::NotPermitted) => format!(
            "{} (An admin may act on plain members only; direct conversations have no \
             moderators.)",
            who_may(action)
        ),
        Some(ErrorCode::Banned) => format!("You are banned from {room}."),
        _ => describe(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::{RoomName, Username};

    fn user(n: &str) -> Username {
        Username::parse(n).expect("valid")
    }

    fn line(change: RoomChange) -> String {
        event_line(&RoomEvent {
            room: RoomName::parse("den").expect("valid"),
            actor: user("alice"),
            at_ms: 1,
            change,
        })
    }

    #[test]
    fn every_room_event_reads_as_plain_words() {
        assert_eq!(
            line(RoomChange::Kicked { user: user("bob") }),
            "alice kicked bob"
        );
        assert_eq!(
            line(RoomChange::Banned { user: user("bob") }),
            "alice banned bob"
        );
        assert_eq!(
            line(RoomChange::TopicChanged {
                topic: Some("plans".into())
            }),
            "alice set the topic to “plans”"
        );
        assert_eq!(
            line(RoomChange::VisibilityChanged { hidden: true }),
            "alice made the room hidden"
        );
        assert_eq!(
            line(RoomChange::RoomDeleted),
            "the room was deleted by alice"
        );
        assert_eq!(
            line(RoomChange::RoleChanged {
                user: user("bob"),
                role: Role::Admin
            }),
            "alice made bob an admin"
        );
    }

    #[test]
    fn refusals_say_who_may_and_bans_say_so() {
        let not_permitted = ClientError::Server {
            code: ErrorCode::NotPermitted,
            message: "not permitted".into(),
            detail: None,
        };
        let text = refusal("#den", &ModerationAction::DeleteRoom, &not_permitted);
        assert!(
            text.starts_with("Only the owner can delete the room."),
            "{text}"
        );
        let banned = ClientError::Server {
            code: ErrorCode::Banned,
            message: "banned".into(),
            detail: None,
        };
        assert_eq!(
            refusal("#den", &ModerationAction::DeleteRoom, &banned),
            "You are banned from #den."
        );
    }
}
