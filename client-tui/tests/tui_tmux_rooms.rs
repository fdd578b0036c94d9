//! Issue 13's "done when", through a real terminal: the `client-tui` binary in tmux against
//! the real server. An owner runs a room end to end (create, topic, kick, ban, password,
//! transfer, delete) while client-core members observe every step; and a TUI user holds a
//! direct conversation with a client-core user.
//!
//! Needs tmux; see `tui_tmux.rs` for when a missing tmux skips or fails the tests.

use std::time::Duration;

use client_tui::{ClientEvent, EventReceiver};
use shared::protocol::{direct_room_name, ModerationAction, RoomChange};
use shared::ErrorCode;

mod tmux;

use tmux::{
    core_user, enter, name, quit, room, skip_without_tmux, tui_registered, wait_event, TestServer,
};

const PASSPHRASE: &str = "tui passphrase 42";

/// Waits until `events` report the room change `wanted` for `r`.
async fn wait_change(events: &mut EventReceiver, r: &str, wanted: &RoomChange) {
    wait_event(events, &format!("{wanted:?} in #{r}"), |e| {
        matches!(e, ClientEvent::RoomChanged(ev) if ev.room.same_as(&room(r)) && ev.change == *wanted)
    })
    .await;
}

/// Asserts that nothing readable from `r` reached `events` so far.
fn no_message_in(events: &mut EventReceiver, r: &str, who: &str) {
    while let Ok(event) = events.try_recv() {
        if let ClientEvent::Message(m) = event {
            assert!(!m.room.same_as(&room(r)), "{who} received {:?}", m.text);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_runs_a_room_from_the_tui_end_to_end() {
    if skip_without_tmux("an_owner_runs_a_room_from_the_tui_end_to_end") {
        return;
    }
    const ROOM: &str = "run-room";
    const OWNER: &str = "tuiowner";
    const NEW_PASSWORD: &str = "s3cret-pw";
    let server = TestServer::start().await;
    let home = tempfile::tempdir().expect("tempdir");
    let tmux = tui_registered(&server.url, home.path(), OWNER, PASSPHRASE).await;

    // Create the room; three members join it.
    enter(&tmux, &format!("/create {ROOM}"));
    tmux.wait_for(&format!("[#{ROOM}] >")).await;
    let (bob, mut bob_events) = core_user(&server.url, "bob", 1).await;
    let (carol, mut carol_events) = core_user(&server.url, "carol", 2).await;
    let (dave, mut dave_events) = core_user(&server.url, "dave", 3).await;
    for member in [&bob, &carol, &dave] {
        member
            .join_room(&room(ROOM), None)
            .await
            .expect("joins the public room");
    }
    tmux.wait_for("dave joined").await;

    // Set a topic: the header shows it, the members are told.
    enter(&tmux, "/topic Release planning");
    tmux.wait_for(&format!("#{ROOM} — Release planning")).await;
    tmux.wait_for(&format!("{OWNER} set the topic to “Release planning”"))
        .await;
    let topic = RoomChange::TopicChanged {
        topic: Some("Release planning".into()),
    };
    wait_change(&mut bob_events, ROOM, &topic).await;

    // Kick carol: she is told, and the next message is not encrypted to her.
    enter(&tmux, "/kick carol");
    tmux.wait_for(&format!("{OWNER} kicked carol")).await;
    let kicked = RoomChange::Kicked {
        user: name("carol"),
    };
    wait_change(&mut carol_events, ROOM, &kicked).await;
    wait_change(&mut bob_events, ROOM, &kicked).await;
    assert!(
        carol.open_rooms().is_empty(),
        "carol's client closed the room"
    );
    enter(&tmux, "after the kick");
    tmux.wait_for("✓ after the kick").await;
    wait_event(
        &mut bob_events,
        "the message after the kick",
        |e| matches!(e, ClientEvent::Message(m) if m.text == "after the kick"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    no_message_in(&mut carol_events, ROOM, "carol (kicked)");

    // Ban dave: he is told and cannot come back.
    enter(&tmux, "/ban dave");
    tmux.wait_for(&format!("{OWNER} banned dave")).await;
    let banned = RoomChange::Banned { user: name("dave") };
    wait_change(&mut dave_events, ROOM, &banned).await;
    let refused = dave.join_room(&room(ROOM), None).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::Banned)
    );

    // Change the password: never shown; joining needs the new one.
    enter(&tmux, &format!("/password {NEW_PASSWORD}"));
    let screen = tmux
        .wait_for(&format!("{OWNER} changed the room's password"))
        .await;
    assert!(
        !screen.contains(NEW_PASSWORD),
        "the password showed:\n{screen}"
    );
    tmux.wait_for(&format!("#{ROOM} (password)")).await;
    assert!(carol.join_room(&room(ROOM), None).await.is_err());
    carol
        .join_room(&room(ROOM), Some(NEW_PASSWORD))
        .await
        .expect("the new password lets carol back in");
    tmux.wait_for("carol joined").await;

    // Transfer to bob: the TUI user is an admin now and may not delete the room.
    enter(&tmux, "/transfer bob");
    tmux.wait_for(&format!(
        "the room passed from {OWNER} to bob, the new owner"
    ))
    .await;
    tmux.wait_for("bob ★").await;
    tmux.wait_for(&format!("{OWNER} @ (you)")).await;
    wait_change(
        &mut bob_events,
        ROOM,
        &RoomChange::OwnerChanged { to: name("bob") },
    )
    .await;
    enter(&tmux, "/delete-room");
    tmux.wait_for(&format!("Delete #{ROOM} for everyone?"))
        .await;
    tmux.keys(&["Left", "Enter"]);
    tmux.wait_for("Only the owner can delete the room.").await;
    tmux.keys(&["Escape"]);
    tmux.wait_gone("<OK>").await;

    // bob hands it back; the TUI user deletes it, and everyone is told.
    bob.moderate(
        &room(ROOM),
        ModerationAction::TransferOwnership { to: name(OWNER) },
    )
    .await
    .expect("bob hands the room back");
    tmux.wait_for(&format!(
        "the room passed from bob to {OWNER}, the new owner"
    ))
    .await;
    enter(&tmux, "/delete-room");
    tmux.wait_for(&format!("Delete #{ROOM} for everyone?"))
        .await;
    tmux.keys(&["Left", "Enter"]);
    tmux.wait_for(&format!("the room was deleted by {OWNER}"))
        .await;
    wait_change(&mut bob_events, ROOM, &RoomChange::RoomDeleted).await;
    wait_change(&mut carol_events, ROOM, &RoomChange::RoomDeleted).await;
    assert!(bob.open_rooms().is_empty(), "bob's client closed the room");
    tmux.wait_for(&format!("#{ROOM} ✗")).await;

    quit(&tmux).await;
    drop(tmux);
    for client in [bob, carol, dave] {
        client.close().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_hold_a_direct_conversation() {
    if skip_without_tmux("two_users_hold_a_direct_conversation") {
        return;
    }
    const TUI_USER: &str = "tuidm";
    let server = TestServer::start().await;
    let home = tempfile::tempdir().expect("tempdir");
    let tmux = tui_registered(&server.url, home.path(), TUI_USER, PASSPHRASE).await;
    let (bob, mut bob_events) = core_user(&server.url, "bob", 1).await;
    let dm = direct_room_name(&name("bob"), &name(TUI_USER));

    // bob starts it: it appears in the TUI's own section, named by bob.
    bob.open_direct(&name(TUI_USER))
        .await
        .expect("bob opens the conversation");
    tmux.wait_for("─ Direct ─").await;
    let screen = tmux.wait_for("@bob").await;
    assert!(!screen.contains("dm."), "the dm.… name showed:\n{screen}");
    bob.send_text(&dm, "hi from bob").await.expect("bob sends");
    tmux.keys(&["C-n"]);
    tmux.wait_for("[@bob] >").await;
    tmux.wait_for("bob ✓ hi from bob").await;

    // Typing is told to bob, and stops when the line is cleared.
    tmux.text("typing here");
    wait_event(&mut bob_events, "the TUI user typing", |e| {
        matches!(e, ClientEvent::Typing { username, typing: true, .. } if username.same_as(&name(TUI_USER)))
    })
    .await;
    tmux.keys(&["C-u"]);
    wait_event(&mut bob_events, "the TUI user stopping", |e| {
        matches!(e, ClientEvent::Typing { typing: false, .. })
    })
    .await;

    // The TUI answers with /msg; bob reads it; bob's typing shows in the TUI.
    enter(&tmux, "/msg bob hi back, bob");
    tmux.wait_for("✓ hi back, bob").await;
    wait_event(
        &mut bob_events,
        "the answer",
        |e| matches!(e, ClientEvent::Message(m) if m.room.same_as(&dm) && m.text == "hi back, bob"),
    )
    .await;
    bob.set_typing(&dm, true).await.expect("bob types");
    tmux.wait_for("bob is typing…").await;

    // /ignore leaves it; bob sees the TUI user go.
    enter(&tmux, "/ignore");
    tmux.wait_gone("@bob").await;
    wait_event(&mut bob_events, "the TUI user leaving", |e| {
        matches!(e, ClientEvent::MemberLeft { username, .. } if username.same_as(&name(TUI_USER)))
    })
    .await;

    quit(&tmux).await;
    drop(tmux);
    bob.close().await;
    server.stop().await;
}
