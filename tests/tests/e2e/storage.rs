//! A disk that fails: every answer says what is really stored, `/health` reports the
//! outage and recovers by itself, and the history after a restart holds exactly the
//! messages that were answered `Sent`.

use std::sync::Arc;
use std::time::Duration;

use server::config::Config;
use server::store::embedded::EmbeddedStore;
use server::store::faults::FaultyDisk;
use shared::protocol::{ClientMsg, CreateRoom, Register, Reply, SendMessage};
use shared::{ErrorCode, MessageId, RoomName};
use tests::{name, public_der, room, seal_text, test_key, RawClient, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The status line and body of `GET /health`.
async fn health(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let mut out = String::new();
    tokio::time::timeout(tests::WAIT, s.read_to_string(&mut out))
        .await
        .expect("answers in time")
        .expect("reads");
    out
}

/// Polls `/health` until its answer starts with `status` (e.g. "HTTP/1.1 503").
async fn health_becomes(addr: std::net::SocketAddr, status: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = health(addr).await;
        if answer.starts_with(status) {
            return answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health never answered {status}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alice's message `text` to room `r`, where she is alone.
fn say(r: &RoomName, text: &str) -> (MessageId, ClientMsg) {
    let key = test_key(0);
    let (id, envelopes) = seal_text(r, "alice", &key, &[("alice", &key)], text);
    (
        id,
        ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }),
    )
}

#[tokio::test]
async fn a_failing_disk_is_answered_honestly_and_health_recovers_by_itself() {
    if tests::e2e_uses_mongo() {
        eprintln!("SKIPPED: the fault-injected disk is the embedded store's");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = FaultyDisk::new();
    let store = EmbeddedStore::open_on(dir.path(), disk.clone()).expect("store opens");
    let server =
        TestServer::start_with_store(Config::for_tests(dir.path().to_path_buf()), Arc::new(store))
            .await;
    let url = server.ws_url();
    let mut a = RawClient::registered(&url, "alice", &test_key(0)).await;
    let r = room("disk");
    a.request(ClientMsg::CreateRoom(CreateRoom {
        name: r.clone(),
        password: None,
        hidden: false,
    }))
    .await
    .expect("created");
    let mut stored = Vec::new();
    let (id, msg) = say(&r, "before");
    a.request(msg).await.expect("sent");
    stored.push(id);

    // A commit that redb reports as failed but that is on disk is a success.
    disk.fail_next_commit_after_it_is_durable();
    let (id, msg) = say(&r, "durable although reported failed");
    let answer = a.request(msg).await;
    assert_eq!(disk.injected(), 1, "the fault fired");
    assert!(matches!(answer, Ok(Reply::Sent(_))), "{answer:?}");
    stored.push(id);
    health_becomes(server.addr, "HTTP/1.1 200").await;

    // A full disk: the send in flight is not stored, and says so once that is known.
    disk.fill();
    let (_, msg) = say(&r, "lost to a full disk");
    let in_flight = a.send(msg).await;
    let outage = health_becomes(server.addr, "HTTP/1.1 503").await;
    assert!(outage.contains(r#""reason":"storage_full""#), "{outage}");
    // Meanwhile every write is refused at once, in plain words.
    let (_, msg) = say(&r, "refused at once");
    let refused = a.request(msg).await.expect_err("refused");
    assert_eq!(refused.code, ErrorCode::StorageUnavailable);
    assert!(refused.message.contains("storage"), "{}", refused.message);
    let refused = a
        .request(ClientMsg::CreateRoom(CreateRoom {
            name: room("another"),
            password: None,
            hidden: false,
        }))
        .await
        .expect_err("refused");
    assert_eq!(refused.code, ErrorCode::StorageUnavailable);
    let mut b = RawClient::greeted(&url).await;
    let refused = b
        .request(ClientMsg::Register(Register {
            username: name("bob"),
            public_key: public_der(&test_key(1)),
        }))
        .await
        .expect_err("refused");
    assert_eq!(refused.code, ErrorCode::StorageUnavailable);

    // Space comes back: the store finds out by itself, and the send in flight is answered.
    disk.free();
    let answer = a.answer(in_flight).await.expect_err("not stored");
    assert_eq!(answer.code, ErrorCode::StorageUnavailable);
    health_becomes(server.addr, "HTTP/1.1 200").await;
    let (id, msg) = say(&r, "after");
    a.request(msg).await.expect("sent once the disk has room");
    stored.push(id);

    // After a restart, the history holds exactly the messages answered `Sent`.
    drop(a);
    let dir_guard = server.shutdown().await;
    drop(dir_guard);
    let server = TestServer::start_with(Config::for_tests(dir.path().to_path_buf())).await;
    let mut a = RawClient::logged_in(&server.ws_url(), "alice", &test_key(0)).await;
    let ids = tests::history_ids(&mut a, &r).await;
    assert_eq!(ids, stored);
    server.shutdown().await;
}
