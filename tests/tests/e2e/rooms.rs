//! Rooms: listing, hidden and password rooms, membership broadcasts.

use std::time::Duration;

use shared::protocol::{
    ClientMsg, CreateRoom, LeaveRoom, ListRooms, Push, Reply, MAX_ROOM_LIST_PAGE,
};
use shared::ErrorCode;
use tests::{name, public_der, room, test_key, RawClient, TestServer};

async fn list(c: &mut RawClient) -> shared::protocol::RoomList {
    match c
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
        .expect("list")
    {
        Reply::Rooms(l) => l,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn hidden_rooms_are_unlisted_but_joinable_by_exact_name() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut owner = RawClient::registered(&url, "owner", &test_key(0)).await;
    let snap = owner.create_room("lobby", None, false).await;
    assert_eq!(snap.owner.as_str(), "owner");
    assert_eq!(snap.members.len(), 1);
    owner
        .create_room("secret-base", Some("hunter2"), true)
        .await;
    owner.create_room("quiet", None, true).await;

    let mut guest = RawClient::registered(&url, "guest", &test_key(1)).await;
    let listing = list(&mut guest).await;
    let names: Vec<&str> = listing.rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["lobby"], "hidden rooms must never be listed");
    assert_eq!(listing.users_online, 2);
    assert_eq!(listing.rooms[0].members, 1);
    assert_eq!(listing.rooms[0].members_online, 1);

    // A hidden room without password: joinable by name.
    let snap = guest
        .join_room("quiet", None)
        .await
        .expect("joins hidden room");
    assert!(snap.hidden);
    // A hidden room with password: the wrong password looks exactly like a missing room.
    let wrong = guest
        .join_room("secret-base", Some("nope"))
        .await
        .expect_err("wrong password");
    let missing = guest
        .join_room("no-such-room", Some("nope"))
        .await
        .expect_err("missing");
    let no_password = guest
        .join_room("secret-base", None)
        .await
        .expect_err("no password");
    assert_eq!(wrong.code, ErrorCode::RoomUnavailable);
    assert_eq!(
        wrong, missing,
        "wrong password and missing room must be indistinguishable"
    );
    assert_eq!(no_password, missing);
    let snap = guest
        .join_room("secret-base", Some("hunter2"))
        .await
        .expect("right password");
    assert_eq!(snap.members.len(), 2);
}

#[tokio::test]
async fn password_rooms_reject_wrong_passwords() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut owner = RawClient::registered(&url, "owner", &test_key(0)).await;
    owner.create_room("club", Some("open sesame"), false).await;
    let mut guest = RawClient::registered(&url, "guest", &test_key(1)).await;
    let listing = list(&mut guest).await;
    assert!(listing.rooms[0].has_password);
    assert_eq!(
        guest
            .join_room("club", Some("open barley"))
            .await
            .expect_err("wrong")
            .code,
        ErrorCode::WrongPassword
    );
    assert_eq!(
        guest
            .join_room("club", None)
            .await
            .expect_err("missing")
            .code,
        ErrorCode::WrongPassword
    );
    guest
        .join_room("CLUB", Some("open sesame"))
        .await
        .expect("right password, any case");
    // Members come back without the password.
    guest
        .join_room("club", None)
        .await
        .expect("member re-joins freely");
}

#[tokio::test]
async fn duplicate_room_names_are_rejected_ignoring_case() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut c = RawClient::registered(&url, "owner", &test_key(0)).await;
    let mut other = RawClient::registered(&url, "other", &test_key(1)).await;
    c.create_room("General", None, false).await;
    let create_req = |name: &str, hidden: bool| {
        ClientMsg::CreateRoom(CreateRoom {
            name: room(name),
            password: None,
            hidden,
        })
    };
    let err = other
        .request(create_req("GENERAL", false))
        .await
        .expect_err("duplicate public name");
    assert_eq!(err.code, ErrorCode::RoomExists);
    // A hidden room lives in its own namespace: the name is free there, but the owner is
    // a member of a room of that name already.
    let err = c
        .request(create_req("general", true))
        .await
        .expect_err("the owner holds a general");
    assert_eq!(err.code, ErrorCode::InvalidState);
    other
        .request(create_req("general", true))
        .await
        .expect("a hidden general beside the public one");
}

#[tokio::test]
async fn joins_leaves_and_key_changes_are_broadcast() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut a = RawClient::registered(&url, "alice", &test_key(0)).await;
    a.create_room("team", None, false).await;
    let mut b = RawClient::registered(&url, "bob", &test_key(1)).await;
    let snap = b.join_room("team", None).await.expect("joins");
    let alice_info = snap
        .members
        .iter()
        .find(|m| m.username.as_str() == "alice")
        .expect("alice listed");
    assert_eq!(
        alice_info.public_key,
        public_der(&test_key(0)),
        "members come with their keys"
    );

    match a.next_push().await {
        Push::MemberJoined { room: r, member } => {
            assert_eq!(r.as_str(), "team");
            assert_eq!(member.username, name("bob"));
            assert_eq!(member.public_key, public_der(&test_key(1)));
            assert_eq!(
                member.fingerprint,
                shared::crypto::keys::Fingerprint::of_der(&member.public_key).to_string()
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // A non-member hears nothing of it.
    let mut outsider = RawClient::registered(&url, "mallory", &test_key(2)).await;

    // Bob rotates his key: Alice is told, with the new key.
    let new_key = test_key(3);
    let new_der = public_der(&new_key);
    b.request(ClientMsg::RotateKey(tests::rotation(
        "bob",
        &test_key(1),
        &new_key,
    )))
    .await
    .expect("rotated");
    match a.next_push().await {
        Push::KeyChanged { member, rooms } => {
            assert_eq!(member.username, name("bob"));
            assert_eq!(member.public_key, new_der);
            assert_eq!(rooms, vec![room("team")]);
        }
        other => panic!("unexpected {other:?}"),
    }

    // Bob leaves: Alice is told.
    b.request(ClientMsg::LeaveRoom(LeaveRoom { room: room("team") }))
        .await
        .expect("left");
    match a.next_push().await {
        Push::MemberLeft { room: r, username } => {
            assert_eq!(r.as_str(), "team");
            assert_eq!(username, name("bob"));
        }
        other => panic!("unexpected {other:?}"),
    }
    outsider.expect_silence(Duration::from_millis(300)).await;
    let err = b
        .request(ClientMsg::LeaveRoom(LeaveRoom { room: room("team") }))
        .await
        .expect_err("not a member any more");
    assert_eq!(err.code, ErrorCode::NotAMember);
}

#[tokio::test]
async fn a_key_rotation_needs_proof_by_the_old_and_the_new_key() {
    let server = TestServer::start().await;
    let mut b = RawClient::registered(&server.ws_url(), "bob", &test_key(1)).await;
    // Signed by a key that is not Bob's current one (what a server or thief without Bob's
    // key could make).
    let err = b
        .request(ClientMsg::RotateKey(tests::rotation(
            "bob",
            &test_key(4),
            &test_key(3),
        )))
        .await
        .expect_err("not endorsed by the current key");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    // The new key's signature forged: the endorsement is genuine, the possession proof not.
    let mut req = tests::rotation("bob", &test_key(1), &test_key(3));
    req.certificate.new_key_signature = tests::rotation("bob", &test_key(1), &test_key(4))
        .certificate
        .new_key_signature;
    let err = b
        .request(ClientMsg::RotateKey(req))
        .await
        .expect_err("forged proof of possession");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    // The old key still logs in.
    RawClient::logged_in(&server.ws_url(), "bob", &test_key(1)).await;
}

async fn list_page(
    c: &mut RawClient,
    after: Option<&str>,
    filter: Option<&str>,
    limit: u16,
) -> Result<shared::protocol::RoomList, tests::WireError> {
    c.request(ClientMsg::ListRooms(ListRooms {
        after: after.map(room),
        filter: filter.map(str::to_owned),
        limit,
    }))
    .await
    .map(|reply| match reply {
        Reply::Rooms(l) => l,
        other => panic!("unexpected {other:?}"),
    })
}

/// Walks every page of the listing with `limit` and `filter`; returns the names in order
/// and the number of pages.
async fn walk(c: &mut RawClient, filter: Option<&str>, limit: u16) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = list_page(c, after.as_deref(), filter, limit)
            .await
            .expect("list");
        pages += 1;
        assert!(page.rooms.len() <= usize::from(MAX_ROOM_LIST_PAGE));
        names.extend(page.rooms.iter().map(|r| r.name.as_str().to_owned()));
        match page.next_after {
            Some(next) => {
                assert_eq!(
                    page.rooms.last().map(|r| &r.name),
                    Some(&next),
                    "next_after is the page's last name"
                );
                after = Some(next.as_str().to_owned());
            }
            None => return (names, pages),
        }
        assert!(pages <= 200, "the listing does not end");
    }
}

#[tokio::test]
async fn the_room_list_pages_through_every_public_room_once() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut owner = RawClient::registered(&url, "owner", &test_key(0)).await;
    let public: Vec<String> = (0..usize::from(MAX_ROOM_LIST_PAGE) + 5)
        .map(|i| format!("Room-{i:03}"))
        .collect();
    let hidden = ["room-000a", "room-050-hidden", "zz-hidden"];
    // Pipelined: all requests first, then the answers in order.
    let mut requests = Vec::new();
    for (n, is_hidden) in public
        .iter()
        .map(|n| (n.as_str(), false))
        .chain(hidden.iter().map(|n| (*n, true)))
    {
        requests.push(
            owner
                .send(ClientMsg::CreateRoom(CreateRoom {
                    name: room(n),
                    password: None,
                    hidden: is_hidden,
                }))
                .await,
        );
    }
    for id in requests {
        owner.answer(id).await.expect("room created");
    }

    let mut guest = RawClient::registered(&url, "guest", &test_key(1)).await;
    // The default page is the cap; a larger limit is capped too.
    for limit in [0, u16::MAX] {
        let first = list_page(&mut guest, None, None, limit)
            .await
            .expect("list");
        assert_eq!(first.rooms.len(), usize::from(MAX_ROOM_LIST_PAGE));
        assert_eq!(
            first.next_after.as_ref().map(|n| n.as_str()),
            Some(public[usize::from(MAX_ROOM_LIST_PAGE) - 1].as_str())
        );
        assert_eq!(first.rooms[0].members, 1);
    }
    // Every public room exactly once, in order, no hidden one, whatever the page size.
    for (limit, pages) in [(0, 2), (40, 3), (7, 15)] {
        let (names, walked) = walk(&mut guest, None, limit).await;
        assert_eq!(names, public, "limit {limit}");
        assert_eq!(walked, pages, "limit {limit}");
    }

    // The filter ignores case and pages the same way.
    let tens: Vec<String> = (10..20).map(|i| format!("Room-{i:03}")).collect();
    assert_eq!(
        walk(&mut guest, Some("ROOM-01"), 0).await,
        (tens.clone(), 1)
    );
    assert_eq!(walk(&mut guest, Some("oom-01"), 3).await, (tens, 4));
    assert_eq!(
        walk(&mut guest, Some("hidden"), 0).await,
        (Vec::new(), 1),
        "hidden rooms match no filter"
    );
    let err = list_page(&mut guest, None, Some(&"x".repeat(49)), 0)
        .await
        .expect_err("filter too long");
    assert_eq!(err.code, ErrorCode::InvalidInput);
    list_page(&mut guest, None, Some(&"x".repeat(48)), 0)
        .await
        .expect("48 characters are allowed");
    server.shutdown().await;
}
