//! Drives the public `Client` against a scripted in-process WebSocket server, so the
//! connection, request routing, push processing, pinning and re-encryption logic are
//! tested without the real server.

use std::sync::Arc;
use std::time::Duration;

use client_tui::{
    Client, ClientConfig, ClientError, ClientEvent, EventReceiver, Identity, KeyStatus,
    MembershipSource, PinStore, RejectReason,
};
use futures_util::{SinkExt, StreamExt};
use shared::crypto::keys::{self, Fingerprint};
use shared::crypto::message::{open_message, seal_message, MessageBody, Received, Recipient};
use shared::crypto::rotation::RotationCertificate;
use shared::crypto::signing::verify_login;
use shared::crypto::RsaPrivateKey;
use shared::protocol::{
    codec, direct_room_name, recipients_of, Challenge, ClientFrame, ClientMsg, DeliveredMessage,
    HelloAck, HistoryPage, KeyHistory, LoggedIn, MemberInfo, ModerationAction, Push, Reply,
    RoomChange, RoomEvent, RoomKind, RoomSnapshot, SendAck, ServerMsg, PROTOCOL_VERSION,
};
use shared::{
    DeviceId, ErrorCode, ErrorDetail, MessageId, RequestId, RoomName, ServerId, Username,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

fn key(n: usize) -> Arc<RsaPrivateKey> {
    let path = format!(
        "{}/../tests/fixtures/keys/rsa2048-{n:02}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read_to_string(path).expect("fixture exists");
    Arc::new(keys::private_from_pem(&pem, None).expect("fixture parses"))
}

fn user(name: &str) -> Username {
    Username::parse(name).expect("valid username")
}

fn room(name: &str) -> RoomName {
    RoomName::parse(name).expect("valid room")
}

fn der(k: &RsaPrivateKey) -> Vec<u8> {
    keys::public_to_der(&k.to_public_key()).expect("encodes")
}

fn member(name: &str, k: &RsaPrivateKey) -> MemberInfo {
    MemberInfo {
        username: user(name),
        public_key: der(k),
        fingerprint: "not trusted by the client".into(),
    }
}

/// The mock server's identity.
const MOCK_SERVER_ID: ServerId = ServerId([9; 16]);

/// Seals `text` from `sender` to `recipients` and returns `to`'s delivered copy.
fn delivered(
    room_name: &str,
    seq: u64,
    sender: (&str, &RsaPrivateKey),
    recipients: &[(&str, &RsaPrivateKey)],
    to: &str,
    text: &str,
) -> DeliveredMessage {
    let message_id = MessageId::random();
    let body = MessageBody {
        room: room(room_name),
        message_id,
        sender: user(sender.0),
        device: DeviceId([1; 16]),
        // One message per seq in these scripts, so the seq is a fine counter.
        counter: seq,
        sent_at_ms: 42,
        recipients: recipients.iter().map(|(n, _)| user(n)).collect(),
        text: text.to_owned(),
    };
    let keys: Vec<Recipient> = recipients
        .iter()
        .map(|(n, k)| Recipient {
            username: user(n),
            key: k.to_public_key(),
        })
        .collect();
    let copies = seal_message(sender.1, body, &keys).expect("seals");
    let envelope = copies
        .iter()
        .find(|e| e.recipient.same_as(&user(to)))
        .expect("copy for recipient")
        .clone();
    DeliveredMessage {
        room: room(room_name),
        seq,
        message_id,
        sender: user(sender.0),
        server_time_ms: 1000 + seq,
        recipients: recipients_of(&copies),
        envelope,
    }
}

/// The server side of one connection.
struct Peer {
    ws: WebSocketStream<TcpStream>,
}

impl Peer {
    async fn recv(&mut self) -> ClientFrame {
        loop {
            let msg = self
                .ws
                .next()
                .await
                .expect("client still connected")
                .expect("readable");
            if let Message::Binary(bytes) = msg {
                return codec::decode_client(&bytes).expect("client frame decodes");
            }
        }
    }

    async fn send(&mut self, msg: ServerMsg) {
        let bytes = codec::encode_server(&msg).expect("encodes");
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("writable");
    }

    async fn reply(&mut self, request_id: RequestId, reply: Reply) {
        self.send(ServerMsg::Reply { request_id, reply }).await;
    }

    async fn push(&mut self, push: Push) {
        self.send(ServerMsg::Push(push)).await;
    }

    /// Answers `Hello`.
    async fn greet(&mut self) {
        let frame = self.recv().await;
        assert!(
            matches!(frame.msg, ClientMsg::Hello(ref h) if h.protocol_version == PROTOCOL_VERSION)
        );
        self.reply(
            frame.request_id,
            Reply::Hello(HelloAck {
                protocol_version: PROTOCOL_VERSION,
                server: "mock".into(),
                server_id: MOCK_SERVER_ID,
                max_frame_bytes: 1 << 20,
                max_message_bytes: 65_536,
            }),
        )
        .await;
    }

    /// Runs the login exchange for `name`, checking the proof against `k`.
    async fn login(&mut self, name: &str, k: &RsaPrivateKey) {
        self.login_pushing_first(name, k, None).await;
    }

    /// Logs `name` in as [`Peer::login`] does, but first sends `early` (if any) just before
    /// the `LoggedIn` reply, so that it reaches the client before the login is recorded.
    async fn login_pushing_first(&mut self, name: &str, k: &RsaPrivateKey, early: Option<Push>) {
        let frame = self.recv().await;
        let ClientMsg::LoginStart(start) = frame.msg else {
            panic!("expected LoginStart, got {:?}", frame.msg)
        };
        assert!(start.username.same_as(&user(name)));
        let nonce = [7u8; 32];
        self.reply(
            frame.request_id,
            Reply::Challenge(Challenge {
                nonce,
                expires_in_secs: 30,
            }),
        )
        .await;
        let frame = self.recv().await;
        let ClientMsg::LoginProof(proof) = frame.msg else {
            panic!("expected LoginProof")
        };
        verify_login(
            &k.to_public_key(),
            &user(name),
            &nonce,
            &MOCK_SERVER_ID,
            &proof.signature,
        )
        .expect("login proof verifies");
        if let Some(push) = early {
            self.push(push).await;
        }
        self.reply(
            frame.request_id,
            Reply::LoggedIn(LoggedIn {
                username: user(name),
                rooms: vec![room("general")],
                blocked: Vec::new(),
            }),
        )
        .await;
    }

    /// Answers a `GetKeyHistory` for `name` with `certificates`.
    async fn key_history(&mut self, name: &str, certificates: Vec<RotationCertificate>) {
        let frame = self.recv().await;
        let ClientMsg::GetKeyHistory(get) = frame.msg else {
            panic!("expected GetKeyHistory, got {:?}", frame.msg)
        };
        assert!(get.username.same_as(&user(name)));
        self.reply(
            frame.request_id,
            Reply::KeyHistory(KeyHistory {
                username: user(name),
                certificates,
            }),
        )
        .await;
    }

    /// Answers a `JoinRoom` for `general` with `members` and `history`.
    async fn joined(&mut self, members: Vec<MemberInfo>, history: Vec<DeliveredMessage>) {
        self.joined_pushing_first(members, history, None).await;
    }

    /// Answers a `JoinRoom` as [`Peer::joined`] does, but first sends `early` (if any) just
    /// before the `Joined` reply, so that it reaches the client before the snapshot is
    /// recorded.
    async fn joined_pushing_first(
        &mut self,
        members: Vec<MemberInfo>,
        history: Vec<DeliveredMessage>,
        early: Option<Push>,
    ) {
        let frame = self.recv().await;
        assert!(matches!(frame.msg, ClientMsg::JoinRoom(ref j) if j.name == room("general")));
        if let Some(push) = early {
            self.push(push).await;
        }
        self.reply(
            frame.request_id,
            Reply::Joined(RoomSnapshot {
                room: room("general"),
                kind: shared::protocol::RoomKind::Group,
                owner: user("alice"),
                admins: Vec::new(),
                topic: None,
                has_password: false,
                hidden: false,
                read_up_to: 0,
                online: vec![],
                members,
                history: HistoryPage {
                    room: room("general"),
                    messages: history,
                    has_more: false,
                    next_before_seq: None,
                },
            }),
        )
        .await;
    }
}

/// Starts a one-connection server running `script` and returns its URL.
async fn serve<F, Fut>(script: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has address");
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accepts");
        let ws = tokio_tungstenite::accept_async(tcp)
            .await
            .expect("upgrades");
        script(Peer { ws }).await;
    });
    (format!("ws://{addr}/ws"), handle)
}

async fn connect(url: &str) -> (Client, EventReceiver) {
    let config = ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    Client::connect_with(url, PinStore::in_memory(), config)
        .await
        .expect("connects")
}

async fn next_event(events: &mut EventReceiver) -> ClientEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event arrives in time")
        .expect("event channel open")
}

fn alice() -> Identity {
    Identity::new(user("alice"), (*key(0)).clone()).expect("valid identity")
}

#[tokio::test]
async fn protocol_version_refusal_is_typed() {
    let (url, server) = serve(|mut peer| async move {
        let frame = peer.recv().await;
        peer.send(ServerMsg::Error {
            request_id: Some(frame.request_id),
            code: ErrorCode::ProtocolVersion,
            message: "only version 99".into(),
            detail: None,
        })
        .await;
        let _ = peer.ws.close(None).await;
    })
    .await;
    let result = Client::connect(&url, PinStore::in_memory()).await;
    assert!(
        matches!(result, Err(ClientError::ProtocolVersion { ref message }) if message.contains("99")),
        "got {result:?}"
    );
    server.await.expect("server script");
}

#[tokio::test]
async fn bad_url_is_rejected_before_connecting() {
    let result = Client::connect("http://example.com", PinStore::in_memory()).await;
    assert!(matches!(result, Err(ClientError::InvalidUrl(_))));
}

#[tokio::test]
async fn login_join_history_and_send_with_member_refresh() {
    let (a, b, c) = (key(0), key(1), key(2));
    let (sa, sb, sc) = (a.clone(), b.clone(), c.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        let old = delivered(
            "general",
            1,
            ("bob", &sb),
            &[("alice", &sa), ("bob", &sb)],
            "alice",
            "hi alice",
        );
        peer.joined(vec![member("alice", &sa), member("bob", &sb)], vec![old])
            .await;

        // First attempt: sealed for alice and bob, in member order. Carol joined meanwhile.
        let frame = peer.recv().await;
        let ClientMsg::SendMessage(send) = frame.msg else {
            panic!("expected SendMessage")
        };
        let names: Vec<_> = send
            .envelopes
            .iter()
            .map(|e| e.recipient.canonical())
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        peer.send(ServerMsg::Error {
            request_id: Some(frame.request_id),
            code: ErrorCode::RecipientMismatch,
            message: "members changed".into(),
            detail: Some(ErrorDetail::CurrentMembers(vec![
                member("alice", &sa),
                member("bob", &sb),
                member("carol", &sc),
            ])),
        })
        .await;

        // Carol's addition was shown to the user before anything was encrypted to her:
        // the client does not retry on its own. The user's next send includes her, with
        // the counter the refused attempt gave back.
        let frame = peer.recv().await;
        let ClientMsg::SendMessage(retry) = frame.msg else {
            panic!("expected the second SendMessage")
        };
        assert_ne!(retry.message_id, send.message_id, "a new send by the user");
        let names: Vec<_> = retry
            .envelopes
            .iter()
            .map(|e| e.recipient.canonical())
            .collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        let carols = retry
            .envelopes
            .iter()
            .find(|e| e.recipient.same_as(&user("carol")))
            .expect("carol's copy");
        let body = open_message(
            Received {
                room: &retry.room,
                message_id: &retry.message_id,
                sender: &user("alice"),
                recipients: &recipients_of(&retry.envelopes),
            },
            &user("carol"),
            &sc,
            carols,
            &sa.to_public_key(),
        )
        .expect("carol opens her copy");
        assert_eq!(body.text, "hello everyone");
        assert_eq!(body.counter, 1, "the refused attempt's counter is reused");
        peer.reply(
            frame.request_id,
            Reply::Sent(SendAck {
                room: retry.room.clone(),
                message_id: retry.message_id,
                seq: 2,
                server_time_ms: 2000,
            }),
        )
        .await;

        // A live message from carol (already known from the refreshed member list).
        let live = delivered(
            "general",
            3,
            ("carol", &sc),
            &[("alice", &sa), ("bob", &sb), ("carol", &sc)],
            "alice",
            "hi from carol",
        );
        peer.push(Push::Message(live.clone())).await;
        // Pushed again at the same position: dropped quietly.
        peer.push(Push::Message(live.clone())).await;
        // Replayed at a new position: rejected loudly.
        let mut replay = live;
        replay.seq = 4;
        peer.push(Push::Message(replay)).await;
        // Keep the connection open until the client is done.
        while peer.ws.next().await.is_some() {}
    })
    .await;

    let (client, mut events) = connect(&url).await;
    assert_eq!(client.server_info().server, "mock");
    let logged_in = client.login(&alice()).await.expect("logs in");
    assert_eq!(logged_in.rooms, vec![room("general")]);
    assert_eq!(client.username(), Some(user("alice")));

    let view = client
        .join_room(&room("general"), None)
        .await
        .expect("joins");
    assert_eq!(view.members.len(), 2);
    assert!(view.members.iter().all(|m| m.status == KeyStatus::Trusted));
    assert_eq!(
        view.members[1].fingerprint,
        Fingerprint::of_der(&der(&b)),
        "fingerprint is computed by the client"
    );
    assert_eq!(view.history.messages.len(), 1);
    assert_eq!(view.history.messages[0].text, "hi alice");
    assert_eq!(view.history.messages[0].sender, user("bob"));
    assert!(view.history.rejected.is_empty());

    let refused = client.send_text(&room("general"), "hello everyone").await;
    assert!(
        matches!(refused, Err(ClientError::MembersAdded { ref added, .. }) if added == &[user("carol")]),
        "got {refused:?}"
    );
    match next_event(&mut events).await {
        ClientEvent::MemberJoined { member, source, .. } => {
            assert_eq!(member.username, user("carol"));
            assert_eq!(source, MembershipSource::SendRefused);
        }
        other => panic!("expected carol's join to be shown, got {other:?}"),
    }
    assert_eq!(client.members(&room("general")).map(|m| m.len()), Some(3));
    let ack = client
        .send_text(&room("general"), "hello everyone")
        .await
        .expect("sends once the addition was shown");
    assert_eq!(ack.seq, 2);

    match next_event(&mut events).await {
        ClientEvent::Message(m) => {
            assert_eq!(m.text, "hi from carol");
            assert_eq!(m.seq, 3);
            assert_eq!(m.sent_at_ms, 42);
        }
        other => panic!("expected carol's message, got {other:?}"),
    }
    match next_event(&mut events).await {
        ClientEvent::Rejected(r) => {
            assert_eq!(r.seq, 4);
            assert_eq!(r.reason, RejectReason::Replayed { counter: 3 });
        }
        other => panic!("expected the replay to be rejected, got {other:?}"),
    }
    drop(client);
    server.await.expect("server script");
}

#[tokio::test]
async fn unknown_sender_key_is_fetched_and_pinned() {
    let (a, d) = (key(0), key(3));
    let (sa, sd) = (a.clone(), d.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        // Dave (who since left the room) sent this before; alice never saw his key.
        let msg = delivered(
            "general",
            5,
            ("dave", &sd),
            &[("alice", &sa), ("dave", &sd)],
            "alice",
            "bye",
        );
        peer.push(Push::Message(msg)).await;
        let frame = peer.recv().await;
        let ClientMsg::GetUserKey(get) = frame.msg else {
            panic!("expected GetUserKey")
        };
        assert!(get.username.same_as(&user("dave")));
        peer.reply(frame.request_id, Reply::UserKey(member("dave", &sd)))
            .await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = connect(&url).await;
    client.login(&alice()).await.expect("logs in");
    match next_event(&mut events).await {
        ClientEvent::Message(m) => {
            assert_eq!(m.sender, user("dave"));
            assert_eq!(m.text, "bye");
        }
        other => panic!("expected dave's message, got {other:?}"),
    }
    drop(client);
    server.await.expect("server script");
}

/// A push read before the login's reply is recorded (the reader forwards both at once) is
/// handled as the logged-in user's, not refused as being for a room they are not in.
#[tokio::test]
async fn a_push_racing_the_login_reply_waits_for_the_login() {
    let (a, b) = (key(0), key(1));
    let (sa, sb) = (a.clone(), b.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        let msg = delivered(
            "general",
            3,
            ("bob", &sb),
            &[("alice", &sa), ("bob", &sb)],
            "alice",
            "right after login",
        );
        peer.login_pushing_first("alice", &sa, Some(Push::Message(msg)))
            .await;
        // Bob's key, fetched to verify the message.
        let frame = peer.recv().await;
        let ClientMsg::GetUserKey(_) = frame.msg else {
            panic!("expected GetUserKey")
        };
        peer.reply(frame.request_id, Reply::UserKey(member("bob", &sb)))
            .await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = connect(&url).await;
    client.login(&alice()).await.expect("logs in");
    match next_event(&mut events).await {
        ClientEvent::Message(m) => assert_eq!(m.text, "right after login"),
        other => panic!("expected bob's message, got {other:?}"),
    }
    drop(client);
    server.await.expect("server script");
}

#[tokio::test]
async fn changed_key_blocks_sending_until_accepted() {
    let (a, b1, b2) = (key(0), key(1), key(4));
    let (sa, sb1, sb2) = (a.clone(), b1.clone(), b2.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        peer.joined(vec![member("alice", &sa), member("bob", &sb1)], vec![])
            .await;
        // The server claims bob has a new key, with no rotation certificate for it.
        peer.push(Push::KeyChanged {
            member: member("bob", &sb2),
            rooms: vec![room("general")],
        })
        .await;
        peer.key_history("bob", vec![]).await;
        // A message signed with the new key.
        let msg = delivered(
            "general",
            1,
            ("bob", &sb2),
            &[("alice", &sa), ("bob", &sb2)],
            "alice",
            "trust me",
        );
        peer.push(Push::Message(msg)).await;

        // After acceptance the client seals to bob's new key.
        let frame = peer.recv().await;
        let ClientMsg::SendMessage(send) = frame.msg else {
            panic!("expected SendMessage")
        };
        let bobs = send
            .envelopes
            .iter()
            .find(|e| e.recipient.same_as(&user("bob")))
            .expect("bob's copy");
        open_message(
            Received {
                room: &send.room,
                message_id: &send.message_id,
                sender: &user("alice"),
                recipients: &recipients_of(&send.envelopes),
            },
            &user("bob"),
            &sb2,
            bobs,
            &sa.to_public_key(),
        )
        .expect("sealed to bob's accepted new key");
        peer.reply(
            frame.request_id,
            Reply::Sent(SendAck {
                room: send.room.clone(),
                message_id: send.message_id,
                seq: 2,
                server_time_ms: 1,
            }),
        )
        .await;
        while peer.ws.next().await.is_some() {}
    })
    .await;

    let (client, mut events) = alice_in_general(&url).await;

    match next_event(&mut events).await {
        ClientEvent::KeyChanged {
            username,
            pinned_fingerprint,
            new_fingerprint,
            verified,
            rooms,
        } => {
            assert!(!verified);
            assert_eq!(username, user("bob"));
            assert_eq!(pinned_fingerprint, Fingerprint::of_der(&der(&b1)));
            assert_eq!(new_fingerprint, Fingerprint::of_der(&der(&b2)));
            assert_eq!(rooms, vec![room("general")]);
        }
        other => panic!("expected KeyChanged, got {other:?}"),
    }
    match next_event(&mut events).await {
        ClientEvent::Rejected(r) => assert_eq!(r.reason, RejectReason::UntrustedSenderKey),
        other => panic!("expected the message to be refused, got {other:?}"),
    }
    assert_eq!(client.pending_key_changes().len(), 1);
    let refused = client.send_text(&room("general"), "hi").await;
    assert!(
        matches!(refused, Err(ClientError::UntrustedKeys { ref usernames, .. }) if usernames == &[user("bob")]),
        "got {refused:?}"
    );

    let accepted = client.accept_key(&user("bob")).expect("accepts");
    assert_eq!(accepted, Fingerprint::of_der(&der(&b2)));
    assert!(client.pending_key_changes().is_empty());
    assert!(matches!(
        client.accept_key(&user("bob")),
        Err(ClientError::NoPendingKeyChange(_))
    ));
    client
        .send_text(&room("general"), "hi")
        .await
        .expect("sends after acceptance");
    drop(client);
    server.await.expect("server script");
}

#[tokio::test]
async fn connection_loss_fails_pending_requests_and_emits_disconnected() {
    let (url, server) = serve(|mut peer| async move {
        peer.greet().await;
        // Read the next request and drop the connection without answering.
        let _ = peer.recv().await;
    })
    .await;
    let (client, mut events) = connect(&url).await;
    let result = client.list_rooms().await;
    assert!(
        matches!(result, Err(ClientError::Disconnected { .. })),
        "got {result:?}"
    );
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected { .. }
    ));
    assert!(!client.is_connected());
    assert!(matches!(
        client.list_rooms().await,
        Err(ClientError::Disconnected { .. })
    ));
    server.await.expect("server script");
}

#[tokio::test]
async fn sending_requires_login_and_an_open_room() {
    let (url, server) = serve(|mut peer| async move {
        peer.greet().await;
        peer.login("alice", &key(0)).await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = connect(&url).await;
    assert!(matches!(
        client.send_text(&room("general"), "x").await,
        Err(ClientError::NotLoggedIn)
    ));
    client.login(&alice()).await.expect("logs in");
    assert!(matches!(
        client.send_text(&room("general"), "x").await,
        Err(ClientError::RoomNotOpen(_))
    ));
    client.close().await;
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected { .. }
    ));
    server.await.expect("server script");
}

#[tokio::test]
async fn wss_failure_is_a_typed_error_not_a_panic() {
    // A TCP peer that hangs up during the TLS handshake: exercises the rustls set-up
    // (crypto provider, webpki roots) without needing a certificate.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = listener.local_addr().expect("has address").port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accepts");
        drop(tcp);
    });
    let result =
        Client::connect(&format!("wss://localhost:{port}/ws"), PinStore::in_memory()).await;
    assert!(
        matches!(result, Err(ClientError::Transport(_))),
        "got {result:?}"
    );
    server.await.expect("server task");
}

#[tokio::test]
async fn a_message_sealed_for_someone_not_shown_as_a_member_is_flagged() {
    let (a, b, e) = (key(0), key(1), key(3));
    let (sa, sb, se) = (a.clone(), b.clone(), e.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        peer.joined(vec![member("alice", &sa), member("bob", &sb)], vec![])
            .await;
        // Bob's client was told eve is in the room (the server lied to him, not to
        // alice): his signed recipient list names her.
        let msg = delivered(
            "general",
            1,
            ("bob", &sb),
            &[("alice", &sa), ("bob", &sb), ("eve", &se)],
            "alice",
            "between us",
        );
        peer.push(Push::Message(msg)).await;
        // A message whose signed recipients omit alice cannot be hers.
        let mut other = delivered(
            "general",
            2,
            ("bob", &sb),
            &[("alice", &sa), ("bob", &sb)],
            "alice",
            "for bob only",
        );
        other.recipients.retain(|r| !r.same_as(&user("alice")));
        peer.push(Push::Message(other)).await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = alice_in_general(&url).await;
    match next_event(&mut events).await {
        ClientEvent::Message(m) => {
            assert_eq!(m.text, "between us");
            assert_eq!(m.unknown_recipients, vec![user("eve")]);
        }
        other => panic!("expected the flagged message, got {other:?}"),
    }
    match next_event(&mut events).await {
        ClientEvent::Rejected(r) => assert!(
            matches!(
                r.reason,
                RejectReason::Mismatch(_) | RejectReason::BadSignature
            ),
            "{r:?}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(client);
    server.await.expect("server script");
}

/// A message pushed for a room while the user's join of it is being answered (the user
/// is a member already, from the login) is held until the snapshot, which brings the
/// sender's key, is recorded: the client does not ask the server for that key.
#[tokio::test]
async fn a_message_pushed_before_the_join_reply_waits_for_the_snapshots_keys() {
    let (a, b) = (key(0), key(1));
    let (sa, sb) = (a.clone(), b.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        let early = delivered(
            "general",
            1,
            ("bob", &sb),
            &[("alice", &sa), ("bob", &sb)],
            "alice",
            "sent while you joined",
        );
        peer.joined_pushing_first(
            vec![member("alice", &sa), member("bob", &sb)],
            vec![],
            Some(Push::Message(early)),
        )
        .await;
        // Nothing more is asked: the snapshot brought bob's key.
        if let Ok(Some(Ok(Message::Binary(bytes)))) =
            tokio::time::timeout(Duration::from_secs(1), peer.ws.next()).await
        {
            let frame = codec::decode_client(&bytes).expect("client frame decodes");
            panic!("the client asked the server: {:?}", frame.msg);
        }
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = alice_in_general(&url).await;
    match next_event(&mut events).await {
        ClientEvent::Message(m) => {
            assert_eq!(m.text, "sent while you joined");
            assert!(m.unknown_recipients.is_empty());
        }
        other => panic!("expected the message, got {other:?}"),
    }
    drop(client);
    server.await.expect("server script");
}

/// Alice, logged in, with `general` open.
async fn alice_in_general(url: &str) -> (Client, EventReceiver) {
    let (client, events) = connect(url).await;
    client.login(&alice()).await.expect("logs in");
    client
        .join_room(&room("general"), None)
        .await
        .expect("joins");
    (client, events)
}

/// A room event pushed for `room_name` by `actor`.
fn room_event(room_name: &str, actor: &str, change: RoomChange) -> Push {
    Push::RoomEvent(RoomEvent {
        room: room(room_name),
        actor: user(actor),
        at_ms: 5,
        change,
    })
}

/// The server is the adversary: a kick or ban takes the member out of the set the next
/// message is sealed for (exactly as a leave does), events for rooms the user is not in
/// are dropped, typing and read pushes count only for the user's rooms (and not for the
/// user), a read marker only moves forward, and a deleted room is closed.
#[tokio::test]
async fn kicked_and_banned_members_get_no_copy_and_foreign_pushes_are_dropped() {
    let (a, b, c) = (key(0), key(1), key(2));
    let (sa, sb, sc) = (a.clone(), b.clone(), c.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        peer.joined(
            vec![
                member("alice", &sa),
                member("bob", &sb),
                member("carol", &sc),
            ],
            Vec::new(),
        )
        .await;
        // Not the user's room, or the user themself: dropped.
        peer.push(room_event(
            "elsewhere",
            "mallory",
            RoomChange::Kicked {
                user: user("alice"),
            },
        ))
        .await;
        for (r, who) in [("elsewhere", "bob"), ("general", "alice")] {
            peer.push(Push::Typing {
                room: room(r),
                username: user(who),
                typing: true,
            })
            .await;
        }
        peer.push(Push::Typing {
            room: room("general"),
            username: user("bob"),
            typing: true,
        })
        .await;
        for (r, seq) in [
            ("general", 7),
            ("general", 3),
            ("elsewhere", 9),
            ("general", 8),
        ] {
            peer.push(Push::ReadUpTo { room: room(r), seq }).await;
        }
        peer.push(room_event(
            "general",
            "alice",
            RoomChange::Kicked { user: user("bob") },
        ))
        .await;
        peer.push(room_event(
            "general",
            "alice",
            RoomChange::Banned {
                user: user("carol"),
            },
        ))
        .await;
        // The next message is sealed for alice alone.
        let frame = peer.recv().await;
        let ClientMsg::SendMessage(send) = frame.msg else {
            panic!("expected SendMessage, got {:?}", frame.msg)
        };
        let names: Vec<_> = send
            .envelopes
            .iter()
            .map(|e| e.recipient.canonical())
            .collect();
        assert_eq!(names, ["alice"], "no copy for a kicked or banned member");
        peer.reply(
            frame.request_id,
            Reply::Sent(SendAck {
                room: send.room.clone(),
                message_id: send.message_id,
                seq: 9,
                server_time_ms: 9,
            }),
        )
        .await;
        peer.push(room_event("general", "alice", RoomChange::RoomDeleted))
            .await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = alice_in_general(&url).await;
    match next_event(&mut events).await {
        ClientEvent::Typing {
            room: r,
            username,
            typing: true,
        } => {
            assert_eq!((r, username), (room("general"), user("bob")));
        }
        other => panic!("expected bob typing in general first, got {other:?}"),
    }
    let mut marks = Vec::new();
    for _ in 0..2 {
        match next_event(&mut events).await {
            ClientEvent::ReadUpTo { room: r, seq } => {
                assert_eq!(r, room("general"));
                marks.push(seq);
            }
            other => panic!("expected a read marker, got {other:?}"),
        }
    }
    assert_eq!(marks, [7, 8], "a marker never moves back");
    assert_eq!(client.read_up_to(&room("general")), 8);
    for expected in [
        RoomChange::Kicked { user: user("bob") },
        RoomChange::Banned {
            user: user("carol"),
        },
    ] {
        match next_event(&mut events).await {
            ClientEvent::RoomChanged(event) => assert_eq!(event.change, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    let members: Vec<_> = client
        .members(&room("general"))
        .expect("open")
        .into_iter()
        .map(|m| m.username)
        .collect();
    assert_eq!(members, [user("alice")]);
    client
        .send_text(&room("general"), "only for me now")
        .await
        .expect("sends");
    match next_event(&mut events).await {
        ClientEvent::RoomChanged(event) => assert_eq!(event.change, RoomChange::RoomDeleted),
        other => panic!("expected the deletion, got {other:?}"),
    }
    assert!(client.open_rooms().is_empty(), "a deleted room is closed");
    assert!(matches!(
        client.send_text(&room("general"), "gone").await,
        Err(ClientError::RoomNotOpen(_))
    ));
    drop(client);
    server.await.expect("server script");
}

/// A direct conversation is believed only under the name of its two users; the peer's
/// key goes through the pins (a key other than the pinned one is a loud change, not
/// trusted because the server says so); nothing is sealed there for a third member.
#[tokio::test]
async fn a_direct_conversation_is_checked_like_any_room_and_never_sealed_for_a_third() {
    let (a, b1, b2, c) = (key(0), key(1), key(4), key(2));
    let (sa, sb1, sb2, sc) = (a.clone(), b1.clone(), b2.clone(), c.clone());
    let dm = direct_room_name(&user("alice"), &user("bob"));
    let dm_server = dm.clone();
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        peer.joined(vec![member("alice", &sa), member("bob", &sb1)], Vec::new())
            .await;
        // Another pair's conversation passed off as alice and bob's: dropped.
        peer.push(Push::DirectOpened {
            room: direct_room_name(&user("alice"), &user("carol")),
            peer: member("bob", &sb1),
        })
        .await;
        // The right name, but bob's key is not the pinned one.
        peer.push(Push::DirectOpened {
            room: dm_server.clone(),
            peer: member("bob", &sb2),
        })
        .await;
        peer.key_history("bob", Vec::new()).await;
        let frame = peer.recv().await;
        let ClientMsg::OpenDirect(open) = frame.msg else {
            panic!("expected OpenDirect, got {:?}", frame.msg)
        };
        assert!(open.with.same_as(&user("bob")));
        peer.reply(
            frame.request_id,
            Reply::Joined(RoomSnapshot {
                room: dm_server.clone(),
                kind: RoomKind::Direct { peer: user("bob") },
                owner: user("bob"),
                admins: Vec::new(),
                topic: None,
                has_password: false,
                hidden: true,
                read_up_to: 0,
                online: vec![],
                members: vec![
                    member("alice", &sa),
                    member("bob", &sb2),
                    member("carol", &sc),
                ],
                history: HistoryPage {
                    room: dm_server,
                    messages: Vec::new(),
                    has_more: false,
                    next_before_seq: None,
                },
            }),
        )
        .await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = alice_in_general(&url).await;
    match next_event(&mut events).await {
        ClientEvent::KeyChanged { username, .. } => assert_eq!(username, user("bob")),
        other => panic!("expected bob's key change first, got {other:?}"),
    }
    match next_event(&mut events).await {
        ClientEvent::DirectOpened { room: r, peer } => {
            assert_eq!(r, dm);
            assert_eq!(peer.username, user("bob"));
            assert!(
                matches!(peer.status, KeyStatus::Unaccepted { .. }),
                "the server's word does not make a key trusted: {:?}",
                peer.status
            );
        }
        other => panic!("expected the conversation, got {other:?}"),
    }
    let view = client.open_direct(&user("bob")).await.expect("opens");
    assert_eq!(view.kind, RoomKind::Direct { peer: user("bob") });
    let refused = client.send_text(&dm, "just us?").await;
    assert!(
        matches!(refused, Err(ClientError::DirectIntruders { ref usernames, .. }) if usernames == &[user("carol")]),
        "got {refused:?}"
    );
    drop(client);
    server.await.expect("server script");
}

/// The answer to the user's own moderation and the push of the same event are reported
/// once; a refusal keeps its typed code.
#[tokio::test]
async fn moderation_is_reported_once_and_refusals_are_typed() {
    let (a, b) = (key(0), key(1));
    let (sa, sb) = (a.clone(), b.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        peer.joined(vec![member("alice", &sa), member("bob", &sb)], Vec::new())
            .await;
        let frame = peer.recv().await;
        let ClientMsg::Moderate(moderate) = frame.msg else {
            panic!("expected Moderate, got {:?}", frame.msg)
        };
        assert_eq!(
            moderate.action,
            ModerationAction::SetTopic {
                topic: Some("plans".into())
            }
        );
        let event = RoomEvent {
            room: room("general"),
            actor: user("alice"),
            at_ms: 5,
            change: RoomChange::TopicChanged {
                topic: Some("plans".into()),
            },
        };
        peer.push(Push::RoomEvent(event.clone())).await;
        peer.reply(frame.request_id, Reply::Moderated(event)).await;
        // A topic that would rewrite the terminal: dropped.
        peer.push(room_event(
            "general",
            "bob",
            RoomChange::TopicChanged {
                topic: Some("\u{1b}[2J".into()),
            },
        ))
        .await;
        peer.push(Push::Typing {
            room: room("general"),
            username: user("bob"),
            typing: false,
        })
        .await;
        let frame = peer.recv().await;
        peer.send(ServerMsg::Error {
            request_id: Some(frame.request_id),
            code: ErrorCode::NotPermitted,
            message: "only the owner".into(),
            detail: None,
        })
        .await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = alice_in_general(&url).await;
    let event = client
        .moderate(
            &room("general"),
            ModerationAction::SetTopic {
                topic: Some("plans".into()),
            },
        )
        .await
        .expect("moderates");
    assert_eq!(event.actor, user("alice"));
    match next_event(&mut events).await {
        ClientEvent::RoomChanged(e) => assert_eq!(e, event),
        other => panic!("expected the topic change, got {other:?}"),
    }
    match next_event(&mut events).await {
        ClientEvent::Typing { typing: false, .. } => {}
        other => panic!("expected no second report and no bad topic, got {other:?}"),
    }
    let refused = client
        .moderate(&room("general"), ModerationAction::DeleteRoom)
        .await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrorCode::NotPermitted)
    );
    drop(client);
    server.await.expect("server script");
}

/// Close code 4002 (the account was deleted) is reported before the disconnection.
#[tokio::test]
async fn an_account_deleted_close_is_reported() {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let a = key(0);
    let sa = a.clone();
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        let frame = peer.recv().await;
        assert!(matches!(frame.msg, ClientMsg::DeleteAccount(ref d) if d.confirm.same_as(&user("alice"))));
        peer.reply(frame.request_id, Reply::AccountDeleted).await;
        let close = CloseFrame {
            code: CloseCode::from(shared::protocol::CLOSE_ACCOUNT_DELETED),
            reason: "account deleted".into(),
        };
        let _ = peer.ws.close(Some(close)).await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = connect(&url).await;
    client.login(&alice()).await.expect("logs in");
    client.delete_account().await.expect("deletes");
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::AccountDeleted
    ));
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::Disconnected { .. }
    ));
    server.await.expect("server script");
}

/// The server is the adversary: a presence for someone in none of the user's rooms, or for
/// the user themself, is dropped; one for a member is reported and changes no member list.
/// A lobby hint is only a hint.
#[tokio::test]
async fn presence_for_strangers_is_dropped_and_changes_no_members() {
    let (a, b) = (key(0), key(1));
    let (sa, sb) = (a.clone(), b.clone());
    let (url, server) = serve(move |mut peer| async move {
        peer.greet().await;
        peer.login("alice", &sa).await;
        peer.joined(vec![member("alice", &sa), member("bob", &sb)], Vec::new())
            .await;
        for (who, online) in [("mallory", true), ("alice", false), ("bob", false)] {
            peer.push(Push::Presence {
                username: user(who),
                online,
            })
            .await;
        }
        peer.push(Push::LobbyChanged).await;
        while peer.ws.next().await.is_some() {}
    })
    .await;
    let (client, mut events) = alice_in_general(&url).await;
    match next_event(&mut events).await {
        ClientEvent::Presence { username, online } => {
            assert_eq!((username, online), (user("bob"), false));
        }
        other => panic!("expected bob's presence first, got {other:?}"),
    }
    assert!(matches!(
        next_event(&mut events).await,
        ClientEvent::LobbyChanged
    ));
    let members: Vec<_> = client
        .members(&room("general"))
        .expect("open")
        .into_iter()
        .map(|m| m.username.canonical())
        .collect();
    assert_eq!(members, ["alice", "bob"], "presence changes no member list");
    drop(client);
    server.await.expect("server script");
}

/// Opening a room again with the same profile shows the same page in the same order (the
/// second time from the history cache), and content the server changed at a seq the cache
/// holds is decrypted afresh and refused, not masked by the cached plaintext.
#[tokio::test]
async fn a_reopened_room_is_shown_alike_and_changed_content_is_not_hidden_by_the_cache() {
    let profile = tempfile::tempdir().expect("temp dir");
    let pins = profile.path().join("alice.pem.pins.json");
    let (a, b) = (key(0), key(1));
    let members = vec![member("alice", &a), member("bob", &b)];
    let page: Vec<DeliveredMessage> = (1..=3)
        .map(|seq| {
            delivered(
                "general",
                seq,
                ("bob", &b),
                &[("alice", &a), ("bob", &b)],
                "alice",
                &format!("message {seq}"),
            )
        })
        .collect();
    let mut swapped = page.clone();
    swapped[1].envelope.ciphertext[0] ^= 1;
    let expected: Vec<(u64, String)> = (1..=3).map(|s| (s, format!("message {s}"))).collect();
    let rounds = [
        (page.clone(), expected.clone()),
        (page, expected.clone()),
        (swapped, vec![expected[0].clone(), expected[2].clone()]),
    ];
    // One address for every round: the client pins the server's id to it.
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.expect("binds"));
    let url = format!("ws://{}/ws", listener.local_addr().expect("has address"));
    for (round, (history, shown)) in rounds.into_iter().enumerate() {
        let (sa, members, listener) = (a.clone(), members.clone(), Arc::clone(&listener));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accepts");
            let ws = tokio_tungstenite::accept_async(tcp)
                .await
                .expect("upgrades");
            let mut peer = Peer { ws };
            peer.greet().await;
            peer.login("alice", &sa).await;
            peer.joined(members, history).await;
            while peer.ws.next().await.is_some() {}
        });
        let config = ClientConfig {
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        };
        let store = PinStore::open(&pins).expect("pin store opens");
        let (client, _events) = Client::connect_with(&url, store, config)
            .await
            .expect("connects");
        client.login(&alice()).await.expect("logs in");
        let view = client
            .join_room(&room("general"), None)
            .await
            .expect("joins");
        client.close().await;
        drop(client);
        server.await.expect("server script");
        let got: Vec<(u64, String)> = view
            .history
            .messages
            .iter()
            .map(|m| (m.seq, m.text.clone()))
            .collect();
        assert_eq!(got, shown, "round {round}");
        let refused: Vec<(u64, RejectReason)> = view
            .history
            .rejected
            .iter()
            .map(|r| (r.seq, r.reason.clone()))
            .collect();
        if round == 2 {
            assert_eq!(refused, vec![(2, RejectReason::Undecryptable)]);
        } else {
            assert!(refused.is_empty(), "round {round}: {refused:?}");
        }
        let cached = std::fs::read_dir(profile.path())
            .expect("profile lists")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().contains(".history-"));
        assert!(
            cached,
            "round {round}: the history cache is written beside the ledger"
        );
    }
}
