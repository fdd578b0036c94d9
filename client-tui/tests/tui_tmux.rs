//! End to end through a real terminal: the `client-tui` binary runs inside tmux against
//! the real server (started in-process), driven with `send-keys` and read with
//! `capture-pane`. Two client-core users share the server: bob (a member of the hidden
//! room, who must receive and decrypt the TUI user's message) and carol (not a member, who
//! must receive nothing).
//!
//! Needs tmux (`.ci/run` installs it). Without tmux the test is skipped with a message,
//! unless `CI` or `TEST_INTEGRATION` is set, in which case it fails.

use std::time::{Duration, Instant};

use client_tui::ClientEvent;

mod tmux;

use tmux::{
    core_user, name, quit, room, skip_without_tmux, tui_registered, wait_event, TestServer,
};

const TUI_USER: &str = "tuiuser";
const PASSPHRASE: &str = "tui passphrase 42";
const HIDDEN_ROOM: &str = "secret-den";
const ROOM_PASSWORD: &str = "pw123";
const PUBLIC_ROOM: &str = "town-square";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_registers_joins_a_hidden_room_and_chats_end_to_end() {
    if skip_without_tmux("tui_registers_joins_a_hidden_room_and_chats_end_to_end") {
        return;
    }
    let started = Instant::now();
    let server = TestServer::start().await;

    // bob owns a public room and a hidden, password-protected one; carol is in neither
    // of bob's rooms' secrets: she only joins the public room.
    let (bob, mut bob_events) = core_user(&server.url, "bob", 1).await;
    bob.create_room(&room(PUBLIC_ROOM), None, false)
        .await
        .expect("public room");
    bob.create_room(&room(HIDDEN_ROOM), Some(ROOM_PASSWORD), true)
        .await
        .expect("hidden room");
    let (carol, mut carol_events) = core_user(&server.url, "carol", 2).await;
    carol
        .join_room(&room(PUBLIC_ROOM), None)
        .await
        .expect("carol joins the public room");

    let home = tempfile::tempdir().expect("tempdir");
    let log = home.path().join("client-tui.log");
    // First run: register a new user from the TUI (the key is generated there).
    let tmux = tui_registered(&server.url, home.path(), TUI_USER, PASSPHRASE).await;

    // The lobby lists the public room (not the hidden one) and who is online.
    let lobby = tmux.wait_for(PUBLIC_ROOM).await;
    assert!(lobby.contains("3 users online"), "lobby:\n{lobby}");
    assert!(!lobby.contains(HIDDEN_ROOM), "hidden room listed:\n{lobby}");
    let key_file = home
        .path()
        .join("config/e2e-chat/keys")
        .join(format!("{TUI_USER}.pem"));
    let saved = std::fs::read_to_string(&key_file).expect("the key is saved");
    assert!(
        saved.contains("BEGIN ENCRYPTED PRIVATE KEY"),
        "key not encrypted"
    );

    // Keyboard focus stays on the input line: Down only moves the lobby's cursor, and
    // typed text (not the highlighted room) is what Enter acts on; Tab completes.
    tmux.keys(&["Down"]);
    tmux.wait_for(&format!("▶ {PUBLIC_ROOM}")).await;
    tmux.text("/refr");
    tmux.keys(&["Tab"]);
    tmux.wait_for("> /refresh").await;
    tmux.keys(&["Enter"]);
    tmux.wait_gone("> /refresh").await;
    assert!(
        !tmux.screen().contains(&format!("[#{PUBLIC_ROOM}]")),
        "Enter opened the highlighted room:\n{}",
        tmux.screen()
    );

    // Join the hidden room by typing its name and password.
    tmux.keys(&["F7"]);
    tmux.wait_for("Join a room by name").await;
    tmux.text(HIDDEN_ROOM);
    tmux.keys(&["Tab"]);
    tmux.text(ROOM_PASSWORD);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("#{HIDDEN_ROOM} (hidden, password)"))
        .await;
    wait_event(&mut bob_events, "the TUI user joining", |e| {
        matches!(e, ClientEvent::MemberJoined { room: r, member, .. }
            if r.same_as(&room(HIDDEN_ROOM)) && member.username.same_as(&name(TUI_USER)))
    })
    .await;

    // Send a message: bob's client core receives and decrypts it. On the way, Up recalls
    // the line sent before and Down the (empty) draft; PgUp, F4 and Ctrl-N leave the
    // typing on the input line.
    tmux.keys(&["Up"]);
    tmux.wait_for(&format!("[#{HIDDEN_ROOM}] > /refresh")).await;
    tmux.keys(&["Down"]);
    tmux.wait_gone("> /refresh").await;
    tmux.keys(&["PPage", "F4"]);
    tmux.wait_for("[lobby] >").await;
    tmux.keys(&["C-n"]);
    tmux.wait_for(&format!("[#{HIDDEN_ROOM}] >")).await;
    let text = "hello from the terminal";
    tmux.text(text);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("✓ {text}")).await;
    let ClientEvent::Message(received) = wait_event(
        &mut bob_events,
        "the message",
        |e| matches!(e, ClientEvent::Message(m) if m.room.same_as(&room(HIDDEN_ROOM))),
    )
    .await
    else {
        unreachable!("matched a message")
    };
    assert_eq!(received.text, text);
    assert!(received.sender.same_as(&name(TUI_USER)));

    // bob answers; the TUI decrypts and shows it with its verified mark.
    bob.send_text(&room(HIDDEN_ROOM), "hi terminal, bob here")
        .await
        .expect("bob sends");
    tmux.wait_for("bob ✓ hi terminal, bob here").await;

    // carol, who is not in the hidden room, received nothing from it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(event) = carol_events.try_recv() {
        match event {
            ClientEvent::Message(m) => panic!("carol received a message in #{}", m.room),
            ClientEvent::MemberJoined { room: r, .. } | ClientEvent::MemberLeft { room: r, .. } => {
                assert!(!r.same_as(&room(HIDDEN_ROOM)), "carol saw #{r}")
            }
            _ => {}
        }
    }

    // Resizing lays the panes out again at once, without a key press: the member pane
    // gives way on a narrow terminal and comes back on a wide one.
    tmux.resize(80, 24);
    tmux.wait_gone("Members").await;
    tmux.resize(120, 40);
    tmux.wait_for("Members").await;
    // KNOWN ISSUE, open (crossterm 0.28, under cursive 0.21): its unix event source
    // returns after the first ready token of an edge-triggered (mio/epoll) batch, so when
    // the resize signal and typed keys are ready together, one of them waits for the next
    // input: keys typed at once after a resize can sit unread until another key comes
    // (seen here: the late resize event, then Ctrl-Q never read). The pause lets the
    // resize be read alone, so this test checks the relayout; the bug needs a crossterm
    // fix or a backend of our own.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Ctrl-C asks first, and Enter keeps the client running.
    tmux.keys(&["C-c"]);
    tmux.wait_for("Quit e2e-chat?").await;
    tmux.keys(&["Enter"]);
    tmux.wait_gone("Quit e2e-chat?").await;
    assert!(!tmux.pane_dead(), "Enter on the quit question quit");

    // Quit cleanly; logs went to the file, not the terminal.
    quit(&tmux).await;
    let log_text = std::fs::read_to_string(&log).expect("log file written");
    assert!(log_text.contains("logged in"), "log:\n{log_text}");
    assert!(!tmux.screen().contains("INFO"), "logs reached the terminal");

    drop(tmux);
    bob.close().await;
    carol.close().await;
    server.stop().await;
    eprintln!("tmux end-to-end test took {:?}", started.elapsed());
}
