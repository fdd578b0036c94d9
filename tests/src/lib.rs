//! Helpers for the end-to-end tests: start the real server on an ephemeral port with a
//! temporary data directory, load the pre-generated test keys, and speak the wire protocol
//! directly ([`RawClient`]) where a test needs to send what a well-behaved client never
//! would.

pub mod scale;
pub mod tamper;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use server::config::Config;
use server::startup::{open_store, Application, Starting, Stopper};
use shared::crypto::keys;
use shared::crypto::RsaPrivateKey;
use shared::protocol::{
    codec, ClientFrame, ClientMsg, CreateRoom, FetchHistory, Hello, JoinRoom, LoginProof,
    LoginStart, Moderate, ModerationAction, Push, Register, Reply, RoomEvent, RoomSnapshot,
    SendMessage, ServerMsg, PROTOCOL_VERSION,
};
use shared::{ErrorCode, ErrorDetail, MessageId, RequestId, Username};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for an expected frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long [`RawClient::drain`] waits for the connection to be quiet.
pub const DRAIN_QUIET: Duration = Duration::from_millis(200);

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        server::telemetry::init("debug");
    }
});

/// The number of pre-generated RSA-2048 test keys.
pub const TEST_KEYS: usize = 16;

static KEYS: LazyLock<Vec<Arc<RsaPrivateKey>>> = LazyLock::new(|| {
    (0..TEST_KEYS)
        .map(|i| {
            let path = fixture(&format!("keys/rsa2048-{i:02}.pem"));
            let pem = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            Arc::new(keys::private_from_pem(&pem, None).expect("fixture key parses"))
        })
        .collect()
});

/// Path of a file under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Pre-generated test key number `i` (0–15).
pub fn test_key(i: usize) -> Arc<RsaPrivateKey> {
    KEYS[i % TEST_KEYS].clone()
}

/// The SPKI DER of a private key's public half.
pub fn public_der(key: &RsaPrivateKey) -> Vec<u8> {
    keys::public_to_der(&key.to_public_key()).expect("encodes")
}

/// A username from a literal.
pub fn name(s: &str) -> Username {
    Username::parse(s).expect("valid username")
}

/// Which store the end-to-end tests run against: the embedded store by default, MongoDB
/// when `E2E_STORE=mongo` (which needs `TEST_MONGODB_URI`).
pub fn e2e_uses_mongo() -> bool {
    std::env::var("E2E_STORE").is_ok_and(|v| v == "mongo")
}

/// Points `config` at MongoDB when [`e2e_uses_mongo`]: the database name is derived from the
/// data directory, so a restarted server finds its data again, and runs never collide.
fn select_store(config: &mut Config) {
    if !e2e_uses_mongo() || config.mongodb_uri.is_some() {
        return;
    }
    let uri = std::env::var("TEST_MONGODB_URI")
        .unwrap_or_else(|_| panic!("E2E_STORE=mongo needs TEST_MONGODB_URI"));
    let digest =
        shared::crypto::keys::Fingerprint::of_der(config.data_dir.to_string_lossy().as_bytes());
    config.mongodb_uri = Some(uri);
    // The tests exercise behaviour, not durability; a standalone development server or the
    // emulator will do (the adapter's own tests cover the topology check).
    config.mongodb_allow_standalone = true;
    config.mongodb_database = format!("e2e_chat_e2e_{}", &hex_prefix(&digest.0));
}

/// The MongoDB URI and database `config` names, if any.
fn mongo_of(config: &Config) -> Option<(String, String)> {
    config
        .mongodb_uri
        .clone()
        .map(|uri| (uri, config.mongodb_database.clone()))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A running server with its own temporary data directory.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data directory (kept alive for the test; removed on drop of `_dir`).
    pub data_dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
    /// MongoDB URI and database, when the tests run against MongoDB.
    mongo: Option<(String, String)>,
    stopper: Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts a server on the embedded store in a fresh temporary directory.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut server = Self::start_with(Config::for_tests(path)).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server with a given configuration (the caller owns the data directory).
    /// With `E2E_STORE=mongo` the store is MongoDB instead (see [`e2e_uses_mongo`]).
    pub async fn start_with(mut config: Config) -> Self {
        LazyLock::force(&TRACING);
        select_store(&mut config);
        let mongo = mongo_of(&config);
        let data_dir = config.data_dir.clone();
        let app = Application::build(config).await.expect("server builds");
        Self::serving(app, data_dir, mongo)
    }

    /// Runs a built `app` as a test server.
    fn serving(app: Application, data_dir: PathBuf, mongo: Option<(String, String)>) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let stopper = app.stopper();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            data_dir,
            _dir: None,
            mongo,
            stopper,
            task,
        }
    }

    /// Starts a server on the embedded store `store` (opened by the caller, in
    /// `config.data_dir`), as fault-injection tests need.
    pub async fn start_with_store(config: Config, store: Arc<dyn server::store::Store>) -> Self {
        LazyLock::force(&TRACING);
        let data_dir = config.data_dir.clone();
        let app = Application::build_with_store(config, store)
            .await
            .expect("server builds");
        let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
        let stopper = app.stopper();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            data_dir,
            _dir: None,
            mongo: None,
            stopper,
            task,
        }
    }

    /// The name of the store this server runs on, as `/health` reports it.
    pub fn store_backend(&self) -> &'static str {
        if self.mongo.is_some() {
            server::store::mongo::STORE
        } else {
            server::store::embedded::STORE
        }
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops the server gracefully and waits for it; returns the data directory's guard so
    /// a restart test can reuse the directory.
    /// A server that owns its temporary directory also drops its MongoDB database.
    pub async fn shutdown(self) -> Option<tempfile::TempDir> {
        self.stopper.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        if let (Some((uri, database)), Some(_)) = (&self.mongo, &self._dir) {
            let store = server::store::mongo::MongoStore::connect(
                uri,
                database,
                server::store::mongo::Standalone::Allow,
            )
            .await
            .expect("reconnect to drop the test database");
            store.drop_database().await.expect("drop the test database");
        }
        self._dir
    }

    /// A handle that stops the server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }
}

/// A server whose port is bound and answers 503 "starting", with its store not yet open
/// (as while a slow MongoDB start-up builds its indexes); [`StartingServer::open_after`]
/// opens it. On the store `E2E_STORE` selects, in a fresh temporary directory.
pub struct StartingServer {
    starting: Starting,
    dir: tempfile::TempDir,
}

impl StartingServer {
    /// Binds a port and answers "starting" on it.
    pub fn bind() -> Self {
        LazyLock::force(&TRACING);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        select_store(&mut config);
        let starting = Starting::bind(config).expect("binds");
        Self { starting, dir }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.starting.port().expect("bound port")))
    }

    /// Opens the store once `gate` resolves, then serves.
    pub async fn open_after(self, gate: impl Future<Output = ()>) -> TestServer {
        let config = self.starting.config().clone();
        let mongo = mongo_of(&config);
        let data_dir = config.data_dir.clone();
        let app = self
            .starting
            .open_with(async move {
                gate.await;
                open_store(&config).await
            })
            .await
            .expect("server builds");
        let mut server = TestServer::serving(app, data_dir, mongo);
        server._dir = Some(self.dir);
        server
    }

    /// Fails the start-up with `error` once `gate` resolves, as a store that cannot open
    /// does; returns the start-up's error.
    pub async fn fail_after(self, gate: impl Future<Output = ()>, error: &str) -> anyhow::Error {
        let error = anyhow::anyhow!("{error}");
        match self
            .starting
            .open_with(async move {
                gate.await;
                Err(error)
            })
            .await
        {
            Ok(_) => panic!("the start-up should have failed"),
            Err(e) => e,
        }
    }
}

/// An error reply as a tuple, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The code.
    pub code: ErrorCode,
    /// The human message.
    pub message: String,
    /// Structured detail.
    pub detail: Option<ErrorDetail>,
}

/// A protocol-level client: frames in, frames out, no policy.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Pushes received while waiting for replies.
    pub pushes: VecDeque<Push>,
    /// The server's id from its `HelloAck` (all zeros before `Hello`).
    pub server_id: shared::ServerId,
}

impl RawClient {
    /// Opens a WebSocket to `url` (no Hello sent).
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Self {
            ws,
            next_id: 1,
            pushes: VecDeque::new(),
            server_id: shared::ServerId([0; 16]),
        }
    }

    /// Opens a WebSocket to `url` (no Hello sent), and returns the value of the upgrade
    /// response's `header`, if it has one (a load balancer's note of where it went).
    ///
    /// # Errors
    /// The handshake's error, e.g. an HTTP refusal.
    pub async fn connect_reporting(
        url: &str,
        header: &str,
    ) -> Result<(Self, Option<String>), tokio_tungstenite::tungstenite::Error> {
        let (ws, response) = tokio_tungstenite::connect_async(url).await?;
        let value = response
            .headers()
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let client = Self {
            ws,
            next_id: 1,
            pushes: VecDeque::new(),
            server_id: shared::ServerId([0; 16]),
        };
        Ok((client, value))
    }

    /// Opens a WebSocket to `url` whose upgrade request says it was forwarded for
    /// `address` (`X-Forwarded-For`), as a proxy in front of the server would (no Hello
    /// sent).
    ///
    /// # Errors
    /// The handshake's error, e.g. an HTTP refusal.
    pub async fn connect_forwarded_for(
        url: &str,
        address: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request()?;
        let value = address.parse().expect("an address is a header value");
        request.headers_mut().insert("x-forwarded-for", value);
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self {
            ws,
            next_id: 1,
            pushes: VecDeque::new(),
            server_id: shared::ServerId([0; 16]),
        })
    }

    /// Completes Hello on a connected client.
    pub async fn greet(&mut self) {
        match self
            .request(ClientMsg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client: "e2e-tests".into(),
            }))
            .await
            .expect("hello accepted")
        {
            Reply::Hello(ack) => self.server_id = ack.server_id,
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    /// The client's own TCP port.
    pub fn local_port(&self) -> u16 {
        match self.ws.get_ref() {
            MaybeTlsStream::Plain(tcp) => tcp.local_addr().expect("local address").port(),
            _ => panic!("the tests speak plain ws://"),
        }
    }

    /// Connects and completes Hello.
    pub async fn greeted(url: &str) -> Self {
        let mut c = Self::connect(url).await;
        c.greet().await;
        c
    }

    /// Connects, greets, registers `user` with `key`, and logs in.
    pub async fn registered(url: &str, user: &str, key: &RsaPrivateKey) -> Self {
        let mut c = Self::greeted(url).await;
        c.register(user, key).await.expect("register");
        c.login(user, key).await.expect("login");
        c
    }

    /// Connects, greets and logs in as an existing user.
    pub async fn logged_in(url: &str, user: &str, key: &RsaPrivateKey) -> Self {
        let mut c = Self::greeted(url).await;
        c.login(user, key).await.expect("login");
        c
    }

    /// Creates room `name` (`RoomCreated` expected) and returns its snapshot.
    pub async fn create_room(
        &mut self,
        name: &str,
        password: Option<&str>,
        hidden: bool,
    ) -> RoomSnapshot {
        match self
            .request(ClientMsg::CreateRoom(CreateRoom {
                name: room(name),
                password: password.map(str::to_owned),
                hidden,
            }))
            .await
            .expect("room created")
        {
            Reply::RoomCreated(s) => s,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Joins (or re-opens) room `name`; the snapshot, or the error.
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn join_room(
        &mut self,
        name: &str,
        password: Option<&str>,
    ) -> Result<RoomSnapshot, WireError> {
        self.request(ClientMsg::JoinRoom(JoinRoom {
            name: room(name),
            password: password.map(str::to_owned),
            history_limit: 50,
        }))
        .await
        .map(|r| match r {
            Reply::Joined(s) => s,
            other => panic!("unexpected {other:?}"),
        })
    }

    /// Asks for `action` in room `name`; the event, or the error.
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn moderate(
        &mut self,
        name: &str,
        action: ModerationAction,
    ) -> Result<RoomEvent, WireError> {
        self.request(ClientMsg::Moderate(Moderate {
            room: room(name),
            action,
        }))
        .await
        .map(|r| match r {
            Reply::Moderated(event) => event,
            other => panic!("unexpected {other:?}"),
        })
    }

    /// Sends `text` from `sender` (this client's user) to room `name`, sealed for
    /// `recipients` (name and key pairs); the server's answer.
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn send_text(
        &mut self,
        name: &str,
        sender: (&str, &RsaPrivateKey),
        recipients: &[(&str, &RsaPrivateKey)],
        text: &str,
    ) -> Result<Reply, WireError> {
        let r = room(name);
        let (message_id, envelopes) = seal_text(&r, sender.0, sender.1, recipients, text);
        self.request(ClientMsg::SendMessage(SendMessage {
            room: r,
            message_id,
            envelopes,
        }))
        .await
    }

    /// The next `RoomEvent` push, skipping any other pushes before it.
    pub async fn next_room_event(&mut self) -> RoomEvent {
        loop {
            if let Push::RoomEvent(event) = self.next_push().await {
                return event;
            }
        }
    }

    /// Drops every push queued or arriving until the connection has been quiet for
    /// [`DRAIN_QUIET`]: a test's set-up pushes out of the way of what it checks next.
    pub async fn drain(&mut self) {
        self.pushes.clear();
        while let Some(frame) = self.next_frame_within(DRAIN_QUIET).await {
            assert!(
                matches!(frame, Some(ServerMsg::Push(_))),
                "expected only pushes while draining, got {frame:?}"
            );
        }
    }

    /// Sends raw bytes as one binary message.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("send frame");
    }

    /// Sends a request without waiting; returns its id.
    pub async fn send(&mut self, msg: ClientMsg) -> RequestId {
        let request_id = RequestId(self.next_id);
        self.next_id += 1;
        let bytes = codec::encode_client(&ClientFrame { request_id, msg }).expect("encodes");
        self.send_raw(bytes).await;
        request_id
    }

    /// The next decoded server frame, or `None` if the connection closed. Panics after
    /// [`WAIT`].
    pub async fn next_frame(&mut self) -> Option<ServerMsg> {
        self.next_frame_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("no frame within {WAIT:?}"))
    }

    /// The next frame within `limit`: `None` on timeout, `Some(None)` on close.
    pub async fn next_frame_within(&mut self, limit: Duration) -> Option<Option<ServerMsg>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Some(None),
                Some(Ok(Message::Binary(b))) => {
                    return Some(Some(
                        codec::decode_server(&b).expect("server frame decodes"),
                    ))
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The close frame's code, waiting up to [`WAIT`] and skipping other frames.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }

    /// Sends a request and waits for its answer, queueing pushes that arrive meanwhile.
    pub async fn request(&mut self, msg: ClientMsg) -> Result<Reply, WireError> {
        let id = self.send(msg).await;
        self.answer(id).await
    }

    /// Waits for the answer to request `id`.
    pub async fn answer(&mut self, id: RequestId) -> Result<Reply, WireError> {
        loop {
            match self.next_frame().await {
                None => panic!("connection closed while waiting for reply {id:?}"),
                Some(ServerMsg::Reply { request_id, reply }) if request_id == id => {
                    return Ok(reply)
                }
                Some(ServerMsg::Error {
                    request_id: Some(rid),
                    code,
                    message,
                    detail,
                }) if rid == id => {
                    return Err(WireError {
                        code,
                        message,
                        detail,
                    })
                }
                Some(ServerMsg::Push(p)) => self.pushes.push_back(p),
                Some(other) => panic!("unexpected frame while waiting for {id:?}: {other:?}"),
            }
        }
    }

    /// The next push (from the queue, or the socket), failing after [`WAIT`].
    pub async fn next_push(&mut self) -> Push {
        if let Some(p) = self.pushes.pop_front() {
            return p;
        }
        match self.next_frame().await {
            Some(ServerMsg::Push(p)) => p,
            other => panic!("expected a push, got {other:?}"),
        }
    }

    /// The next push that is not a [`Push::Presence`]: a co-member's sessions starting or
    /// ending are pushed as they happen (protocol 5), racing with what a test waits for.
    pub async fn next_push_but_presence(&mut self) -> Push {
        loop {
            match self.next_push().await {
                Push::Presence { .. } => {}
                push => return push,
            }
        }
    }

    /// Asserts nothing arrives within `limit`.
    pub async fn expect_silence(&mut self, limit: Duration) {
        assert!(self.pushes.is_empty(), "queued pushes: {:?}", self.pushes);
        if let Some(frame) = self.next_frame_within(limit).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Registers `user` with `key`'s public half.
    pub async fn register(&mut self, user: &str, key: &RsaPrivateKey) -> Result<Reply, WireError> {
        self.request(ClientMsg::Register(Register {
            username: name(user),
            public_key: public_der(key),
        }))
        .await
    }

    /// Asks for a challenge and returns the nonce.
    pub async fn challenge(&mut self, user: &str) -> Result<[u8; 32], WireError> {
        match self
            .request(ClientMsg::LoginStart(LoginStart {
                username: name(user),
            }))
            .await?
        {
            Reply::Challenge(c) => Ok(c.nonce),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    /// Logs in by signing the challenge with `key`.
    pub async fn login(&mut self, user: &str, key: &RsaPrivateKey) -> Result<Reply, WireError> {
        let nonce = self.challenge(user).await?;
        let signature =
            shared::crypto::signing::sign_login(key, &name(user), &nonce, &self.server_id);
        self.request(ClientMsg::LoginProof(LoginProof { signature }))
            .await
    }
}

/// A `RotateKey` request moving `user` from `old` to `new`, signed by both keys.
pub fn rotation(
    user: &str,
    old: &RsaPrivateKey,
    new: &RsaPrivateKey,
) -> shared::protocol::RotateKey {
    shared::protocol::RotateKey {
        certificate: shared::crypto::rotation::RotationCertificate::issue(
            &name(user),
            old,
            new,
            0,
            Vec::new(),
        )
        .expect("certificate issues"),
    }
}

/// Seals `text` from `sender` for `recipients` (name and key index pairs) the way a real
/// client does: sign once, one envelope per recipient.
pub fn seal_text(
    room: &shared::RoomName,
    sender: &str,
    sender_key: &RsaPrivateKey,
    recipients: &[(&str, &RsaPrivateKey)],
    text: &str,
) -> (shared::MessageId, Vec<shared::protocol::Envelope>) {
    use shared::crypto::message::{seal_message, MessageBody, Recipient};
    let message_id = shared::MessageId::random();
    let body = MessageBody {
        room: room.clone(),
        message_id,
        sender: name(sender),
        device: shared::DeviceId([0; 16]),
        counter: 1,
        sent_at_ms: 0,
        recipients: recipients.iter().map(|(n, _)| name(n)).collect(),
        text: text.to_owned(),
    };
    let recipients: Vec<Recipient> = recipients
        .iter()
        .map(|(n, k)| Recipient {
            username: name(n),
            key: k.to_public_key(),
        })
        .collect();
    let envelopes = seal_message(sender_key, body, &recipients).expect("seals");
    (message_id, envelopes)
}

/// Opens a delivered message as `me`, verifying it with `sender_key`; returns the text.
///
/// # Errors
/// The crypto error when the copy is not mine, tampered, or badly signed.
pub fn open_text(
    msg: &shared::protocol::DeliveredMessage,
    me: &str,
    my_key: &RsaPrivateKey,
    sender_key: &RsaPrivateKey,
) -> Result<String, shared::crypto::CryptoError> {
    use shared::crypto::message::{open_message, Received};
    let body = open_message(
        Received {
            room: &msg.room,
            message_id: &msg.message_id,
            sender: &msg.sender,
            recipients: &msg.recipients,
        },
        &name(me),
        my_key,
        &msg.envelope,
        &sender_key.to_public_key(),
    )?;
    Ok(body.text)
}

/// A room name from a literal.
pub fn room(s: &str) -> shared::RoomName {
    shared::RoomName::parse(s).expect("valid room name")
}

/// "alice" (test key 0) and "slow" (test key 1), registered and logged in on `url`, both
/// members of alice's new public room `name`: the set-up of the tests that push more at a
/// client than it reads.
pub async fn sender_and_reader(url: &str, name: &str) -> (RawClient, RawClient, shared::RoomName) {
    let mut alice = RawClient::registered(url, "alice", &test_key(0)).await;
    let mut slow = RawClient::registered(url, "slow", &test_key(1)).await;
    let r = room(name);
    alice
        .request(ClientMsg::CreateRoom(CreateRoom {
            name: r.clone(),
            password: None,
            hidden: false,
        }))
        .await
        .expect("created");
    slow.request(ClientMsg::JoinRoom(JoinRoom {
        name: r.clone(),
        password: None,
        history_limit: 0,
    }))
    .await
    .expect("joined");
    (alice, slow, r)
}

/// The ids of the newest 50 messages in `c`'s history of room `r`, oldest first.
pub async fn history_ids(c: &mut RawClient, r: &shared::RoomName) -> Vec<MessageId> {
    match c
        .request(ClientMsg::FetchHistory(FetchHistory {
            room: r.clone(),
            before_seq: None,
            limit: 50,
        }))
        .await
    {
        Ok(Reply::History(page)) => page.messages.iter().map(|m| m.message_id).collect(),
        other => panic!("expected a history page, got {other:?}"),
    }
}

/// A logged-in client-core [`client_tui::Client`] with its event stream, as the TUI and
/// other applications use it (in-memory pins).
pub struct CoreClient {
    /// The client.
    pub client: client_tui::Client,
    /// Its events.
    pub events: client_tui::EventReceiver,
    /// Who it is.
    pub identity: client_tui::Identity,
}

impl CoreClient {
    /// Connects and registers `user` with test key `key`, then logs in.
    pub async fn register(url: &str, user: &str, key: usize) -> Self {
        let c = Self::connect(url, user, key).await;
        c.client.register(&c.identity).await.expect("registers");
        c.client.login(&c.identity).await.expect("logs in");
        c
    }

    /// Connects and logs in as an existing `user` with test key `key`.
    pub async fn login(url: &str, user: &str, key: usize) -> Self {
        let c = Self::connect(url, user, key).await;
        c.client.login(&c.identity).await.expect("logs in");
        c
    }

    async fn connect(url: &str, user: &str, key: usize) -> Self {
        let identity =
            client_tui::Identity::new(name(user), (*test_key(key)).clone()).expect("identity");
        let (client, events) = client_tui::Client::connect(url, client_tui::PinStore::in_memory())
            .await
            .expect("connects");
        Self {
            client,
            events,
            identity,
        }
    }

    /// The next event, failing after [`WAIT`].
    pub async fn next_event(&mut self) -> client_tui::ClientEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("an event in time")
            .expect("event stream open")
    }

    /// The next decrypted message, skipping membership events; panics on anything else.
    pub async fn next_message(&mut self) -> client_tui::DecryptedMessage {
        loop {
            match self.next_event().await {
                client_tui::ClientEvent::Message(m) => return m,
                client_tui::ClientEvent::MemberJoined { .. }
                | client_tui::ClientEvent::MemberLeft { .. } => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Asserts that no event other than membership changes arrives within `limit`.
    pub async fn expect_no_message(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while let Ok(event) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match event {
                Some(client_tui::ClientEvent::MemberJoined { .. })
                | Some(client_tui::ClientEvent::MemberLeft { .. }) => continue,
                other => panic!("expected no message, got {other:?}"),
            }
        }
    }
}

/// The TCP connections in this network namespace from local `port` to remote `peer`.
pub fn server_side_sockets(port: u16, peer: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port_of = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (local, remote) = (fields.next(), fields.next());
            local.and_then(port_of) == Some(port) && remote.and_then(port_of) == Some(peer)
        })
        .count()
}
