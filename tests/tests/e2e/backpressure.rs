//! A client that reads too slowly: bounded in bytes, closed, and its socket released by
//! the server's own timer rather than by the kernel much later.

use std::time::Duration;

use server::config::Config;
use shared::protocol::{ClientMsg, ListRooms, Reply, SendMessage};
use tests::{seal_text, server_side_sockets, test_key, TestServer};

#[tokio::test]
async fn a_client_over_its_byte_budget_is_dropped_and_its_socket_released_at_once() {
    if !std::path::Path::new("/proc/net/tcp").exists() {
        eprintln!("SKIPPED: no /proc/net/tcp");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::for_tests(dir.path().to_path_buf());
    // A frame queue that never fills in this test: only the byte budget can stop the flood.
    config.outbound_queue = 100_000;
    config.outbound_budget_mb = 5;
    // Copies of 256 KiB fill the budget quickly; the size cap is not under test.
    config.max_message_bytes = 1 << 20;
    config.requests_per_sec = 10_000;
    // The kernel would release a stalled socket after three heartbeats: 30 s.
    config.heartbeat_secs = 10;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let (mut a, slow, r) = tests::sender_and_reader(&url, "firehose").await;
    let (port, peer) = (server.addr.port(), slow.local_port());
    let text = "x".repeat(256 * 1024);
    let mut dropped = false;
    for _ in 0..400 {
        let (id, envelopes) = seal_text(&r, "alice", &ka, &[("alice", &ka), ("slow", &kb)], &text);
        a.request(ClientMsg::SendMessage(SendMessage {
            room: r.clone(),
            message_id: id,
            envelopes,
        }))
        .await
        .expect("the sender is never blocked by a slow reader");
        if let Ok(Reply::Rooms(list)) = a.request(ClientMsg::ListRooms(ListRooms::default())).await
        {
            if list.users_online == 1 {
                dropped = true;
                break;
            }
        }
    }
    assert!(dropped, "the slow client was never dropped from delivery");
    // Its close cannot reach it; the server aborts the connection within a few seconds,
    // not after the kernel's 30.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while server_side_sockets(port, peer) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still holds the socket of a client that never reads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(slow);
}
