//! The server id: announced in `HelloAck`, fixed when the store is created, and signed by
//! every login proof, so a proof made for one server fails on another.

use server::config::Config;
use shared::crypto::signing;
use shared::protocol::{ClientMsg, LoginProof, Reply};
use shared::ErrorCode;
use tests::{name, test_key, RawClient, TestServer};

/// A server that relays another server's challenge to its own client gets a proof signed
/// for itself, which the other server refuses; the proof made for the other server works.
#[tokio::test]
async fn a_login_proof_relayed_between_two_servers_fails() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let key = test_key(0);
    // The same account, with the same key, on both servers.
    for server in [&a, &b] {
        let mut c = RawClient::greeted(&server.ws_url()).await;
        c.register("alice", &key).await.expect("registers");
    }
    let b_id = RawClient::greeted(&b.ws_url()).await.server_id;

    let mut at_a = RawClient::greeted(&a.ws_url()).await;
    assert_ne!(at_a.server_id, b_id, "two servers, two ids");
    // B, posing as A to Alice, forwards A's challenge; Alice signs it for B, the server
    // she thinks she talks to, and B submits that proof to A.
    let nonce = at_a.challenge("alice").await.expect("challenge");
    let relayed = signing::sign_login(&key, &name("alice"), &nonce, &b_id);
    let err = at_a
        .request(ClientMsg::LoginProof(LoginProof { signature: relayed }))
        .await
        .expect_err("a proof made for B does not log in at A");
    assert_eq!(err.code, ErrorCode::AuthFailed);

    // The same key, signing A's id on a fresh challenge, does log in: the refusal above
    // was the server id, nothing else.
    let nonce = at_a.challenge("alice").await.expect("challenge");
    let direct = signing::sign_login(&key, &name("alice"), &nonce, &at_a.server_id);
    let reply = at_a
        .request(ClientMsg::LoginProof(LoginProof { signature: direct }))
        .await
        .expect("a proof made for A logs in at A");
    assert!(matches!(reply, Reply::LoggedIn(_)), "{reply:?}");
    a.shutdown().await;
    b.shutdown().await;
}

/// The id comes from the store: a restart on the same data keeps it (and old proofs'
/// meaning), another store has another.
#[tokio::test]
async fn the_server_id_survives_a_restart_and_differs_between_servers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || Config::for_tests(dir.path().to_path_buf());
    let first = TestServer::start_with(config()).await;
    let mut c = RawClient::greeted(&first.ws_url()).await;
    let id = c.server_id;
    assert_ne!(id.0, [0; 16]);
    c.register("alice", &test_key(0)).await.expect("registers");
    first.shutdown().await;

    let restarted = TestServer::start_with(config()).await;
    let mut c = RawClient::greeted(&restarted.ws_url()).await;
    assert_eq!(c.server_id, id, "the same store, the same id");
    c.login("alice", &test_key(0))
        .await
        .expect("a proof for the kept id logs in");

    let other = TestServer::start().await;
    assert_ne!(RawClient::greeted(&other.ws_url()).await.server_id, id);
    other.shutdown().await;
    restarted.shutdown().await;
}
