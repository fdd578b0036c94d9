//! Typing indicators and read markers.

use std::time::Duration;

use shared::protocol::{ClientMsg, MarkRead, Push, Reply, SetTyping};
use shared::ErrorCode;
use tests::{name, room, test_key, RawClient, TestServer};

const QUIET: Duration = Duration::from_millis(300);

async fn typing(c: &mut RawClient, r: &str, on: bool) -> Result<Reply, tests::WireError> {
    c.request(ClientMsg::SetTyping(SetTyping {
        room: room(r),
        typing: on,
    }))
    .await
}

async fn mark(c: &mut RawClient, r: &str, seq: u64) -> Result<Reply, tests::WireError> {
    c.request(ClientMsg::MarkRead(MarkRead { room: room(r), seq }))
        .await
}

#[tokio::test]
async fn typing_reaches_the_other_members_once_per_change() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut alice2 = RawClient::logged_in(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    let mut carol = RawClient::registered(&url, "carol", &test_key(2)).await;
    alice.create_room("den", None, false).await;
    bob.join_room("den", None).await.expect("joins");
    alice.drain().await;
    alice2.drain().await;
    // A flood of the same state is pushed once.
    for _ in 0..20 {
        assert_eq!(
            typing(&mut alice, "den", true).await.expect("typing"),
            Reply::Done
        );
    }
    let typing_push = Push::Typing {
        room: room("den"),
        username: name("alice"),
        typing: true,
    };
    assert_eq!(bob.next_push().await, typing_push);
    bob.expect_silence(QUIET).await;
    // Nothing goes to the typist's own sessions.
    alice2.expect_silence(QUIET).await;
    typing(&mut alice, "den", false).await.expect("stopped");
    assert_eq!(
        bob.next_push().await,
        Push::Typing {
            room: room("den"),
            username: name("alice"),
            typing: false
        }
    );
    assert_eq!(
        typing(&mut carol, "den", true)
            .await
            .expect_err("not a member")
            .code,
        ErrorCode::NotAMember
    );
    server.shutdown().await;
}

#[tokio::test]
async fn read_markers_follow_the_user_and_never_move_back() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let ka = test_key(0);
    let mut alice = RawClient::registered(&url, "alice", &ka).await;
    let mut alice2 = RawClient::logged_in(&url, "alice", &ka).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    alice.create_room("den", None, false).await;
    for text in ["one", "two", "three"] {
        alice
            .send_text("den", ("alice", &ka), &[("alice", &ka)], text)
            .await
            .expect("sent");
    }
    alice2.drain().await;
    assert_eq!(
        alice.join_room("den", None).await.expect("open").read_up_to,
        0
    );
    assert_eq!(
        mark(&mut alice, "den", 2).await.expect("marked"),
        Reply::Done
    );
    assert_eq!(
        alice2.next_push().await,
        Push::ReadUpTo {
            room: room("den"),
            seq: 2
        }
    );
    // Backwards is ignored, and nobody is told.
    mark(&mut alice, "den", 1).await.expect("ignored");
    alice2.expect_silence(QUIET).await;
    assert_eq!(
        alice2
            .join_room("den", None)
            .await
            .expect("open")
            .read_up_to,
        2
    );
    // Past the newest message it stops at the newest.
    mark(&mut alice2, "den", u64::MAX).await.expect("marked");
    assert_eq!(
        alice.next_push().await,
        Push::ReadUpTo {
            room: room("den"),
            seq: 3
        }
    );
    assert_eq!(
        mark(&mut bob, "den", 1)
            .await
            .expect_err("not a member")
            .code,
        ErrorCode::NotAMember
    );
    server.shutdown().await;
}
