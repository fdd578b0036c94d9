//! Registration and challenge-response login.

use std::time::Duration;

use server::config::Config;
use shared::protocol::{ClientMsg, Hello, ListRooms, LoginProof, Reply};
use shared::ErrorCode;
use tests::{name, test_key, RawClient, TestServer};

#[tokio::test]
async fn register_then_login() {
    let server = TestServer::start().await;
    let mut c = RawClient::greeted(&server.ws_url()).await;
    let reply = c.register("Alice", &test_key(0)).await.expect("registers");
    assert_eq!(
        reply,
        Reply::Registered(shared::protocol::Registered {
            username: name("Alice")
        })
    );
    match c.login("alice", &test_key(0)).await.expect("logs in") {
        Reply::LoggedIn(l) => {
            assert_eq!(l.username.as_str(), "Alice", "display case is kept");
            assert!(l.rooms.is_empty());
        }
        other => panic!("unexpected {other:?}"),
    }
    // Logged in: room requests now work.
    assert!(matches!(
        c.request(ClientMsg::ListRooms(ListRooms::default())).await,
        Ok(Reply::Rooms(_))
    ));
}

#[tokio::test]
async fn duplicate_username_is_rejected_and_the_account_untouched() {
    let server = TestServer::start().await;
    let mut c = RawClient::greeted(&server.ws_url()).await;
    c.register("bob", &test_key(1)).await.expect("registers");
    let mut other = RawClient::greeted(&server.ws_url()).await;
    let err = other
        .register("BOB", &test_key(2))
        .await
        .expect_err("duplicate");
    assert_eq!(err.code, ErrorCode::UsernameTaken);
    // The original key still logs in; the intruder's key does not.
    let mut again = RawClient::greeted(&server.ws_url()).await;
    assert_eq!(
        again
            .login("bob", &test_key(2))
            .await
            .expect_err("wrong key")
            .code,
        ErrorCode::AuthFailed
    );
    let mut owner = RawClient::greeted(&server.ws_url()).await;
    owner
        .login("bob", &test_key(1))
        .await
        .expect("original key works");
}

#[tokio::test]
async fn a_signature_by_another_key_is_rejected() {
    let server = TestServer::start().await;
    RawClient::registered(&server.ws_url(), "carol", &test_key(3)).await;
    let mut c = RawClient::greeted(&server.ws_url()).await;
    let err = c.login("carol", &test_key(4)).await.expect_err("forged");
    assert_eq!(err.code, ErrorCode::AuthFailed);
    // Still not logged in.
    let err = c
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
        .expect_err("anon");
    assert_eq!(err.code, ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn a_replayed_proof_is_rejected() {
    let server = TestServer::start().await;
    let key = test_key(5);
    RawClient::registered(&server.ws_url(), "dave", &key).await;

    // A legitimate login whose proof an eavesdropper records.
    let mut first = RawClient::greeted(&server.ws_url()).await;
    let nonce = first.challenge("dave").await.expect("challenge");
    let proof = shared::crypto::signing::sign_login(&key, &name("dave"), &nonce, &first.server_id);
    first
        .request(ClientMsg::LoginProof(LoginProof {
            signature: proof.clone(),
        }))
        .await
        .expect("genuine proof accepted");

    // Replayed against a fresh challenge on another connection.
    let mut replay = RawClient::greeted(&server.ws_url()).await;
    let _fresh = replay.challenge("dave").await.expect("challenge");
    let err = replay
        .request(ClientMsg::LoginProof(LoginProof {
            signature: proof.clone(),
        }))
        .await
        .expect_err("replay");
    assert_eq!(err.code, ErrorCode::AuthFailed);

    // And a second use of one challenge is refused even with a valid proof: it is consumed.
    let mut twice = RawClient::greeted(&server.ws_url()).await;
    let nonce = twice.challenge("dave").await.expect("challenge");
    let server_id = twice.server_id;
    let bad = shared::crypto::signing::sign_login(&test_key(6), &name("dave"), &nonce, &server_id);
    let good = shared::crypto::signing::sign_login(&key, &name("dave"), &nonce, &server_id);
    twice
        .request(ClientMsg::LoginProof(LoginProof { signature: bad }))
        .await
        .expect_err("bad proof");
    let err = twice
        .request(ClientMsg::LoginProof(LoginProof { signature: good }))
        .await
        .expect_err("challenge consumed");
    assert_eq!(err.code, ErrorCode::AuthFailed);
}

#[tokio::test]
async fn an_expired_challenge_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_tests(dir.path().to_path_buf());
    config.challenge_ttl_secs = 1;
    let server = TestServer::start_with(config).await;
    let key = test_key(7);
    RawClient::registered(&server.ws_url(), "erin", &key).await;
    let mut c = RawClient::greeted(&server.ws_url()).await;
    let nonce = c.challenge("erin").await.expect("challenge");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let proof = shared::crypto::signing::sign_login(&key, &name("erin"), &nonce, &c.server_id);
    let err = c
        .request(ClientMsg::LoginProof(LoginProof { signature: proof }))
        .await
        .expect_err("expired");
    assert_eq!(err.code, ErrorCode::ChallengeExpired);
}

#[tokio::test]
async fn nothing_but_register_and_login_before_login() {
    let server = TestServer::start().await;
    let mut c = RawClient::greeted(&server.ws_url()).await;
    for msg in [
        ClientMsg::ListRooms(ListRooms::default()),
        ClientMsg::CreateRoom(shared::protocol::CreateRoom {
            name: tests::room("r"),
            password: None,
            hidden: false,
        }),
        ClientMsg::FetchHistory(shared::protocol::FetchHistory {
            room: tests::room("r"),
            before_seq: None,
            limit: 10,
        }),
    ] {
        let err = c.request(msg).await.expect_err("refused before login");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
    }
    // A proof without a challenge is not a login either.
    let err = c
        .request(ClientMsg::LoginProof(LoginProof {
            signature: vec![1, 2, 3],
        }))
        .await
        .expect_err("no challenge");
    assert_eq!(err.code, ErrorCode::AuthFailed);
}

#[tokio::test]
async fn hello_must_come_first_and_match_the_version() {
    let server = TestServer::start().await;
    let mut c = RawClient::connect(&server.ws_url()).await;
    let err = c
        .request(ClientMsg::ListRooms(ListRooms::default()))
        .await
        .expect_err("no hello");
    assert_eq!(err.code, ErrorCode::ProtocolVersion);
    assert_eq!(c.close_code().await, Some(1002));

    let mut c = RawClient::connect(&server.ws_url()).await;
    let err = c
        .request(ClientMsg::Hello(Hello {
            protocol_version: 99,
            client: "future".into(),
        }))
        .await
        .expect_err("version mismatch");
    assert_eq!(err.code, ErrorCode::ProtocolVersion);
    assert!(err.message.contains("99"), "{}", err.message);
}

#[tokio::test]
async fn unknown_users_and_bad_keys_get_typed_errors() {
    let server = TestServer::start().await;
    let mut c = RawClient::greeted(&server.ws_url()).await;
    assert_eq!(
        c.challenge("nobody").await.expect_err("unknown").code,
        ErrorCode::UnknownUser
    );
    let err = c
        .request(ClientMsg::Register(shared::protocol::Register {
            username: name("frank"),
            public_key: b"not a key".to_vec(),
        }))
        .await
        .expect_err("bad key");
    assert_eq!(err.code, ErrorCode::InvalidInput);
}
