//! Limits that keep one abusive client from hurting anyone else: the argon2 pool,
//! failed-join back-off, password length, registration, room and connection quotas, the
//! login deadline, message validation, history paging past oversized copies, the rate
//! limit on malformed frames, and the request and byte rates of a user over all of their
//! connections.

use std::time::Duration;

use server::config::Config;
use server::store::embedded::EmbeddedStore;
use server::store::{NewMessage, RoomKey, RoomRecord, Store, UserRecord};
use shared::protocol::{
    ClientMsg, CreateRoom, Envelope, FetchHistory, JoinRoom, LeaveRoom, ListRooms, Reply,
    SendMessage, ServerMsg, MAX_FRAME_BYTES,
};
use shared::{ErrorCode, MessageId, RoomName};
use tests::{
    e2e_uses_mongo, name, public_der, room, seal_text, test_key, RawClient, TestServer, WireError,
};

/// A server on a fresh directory with `tune` applied to its test configuration.
async fn server_with(tune: impl FnOnce(&mut Config)) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_tests(dir.path().to_path_buf());
    tune(&mut config);
    let server = TestServer::start_with(config).await;
    (dir, server)
}

async fn create(
    c: &mut RawClient,
    r: &RoomName,
    password: Option<&str>,
) -> Result<Reply, WireError> {
    c.request(ClientMsg::CreateRoom(CreateRoom {
        name: r.clone(),
        password: password.map(str::to_owned),
        hidden: false,
    }))
    .await
}

async fn join(c: &mut RawClient, r: &RoomName, password: Option<&str>) -> Result<Reply, WireError> {
    c.request(ClientMsg::JoinRoom(JoinRoom {
        name: r.clone(),
        password: password.map(str::to_owned),
        history_limit: 0,
    }))
    .await
}

/// The seconds in a "retry after N s" message.
fn retry_after(err: &WireError) -> u64 {
    assert_eq!(err.code, ErrorCode::RateLimited, "{err:?}");
    err.message
        .rsplit("retry after ")
        .next()
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after in {:?}", err.message))
}

#[tokio::test]
async fn a_full_argon2_pool_answers_rate_limited_and_bystanders_are_served() {
    let (_dir, server) = server_with(|c| c.argon2_threads = 1).await;
    let url = server.ws_url();
    let mut bystander = RawClient::registered(&url, "bob", &test_key(1)).await;
    let mut attackers = Vec::new();
    for i in 0..6 {
        attackers.push(RawClient::registered(&url, &format!("mallory{i}"), &test_key(2)).await);
    }
    // Public rooms with passwords: a guess at one costs an argon2 run. (A missing or
    // hidden room costs none: it is a keyed lookup.) One room per round keeps every
    // attacker under the failed-join throttle.
    for round in 0..8 {
        create(
            &mut bystander,
            &room(&format!("guarded-{round}")),
            Some("pw"),
        )
        .await
        .expect("created");
    }
    let mut busy = 0;
    for round in 0..8 {
        // Every attacker guesses at once.
        let mut ids = Vec::new();
        for a in &mut attackers {
            ids.push(
                a.send(ClientMsg::JoinRoom(JoinRoom {
                    name: room(&format!("guarded-{round}")),
                    password: Some("guess".into()),
                    history_limit: 0,
                }))
                .await,
            );
        }
        for (a, id) in attackers.iter_mut().zip(ids) {
            match a.answer(id).await {
                Err(e) if e.code == ErrorCode::RateLimited => {
                    assert!(e.message.contains("busy"), "{e:?}");
                    busy += 1;
                }
                Err(e) => assert_eq!(e.code, ErrorCode::WrongPassword, "{e:?}"),
                Ok(other) => panic!("joined with a wrong password: {other:?}"),
            }
        }
        // The bystander is served meanwhile, cheap requests and password checks alike.
        assert!(matches!(
            bystander
                .request(ClientMsg::ListRooms(ListRooms::default()))
                .await,
            Ok(Reply::Rooms(_))
        ));
        if busy > 0 {
            break;
        }
    }
    assert!(
        busy > 0,
        "six joins at once never found the one argon2 slot busy"
    );
    // Once the flood stops, a password room is created and joined as usual.
    let r = room("quiet");
    create(&mut bystander, &r, Some("pw"))
        .await
        .expect("created");
    let mut carol = RawClient::registered(&url, "carol", &test_key(3)).await;
    join(&mut carol, &r, Some("pw")).await.expect("joined");
}

#[tokio::test]
async fn wrong_passwords_wait_longer_each_time_and_the_right_one_then_works() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    let r = room("vault");
    create(&mut alice, &r, Some("right"))
        .await
        .expect("created");
    // Three failures are free; the fourth makes the next try wait.
    for _ in 0..4 {
        let e = join(&mut bob, &r, Some("wrong")).await.expect_err("wrong");
        assert_eq!(e.code, ErrorCode::WrongPassword);
    }
    let first = retry_after(
        &join(&mut bob, &r, Some("right"))
            .await
            .expect_err("throttled"),
    );
    // Others are not held up by bob's failures.
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;
    join(&mut carol, &r, Some("right"))
        .await
        .expect("carol joins");
    tokio::time::sleep(Duration::from_secs(first) + Duration::from_millis(100)).await;
    let e = join(&mut bob, &r, Some("wrong")).await.expect_err("wrong");
    assert_eq!(e.code, ErrorCode::WrongPassword);
    let second = retry_after(
        &join(&mut bob, &r, Some("wrong"))
            .await
            .expect_err("throttled"),
    );
    assert!(
        second > first,
        "the delay grows: {first} s, then {second} s"
    );
    tokio::time::sleep(Duration::from_secs(second) + Duration::from_millis(100)).await;
    assert!(matches!(
        join(&mut bob, &r, Some("right")).await,
        Ok(Reply::Joined(_))
    ));
}

#[tokio::test]
async fn an_overlong_password_is_invalid_input_on_join_and_create() {
    let (_dir, server) = server_with(|c| c.argon2_threads = 1).await;
    let mut alice = RawClient::registered(&server.ws_url(), "alice", &test_key(0)).await;
    let long = "p".repeat(257);
    let e = join(&mut alice, &room("anything"), Some(&long))
        .await
        .expect_err("refused");
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    let e = create(&mut alice, &room("mine"), Some(&long))
        .await
        .expect_err("refused");
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    // Refused before any lookup or hash: many of them count as no failed join.
    for _ in 0..10 {
        let e = join(&mut alice, &room("anything"), Some(&long))
            .await
            .expect_err("refused");
        assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    }
}

#[tokio::test]
async fn registrations_are_capped_per_address_and_in_total() {
    if e2e_uses_mongo() {
        // The quota is the server's, not the store's; once is enough.
        return;
    }
    let (_dir, server) = server_with(|c| {
        c.trust_forwarded_for = true;
        c.registrations_per_address = 2;
        c.registrations_total = 3;
    })
    .await;
    let url = server.ws_url();
    let from = |address: &'static str| {
        let url = url.clone();
        async move {
            let mut c = RawClient::connect_forwarded_for(&url, address)
                .await
                .expect("connects");
            c.greet().await;
            c
        }
    };
    let mut first = from("10.0.0.1").await;
    first.register("user1", &test_key(0)).await.expect("1st");
    first.register("user2", &test_key(1)).await.expect("2nd");
    let e = first
        .register("user3", &test_key(2))
        .await
        .expect_err("3rd");
    assert!(retry_after(&e) > 60, "{e:?}");
    // Another connection from the same address shares its quota.
    let mut again = from("10.0.0.1").await;
    let e = again
        .register("user4", &test_key(3))
        .await
        .expect_err("same address");
    assert_eq!(e.code, ErrorCode::RateLimited);
    // Another address has its own, until the server's total is used up.
    let mut second = from("10.0.0.2").await;
    second
        .register("user5", &test_key(4))
        .await
        .expect("3rd in total");
    let mut third = from("10.0.0.3").await;
    let e = third
        .register("user6", &test_key(5))
        .await
        .expect_err("total");
    assert_eq!(e.code, ErrorCode::RateLimited);
}

#[tokio::test]
async fn a_user_may_create_only_so_many_rooms() {
    let (_dir, server) = server_with(|c| c.rooms_per_user = 2).await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    create(&mut alice, &room("one"), None).await.expect("1st");
    create(&mut alice, &room("two"), Some("pw"))
        .await
        .expect("2nd");
    // Leaving a room does not give it back.
    alice
        .request(ClientMsg::LeaveRoom(LeaveRoom { room: room("one") }))
        .await
        .expect("left");
    let e = create(&mut alice, &room("three"), None)
        .await
        .expect_err("over the quota");
    assert_eq!(e.code, ErrorCode::QuotaExceeded, "{e:?}");
    // Others have their own quota.
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    create(&mut bob, &room("three"), None)
        .await
        .expect("bob's 1st");
}

#[tokio::test]
async fn an_address_may_hold_only_so_many_connections() {
    let (_dir, server) = server_with(|c| c.connections_per_address = 2).await;
    let url = server.ws_url();
    let first = RawClient::greeted(&url).await;
    let _second = RawClient::greeted(&url).await;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        Err(other) => panic!("expected HTTP 429, got {other:?}"),
        Ok(_) => panic!("a third connection from one address was accepted"),
    }
    // A closed connection gives its place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + tests::WAIT;
    loop {
        if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed connection's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_connection_that_does_not_log_in_in_time_is_closed_with_1008() {
    let (_dir, server) = server_with(|c| c.login_deadline_secs = 1).await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut idle = RawClient::greeted(&url).await;
    assert_eq!(idle.close_code().await, Some(1008));
    // A logged-in connection is past the deadline for good.
    assert!(matches!(
        alice
            .request(ClientMsg::ListRooms(ListRooms::default()))
            .await,
        Ok(Reply::Rooms(_))
    ));
}

/// alice and bob in room "checks", on a server with `max_message_bytes`.
async fn two_members(
    max_message_bytes: usize,
) -> (
    tempfile::TempDir,
    TestServer,
    RawClient,
    RawClient,
    RoomName,
) {
    let (dir, server) = server_with(|c| c.max_message_bytes = max_message_bytes).await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    let r = room("checks");
    create(&mut alice, &r, None).await.expect("created");
    join(&mut bob, &r, None).await.expect("joined");
    (dir, server, alice, bob, r)
}

/// Sends `envelopes` as alice and expects `InvalidInput`; then checks that nothing was
/// stored (both histories are empty) and bob got nothing.
async fn refused_and_not_kept(
    alice: &mut RawClient,
    bob: &mut RawClient,
    r: &RoomName,
    message_id: MessageId,
    envelopes: Vec<Envelope>,
) -> String {
    let e = alice
        .request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id,
            envelopes,
        }))
        .await
        .expect_err("refused");
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    bob.pushes.clear();
    bob.expect_silence(Duration::from_millis(300)).await;
    for c in [alice, bob] {
        match c
            .request(ClientMsg::FetchHistory(FetchHistory {
                room: r.clone(),
                before_seq: None,
                limit: 50,
            }))
            .await
        {
            Ok(Reply::History(page)) => {
                assert!(page.messages.is_empty() && !page.has_more, "{page:?}");
            }
            other => panic!("expected a history page, got {other:?}"),
        }
    }
    e.message
}

fn sealed(r: &RoomName, text: &str) -> (MessageId, Vec<Envelope>) {
    let (ka, kb) = (test_key(0), test_key(1));
    seal_text(r, "alice", &ka, &[("alice", &ka), ("bob", &kb)], text)
}

#[tokio::test]
async fn a_copy_over_the_size_cap_is_refused_and_not_stored() {
    let (_dir, _server, mut alice, mut bob, r) = two_members(1024).await;
    let (id, envelopes) = sealed(&r, &"x".repeat(2000));
    let why = refused_and_not_kept(&mut alice, &mut bob, &r, id, envelopes).await;
    assert!(why.contains("at most 1024"), "{why}");
    // A message within the cap goes through.
    let (id, envelopes) = sealed(&r, "hi");
    alice
        .request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect("sent");
}

#[tokio::test]
async fn a_wrapped_key_of_the_wrong_size_is_refused_and_not_stored() {
    let (_dir, _server, mut alice, mut bob, r) = two_members(65536).await;
    let (id, mut envelopes) = sealed(&r, "hello");
    envelopes[1].wrapped_key.push(0);
    let why = refused_and_not_kept(&mut alice, &mut bob, &r, id, envelopes).await;
    assert!(why.contains("wrapped key for bob"), "{why}");
}

#[tokio::test]
async fn copies_of_unequal_length_are_refused_and_not_stored() {
    let (_dir, _server, mut alice, mut bob, r) = two_members(65536).await;
    let (id, mut envelopes) = sealed(&r, "hello");
    envelopes[1].ciphertext.push(0);
    let why = refused_and_not_kept(&mut alice, &mut bob, &r, id, envelopes).await;
    assert!(why.contains("one length"), "{why}");
}

#[tokio::test]
async fn a_message_too_large_to_push_is_refused_and_not_stored() {
    let (_dir, _server, mut alice, mut bob, r) = two_members(MAX_FRAME_BYTES).await;
    // One copy for each of two members, each just under half a frame, fits the request;
    // then make it a room of one so a single copy nearly fills a frame.
    bob.request(ClientMsg::LeaveRoom(LeaveRoom { room: r.clone() }))
        .await
        .expect("left");
    let ka = test_key(0);
    let (id, envelopes) = seal_text(
        &r,
        "alice",
        &ka,
        &[("alice", &ka)],
        &"x".repeat(MAX_FRAME_BYTES - 128 * 1024),
    );
    let e = alice
        .request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect_err("refused");
    assert_eq!(e.code, ErrorCode::InvalidInput, "{e:?}");
    assert!(e.message.contains("too large to deliver"), "{e:?}");
    match alice
        .request(ClientMsg::FetchHistory(FetchHistory {
            room: r.clone(),
            before_seq: None,
            limit: 50,
        }))
        .await
    {
        Ok(Reply::History(page)) => assert!(page.messages.is_empty() && !page.has_more),
        other => panic!("expected a history page, got {other:?}"),
    }
}

#[tokio::test]
async fn a_history_holding_a_huge_copy_can_still_be_paged_past() {
    if e2e_uses_mongo() {
        // The huge copy is planted in the embedded store directly.
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let r = room("archive");
    let alice = name("alice");
    {
        // A history from before copies were checked: small messages, then one whose copy
        // alone is larger than any page, then small ones again.
        let store = EmbeddedStore::open(dir.path()).expect("store opens");
        store
            .create_user(UserRecord {
                username: alice.clone(),
                public_key: public_der(&test_key(0)),
                created_at_ms: 0,
            })
            .await
            .expect("user");
        let key = RoomKey::public(&r);
        store
            .create_room(
                &key,
                RoomRecord::group(r.clone(), alice.clone(), None, false, 0),
                1,
            )
            .await
            .expect("room");
        for i in 0..7u8 {
            let size = if i == 3 || i == 6 {
                MAX_FRAME_BYTES - 1024
            } else {
                100
            };
            store
                .append_message(NewMessage {
                    room: key.clone(),
                    message_id: MessageId([i; 16]),
                    sender: alice.clone(),
                    server_time_ms: 0,
                    envelopes: vec![Envelope {
                        recipient: alice.clone(),
                        wrapped_key: vec![0; 256],
                        nonce: [0; 12],
                        ciphertext: vec![i; size],
                    }],
                })
                .await
                .expect("append");
        }
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .expect("store closes");
    }
    let server = TestServer::start_with(Config::for_tests(dir.path().to_path_buf())).await;
    let mut c = RawClient::logged_in(&server.ws_url(), "alice", &test_key(0)).await;
    let mut seen = Vec::new();
    let mut before = None;
    for _ in 0..10 {
        let page = match c
            .request(ClientMsg::FetchHistory(FetchHistory {
                room: r.clone(),
                before_seq: before,
                limit: 2,
            }))
            .await
        {
            Ok(Reply::History(page)) => page,
            other => panic!("expected a history page, got {other:?}"),
        };
        assert!(
            !page.messages.is_empty() || !page.has_more,
            "an empty page that says more follow leaves the client nowhere to go"
        );
        seen.extend(page.messages.iter().rev().map(|m| m.seq));
        if !page.has_more {
            break;
        }
        before = page.messages.first().map(|m| m.seq);
    }
    // Every message but the two huge ones (seq 4 and 7), newest first.
    assert_eq!(seen, [6, 5, 3, 2, 1]);
}

#[tokio::test]
async fn malformed_frames_count_against_the_rate_limit() {
    let (_dir, server) = server_with(|c| c.requests_per_sec = 2).await;
    let mut c = RawClient::registered(&server.ws_url(), "alice", &test_key(0)).await;
    // Let the bucket refill after the login's requests.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut limited = 0;
    for _ in 0..8 {
        c.send_raw(vec![0xff, 0xfe, 0xfd]).await;
        match c.next_frame().await {
            Some(ServerMsg::Error {
                request_id: None,
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Some(ServerMsg::Error {
                request_id: None,
                code: ErrorCode::MalformedFrame,
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        limited > 0,
        "eight garbage frames at once were never limited"
    );
    // The garbage used up the connection's allowance for well-formed requests too.
    let e = c
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
        .expect_err("limited");
    assert_eq!(e.code, ErrorCode::RateLimited);
}

#[tokio::test]
async fn a_users_connections_share_one_request_rate() {
    let (_dir, server) = server_with(|c| c.requests_per_sec = 5).await;
    let url = server.ws_url();
    let key = test_key(0);
    let mut conns = vec![RawClient::registered(&url, "mallory", &key).await];
    for _ in 0..3 {
        conns.push(RawClient::logged_in(&url, "mallory", &key).await);
    }
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    // Let every bucket fill again after the logins.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for c in &mut conns {
        for _ in 0..10 {
            ids.push(c.send(ClientMsg::ListRooms(ListRooms::default())).await);
        }
    }
    let mut served = 0u64;
    for (i, id) in ids.into_iter().enumerate() {
        match conns[i / 10].answer(id).await {
            Ok(Reply::Rooms(_)) => served += 1,
            Err(e) if e.code == ErrorCode::RateLimited => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Each connection's own budget would pass all 40; the user's passes its burst of 10
    // and what refilled meanwhile (5 a second).
    let refilled = 5 * started.elapsed().as_secs() + 5;
    assert!(
        served <= 10 + refilled,
        "{served} of 40 served in {:?}",
        started.elapsed()
    );
    // Another user is not held back by mallory's spending.
    for _ in 0..5 {
        assert!(matches!(
            bob.request(ClientMsg::ListRooms(ListRooms::default()))
                .await,
            Ok(Reply::Rooms(_))
        ));
    }
}

#[tokio::test]
async fn a_connection_sending_past_its_byte_rate_is_read_more_slowly() {
    let (_dir, server) = server_with(|c| {
        c.requests_per_sec = 10_000;
        c.inbound_kib_per_sec = 1024;
    })
    .await;
    let url = server.ws_url();
    let mut mallory = RawClient::registered(&url, "mallory", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    // Six MiB of garbage: the first four pass at once (the burst is one largest frame),
    // the last two wait for the rate, a MiB a second.
    let started = std::time::Instant::now();
    for _ in 0..6 {
        mallory.send_raw(vec![0xff; 1 << 20]).await;
    }
    let mallory_done = tokio::spawn(async move {
        for _ in 0..6 {
            match mallory.next_frame().await {
                Some(ServerMsg::Error {
                    code: ErrorCode::MalformedFrame,
                    ..
                }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        std::time::Instant::now()
    });
    // Meanwhile bob, on his own budget, is served at once.
    assert!(matches!(
        bob.request(ClientMsg::ListRooms(ListRooms::default()))
            .await,
        Ok(Reply::Rooms(_))
    ));
    let bob_done = std::time::Instant::now();
    let mallory_done = mallory_done.await.expect("reader");
    assert!(
        mallory_done.duration_since(started) >= Duration::from_millis(1500),
        "six MiB read in {:?}",
        mallory_done.duration_since(started)
    );
    assert!(bob_done < mallory_done, "bob waited behind mallory");
}
