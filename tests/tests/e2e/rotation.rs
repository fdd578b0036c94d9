//! Key rotation: certificates, the stored chain, and what a rotation does to the user's
//! other sessions and to logins with the retired key.

use shared::crypto::keys::Fingerprint;
use shared::crypto::rotation::{follow_chain, CounterMark, RotationCertificate};
use shared::protocol::{
    ClientMsg, GetKeyHistory, KeyHistory, ListRooms, LoginProof, Push, Reply, RotateKey,
    CLOSE_KEY_ROTATED, MAX_ROTATION_MARKS,
};
use shared::{DeviceId, ErrorCode};
use tests::{name, public_der, room, rotation, test_key, RawClient, TestServer};

async fn key_history(c: &mut RawClient, user: &str) -> Result<KeyHistory, tests::WireError> {
    c.request(ClientMsg::GetKeyHistory(GetKeyHistory {
        username: name(user),
    }))
    .await
    .map(|reply| match reply {
        Reply::KeyHistory(h) => h,
        other => panic!("expected a key history, got {other:?}"),
    })
}

fn fingerprint(key: &shared::crypto::RsaPrivateKey) -> Fingerprint {
    Fingerprint::of_der(&public_der(key))
}

#[tokio::test]
async fn the_key_history_is_a_verifiable_chain_from_the_first_key() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (k0, k1, k2) = (test_key(0), test_key(1), test_key(2));
    let mut alice = RawClient::registered(&url, "Alice", &k0).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(5)).await;
    assert!(key_history(&mut bob, "alice")
        .await
        .expect("history")
        .certificates
        .is_empty());

    for (old, new) in [(&k0, &k1), (&k1, &k2)] {
        let reply = alice
            .request(ClientMsg::RotateKey(rotation("Alice", old, new)))
            .await
            .expect("rotated");
        assert_eq!(
            reply,
            Reply::KeyRotated(shared::protocol::KeyRotated {
                fingerprint: fingerprint(new).to_string()
            })
        );
    }

    // Anyone may fetch it; it comes oldest first.
    let history = key_history(&mut bob, "ALICE").await.expect("history");
    assert_eq!(history.username.as_str(), "Alice");
    let steps: Vec<(Fingerprint, Fingerprint)> = history
        .certificates
        .iter()
        .map(|c| (c.old_fingerprint(), c.new_fingerprint()))
        .collect();
    assert_eq!(
        steps,
        [
            (fingerprint(&k0), fingerprint(&k1)),
            (fingerprint(&k1), fingerprint(&k2))
        ]
    );
    // A peer that pinned the first key reaches the current one through verified steps.
    let path = follow_chain(
        &name("alice"),
        &fingerprint(&k0),
        &fingerprint(&k2),
        &history.certificates,
    )
    .expect("the chain leads from the first key to the current one");
    assert_eq!(path.len(), 2);
    match bob
        .request(ClientMsg::GetUserKey(shared::protocol::GetUserKey {
            username: name("alice"),
        }))
        .await
        .expect("key")
    {
        Reply::UserKey(info) => assert_eq!(info.public_key, public_der(&k2)),
        other => panic!("unexpected {other:?}"),
    }
    let err = key_history(&mut bob, "nobody")
        .await
        .expect_err("no such user");
    assert_eq!(err.code, ErrorCode::UnknownUser);
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotation_must_retire_the_current_key_and_stay_bounded() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (k0, k1) = (test_key(0), test_key(1));
    let mut alice = RawClient::registered(&url, "alice", &k0).await;
    alice
        .request(ClientMsg::RotateKey(rotation("alice", &k0, &k1)))
        .await
        .expect("rotated");
    // The same hand-over again: its old key is no longer current.
    let err = alice
        .request(ClientMsg::RotateKey(rotation("alice", &k0, &test_key(2))))
        .await
        .expect_err("the old key is retired");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    // A certificate for another user, even if genuinely signed by the current key.
    let err = alice
        .request(ClientMsg::RotateKey(rotation("mallory", &k1, &test_key(2))))
        .await
        .expect_err("another user's certificate");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    // More counter marks than a certificate may carry.
    let marks = (0..=MAX_ROTATION_MARKS)
        .map(|i| CounterMark {
            room: room(&format!("r{i}")),
            device: DeviceId([1; 16]),
            last_counter: 1,
        })
        .collect();
    let oversized =
        RotationCertificate::issue(&name("alice"), &k1, &test_key(2), 0, marks).expect("issues");
    let err = alice
        .request(ClientMsg::RotateKey(RotateKey {
            certificate: oversized,
        }))
        .await
        .expect_err("too many marks");
    assert_eq!(err.code, ErrorCode::InvalidInput);

    let history = key_history(&mut alice, "alice").await.expect("history");
    assert_eq!(
        history.certificates.len(),
        1,
        "refused rotations left no trace"
    );
    assert_eq!(history.certificates[0].new_public_key, public_der(&k1));
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotation_closes_the_users_other_sessions_and_retires_the_old_key() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let (k0, k1) = (test_key(0), test_key(1));
    let mut rotating = RawClient::registered(&url, "alice", &k0).await;
    let mut other = RawClient::logged_in(&url, "alice", &k0).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(5)).await;
    rotating
        .request(ClientMsg::CreateRoom(shared::protocol::CreateRoom {
            name: room("shared"),
            password: None,
            hidden: false,
        }))
        .await
        .expect("created");
    bob.request(ClientMsg::JoinRoom(shared::protocol::JoinRoom {
        name: room("shared"),
        password: None,
        history_limit: 0,
    }))
    .await
    .expect("joined");
    // A login begun with the old key before the rotation, finished after it.
    let mut late = RawClient::greeted(&url).await;
    let nonce = late.challenge("alice").await.expect("challenge");

    rotating
        .request(ClientMsg::RotateKey(rotation("alice", &k0, &k1)))
        .await
        .expect("rotated");

    assert_eq!(
        other.close_code().await,
        Some(CLOSE_KEY_ROTATED),
        "the other session is closed with 4001"
    );
    // Bob, who shares a room, is told about the new key.
    loop {
        match bob.next_push().await {
            Push::KeyChanged { member, rooms } => {
                assert_eq!(member.username, name("alice"));
                assert_eq!(member.public_key, public_der(&k1));
                assert_eq!(rooms, [room("shared")]);
                break;
            }
            Push::MemberJoined { .. } => continue,
            push => panic!("unexpected {push:?}"),
        }
    }
    // The rotating session carries on.
    assert!(matches!(
        rotating
            .request(ClientMsg::ListRooms(ListRooms::default()))
            .await,
        Ok(Reply::Rooms(_))
    ));

    // The retired key no longer logs in, neither on a challenge issued before the
    // rotation nor on a fresh one.
    let signature =
        shared::crypto::signing::sign_login(&k0, &name("alice"), &nonce, &late.server_id);
    let err = late
        .request(ClientMsg::LoginProof(LoginProof { signature }))
        .await
        .expect_err("a proof by the retired key");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    let mut fresh = RawClient::greeted(&url).await;
    let err = fresh
        .login("alice", &k0)
        .await
        .expect_err("the retired key");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    fresh
        .login("alice", &k1)
        .await
        .expect("the new key logs in");
    server.shutdown().await;
}
