//! The tmux harness shared by the terminal end-to-end tests: a tmux server on its own
//! socket driving the real `client-tui` binary, the real server started in-process, and
//! client-core users beside it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use client_tui::{Client, ClientEvent, EventReceiver, Identity, PinStore};
use server::config::Config;
use server::startup::{Application, Stopper};
use shared::{RoomName, Username};

/// How long to wait for something to appear on the screen or arrive at a client.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn name(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

pub fn room(s: &str) -> RoomName {
    RoomName::parse(s).expect("valid room name")
}

pub fn fixture_key(n: usize) -> String {
    let path = format!(
        "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A tmux server on its own socket, killed on drop (even when the test fails).
pub struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn start(command: &str) -> Self {
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

    pub fn run(&self, args: &[&str]) -> String {
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

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", self.session])
    }

    /// Sends keys in tmux's notation (`Enter`, `Tab`, `F7`, `C-q`) or literal text.
    pub fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", self.session, key]);
            // Separate keys, as a person would: an Escape glued to the next key's escape
            // sequence would read as Alt.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn text(&self, text: &str) {
        self.run(&["send-keys", "-t", self.session, "-l", text]);
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Pastes `text` as a terminal would: all at once, each line break as a carriage
    /// return (tmux's `paste-buffer` turns `\n` into `\r`).
    pub fn paste(&self, text: &str) {
        self.run(&["set-buffer", "-b", "test-paste", text]);
        self.run(&["paste-buffer", "-d", "-b", "test-paste", "-t", self.session]);
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Polls the screen until `text` appears; returns the screen.
    pub async fn wait_for(&self, text: &str) -> String {
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
    pub async fn wait_gone(&self, text: &str) -> String {
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
    pub fn resize(&self, columns: u16, rows: u16) {
        let (x, y) = (columns.to_string(), rows.to_string());
        self.run(&["resize-window", "-t", self.session, "-x", &x, "-y", &y]);
    }

    pub fn pane_dead(&self) -> bool {
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

pub fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()))
}

/// The server on an ephemeral port with a temporary data directory.
pub struct TestServer {
    /// The server's WebSocket URL.
    pub url: String,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the server on the embedded store, or on MongoDB with `E2E_STORE=mongo` (the
    /// end-to-end suite's switch; `TEST_MONGODB_URI` names the server, a fresh database
    /// each run).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        if std::env::var("E2E_STORE").is_ok_and(|v| v == "mongo") {
            let uri = std::env::var("TEST_MONGODB_URI")
                .unwrap_or_else(|_| panic!("E2E_STORE=mongo needs TEST_MONGODB_URI"));
            config.mongodb_uri = Some(uri);
            config.mongodb_allow_standalone = true;
            config.mongodb_database = format!("e2e_chat_tui_{}", rand_suffix());
        }
        let app = Application::build(config).await.expect("server builds");
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

    pub async fn stop(self) {
        self.stopper.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A client-core user: registered, logged in.
pub async fn core_user(url: &str, user: &str, key: usize) -> (Client, EventReceiver) {
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
pub async fn wait_event(
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

pub fn tui_command(binary: &Path, home: &Path, url: &str, log: &Path) -> String {
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

/// Whether tmux is missing, so the test named `test` must be skipped (it says so). Fails
/// instead when `CI` or `TEST_INTEGRATION` is set.
pub fn skip_without_tmux(test: &str) -> bool {
    if Tmux::available() {
        return false;
    }
    let required = ["CI", "TEST_INTEGRATION"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    assert!(
        !required,
        "tmux is required for this test (CI/TEST_INTEGRATION set)"
    );
    eprintln!("skipping {test}: no tmux");
    true
}

/// Starts the TUI in tmux with its own home directory and registers `user` from its
/// first-run form; returns once the lobby is up.
pub async fn tui_registered(url: &str, home: &Path, user: &str, passphrase: &str) -> Tmux {
    let log = home.join("client-tui.log");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_client-tui"));
    let tmux = Tmux::start(&tui_command(&binary, home, url, &log));
    tmux.wait_for("Create your account").await;
    tmux.text(user);
    tmux.keys(&["Tab"]);
    tmux.text(passphrase);
    tmux.keys(&["Tab"]);
    tmux.text(passphrase);
    tmux.keys(&["Enter"]);
    tmux.wait_for("[lobby] >").await;
    tmux
}

/// Types a line on the TUI's input line and presses Enter.
pub fn enter(tmux: &Tmux, line: &str) {
    tmux.text(line);
    tmux.keys(&["Enter"]);
}

/// Quits the TUI with Ctrl-Q and waits for it to exit.
pub async fn quit(tmux: &Tmux) {
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
}
