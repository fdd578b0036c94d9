//! The server as an adversary. A real client (the client core, with its pins and ledger on
//! disk) talks to the real server through a [`TamperingProxy`] that drops, replays,
//! reorders and relabels frames, injects members, substitutes keys and relays challenges.
//! Each test asserts what the client core refuses and what the user is shown: every event
//! the test reads is also applied to the TUI's state ([`AppState`]), and the test reads the
//! room's lines and the status line from there.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_tui::events::FLOOD_REASON;
use client_tui::tui::event::{ConnectionState, Me, UiEvent};
use client_tui::tui::profile::Start;
use client_tui::tui::state::{AppState, EntryKind};
use client_tui::{
    Client, ClientError, ClientEvent, EventReceiver, Identity, MembershipSource, PinStore,
    RejectReason,
};
use shared::crypto::message::{seal_message, MessageBody, Recipient};
use shared::crypto::rotation::RotationCertificate;
use shared::crypto::signing::{self, Purpose};
use shared::protocol::{
    recipients_of, ClientMsg, DeliveredMessage, LoginProof, MemberInfo, Push, Reply, SendAck,
    ServerMsg,
};
use shared::{ErrorCode, ErrorDetail, MessageId};
use tests::tamper::TamperingProxy;
use tests::{name, public_der, room, test_key, CoreClient, RawClient, TestServer, WAIT};

/// One user's installation: the pin file and ledger live in `home`, so a new [`User`]
/// from the same device is a restarted client that remembers what it accepted.
pub(super) struct Device {
    home: tempfile::TempDir,
    user: &'static str,
    key: usize,
}

impl Device {
    pub(super) fn new(user: &'static str, key: usize) -> Self {
        Self {
            home: tempfile::tempdir().expect("tempdir"),
            user,
            key,
        }
    }

    fn identity(&self) -> Identity {
        Identity::new(name(self.user), (*test_key(self.key)).clone()).expect("identity")
    }

    fn pins(&self) -> PinStore {
        let path: PathBuf = self
            .home
            .path()
            .join(format!("{}.pem.pins.json", self.user));
        PinStore::open(path).expect("pins open")
    }

    async fn connect(&self, url: &str) -> Result<(Client, EventReceiver), ClientError> {
        Client::connect(url, self.pins()).await
    }

    /// Registers the account through `url` and logs in.
    async fn register(&self, url: &str) -> User {
        let (client, events) = self.connect(url).await.expect("connects");
        client.register(&self.identity()).await.expect("registers");
        self.finish_login(client, events).await
    }

    /// Logs in through `url` (a restarted client).
    async fn login(&self, url: &str) -> User {
        let (client, events) = self.connect(url).await.expect("connects");
        self.finish_login(client, events).await
    }

    async fn finish_login(&self, client: Client, events: EventReceiver) -> User {
        client.login(&self.identity()).await.expect("logs in");
        let mut ui = AppState::new(
            "ws://proxy/ws",
            Start::NewAccount {
                username: None,
                import: None,
                key_path: None,
            },
        );
        ui.apply(UiEvent::Ready(Me {
            username: name(self.user),
            fingerprint: self.identity().fingerprint(),
            key_path: self.home.path().join("key.pem"),
        }));
        ui.apply(UiEvent::Connection(ConnectionState::Online));
        User { client, events, ui }
    }
}

/// A logged-in client and what its user sees.
pub(super) struct User {
    pub(super) client: Client,
    pub(super) events: EventReceiver,
    pub(super) ui: AppState,
}

impl User {
    /// Joins (or re-opens) `r` and shows it.
    async fn open(&mut self, r: &str) {
        let view = self.client.join_room(&room(r), None).await.expect("joins");
        self.ui.apply(UiEvent::RoomOpened { view, focus: true });
    }

    /// The next event, also applied to the UI state.
    pub(super) async fn event(&mut self) -> ClientEvent {
        let event = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("events open");
        self.ui.apply(UiEvent::Client(event.clone()));
        event
    }

    /// Events until one matches `wanted` (every one is applied to the UI state).
    pub(super) async fn until(
        &mut self,
        what: &str,
        wanted: impl Fn(&ClientEvent) -> bool,
    ) -> ClientEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} in time"))
                .expect("events open");
            self.ui.apply(UiEvent::Client(event.clone()));
            if wanted(&event) {
                return event;
            }
        }
    }

    /// The room's lines as the user reads them.
    pub(super) fn lines(&self, r: &str) -> Vec<String> {
        let Some(buffer) = self.ui.room(&room(r)) else {
            return Vec::new();
        };
        buffer
            .timeline
            .entries()
            .iter()
            .map(|e| match &e.kind {
                EntryKind::Message { sender, text, .. } => format!("{sender}: {text}"),
                EntryKind::Rejected { sender, reason, .. } => {
                    format!("refused from {sender}: {reason}")
                }
                EntryKind::Notice { text, .. } => text.clone(),
            })
            .collect()
    }

    pub(super) fn shows(&self, r: &str, needle: &str) -> bool {
        self.lines(r).iter().any(|l| l.contains(needle))
    }

    pub(super) fn status(&self) -> String {
        self.ui
            .status
            .as_ref()
            .map(|s| s.text.clone())
            .unwrap_or_default()
    }
}

/// Bob sends `text` to room `r`; once Alice has it, returns the ack and Alice's copy as
/// it went through the proxy (for replaying).
async fn bob_says(
    bob: &CoreClient,
    alice: &mut User,
    proxy: &TamperingProxy,
    text: &str,
) -> (SendAck, DeliveredMessage) {
    let ack = bob.client.send_text(&room("r"), text).await.expect("sent");
    alice
        .until("bob's message", |e| matches!(e, ClientEvent::Message(_)))
        .await;
    let copy = proxy
        .recorded()
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::Push(Push::Message(d)) if d.seq == ack.seq => Some(d),
            _ => None,
        })
        .expect("the message went through the proxy");
    (ack, copy)
}

/// A member as the server describes them.
pub(super) fn member(user: &str, key: usize) -> MemberInfo {
    let der = public_der(&test_key(key));
    MemberInfo {
        username: name(user),
        fingerprint: shared::crypto::keys::Fingerprint::of_der(&der).to_string(),
        public_key: der,
    }
}

/// Bob (direct) and Alice (through the proxy) share room `r`; returns them.
pub(super) async fn alice_and_bob(
    server: &TestServer,
    proxy: &TamperingProxy,
    alice: &Device,
) -> (User, CoreClient) {
    let mut bob = CoreClient::register(&server.ws_url(), "bob", 1).await;
    bob.client
        .create_room(&room("r"), None, false)
        .await
        .expect("creates");
    let mut a = alice.register(&proxy.ws_url()).await;
    a.open("r").await;
    // Bob's client learns of Alice's join before it sends.
    loop {
        if let ClientEvent::MemberJoined { member, .. } = bob.next_event().await {
            if member.username == name("alice") {
                break;
            }
        }
    }
    (a, bob)
}

#[tokio::test]
async fn a_message_replayed_after_a_reconnect_and_a_restart_is_refused() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, bob) = alice_and_bob(&server, &proxy, &alice).await;
    let (ack, original) = bob_says(&bob, &mut a, &proxy, "pay carol 10").await;

    // The client restarts (a new process: only its files remain) and reconnects.
    a.client.close().await;
    let mut a = alice.login(&proxy.ws_url()).await;
    a.open("r").await;
    assert_eq!(
        a.lines("r")
            .iter()
            .filter(|l| l.contains("pay carol 10"))
            .count(),
        1,
        "history shows the message once, at its place: {:?}",
        a.lines("r")
    );
    // The server delivers it again as new.
    let mut replay = original;
    replay.seq = ack.seq + 50;
    proxy.inject(ServerMsg::Push(Push::Message(replay)));
    match a.event().await {
        ClientEvent::Rejected(r) => {
            assert!(matches!(r.reason, RejectReason::Replayed { .. }), "{r:?}");
        }
        other => panic!("expected the replay to be refused, got {other:?}"),
    }
    assert_eq!(
        a.lines("r")
            .iter()
            .filter(|l| l.contains("pay carol 10"))
            .count(),
        1,
        "the replay is not shown as a message: {:?}",
        a.lines("r")
    );
    assert!(
        a.shows("r", "refused from bob: replayed"),
        "{:?}",
        a.lines("r")
    );
}

#[tokio::test]
async fn a_message_replayed_after_leaving_and_rejoining_is_refused() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, bob) = alice_and_bob(&server, &proxy, &alice).await;
    let (ack, original) = bob_says(&bob, &mut a, &proxy, "the plan").await;

    // Alice leaves: a push for the room is no longer opened.
    a.client.leave_room(&room("r")).await.expect("leaves");
    proxy.inject(ServerMsg::Push(Push::Message(original.clone())));
    match a.event().await {
        ClientEvent::Rejected(r) => assert_eq!(r.reason, RejectReason::NotAMember),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // She joins again: the old message at a new position is a replay.
    a.open("r").await;
    let mut replay = original;
    replay.seq = ack.seq + 7;
    proxy.inject(ServerMsg::Push(Push::Message(replay)));
    match a
        .until("the replay", |e| matches!(e, ClientEvent::Rejected(_)))
        .await
    {
        ClientEvent::Rejected(r) => {
            assert!(matches!(r.reason, RejectReason::Replayed { .. }), "{r:?}");
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_withheld_message_is_reported_and_reordered_ones_are_refused() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, bob) = alice_and_bob(&server, &proxy, &alice).await;
    // The server drops the second of three messages.
    let mut seen = 0;
    proxy.on_server(move |m| match m {
        ServerMsg::Push(Push::Message(_)) => {
            seen += 1;
            if seen == 2 {
                Vec::new()
            } else {
                vec![m]
            }
        }
        other => vec![other],
    });
    for text in ["one", "two", "three"] {
        bob.client.send_text(&room("r"), text).await.expect("sent");
    }
    let withheld = a
        .until("a withheld notice", |e| {
            matches!(e, ClientEvent::MessagesWithheld { .. })
        })
        .await;
    assert!(
        matches!(withheld, ClientEvent::MessagesWithheld { ref sender, missing: 1, .. } if *sender == name("bob")),
        "{withheld:?}"
    );
    match a.event().await {
        ClientEvent::Message(m) => assert_eq!(m.text, "three"),
        other => panic!("expected the third message, got {other:?}"),
    }
    assert!(
        a.shows("r", "1 message from bob did not arrive"),
        "{:?}",
        a.lines("r")
    );

    // Now the server holds one message back and swaps the positions of the two: the
    // later one arrives first (so the earlier one is reported missing), and the earlier
    // one then contradicts the sender's order and is refused.
    let mut held: Option<DeliveredMessage> = None;
    proxy.on_server(move |m| match m {
        ServerMsg::Push(Push::Message(d)) => match held.take() {
            None => {
                held = Some(d);
                Vec::new()
            }
            Some(mut first) => {
                let mut second = d;
                std::mem::swap(&mut first.seq, &mut second.seq);
                vec![
                    ServerMsg::Push(Push::Message(second)),
                    ServerMsg::Push(Push::Message(first)),
                ]
            }
        },
        other => vec![other],
    });
    for text in ["four", "five"] {
        bob.client.send_text(&room("r"), text).await.expect("sent");
    }
    assert!(matches!(
        a.event().await,
        ClientEvent::MessagesWithheld { missing: 1, .. }
    ));
    match a.event().await {
        ClientEvent::Message(m) => assert_eq!(m.text, "five"),
        other => panic!("expected the fifth message first, got {other:?}"),
    }
    match a.event().await {
        ClientEvent::Rejected(r) => {
            assert!(matches!(r.reason, RejectReason::Replayed { .. }), "{r:?}");
        }
        other => panic!("expected the reordered message to be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn relabelled_messages_are_refused_or_flagged() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, bob) = alice_and_bob(&server, &proxy, &alice).await;
    bob.client
        .create_room(&room("elsewhere"), None, false)
        .await
        .expect("creates");
    a.open("elsewhere").await;

    // Moved to another room the user is in: the copy is bound to its room.
    proxy.on_server(|m| match m {
        ServerMsg::Push(Push::Message(mut d)) => {
            d.room = room("elsewhere");
            vec![ServerMsg::Push(Push::Message(d))]
        }
        other => vec![other],
    });
    bob.client
        .send_text(&room("r"), "for r only")
        .await
        .expect("sent");
    match a
        .until("a refusal", |e| matches!(e, ClientEvent::Rejected(_)))
        .await
    {
        ClientEvent::Rejected(r) => assert_eq!(r.reason, RejectReason::Undecryptable),
        _ => unreachable!(),
    }
    assert!(!a.shows("elsewhere", "for r only"));

    // Held back for an hour (its server time relabelled): shown, with the dispute flagged.
    proxy.on_server(|m| match m {
        ServerMsg::Push(Push::Message(mut d)) => {
            d.server_time_ms += 3_600_000;
            vec![ServerMsg::Push(Push::Message(d))]
        }
        other => vec![other],
    });
    bob.client
        .send_text(&room("r"), "on time")
        .await
        .expect("sent");
    match a
        .until("the late message", |e| matches!(e, ClientEvent::Message(_)))
        .await
    {
        ClientEvent::Message(m) => {
            assert_eq!(m.text, "on time");
            assert!(m.time_disputed());
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_member_injected_into_a_refusal_is_shown_and_never_encrypted_to_silently() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    // Mallory's account is the server operator's; the server claims she is in the room.
    RawClient::registered(&server.ws_url(), "mallory", &test_key(2)).await;
    let mut rewritten = false;
    proxy.on_server(move |m| match m {
        ServerMsg::Reply {
            request_id,
            reply: Reply::Sent(_),
        } if !rewritten => {
            rewritten = true;
            vec![ServerMsg::Error {
                request_id: Some(request_id),
                code: ErrorCode::RecipientMismatch,
                message: "members changed".into(),
                detail: Some(ErrorDetail::CurrentMembers(vec![
                    member("alice", 0),
                    member("bob", 1),
                    member("mallory", 2),
                ])),
            }]
        }
        other => vec![other],
    });
    let refused = a.client.send_text(&room("r"), "just us").await;
    assert!(
        matches!(refused, Err(ClientError::MembersAdded { ref added, .. }) if added == &[name("mallory")]),
        "{refused:?}"
    );
    match a.event().await {
        ClientEvent::MemberJoined { member, source, .. } => {
            assert_eq!(member.username, name("mallory"));
            assert_eq!(source, MembershipSource::SendRefused);
        }
        other => panic!("expected mallory's addition to be shown, got {other:?}"),
    }
    assert!(a.shows("r", "mallory was added"), "{:?}", a.lines("r"));
    // The client did not re-send on its own: one SendMessage, with no copy for mallory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sends: Vec<_> = proxy
        .from_clients()
        .into_iter()
        .filter_map(|f| match f.msg {
            ClientMsg::SendMessage(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1);
    assert!(sends[0]
        .envelopes
        .iter()
        .all(|e| !e.recipient.same_as(&name("mallory"))));
}

#[tokio::test]
async fn a_member_injected_into_a_snapshot_after_a_restart_is_shown() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    RawClient::registered(&server.ws_url(), "mallory", &test_key(2)).await;
    a.client.close().await;

    proxy.on_reply(|reply| {
        if let Reply::Joined(snapshot) = reply {
            snapshot.members.push(member("mallory", 2));
        }
    });
    let mut a = alice.login(&proxy.ws_url()).await;
    a.open("r").await;
    match a
        .until("a join", |e| matches!(e, ClientEvent::MemberJoined { .. }))
        .await
    {
        ClientEvent::MemberJoined { member, source, .. } => {
            assert_eq!(member.username, name("mallory"));
            assert_eq!(source, MembershipSource::Reopened);
        }
        _ => unreachable!(),
    }
    assert!(
        a.shows("r", "mallory joined while you were away"),
        "{:?}",
        a.lines("r")
    );
}

#[tokio::test]
async fn a_substituted_key_is_a_loud_warning_and_is_never_encrypted_to() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    // Alice compared Bob's fingerprint out of band.
    a.client.mark_verified(&name("bob")).expect("verified");
    a.client.close().await;

    // The server swaps in a key it holds for Bob.
    proxy.on_reply(|reply| {
        if let Reply::Joined(snapshot) = reply {
            for m in &mut snapshot.members {
                if m.username == name("bob") {
                    *m = member("bob", 2);
                }
            }
        }
    });
    let mut a = alice.login(&proxy.ws_url()).await;
    a.open("r").await;
    match a
        .until("a key change", |e| {
            matches!(e, ClientEvent::KeyChanged { .. })
        })
        .await
    {
        ClientEvent::KeyChanged {
            username, verified, ..
        } => {
            assert_eq!(username, name("bob"));
            assert!(
                verified,
                "a change to a verified key is the strongest warning"
            );
        }
        _ => unreachable!(),
    }
    assert!(
        a.shows("r", "bob's VERIFIED key was REPLACED"),
        "{:?}",
        a.lines("r")
    );
    let refused = a.client.send_text(&room("r"), "secret").await;
    assert!(
        matches!(refused, Err(ClientError::UntrustedKeys { .. })),
        "{refused:?}"
    );
    assert!(proxy
        .from_clients()
        .iter()
        .all(|f| !matches!(f.msg, ClientMsg::SendMessage(_))));
}

#[tokio::test]
async fn the_users_own_key_cannot_be_substituted() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    // The server announces another key for Alice herself.
    proxy.inject(ServerMsg::Push(Push::KeyChanged {
        member: member("alice", 2),
        rooms: vec![room("r")],
    }));
    match a
        .until("the alarm", |e| {
            matches!(e, ClientEvent::OwnKeyMismatch { .. })
        })
        .await
    {
        ClientEvent::OwnKeyMismatch {
            own_fingerprint, ..
        } => assert_eq!(own_fingerprint, alice.identity().fingerprint()),
        _ => unreachable!(),
    }
    assert!(
        a.status().contains("different key for YOU"),
        "{}",
        a.status()
    );
    assert!(matches!(
        a.client.accept_key(&name("alice")),
        Err(ClientError::NoPendingKeyChange(_))
    ));
    // Alice's own copy is still sealed to her own key.
    a.client
        .send_text(&room("r"), "still mine")
        .await
        .expect("sent");
    let send = proxy
        .from_clients()
        .into_iter()
        .find_map(|f| match f.msg {
            ClientMsg::SendMessage(s) => Some(s),
            _ => None,
        })
        .expect("a send");
    let own = send
        .envelopes
        .iter()
        .find(|e| e.recipient == name("alice"))
        .expect("own copy");
    let delivered = DeliveredMessage {
        room: send.room.clone(),
        seq: 1,
        message_id: send.message_id,
        sender: name("alice"),
        server_time_ms: 0,
        recipients: recipients_of(&send.envelopes),
        envelope: own.clone(),
    };
    let text = tests::open_text(&delivered, "alice", &test_key(0), &test_key(0))
        .expect("opens with alice's real key");
    assert_eq!(text, "still mine");
}

/// A message from `sender` signed with `key`, with a chosen device and counter, as
/// `to`'s delivered copy.
fn forged_message(
    sender: &str,
    key: usize,
    device: shared::DeviceId,
    counter: u64,
    to: (&str, usize),
    seq: u64,
) -> DeliveredMessage {
    let body = MessageBody {
        room: room("r"),
        message_id: MessageId::random(),
        sender: name(sender),
        device,
        counter,
        sent_at_ms: 1,
        recipients: vec![name(to.0)],
        text: "signed with the old key".into(),
    };
    let message_id = body.message_id;
    let copies = seal_message(
        &test_key(key),
        body,
        &[Recipient {
            username: name(to.0),
            key: test_key(to.1).to_public_key(),
        }],
    )
    .expect("seals");
    DeliveredMessage {
        room: room("r"),
        seq,
        message_id,
        sender: name(sender),
        server_time_ms: 1,
        recipients: recipients_of(&copies),
        envelope: copies[0].clone(),
    }
}

#[tokio::test]
async fn a_genuine_rotation_moves_the_pin_and_the_retired_key_vouches_only_for_earlier_messages() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, bob) = alice_and_bob(&server, &proxy, &alice).await;
    let before = bob
        .client
        .send_text(&room("r"), "old key")
        .await
        .expect("sent");
    a.until("bob's message", |e| matches!(e, ClientEvent::Message(_)))
        .await;

    let new = Identity::new(name("bob"), (*test_key(5)).clone()).expect("identity");
    bob.client.rotate_key(&new).await.expect("rotates");
    match a
        .until("the rotation", |e| {
            matches!(
                e,
                ClientEvent::KeyRotated { .. } | ClientEvent::KeyChanged { .. }
            )
        })
        .await
    {
        ClientEvent::KeyRotated {
            username,
            new_fingerprint,
            ..
        } => {
            assert_eq!(username, name("bob"));
            assert_eq!(new_fingerprint, new.fingerprint());
        }
        other => panic!("a genuine rotation must not warn: {other:?}"),
    }
    assert!(a.client.pending_key_changes().is_empty());
    assert!(a.shows("r", "bob rotated their key"), "{:?}", a.lines("r"));
    bob.client
        .send_text(&room("r"), "new key")
        .await
        .expect("sent");
    match a
        .until("the new message", |e| matches!(e, ClientEvent::Message(_)))
        .await
    {
        ClientEvent::Message(m) => assert_eq!(m.text, "new key"),
        _ => unreachable!(),
    }

    // Whoever holds the old key cannot sign a later message that Alice believes.
    let forged = forged_message("bob", 1, bob.client.device(), 9, ("alice", 0), 40);
    proxy.inject(ServerMsg::Push(Push::Message(forged)));
    match a.event().await {
        ClientEvent::Rejected(r) => assert_eq!(r.reason, RejectReason::RetiredKey),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // After a restart the pin has moved and the old message still verifies.
    a.client.close().await;
    let mut a = alice.login(&proxy.ws_url()).await;
    a.open("r").await;
    assert!(a.client.pending_key_changes().is_empty());
    let history = a.lines("r");
    assert!(history.iter().any(|l| l.contains("old key")), "{history:?}");
    assert!(history.iter().any(|l| l.contains("new key")), "{history:?}");
    assert!(before.seq > 0);
}

#[tokio::test]
async fn a_forged_rotation_certificate_is_a_loud_warning() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    // The server claims Bob rotated to a key it holds, with a certificate whose
    // endorsement it had to sign itself (it has no Bob's key).
    let mut forged =
        RotationCertificate::issue(&name("bob"), &test_key(2), &test_key(3), 1, Vec::new())
            .expect("issues");
    forged.old_public_key = public_der(&test_key(1));
    let endorsement = forged.signed_fields().expect("fields");
    let refs: Vec<&[u8]> = endorsement.iter().map(Vec::as_slice).collect();
    forged.old_key_signature = signing::sign(&test_key(2), Purpose::KeyEndorsement, &refs);
    forged.new_key_signature = signing::sign(&test_key(3), Purpose::KeyRotation, &refs);
    let mut certificate = Some(forged);
    proxy.on_reply(move |reply| {
        if let Reply::KeyHistory(history) = reply {
            history.certificates.extend(certificate.take());
        }
    });
    proxy.inject(ServerMsg::Push(Push::KeyChanged {
        member: member("bob", 3),
        rooms: vec![room("r")],
    }));
    match a
        .until("a key event", |e| {
            matches!(
                e,
                ClientEvent::KeyRotated { .. } | ClientEvent::KeyChanged { .. }
            )
        })
        .await
    {
        ClientEvent::KeyChanged { username, .. } => assert_eq!(username, name("bob")),
        other => panic!("a forged rotation must warn: {other:?}"),
    }
    assert_eq!(a.client.pending_key_changes().len(), 1);
}

#[tokio::test]
async fn a_login_challenge_relayed_from_another_server_yields_a_proof_that_fails_there() {
    let server_a = TestServer::start().await;
    let server_b = TestServer::start().await;
    // The same key is registered on both.
    RawClient::registered(&server_a.ws_url(), "alice", &test_key(0)).await;
    let alice = Device::new("alice", 0);
    alice
        .register(&server_b.ws_url())
        .await
        .client
        .close()
        .await;

    // Server B (malicious) asks A for a challenge and hands it to the client as its own.
    let mut at_a = RawClient::greeted(&server_a.ws_url()).await;
    let nonce_a = at_a.challenge("alice").await.expect("challenge");
    let proxy = TamperingProxy::start(&server_b.ws_url()).await;
    proxy.on_reply(move |reply| {
        if let Reply::Challenge(c) = reply {
            c.nonce = nonce_a;
        }
    });
    let captured: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let sink = Arc::clone(&captured);
    proxy.on_client(move |f| {
        if let ClientMsg::LoginProof(p) = &f.msg {
            *sink.lock().expect("lock") = Some(p.signature.clone());
        }
        vec![f]
    });
    // The client pinned B's id for B's address earlier; it logs in through the proxy,
    // which it first meets as a new address presenting B's id (B's own address is the
    // pinned one, so the proxy cannot claim it): use a fresh device for the proxy.
    let via_proxy = Device::new("alice", 0);
    let (client, _events) = via_proxy.connect(&proxy.ws_url()).await.expect("connects");
    let _ = client.login(&via_proxy.identity()).await;
    let proof = captured
        .lock()
        .expect("lock")
        .clone()
        .expect("a proof was made");

    // B relays the proof to A: refused, because it is bound to B's id.
    let err = at_a
        .request(ClientMsg::LoginProof(LoginProof { signature: proof }))
        .await
        .expect_err("a proof made for B fails on A");
    assert_eq!(err.code, ErrorCode::AuthFailed);

    // The same nonce signed for A's id would have worked (so the test can fail).
    let mut control = RawClient::greeted(&server_a.ws_url()).await;
    let nonce = control.challenge("alice").await.expect("challenge");
    let good = signing::sign_login(&test_key(0), &name("alice"), &nonce, &control.server_id);
    control
        .request(ClientMsg::LoginProof(LoginProof { signature: good }))
        .await
        .expect("a proof for A's id logs in to A");
}

#[tokio::test]
async fn a_server_that_claims_another_identity_is_refused() {
    let server_a = TestServer::start().await;
    let server_b = TestServer::start().await;
    let alice = Device::new("alice", 0);
    // First contact with A pins A's id for A's address.
    let (client, _e) = alice.connect(&server_a.ws_url()).await.expect("connects");
    let a_id = client.server_info().server_id;
    client.close().await;

    // B's proxy presents A's id.
    let proxy = TamperingProxy::start(&server_b.ws_url()).await;
    proxy.on_reply(move |reply| {
        if let Reply::Hello(ack) = reply {
            ack.server_id = a_id;
        }
    });
    let claimed = alice.connect(&proxy.ws_url()).await;
    assert!(
        matches!(claimed, Err(ClientError::ServerIdentityClaimed { ref other_address, .. }) if *other_address == server_a.ws_url()),
        "{claimed:?}"
    );
    // An address whose server presents another id than on first contact is refused too.
    let other = Device::new("alice", 0);
    let proxy_b = TamperingProxy::start(&server_b.ws_url()).await;
    let (client, _e) = other
        .connect(&proxy_b.ws_url())
        .await
        .expect("first contact");
    client.close().await;
    proxy_b.on_reply(|reply| {
        if let Reply::Hello(ack) = reply {
            ack.server_id = shared::ServerId([7; 16]);
        }
    });
    let changed = other.connect(&proxy_b.ws_url()).await;
    assert!(
        matches!(changed, Err(ClientError::ServerIdentityChanged { .. })),
        "{changed:?}"
    );
}

#[tokio::test]
async fn a_flooding_server_is_disconnected_with_a_clear_reason() {
    let server = TestServer::start().await;
    let proxy = TamperingProxy::start(&server.ws_url()).await;
    let alice = Device::new("alice", 0);
    let (mut a, _bob) = alice_and_bob(&server, &proxy, &alice).await;
    // The UI is busy; the server sends far more than the client's queues hold.
    for _ in 0..(client_tui::events::EVENT_QUEUE + 2_000) {
        proxy.inject(ServerMsg::Push(Push::MemberLeft {
            room: room("r"),
            username: name("bob"),
        }));
    }
    // The UI takes nothing (it is busy) until the client has given up on the server: more
    // arrives than both queues hold, so that happens whatever the machine's speed. Then
    // the UI drains what arrived (showing thousands of notices is not what is tested).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while a.client.is_connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client did not disconnect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = 0;
    let end = loop {
        let event = tokio::time::timeout(WAIT, a.events.recv())
            .await
            .unwrap_or_else(|_| panic!("the client ends the connection in time ({seen} events)"))
            .expect("events open");
        seen += 1;
        if matches!(event, ClientEvent::Disconnected { .. }) {
            a.ui.apply(UiEvent::Client(event.clone()));
            break event;
        }
    };
    assert!(
        matches!(&end, ClientEvent::Disconnected { reason } if reason == FLOOD_REASON),
        "{end:?}"
    );
    assert!(a.status().contains("to protect itself"), "{}", a.status());
}
