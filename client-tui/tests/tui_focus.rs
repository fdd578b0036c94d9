//! One owner of keyboard focus (issue 14, item 1), driven headless through cursive's
//! puppet backend: typing reaches the input line unless a dialog is open, the navigation
//! keys work from the input line, and Enter never acts on a widget the user did not move
//! to. Each case replays a path on which keystrokes used to be lost.

mod support;

use std::path::PathBuf;

use client_tui::tui::command::Command;
use client_tui::tui::event::{Me, UiEvent};
use client_tui::tui::profile::Start;
use cursive::event::{Event, Key};
use shared::crypto::keys::Fingerprint;
use support::{lobby_list, member, message, name, opened, room, Harness};

fn join(r: &str) -> Command {
    Command::JoinRoom {
        room: room(r),
        password: None,
    }
}

/// A harness in the lobby that has also joined and opened `#den`, whose timeline is
/// longer than the screen (so it could scroll).
fn in_den() -> Harness {
    let mut h = Harness::in_lobby();
    let messages = (1..=60)
        .map(|seq| message("den", seq, "bob", &format!("line {seq}")))
        .collect();
    h.event(opened("den", vec![member("alice", 0xab)], messages));
    h.drain();
    h
}

/// A login whose room list arrived before the main screen was built (as after a quick
/// unlock): the lobby is listed from the first frame.
fn logged_in_lobby_first() -> Harness {
    let mut h = Harness::new(Start::NewAccount {
        username: None,
        import: None,
        key_path: None,
    });
    h.event(UiEvent::RoomList(lobby_list()));
    h.event(UiEvent::Ready(Me {
        username: name("alice"),
        fingerprint: Fingerprint([0xab; 32]),
        key_path: PathBuf::from("/cfg/keys/alice.pem"),
    }));
    h.drain();
    h
}

#[test]
fn typing_after_a_login_whose_lobby_arrived_first_reaches_the_input_line() {
    let mut h = logged_in_lobby_first();
    h.type_text("/join nosuch");
    assert_eq!(h.input_line(), "/join nosuch", "\n{}", h.screen());
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![join("nosuch")], "\n{}", h.screen());
}

#[test]
fn typing_after_f4_reaches_the_input_line_and_enter_opens_no_room() {
    let mut h = in_den();
    h.press(Key::F4);
    assert_eq!(h.drain(), vec![Command::RefreshRooms]);
    h.assert_shows("[lobby] >");
    h.type_text("/join nosuch");
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![join("nosuch")], "\n{}", h.screen());
    assert!(!h.screen().contains("[#general]"));
}

#[test]
fn typing_after_slash_lobby_reaches_the_input_line() {
    let mut h = in_den();
    h.type_text("/lobby");
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![Command::RefreshRooms]);
    h.type_text("/join nosuch");
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![join("nosuch")], "\n{}", h.screen());
}

#[test]
fn up_in_a_room_leaves_typing_on_the_input_line() {
    let mut h = in_den();
    h.press(Key::Up);
    h.type_text("hello");
    h.press(Key::Enter);
    let commands = h.drain();
    assert!(
        matches!(commands.as_slice(), [Command::Send { text, .. }] if text == "hello"),
        "expected one Send of \"hello\", got {commands:?}\n{}",
        h.screen()
    );
}

#[test]
fn typing_after_the_join_dialogs_reaches_the_input_line() {
    let mut h = logged_in_lobby_first();
    // Cancelled.
    h.press(Key::F7);
    h.assert_shows("Join a room by name");
    h.press(Key::Esc);
    h.type_text("abc");
    assert_eq!(h.input_line(), "abc", "\n{}", h.screen());
    h.clear_input();

    // Submitted.
    h.press(Key::F7);
    h.type_text("den");
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![join("den")]);
    h.type_text("abc");
    assert_eq!(h.input_line(), "abc", "\n{}", h.screen());
    h.clear_input();

    // The password prompt the server asked for, cancelled.
    h.event(UiEvent::PasswordNeeded {
        room: room("vault"),
        wrong: false,
    });
    h.assert_shows("vault");
    h.press(Key::Esc);
    h.type_text("abc");
    assert_eq!(h.input_line(), "abc", "\n{}", h.screen());
}

#[test]
fn enter_on_an_empty_line_acts_only_on_the_lobby_row_the_user_moved_to() {
    let mut h = Harness::in_lobby();
    h.press(Key::Enter);
    assert_eq!(h.drain(), Vec::new(), "nothing was chosen\n{}", h.screen());

    h.press(Key::Down);
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![join("general")], "\n{}", h.screen());

    // A room with a password asks for it before anything is sent.
    h.press(Key::Down);
    h.press(Key::Enter);
    assert_eq!(h.drain(), Vec::new());
    h.assert_shows("Password for #vault");
    h.press(Key::Esc);

    // Text on the line wins over the highlighted row.
    h.type_text("/join nosuch");
    h.press(Key::Enter);
    assert_eq!(h.drain(), vec![join("nosuch")], "\n{}", h.screen());
}

#[test]
fn navigation_keys_work_from_the_input_line_and_keep_the_draft() {
    let mut h = in_den();
    h.event(UiEvent::RoomOpened {
        view: match opened("town", vec![member("alice", 0xab)], Vec::new()) {
            UiEvent::RoomOpened { view, .. } => view,
            _ => unreachable!("opened builds RoomOpened"),
        },
        focus: false,
    });
    h.type_text("draft");
    h.press(Event::CtrlChar('n'));
    h.assert_shows("[#town] >");
    h.press(Event::Alt(Key::Left));
    h.assert_shows("[#den] >");
    h.press(Event::CtrlChar('p'));
    h.assert_shows("[lobby] >");
    h.press(Event::Alt(Key::Right));
    h.assert_shows("[#den] >");
    h.press(Key::F4);
    h.assert_shows("[lobby] >");
    assert_eq!(h.input_line(), "draft");
}

#[test]
fn no_key_takes_typing_away_from_the_input_line() {
    let keys: Vec<Event> = vec![
        Key::Up.into(),
        Key::Down.into(),
        Key::Left.into(),
        Key::Right.into(),
        Key::Tab.into(),
        Event::Shift(Key::Tab),
        Key::PageUp.into(),
        Key::PageDown.into(),
        Key::Home.into(),
        Key::End.into(),
        Key::F4.into(),
        Key::F5.into(),
        Key::F9.into(),
        Event::CtrlChar('n'),
        Event::CtrlChar('p'),
        Event::Alt(Key::Left),
        Event::Alt(Key::Right),
        Event::Alt(Key::Up),
        Event::Alt(Key::Down),
    ];
    let mut h = in_den();
    for key in keys.iter().chain(&keys) {
        h.press(key.clone());
        if key == &Event::Key(Key::F4) {
            // Back into the room, by the keyboard.
            h.press(Event::CtrlChar('n'));
        }
        h.clear_input();
        h.type_text("x");
        assert_eq!(
            h.input_line(),
            "x",
            "after {key:?} typing was lost\n{}",
            h.screen()
        );
    }
}

#[test]
fn tab_completes_on_the_input_line() {
    let mut h = in_den();
    h.type_text("/refr");
    h.press(Key::Tab);
    assert_eq!(h.input_line(), "/refresh ", "\n{}", h.screen());
    h.clear_input();
    h.type_text("hi al");
    h.press(Key::Tab);
    assert_eq!(h.input_line(), "hi alice ");
}

#[test]
fn page_up_and_down_scroll_the_conversation_from_the_input_line() {
    let mut h = in_den();
    h.type_text("draft");
    h.assert_shows("line 60");
    h.press(Key::PageUp);
    assert!(
        !h.screen().contains("line 60"),
        "not scrolled\n{}",
        h.screen()
    );
    assert_eq!(h.input_line(), "draft");
    h.press(Key::PageDown);
    h.press(Key::PageDown);
    h.assert_shows("line 60");
}

#[test]
fn ctrl_w_and_ctrl_arrows_edit_the_input_line_by_words() {
    let mut h = in_den();
    h.type_text("hello big world");
    h.press(Event::CtrlChar('w'));
    assert_eq!(h.input_line(), "hello big ");
    h.press(Event::Ctrl(Key::Left));
    h.type_text("very ");
    assert_eq!(h.input_line(), "hello very big ");
    h.press(Event::Ctrl(Key::Right));
    h.type_text("!");
    assert_eq!(h.input_line(), "hello very big! ");
    h.press(Event::CtrlChar('l'));
    h.assert_shows("[#den] > hello very big!");
}

/// Pushes about running rooms (a conversation someone starts, a moderation event, a
/// typing member) never take the keys: typing goes on reaching the input line.
#[test]
fn room_pushes_leave_typing_on_the_input_line() {
    use client_tui::ClientEvent;
    use shared::protocol::{RoomChange, RoomEvent};
    let mut h = in_den();
    h.type_text("half a th");
    let dm = shared::protocol::direct_room_name(&name("alice"), &name("bob"));
    h.event(UiEvent::Client(ClientEvent::DirectOpened {
        room: dm,
        peer: member("bob", 0x3f),
    }));
    h.event(UiEvent::Client(ClientEvent::RoomChanged(RoomEvent {
        room: room("den"),
        actor: name("bob"),
        at_ms: 1,
        change: RoomChange::TopicChanged {
            topic: Some("new".into()),
        },
    })));
    h.event(UiEvent::Client(ClientEvent::Typing {
        room: room("den"),
        username: name("bob"),
        typing: true,
    }));
    h.type_text("ought");
    assert_eq!(h.input_line(), "half a thought", "\n{}", h.screen());
    h.assert_shows("[#den] >");
}
