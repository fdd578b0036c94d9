//! What the client believes of what protocol 4 lets a server say about rooms: the checks a
//! room event, a direct conversation and a topic must pass before anything acts on them.
//! The server is trusted to deliver, not to vouch, so each check is local.

use shared::protocol::{check_topic, direct_room_name, is_direct_room_name, RoomChange, RoomEvent};
use shared::{RoomName, Username};

/// Why a room event is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disbelief {
    /// Direct conversations are never moderated.
    DirectRoom,
    /// A topic that breaks the rules both sides enforce (a control character could
    /// rewrite the terminal).
    BadTopic,
}

/// Checks a room event's content (membership of the room is checked by the session).
pub(crate) fn check_event(event: &RoomEvent) -> Result<(), Disbelief> {
    if is_direct_room_name(&event.room) {
        return Err(Disbelief::DirectRoom);
    }
    match &event.change {
        RoomChange::TopicChanged { topic: Some(topic) } if check_topic(topic).is_err() => {
            Err(Disbelief::BadTopic)
        }
        _ => Ok(()),
    }
}

/// A topic as the server reported it, if it keeps the topic rules (else none is shown).
pub(crate) fn believable_topic(topic: Option<String>) -> Option<String> {
    topic.filter(|t| check_topic(t).is_ok())
}

/// Whether `room` is the direct conversation between `me` and `peer` (and `peer` is not
/// `me`): a server cannot pass a group room, or another pair's conversation, off as one.
pub(crate) fn is_direct_between(room: &RoomName, me: &Username, peer: &Username) -> bool {
    !me.same_as(peer) && direct_room_name(me, peer).same_as(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: &str) -> Username {
        Username::parse(n).expect("valid")
    }

    fn event(room: &str, change: RoomChange) -> RoomEvent {
        RoomEvent {
            room: RoomName::parse(room).expect("valid"),
            actor: user("alice"),
            at_ms: 1,
            change,
        }
    }

    #[test]
    fn moderation_of_a_direct_room_and_control_characters_in_topics_are_not_believed() {
        let kick = RoomChange::Kicked { user: user("bob") };
        assert_eq!(check_event(&event("den", kick.clone())), Ok(()));
        let dm = direct_room_name(&user("alice"), &user("bob"));
        assert_eq!(
            check_event(&event(dm.as_str(), kick)),
            Err(Disbelief::DirectRoom)
        );
        let evil = RoomChange::TopicChanged {
            topic: Some("\u{1b}[2Jpwned".into()),
        };
        assert_eq!(check_event(&event("den", evil)), Err(Disbelief::BadTopic));
        let cleared = RoomChange::TopicChanged { topic: None };
        assert_eq!(check_event(&event("den", cleared)), Ok(()));
        assert_eq!(believable_topic(Some("a\nb".into())), None);
        assert_eq!(believable_topic(Some("ok".into())), Some("ok".into()));
    }

    #[test]
    fn a_direct_room_must_be_named_for_both_users() {
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let ab = direct_room_name(&alice, &bob);
        assert!(is_direct_between(&ab, &alice, &bob));
        assert!(is_direct_between(&ab, &bob, &alice));
        assert!(!is_direct_between(&ab, &alice, &carol));
        assert!(!is_direct_between(
            &direct_room_name(&alice, &alice),
            &alice,
            &alice
        ));
        assert!(!is_direct_between(
            &RoomName::parse("general").expect("valid"),
            &alice,
            &bob
        ));
    }
}
