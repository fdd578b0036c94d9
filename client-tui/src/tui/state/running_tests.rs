//! Tests of running rooms, direct conversations, typing and read markers in the state.

use std::time::{Duration, Instant};

use shared::protocol::{ModerationAction, Role, RoomChange, RoomEvent, RoomKind};

use super::super::command::{Action, Secret};
use super::super::event::UiEvent;
use super::tests::{logged_in, member, msg, name, open, room, texts};
use super::*;
use crate::events::ClientEvent;
use crate::rooms::{HistoryView, RoomView};

fn event(r: &str, actor: &str, change: RoomChange) -> UiEvent {
    UiEvent::Client(ClientEvent::RoomChanged(RoomEvent {
        room: room(r),
        actor: name(actor),
        at_ms: 1,
        change,
    }))
}

fn commands(effects: &[Effect]) -> Vec<Command> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Command(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn direct_view(peer: &str, messages: Vec<crate::inbox::DecryptedMessage>) -> RoomView {
    let dm = shared::protocol::direct_room_name(&name("alice"), &name(peer));
    RoomView {
        online: Vec::new(),
        room: dm.clone(),
        kind: RoomKind::Direct { peer: name(peer) },
        owner: name(peer),
        admins: Vec::new(),
        topic: None,
        read_up_to: 0,
        has_password: false,
        hidden: true,
        members: vec![member("alice", 1), member(peer, 2)],
        history: HistoryView {
            room: dm,
            messages,
            rejected: Vec::new(),
            has_more: false,
            next_before: None,
        },
    }
}

#[test]
fn every_room_event_is_a_timeline_line_and_changes_what_is_shown() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    state.apply(event(
        "den",
        "bob",
        RoomChange::Kicked {
            user: name("carol"),
        },
    ));
    state.apply(event(
        "den",
        "bob",
        RoomChange::RoleChanged {
            user: name("alice"),
            role: Role::Admin,
        },
    ));
    state.apply(event(
        "den",
        "bob",
        RoomChange::TopicChanged {
            topic: Some("plans".into()),
        },
    ));
    state.apply(event(
        "den",
        "bob",
        RoomChange::VisibilityChanged { hidden: true },
    ));
    state.apply(event(
        "den",
        "bob",
        RoomChange::OwnerChanged { to: name("alice") },
    ));
    let den = state.room(&room("den")).expect("open");
    let lines = texts(&den.timeline);
    for expected in [
        "notice bob kicked carol",
        "notice bob made alice an admin",
        "notice bob set the topic to “plans”",
        "notice bob made the room hidden",
        "notice the room passed from bob to alice, the new owner",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected} in {lines:?}"
        );
    }
    assert_eq!(den.topic.as_deref(), Some("plans"));
    assert!(den.hidden);
    assert_eq!(den.role_of(&name("alice")), Role::Owner);
    assert_eq!(
        den.role_of(&name("bob")),
        Role::Admin,
        "the old owner becomes an admin"
    );
    assert!(den.ended.is_none());

    state.apply(event("den", "alice", RoomChange::RoomDeleted));
    let den = state.room(&room("den")).expect("still listed");
    assert_eq!(den.ended.as_deref(), Some("the room was deleted by alice"));
    assert!(den.members.is_empty());
    let effects = state.act(Action::Send("anyone?".into()));
    assert_eq!(
        effects,
        vec![Effect::SetInput("anyone?".into())],
        "given back, not lost"
    );
    // Leaving a room that is gone only takes it off the list.
    let effects = state.act(Action::Leave(room("den")));
    assert!(commands(&effects)
        .iter()
        .all(|c| !matches!(c, Command::Leave { .. })));
    assert!(state.room(&room("den")).is_none());
}

#[test]
fn a_user_kicked_with_unsent_messages_sees_them_fail_and_can_join_again() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    state.act(Action::Send("pending".into()));
    state.apply(event(
        "den",
        "bob",
        RoomChange::Kicked {
            user: name("alice"),
        },
    ));
    let den = state.room(&room("den")).expect("listed");
    assert!(den.ended.is_some());
    assert!(den.timeline.entries().iter().any(|e| matches!(
        &e.kind,
        EntryKind::Message {
            delivery: Delivery::Failed(_),
            ..
        }
    )));
    assert!(state
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("bob kicked alice")));
    assert!(
        commands(&state.act(Action::Retry)).is_empty(),
        "nothing is sent again to a room the user is out of"
    );
    let effects = state.act(Action::Join {
        room: room("den"),
        password: None,
    });
    assert_eq!(
        commands(&effects),
        vec![Command::JoinRoom {
            room: room("den"),
            password: None
        }],
        "a room the user is out of is joined again, not just shown"
    );
}

#[test]
fn moderation_commands_go_to_the_room_shown_and_never_to_a_direct_conversation() {
    let mut state = logged_in();
    assert!(state
        .act(Action::Moderate(ModerationAction::DeleteRoom))
        .is_empty());
    open(&mut state, "den", true, Vec::new());
    let effects = state.act(Action::Submit("/kick carol".into()));
    assert_eq!(
        commands(&effects),
        vec![Command::Moderate {
            room: room("den"),
            action: ModerationAction::Kick {
                user: name("carol")
            }
        }]
    );
    assert_eq!(
        state.act(Action::Submit("/delete-room".into())),
        vec![Effect::Dialog(DialogKind::ConfirmDeleteRoom(room("den")))]
    );
    state.apply(UiEvent::RoomOpened {
        view: direct_view("bob", Vec::new()),
        focus: true,
    });
    assert!(state.act(Action::Submit("/ban bob".into())).is_empty());
    assert!(state
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("no moderators")));
}

#[test]
fn a_password_is_neither_shown_nor_kept_in_the_input_history() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    let effects = state.act(Action::Submit("/password hunter2".into()));
    assert_eq!(
        commands(&effects),
        vec![Command::SetPassword {
            room: room("den"),
            password: Some(Secret::new("hunter2"))
        }]
    );
    let status = state.status.clone().expect("a status");
    assert!(!status.text.contains("hunter2"), "{}", status.text);
    assert_eq!(state.history.older(""), None, "not in the input history");
    state.act(Action::Submit("/topic hello".into()));
    assert_eq!(state.history.older(""), Some("/topic hello".into()));
}

#[test]
fn msg_opens_the_conversation_sends_the_text_there_and_lists_it_by_the_peer() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    let effects = state.act(Action::Submit("/msg bob hi bob".into()));
    assert_eq!(
        commands(&effects),
        vec![Command::OpenDirect { user: name("bob") }]
    );
    let view = direct_view("bob", Vec::new());
    let dm = view.room.clone();
    let effects = state.apply(UiEvent::RoomOpened { view, focus: true });
    assert!(
        commands(&effects).iter().any(
            |c| matches!(c, Command::Send { room: r, text, .. } if *r == dm && text == "hi bob")
        ),
        "{effects:?}"
    );
    let shown = state.current_room().expect("the conversation is shown");
    assert_eq!(shown.label(), "@bob");
    open(&mut state, "zoo", false, Vec::new());
    let order: Vec<String> = state.listed_rooms().iter().map(|r| r.label()).collect();
    assert_eq!(
        order,
        ["#den", "#zoo", "@bob"],
        "direct conversations come last"
    );
    // Open already: /msg switches to it without asking the server.
    state.act(Action::ShowLobby);
    let effects = state.act(Action::Submit("/msg bob".into()));
    assert!(commands(&effects).is_empty(), "{effects:?}");
    assert_eq!(state.current_room().map(|r| r.name.clone()), Some(dm));
}

#[test]
fn a_failed_msg_gives_the_text_back() {
    let mut state = logged_in();
    state.act(Action::Submit("/msg carol are you there".into()));
    let effects = state.apply(UiEvent::DirectFailed {
        user: name("carol"),
        message: "carol does not accept direct messages from you.".into(),
    });
    assert!(effects.contains(&Effect::SetInput("/msg carol are you there".into())));
}

#[test]
fn a_conversation_someone_starts_is_listed_and_opened_quietly() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    let dm = shared::protocol::direct_room_name(&name("alice"), &name("bob"));
    let effects = state.apply(UiEvent::Client(ClientEvent::DirectOpened {
        room: dm.clone(),
        peer: member("bob", 2),
    }));
    assert_eq!(
        commands(&effects),
        vec![Command::Reopen { room: dm.clone() }]
    );
    assert_eq!(state.room(&dm).map(RoomBuffer::label), Some("@bob".into()));
    assert_eq!(
        state.current_room().map(|r| r.name.clone()),
        Some(room("den")),
        "the user is not moved"
    );
    let effects = state.apply(UiEvent::Blocked {
        user: name("bob"),
        blocked: true,
    });
    assert!(
        state.room(&dm).is_none(),
        "blocking ends the conversation: {effects:?}"
    );
}

#[test]
fn typing_is_told_every_few_seconds_and_stopped_and_never_when_switched_off() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    let start = Instant::now();
    let typing = |on| Command::SetTyping {
        room: room("den"),
        typing: on,
    };
    assert_eq!(commands(&state.edited("h", start)), vec![typing(true)]);
    assert!(state
        .edited("he", start + Duration::from_secs(1))
        .is_empty());
    assert_eq!(
        commands(&state.edited("hel", start + Duration::from_secs(4))),
        vec![typing(true)]
    );
    assert_eq!(commands(&state.edited("", start)), vec![typing(false)]);
    assert!(state.edited("", start).is_empty(), "stopped once");
    state.edited("x", start);
    let effects = state.act(Action::Send("x".into()));
    assert_eq!(commands(&effects)[0], typing(false), "sending stops typing");
    assert!(
        commands(&state.edited("/kick bob", start)).is_empty(),
        "not for commands"
    );

    let effects = state.act(Action::Submit("/typing off".into()));
    assert!(
        effects.contains(&Effect::SaveSettings(super::super::profile::Settings {
            typing: false,
            ..super::super::profile::Settings::default()
        }))
    );
    assert!(
        state.edited("quiet", start).is_empty(),
        "nothing sent when off"
    );
}

#[test]
fn others_typing_shows_until_it_lapses() {
    let mut state = logged_in();
    open(&mut state, "den", true, Vec::new());
    state.apply(UiEvent::Client(ClientEvent::Typing {
        room: room("den"),
        username: name("bob"),
        typing: true,
    }));
    assert_eq!(state.room(&room("den")).expect("open").typing.len(), 1);
    state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "den", 3, "bob", "done",
    ))));
    assert!(
        state.room(&room("den")).expect("open").typing.is_empty(),
        "a message ends its sender's typing"
    );
    state.apply(UiEvent::Client(ClientEvent::Typing {
        room: room("den"),
        username: name("bob"),
        typing: true,
    }));
    let (changed, _) = state.tick(Instant::now() + Duration::from_secs(2));
    assert!(!changed || state.room(&room("den")).expect("open").typing.len() == 1);
    let (changed, _) = state.tick(Instant::now() + Duration::from_secs(7));
    assert!(changed);
    assert!(state.room(&room("den")).expect("open").typing.is_empty());
}

#[test]
fn read_markers_follow_what_is_seen_and_what_other_sessions_read() {
    let mut state = logged_in();
    open(&mut state, "den", true, vec![msg("den", 5, "bob", "five")]);
    let mark = |seq| Command::MarkRead {
        room: room("den"),
        seq,
    };
    let now = Instant::now();
    assert_eq!(commands(&state.tick(now).1), vec![mark(5)]);
    assert!(commands(&state.tick(now).1).is_empty(), "sent once");
    state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "den", 6, "bob", "six",
    ))));
    assert_eq!(commands(&state.tick(now).1), vec![mark(6)]);

    // Another room, read on another session.
    open(&mut state, "zoo", false, Vec::new());
    for seq in 1..=3 {
        state.apply(UiEvent::Client(ClientEvent::Message(msg(
            "zoo", seq, "bob", "x",
        ))));
    }
    assert_eq!(state.room(&room("zoo")).expect("open").unread, 3);
    state.apply(UiEvent::Client(ClientEvent::ReadUpTo {
        room: room("zoo"),
        seq: 2,
    }));
    assert_eq!(state.room(&room("zoo")).expect("open").unread, 1);

    state.act(Action::Submit("/read-markers off".into()));
    state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "den", 7, "bob", "seven",
    ))));
    assert!(
        commands(&state.tick(now).1).is_empty(),
        "nothing sent when off"
    );
}

#[test]
fn an_account_is_deleted_only_when_its_name_is_typed() {
    let mut state = logged_in();
    assert_eq!(
        state.act(Action::Submit("/delete-account".into())),
        vec![Effect::Dialog(DialogKind::DeleteAccount {
            username: name("alice")
        })]
    );
    assert!(state
        .act(Action::DeleteAccount {
            typed: "bob".into()
        })
        .is_empty());
    assert_eq!(
        commands(&state.act(Action::DeleteAccount {
            typed: " Alice ".into()
        })),
        vec![Command::DeleteAccount]
    );
    let effects = state.apply(UiEvent::Client(ClientEvent::AccountDeleted));
    assert_eq!(effects, vec![Effect::Dialog(DialogKind::AccountDeleted)]);
}

#[test]
fn a_room_left_behind_while_away_ends_after_the_next_login() {
    let mut state = logged_in();
    open(&mut state, "den", false, Vec::new());
    open(&mut state, "zoo", false, Vec::new());
    state.apply(UiEvent::Memberships(vec![room("zoo")]));
    let den = state.room(&room("den")).expect("still listed");
    assert!(den
        .ended
        .as_deref()
        .is_some_and(|w| w.contains("while you were away")));
    assert!(state.room(&room("zoo")).expect("listed").ended.is_none());
}

#[test]
fn unread_counts_at_start_follow_the_read_marker() {
    let mut state = logged_in();
    let mut view = direct_view("bob", (1..=4).map(|q| msg("x", q, "bob", "m")).collect());
    for m in &mut view.history.messages {
        m.room = view.room.clone();
    }
    view.read_up_to = 3;
    state.apply(UiEvent::RoomOpened { view, focus: false });
    assert_eq!(
        state.rooms[0].unread, 1,
        "only the message after the marker is unread"
    );
}
