//! Direct conversations and blocking.

use std::time::Duration;

use shared::protocol::{
    direct_room_name, ClientMsg, JoinRoom, ListRooms, LoggedIn, ModerationAction, OpenDirect, Push,
    Reply, RoomKind, RoomSnapshot, SetBlocked,
};
use shared::ErrorCode;
use tests::{name, test_key, RawClient, TestServer};

async fn open(c: &mut RawClient, with: &str) -> Result<RoomSnapshot, tests::WireError> {
    c.request(ClientMsg::OpenDirect(OpenDirect {
        with: name(with),
        history_limit: 50,
    }))
    .await
    .map(|r| match r {
        Reply::Joined(s) => s,
        other => panic!("unexpected {other:?}"),
    })
}

async fn block(c: &mut RawClient, user: &str, blocked: bool) -> Result<Reply, tests::WireError> {
    c.request(ClientMsg::SetBlocked(SetBlocked {
        user: name(user),
        blocked,
    }))
    .await
}

#[tokio::test]
async fn two_users_hold_a_direct_conversation_nobody_else_can_enter() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let mut alice = RawClient::registered(&url, "alice", &ka).await;
    let mut bob = RawClient::registered(&url, "bob", &kb).await;
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;

    let snapshot = open(&mut alice, "Bob").await.expect("opened");
    let dm = direct_room_name(&name("alice"), &name("bob"));
    assert_eq!(snapshot.room, dm);
    assert_eq!(snapshot.kind, RoomKind::Direct { peer: name("bob") });
    assert_eq!(snapshot.members.len(), 2);
    match bob.next_push().await {
        Push::DirectOpened { room, peer } => {
            assert_eq!(room, dm);
            assert_eq!(peer.username, name("alice"));
        }
        other => panic!("expected DirectOpened, got {other:?}"),
    }
    // Opening again changes nothing and tells nobody.
    open(&mut alice, "bob").await.expect("again");
    bob.expect_silence(Duration::from_millis(300)).await;
    // The other side re-opens it by name, without a password.
    let theirs = bob
        .join_room(dm.as_str(), None)
        .await
        .expect("bob re-opens");
    assert_eq!(
        theirs.kind,
        RoomKind::Direct {
            peer: name("alice")
        }
    );
    alice
        .send_text(
            dm.as_str(),
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb)],
            "hi bob",
        )
        .await
        .expect("sent");
    match bob.next_push().await {
        Push::Message(m) => assert_eq!(m.room, dm),
        other => panic!("expected the message, got {other:?}"),
    }
    // Nobody else finds it, lists it, or creates its name.
    assert_eq!(
        carol
            .join_room(dm.as_str(), None)
            .await
            .expect_err("refused")
            .code,
        ErrorCode::RoomUnavailable
    );
    let listing = match carol
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
    {
        Ok(Reply::Rooms(l)) => l,
        other => panic!("unexpected {other:?}"),
    };
    assert!(listing.rooms.is_empty());
    let carols = open(&mut carol, "alice")
        .await
        .expect("carol's own conversation");
    assert_ne!(carols.room, dm);
    // Nobody moderates it.
    assert_eq!(
        alice
            .moderate(dm.as_str(), ModerationAction::Kick { user: name("bob") })
            .await
            .expect_err("refused")
            .code,
        ErrorCode::NotPermitted
    );
    assert_eq!(
        open(&mut alice, "alice").await.expect_err("self").code,
        ErrorCode::InvalidInput
    );
    assert_eq!(
        open(&mut alice, "nobody").await.expect_err("unknown").code,
        ErrorCode::UnknownUser
    );
    // A participant who left is added again when the other opens it.
    bob.request(ClientMsg::LeaveRoom(shared::protocol::LeaveRoom {
        room: dm.clone(),
    }))
    .await
    .expect("bob leaves");
    alice.drain().await;
    open(&mut alice, "bob").await.expect("re-opened");
    assert!(matches!(bob.next_push().await, Push::DirectOpened { .. }));
    server.shutdown().await;
}

#[tokio::test]
async fn blocking_ends_the_conversation_and_refuses_new_ones_but_not_groups() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let mut alice = RawClient::registered(&url, "alice", &ka).await;
    let mut bob = RawClient::registered(&url, "bob", &kb).await;
    bob.create_room("group", None, false).await;
    alice
        .join_room("group", None)
        .await
        .expect("joins the group");
    let dm = open(&mut alice, "bob").await.expect("opened").room;
    bob.drain().await;
    alice.drain().await;

    assert_eq!(
        block(&mut bob, "Alice", true).await.expect("blocked"),
        Reply::Done
    );
    assert_eq!(
        alice.next_push().await,
        Push::MemberLeft {
            room: dm.clone(),
            username: name("bob")
        }
    );
    assert_eq!(
        open(&mut alice, "bob").await.expect_err("blocked").code,
        ErrorCode::NotPermitted
    );
    // The block list comes with the next login.
    let relogged = {
        let mut c = RawClient::greeted(&url).await;
        match c.login("bob", &kb).await.expect("login") {
            Reply::LoggedIn(LoggedIn { blocked, .. }) => blocked,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(relogged, [name("alice")]);
    // Group rooms are untouched.
    alice
        .send_text(
            "group",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb)],
            "still here",
        )
        .await
        .expect("group messages go on");
    // Refusals.
    assert_eq!(
        block(&mut bob, "bob", true).await.expect_err("self").code,
        ErrorCode::InvalidInput
    );
    assert_eq!(
        block(&mut bob, "nobody", true)
            .await
            .expect_err("unknown")
            .code,
        ErrorCode::UnknownUser
    );
    // Unblocking lets the conversation be opened again; bob is added back.
    block(&mut bob, "alice", false).await.expect("unblocked");
    open(&mut alice, "bob").await.expect("opened again");
    loop {
        match bob.next_push().await {
            Push::DirectOpened { room, .. } => {
                assert_eq!(room, dm);
                break;
            }
            Push::Message(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    bob.request(ClientMsg::JoinRoom(JoinRoom {
        name: dm,
        password: None,
        history_limit: 10,
    }))
    .await
    .expect("a member again");
    server.shutdown().await;
}
