//! Bad input, slow or dead peers, health and shutdown.

use std::time::Duration;

use shared::protocol::{
    codec, ClientFrame, ClientMsg, ListRooms, Reply, ServerMsg, MAX_FRAME_BYTES,
};
use shared::{ErrorCode, RequestId};
use tests::{server_side_sockets, test_key, RawClient, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_goes_on() {
    let server = TestServer::start().await;
    let mut c = RawClient::registered(&server.ws_url(), "alice", &test_key(0)).await;
    // Garbage.
    c.send_raw(vec![0xff, 0xfe, 0xfd, 0x00, 0x13]).await;
    match c.next_frame().await {
        Some(ServerMsg::Error {
            request_id: None,
            code: ErrorCode::MalformedFrame,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    // A valid frame with a trailing byte.
    let mut bytes = codec::encode_client(&ClientFrame {
        request_id: RequestId(77),
        msg: ClientMsg::ListRooms(ListRooms::default()),
    })
    .expect("encodes");
    bytes.push(0);
    c.send_raw(bytes).await;
    match c.next_frame().await {
        Some(ServerMsg::Error {
            code: ErrorCode::MalformedFrame,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
    // The same connection still works.
    assert!(matches!(
        c.request(ClientMsg::ListRooms(ListRooms::default())).await,
        Ok(Reply::Rooms(_))
    ));
}

#[tokio::test]
async fn oversized_frames_are_refused_and_others_are_still_served() {
    let server = TestServer::start().await;
    let url = server.ws_url();
    let mut bystander = RawClient::registered(&url, "bob", &test_key(1)).await;
    let mut c = RawClient::registered(&url, "alice", &test_key(0)).await;
    c.send_raw(vec![0u8; MAX_FRAME_BYTES + 1024]).await;
    // An error frame, then a close (the stream cannot be resynchronised after an overflow).
    match c.next_frame().await {
        Some(ServerMsg::Error {
            code: ErrorCode::FrameTooLarge,
            ..
        })
        | None => {}
        other => panic!("unexpected {other:?}"),
    }
    // Everyone else is served as before.
    assert!(matches!(
        bystander
            .request(ClientMsg::ListRooms(ListRooms::default()))
            .await,
        Ok(Reply::Rooms(_))
    ));
    let mut fresh = RawClient::greeted(&url).await;
    fresh
        .login("alice", &test_key(0))
        .await
        .expect("server still accepts logins");
}

#[tokio::test]
async fn text_frames_are_refused() {
    use futures_util::SinkExt;
    let server = TestServer::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("connects");
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        "{\"hello\":1}",
    ))
    .await
    .expect("sent");
    use futures_util::StreamExt;
    let frame = tokio::time::timeout(tests::WAIT, ws.next())
        .await
        .expect("reply in time");
    let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(b))) = frame else {
        panic!("expected a binary error frame, got {frame:?}")
    };
    assert!(matches!(
        codec::decode_server(&b),
        Ok(ServerMsg::Error {
            code: ErrorCode::MalformedFrame,
            ..
        })
    ));
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("writes");
    let mut out = String::new();
    tokio::time::timeout(tests::WAIT, s.read_to_string(&mut out))
        .await
        .expect("answers in time")
        .expect("reads");
    out
}

#[tokio::test]
async fn health_reports_the_store() {
    let server = TestServer::start().await;
    let response = http_get(server.addr, "/health").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let store = format!(r#""store":"{}""#, server.store_backend());
    assert!(response.contains(&store), "{response}");
}

#[tokio::test]
async fn shutdown_tells_clients_the_server_is_going_away() {
    let server = TestServer::start().await;
    let mut c = RawClient::registered(&server.ws_url(), "alice", &test_key(0)).await;
    let stopper = server.stopper();
    let stop = tokio::spawn(async move { stopper.stop().await });
    assert_eq!(
        c.close_code().await,
        Some(1001),
        "clients get 1001 going away"
    );
    tokio::time::timeout(Duration::from_secs(30), stop)
        .await
        .expect("drains within Heroku's 30 s")
        .expect("stop task");
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting connections"
    );
}

#[tokio::test]
async fn a_flooding_connection_is_rate_limited_but_not_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config::Config::for_tests(dir.path().to_path_buf());
    config.requests_per_sec = 5;
    let server = TestServer::start_with(config).await;
    let mut c = RawClient::registered(&server.ws_url(), "alice", &test_key(0)).await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(c.send(ClientMsg::ListRooms(ListRooms::default())).await);
    }
    let mut limited = 0;
    for id in ids {
        match c.answer(id).await {
            Ok(Reply::Rooms(_)) => {}
            Err(e) if e.code == ErrorCode::RateLimited => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(limited >= 20, "only {limited} of 40 requests were limited");
    // After a pause the connection is served again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(
        c.request(ClientMsg::ListRooms(ListRooms::default())).await,
        Ok(Reply::Rooms(_))
    ));
}

#[tokio::test]
async fn keepalive_drops_silent_peers_and_keeps_live_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config::Config::for_tests(dir.path().to_path_buf());
    config.heartbeat_secs = 1;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url();
    // A live client keeps reading, so its WebSocket library answers every ping.
    let mut live = RawClient::registered(&url, "alice", &test_key(0)).await;
    // A dead one never reads again: no pongs, no frames.
    let mut dead = RawClient::registered(&url, "bob", &test_key(1)).await;
    live.expect_silence(Duration::from_millis(4500)).await;
    assert!(matches!(
        live.request(ClientMsg::ListRooms(ListRooms::default()))
            .await,
        Ok(Reply::Rooms(_))
    ));
    // The dead peer was closed by the server after three silent intervals.
    assert_eq!(dead.close_code().await, Some(1000));
}

/// A server whose slow client has just been dropped by the hub.
struct Firehose {
    _dir: tempfile::TempDir,
    server: TestServer,
    _alice: RawClient,
    slow: RawClient,
}

/// A server with 16-frame outbound queues and a `heartbeat_secs` heartbeat; alice and
/// `slow` in room "firehose". `slow` then stops reading while alice sends 256 kB messages
/// until the hub drops `slow` as too slow (alice sees one user online), which the server
/// must do rather than buffer without limit.
async fn flood_a_client_that_stopped_reading(heartbeat_secs: u64) -> Firehose {
    use shared::protocol::SendMessage;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config::Config::for_tests(dir.path().to_path_buf());
    config.outbound_queue = 16;
    config.requests_per_sec = 10_000;
    config.inbound_kib_per_sec = 1 << 20;
    config.heartbeat_secs = heartbeat_secs;
    // Large copies fill the queue in few frames.
    config.max_message_bytes = 512 * 1024;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let (mut a, slow, r) = tests::sender_and_reader(&url, "firehose").await;
    let text = "x".repeat(256 * 1024);
    let (ka, kb) = (ka.as_ref(), kb.as_ref());
    for _ in 0..200 {
        let (id, envelopes) =
            tests::seal_text(&r, "alice", ka, &[("alice", ka), ("slow", kb)], &text);
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
                return Firehose {
                    _dir: dir,
                    server,
                    _alice: a,
                    slow,
                };
            }
        }
    }
    panic!("the slow client was never disconnected");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_disconnected() {
    let Firehose { mut slow, .. } = flood_a_client_that_stopped_reading(10).await;
    // Draining what it has buffered ends in a close, not a hang.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow client never saw the close"
        );
        match slow.next_frame_within(Duration::from_secs(5)).await {
            Some(None) => break,
            Some(Some(_)) => continue,
            None => panic!("slow client stalled without a close"),
        }
    }
}

#[tokio::test]
async fn busy_senders_still_receive_while_their_requests_are_handled() {
    use shared::protocol::{CreateRoom, JoinRoom, Push, SendMessage};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = server::config::Config::for_tests(dir.path().to_path_buf());
    config.outbound_queue = 16;
    config.requests_per_sec = 10_000;
    let server = TestServer::start_with(config).await;
    let url = server.ws_url();
    let (ka, kb) = (test_key(0), test_key(1));
    let (ka, kb) = (ka.as_ref(), kb.as_ref());
    let mut a = RawClient::registered(&url, "alice", ka).await;
    let mut b = RawClient::registered(&url, "bob", kb).await;
    let r = tests::room("busy");
    a.request(ClientMsg::CreateRoom(CreateRoom {
        name: r.clone(),
        password: None,
        hidden: false,
    }))
    .await
    .expect("created");
    b.request(ClientMsg::JoinRoom(JoinRoom {
        name: r.clone(),
        password: None,
        history_limit: 0,
    }))
    .await
    .expect("joined");
    const N: usize = 60;
    let seal_all = |who: &str, key| {
        (0..N)
            .map(|i| {
                let (id, envelopes) = tests::seal_text(
                    &r,
                    who,
                    key,
                    &[("alice", ka), ("bob", kb)],
                    &format!("{who} {i}"),
                );
                ClientMsg::SendMessage(SendMessage {
                    room: r.clone(),
                    message_id: id,
                    envelopes,
                })
            })
            .collect::<Vec<_>>()
    };
    let (from_a, from_b) = (seal_all("alice", ka), seal_all("bob", kb));
    // Both pipeline all their sends without waiting for answers, so each server session
    // always has requests to handle while the other's messages are pushed to it. Like a
    // real client, each reads whatever has arrived between two sends.
    let drive = |mut c: RawClient, msgs: Vec<ClientMsg>| async move {
        let (mut acks, mut pushes) = (0, 0);
        let count = |frame: Option<ServerMsg>, acks: &mut usize, pushes: &mut usize| match frame {
            Some(ServerMsg::Reply {
                reply: Reply::Sent(_),
                ..
            }) => *acks += 1,
            Some(ServerMsg::Push(Push::Message(_))) => *pushes += 1,
            Some(ServerMsg::Push(_)) => {}
            other => panic!("unexpected {other:?} after {acks} acks, {pushes} pushes"),
        };
        for m in msgs {
            c.send(m).await;
            while let Some(frame) = c.next_frame_within(Duration::ZERO).await {
                count(frame, &mut acks, &mut pushes);
            }
        }
        while acks < N || pushes < N {
            count(c.next_frame().await, &mut acks, &mut pushes);
        }
        (acks, pushes)
    };
    let (ra, rb) = tokio::join!(drive(a, from_a), drive(b, from_b));
    assert_eq!(ra, (N, N));
    assert_eq!(rb, (N, N));
}

#[tokio::test]
async fn the_socket_of_a_client_that_never_reads_is_closed_after_three_heartbeats() {
    if !std::path::Path::new("/proc/net/tcp").exists() {
        eprintln!("SKIPPED: no /proc/net/tcp (TCP_USER_TIMEOUT is set on Linux only)");
        return;
    }
    // A 10 s heartbeat: the flood (about 3 s) ends in eviction by the hub well before the
    // session's own 30 s silence limit would end it. The kernel's timeout starts when the
    // socket's window closes, before the hub's queue fills: with a 3 s heartbeat, filling
    // that queue through the emulator on a loaded machine took longer than the timeout,
    // and the socket was gone before the control below looked.
    let firehose = flood_a_client_that_stopped_reading(10).await;
    let (port, peer) = (firehose.server.addr.port(), firehose.slow.local_port());
    assert_eq!(
        server_side_sockets(port, peer),
        1,
        "control: the evicted client's connection is still open"
    );
    // Its close frame sits behind a zero window, so only the kernel can end it: after
    // three heartbeats (30 s) of untransmitted data.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while server_side_sockets(port, peer) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still holds the socket of a client that never reads"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
