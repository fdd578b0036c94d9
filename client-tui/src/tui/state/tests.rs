//! Tests of the state without a terminal.

use std::path::PathBuf;

use shared::MessageId;

use super::super::command::Action;
use super::super::event::UiEvent;
use super::*;
use crate::directory::KeyStatus;
use crate::events::{ClientEvent, MembershipSource};
use crate::inbox::RejectReason;
use crate::inbox::{DecryptedMessage, Rejection};
use crate::rooms::HistoryView;
use crate::rooms::RoomView;
use shared::protocol::SendAck;

pub(super) fn name(s: &str) -> Username {
    Username::parse(s).expect("valid")
}

pub(super) fn room(s: &str) -> RoomName {
    RoomName::parse(s).expect("valid")
}

pub(super) fn msg(r: &str, seq: u64, sender: &str, text: &str) -> DecryptedMessage {
    DecryptedMessage {
        room: room(r),
        seq,
        message_id: MessageId([seq as u8; 16]),
        sender: name(sender),
        device: shared::DeviceId([1; 16]),
        counter: seq,
        sent_at_ms: 1_000 + seq,
        server_time_ms: 1_000 + seq,
        recipients: vec![name("alice"), name(sender)],
        unknown_recipients: Vec::new(),
        text: text.into(),
    }
}

fn ack(r: &str, seq: u64, id: u8) -> SendAck {
    SendAck {
        room: room(r),
        message_id: MessageId([id; 16]),
        seq,
        server_time_ms: 5_000,
    }
}

pub(super) fn texts(t: &Timeline) -> Vec<String> {
    t.entries()
        .iter()
        .map(|e| match &e.kind {
            EntryKind::Message { text, .. } => text.clone(),
            EntryKind::Rejected { seq, .. } => format!("rejected {seq}"),
            EntryKind::Notice { text, .. } => format!("notice {text}"),
        })
        .collect()
}

pub(super) fn member(n: &str, byte: u8) -> MemberView {
    MemberView {
        username: name(n),
        fingerprint: Fingerprint([byte; 32]),
        status: KeyStatus::Trusted,
        verified: false,
    }
}

pub(super) fn logged_in() -> AppState {
    let mut state = AppState::new(
        "ws://x/ws",
        Start::NewAccount {
            username: None,
            import: None,
            key_path: None,
        },
    );
    let effects = state.apply(UiEvent::Ready(Me {
        username: name("alice"),
        fingerprint: Fingerprint([1; 32]),
        key_path: PathBuf::from("/k.pem"),
    }));
    assert_eq!(effects, vec![Effect::EnterMain]);
    state.apply(UiEvent::Connection(ConnectionState::Online));
    state
}

pub(super) fn open(state: &mut AppState, r: &str, focus: bool, messages: Vec<DecryptedMessage>) {
    state.apply(UiEvent::RoomOpened {
        view: RoomView {
            online: Vec::new(),
            room: room(r),
            owner: name("bob"),
            kind: shared::protocol::RoomKind::Group,
            admins: Vec::new(),
            topic: None,
            read_up_to: 0,
            has_password: false,
            hidden: false,
            members: vec![member("alice", 1), member("bob", 2)],
            history: HistoryView {
                room: room(r),
                messages,
                rejected: Vec::new(),
                has_more: true,
                next_before: None,
            },
        },
        focus,
    });
}

fn page(r: &str, seqs: std::ops::RangeInclusive<u64>, has_more: bool) -> HistoryView {
    HistoryView {
        room: room(r),
        messages: seqs.map(|q| msg(r, q, "bob", &format!("m{q}"))).collect(),
        rejected: Vec::new(),
        has_more,
        next_before: None,
    }
}

#[test]
fn a_reopened_room_fills_the_gap_left_while_offline() {
    let mut state = logged_in();
    open(
        &mut state,
        "r",
        true,
        (1..=3)
            .map(|q| msg("r", q, "bob", &format!("m{q}")))
            .collect(),
    );
    // Reconnected: the newest page starts at 60, far past the 3 shown.
    let effects = state.apply(UiEvent::RoomOpened {
        view: RoomView {
            online: Vec::new(),
            room: room("r"),
            owner: name("bob"),
            kind: shared::protocol::RoomKind::Group,
            admins: Vec::new(),
            topic: None,
            read_up_to: 0,
            has_password: false,
            hidden: false,
            members: vec![member("alice", 1), member("bob", 2)],
            history: page("r", 60..=109, true),
        },
        focus: false,
    });
    assert_eq!(
        effects,
        vec![Effect::Command(Command::LoadOlder {
            room: room("r"),
            before_seq: 60
        })]
    );
    let effects = state.apply(UiEvent::HistoryLoaded(page("r", 10..=59, true)));
    assert_eq!(
        effects,
        vec![Effect::Command(Command::LoadOlder {
            room: room("r"),
            before_seq: 10
        })]
    );
    // This page reaches the messages shown before: the gap is closed.
    let effects = state.apply(UiEvent::HistoryLoaded(page("r", 3..=9, true)));
    assert!(effects.is_empty(), "{effects:?}");
    let buffer = state.room(&room("r")).expect("room");
    assert_eq!(buffer.gap_floor, None);
    let seqs: Vec<u64> = buffer
        .timeline
        .entries()
        .iter()
        .filter_map(Entry::seq)
        .collect();
    assert_eq!(seqs, (1..=109).collect::<Vec<u64>>());
}

#[test]
fn timeline_orders_by_seq_and_skips_duplicates() {
    let mut t = Timeline::default();
    assert!(t.insert_message(&msg("r", 5, "bob", "five"), false));
    assert!(t.insert_message(&msg("r", 7, "bob", "seven"), false));
    assert!(t.insert_message(&msg("r", 6, "bob", "six"), false));
    assert!(!t.insert_message(&msg("r", 6, "bob", "six"), false));
    // An older page goes before everything.
    assert!(t.insert_message(&msg("r", 2, "bob", "two"), false));
    assert_eq!(texts(&t), ["two", "five", "six", "seven"]);
    assert_eq!(t.oldest_seq(), Some(2));

    // A refusal is replaced once the message decrypts (after accepting a key).
    let rejection = Rejection {
        room: room("r"),
        seq: 8,
        message_id: MessageId([8; 16]),
        sender: name("bob"),
        reason: RejectReason::UntrustedSenderKey,
    };
    assert!(t.insert_rejection(&rejection));
    assert!(!t.insert_rejection(&rejection));
    assert_eq!(texts(&t).last().map(String::as_str), Some("rejected 8"));
    assert!(t.insert_message(&msg("r", 8, "bob", "eight"), false));
    assert_eq!(texts(&t).last().map(String::as_str), Some("eight"));
}

#[test]
fn own_pending_message_is_confirmed_or_failed() {
    let mut t = Timeline::default();
    t.push_pending(1, name("alice"), "mine".into());
    t.push_pending(2, name("alice"), "lost".into());
    t.confirm(1, &ack("r", 10, 100));
    t.fail(2, "offline");
    let kinds: Vec<(Option<u64>, Delivery)> = t
        .entries()
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Message { seq, delivery, .. } => Some((*seq, delivery.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Some(10), Delivery::Verified),
            (None, Delivery::Failed("offline".into()))
        ]
    );
    // History that already brought seq 10 makes a late ack drop its pending line.
    let mut t = Timeline::default();
    t.push_pending(3, name("alice"), "mine".into());
    t.insert_message(&msg("r", 11, "alice", "mine"), true);
    t.confirm(3, &ack("r", 11, 200));
    assert_eq!(texts(&t), ["mine"]);
}

#[test]
fn unread_counts_grow_elsewhere_and_reset_on_view() {
    let mut state = logged_in();
    open(&mut state, "a", false, Vec::new());
    open(&mut state, "b", true, Vec::new());
    for (seq, r) in [(1, "a"), (2, "a"), (1, "b")] {
        state.apply(UiEvent::Client(ClientEvent::Message(msg(
            r, seq, "bob", "x",
        ))));
    }
    state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "a", 3, "alice", "me",
    ))));
    assert_eq!(state.room(&room("a")).map(|r| r.unread), Some(2));
    assert_eq!(state.room(&room("b")).map(|r| r.unread), Some(0));
    assert_eq!(state.act(Action::PrevRoom), Vec::new());
    assert_eq!(state.focus, Focus::Room("a".into()), "b → a");
    assert_eq!(state.room(&room("a")).map(|r| r.unread), Some(0));
    assert_eq!(state.act(Action::PrevRoom), Vec::new());
    assert_eq!(state.focus, Focus::Lobby);
}

#[test]
fn sending_needs_a_room_and_creates_a_pending_line() {
    let mut state = logged_in();
    assert_eq!(
        state.act(Action::Send("hi".into())),
        vec![Effect::SetInput("hi".into())],
        "the text is given back, not lost"
    );
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
    open(&mut state, "a", true, Vec::new());
    let effects = state.act(Action::Send("hi".into()));
    let message_id = state
        .outbox
        .get(1)
        .map(|o| o.message_id)
        .expect("in the outbox");
    assert_eq!(
        effects,
        vec![Effect::Command(Command::Send {
            room: room("a"),
            text: "hi".into(),
            local_id: 1,
            message_id,
        })]
    );
    let pending = state
        .room(&room("a"))
        .and_then(|r| r.timeline.entries().last().cloned());
    assert!(matches!(
        pending.map(|e| e.kind),
        Some(EntryKind::Message {
            delivery: Delivery::Sending,
            own: true,
            ..
        })
    ));
}

#[test]
fn older_history_is_requested_once_and_only_when_there_is_more() {
    let mut state = logged_in();
    open(&mut state, "a", true, vec![msg("a", 40, "bob", "x")]);
    assert_eq!(
        state.act(Action::LoadOlder),
        vec![Effect::Command(Command::LoadOlder {
            room: room("a"),
            before_seq: 40,
        })]
    );
    assert!(state.act(Action::LoadOlder).is_empty(), "already loading");
    state.apply(UiEvent::HistoryLoaded(HistoryView {
        room: room("a"),
        messages: vec![msg("a", 39, "bob", "older")],
        rejected: Vec::new(),
        has_more: false,
        next_before: None,
    }));
    let buffer = state.room(&room("a")).cloned().expect("open");
    assert!(!buffer.loading_older && !buffer.has_more);
    assert!(state.act(Action::LoadOlder).is_empty());
    // Saying why: what came before the user joined was never encrypted to them.
    let said = state
        .status
        .as_ref()
        .map(|s| s.text.clone())
        .expect("a status");
    assert!(said.contains("before you joined"), "{said}");
}

#[test]
fn an_empty_page_that_says_where_to_go_on_is_followed() {
    let mut state = logged_in();
    open(&mut state, "a", true, vec![msg("a", 40, "bob", "x")]);
    state.act(Action::LoadOlder);
    // The server read a long stretch with nothing for this user: no messages, but
    // more below seq 7.
    state.apply(UiEvent::HistoryLoaded(HistoryView {
        room: room("a"),
        messages: Vec::new(),
        rejected: Vec::new(),
        has_more: true,
        next_before: Some(7),
    }));
    assert_eq!(
        state.act(Action::LoadOlder),
        vec![Effect::Command(Command::LoadOlder {
            room: room("a"),
            before_seq: 7,
        })]
    );
}

#[test]
fn key_change_raises_an_alert_until_accepted() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let effects = state.apply(UiEvent::Client(ClientEvent::KeyChanged {
        username: name("bob"),
        pinned_fingerprint: Fingerprint([2; 32]),
        new_fingerprint: Fingerprint([9; 32]),
        verified: false,
        rooms: vec![room("a")],
    }));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Dialog(DialogKind::KeyAlert(KeyAlert { username, .. }))] if *username == name("bob")
    ));
    let bob = |s: &AppState| {
        s.room(&room("a"))
            .and_then(|r| {
                r.members
                    .iter()
                    .find(|m| m.username == name("bob"))
                    .cloned()
            })
            .expect("bob listed")
    };
    assert!(matches!(bob(&state).status, KeyStatus::Unaccepted { .. }));
    assert_eq!(state.key_changes.len(), 1);
    assert_eq!(
        state.act(Action::AcceptKey(name("bob"))),
        vec![Effect::Command(Command::AcceptKey {
            username: name("bob")
        })]
    );
    state.apply(UiEvent::KeyAccepted {
        username: name("bob"),
        fingerprint: Fingerprint([9; 32]),
    });
    assert_eq!(bob(&state).status, KeyStatus::Trusted);
    assert_eq!(bob(&state).fingerprint, Fingerprint([9; 32]));
    assert!(state.key_changes.is_empty());
}

#[test]
fn joining_an_open_room_switches_and_a_refused_join_asks_for_a_password() {
    let mut state = logged_in();
    open(&mut state, "a", false, Vec::new());
    assert_eq!(
        state.act(Action::Join {
            room: room("A"),
            password: None
        }),
        Vec::new()
    );
    assert_eq!(
        state.focus,
        Focus::Room("a".into()),
        "switched, not joined again"
    );
    assert_eq!(
        state.apply(UiEvent::PasswordNeeded {
            room: room("den"),
            wrong: false
        }),
        vec![Effect::Dialog(DialogKind::Password {
            room: room("den"),
            wrong: false
        })]
    );
}

#[test]
fn connection_loss_and_return_are_noted_in_rooms() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    state.apply(UiEvent::Connection(ConnectionState::Offline {
        reason: "gone.".into(),
        retry_in: Duration::from_secs(1),
        attempt: 0,
    }));
    assert!(state
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("Reconnecting in 1 s")));
    state.apply(UiEvent::Connection(ConnectionState::Online));
    let notices = texts(&state.room(&room("a")).expect("open").timeline);
    assert!(notices.iter().any(|t| t.contains("Connection lost")));
    assert!(notices.iter().any(|t| t.contains("Reconnected")));
}

fn joined(r: &str, who: &str, byte: u8, source: MembershipSource) -> UiEvent {
    UiEvent::Client(ClientEvent::MemberJoined {
        room: room(r),
        member: member(who, byte),
        source,
    })
}

fn notices(state: &AppState, r: &str) -> Vec<String> {
    state
        .room(&room(r))
        .map(|b| {
            b.timeline
                .entries()
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::Notice { text, .. } => Some(text.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn send_pending(state: &mut AppState, text: &str) -> u64 {
    match state.act(Action::Send(text.into())).as_slice() {
        [Effect::Command(Command::Send { local_id, .. })] => *local_id,
        other => panic!("expected a Send, got {other:?}"),
    }
}

#[test]
fn joins_and_leaves_say_how_the_client_learned_of_them() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    state.apply(joined("a", "carol", 7, MembershipSource::Push));
    state.apply(joined("a", "dave", 8, MembershipSource::Reopened));
    state.apply(joined("a", "erin", 9, MembershipSource::SendRefused));
    state.apply(UiEvent::Client(ClientEvent::MemberLeft {
        room: room("a"),
        username: name("dave"),
        source: MembershipSource::Reopened,
    }));
    let lines = notices(&state, "a");
    assert!(
        lines.contains(&"→ carol joined · key 0707 0707…".to_owned()),
        "{lines:?}"
    );
    assert!(lines.contains(&"→ dave joined while you were away · key 0808 0808…".to_owned()));
    assert!(lines.contains(&"→ erin was added · key 0909 0909…".to_owned()));
    assert!(lines.contains(&"← dave left while you were away".to_owned()));
    let members: Vec<String> = state
        .room(&room("a"))
        .map(|b| b.members.iter().map(|m| m.username.to_string()).collect())
        .unwrap_or_default();
    assert_eq!(members, ["alice", "bob", "carol", "erin"]);
}

#[test]
fn a_send_refused_for_added_members_shows_them_and_is_resent_once() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let id = send_pending(&mut state, "hello all");
    // The error arrives before the client's MemberJoined event.
    let effects = state.apply(UiEvent::MembersAdded {
        room: room("a"),
        local_id: id,
        added: vec![name("carol")],
    });
    let message_id = state.outbox.get(id).map(|o| o.message_id).expect("unsent");
    assert_eq!(
        effects,
        vec![Effect::Command(Command::Send {
            room: room("a"),
            text: "hello all".into(),
            local_id: id,
            message_id,
        })],
        "re-sent once, with the same line and id"
    );
    assert!(notices(&state, "a").contains(&"→ carol was added".to_owned()));
    let pending = |s: &AppState| {
        s.room(&room("a"))
            .and_then(|b| b.timeline.pending_text(id).map(str::to_owned))
    };
    assert_eq!(
        pending(&state).as_deref(),
        Some("hello all"),
        "the line stays"
    );
    // The event completes the same line instead of adding a second one.
    state.apply(joined("a", "carol", 7, MembershipSource::SendRefused));
    let carol: Vec<String> = notices(&state, "a")
        .into_iter()
        .filter(|t| t.contains("carol"))
        .collect();
    assert_eq!(carol, ["→ carol was added · key 0707 0707…"]);
    // A second refusal is never re-sent automatically: the line fails, visibly.
    let effects = state.apply(UiEvent::MembersAdded {
        room: room("a"),
        local_id: id,
        added: vec![name("dave")],
    });
    assert!(effects.is_empty(), "{effects:?}");
    let failed = state.room(&room("a")).and_then(|b| {
        b.timeline.entries().iter().find_map(|e| match &e.kind {
            EntryKind::Message {
                delivery: Delivery::Failed(why),
                text,
                ..
            } if text == "hello all" => Some(why.clone()),
            _ => None,
        })
    });
    assert!(failed.is_some_and(|why| why.contains("more members were added")));
    assert!(notices(&state, "a").contains(&"→ dave was added".to_owned()));
    // On request it goes out again, under the same id, now to dave too.
    let retried = state.act(Action::Retry);
    assert!(
        matches!(retried.as_slice(), [Effect::Command(Command::Send { local_id, message_id: m, .. })]
            if *local_id == id && *m == message_id),
        "{retried:?}"
    );
    state.apply(UiEvent::Sent {
        room: room("a"),
        local_id: id,
        ack: ack("a", 20, 20),
    });
    assert!(state.outbox.get(id).is_none(), "confirmed, forgotten");

    // When the event came first, the error adds no second line, and the ack confirms.
    let id = send_pending(&mut state, "again");
    state.apply(joined("a", "erin", 9, MembershipSource::SendRefused));
    let effects = state.apply(UiEvent::MembersAdded {
        room: room("a"),
        local_id: id,
        added: vec![name("erin")],
    });
    assert_eq!(effects.len(), 1);
    let erin = notices(&state, "a")
        .into_iter()
        .filter(|t| t.contains("erin"))
        .count();
    assert_eq!(erin, 1);
    state.apply(UiEvent::Sent {
        room: room("a"),
        local_id: id,
        ack: ack("a", 30, 30),
    });
    assert_eq!(
        state.room(&room("a")).and_then(|b| b.timeline.newest_seq()),
        Some(30)
    );
    assert!(state.resent.is_empty());
}

#[test]
fn a_verified_rotation_is_a_calm_line_and_settles_a_pending_alert() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    open(&mut state, "b", false, Vec::new());
    state.apply(UiEvent::Client(ClientEvent::KeyChanged {
        username: name("bob"),
        pinned_fingerprint: Fingerprint([2; 32]),
        new_fingerprint: Fingerprint([0xaa; 32]),
        verified: false,
        rooms: vec![room("a")],
    }));
    assert_eq!(state.key_changes.len(), 1);
    let effects = state.apply(UiEvent::Client(ClientEvent::KeyRotated {
        username: name("bob"),
        old_fingerprint: Fingerprint([0xaa; 32]),
        new_fingerprint: Fingerprint([0xcd; 32]),
        rooms: Vec::new(),
    }));
    assert_eq!(effects, vec![Effect::CloseKeyAlert(name("bob"))]);
    assert!(state.key_changes.is_empty());
    let line = "bob rotated their key: aaaa aaaa… → cdcd cdcd… (signed by the old key)";
    for r in ["a", "b"] {
        assert!(notices(&state, r).contains(&line.to_owned()), "{r}");
        let bob = state
            .room(&room(r))
            .and_then(|b| {
                b.members
                    .iter()
                    .find(|m| m.username == name("bob"))
                    .cloned()
            })
            .expect("bob listed");
        assert_eq!(bob.fingerprint, Fingerprint([0xcd; 32]));
        assert_eq!(bob.status, KeyStatus::Trusted);
    }
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Info));
    // A verified key that endorsed its successor stays verified; no alert to close.
    state.apply(UiEvent::Verified {
        username: name("bob"),
        fingerprint: Fingerprint([0xcd; 32]),
    });
    let effects = state.apply(UiEvent::Client(ClientEvent::KeyRotated {
        username: name("bob"),
        old_fingerprint: Fingerprint([0xcd; 32]),
        new_fingerprint: Fingerprint([0xef; 32]),
        rooms: vec![room("b")],
    }));
    assert!(effects.is_empty());
    let bob = state
        .room(&room("b"))
        .and_then(|b| {
            b.members
                .iter()
                .find(|m| m.username == name("bob"))
                .cloned()
        })
        .expect("bob listed");
    assert!(bob.verified && bob.fingerprint == Fingerprint([0xef; 32]));
}

#[test]
fn a_changed_verified_key_is_the_strongest_warning() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let effects = state.apply(UiEvent::Client(ClientEvent::KeyChanged {
        username: name("bob"),
        pinned_fingerprint: Fingerprint([2; 32]),
        new_fingerprint: Fingerprint([9; 32]),
        verified: true,
        rooms: vec![room("a")],
    }));
    assert!(matches!(
        effects.as_slice(),
        [Effect::Dialog(DialogKind::KeyAlert(KeyAlert {
            verified: true,
            ..
        }))]
    ));
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Error));
    assert!(notices(&state, "a")
        .iter()
        .any(|t| t.contains("VERIFIED key was REPLACED")));
    let bob = state
        .room(&room("a"))
        .and_then(|b| {
            b.members
                .iter()
                .find(|m| m.username == name("bob"))
                .cloned()
        })
        .expect("bob listed");
    assert!(!bob.verified && matches!(bob.status, KeyStatus::Unaccepted { .. }));
}

#[test]
fn the_server_presenting_another_own_key_raises_one_alarm() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    open(&mut state, "b", false, Vec::new());
    let mismatch = || {
        UiEvent::Client(ClientEvent::OwnKeyMismatch {
            presented_fingerprint: Fingerprint([6; 32]),
            own_fingerprint: Fingerprint([1; 32]),
        })
    };
    assert_eq!(
        state.apply(mismatch()),
        vec![Effect::Dialog(DialogKind::OwnKeyAlarm {
            presented: Fingerprint([6; 32]),
            own: Fingerprint([1; 32]),
        })]
    );
    assert!(state.apply(mismatch()).is_empty(), "one dialog per key");
    for r in ["a", "b"] {
        assert!(notices(&state, r)
            .iter()
            .any(|t| t.contains("different key for YOU")));
    }
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Error));
    assert!(state.key_changes.is_empty(), "nothing to accept");
}

#[test]
fn messages_show_the_signed_time_and_flag_disputes_and_unknown_readers() {
    let mut t = Timeline::default();
    let mut m = msg("r", 1, "bob", "late");
    m.sent_at_ms = 1_000;
    m.server_time_ms = 1_000 + crate::inbox::MAX_CLOCK_SKEW_MS + 1;
    m.unknown_recipients = vec![name("carol")];
    assert!(t.insert_message(&m, false));
    let entry = t.entries()[0].clone();
    assert_eq!(entry.time_ms, 1_000, "the signed time is shown");
    let EntryKind::Message {
        disputed_server_time,
        unknown_recipients,
        ..
    } = entry.kind
    else {
        panic!("a message");
    };
    assert_eq!(disputed_server_time, Some(m.server_time_ms));
    assert_eq!(unknown_recipients, vec![name("carol")]);

    // The same message id at another position is shown once.
    let mut again = msg("r", 5, "bob", "late");
    again.message_id = m.message_id;
    assert!(!t.insert_message(&again, false));
    assert_eq!(texts(&t), ["late"]);
    // An own message that history brought already is not shown twice.
    t.push_pending(1, name("alice"), "mine".into());
    let mut mine = msg("r", 7, "alice", "mine");
    mine.message_id = MessageId([0x77; 16]);
    t.insert_message(&mine, true);
    t.confirm(
        1,
        &SendAck {
            room: room("r"),
            message_id: MessageId([0x77; 16]),
            seq: 7,
            server_time_ms: 2_000,
        },
    );
    assert_eq!(texts(&t), ["late", "mine"]);

    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let mut m = msg("a", 3, "bob", "hi");
    m.unknown_recipients = vec![name("mallory")];
    state.apply(UiEvent::Client(ClientEvent::Message(m)));
    assert!(state
        .status
        .as_ref()
        .is_some_and(|s| s.level == Level::Warning && s.text.contains("mallory")));
}

#[test]
fn refusals_and_withheld_messages_are_plain_words() {
    assert_eq!(
        rejection_words(&RejectReason::Replayed { counter: 4 }),
        "replayed: this message (number 4 from its sender) was received before"
    );
    assert_eq!(
        rejection_words(&RejectReason::RetiredKey),
        "signed with a retired key, after its owner replaced it"
    );
    assert_eq!(
        rejection_words(&RejectReason::NotAMember),
        "sent for a room you are not in"
    );
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    state.apply(UiEvent::Client(ClientEvent::Rejected(Rejection {
        room: room("a"),
        seq: 4,
        message_id: MessageId([4; 16]),
        sender: name("bob"),
        reason: RejectReason::Replayed { counter: 2 },
    })));
    let shown = state.room(&room("a")).and_then(|b| {
        b.timeline.entries().iter().find_map(|e| match &e.kind {
            EntryKind::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    });
    assert!(shown.is_some_and(|r| r.starts_with("replayed")));
    state.apply(UiEvent::Client(ClientEvent::MessagesWithheld {
        room: room("a"),
        sender: name("bob"),
        missing: 3,
    }));
    assert!(notices(&state, "a").contains(
        &"⚠ 3 messages from bob did not arrive: the server may be withholding them.".to_owned()
    ));
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
    state.apply(UiEvent::Client(ClientEvent::Disconnected {
        reason: crate::events::FLOOD_REASON.into(),
    }));
    assert!(state
        .status
        .as_ref()
        .is_some_and(|s| s.text.contains("to protect itself")));
}

#[test]
fn verifying_asks_with_the_fingerprint_or_says_why_not() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    assert_eq!(
        state.act(Action::AskVerify(name("Bob"))),
        vec![Effect::Dialog(DialogKind::ConfirmVerify {
            username: name("bob"),
            fingerprint: Fingerprint([2; 32]),
        })]
    );
    for who in ["alice", "zed"] {
        assert!(state.act(Action::AskVerify(name(who))).is_empty(), "{who}");
    }
    assert_eq!(
        state.act(Action::Verify(name("bob"))),
        vec![Effect::Command(Command::MarkVerified {
            username: name("bob")
        })]
    );
    state.apply(UiEvent::Verified {
        username: name("bob"),
        fingerprint: Fingerprint([2; 32]),
    });
    let bob = state
        .room(&room("a"))
        .and_then(|b| {
            b.members
                .iter()
                .find(|m| m.username == name("bob"))
                .cloned()
        })
        .expect("bob listed");
    assert!(bob.verified);
    assert!(notices(&state, "a")
        .iter()
        .any(|t| t.starts_with("✓✓ You verified bob's key")));
    assert!(
        state.act(Action::AskVerify(name("bob"))).is_empty(),
        "already"
    );
}

#[test]
fn rotating_asks_first_shows_progress_and_updates_the_fingerprint() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    assert_eq!(
        state.act(Action::AskRotateKey),
        vec![Effect::Dialog(DialogKind::ConfirmRotate {
            current: Fingerprint([1; 32])
        })]
    );
    assert_eq!(
        state.act(Action::RotateKey),
        vec![Effect::Command(Command::RotateKey)]
    );
    assert!(state.busy.is_some());
    assert!(state.act(Action::RotateKey).is_empty(), "once at a time");
    state.apply(UiEvent::Progress {
        title: "Asking the server to switch to the new key".into(),
        elapsed: Duration::from_millis(300),
    });
    assert_eq!(
        state.busy.as_ref().map(|b| b.0.as_str()),
        Some("Asking the server to switch to the new key")
    );
    state.apply(UiEvent::OwnKeyRotated {
        old: Fingerprint([1; 32]),
        new: Fingerprint([0x5e; 32]),
        backup: Some(PathBuf::from("/k.pem.retired-1")),
    });
    assert!(state.busy.is_none());
    assert_eq!(
        state.me.as_ref().map(|m| m.fingerprint),
        Some(Fingerprint([0x5e; 32]))
    );
    let alice = state
        .room(&room("a"))
        .and_then(|b| {
            b.members
                .iter()
                .find(|m| m.username == name("alice"))
                .cloned()
        })
        .expect("listed");
    assert_eq!(alice.fingerprint, Fingerprint([0x5e; 32]));
    assert!(notices(&state, "a")
        .iter()
        .any(|t| t.starts_with("You rotated your key: 0101 0101… → 5e5e 5e5e…")));

    // A failure clears the progress box and says why.
    state.act(Action::RotateKey);
    let effects = state.apply(UiEvent::RotationFailed {
        message: "Your key was not changed: the server refused.".into(),
    });
    assert!(state.busy.is_none());
    assert!(matches!(
        effects.as_slice(),
        [Effect::Dialog(DialogKind::Error { .. })]
    ));
    // Offline, it is not even offered.
    state.apply(UiEvent::Connection(ConnectionState::Stopped {
        reason: "x".into(),
    }));
    assert!(state.act(Action::AskRotateKey).is_empty());
}

fn delivery_of(state: &AppState, r: &str, text: &str) -> Option<Delivery> {
    state.room(&room(r)).and_then(|b| {
        b.timeline.entries().iter().find_map(|e| match &e.kind {
            EntryKind::Message {
                text: t, delivery, ..
            } if t == text => Some(delivery.clone()),
            _ => None,
        })
    })
}

fn offline() -> ConnectionState {
    ConnectionState::Offline {
        reason: "The connection to the server was lost.".into(),
        retry_in: Duration::from_secs(4),
        attempt: 1,
    }
}

#[test]
fn a_message_cut_off_by_the_connection_waits_and_goes_out_again_once_online() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let id = send_pending(&mut state, "not lost");
    let message_id = state.outbox.get(id).map(|o| o.message_id).expect("unsent");
    state.apply(UiEvent::Connection(offline()));
    state.apply(UiEvent::SendFailed {
        room: room("a"),
        local_id: id,
        reason: "The connection to the server was lost.".into(),
        waiting: true,
    });
    assert_eq!(
        delivery_of(&state, "a", "not lost"),
        Some(Delivery::Waiting)
    );
    let status = state.status.clone().expect("said");
    assert!(status.text.contains("once you are connected"), "{status:?}");
    assert!(!status.text.contains("Not sent: Not sent"), "{status:?}");

    let effects = state.apply(UiEvent::Connection(ConnectionState::Online));
    assert_eq!(
        effects,
        vec![Effect::Command(Command::Send {
            room: room("a"),
            text: "not lost".into(),
            local_id: id,
            message_id,
        })],
        "sent again under the same id"
    );
    assert_eq!(
        delivery_of(&state, "a", "not lost"),
        Some(Delivery::Sending)
    );
    assert!(
        state
            .apply(UiEvent::Connection(ConnectionState::Online))
            .is_empty(),
        "never twice"
    );
    // The server had stored the first attempt: the duplicate is refused, the line kept once.
    state.apply(UiEvent::AlreadyStored {
        room: room("a"),
        local_id: id,
    });
    assert_eq!(
        delivery_of(&state, "a", "not lost"),
        Some(Delivery::Verified)
    );
    assert!(state.outbox.items().is_empty());
}

#[test]
fn a_waiting_message_that_history_shows_stored_is_not_sent_again() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let id = send_pending(&mut state, "stored, ack lost");
    let message_id = state.outbox.get(id).map(|o| o.message_id).expect("unsent");
    state.apply(UiEvent::Connection(offline()));
    state.apply(UiEvent::SendFailed {
        room: room("a"),
        local_id: id,
        reason: "lost".into(),
        waiting: true,
    });
    // The re-opened room's newest page holds it.
    let mut stored = msg("a", 5, "alice", "stored, ack lost");
    stored.message_id = message_id;
    open(&mut state, "a", false, vec![stored]);
    assert!(state.outbox.items().is_empty());
    let shown = state
        .room(&room("a"))
        .map(|b| {
            b.timeline
                .entries()
                .iter()
                .filter(|e| matches!(&e.kind, EntryKind::Message { text, .. } if text == "stored, ack lost"))
                .count()
        })
        .unwrap_or_default();
    assert_eq!(shown, 1, "shown once");
    assert!(state
        .apply(UiEvent::Connection(ConnectionState::Online))
        .is_empty());
}

#[test]
fn a_refused_message_stays_visible_until_the_user_retries() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    let id = send_pending(&mut state, "refused");
    state.apply(UiEvent::SendFailed {
        room: room("a"),
        local_id: id,
        reason: "The key of bob changed and is not accepted yet.".into(),
        waiting: false,
    });
    assert!(matches!(
        delivery_of(&state, "a", "refused"),
        Some(Delivery::Failed(_))
    ));
    assert!(
        state
            .apply(UiEvent::Connection(ConnectionState::Online))
            .is_empty(),
        "a refusal is not retried behind the user's back"
    );
    let status = state.status.clone().expect("said").text;
    assert!(status.contains("/retry"), "{status}");
    assert_eq!(state.act(Action::Retry).len(), 1);
    assert_eq!(delivery_of(&state, "a", "refused"), Some(Delivery::Sending));
    assert!(state.act(Action::Retry).is_empty(), "under way already");
}

#[test]
fn reconnect_cuts_the_back_off_short_only_while_offline() {
    let mut state = logged_in();
    assert!(state.act(Action::Reconnect).is_empty(), "online already");
    state.apply(UiEvent::Connection(offline()));
    assert_eq!(
        state.act(Action::Reconnect),
        vec![Effect::Command(Command::Reconnect)]
    );
}

#[test]
fn status_lines_expire_by_their_level() {
    let mut state = logged_in();
    state.act(Action::Refresh);
    let since = state.status.as_ref().map(|s| s.since).expect("set");
    assert!(!state.expire_status(since + Duration::from_secs(2)));
    assert!(state.expire_status(since + Duration::from_secs(9)));
    assert!(state.status.is_none());
    state.apply(UiEvent::Warning("look".into()));
    let since = state.status.as_ref().map(|s| s.since).expect("set");
    assert!(
        !state.expire_status(since + Duration::from_secs(9)),
        "warnings stay longer"
    );
    assert!(state.expire_status(since + Duration::from_secs(31)));
}

#[test]
fn up_and_down_move_the_lobby_cursor_and_recall_lines_in_a_room() {
    let mut state = logged_in();
    state.apply(UiEvent::RoomList(shared::protocol::RoomList {
        rooms: ["x", "y"]
            .iter()
            .map(|n| shared::protocol::RoomSummary {
                name: room(n),
                has_password: false,
                members: 1,
                members_online: 1,
                topic: None,
            })
            .collect(),
        users_online: 1,
        next_after: None,
    }));
    assert_eq!(state.act(Action::Submit(String::new())), Vec::new());
    state.act(Action::Down);
    state.act(Action::Down);
    state.act(Action::Down);
    assert_eq!(
        state.lobby.chosen().map(|r| r.name.to_string()),
        Some("y".into())
    );
    assert_eq!(
        state.act(Action::Submit(String::new())),
        vec![Effect::Command(Command::JoinRoom {
            room: room("y"),
            password: None
        })]
    );

    open(&mut state, "a", true, Vec::new());
    state.act(Action::Submit("one".into()));
    state.act(Action::Submit("/join den secret".into()));
    state.act(Action::Submit("two".into()));
    assert_eq!(
        state.act(Action::Up {
            draft: "dra".into()
        }),
        vec![Effect::SetInput("two".into())]
    );
    assert_eq!(
        state.act(Action::Up {
            draft: "two".into()
        }),
        vec![Effect::SetInput("one".into())],
        "a line with a room password is not remembered"
    );
    assert_eq!(
        state.act(Action::Down),
        vec![Effect::SetInput("two".into())]
    );
    assert_eq!(
        state.act(Action::Down),
        vec![Effect::SetInput("dra".into())]
    );
}

#[test]
fn a_mistyped_command_is_given_back_to_fix() {
    let mut state = logged_in();
    assert_eq!(
        state.act(Action::Submit("/jion den".into())),
        vec![Effect::SetInput("/jion den".into())]
    );
    assert_eq!(state.status.as_ref().map(|s| s.level), Some(Level::Warning));
}

#[test]
fn tab_completes_members_of_the_room_shown() {
    let mut state = logged_in();
    open(&mut state, "a", true, Vec::new());
    assert_eq!(
        state.act(Action::Complete {
            line: "hi b".into()
        }),
        vec![Effect::SetInput("hi bob ".into())]
    );
}

#[test]
fn messages_caught_up_after_a_reconnect_count_as_unread_where_the_user_is_not() {
    let mut state = logged_in();
    open(
        &mut state,
        "r",
        false,
        (1..=3)
            .map(|q| msg("r", q, "bob", &format!("m{q}")))
            .collect(),
    );
    open(&mut state, "shown", true, Vec::new());
    assert_eq!(
        state.room(&room("r")).map(|b| b.unread),
        Some(0),
        "history is not news"
    );
    // Reconnected: #r's newest page starts at 60, with a gap down to the 3 shown.
    let mut newest = page("r", 60..=109, true);
    newest.messages[0].sender = name("alice");
    state.apply(UiEvent::RoomOpened {
        view: RoomView {
            online: Vec::new(),
            room: room("r"),
            owner: name("bob"),
            kind: shared::protocol::RoomKind::Group,
            admins: Vec::new(),
            topic: None,
            read_up_to: 0,
            has_password: false,
            hidden: false,
            members: vec![member("alice", 1), member("bob", 2)],
            history: newest,
        },
        focus: false,
    });
    assert_eq!(
        state.room(&room("r")).map(|b| b.unread),
        Some(49),
        "the user's own message is not unread"
    );
    state.apply(UiEvent::HistoryLoaded(page("r", 1..=59, false)));
    assert_eq!(state.room(&room("r")).map(|b| b.unread), Some(49 + 56));
    // Older pages the user asks for are not news.
    state.act(Action::NextRoom);
    state.act(Action::NextRoom);
    assert!(state
        .current_room()
        .is_some_and(|r| r.name.same_as(&room("r"))));
    assert_eq!(state.room(&room("r")).map(|b| b.unread), Some(0));
    // The room on screen gains no unread count when it is re-opened; others do.
    open(&mut state, "r", false, vec![msg("r", 110, "bob", "new")]);
    assert_eq!(state.room(&room("r")).map(|b| b.unread), Some(0));
    open(
        &mut state,
        "shown",
        false,
        vec![msg("shown", 1, "bob", "new")],
    );
    assert_eq!(state.room(&room("shown")).map(|b| b.unread), Some(1));
}

#[test]
fn a_mention_rings_the_bell_only_where_the_user_is_not() {
    let mut state = logged_in();
    open(&mut state, "a", false, Vec::new());
    open(&mut state, "b", true, Vec::new());
    let effects = state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "a",
        1,
        "bob",
        "alice, are you there?",
    ))));
    assert_eq!(effects, vec![Effect::Bell]);
    assert_eq!(state.room(&room("a")).map(|r| r.mentions), Some(1));
    let quiet = state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "b",
        1,
        "bob",
        "alice, here?",
    ))));
    assert!(quiet.is_empty(), "the room shown: {quiet:?}");
    let plain = state.apply(UiEvent::Client(ClientEvent::Message(msg(
        "a",
        2,
        "bob",
        "no name here",
    ))));
    assert!(plain.is_empty(), "{plain:?}");
}
