//! Sending and receiving end-to-end encrypted messages.

use std::time::Duration;

use shared::protocol::{
    ClientMsg, CreateRoom, DeliveredMessage, FetchHistory, JoinRoom, Push, Reply, SendMessage,
    ServerMsg,
};
use shared::{ErrorCode, ErrorDetail};
use tests::{name, open_text, room, seal_text, test_key, RawClient, TestServer};

async fn create(c: &mut RawClient, n: &str) {
    c.request(ClientMsg::CreateRoom(CreateRoom {
        name: room(n),
        password: None,
        hidden: false,
    }))
    .await
    .expect("room created");
}

async fn join(c: &mut RawClient, n: &str) -> shared::protocol::RoomSnapshot {
    match c
        .request(ClientMsg::JoinRoom(JoinRoom {
            name: room(n),
            password: None,
            history_limit: 50,
        }))
        .await
        .expect("joined")
    {
        Reply::Joined(s) => s,
        other => panic!("unexpected {other:?}"),
    }
}

async fn next_message(c: &mut RawClient) -> DeliveredMessage {
    loop {
        match c.next_push().await {
            Push::Message(m) => return m,
            Push::MemberJoined { .. } => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn three_members_each_decrypt_only_their_own_copy() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb, kc) = (test_key(0), test_key(1), test_key(2));
    let mut a = RawClient::registered(&url, "alice", &ka).await;
    let mut b = RawClient::registered(&url, "bob", &kb).await;
    let mut c = RawClient::registered(&url, "carol", &kc).await;
    let mut outsider = RawClient::registered(&url, "mallory", &test_key(3)).await;
    create(&mut a, "trio").await;
    join(&mut b, "trio").await;
    join(&mut c, "trio").await;
    for expected in ["bob", "carol"] {
        match a.next_push().await {
            Push::MemberJoined { member, .. } => assert_eq!(member.username, name(expected)),
            other => panic!("unexpected {other:?}"),
        }
    }

    let r = room("trio");
    let (id, envelopes) = seal_text(
        &r,
        "alice",
        &ka,
        &[("alice", &ka), ("bob", &kb), ("carol", &kc)],
        "meet at noon",
    );
    let ack = a
        .request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect("sent");
    let Reply::Sent(ack) = ack else {
        panic!("expected Sent")
    };
    assert_eq!(ack.seq, 1);
    assert_eq!(ack.message_id, id);

    let for_b = next_message(&mut b).await;
    let for_c = next_message(&mut c).await;
    assert_eq!(
        for_b.envelope.recipient,
        name("bob"),
        "bob gets only his copy"
    );
    assert_eq!(for_c.envelope.recipient, name("carol"));
    assert_eq!(for_b.sender, name("alice"));
    assert_eq!(
        open_text(&for_b, "bob", &kb, &ka).expect("bob decrypts"),
        "meet at noon"
    );
    assert_eq!(
        open_text(&for_c, "carol", &kc, &ka).expect("carol decrypts"),
        "meet at noon"
    );
    // Neither can open the other's copy, and a wrong sender key fails verification.
    assert!(open_text(&for_b, "carol", &kc, &ka).is_err());
    assert!(open_text(&for_c, "bob", &kb, &ka).is_err());
    assert!(
        open_text(&for_b, "bob", &kb, &kc).is_err(),
        "signature must bind the sender"
    );
    // The sending connection gets the ack, not an echo; the outsider gets nothing.
    a.expect_silence(Duration::from_millis(300)).await;
    outsider.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_recipient_set_that_differs_from_the_members_is_rejected_with_the_members() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb, kc) = (test_key(0), test_key(1), test_key(2));
    let (ka, kb, kc) = (ka.as_ref(), kb.as_ref(), kc.as_ref());
    let mut a = RawClient::registered(&url, "alice", ka).await;
    let mut b = RawClient::registered(&url, "bob", kb).await;
    RawClient::registered(&url, "carol", kc).await;
    create(&mut a, "duo").await;
    join(&mut b, "duo").await;
    let r = room("duo");

    for recipients in [
        vec![("alice", ka)],                             // bob missing
        vec![("alice", ka), ("bob", kb), ("carol", kc)], // carol is no member
        vec![("alice", ka), ("alice", ka)],              // duplicate, bob missing
    ] {
        let (id, envelopes) = seal_text(&r, "alice", ka, &recipients, "hi");
        let err = a
            .request(ClientMsg::SendMessage(SendMessage {
                room: r.clone(),
                message_id: id,
                envelopes,
            }))
            .await
            .expect_err("mismatch");
        assert_eq!(err.code, ErrorCode::RecipientMismatch);
        let Some(ErrorDetail::CurrentMembers(members)) = err.detail else {
            panic!("the error must list the members")
        };
        let names: Vec<&str> = members.iter().map(|m| m.username.as_str()).collect();
        assert_eq!(names, vec!["alice", "bob"]);
        assert_eq!(members[1].public_key, tests::public_der(kb));
    }
    // Nothing was stored or delivered.
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn non_members_cannot_send_or_read() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let ka = test_key(0);
    let km = test_key(3);
    let mut a = RawClient::registered(&url, "alice", &ka).await;
    let mut m = RawClient::registered(&url, "mallory", &km).await;
    create(&mut a, "private").await;
    let r = room("private");
    let (id, envelopes) = seal_text(&r, "mallory", &km, &[("alice", &ka)], "spam");
    let err = m
        .request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect_err("not a member");
    assert_eq!(err.code, ErrorCode::NotAMember);
    let err = m
        .request(ClientMsg::FetchHistory(FetchHistory {
            room: r,
            before_seq: None,
            limit: 10,
        }))
        .await
        .expect_err("not a member");
    assert_eq!(err.code, ErrorCode::NotAMember);
}

#[tokio::test]
async fn an_offline_member_reads_what_was_sent_meanwhile() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let mut a = RawClient::registered(&url, "alice", &ka).await;
    let mut b = RawClient::registered(&url, "bob", &kb).await;
    create(&mut a, "async").await;
    join(&mut b, "async").await;
    drop(b); // bob goes offline
    let r = room("async");
    let mut sent = Vec::new();
    for i in 0..5 {
        let text = format!("message {i}");
        let (id, envelopes) = seal_text(&r, "alice", &ka, &[("alice", &ka), ("bob", &kb)], &text);
        a.request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect("sent while bob is away");
        sent.push(text);
    }

    let mut b = RawClient::logged_in(&url, "bob", &kb).await;
    // The login reply names the room; re-joining returns the newest page.
    let snap = match b
        .request(ClientMsg::JoinRoom(JoinRoom {
            name: r.clone(),
            password: None,
            history_limit: 3,
        }))
        .await
        .expect("rejoin")
    {
        Reply::Joined(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert!(snap.history.has_more);
    let newest: Vec<String> = snap
        .history
        .messages
        .iter()
        .map(|m| open_text(m, "bob", &kb, &ka).expect("decrypts"))
        .collect();
    assert_eq!(newest, sent[2..].to_vec());
    // Older pages on request.
    let first_seq = snap.history.messages[0].seq;
    let page = match b
        .request(ClientMsg::FetchHistory(FetchHistory {
            room: r,
            before_seq: Some(first_seq),
            limit: 10,
        }))
        .await
        .expect("older page")
    {
        Reply::History(p) => p,
        other => panic!("unexpected {other:?}"),
    };
    assert!(!page.has_more);
    let older: Vec<String> = page
        .messages
        .iter()
        .map(|m| open_text(m, "bob", &kb, &ka).expect("decrypts"))
        .collect();
    assert_eq!(older, sent[..2].to_vec());
}

#[tokio::test]
async fn one_connection_in_two_rooms_at_once() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb, kc) = (test_key(0), test_key(1), test_key(2));
    let mut a = RawClient::registered(&url, "alice", &ka).await;
    let mut b = RawClient::registered(&url, "bob", &kb).await;
    let mut c = RawClient::registered(&url, "carol", &kc).await;
    create(&mut b, "red").await;
    create(&mut c, "blue").await;
    join(&mut a, "red").await;
    join(&mut a, "blue").await;
    for (sender, key, r) in [(&mut b, &kb, "red"), (&mut c, &kc, "blue")] {
        let who = if r == "red" { "bob" } else { "carol" };
        let (id, envelopes) = seal_text(
            &room(r),
            who,
            key,
            &[("alice", &ka), (who, key)],
            &format!("hello from {r}"),
        );
        sender
            .request(ClientMsg::SendMessage(SendMessage {
                room: room(r),
                message_id: id,
                envelopes,
            }))
            .await
            .expect("sent");
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = next_message(&mut a).await;
        let sender_key = if m.room.as_str() == "red" { &kb } else { &kc };
        let text = open_text(&m, "alice", &ka, sender_key).expect("decrypts");
        got.push((m.room.to_string(), text));
    }
    got.sort();
    assert_eq!(
        got,
        vec![
            ("blue".to_owned(), "hello from blue".to_owned()),
            ("red".to_owned(), "hello from red".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_users_other_connections_receive_their_messages() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let mut laptop = RawClient::registered(&url, "alice", &ka).await;
    let mut phone = RawClient::logged_in(&url, "alice", &ka).await;
    let mut b = RawClient::registered(&url, "bob", &kb).await;
    create(&mut laptop, "sync").await;
    join(&mut b, "sync").await;
    let r = room("sync");
    let (id, envelopes) = seal_text(
        &r,
        "alice",
        &ka,
        &[("alice", &ka), ("bob", &kb)],
        "from my laptop",
    );
    laptop
        .request(ClientMsg::SendMessage(SendMessage {
            room: r,
            message_id: id,
            envelopes,
        }))
        .await
        .expect("sent");
    let m = next_message(&mut phone).await;
    assert_eq!(
        open_text(&m, "alice", &ka, &ka).expect("decrypts"),
        "from my laptop"
    );
    // Resending the same id is refused: an acknowledged message is stored once.
    let (_, envelopes) = seal_text(
        &room("sync"),
        "alice",
        &ka,
        &[("alice", &ka), ("bob", &kb)],
        "again",
    );
    let err = laptop
        .request(ClientMsg::SendMessage(SendMessage {
            room: room("sync"),
            message_id: id,
            envelopes,
        }))
        .await
        .expect_err("duplicate id");
    assert_eq!(err.code, ErrorCode::DuplicateMessage);
}

#[tokio::test]
async fn pipelined_sends_are_stored_and_delivered_in_the_order_sent() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let mut a = RawClient::registered(&url, "alice", &ka).await;
    let mut b = RawClient::registered(&url, "bob", &kb).await;
    create(&mut a, "pipe").await;
    join(&mut b, "pipe").await;

    let r = room("pipe");
    let sealed: Vec<_> = (0..6)
        .map(|i| {
            seal_text(
                &r,
                "alice",
                &ka,
                &[("alice", &ka), ("bob", &kb)],
                &format!("message {i}"),
            )
        })
        .collect();
    // Every send goes out before any answer is read; the fourth repeats the first's id.
    let mut requests = Vec::new();
    for (i, (id, envelopes)) in sealed.iter().enumerate() {
        let frame = SendMessage {
            room: r.clone(),
            message_id: *id,
            envelopes: envelopes.clone(),
        };
        requests.push((Some(*id), a.send(ClientMsg::SendMessage(frame)).await));
        if i == 2 {
            let (first_id, first_envelopes) = &sealed[0];
            let repeat = SendMessage {
                room: r.clone(),
                message_id: *first_id,
                envelopes: first_envelopes.clone(),
            };
            requests.push((None, a.send(ClientMsg::SendMessage(repeat)).await));
        }
    }
    // Answers may come in any order; each names its request.
    let mut answers = std::collections::HashMap::new();
    while answers.len() < requests.len() {
        match a.next_frame().await {
            Some(ServerMsg::Reply { request_id, reply }) => {
                answers.insert(request_id, Ok(reply));
            }
            Some(ServerMsg::Error {
                request_id: Some(request_id),
                code,
                ..
            }) => {
                answers.insert(request_id, Err(code));
            }
            Some(ServerMsg::Push(Push::MemberJoined { .. })) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut acked_seqs = Vec::new();
    for (message_id, request_id) in &requests {
        match (message_id, &answers[request_id]) {
            (Some(id), Ok(Reply::Sent(ack))) => {
                assert_eq!(ack.message_id, *id);
                acked_seqs.push(ack.seq);
            }
            (None, Err(code)) => assert_eq!(*code, ErrorCode::DuplicateMessage),
            (_, other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(acked_seqs, [1, 2, 3, 4, 5, 6], "stored in the order sent");

    for (i, (id, _)) in sealed.iter().enumerate() {
        let m = next_message(&mut b).await;
        assert_eq!((m.seq, m.message_id), (i as u64 + 1, *id));
        assert_eq!(
            open_text(&m, "bob", &kb, &ka).expect("decrypts"),
            format!("message {i}")
        );
    }
    b.expect_silence(Duration::from_millis(200)).await;
}
