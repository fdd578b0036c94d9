//! Stopping the server (SIGTERM): every request already read is answered before the 1001
//! close, and a client that stopped reading cannot hold the shutdown.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use server::config::Config;
use server::store::embedded::EmbeddedStore;
use server::store::faults::FaultyDisk;
use shared::protocol::{ClientMsg, CreateRoom, Reply, SendMessage, ServerMsg};
use shared::MessageId;
use tests::{room, seal_text, test_key, RawClient, TestServer};

#[tokio::test]
async fn sends_in_flight_at_shutdown_are_all_answered_and_stored() {
    if tests::e2e_uses_mongo() {
        eprintln!("SKIPPED: the slow disk is the embedded store's");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Large copies keep the disk busy; the size cap is not under test.
    let config = || Config {
        max_message_bytes: 1 << 20,
        ..Config::for_tests(dir.path().to_path_buf())
    };
    // A slow disk keeps the sends in flight when the stop comes.
    let disk = FaultyDisk::new();
    let store = EmbeddedStore::open_on(dir.path(), disk.clone()).expect("store opens");
    let server = TestServer::start_with_store(config(), Arc::new(store)).await;
    let key = test_key(0);
    let mut a = RawClient::registered(&server.ws_url(), "alice", &key).await;
    let r = room("last-words");
    a.request(ClientMsg::CreateRoom(CreateRoom {
        name: r.clone(),
        password: None,
        hidden: false,
    }))
    .await
    .expect("created");
    let text = "x".repeat(64 * 1024);
    let sends: Vec<ClientMsg> = (0..8)
        .map(|_| {
            let (id, envelopes) = seal_text(&r, "alice", &key, &[("alice", &key)], &text);
            ClientMsg::SendMessage(SendMessage {
                room: r.clone(),
                message_id: id,
                envelopes,
            })
        })
        .collect();
    // Pipelined: all of them on the wire, then the server is told to stop while they wait
    // for their commits.
    disk.slow_syncs(Duration::from_millis(300));
    for send in sends {
        a.send(send).await;
    }
    let stopper = server.stopper();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = tokio::spawn(async move { stopper.stop().await });
    let mut sent = BTreeSet::new();
    loop {
        match a.next_frame().await {
            Some(ServerMsg::Reply {
                reply: Reply::Sent(ack),
                ..
            }) => {
                sent.insert(ack.message_id);
            }
            None => break,
            Some(other) => panic!("every send read is answered Sent, got {other:?}"),
        }
    }
    stop.await.expect("stopped");
    assert!(!sent.is_empty(), "sends were answered");
    server.shutdown().await;

    let server = TestServer::start_with(config()).await;
    let mut a = RawClient::logged_in(&server.ws_url(), "alice", &key).await;
    let stored: BTreeSet<MessageId> = tests::history_ids(&mut a, &r).await.into_iter().collect();
    assert_eq!(
        stored, sent,
        "exactly the messages answered Sent are stored: none unanswered"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stopped_reading_does_not_hold_the_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_tests(dir.path().to_path_buf());
    config.shutdown_grace_secs = 25;
    config.outbound_budget_mb = 256;
    config.max_message_bytes = 1 << 20;
    config.requests_per_sec = 10_000;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let (mut a, slow, r) = tests::sender_and_reader(&url, "backlog").await;
    // `slow` reads nothing from now on, while far more than the socket buffers hold is
    // pushed to it (within its budget, so it is not dropped for that).
    let text = "x".repeat(256 * 1024);
    for _ in 0..80 {
        let (id, envelopes) = seal_text(&r, "alice", &ka, &[("alice", &ka), ("slow", &kb)], &text);
        a.request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect("sent");
    }
    let started = Instant::now();
    server.stopper().stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "shutdown took {took:?}: the stalled client held it (the grace is 25 s)"
    );
    drop(slow);
    server.shutdown().await;
}
