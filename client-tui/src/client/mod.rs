//! [`Client`]: the high-level, UI-free API (protocol 4's requests for running rooms are in
//! `running`). One `Client` is one connection and at most one
//! logged-in user. It is a cheap `Clone` handle; the connection closes when the last clone
//! is dropped (or on [`Client::close`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::crypto::keys::Fingerprint;
use shared::crypto::message::{seal_message, MessageBody};
use shared::crypto::rotation::RotationCertificate;
use shared::crypto::signing::sign_login;
use shared::protocol::{
    ClientMsg, CreateRoom, FetchHistory, GetUserKey, Hello, HelloAck, JoinRoom, LeaveRoom,
    ListRooms, LoggedIn, LoginProof, LoginStart, Register, Reply, RoomList, RoomSnapshot,
    RotateKey, SendAck, SendMessage, MAX_HISTORY_PAGE, PROTOCOL_VERSION,
};
use shared::{ErrorCode, ErrorDetail, MessageId, RoomName, Username};
use tokio::sync::mpsc;

use crate::credence::believable_topic;
use crate::directory::{KeyChange, MemberView};
use crate::error::ClientError;
use crate::events::{self, EventReceiver};
use crate::history_cache::history_cache_path_for;
use crate::identity::Identity;
use crate::ledger::{ledger_path_for, Ledger};
use crate::net::connection::INBOUND_QUEUE;
use crate::net::{transport, Connection};
use crate::pins::{PinStore, ServerCheck};
use crate::pushes;
use crate::rooms::{HistoryView, RoomView};
use crate::session::Session;

mod running;

/// Connection settings. `ClientConfig::default()` suits interactive use.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent in `Hello` for the server's logs.
    pub client_name: String,
    /// How long a request waits for its reply before failing with
    /// [`ClientError::Timeout`].
    pub request_timeout: Duration,
    /// How many recent messages `join_room`/`create_room` ask for (capped at
    /// [`MAX_HISTORY_PAGE`]).
    pub history_limit: u16,
    /// A rustls configuration for `wss://` (e.g. trusting a private CA); `None` uses the
    /// webpki (Mozilla) roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            client_name: concat!("client-tui/", env!("CARGO_PKG_VERSION")).to_owned(),
            request_timeout: Duration::from_secs(30),
            history_limit: 50,
            tls: None,
        }
    }
}

/// A connection to a chat server. See the crate docs for an overview.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connection,
    session: Arc<Session>,
    config: ClientConfig,
    server: HelloAck,
}

impl Client {
    /// Connects to `url` (`ws://` or `wss://`) with default settings and performs the
    /// `Hello` handshake. `pins` holds the user's trusted keys and server ids (see
    /// [`PinStore`]); the server's id is checked against the one pinned for `url` (pinned
    /// on first contact), and the ledger for this account on this server is opened beside
    /// the pin file (in memory for an in-memory pin store).
    ///
    /// Returns the client and the receiver of its [`ClientEvent`](crate::ClientEvent)s, which the caller must
    /// keep draining.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`], [`ClientError::Transport`],
    /// [`ClientError::ProtocolVersion`], [`ClientError::ServerIdentityChanged`],
    /// [`ClientError::ServerIdentityClaimed`], [`ClientError::Pins`],
    /// [`ClientError::Ledger`], or any request error.
    pub async fn connect(url: &str, pins: PinStore) -> Result<(Self, EventReceiver), ClientError> {
        Self::connect_with(url, pins, ClientConfig::default()).await
    }

    /// As [`Client::connect`], with explicit settings.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(
        url: &str,
        mut pins: PinStore,
        config: ClientConfig,
    ) -> Result<(Self, EventReceiver), ClientError> {
        let url = transport::parse_url(url)?;
        let stream = transport::open(&url, config.tls.clone()).await?;
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let conn = Connection::start(stream, config.request_timeout, inbound_tx);

        let hello = ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client: config.client_name.clone(),
        });
        let server = match conn.request(hello).await {
            Ok(Reply::Hello(ack)) if ack.protocol_version == PROTOCOL_VERSION => ack,
            Ok(Reply::Hello(ack)) => {
                return Err(ClientError::ProtocolVersion {
                    message: format!(
                        "server speaks version {}, client speaks {PROTOCOL_VERSION}",
                        ack.protocol_version
                    ),
                })
            }
            Ok(other) => return Err(ClientError::unexpected("Hello", &other)),
            Err(ClientError::Server {
                code: ErrorCode::ProtocolVersion,
                message,
                ..
            }) => return Err(ClientError::ProtocolVersion { message }),
            Err(e) => return Err(e),
        };
        tracing::debug!(server = %server.server, id = %server.server_id, "connected");
        let address = url.to_string();
        match pins.check_server(&address, &server.server_id) {
            ServerCheck::Matches => {}
            ServerCheck::FirstContact => pins.pin_server(&address, &server.server_id)?,
            ServerCheck::Changed { pinned } => {
                return Err(ClientError::ServerIdentityChanged {
                    address,
                    pinned,
                    presented: server.server_id,
                })
            }
            ServerCheck::PinnedElsewhere {
                address: other_address,
            } => {
                return Err(ClientError::ServerIdentityClaimed {
                    address,
                    other_address,
                })
            }
        }
        let ledger = match pins.path() {
            Some(path) => Ledger::open(ledger_path_for(path, &server.server_id))?,
            None => Ledger::in_memory(),
        };
        let cache_path = pins
            .path()
            .map(|path| history_cache_path_for(path, &server.server_id));
        let (events_tx, events_rx) = events::channel();
        let session = Arc::new(Session::new(
            pins,
            ledger,
            cache_path,
            events_tx,
            conn.downgrade(),
        ));
        tokio::spawn(pushes::run(
            inbound_rx,
            Arc::clone(&session),
            conn.downgrade(),
        ));
        let client = Self {
            inner: Arc::new(Inner {
                conn,
                session,
                config,
                server,
            }),
        };
        Ok((client, events_rx))
    }

    /// What the server said about itself in the handshake.
    pub fn server_info(&self) -> &HelloAck {
        &self.inner.server
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.inner.conn.is_open()
    }

    /// The logged-in user, if any.
    pub fn username(&self) -> Option<Username> {
        self.inner.session.username()
    }

    /// Creates an account for `identity` (its username and public key) and pins the
    /// user's own key. Only before logging in; log in afterwards.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UsernameTaken` or `InvalidInput`; connection errors;
    /// [`ClientError::Pins`].
    pub async fn register(&self, identity: &Identity) -> Result<Username, ClientError> {
        let reply = self
            .request(ClientMsg::Register(Register {
                username: identity.username().clone(),
                public_key: identity.public_der().to_vec(),
            }))
            .await?;
        let Reply::Registered(registered) = reply else {
            return Err(ClientError::unexpected("Registered", &reply));
        };
        self.inner.session.pin_own(identity)?;
        Ok(registered.username)
    }

    /// Logs in as `identity`: asks for a challenge, signs it, and sends the proof.
    /// Returns the account name and the rooms the user is a member of (their messages are
    /// pushed from now on; open them with [`Client::join_room`] to send).
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UnknownUser`, `AuthFailed`, `ChallengeExpired` or
    /// `InvalidState`; connection errors; [`ClientError::Pins`].
    pub async fn login(&self, identity: &Identity) -> Result<LoggedIn, ClientError> {
        let reply = self
            .request(ClientMsg::LoginStart(LoginStart {
                username: identity.username().clone(),
            }))
            .await?;
        let Reply::Challenge(challenge) = reply else {
            return Err(ClientError::unexpected("Challenge", &reply));
        };
        let key = identity.private_key_arc();
        let username = identity.username().clone();
        let server_id = self.inner.server.server_id;
        let signature = tokio::task::spawn_blocking(move || {
            sign_login(&key, &username, &challenge.nonce, &server_id)
        })
        .await?;
        let reply = self
            .request(ClientMsg::LoginProof(LoginProof { signature }))
            .await?;
        let Reply::LoggedIn(logged_in) = reply else {
            return Err(ClientError::unexpected("LoggedIn", &reply));
        };
        self.inner
            .session
            .logged_in(identity.clone(), &logged_in.rooms, &logged_in.blocked)?;
        self.inner.session.open_cache(identity).await;
        tracing::info!(user = %logged_in.username, rooms = logged_in.rooms.len(), "logged in");
        Ok(logged_in)
    }

    /// Lists the public rooms and how many users are online (a topic with control
    /// characters is dropped).
    ///
    /// # Errors
    /// `Unauthenticated` before login; connection errors.
    pub async fn list_rooms(&self) -> Result<RoomList, ClientError> {
        let reply = self
            .request(ClientMsg::ListRooms(ListRooms::default()))
            .await?;
        match reply {
            Reply::Rooms(mut list) => {
                for summary in &mut list.rooms {
                    summary.topic = believable_topic(summary.topic.take());
                }
                Ok(list)
            }
            other => Err(ClientError::unexpected("Rooms", &other)),
        }
    }

    /// Creates a room (the user becomes its owner and first member) and opens it.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `RoomExists` or `InvalidInput`; connection errors.
    pub async fn create_room(
        &self,
        name: &RoomName,
        password: Option<&str>,
        hidden: bool,
    ) -> Result<RoomView, ClientError> {
        let _opening = self.inner.session.opening(name);
        let reply = self
            .request(ClientMsg::CreateRoom(CreateRoom {
                name: name.clone(),
                password: password.map(str::to_owned),
                hidden,
            }))
            .await?;
        match reply {
            Reply::RoomCreated(snapshot) => self.open_snapshot(snapshot).await,
            other => Err(ClientError::unexpected("RoomCreated", &other)),
        }
    }

    /// Joins a room (or re-opens one the user is already in; members need no password)
    /// and opens it: every member's key is checked against the pins (raising
    /// [`ClientEvent::KeyChanged`](crate::ClientEvent::KeyChanged) on a mismatch) and the newest history is decrypted.
    ///
    /// History may repeat messages already delivered as events (the same message id at
    /// the same `seq`); identify messages by their id.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `RoomUnavailable` or `WrongPassword`; connection
    /// errors; [`ClientError::Pins`].
    pub async fn join_room(
        &self,
        name: &RoomName,
        password: Option<&str>,
    ) -> Result<RoomView, ClientError> {
        let _opening = self.inner.session.opening(name);
        let reply = self
            .request(ClientMsg::JoinRoom(JoinRoom {
                name: name.clone(),
                password: password.map(str::to_owned),
                history_limit: self.inner.config.history_limit.min(MAX_HISTORY_PAGE),
            }))
            .await?;
        match reply {
            Reply::Joined(snapshot) => self.open_snapshot(snapshot).await,
            other => Err(ClientError::unexpected("Joined", &other)),
        }
    }

    /// Leaves a room for good.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `NotAMember`; connection errors.
    pub async fn leave_room(&self, room: &RoomName) -> Result<(), ClientError> {
        let reply = self
            .request(ClientMsg::LeaveRoom(LeaveRoom { room: room.clone() }))
            .await?;
        match reply {
            Reply::Left(_) => {
                self.inner.session.close_room(room);
                Ok(())
            }
            other => Err(ClientError::unexpected("Left", &other)),
        }
    }

    /// Encrypts `text` for every current member of `room` (the user included, in member
    /// order), signs it once with this device's next counter for the room, and sends it.
    ///
    /// If the server reports that the members changed, every difference is reported as a
    /// [`ClientEvent::MemberJoined`](crate::ClientEvent::MemberJoined) or `MemberLeft`
    /// first. When members only left, the message is re-encrypted and sent once more at
    /// once; when members were *added*, it is not: the call fails with
    /// [`ClientError::MembersAdded`] so that the user sees who joined before anything is
    /// encrypted to them (send again to include them).
    ///
    /// The server does not echo the message back to this connection: the returned ack
    /// (with its `seq`) is the confirmation.
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`]; [`ClientError::RoomNotOpen`];
    /// [`ClientError::UntrustedKeys`] if a member's key changed and was not accepted;
    /// [`ClientError::MembersAdded`]; [`ClientError::MessageTooLarge`];
    /// [`ClientError::Server`] (`NotAMember`,
    /// `RecipientMismatch` twice in a row, …); [`ClientError::Ledger`] if the counter
    /// cannot be saved; [`ClientError::Codec`] if the message is too large; connection
    /// errors.
    pub async fn send_text(&self, room: &RoomName, text: &str) -> Result<SendAck, ClientError> {
        self.send_text_as(room, text, MessageId::random()).await
    }

    /// [`send_text`](Self::send_text) under a message id the caller chose: sending again
    /// after a lost connection under the first attempt's id makes the server refuse a
    /// message it already stored (`ErrorCode::DuplicateMessage`) instead of storing it
    /// twice.
    ///
    /// # Errors
    /// As [`send_text`](Self::send_text); `ClientError::Server` with `DuplicateMessage` if
    /// a message with this id is stored in the room already.
    pub async fn send_text_as(
        &self,
        room: &RoomName,
        text: &str,
        message_id: MessageId,
    ) -> Result<SendAck, ClientError> {
        let session = &self.inner.session;
        let identity = session.identity()?;
        let max = self.inner.server.max_message_bytes;
        if text.len() > usize::try_from(max).unwrap_or(usize::MAX) {
            return Err(ClientError::MessageTooLarge { max });
        }
        // Fail before a counter is used when the room cannot be sent to at all.
        session.recipients(room)?;
        // One id and one counter for both attempts: the first was refused, so it was
        // never stored.
        let counter = session.next_counter(room)?;
        let result = self
            .send_sealed(room, text, &identity, message_id, counter)
            .await;
        match &result {
            Ok(ack) => session.remember_sent(ack, counter),
            Err(e) if refused_before_storing(e) => session.release_counter(room, counter),
            // Unknown whether it was stored: the counter stays used.
            Err(_) => {}
        }
        result
    }

    async fn send_sealed(
        &self,
        room: &RoomName,
        text: &str,
        identity: &Identity,
        message_id: MessageId,
        counter: u64,
    ) -> Result<SendAck, ClientError> {
        let session = &self.inner.session;
        let mut retried = false;
        loop {
            let recipients = session.recipients(room)?;
            let body = MessageBody {
                room: room.clone(),
                message_id,
                sender: identity.username().clone(),
                device: session.device(),
                counter,
                sent_at_ms: now_ms(),
                recipients: recipients.iter().map(|r| r.username.clone()).collect(),
                text: text.to_owned(),
            };
            let key = identity.private_key_arc();
            let envelopes =
                tokio::task::spawn_blocking(move || seal_message(&key, body, &recipients))
                    .await??;
            // The copies carry the signature and the metadata too: check what is sent.
            let max = self.inner.server.max_message_bytes;
            if envelopes
                .first()
                .is_some_and(|c| c.ciphertext.len() > usize::try_from(max).unwrap_or(usize::MAX))
            {
                return Err(ClientError::MessageTooLarge { max });
            }
            let result = self
                .request(ClientMsg::SendMessage(SendMessage {
                    room: room.clone(),
                    message_id,
                    envelopes,
                }))
                .await;
            match result {
                Ok(Reply::Sent(ack)) => return Ok(ack),
                Ok(other) => return Err(ClientError::unexpected("Sent", &other)),
                Err(ClientError::Server {
                    code: ErrorCode::RecipientMismatch,
                    detail: Some(ErrorDetail::CurrentMembers(members)),
                    ..
                }) if !retried => {
                    let added = session
                        .members_changed(&self.inner.conn, room, &members)
                        .await?;
                    if !added.is_empty() {
                        return Err(ClientError::MembersAdded {
                            room: room.clone(),
                            added,
                        });
                    }
                    tracing::debug!(room = %room, "members left; re-encrypting");
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fetches and decrypts up to `limit` messages older than `before_seq` (`None`: the
    /// newest).
    ///
    /// # Errors
    /// [`ClientError::Server`] with `NotAMember`; connection errors.
    pub async fn fetch_history(
        &self,
        room: &RoomName,
        before_seq: Option<u64>,
        limit: u16,
    ) -> Result<HistoryView, ClientError> {
        self.inner.session.identity()?;
        let reply = self
            .request(ClientMsg::FetchHistory(FetchHistory {
                room: room.clone(),
                before_seq,
                limit: limit.min(MAX_HISTORY_PAGE),
            }))
            .await?;
        match reply {
            Reply::History(page) => Ok(self
                .inner
                .session
                .receive_page(&self.inner.conn, page)
                .await),
            other => Err(ClientError::unexpected("History", &other)),
        }
    }

    /// Fetches a user's current key and runs it through pin checking (raising
    /// [`ClientEvent::KeyChanged`](crate::ClientEvent::KeyChanged) on a mismatch). Useful to show a fingerprint to compare.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UnknownUser`; connection errors; [`ClientError::Pins`].
    pub async fn get_user_key(&self, username: &Username) -> Result<MemberView, ClientError> {
        let reply = self
            .request(ClientMsg::GetUserKey(GetUserKey {
                username: username.clone(),
            }))
            .await?;
        let Reply::UserKey(info) = reply else {
            return Err(ClientError::unexpected("UserKey", &reply));
        };
        if !info.username.same_as(username) {
            return Err(ClientError::UnexpectedReply {
                expected: "the requested user's key",
                got: "another user's key".into(),
            });
        }
        self.inner
            .session
            .observe(Some(&self.inner.conn), std::slice::from_ref(&info), &[])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Task("observe returned no view".into()))
    }

    /// Replaces the logged-in user's key with `new_identity`'s (same username). The
    /// rotation certificate is signed by the current key (handing over to the new one)
    /// and by the new key (proving possession), and names the last counter this device
    /// signed in each room, so peers accept the old key only for messages up to there.
    /// The server closes the user's other sessions. The old private key is kept in memory
    /// for this session so older messages still open; the caller should save the new key
    /// (see [`keystore`](crate::keystore)) before or right after calling this, and keep
    /// the old one (see [`Client::add_previous_key`]).
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`]; [`ClientError::WrongIdentity`];
    /// [`ClientError::Server`] (`InvalidInput`, `AuthFailed`); connection errors.
    pub async fn rotate_key(&self, new_identity: &Identity) -> Result<Fingerprint, ClientError> {
        let current = self.inner.session.identity()?;
        if !new_identity.username().same_as(current.username()) {
            return Err(ClientError::WrongIdentity {
                given: new_identity.username().clone(),
                session: current.username().clone(),
            });
        }
        let old_key = current.private_key_arc();
        let new_key = new_identity.private_key_arc();
        let username = current.username().clone();
        let marks = self.inner.session.own_marks();
        let certificate = tokio::task::spawn_blocking(move || {
            RotationCertificate::issue(&username, &old_key, &new_key, now_ms(), marks)
        })
        .await??;
        let reply = self
            .request(ClientMsg::RotateKey(RotateKey { certificate }))
            .await?;
        let Reply::KeyRotated(_) = reply else {
            return Err(ClientError::unexpected("KeyRotated", &reply));
        };
        self.inner.session.rotated(new_identity.clone())?;
        Ok(new_identity.fingerprint())
    }

    /// Accepts `username`'s changed key after the user compared fingerprints out of band:
    /// re-pins it, so it is encrypted to and believed from now on. Returns the newly
    /// pinned fingerprint. Messages refused meanwhile can be read by fetching the history
    /// again.
    ///
    /// # Errors
    /// [`ClientError::NoPendingKeyChange`]; [`ClientError::Pins`] if the pin cannot be
    /// saved.
    pub fn accept_key(&self, username: &Username) -> Result<Fingerprint, ClientError> {
        self.inner.session.accept(username)
    }

    /// Marks `username`'s current key as verified, after the user compared its
    /// fingerprint out of band (a change to a verified key is the strongest warning).
    /// Returns the fingerprint marked.
    ///
    /// # Errors
    /// [`ClientError::NoPendingKeyChange`] if the user has no trusted, pinned key in this
    /// session; [`ClientError::Pins`] if the pin cannot be saved.
    pub fn mark_verified(&self, username: &Username) -> Result<Fingerprint, ClientError> {
        self.inner.session.mark_verified(username)
    }

    /// Adds a private key the user held before a rotation (e.g. loaded from its backup),
    /// so that copies sealed to it still open.
    pub fn add_previous_key(&self, key: Arc<shared::crypto::RsaPrivateKey>) {
        self.inner.session.add_previous_key(key);
    }

    /// This installation's device id for the account on this server.
    pub fn device(&self) -> shared::DeviceId {
        self.inner.session.device()
    }

    /// Key changes waiting for [`Client::accept_key`].
    pub fn pending_key_changes(&self) -> Vec<KeyChange> {
        self.inner.session.pending_changes()
    }

    /// The members of an open room with the client's view of their keys, or `None` if the
    /// room is not open in this session.
    pub fn members(&self, room: &RoomName) -> Option<Vec<MemberView>> {
        self.inner.session.members(room)
    }

    /// The rooms opened in this session (created or joined, not left).
    pub fn open_rooms(&self) -> Vec<RoomName> {
        self.inner.session.open_rooms()
    }

    /// Closes the connection cleanly. [`ClientEvent::Disconnected`](crate::ClientEvent::Disconnected) follows once the
    /// server acknowledges; requests in flight fail.
    pub async fn close(&self) {
        self.inner.session.save_cache().await;
        self.inner.conn.close().await;
    }

    async fn request(&self, msg: ClientMsg) -> Result<Reply, ClientError> {
        self.inner.conn.request(msg).await
    }

    async fn open_snapshot(&self, snapshot: RoomSnapshot) -> Result<RoomView, ClientError> {
        let session = &self.inner.session;
        let members = session.open_room(&self.inner.conn, &snapshot).await?;
        let online = snapshot
            .online
            .into_iter()
            .filter(|u| snapshot.members.iter().any(|m| m.username.same_as(u)))
            .collect();
        let history = session
            .receive_page(&self.inner.conn, snapshot.history)
            .await;
        Ok(RoomView {
            room: snapshot.room,
            kind: snapshot.kind,
            owner: snapshot.owner,
            admins: snapshot.admins,
            topic: believable_topic(snapshot.topic),
            read_up_to: snapshot.read_up_to,
            has_password: snapshot.has_password,
            hidden: snapshot.hidden,
            members,
            online,
            history,
        })
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.server.server)
            .field("user", &self.username())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Whether a send failed with the server's answer that it stored nothing, so the counter
/// can be used again. Anything else (a lost connection, a timeout, an internal error)
/// leaves it unknown whether the message was stored.
fn refused_before_storing(error: &ClientError) -> bool {
    match error {
        ClientError::MembersAdded { .. }
        | ClientError::UntrustedKeys { .. }
        | ClientError::MessageTooLarge { .. } => true,
        ClientError::Server { code, .. } => matches!(
            code,
            ErrorCode::RecipientMismatch
                | ErrorCode::NotAMember
                | ErrorCode::InvalidInput
                | ErrorCode::RateLimited
                | ErrorCode::FrameTooLarge
                | ErrorCode::Unauthenticated
                | ErrorCode::StorageUnavailable
        ),
        _ => false,
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
