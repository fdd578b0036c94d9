//! Issue 14's habits through a real terminal: the `client-tui` binary in tmux against the
//! real server. A paste of several lines arrives at bob as one message (a long one after
//! a question), Alt-Enter types a line break, and `/me` is shown as an action.
//!
//! Needs tmux; see `tui_tmux.rs` for when a missing tmux skips or fails the tests.

use client_tui::{ClientEvent, EventReceiver};

mod tmux;

use tmux::{
    core_user, enter, quit, room, skip_without_tmux, tui_registered, wait_event, TestServer,
};

const ROOM: &str = "paste-room";

/// The next message bob receives in the room, by its text.
async fn received(events: &mut EventReceiver) -> String {
    let ClientEvent::Message(message) = wait_event(
        events,
        "a message",
        |e| matches!(e, ClientEvent::Message(m) if m.room.same_as(&room(ROOM))),
    )
    .await
    else {
        unreachable!("matched a message")
    };
    message.text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paste_is_one_message_alt_enter_breaks_lines_and_me_is_an_action() {
    if skip_without_tmux("a_paste_is_one_message_alt_enter_breaks_lines_and_me_is_an_action") {
        return;
    }
    let server = TestServer::start().await;
    let (bob, mut bob_events) = core_user(&server.url, "bob", 1).await;
    bob.create_room(&room(ROOM), None, false)
        .await
        .expect("room");
    let home = tempfile::tempdir().expect("tempdir");
    let tmux = tui_registered(&server.url, home.path(), "paster", "paste passphrase 1").await;
    enter(&tmux, &format!("/join {ROOM}"));
    tmux.wait_for(&format!("[#{ROOM}] >")).await;

    // A paste of three lines waits in the input line as one message; Enter sends it.
    tmux.paste("first pasted\nsecond pasted\nthird pasted");
    tmux.wait_for("> first pasted↵second pasted↵third pasted")
        .await;
    tmux.keys(&["Enter"]);
    assert_eq!(
        received(&mut bob_events).await,
        "first pasted\nsecond pasted\nthird pasted"
    );
    let screen = tmux.wait_for("✓ first pasted").await;
    assert!(screen.contains("second pasted"), "{screen}");

    // Alt-Enter types a line break.
    tmux.text("typed one");
    tmux.keys(&["M-Enter"]);
    tmux.text("typed two");
    tmux.keys(&["Enter"]);
    assert_eq!(received(&mut bob_events).await, "typed one\ntyped two");

    // A long paste (ending with a line break, which would send it) asks first.
    tmux.paste("p1\np2\np3\np4\np5\np6\np7\n");
    tmux.wait_for("Send this message of 7 lines?").await;
    tmux.keys(&["Left", "Enter"]);
    assert_eq!(
        received(&mut bob_events).await,
        "p1\np2\np3\np4\np5\np6\np7"
    );

    // /me is an action, for both ends.
    enter(&tmux, "/me waves");
    assert_eq!(received(&mut bob_events).await, "/me waves");
    tmux.wait_for("* paster waves").await;
    bob.send_text(&room(ROOM), "/me nods")
        .await
        .expect("bob sends");
    tmux.wait_for("* bob nods").await;

    quit(&tmux).await;
    drop(tmux);
    bob.close().await;
    server.stop().await;
}
