//! Issue 12's admin CLI end to end: the real server binary runs as a process of its own
//! (on the embedded store, or on MongoDB with `E2E_STORE=mongo`), clients talk to it over
//! WebSockets, and the real `admin` command line is run against its admin socket.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use shared::protocol::{Push, RoomChange, CLOSE_ACCOUNT_DELETED};
use shared::ErrorCode;
use tests::scale::{drop_database, free_port, fresh_database, http_get};
use tests::{e2e_uses_mongo, test_key, RawClient};

/// The server binary, built from this checkout (the tests' copy of `server`).
const EXE: &str = env!("CARGO_BIN_EXE_chat-server");

/// The server as a process, with its data directory (and database, on MongoDB).
struct Served {
    child: Running,
    port: u16,
    dir: tempfile::TempDir,
    database: Option<String>,
}

/// What one `admin` run printed and how it exited.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// The printed JSON of a successful run.
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "admin failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Served {
    /// Starts the server on a free port and waits until it answers `/health`.
    async fn start(test: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut command = Command::new(EXE);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BIND_ADDRESS", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATA_DIR", dir.path())
            .env("WORKERS", "1")
            .env("ARGON2_THREADS", "1")
            .env("SHUTDOWN_GRACE_SECS", "5")
            .env("REGISTRATIONS_PER_ADDRESS", "100000")
            .env("REGISTRATIONS_TOTAL", "100000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        let database = e2e_uses_mongo().then(|| fresh_database(test));
        if let Some(database) = &database {
            let uri =
                std::env::var("TEST_MONGODB_URI").expect("E2E_STORE=mongo needs TEST_MONGODB_URI");
            command
                .env("MONGODB_URI", uri)
                .env("MONGODB_DATABASE", database)
                .env("MONGODB_ALLOW_STANDALONE", "true");
        }
        let mut child = Running(command.spawn().expect("the server starts"));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                panic!("the server exited at start-up: {status}");
            }
            if matches!(http_get(addr, "/health").await, Some((200, _))) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no /health within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            child,
            port,
            dir,
            database,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Runs `chat-server admin <args>` as an operator would: the same `DATA_DIR` as the
    /// server, which is how it finds the socket.
    async fn admin(&self, args: &[&str]) -> Outcome {
        let output = tokio::process::Command::new(EXE)
            .env_clear()
            .env("DATA_DIR", self.dir.path())
            .arg("admin")
            .args(args)
            .output()
            .await
            .expect("admin runs");
        Outcome {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Stops the server with SIGTERM and waits for it; drops its database on MongoDB.
    /// Returns the data directory, still there.
    async fn stop(self) -> tempfile::TempDir {
        let Self {
            mut child,
            dir,
            database,
            ..
        } = self;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.0.id().to_string())
            .status();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while child.0.try_wait().expect("wait").is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no exit within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Some(database) = database {
            drop_database(&database).await;
        }
        dir
    }
}

/// A child process, killed when dropped (a failed test leaves no server behind).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// "alice" (test key 0), owner of the public room "lobby", and "bob" (key 1), a member,
/// both logged in; and the server's URL.
async fn alice_and_bob_in_lobby(server: &Served) -> (String, RawClient, RawClient) {
    let url = server.url();
    let mut alice = RawClient::registered(&url, "alice", &test_key(0)).await;
    let mut bob = RawClient::registered(&url, "bob", &test_key(1)).await;
    alice.create_room("lobby", None, false).await;
    bob.join_room("lobby", None).await.expect("joined");
    (url, alice, bob)
}

/// The entries of a JSON array whose `field` is `value`.
fn with<'a>(list: &'a Value, field: &str, value: &str) -> Vec<&'a Value> {
    list.as_array()
        .expect("an array")
        .iter()
        .filter(|v| v[field] == value)
        .collect()
}

#[tokio::test]
async fn listings_details_and_statistics_reflect_what_clients_did() {
    let server = Served::start("admin_listings").await;
    let url = server.url();
    let (ka, kb) = (test_key(0), test_key(1));
    let mut alice = RawClient::registered(&url, "Alice", &ka).await;
    let mut bob = RawClient::registered(&url, "bob", &kb).await;
    alice.create_room("Lobby", None, false).await;
    bob.join_room("lobby", None).await.expect("joined");
    alice.create_room("den", Some("secret"), true).await;
    for text in ["one", "two"] {
        alice
            .send_text(
                "lobby",
                ("Alice", &ka),
                &[("Alice", &ka), ("bob", &kb)],
                text,
            )
            .await
            .expect("sent");
    }

    let socket = std::fs::symlink_metadata(server.socket()).expect("the socket exists");
    assert!(socket.file_type().is_socket());
    assert_eq!(
        socket.permissions().mode() & 0o777,
        0o600,
        "only the server's user"
    );

    let users = server.admin(&["users", "list", "--json"]).await.json();
    let names: Vec<&str> = users
        .as_array()
        .expect("array")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Alice", "bob"]);

    let shown = server
        .admin(&["users", "show", "ALICE", "--json"])
        .await
        .json();
    assert_eq!(shown["answer"], "user");
    assert_eq!(shown["name"], "Alice");
    assert_eq!(shown["rooms"], serde_json::json!(["den", "Lobby"]));
    assert_eq!(shown["rooms_created"], 2);

    let rooms = server.admin(&["rooms", "list", "--json"]).await.json();
    assert_eq!(rooms.as_array().expect("array").len(), 2);
    let lobby = with(&rooms, "name", "Lobby");
    assert_eq!(lobby.len(), 1);
    assert_eq!(lobby[0]["kind"], "public");
    assert_eq!(lobby[0]["members"], 2);
    let den = with(&rooms, "name", "den");
    assert_eq!(den[0]["kind"], "hidden", "hidden rooms are listed, marked");
    assert_eq!(den[0]["has_password"], true);

    let detail = server
        .admin(&["rooms", "show", "lobby", "--json"])
        .await
        .json();
    assert_eq!(detail["messages"], 2);
    assert_eq!(detail["owner"], "Alice");
    assert_eq!(detail["member_names"], serde_json::json!(["Alice", "bob"]));
    let key = den[0]["key"].as_str().expect("key");
    let by_key = server.admin(&["rooms", "show", key, "--json"]).await.json();
    assert_eq!(by_key["name"], "den");

    let stats = server.admin(&["stats", "--json"]).await.json();
    assert_eq!(stats["stats"]["users"], 2);
    assert_eq!(stats["stats"]["rooms"], 2);
    assert_eq!(stats["stats"]["messages"], 2);
    let backend = if e2e_uses_mongo() {
        "mongodb"
    } else {
        "embedded"
    };
    assert_eq!(stats["store"], backend);
    if !e2e_uses_mongo() {
        assert!(stats["stats"]["bytes"].as_u64().expect("size") > 0);
    }

    let text = server.admin(&["rooms", "list"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("Lobby") && text.stdout.contains("hidden"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("2 rooms"), "{}", text.stdout);
    drop((alice, bob));
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_user_ends_their_session_and_keeps_the_name_reserved() {
    let server = Served::start("admin_delete_user").await;
    let (url, mut alice, mut bob) = alice_and_bob_in_lobby(&server).await;
    let kb = test_key(1);
    bob.create_room("bobs", None, false).await;
    alice.drain().await;

    let deleted = server.admin(&["users", "delete", "BOB"]).await;
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(
        deleted.stdout.contains("deleted user bob"),
        "{}",
        deleted.stdout
    );
    assert_eq!(bob.close_code().await, Some(CLOSE_ACCOUNT_DELETED));
    match alice.next_push_but_presence().await {
        Push::MemberLeft { username, .. } => assert_eq!(username.as_str(), "bob"),
        other => panic!("expected MemberLeft, got {other:?}"),
    }

    let again = RawClient::greeted(&url).await.register("Bob", &kb).await;
    assert_eq!(
        again.map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::UsernameTaken)
    );
    let shown = server.admin(&["users", "show", "bob"]).await;
    assert_eq!(shown.code, 1);
    assert!(shown.stderr.contains("no user named"), "{}", shown.stderr);
    let rooms = server.admin(&["rooms", "list", "--json"]).await.json();
    let names: Vec<&str> = rooms
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["lobby"],
        "bob's room, left empty, went with the account"
    );
    let stats = server.admin(&["stats", "--json"]).await.json();
    assert_eq!(stats["stats"]["users"], 1);
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_room_tells_its_members_and_deletes_its_history() {
    let server = Served::start("admin_delete_room").await;
    let (_, mut alice, mut bob) = alice_and_bob_in_lobby(&server).await;
    let (ka, kb) = (test_key(0), test_key(1));
    alice.create_room("other", None, false).await;
    alice
        .send_text(
            "lobby",
            ("alice", &ka),
            &[("alice", &ka), ("bob", &kb)],
            "hi",
        )
        .await
        .expect("sent");
    alice
        .send_text("other", ("alice", &ka), &[("alice", &ka)], "kept")
        .await
        .expect("sent");
    bob.drain().await;

    let deleted = server
        .admin(&["rooms", "delete", "LOBBY", "--json"])
        .await
        .json();
    assert_eq!(deleted["answer"], "room_deleted");
    assert_eq!(deleted["room"]["name"], "lobby");
    let event = bob.next_room_event().await;
    assert_eq!(event.room.as_str(), "lobby");
    assert_eq!(event.change, RoomChange::RoomDeleted);

    let shown = server.admin(&["rooms", "show", "lobby"]).await;
    assert_eq!(shown.code, 1);
    assert!(shown.stderr.contains("no room named"), "{}", shown.stderr);
    let stats = server.admin(&["stats", "--json"]).await.json();
    assert_eq!(stats["stats"]["rooms"], 1);
    assert_eq!(
        stats["stats"]["messages"], 1,
        "only the other room's message is left"
    );
    let back = bob.join_room("lobby", None).await;
    assert_eq!(
        back.map(|_| ()).map_err(|e| e.code),
        Err(ErrorCode::RoomUnavailable)
    );
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn purge_deletes_what_it_says_and_nothing_else() {
    let server = Served::start("admin_purge").await;
    let url = server.url();
    let ka = test_key(0);
    let mut alice = RawClient::registered(&url, "alice", &ka).await;
    alice.create_room("busy", None, false).await;
    alice.create_room("quiet", None, false).await;
    for text in ["1", "2", "3"] {
        alice
            .send_text("busy", ("alice", &ka), &[("alice", &ka)], text)
            .await
            .expect("sent");
    }
    alice
        .send_text("quiet", ("alice", &ka), &[("alice", &ka)], "only")
        .await
        .expect("sent");
    let count = |room: &'static str| {
        let server = &server;
        async move {
            server
                .admin(&["rooms", "show", room, "--json"])
                .await
                .json()["messages"]
                .clone()
        }
    };

    let none = server
        .admin(&["purge", "--older-than", "1d", "--json"])
        .await
        .json();
    assert_eq!(none["messages"], 0, "every message is newer than a day");
    let kept = server
        .admin(&["purge", "--keep-newest", "1", "--json"])
        .await
        .json();
    assert_eq!(kept["messages"], 2);
    assert_eq!(count("busy").await, 1);
    assert_eq!(count("quiet").await, 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let old = server.admin(&["purge", "--older-than", "1s"]).await;
    assert_eq!(old.code, 0, "{}", old.stderr);
    assert!(old.stdout.contains("purged 2 messages"), "{}", old.stdout);
    let stats = server.admin(&["stats", "--json"]).await.json();
    assert_eq!(stats["stats"]["messages"], 0);
    assert_eq!(stats["stats"]["rooms"], 2, "purging keeps the rooms");
    drop(alice);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_and_a_missing_server_fail_clearly() {
    let server = Served::start("admin_errors").await;
    let unknown_user = server.admin(&["users", "delete", "nobody"]).await;
    assert_eq!(unknown_user.code, 1);
    assert!(
        unknown_user.stderr.contains("no user named \"nobody\""),
        "{}",
        unknown_user.stderr
    );
    let unknown_room = server
        .admin(&["rooms", "delete", "nowhere", "--json"])
        .await;
    assert_eq!(unknown_room.code, 1);
    let error: Value = serde_json::from_str(unknown_room.stderr.trim()).expect("JSON error");
    assert_eq!(error["error"], "unknown_room");
    let invalid = server.admin(&["users", "show", "not a name"]).await;
    assert_eq!(invalid.code, 1);
    assert!(
        invalid.stderr.contains("not a username"),
        "{}",
        invalid.stderr
    );
    let usage = server.admin(&["purge"]).await;
    assert_eq!(usage.code, 2, "purge needs a limit: {}", usage.stderr);
    let age = server.admin(&["purge", "--older-than", "10"]).await;
    assert_eq!(age.code, 2, "an age needs a unit: {}", age.stderr);

    let socket = server.socket();
    let dir = server.stop().await;
    assert!(dir.path().exists());
    assert!(!socket.exists(), "the socket is removed on shutdown");
    let output = tokio::process::Command::new(EXE)
        .env_clear()
        .env("DATA_DIR", dir.path())
        .args(["admin", "stats"])
        .output()
        .await
        .expect("admin runs");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no server is answering at the admin socket"),
        "{stderr}"
    );
    assert!(stderr.contains("Start the server"), "{stderr}");
}
