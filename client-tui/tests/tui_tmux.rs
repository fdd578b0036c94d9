//! End to end through a real terminal: the `client-tui` binary runs inside tmux against
//! the real server (started in-process), driven with `send-keys` and read with
//! `capture-pane`. Two client-core users share the server: bob (a member of the hidden
//! room, who must receive and decrypt the TUI user's message) and carol (not a member, who
//! must receive nothing).
//!
//! Needs tmux (`.ci/run` installs it). Without tmux the test is skipped with a message,
//! unless `CI` or `TEST_INTEGRATION` is set, in which case it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client_tui::{Client, ClientEvent, EventReceiver, Identity, PinStore};
use server::config::Config;
use server::startup::{Application, Stopper};
use shared::{RoomName, Username};

/// How long to wait for something to appear on the screen or arrive at a client.
const WAIT: Duration = Duration::from_secs(20);

const TUI_USER: &str = "tuiuser";
const PASSPHRASE: &str = "tui passphrase 42";
const HIDDEN_ROOM: &str = "secret-den";
const ROOM_PASSWORD: &str = "pw123";
const PUBLIC_ROOM: &str = "town-square";

fn name(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

fn room(s: &str) -> RoomName {
    RoomName::parse(s).expect("valid room name")
}

fn fixture_key(n: usize) -> String {
    let path = format!(
        "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A tmux server on its own socket, killed on drop (even when the test fails).
struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start(command: &str) -> Self {
        let socket = format!("tui-e2e-{}-{}", std::process::id(), rand_suffix());
        let tmux = Self {
            socket,
            session: "tui",
        };
        // `-f /dev/null`: no user configuration; the pane stays after the client exits
        // so a crash leaves its last screen to capture.
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            tmux.session,
            "-x",
            "120",
            "-y",
            "40",
            command,
            ";",
            "set-option",
            "-t",
            tmux.session,
            "remain-on-exit",
            "on",
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-u")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", self.session])
    }

    /// Sends keys in tmux's notation (`Enter`, `Tab`, `F7`, `C-q`) or literal text.
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", self.session, key]);
            // Separate keys, as a person would: an Escape glued to the next key's escape
            // sequence would read as Alt.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", self.session, "-l", text]);
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Polls the screen until `text` appears; returns the screen.
    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear within {WAIT:?}; the screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the screen until `text` is gone; returns the screen.
    async fn wait_gone(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if !screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} stayed on screen for {WAIT:?}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resizes the terminal the client runs in.
    fn resize(&self, columns: u16, rows: u16) {
        let (x, y) = (columns.to_string(), rows.to_string());
        self.run(&["resize-window", "-t", self.session, "-x", &x, "-y", &y]);
    }

    fn pane_dead(&self) -> bool {
        self.run(&["display-message", "-p", "-t", self.session, "#{pane_dead}"])
            .trim()
            == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

/// The server on an ephemeral port with a temporary data directory.
struct TestServer {
    url: String,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = Application::build(Config::for_tests(dir.path().to_path_buf()))
            .await
            .expect("server builds");
        let url = format!("ws://127.0.0.1:{}/ws", app.port());
        let stopper = app.stopper();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            url,
            stopper,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.stopper.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A client-core user: registered, logged in.
async fn core_user(url: &str, user: &str, key: usize) -> (Client, EventReceiver) {
    let identity =
        Identity::from_pem(name(user), &fixture_key(key), None).expect("fixture key parses");
    let (client, events) = Client::connect(url, PinStore::in_memory())
        .await
        .expect("connects");
    client.register(&identity).await.expect("registers");
    client.login(&identity).await.expect("logs in");
    (client, events)
}

/// Waits for an event matching `pred`, returning it.
async fn wait_event(
    events: &mut EventReceiver,
    what: &str,
    pred: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) if pred(&event) => return event,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("no {what} within {WAIT:?}"),
        }
    }
}

fn tui_command(binary: &Path, home: &Path, url: &str, log: &Path) -> String {
    let q = |p: &Path| format!("'{}'", p.display());
    format!(
        "env -i PATH=/usr/bin:/bin HOME={home} XDG_CONFIG_HOME={config} XDG_STATE_HOME={state} \
         XDG_DATA_HOME={data} TERM=xterm-256color LANG=C.UTF-8 RUST_LOG=info \
         {binary} --server {url} --key-bits 2048 --log-file {log}",
        home = q(home),
        config = q(&home.join("config")),
        state = q(&home.join("state")),
        data = q(&home.join("data")),
        binary = q(binary),
        log = q(log),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_registers_joins_a_hidden_room_and_chats_end_to_end() {
    if !Tmux::available() {
        let required = ["CI", "TEST_INTEGRATION"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        assert!(
            !required,
            "tmux is required for this test (CI/TEST_INTEGRATION set)"
        );
        eprintln!("skipping tui_registers_joins_a_hidden_room_and_chats_end_to_end: no tmux");
        return;
    }
    let started = Instant::now();
    let server = TestServer::start().await;

    // bob owns a public room and a hidden, password-protected one; carol is in neither
    // of bob's rooms' secrets: she only joins the public room.
    let (bob, mut bob_events) = core_user(&server.url, "bob", 1).await;
    bob.create_room(&room(PUBLIC_ROOM), None, false)
        .await
        .expect("public room");
    bob.create_room(&room(HIDDEN_ROOM), Some(ROOM_PASSWORD), true)
        .await
        .expect("hidden room");
    let (carol, mut carol_events) = core_user(&server.url, "carol", 2).await;
    carol
        .join_room(&room(PUBLIC_ROOM), None)
        .await
        .expect("carol joins the public room");

    let home = tempfile::tempdir().expect("tempdir");
    let log = home.path().join("client-tui.log");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_client-tui"));
    let tmux = Tmux::start(&tui_command(&binary, home.path(), &server.url, &log));

    // First run: register a new user from the TUI (the key is generated there).
    tmux.wait_for("Create your account").await;
    tmux.text(TUI_USER);
    tmux.keys(&["Tab"]);
    tmux.text(PASSPHRASE);
    tmux.keys(&["Tab"]);
    tmux.text(PASSPHRASE);
    tmux.keys(&["Enter"]);

    // The lobby lists the public room (not the hidden one) and who is online.
    let lobby = tmux.wait_for(PUBLIC_ROOM).await;
    assert!(lobby.contains("3 users online"), "lobby:\n{lobby}");
    assert!(!lobby.contains(HIDDEN_ROOM), "hidden room listed:\n{lobby}");
    let key_file = home
        .path()
        .join("config/e2e-chat/keys")
        .join(format!("{TUI_USER}.pem"));
    let saved = std::fs::read_to_string(&key_file).expect("the key is saved");
    assert!(
        saved.contains("BEGIN ENCRYPTED PRIVATE KEY"),
        "key not encrypted"
    );

    // Keyboard focus stays on the input line: Down only moves the lobby's cursor, and
    // typed text (not the highlighted room) is what Enter acts on; Tab completes.
    tmux.keys(&["Down"]);
    tmux.wait_for(&format!("▶ {PUBLIC_ROOM}")).await;
    tmux.text("/refr");
    tmux.keys(&["Tab"]);
    tmux.wait_for("> /refresh").await;
    tmux.keys(&["Enter"]);
    tmux.wait_gone("> /refresh").await;
    assert!(
        !tmux.screen().contains(&format!("[#{PUBLIC_ROOM}]")),
        "Enter opened the highlighted room:\n{}",
        tmux.screen()
    );

    // Join the hidden room by typing its name and password.
    tmux.keys(&["F7"]);
    tmux.wait_for("Join a room by name").await;
    tmux.text(HIDDEN_ROOM);
    tmux.keys(&["Tab"]);
    tmux.text(ROOM_PASSWORD);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("#{HIDDEN_ROOM} (hidden, password)"))
        .await;
    wait_event(&mut bob_events, "the TUI user joining", |e| {
        matches!(e, ClientEvent::MemberJoined { room: r, member, .. }
            if r.same_as(&room(HIDDEN_ROOM)) && member.username.same_as(&name(TUI_USER)))
    })
    .await;

    // Send a message: bob's client core receives and decrypts it. On the way, Up recalls
    // the line sent before and Down the (empty) draft; PgUp, F4 and Ctrl-N leave the
    // typing on the input line.
    tmux.keys(&["Up"]);
    tmux.wait_for(&format!("[#{HIDDEN_ROOM}] > /refresh")).await;
    tmux.keys(&["Down"]);
    tmux.wait_gone("> /refresh").await;
    tmux.keys(&["PPage", "F4"]);
    tmux.wait_for("[lobby] >").await;
    tmux.keys(&["C-n"]);
    tmux.wait_for(&format!("[#{HIDDEN_ROOM}] >")).await;
    let text = "hello from the terminal";
    tmux.text(text);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("✓ {text}")).await;
    let ClientEvent::Message(received) = wait_event(
        &mut bob_events,
        "the message",
        |e| matches!(e, ClientEvent::Message(m) if m.room.same_as(&room(HIDDEN_ROOM))),
    )
    .await
    else {
        unreachable!("matched a message")
    };
    assert_eq!(received.text, text);
    assert!(received.sender.same_as(&name(TUI_USER)));

    // bob answers; the TUI decrypts and shows it with its verified mark.
    bob.send_text(&room(HIDDEN_ROOM), "hi terminal, bob here")
        .await
        .expect("bob sends");
    tmux.wait_for("bob ✓ hi terminal, bob here").await;

    // carol, who is not in the hidden room, received nothing from it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(event) = carol_events.try_recv() {
        match event {
            ClientEvent::Message(m) => panic!("carol received a message in #{}", m.room),
            ClientEvent::MemberJoined { room: r, .. } | ClientEvent::MemberLeft { room: r, .. } => {
                assert!(!r.same_as(&room(HIDDEN_ROOM)), "carol saw #{r}")
            }
            _ => {}
        }
    }

    // Resizing lays the panes out again at once, without a key press: the member pane
    // gives way on a narrow terminal and comes back on a wide one.
    tmux.resize(80, 24);
    tmux.wait_gone("Members").await;
    tmux.resize(120, 40);
    tmux.wait_for("Members").await;
    // KNOWN ISSUE, open (crossterm 0.28, under cursive 0.21): its unix event source
    // returns after the first ready token of an edge-triggered (mio/epoll) batch, so when
    // the resize signal and typed keys are ready together, one of them waits for the next
    // input: keys typed at once after a resize can sit unread until another key comes
    // (seen here: the late resize event, then Ctrl-Q never read). The pause lets the
    // resize be read alone, so this test checks the relayout; the bug needs a crossterm
    // fix or a backend of our own.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Ctrl-C asks first, and Enter keeps the client running.
    tmux.keys(&["C-c"]);
    tmux.wait_for("Quit e2e-chat?").await;
    tmux.keys(&["Enter"]);
    tmux.wait_gone("Quit e2e-chat?").await;
    assert!(!tmux.pane_dead(), "Enter on the quit question quit");

    // Quit cleanly; logs went to the file, not the terminal.
    tmux.keys(&["C-q"]);
    let deadline = Instant::now() + WAIT;
    while !tmux.pane_dead() {
        assert!(
            Instant::now() < deadline,
            "client did not quit:\n{}",
            tmux.screen()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log_text = std::fs::read_to_string(&log).expect("log file written");
    assert!(log_text.contains("logged in"), "log:\n{log_text}");
    assert!(!tmux.screen().contains("INFO"), "logs reached the terminal");

    drop(tmux);
    bob.close().await;
    carol.close().await;
    server.stop().await;
    eprintln!("tmux end-to-end test took {:?}", started.elapsed());
}
