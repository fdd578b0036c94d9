//! The cursive views driven without a terminal, through cursive's puppet backend: keys go
//! in as events, the screen comes out as text, and the commands the views produce are read
//! from the channel the network task would receive.

use std::path::PathBuf;
use std::time::Duration;

use client_tui::tui::command::{Command, KeySource, Secret};
use client_tui::tui::event::{ConnectionState, UiEvent};
use client_tui::tui::profile::Start;
use client_tui::{ClientEvent, HistoryView, MembershipSource, RoomView};
use cursive::event::{Event, Key};
use shared::crypto::keys::Fingerprint;
use shared::protocol::{RoomList, RoomSummary, SendAck};
use shared::MessageId;

mod support;

use support::{member, message, name, opened, room, Harness};

#[test]
fn onboarding_form_sends_create_account_with_the_typed_values() {
    let mut h = Harness::new(Start::NewAccount {
        username: None,
        import: None,
        key_path: None,
    });
    h.assert_shows("Create your account");
    h.type_text("alice");
    h.press(Key::Tab);
    h.type_text("short");
    h.press(Key::Tab);
    h.type_text("short");
    h.press(Key::Enter);
    h.assert_shows("at least 8 characters");
    assert!(h.drain().is_empty());

    // Fix both passphrases: focus is on the repeat field.
    for field in [Key::Up, Key::Down] {
        h.press(field);
        for _ in 0..5 {
            h.press(Key::Backspace);
        }
        h.type_text("correct horse");
    }
    h.press(Key::Enter);
    let commands = h.drain();
    let [Command::CreateAccount(new)] = commands.as_slice() else {
        panic!(
            "expected one CreateAccount, got {commands:?}\n{}",
            h.screen()
        );
    };
    assert_eq!(new.username, name("alice"));
    assert_eq!(new.passphrase, Secret::new("correct horse"));
    assert_eq!(new.key_path, PathBuf::from("/cfg/keys/alice.pem"));
    assert_eq!(new.source, KeySource::Generate { bits: 2048 });

    // Progress is shown while the network task works, and a failure reopens the form.
    h.event(UiEvent::Progress {
        title: "Generating your RSA-2048 key".into(),
        elapsed: Duration::from_millis(1200),
    });
    h.assert_shows("Generating your RSA-2048 key… 1.2 s");
    h.event(UiEvent::OnboardingFailed {
        message: "That username is already taken; choose another.".into(),
    });
    h.assert_shows("already taken");
    assert!(!h.screen().contains("Please wait"));
}

#[test]
fn lobby_lists_rooms_and_counts_and_join_dialog_sends_join() {
    let mut h = Harness::logged_in();
    h.event(UiEvent::RoomList(RoomList {
        rooms: vec![
            RoomSummary {
                name: room("town-square"),
                has_password: false,
                members: 5,
                members_online: 2,
                topic: None,
            },
            RoomSummary {
                name: room("vault"),
                has_password: true,
                members: 1,
                members_online: 1,
                topic: None,
            },
        ],
        users_online: 3,
        next_after: None,
    }));
    h.assert_shows("3 users online · 2 public rooms");
    h.assert_shows("town-square");
    h.assert_shows("password");

    h.press(Key::F7);
    h.assert_shows("Join a room by name");
    h.type_text("secret-den");
    h.press(Key::Tab);
    h.type_text("pw123");
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::JoinRoom {
            room: room("secret-den"),
            password: Some(Secret::new("pw123")),
        }]
    );
    h.assert_shows("Joining #secret-den");
}

#[test]
fn chat_shows_messages_members_and_sends_from_the_input_line() {
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        vec![message("den", 7, "bob", "welcome to the den")],
    ));
    h.assert_shows("#den (hidden, password)");
    h.assert_shows("bob ✓ welcome to the den");
    h.assert_shows("3f3f 3f3f…");
    h.assert_shows("[#den] >");

    h.type_text("hello bob");
    h.press(Key::Enter);
    let commands = h.drain();
    let [Command::Send {
        room: r,
        text,
        local_id,
        ..
    }] = commands.as_slice()
    else {
        panic!("expected a Send, got {commands:?}");
    };
    assert_eq!((r, text.as_str()), (&room("den"), "hello bob"));
    h.assert_shows("alice … hello bob");
    h.event(UiEvent::Sent {
        room: room("den"),
        local_id: *local_id,
        ack: SendAck {
            room: room("den"),
            message_id: MessageId([9; 16]),
            seq: 8,
            server_time_ms: 1_700_000_000_100,
        },
    });
    h.assert_shows("alice ✓ hello bob");

    // Joins and leaves appear in the timeline and the member list.
    h.event(UiEvent::Client(ClientEvent::MemberJoined {
        room: room("den"),
        member: member("carol", 0x77),
        source: MembershipSource::Push,
    }));
    h.assert_shows("→ carol joined · key 7777 7777…");
    h.assert_shows("3 members");
    h.event(UiEvent::Client(ClientEvent::MemberLeft {
        room: room("den"),
        username: name("carol"),
        source: MembershipSource::Push,
    }));
    h.assert_shows("← carol left");
    h.assert_shows("2 members");
}

#[test]
fn a_changed_key_must_be_acknowledged_and_can_be_accepted() {
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        Vec::new(),
    ));
    h.event(UiEvent::Client(ClientEvent::KeyChanged {
        username: name("bob"),
        pinned_fingerprint: Fingerprint([0x3f; 32]),
        new_fingerprint: Fingerprint([0x99; 32]),
        verified: false,
        rooms: vec![room("den")],
    }));
    h.assert_shows("Key changed: bob");
    h.assert_shows("3f3f 3f3f 3f3f 3f3f 3f3f 3f3f 3f3f 3f3f");
    h.assert_shows("9999 9999 9999 9999 9999 9999 9999 9999");
    // Esc does not dismiss it, and other keys do not reach the main screen.
    h.press(Key::Esc);
    h.press(Key::F7);
    h.assert_shows("Key changed: bob");
    assert!(!h.screen().contains("Join a room by name"));
    // Enter picks the focused, harmless button: decide later.
    h.press(Key::Enter);
    assert!(h.drain().is_empty(), "a stray Enter must not accept a key");
    assert!(!h.screen().contains("Key changed: bob"));
    h.assert_shows("bob's key CHANGED");
    h.assert_shows("!  bob");
    // Accepting is a deliberate choice: F3, then its "Accept bob" button.
    h.press(Key::F3);
    h.assert_shows("Changed keys waiting for your decision");
    h.assert_shows("<Accept bob>");
    h.press(Key::Tab);
    h.press(Key::Right);
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::AcceptKey {
            username: name("bob")
        }]
    );

    // The same alert accepted from the dialog itself needs a move to "Accept new key".
    h.event(UiEvent::Client(ClientEvent::KeyChanged {
        username: name("bob"),
        pinned_fingerprint: Fingerprint([0x3f; 32]),
        new_fingerprint: Fingerprint([0x98; 32]),
        verified: false,
        rooms: vec![room("den")],
    }));
    h.press(Key::Left);
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::AcceptKey {
            username: name("bob")
        }]
    );
}

#[test]
fn a_verified_key_change_uses_the_strongest_words_and_a_rotation_closes_an_alert() {
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        Vec::new(),
    ));
    h.event(UiEvent::Client(ClientEvent::KeyChanged {
        username: name("bob"),
        pinned_fingerprint: Fingerprint([0x3f; 32]),
        new_fingerprint: Fingerprint([0x99; 32]),
        verified: true,
        rooms: vec![room("den")],
    }));
    h.assert_shows("VERIFIED key replaced: bob");
    h.assert_shows("Treat this as an attack");
    h.assert_shows("<Accept anyway>");
    // A rotation signed by the pinned key settles it: the alert closes by itself.
    h.event(UiEvent::Client(ClientEvent::KeyRotated {
        username: name("bob"),
        old_fingerprint: Fingerprint([0x3f; 32]),
        new_fingerprint: Fingerprint([0x44; 32]),
        rooms: vec![room("den")],
    }));
    assert!(
        !h.screen().contains("VERIFIED key replaced"),
        "{}",
        h.screen()
    );
    h.assert_shows("bob rotated their key: 3f3f 3f3f… → 4444 4444… (signed by the old key)");
    assert!(h.drain().is_empty());
}

#[test]
fn the_own_key_alarm_can_only_be_dismissed() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.event(UiEvent::Client(ClientEvent::OwnKeyMismatch {
        presented_fingerprint: Fingerprint([0x66; 32]),
        own_fingerprint: Fingerprint([0xab; 32]),
    }));
    h.assert_shows("The server presents another key for YOU");
    h.assert_shows("6666 6666 6666 6666 6666 6666 6666 6666");
    h.assert_shows("<Dismiss>");
    assert!(!h.screen().contains("Accept"), "{}", h.screen());
    h.press(Key::Esc);
    h.assert_shows("<Dismiss>");
    h.press(Key::Enter);
    assert!(!h.screen().contains("<Dismiss>"));
    assert!(h.drain().is_empty());
    h.assert_shows("different key for YOU");
}

#[test]
fn members_are_verified_from_f3_or_verify_after_a_confirmation() {
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        Vec::new(),
    ));
    h.assert_shows("✓  bob");
    h.press(Key::F3);
    h.assert_shows("bob (trusted on first use)");
    h.press(Key::Down);
    h.assert_shows("bob · trusted on first use");
    h.press(Key::Tab);
    h.press(Key::Enter);
    h.assert_shows("Verify bob's key");
    h.assert_shows("3f3f 3f3f 3f3f 3f3f 3f3f 3f3f 3f3f 3f3f");
    // Cancel is focused.
    h.press(Key::Enter);
    assert!(h.drain().is_empty());
    assert!(!h.screen().contains("Verify bob's key"));

    h.type_text("/verify bob");
    h.press(Key::Enter);
    h.assert_shows("Verify bob's key");
    h.press(Key::Left);
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::MarkVerified {
            username: name("bob")
        }]
    );
    h.event(UiEvent::Verified {
        username: name("bob"),
        fingerprint: Fingerprint([0x3f; 32]),
    });
    h.assert_shows("✓✓ bob");
    h.assert_shows("You verified bob's key");
    h.press(Key::F1);
    h.assert_shows("/verify USER");
    h.assert_shows("/rotate-key");
}

#[test]
fn rotating_the_key_asks_first_and_shows_progress() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.press(Key::F2);
    h.assert_shows("<Rotate my key…>");
    // "Close" is focused.
    h.press(Key::Enter);
    assert!(!h.screen().contains("Your fingerprint"));
    h.press(Key::F2);
    h.press(Key::Left);
    h.press(Key::Enter);
    h.assert_shows("Replace your key with a new one?");
    h.press(Key::Enter);
    assert!(h.drain().is_empty(), "Cancel is focused");

    h.type_text("/rotate-key");
    h.press(Key::Enter);
    h.assert_shows("Replace your key with a new one?");
    h.press(Key::Left);
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![Command::RotateKey]);
    h.assert_shows("Please wait");
    h.event(UiEvent::Progress {
        title: "Generating your new RSA-3072 key".into(),
        elapsed: Duration::from_millis(700),
    });
    h.assert_shows("Generating your new RSA-3072 key… 0.7 s");
    h.event(UiEvent::OwnKeyRotated {
        old: Fingerprint([0xab; 32]),
        new: Fingerprint([0x5e; 32]),
        backup: Some(PathBuf::from("/cfg/keys/alice.pem.retired-1")),
    });
    assert!(!h.screen().contains("Please wait"));
    h.assert_shows("You rotated your key: abab abab… → 5e5e 5e5e…");
    h.press(Key::F2);
    h.assert_shows("5e5e 5e5e 5e5e 5e5e 5e5e 5e5e 5e5e 5e5e");
}

#[test]
fn disputed_times_and_unknown_recipients_are_marked() {
    let mut h = Harness::logged_in();
    let mut late = message("den", 3, "bob", "held back");
    late.server_time_ms = late.sent_at_ms + 3_600_000;
    let mut wide = message("den", 4, "bob", "who reads this");
    wide.unknown_recipients = vec![name("mallory")];
    h.event(opened(
        "den",
        vec![member("alice", 0xab), member("bob", 0x3f)],
        vec![late, wide],
    ));
    h.assert_shows("bob ✓ ⏱ held back");
    h.assert_shows("(⏱ signed at");
    h.assert_shows("also sent to mallory, who is not");
}

#[test]
fn own_fingerprint_is_one_key_away_and_leaving_asks_first() {
    let mut h = Harness::logged_in();
    h.press(Key::F2);
    h.assert_shows("Your fingerprint");
    h.assert_shows("abab abab abab abab abab abab abab abab");
    h.press(Key::Esc);
    assert!(!h.screen().contains("Your fingerprint"));

    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.press(Key::F8);
    h.assert_shows("Leave #den?");
    // Cancel is focused: Enter keeps the user in the room.
    h.press(Key::Enter);
    assert!(h.drain().is_empty());
    assert!(!h.screen().contains("Leave #den?"));
    h.press(Key::F8);
    h.press(Key::Left);
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![Command::Leave { room: room("den") }]);
    h.event(UiEvent::Left(room("den")));
    h.assert_shows("You left #den.");
    h.assert_shows("[lobby] >");
}

#[test]
fn unread_counts_errors_and_slash_commands() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.event(UiEvent::RoomOpened {
        view: RoomView {
            online: Vec::new(),
            room: room("town"),
            owner: name("bob"),
            kind: shared::protocol::RoomKind::Group,
            admins: Vec::new(),
            topic: None,
            read_up_to: 0,
            has_password: false,
            hidden: false,
            members: vec![member("alice", 0xab)],
            history: HistoryView {
                room: room("town"),
                messages: Vec::new(),
                rejected: Vec::new(),
                has_more: false,
                next_before: None,
            },
        },
        focus: false,
    });
    for seq in 1..=3 {
        h.event(UiEvent::Client(ClientEvent::Message(message(
            "town", seq, "bob", "psst",
        ))));
    }
    h.assert_shows("#town (3)");
    h.press(Event::CtrlChar('n'));
    h.assert_shows("[#town] >");
    assert!(!h.screen().contains("#town (3)"));

    h.type_text("/join other-room pw");
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::JoinRoom {
            room: room("other-room"),
            password: Some(Secret::new("pw")),
        }]
    );
    h.event(UiEvent::Failed {
        action: "Joining #other-room".into(),
        message: "No room by that name, or its password is wrong.".into(),
    });
    h.assert_shows("Joining #other-room");
    h.assert_shows("No room by that name, or its password is wrong.");
    h.assert_shows("<OK>");
    h.press(Key::Enter);
    assert!(!h.screen().contains("<OK>"), "the error dialog closes");

    h.type_text("/nonsense");
    h.press(Key::Enter);
    h.assert_shows("unknown command /nonsense");
}

#[test]
fn page_up_at_the_top_loads_older_messages() {
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![member("alice", 0xab)],
        vec![message("den", 10, "bob", "latest")],
    ));
    h.press(Key::PageUp);
    assert_eq!(
        h.drain(),
        vec![Command::LoadOlder {
            room: room("den"),
            before_seq: 10,
        }]
    );
    h.assert_shows("loading older messages");
    h.event(UiEvent::HistoryLoaded(HistoryView {
        room: room("den"),
        messages: vec![message("den", 9, "bob", "earlier")],
        rejected: Vec::new(),
        has_more: false,
        next_before: None,
    }));
    let screen = h.screen();
    let earlier = screen.find("earlier").expect("older message shown");
    let latest = screen.find("latest").expect("newer message shown");
    assert!(earlier < latest, "older message must come first:\n{screen}");
}

#[test]
fn import_and_unlock_forms_send_their_commands() {
    let mut h = Harness::new(Start::NewAccount {
        username: Some(name("dave")),
        import: Some(PathBuf::from("/home/dave/openssl.pem")),
        key_path: None,
    });
    h.assert_shows("Import a key");
    h.assert_shows("/home/dave/openssl.pem");
    // The username is pre-filled, so the cursor starts in the passphrase field.
    h.type_text("dave's passphrase");
    h.press(Key::Tab);
    h.type_text("dave's passphrase");
    h.press(Key::Enter); // to the key path
    h.press(Key::Enter); // to the key's own passphrase
    h.press(Key::Enter); // submit
    let commands = h.drain();
    let [Command::CreateAccount(new)] = commands.as_slice() else {
        panic!("expected CreateAccount, got {commands:?}\n{}", h.screen());
    };
    assert_eq!(
        new.source,
        KeySource::Import {
            path: PathBuf::from("/home/dave/openssl.pem"),
            passphrase: None,
        }
    );

    let mut h = Harness::new(Start::Unlock {
        username: Some(name("erin")),
        key_path: PathBuf::from("/cfg/keys/erin.pem"),
    });
    h.assert_shows("Welcome back, erin.");
    h.type_text("erin's passphrase");
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::Unlock(client_tui::tui::command::Unlock {
            username: name("erin"),
            key_path: PathBuf::from("/cfg/keys/erin.pem"),
            passphrase: Some(Secret::new("erin's passphrase")),
        })]
    );
    h.assert_shows("Please wait");
}

#[test]
fn ctrl_c_asks_before_quitting_and_enter_stays() {
    let mut h = Harness::logged_in();
    h.press(Event::CtrlChar('c'));
    h.assert_shows("Quit e2e-chat?");
    h.press(Key::Enter);
    assert!(h.running(), "Enter chose the safe button\n{}", h.screen());
    assert!(!h.screen().contains("Quit e2e-chat?"));
    h.press(Event::CtrlChar('c'));
    h.press(Event::CtrlChar('c'));
    assert!(!h.running(), "a second Ctrl-C quits");
}

#[test]
fn an_unsent_message_is_counted_when_asked_to_quit() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.type_text("still going");
    h.press(Key::Enter);
    h.press(Event::CtrlChar('c'));
    h.assert_shows("One message is not sent yet");
}

#[test]
fn messages_of_different_days_are_separated_by_their_date() {
    let mut h = Harness::logged_in();
    let mut later = message("den", 2, "bob", "a day later");
    later.sent_at_ms += 86_400_000;
    later.server_time_ms += 86_400_000;
    h.event(opened(
        "den",
        vec![member("alice", 0xab)],
        vec![message("den", 1, "bob", "first day"), later],
    ));
    let screen = h.screen();
    let separators = screen.matches(" 2023 ────").count();
    assert_eq!(separators, 2, "two date lines:\n{screen}");
    let first = screen.find("first day").expect("shown");
    let second_date = screen.rfind(" 2023 ────").expect("shown");
    let later = screen.find("a day later").expect("shown");
    assert!(first < second_date && second_date < later, "{screen}");
}

#[test]
fn a_connection_failure_keeps_the_message_visible_and_waiting() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.type_text("keep me");
    h.press(Key::Enter);
    let local_id = match h.drain().as_slice() {
        [Command::Send { local_id, .. }] => *local_id,
        other => panic!("expected a Send, got {other:?}"),
    };
    h.event(UiEvent::Connection(ConnectionState::Offline {
        reason: "The connection to the server was lost.".into(),
        retry_in: Duration::from_secs(2),
        attempt: 1,
    }));
    h.event(UiEvent::SendFailed {
        room: room("den"),
        local_id,
        reason: "You are not connected to the server.".into(),
        waiting: true,
    });
    h.assert_shows("alice ↻ keep me");
    h.assert_shows("waiting for the connection");
    h.event(UiEvent::Connection(ConnectionState::Online));
    let again = h.drain();
    assert!(
        matches!(again.as_slice(), [Command::Send { local_id: l, text, .. }] if *l == local_id && text == "keep me"),
        "{again:?}"
    );
    h.assert_shows("alice … keep me");
}

#[test]
fn a_mention_in_another_room_marks_it_and_says_who() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.event(UiEvent::RoomOpened {
        view: match opened("town", vec![member("alice", 0xab)], Vec::new()) {
            UiEvent::RoomOpened { view, .. } => view,
            _ => unreachable!("opened builds RoomOpened"),
        },
        focus: false,
    });
    h.event(UiEvent::Client(ClientEvent::Message(message(
        "town",
        1,
        "bob",
        "just chatting",
    ))));
    h.event(UiEvent::Client(ClientEvent::Message(message(
        "town",
        2,
        "bob",
        "@alice look at this",
    ))));
    h.assert_shows("#town (2 @1)");
    h.assert_shows("bob mentioned you in #town.");
    h.press(Event::CtrlChar('n'));
    h.assert_shows("bob ✓ @alice look at this");
    assert!(!h.screen().contains("@1)"), "seen now\n{}", h.screen());
}

fn room_event(r: &str, actor: &str, change: shared::protocol::RoomChange) -> UiEvent {
    UiEvent::Client(ClientEvent::RoomChanged(shared::protocol::RoomEvent {
        room: room(r),
        actor: name(actor),
        at_ms: 1,
        change,
    }))
}

#[test]
fn the_header_shows_the_topic_the_members_their_roles_and_events_read_as_words() {
    use shared::protocol::{Role, RoomChange};
    let mut h = Harness::logged_in();
    h.event(opened(
        "den",
        vec![
            member("alice", 0xab),
            member("bob", 0x3f),
            member("carol", 0x11),
        ],
        Vec::new(),
    ));
    h.event(room_event(
        "den",
        "bob",
        RoomChange::TopicChanged {
            topic: Some("release plans".into()),
        },
    ));
    h.event(room_event(
        "den",
        "bob",
        RoomChange::RoleChanged {
            user: name("carol"),
            role: Role::Admin,
        },
    ));
    h.event(room_event(
        "den",
        "bob",
        RoomChange::Banned {
            user: name("carol"),
        },
    ));
    h.assert_shows("#den (hidden, password) — release plans");
    h.assert_shows("bob ★");
    h.assert_shows("bob set the topic to “release plans”");
    h.assert_shows("bob made carol an admin");
    h.assert_shows("bob banned carol");
    assert!(
        !h.screen().contains("carol @"),
        "a banned member is not listed"
    );
    h.event(UiEvent::Client(ClientEvent::Typing {
        room: room("den"),
        username: name("bob"),
        typing: true,
    }));
    h.assert_shows("bob is typing…");
    // F1 opens the help, which lists every command Tab completes.
    h.press(Key::F1);
    h.assert_shows("Commands in the input line");
    let help = client_tui::tui::views::help::help_text();
    for command in client_tui::tui::command::COMMAND_NAMES {
        let listed = help.contains(&format!("{command} ")) || help.contains(&format!("{command},"));
        assert!(
            listed || *command == "/fingerprint",
            "{command} is not in F1's help"
        );
    }
}

#[test]
fn direct_conversations_have_their_own_section_named_by_the_peer() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    let dm = shared::protocol::direct_room_name(&name("alice"), &name("bob"));
    h.event(UiEvent::Client(ClientEvent::DirectOpened {
        room: dm.clone(),
        peer: member("bob", 0x3f),
    }));
    assert_eq!(h.drain(), vec![Command::Reopen { room: dm.clone() }]);
    h.assert_shows("─ Direct ─");
    h.assert_shows("@bob");
    assert!(
        !h.screen().contains("dm."),
        "never the dm.… name:\n{}",
        h.screen()
    );
    h.type_text("/msg bob hello");
    h.press(Key::Enter);
    h.assert_shows("[@bob] >");
    let commands = h.drain();
    assert!(
        matches!(commands.as_slice(), [Command::Send { room: r, text, .. }] if *r == dm && text == "hello"),
        "{commands:?}"
    );
}

#[test]
fn deleting_a_room_and_the_account_ask_first_and_keys_go_to_the_dialog() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.type_text("/delete-room");
    h.press(Key::Enter);
    h.assert_shows("Delete #den for everyone?");
    // The harmless button is focused: Enter cancels.
    h.press(Key::Enter);
    assert!(h.drain().is_empty());
    h.type_text("/delete-account");
    h.press(Key::Enter);
    h.assert_shows("Type your username to confirm");
    h.type_text("alice");
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![Command::DeleteAccount]);
    assert_eq!(
        h.input_line(),
        "",
        "the username went to the dialog, not the input line"
    );
}

#[test]
fn a_password_typed_on_the_input_line_is_masked() {
    let mut h = Harness::logged_in();
    h.event(opened("den", vec![member("alice", 0xab)], Vec::new()));
    h.type_text("/password hunter2");
    assert!(!h.screen().contains("hunter2"), "{}", h.screen());
    h.press(Key::Enter);
    assert_eq!(
        h.drain(),
        vec![Command::SetPassword {
            room: room("den"),
            password: Some(Secret::new("hunter2")),
        }]
    );
    assert!(!h.screen().contains("hunter2"));
}

#[test]
fn the_lobby_shows_a_rooms_topic() {
    let mut h = Harness::logged_in();
    let mut list = support::lobby_list();
    list.rooms[0].topic = Some("all things general".into());
    h.event(UiEvent::RoomList(list));
    h.assert_shows("general       2        5  — all things general");
}
