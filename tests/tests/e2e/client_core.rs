//! The client core (the library the TUI is built on) against the real server.

use std::time::Duration;

use client_tui::{ClientError, ClientEvent};
use tests::{name, room, test_key, CoreClient, RawClient, TestServer};

#[tokio::test]
async fn three_core_clients_chat_and_an_outsider_sees_nothing() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut a = CoreClient::register(&url, "alice", 0).await;
    let mut b = CoreClient::register(&url, "bob", 1).await;
    let mut c = CoreClient::register(&url, "carol", 2).await;
    let mut outsider = CoreClient::register(&url, "mallory", 3).await;
    let r = room("core-room");
    a.client
        .create_room(&r, Some("pw"), true)
        .await
        .expect("created");
    b.client.join_room(&r, Some("pw")).await.expect("bob joins");
    let view = c
        .client
        .join_room(&r, Some("pw"))
        .await
        .expect("carol joins");
    assert_eq!(view.members.len(), 3);

    let ack = a
        .client
        .send_text(&r, "hello, both of you")
        .await
        .expect("sent");
    for (client, who) in [(&mut b, "bob"), (&mut c, "carol")] {
        let m = client.next_message().await;
        assert_eq!(m.text, "hello, both of you", "{who} reads it");
        assert_eq!(m.sender, name("alice"));
        assert_eq!(m.seq, ack.seq);
        assert_eq!(
            m.recipients.len(),
            3,
            "the signed recipient list names everyone"
        );
    }
    // Replies flow the other way too.
    c.client
        .send_text(&r, "hi alice")
        .await
        .expect("carol sends");
    assert_eq!(a.next_message().await.text, "hi alice");
    assert_eq!(b.next_message().await.text, "hi alice");
    outsider.expect_no_message(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_rotation_signed_by_the_pinned_key_moves_the_pin_without_a_decision() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut a = CoreClient::register(&url, "alice", 0).await;
    let b = CoreClient::register(&url, "bob", 1).await;
    let r = room("pinned");
    a.client
        .create_room(&r, None, false)
        .await
        .expect("created");
    b.client.join_room(&r, None).await.expect("joined");
    let bob_pinned = b.identity.fingerprint();

    // Bob rotates through the raw protocol: the certificate is signed by his pinned key.
    // (A key change without such a chain is a substitution: see adversary.rs.)
    let new_key = test_key(4);
    let new_der = tests::public_der(&new_key);
    let mut raw = RawClient::logged_in(&url, "bob", &test_key(1)).await;
    raw.request(shared::protocol::ClientMsg::RotateKey(tests::rotation(
        "bob",
        &test_key(1),
        &new_key,
    )))
    .await
    .expect("rotated");

    let rotation = loop {
        match a.next_event().await {
            ClientEvent::KeyRotated {
                username,
                old_fingerprint,
                new_fingerprint,
                ..
            } => break (username, old_fingerprint, new_fingerprint),
            ClientEvent::MemberJoined { .. } => continue,
            other => panic!("expected a verified rotation, got {other:?}"),
        }
    };
    assert_eq!(rotation.0, name("bob"));
    assert_eq!(rotation.1, bob_pinned);
    assert_eq!(
        rotation.2,
        shared::crypto::keys::Fingerprint::of_der(&new_der)
    );
    assert!(a.client.pending_key_changes().is_empty());
    assert!(matches!(
        a.client.accept_key(&name("bob")),
        Err(ClientError::NoPendingKeyChange(_))
    ));
    a.client
        .send_text(&r, "welcome back")
        .await
        .expect("sends to the new key at once");
    // Bob's new key opens it.
    let b2 = CoreClient::login(&url, "bob", 4).await;
    let view = b2.client.join_room(&r, None).await.expect("rejoin");
    let texts: Vec<&str> = view
        .history
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, vec!["welcome back"]);
}

#[tokio::test]
async fn an_offline_core_client_catches_up_from_history() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let a = CoreClient::register(&url, "alice", 0).await;
    let b = CoreClient::register(&url, "bob", 1).await;
    let r = room("later");
    a.client
        .create_room(&r, None, false)
        .await
        .expect("created");
    b.client.join_room(&r, None).await.expect("joined");
    b.client.close().await;
    drop(b);
    for i in 0..4 {
        a.client
            .send_text(&r, &format!("note {i}"))
            .await
            .expect("sent");
    }
    let b = CoreClient::login(&url, "bob", 1).await;
    let view = b.client.join_room(&r, None).await.expect("rejoin");
    let texts: Vec<&str> = view
        .history
        .messages
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(texts, vec!["note 0", "note 1", "note 2", "note 3"]);
    assert!(view.history.rejected.is_empty());
}

#[tokio::test]
async fn a_session_closed_by_a_rotation_elsewhere_says_so() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut first = CoreClient::register(&url, "bob", 1).await;
    let second = CoreClient::login(&url, "bob", 1).await;
    let new = client_tui::Identity::new(name("bob"), (*test_key(4)).clone()).expect("identity");
    second.client.rotate_key(&new).await.expect("rotates");
    let mut saw_rotation = false;
    loop {
        match first.next_event().await {
            ClientEvent::KeyRotatedElsewhere => saw_rotation = true,
            ClientEvent::Disconnected { reason } => {
                assert!(reason.contains("key rotated"), "{reason}");
                break;
            }
            _ => continue,
        }
    }
    assert!(saw_rotation, "the session learns why it was closed");
    // The rotating session goes on.
    second.client.list_rooms().await.expect("still logged in");
}

#[tokio::test]
async fn a_message_over_the_servers_limit_is_refused_before_sending() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let a = CoreClient::register(&url, "alice", 0).await;
    let r = room("big");
    a.client
        .create_room(&r, None, false)
        .await
        .expect("created");
    let max = a.client.server_info().max_message_bytes;
    assert!(max > 1024, "the server announces its limit: {max}");
    let too_long = "x".repeat(usize::try_from(max).expect("fits"));
    match a.client.send_text(&r, &too_long).await {
        Err(ClientError::MessageTooLarge { max: said }) => assert_eq!(said, max),
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // Nothing reached the server, and the counter was given back: the next message is
    // the room's first.
    a.client.send_text(&r, "short").await.expect("sent");
    let view = a.client.join_room(&r, None).await.expect("reopens");
    assert_eq!(view.history.messages.len(), 1);
    assert_eq!(view.history.messages[0].counter, 1);
}
