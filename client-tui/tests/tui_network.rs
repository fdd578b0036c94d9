//! The TUI's network task without a terminal: commands in, [`UiEvent`]s out, against the
//! real server started in-process. Covers onboarding (import, unlock, wrong passphrase),
//! the password prompt for hidden rooms, sending, and reconnecting after the server
//! restarts (log in again, re-open the rooms).

use std::path::Path;
use std::time::Duration;

use client_tui::tui::command::{Command, KeySource, NewAccount, Secret, Unlock};
use client_tui::tui::event::{ConnectionState, UiEvent};
use client_tui::tui::network::{self, Backoff, CommandSender, NetworkConfig, UiSink};
use client_tui::{Client, ClientEvent, EventReceiver, Identity, PinStore};
use server::config::Config;
use server::startup::{Application, Stopper};
use shared::{MessageId, RoomName, Username};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

fn name(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

fn room(s: &str) -> RoomName {
    RoomName::parse(s).expect("valid room name")
}

fn fixture(n: usize) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../tests/fixtures/keys/rsa2048-{n:02}.pem"))
}

struct Running {
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    port: u16,
}

async fn start_server(dir: &Path, port: u16) -> Running {
    let mut config = Config::for_tests(dir.to_path_buf());
    config.port = port;
    let app = Application::build(config).await.expect("server builds");
    let port = app.port();
    let stopper = app.stopper();
    let task = tokio::spawn(app.run_until_stopped());
    Running {
        stopper,
        task,
        port,
    }
}

impl Running {
    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    async fn stop(self) {
        self.stopper.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// A network task with channels on both sides.
struct Net {
    commands: CommandSender,
    events: mpsc::UnboundedReceiver<UiEvent>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_network(url: &str) -> Net {
    let mut config = NetworkConfig::new(url, None);
    config.backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    let (commands, rx) = CommandSender::channel();
    let (sink, events) = UiSink::channel();
    let task = tokio::spawn(network::run(config, rx, sink));
    Net {
        commands,
        events,
        task,
    }
}

impl Net {
    fn send(&self, command: Command) {
        self.commands.send(command).expect("queued");
    }

    /// The first event matching `pred` (earlier ones are skipped).
    async fn expect(&mut self, what: &str, pred: impl Fn(&UiEvent) -> bool) -> UiEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) if pred(&event) => return event,
                Ok(Some(_)) => {}
                Ok(None) => panic!("network task ended while waiting for {what}"),
                Err(_) => panic!("no {what} within {WAIT:?}"),
            }
        }
    }

    async fn quit(self) {
        self.send(Command::Quit);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("network task stops on Quit")
            .expect("network task did not panic");
    }
}

async fn core_user(url: &str, user: &str, key: usize) -> (Client, EventReceiver) {
    let pem = std::fs::read_to_string(fixture(key)).expect("fixture");
    let identity = Identity::from_pem(name(user), &pem, None).expect("parses");
    let (client, events) = Client::connect(url, PinStore::in_memory())
        .await
        .expect("connects");
    client.register(&identity).await.expect("registers");
    client.login(&identity).await.expect("logs in");
    (client, events)
}

async fn core_message(events: &mut EventReceiver, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::Message(m))) if m.text == text => return,
            Ok(Some(_)) => {}
            other => panic!("no message {text:?}: {other:?}"),
        }
    }
}

/// The texts of the messages that arrive before `text` does.
async fn messages_until(events: &mut EventReceiver, text: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut before = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(ClientEvent::Message(m))) if m.text == text => return before,
            Ok(Some(ClientEvent::Message(m))) => before.push(m.text),
            Ok(Some(_)) => {}
            other => panic!("no message {text:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_password_prompt_sending_and_reconnecting() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = start_server(data.path(), 0).await;
    let url = server.url();
    let (bob, mut bob_events) = core_user(&url, "bob", 4).await;
    bob.create_room(&room("den"), Some("sesame"), true)
        .await
        .expect("hidden room");

    // Import an openssl-made key for a new account.
    let home = tempfile::tempdir().expect("tempdir");
    let key_path = home.path().join("keys/dave.pem");
    let mut net = spawn_network(&url);
    net.send(Command::CreateAccount(NewAccount {
        username: name("dave"),
        passphrase: Secret::new("dave's passphrase"),
        key_path: key_path.clone(),
        source: KeySource::Import {
            path: fixture(5),
            passphrase: None,
        },
    }));
    net.expect("progress", |e| matches!(e, UiEvent::Progress { .. }))
        .await;
    let ready = net
        .expect("ready", |e| matches!(e, UiEvent::Ready(_)))
        .await;
    let UiEvent::Ready(me) = ready else {
        unreachable!()
    };
    assert_eq!(me.username, name("dave"));
    let saved = std::fs::read_to_string(&key_path).expect("key saved");
    assert!(saved.contains("BEGIN ENCRYPTED PRIVATE KEY"));
    net.expect("the room list", |e| matches!(e, UiEvent::RoomList(_)))
        .await;

    // The hidden room needs its password: none, then a wrong one, then the right one.
    net.send(Command::JoinRoom {
        room: room("den"),
        password: None,
    });
    net.expect("a password prompt", |e| {
        matches!(e, UiEvent::PasswordNeeded { wrong: false, .. })
    })
    .await;
    net.send(Command::JoinRoom {
        room: room("den"),
        password: Some(Secret::new("wrong")),
    });
    net.expect("a wrong-password prompt", |e| {
        matches!(e, UiEvent::PasswordNeeded { wrong: true, .. })
    })
    .await;
    net.send(Command::JoinRoom {
        room: room("den"),
        password: Some(Secret::new("sesame")),
    });
    net.expect(
        "the room",
        |e| matches!(e, UiEvent::RoomOpened { view, focus: true } if view.room == room("den")),
    )
    .await;

    let first_id = MessageId::random();
    net.send(Command::Send {
        room: room("den"),
        text: "first".into(),
        local_id: 1,
        message_id: first_id,
    });
    net.expect("the ack", |e| {
        matches!(e, UiEvent::Sent { local_id: 1, .. })
    })
    .await;
    core_message(&mut bob_events, "first").await;

    // The server restarts on the same port: the task reports it, reconnects, logs in
    // again and re-opens the room without being asked.
    let port = server.port;
    server.stop().await;
    net.expect("offline", |e| {
        matches!(e, UiEvent::Connection(ConnectionState::Offline { .. }))
    })
    .await;
    let offline_id = MessageId::random();
    net.send(Command::Send {
        room: room("den"),
        text: "while offline".into(),
        local_id: 2,
        message_id: offline_id,
    });
    net.expect("an offline failure that waits for the connection", |e| {
        matches!(
            e,
            UiEvent::SendFailed {
                local_id: 2,
                waiting: true,
                ..
            }
        )
    })
    .await;
    let server = start_server(data.path(), port).await;
    net.expect("online again", |e| {
        matches!(e, UiEvent::Connection(ConnectionState::Online))
    })
    .await;
    net.expect(
        "the room re-opened",
        |e| matches!(e, UiEvent::RoomOpened { view, focus: false } if view.room == room("den")),
    )
    .await;
    let (bob, mut bob_events) = {
        drop(bob);
        let pem = std::fs::read_to_string(fixture(4)).expect("fixture");
        let identity = Identity::from_pem(name("bob"), &pem, None).expect("parses");
        let (client, events) = Client::connect(&url, PinStore::in_memory())
            .await
            .expect("connects");
        client.login(&identity).await.expect("logs in");
        (client, events)
    };
    // The waiting message goes out again under its id; the first one, sent again as if
    // its ack had been lost, is refused by the server as a duplicate: stored once.
    net.send(Command::Send {
        room: room("den"),
        text: "while offline".into(),
        local_id: 2,
        message_id: offline_id,
    });
    net.expect("the retried message's ack", |e| {
        matches!(e, UiEvent::Sent { local_id: 2, .. })
    })
    .await;
    core_message(&mut bob_events, "while offline").await;
    net.send(Command::Send {
        room: room("den"),
        text: "first".into(),
        local_id: 1,
        message_id: first_id,
    });
    net.expect("the duplicate recognised", |e| {
        matches!(e, UiEvent::AlreadyStored { local_id: 1, .. })
    })
    .await;
    net.send(Command::Send {
        room: room("den"),
        text: "after the restart".into(),
        local_id: 3,
        message_id: MessageId::random(),
    });
    net.expect("the ack", |e| {
        matches!(e, UiEvent::Sent { local_id: 3, .. })
    })
    .await;
    let before = messages_until(&mut bob_events, "after the restart").await;
    assert!(
        !before.iter().any(|t| t == "first"),
        "the duplicate was delivered: {before:?}"
    );
    net.quit().await;

    // A later run unlocks the saved key: a wrong passphrase is refused in plain words.
    let mut net = spawn_network(&url);
    net.send(Command::Unlock(Unlock {
        username: name("dave"),
        key_path: key_path.clone(),
        passphrase: Some(Secret::new("not it")),
    }));
    let failed = net
        .expect("a refusal", |e| {
            matches!(e, UiEvent::OnboardingFailed { .. })
        })
        .await;
    assert!(
        matches!(&failed, UiEvent::OnboardingFailed { message } if message == "Wrong passphrase."),
        "{failed:?}"
    );
    net.send(Command::Unlock(Unlock {
        username: name("dave"),
        key_path,
        passphrase: Some(Secret::new("dave's passphrase")),
    }));
    net.expect("ready", |e| matches!(e, UiEvent::Ready(_)))
        .await;
    net.expect(
        "the room re-opened",
        |e| matches!(e, UiEvent::RoomOpened { view, .. } if view.room == room("den")),
    )
    .await;
    net.quit().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_username_is_refused_and_leaves_no_key_behind() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = start_server(data.path(), 0).await;
    let url = server.url();
    let (_erin, _events) = core_user(&url, "erin", 6).await;

    let home = tempfile::tempdir().expect("tempdir");
    let key_path = home.path().join("erin.pem");
    let mut net = spawn_network(&url);
    net.send(Command::CreateAccount(NewAccount {
        username: name("Erin"),
        passphrase: Secret::new("long enough"),
        key_path: key_path.clone(),
        source: KeySource::Import {
            path: fixture(7),
            passphrase: None,
        },
    }));
    let failed = net
        .expect("a refusal", |e| {
            matches!(e, UiEvent::OnboardingFailed { .. })
        })
        .await;
    assert!(
        matches!(&failed, UiEvent::OnboardingFailed { message } if message.contains("taken")),
        "{failed:?}"
    );
    assert!(!key_path.exists(), "the unused key was left on disk");
    net.quit().await;
    server.stop().await;
}

/// Protocol 4 through the network task: a refused moderation comes back in plain words, a
/// direct conversation opens and is shown, and deleting the account stops reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_refusals_direct_conversations_and_deleting_the_account() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = start_server(data.path(), 0).await;
    let url = server.url();
    let (bob, _bob_events) = core_user(&url, "bob", 4).await;
    bob.create_room(&room("hall"), None, false)
        .await
        .expect("bob's room");

    let home = tempfile::tempdir().expect("tempdir");
    let mut net = spawn_network(&url);
    net.send(Command::CreateAccount(NewAccount {
        username: name("gail"),
        passphrase: Secret::new("gail's passphrase"),
        key_path: home.path().join("gail.pem"),
        source: KeySource::Import {
            path: fixture(3),
            passphrase: None,
        },
    }));
    net.expect("ready", |e| matches!(e, UiEvent::Ready(_)))
        .await;
    net.send(Command::JoinRoom {
        room: room("hall"),
        password: None,
    });
    net.expect("the room", |e| matches!(e, UiEvent::RoomOpened { .. }))
        .await;
    net.send(Command::Moderate {
        room: room("hall"),
        action: shared::protocol::ModerationAction::DeleteRoom,
    });
    let failed = net
        .expect("the refusal", |e| matches!(e, UiEvent::Failed { .. }))
        .await;
    assert!(
        matches!(&failed, UiEvent::Failed { action, message }
            if action == "Deleting #hall" && message.starts_with("Only the owner can delete the room.")),
        "{failed:?}"
    );

    net.send(Command::OpenDirect { user: name("bob") });
    net.expect("the conversation", |e| {
        matches!(e, UiEvent::RoomOpened { view, focus: true }
            if view.kind == shared::protocol::RoomKind::Direct { peer: name("bob") })
    })
    .await;

    net.send(Command::DeleteAccount);
    net.expect("the deletion", |e| {
        matches!(e, UiEvent::Client(ClientEvent::AccountDeleted))
    })
    .await;
    let stopped = net
        .expect("no more reconnecting", |e| {
            matches!(
                e,
                UiEvent::Connection(ConnectionState::Stopped { .. } | ConnectionState::Connecting)
            )
        })
        .await;
    assert!(
        matches!(&stopped, UiEvent::Connection(ConnectionState::Stopped { reason }) if reason.contains("deleted")),
        "{stopped:?}"
    );
    net.quit().await;
    server.stop().await;
}
