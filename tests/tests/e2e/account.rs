//! Deleting an account.

use shared::protocol::{
    ClientMsg, DeleteAccount, FetchHistory, LoginStart, ModerationAction, Push, Register, Reply,
    Role, RoomChange, CLOSE_ACCOUNT_DELETED,
};
use shared::ErrorCode;
use tests::{name, public_der, room, test_key, RawClient, TestServer};

#[tokio::test]
async fn a_deleted_account_leaves_everything_and_its_name_stays_taken() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (ka, kb, kc) = (test_key(0), test_key(1), test_key(2));
    let mut alice = RawClient::registered(&url, "alice", &ka).await;
    let mut alice2 = RawClient::logged_in(&url, "alice", &ka).await;
    let mut bob = RawClient::registered(&url, "bob", &kb).await;
    let mut carol = RawClient::registered(&url, "carol", &kc).await;
    alice.create_room("den", None, false).await;
    alice.create_room("solo", None, false).await;
    bob.join_room("den", None).await.expect("joins");
    carol.join_room("den", None).await.expect("joins");
    alice
        .moderate(
            "den",
            ModerationAction::SetRole {
                user: name("carol"),
                role: Role::Admin,
            },
        )
        .await
        .expect("admin");
    alice
        .send_text(
            "den",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb), ("carol", &kc)],
            "bye",
        )
        .await
        .expect("sent");
    bob.drain().await;

    let wrong = alice
        .request(ClientMsg::DeleteAccount(DeleteAccount {
            confirm: name("bob"),
        }))
        .await;
    assert_eq!(wrong.expect_err("refused").code, ErrorCode::InvalidInput);
    let done = alice
        .request(ClientMsg::DeleteAccount(DeleteAccount {
            confirm: name("ALICE"),
        }))
        .await
        .expect("deleted");
    assert_eq!(done, Reply::AccountDeleted);
    assert_eq!(alice.close_code().await, Some(CLOSE_ACCOUNT_DELETED));
    assert_eq!(alice2.close_code().await, Some(CLOSE_ACCOUNT_DELETED));

    // The room passed to the admin, and everyone saw alice leave.
    let event = bob.next_room_event().await;
    assert_eq!(event.actor, name("alice"));
    assert_eq!(event.change, RoomChange::OwnerChanged { to: name("carol") });
    assert_eq!(
        bob.next_push_but_presence().await,
        Push::MemberLeft {
            room: room("den"),
            username: name("alice")
        }
    );
    // What alice sent stays in the others' history.
    match bob
        .request(ClientMsg::FetchHistory(FetchHistory {
            room: room("den"),
            before_seq: None,
            limit: 10,
        }))
        .await
        .expect("history")
    {
        Reply::History(page) => assert_eq!(page.messages.len(), 1),
        other => panic!("unexpected {other:?}"),
    }
    let snapshot = bob.join_room("den", None).await.expect("re-open");
    assert_eq!(snapshot.owner, name("carol"));
    assert_eq!(snapshot.members.len(), 2);
    // Her empty room went with her.
    assert_eq!(
        bob.join_room("solo", None).await.expect_err("gone").code,
        ErrorCode::RoomUnavailable
    );
    // The name cannot log in, nor be registered again.
    let mut again = RawClient::greeted(&url).await;
    let start = again
        .request(ClientMsg::LoginStart(LoginStart {
            username: name("alice"),
        }))
        .await;
    assert_eq!(start.expect_err("no account").code, ErrorCode::UnknownUser);
    let register = again
        .request(ClientMsg::Register(Register {
            username: name("Alice"),
            public_key: public_der(&test_key(3)),
        }))
        .await;
    assert_eq!(
        register.expect_err("reserved").code,
        ErrorCode::UsernameTaken
    );
    server.shutdown().await;
}
