//! Protocol 4 through the client core against the real server (on either store): an owner
//! runs a room while the members' clients follow every change, two users hold a direct
//! conversation, typing and read markers reach the right sessions, and deleting an account
//! ends all of its sessions.

use std::time::Duration;

use client_tui::{ClientEvent, KeyStatus};
use shared::protocol::{direct_room_name, ModerationAction, RoomChange, RoomKind};
use shared::ErrorCode;
use tests::{name, room, CoreClient, TestServer, WAIT};

/// Events of `c` until one matches `wanted`.
async fn until(c: &mut CoreClient, what: &str, wanted: impl Fn(&ClientEvent) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, c.events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} in time"))
            .expect("events open");
        if wanted(&event) {
            return;
        }
    }
}

/// Waits until `c` is told of `change` in room `r`.
async fn told(c: &mut CoreClient, r: &str, change: RoomChange) {
    until(c, &format!("{change:?}"), |e| {
        matches!(e, ClientEvent::RoomChanged(ev) if ev.room.same_as(&room(r)) && ev.change == change)
    })
    .await;
}

fn code<T: std::fmt::Debug>(result: Result<T, client_tui::ClientError>) -> Option<ErrorCode> {
    result.err().and_then(|e| e.code())
}

#[tokio::test]
async fn an_owner_runs_a_room_and_the_members_clients_follow() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let alice = CoreClient::register(&url, "alice", 0).await;
    let mut bob = CoreClient::register(&url, "bob", 1).await;
    let mut carol = CoreClient::register(&url, "carol", 2).await;
    let r = room("ops");
    alice
        .client
        .create_room(&r, None, false)
        .await
        .expect("creates");
    for c in [&bob, &carol] {
        c.client.join_room(&r, None).await.expect("joins");
    }
    let topic = ModerationAction::SetTopic {
        topic: Some("on call".into()),
    };
    alice.client.moderate(&r, topic).await.expect("topic");
    let set = RoomChange::TopicChanged {
        topic: Some("on call".into()),
    };
    told(&mut bob, "ops", set).await;

    // A kicked member's client closes the room, and the next message has no copy for her.
    alice
        .client
        .moderate(
            &r,
            ModerationAction::Kick {
                user: name("carol"),
            },
        )
        .await
        .expect("kicks");
    told(
        &mut carol,
        "ops",
        RoomChange::Kicked {
            user: name("carol"),
        },
    )
    .await;
    assert!(carol.client.open_rooms().is_empty());
    assert_eq!(
        alice.client.members(&r).map(|m| m.len()),
        Some(2),
        "the owner's client took carol out of the member set"
    );
    alice
        .client
        .send_text(&r, "carol is out")
        .await
        .expect("sends");
    until(
        &mut bob,
        "the message",
        |e| matches!(e, ClientEvent::Message(m) if m.text == "carol is out"),
    )
    .await;
    carol.expect_no_message(Duration::from_millis(300)).await;

    // Banned, she cannot come back; the password and the visibility change.
    alice
        .client
        .moderate(
            &r,
            ModerationAction::Ban {
                user: name("carol"),
            },
        )
        .await
        .expect("bans");
    assert_eq!(
        code(carol.client.join_room(&r, None).await),
        Some(ErrorCode::Banned)
    );
    alice
        .client
        .moderate(
            &r,
            ModerationAction::SetPassword {
                password: Some("pw2".into()),
            },
        )
        .await
        .expect("password");
    told(
        &mut bob,
        "ops",
        RoomChange::PasswordChanged { has_password: true },
    )
    .await;

    // A plain member may not run the room; ownership passes; the new owner deletes it.
    assert_eq!(
        code(bob.client.moderate(&r, ModerationAction::DeleteRoom).await),
        Some(ErrorCode::NotPermitted)
    );
    alice
        .client
        .moderate(&r, ModerationAction::TransferOwnership { to: name("bob") })
        .await
        .expect("transfers");
    told(
        &mut bob,
        "ops",
        RoomChange::OwnerChanged { to: name("bob") },
    )
    .await;
    assert_eq!(
        code(
            alice
                .client
                .moderate(&r, ModerationAction::DeleteRoom)
                .await
        ),
        Some(ErrorCode::NotPermitted),
        "the old owner is an admin now"
    );
    bob.client
        .moderate(&r, ModerationAction::DeleteRoom)
        .await
        .expect("deletes");
    assert!(bob.client.open_rooms().is_empty());
    let mut alice = alice;
    told(&mut alice, "ops", RoomChange::RoomDeleted).await;
    assert!(alice.client.open_rooms().is_empty());
}

#[tokio::test]
async fn two_users_hold_a_direct_conversation_until_one_blocks_the_other() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let alice = CoreClient::register(&url, "alice", 0).await;
    let mut bob = CoreClient::register(&url, "bob", 1).await;
    let dm = direct_room_name(&name("alice"), &name("bob"));
    let view = alice.client.open_direct(&name("bob")).await.expect("opens");
    assert_eq!(view.kind, RoomKind::Direct { peer: name("bob") });
    assert_eq!(view.room, dm);
    match bob.next_event().await {
        ClientEvent::DirectOpened { room: r, peer } => {
            assert_eq!(r, dm);
            assert_eq!(peer.username, name("alice"));
            assert_eq!(peer.status, KeyStatus::Trusted, "pinned on first sight");
        }
        other => panic!("expected the conversation, got {other:?}"),
    }
    let view = bob.client.join_room(&dm, None).await.expect("bob opens it");
    assert_eq!(
        view.kind,
        RoomKind::Direct {
            peer: name("alice")
        }
    );
    alice.client.send_text(&dm, "just us").await.expect("sends");
    assert_eq!(bob.next_message().await.text, "just us");
    bob.client.send_text(&dm, "indeed").await.expect("answers");

    bob.client
        .set_blocked(&name("alice"), true)
        .await
        .expect("blocks");
    assert_eq!(bob.client.blocked(), [name("alice")]);
    assert_eq!(
        code(alice.client.open_direct(&name("bob")).await),
        Some(ErrorCode::NotPermitted)
    );
}

#[tokio::test]
async fn typing_reaches_the_room_and_read_markers_the_users_other_sessions() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let a1 = CoreClient::register(&url, "alice", 0).await;
    let mut a2 = CoreClient::login(&url, "alice", 0).await;
    let mut bob = CoreClient::register(&url, "bob", 1).await;
    let r = room("den");
    a1.client
        .create_room(&r, None, false)
        .await
        .expect("creates");
    a2.client.join_room(&r, None).await.expect("re-opens");
    bob.client.join_room(&r, None).await.expect("joins");
    let sent = bob.client.send_text(&r, "read me").await.expect("sends");

    a1.client.set_typing(&r, true).await.expect("types");
    until(&mut bob, "alice typing", |e| {
        matches!(e, ClientEvent::Typing { username, typing: true, .. } if username.same_as(&name("alice")))
    })
    .await;

    assert!(a1.client.mark_read(&r, sent.seq).await.expect("marks"));
    until(
        &mut a2,
        "the read marker",
        |e| matches!(e, ClientEvent::ReadUpTo { seq, .. } if *seq == sent.seq),
    )
    .await;
    assert_eq!(a2.client.read_up_to(&r), sent.seq);
    assert!(
        !a2.client.mark_read(&r, sent.seq).await.expect("no-op"),
        "a marker that does not move is not sent"
    );
    let reopened = a2.client.join_room(&r, None).await.expect("re-opens");
    assert_eq!(
        reopened.read_up_to, sent.seq,
        "the snapshot carries the marker"
    );
}

#[tokio::test]
async fn deleting_the_account_ends_every_session_and_reserves_the_name() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let a1 = CoreClient::register(&url, "alice", 0).await;
    let mut a2 = CoreClient::login(&url, "alice", 0).await;
    a1.client.delete_account().await.expect("deletes");
    until(&mut a2, "the deletion", |e| {
        matches!(e, ClientEvent::AccountDeleted)
    })
    .await;
    until(&mut a2, "the disconnection", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    let (client, _events) = client_tui::Client::connect(&url, client_tui::PinStore::in_memory())
        .await
        .expect("connects");
    let someone =
        client_tui::Identity::new(name("alice"), (*tests::test_key(3)).clone()).expect("identity");
    assert_eq!(
        code(client.register(&someone).await),
        Some(ErrorCode::UsernameTaken),
        "the name stays reserved"
    );
}
