//! Start-up on a PaaS: the port is bound at once and answers 503 "starting" while the
//! store opens (a MongoDB start-up can spend minutes building indexes; the platform kills
//! a process that has not bound its port within its deadline), then the real server takes
//! the same port. A start-up that fails leaves nothing answering.

use std::time::Duration;

use tests::scale::http_get;
use tests::{test_key, RawClient, StartingServer};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Error as WsError;

#[tokio::test]
async fn the_port_answers_starting_until_the_store_is_open_then_serves_on_it() {
    let starting = StartingServer::bind();
    let addr = starting.addr();
    let (open, gate) = oneshot::channel::<()>();
    let probe = async move {
        // While the store is not open: /health says so, in its usual shape.
        let (status, body) = http_get(addr, "/health").await.expect("/health answers");
        assert_eq!(status, 503, "{body}");
        assert!(
            body.starts_with(r#"{"status":"starting","store":""#),
            "{body}"
        );
        // A client's upgrade is refused with 503 and told when to come back.
        match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 503);
                assert_eq!(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    Some("5")
                );
            }
            Ok(_) => panic!("a WebSocket was accepted before the store was open"),
            Err(other) => panic!("expected a 503 answer, got {other}"),
        }
        open.send(()).expect("the start-up waits for the gate");
    };
    let (server, ()) = tokio::join!(
        starting.open_after(async {
            let _ = gate.await;
        }),
        probe
    );

    // Served on the same port: healthy, and chat works.
    assert_eq!(server.addr.port(), addr.port());
    let (status, body) = http_get(addr, "/health").await.expect("/health answers");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(r#""store":"{}""#, server.store_backend())),
        "{body}"
    );
    let mut alice = RawClient::registered(&server.ws_url(), "alice", &test_key(0)).await;
    alice
        .request(shared::protocol::ClientMsg::ListRooms(
            shared::protocol::ListRooms {
                after: None,
                filter: None,
                limit: 10,
            },
        ))
        .await
        .expect("a request on the served port");
    server.shutdown().await;
}

#[tokio::test]
async fn a_start_up_that_fails_leaves_the_port_answering_nothing() {
    let starting = StartingServer::bind();
    let addr = starting.addr();
    let (status, _) = http_get(addr, "/health").await.expect("/health answers");
    assert_eq!(status, 503);
    let error = starting
        .fail_after(async {}, "the store's disk is gone")
        .await;
    assert!(
        format!("{error:#}").contains("the store's disk is gone"),
        "{error:#}"
    );
    // The warm-up server stops (promptly, not with the process): nothing answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http_get(addr, "/health").await.is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the port still answers after a failed start-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server binary, built from this checkout.
const EXE: &str = env!("CARGO_BIN_EXE_chat-server");

/// The real binary on a MongoDB that accepts connections and never answers (a listener
/// nobody accepts from), so opening the store takes as long as the URI allows: the port
/// answers "starting" meanwhile, and SIGTERM ends the start-up at once, cleanly.
#[tokio::test]
async fn the_binary_binds_at_once_while_mongodb_is_slow_and_stops_on_sigterm() {
    let silent_mongodb = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let mongo_port = silent_mongodb.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = tests::scale::free_port();
    let mut child = std::process::Command::new(EXE)
        .env_clear()
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        .env("WORKERS", "1")
        .env(
            "MONGODB_URI",
            format!(
                "mongodb://127.0.0.1:{mongo_port}/?serverSelectionTimeoutMS=120000&connectTimeoutMS=120000"
            ),
        )
        .env("MONGODB_ALLOW_STANDALONE", "true")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("the server starts");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the server exited while MongoDB was silent: {status}");
        }
        if let Some((status, body)) = http_get(addr, "/health").await {
            assert_eq!(status, 503, "{body}");
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the port was not bound within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body, r#"{"status":"starting","store":"mongodb"}"#);

    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if tokio::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM did not end the start-up within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    drop(silent_mongodb);
}
