//! Request handling: one function per [`ClientMsg`] variant, grouped by area.
//!
//! [`dispatch`] is one exhaustive `match` that checks the session state each request
//! needs and delegates; it holds no business logic. Handlers receive validated values
//! (the protocol's newtypes) and return a [`Reply`] or a [`HandlerError`].
//!
//! - [`auth`] — hello, register, login challenge and proof.
//! - [`rooms`] — list (and watch the list), create, join, leave.
//! - [`messages`] — send (queued, then completed once durable) and history.
//! - [`keys`] — look up and rotate public keys, and the rotation history.
//! - [`moderation`] — running a group room: roles, kicks, bans, topic, password,
//!   visibility, ownership, deletion.
//! - [`direct`] — direct conversations and block lists.
//! - [`presence`] — typing indicators and read markers.
//! - [`account`] — deleting one's account.

pub mod account;
pub mod auth;
pub mod direct;
pub mod keys;
pub mod messages;
pub mod moderation;
pub mod presence;
pub mod rooms;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shared::crypto::keys::Fingerprint;
use shared::protocol::{codec, ClientMsg, MemberInfo, Push, Reply, RoomEvent, ServerMsg};
use shared::{ServerId, Username};

use crate::error::HandlerError;
use crate::hub::{ConnId, Fanout, Registration};
use crate::limits::address::ClientAddress;
use crate::limits::Limits;
use crate::passwords::Hasher;
use crate::store::{RoomSecret, Store, UserRecord};

/// What every connection shares: the store, the hub and the settings handlers need.
pub struct AppState {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// Online connections and routing (the in-process hub, or any other [`Fanout`]).
    pub hub: Arc<dyn Fanout>,
    /// How long a login challenge is valid.
    pub challenge_ttl: Duration,
    /// This server's identity, announced in `HelloAck` and signed by every login proof.
    pub server_id: ServerId,
    /// Where room passwords are hashed and checked (a bounded pool).
    pub passwords: Hasher,
    /// Quotas and throttles.
    pub limits: Limits,
    /// The store's secret that derives hidden rooms' keys. Never logged.
    pub room_secret: RoomSecret,
    /// Drops repeated typing notices, so a client cannot multiply pushes.
    pub typing: presence::TypingFilter,
    /// Where a change of the public listing is said, for the lobby's watchers.
    pub lobby: crate::lobby::LobbyHints,
}

/// Where a connection is in the login exchange.
#[derive(Debug)]
pub enum Auth {
    /// Not logged in, no challenge outstanding.
    Anonymous,
    /// A challenge was issued for `user` and not yet answered.
    ChallengeSent {
        /// The account being logged in to.
        user: UserRecord,
        /// The nonce the proof must sign. Never logged.
        nonce: [u8; 32],
        /// When the challenge stops being valid.
        expires: Instant,
    },
    /// Logged in as `user`.
    Authenticated {
        /// The account.
        user: Username,
    },
}

/// One connection's own state, owned by its session task (no shared map).
#[derive(Debug)]
pub struct Connection {
    /// This connection's id.
    pub id: ConnId,
    /// The client's address, as the per-address limits count it.
    pub address: ClientAddress,
    /// Whether `Hello` has been exchanged.
    pub greeted: bool,
    /// Login progress.
    pub auth: Auth,
    /// What the hub needs to reach this connection, held until login, when it is handed
    /// to the hub. From then on the hub holds the only push sender, so the push queue
    /// closes exactly when the hub lets the connection go.
    pub registration: Option<Registration>,
    /// The order in which this connection's sends deliver.
    pub deliveries: messages::DeliveryOrder,
}

impl Connection {
    /// A fresh, unauthenticated connection.
    pub fn new(id: ConnId, address: ClientAddress, registration: Registration) -> Self {
        Self {
            id,
            address,
            greeted: false,
            auth: Auth::Anonymous,
            registration: Some(registration),
            deliveries: messages::DeliveryOrder::default(),
        }
    }

    /// The logged-in user.
    ///
    /// # Errors
    /// [`HandlerError::Unauthenticated`] before login.
    pub fn user(&self) -> Result<&Username, HandlerError> {
        match &self.auth {
            Auth::Authenticated { user } => Ok(user),
            _ => Err(HandlerError::Unauthenticated),
        }
    }

    /// Whether the connection is logged in.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.auth, Auth::Authenticated { .. })
    }
}

/// What [`dispatch`] did with a request.
pub enum Handled {
    /// It is answered.
    Reply(Reply),
    /// A send was queued in the store; completing it gives the reply.
    Queued(messages::QueuedSend),
}

/// Routes one request to its handler, enforcing the order Hello → (register | login) →
/// everything else.
///
/// # Errors
/// Whatever the handler returns; [`HandlerError::HelloFirst`] before `Hello`;
/// [`HandlerError::Unauthenticated`] for room and message requests before login.
pub async fn dispatch(
    state: &AppState,
    conn: &mut Connection,
    msg: ClientMsg,
) -> Result<Handled, HandlerError> {
    if !conn.greeted && !matches!(msg, ClientMsg::Hello(_)) {
        return Err(HandlerError::HelloFirst);
    }
    let reply = match msg {
        ClientMsg::Hello(req) => auth::hello(state, conn, req),
        ClientMsg::Register(req) => auth::register(state, conn, req).await,
        ClientMsg::LoginStart(req) => auth::login_start(state, conn, req).await,
        ClientMsg::LoginProof(req) => auth::login_proof(state, conn, req).await,
        ClientMsg::ListRooms(req) => rooms::list(state, conn.user()?, req).await,
        ClientMsg::CreateRoom(req) => rooms::create(state, conn.user()?, req).await,
        ClientMsg::JoinRoom(req) => rooms::join(state, conn.id, conn.user()?, req).await,
        ClientMsg::LeaveRoom(req) => rooms::leave(state, conn.id, conn.user()?, req).await,
        ClientMsg::SendMessage(req) => {
            let turn = conn.deliveries.next_turn();
            return Ok(Handled::Queued(
                messages::queue_send(state, conn.user()?, req, turn).await?,
            ));
        }
        ClientMsg::FetchHistory(req) => messages::history(state, conn.user()?, req).await,
        ClientMsg::GetUserKey(req) => keys::get(state, conn.user()?, req).await,
        ClientMsg::RotateKey(req) => keys::rotate(state, conn.id, conn.user()?, req).await,
        ClientMsg::GetKeyHistory(req) => keys::history(state, conn.user()?, req).await,
        ClientMsg::Moderate(req) => moderation::moderate(state, conn.id, conn.user()?, req).await,
        ClientMsg::OpenDirect(req) => direct::open(state, conn.id, conn.user()?, req).await,
        ClientMsg::SetBlocked(req) => direct::set_blocked(state, conn.id, conn.user()?, req).await,
        ClientMsg::SetTyping(req) => presence::typing(state, conn.user()?, req).await,
        ClientMsg::MarkRead(req) => presence::mark_read(state, conn.id, conn.user()?, req).await,
        ClientMsg::DeleteAccount(req) => account::delete(state, conn.id, conn.user()?, req).await,
        ClientMsg::WatchLobby(req) => rooms::watch_lobby(state, conn.id, conn.user()?, req).await,
    }?;
    Ok(Handled::Reply(reply))
}

/// A member as the protocol describes them, fingerprint included.
pub fn member_info(user: &UserRecord) -> MemberInfo {
    MemberInfo {
        username: user.username.clone(),
        public_key: user.public_key.clone(),
        fingerprint: Fingerprint::of_der(&user.public_key).to_string(),
    }
}

/// Encodes a push frame once, for sending to many connections.
///
/// # Errors
/// [`HandlerError::Internal`] if the frame would exceed the frame limit.
pub fn encode_push(push: Push) -> Result<Bytes, HandlerError> {
    codec::encode_server(&ServerMsg::Push(push))
        .map(Bytes::from)
        .map_err(|e| HandlerError::Internal(format!("encode push: {e}")))
}

/// Pushes `event` to every connection of `users` (usernames, any case) but `except`.
///
/// # Errors
/// [`HandlerError::Internal`] if the frame cannot be encoded or the hub has stopped.
pub async fn announce(
    state: &AppState,
    event: RoomEvent,
    users: &[Username],
    except: Option<ConnId>,
) -> Result<(), HandlerError> {
    let frame = encode_push(Push::RoomEvent(event))?;
    let recipients = users.iter().map(Username::canonical).collect();
    state
        .hub
        .broadcast(recipients, frame, except)
        .await
        .map_err(hub_gone)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Tells the hub, mapping its absence (shutdown) to a typed error.
pub(crate) fn hub_gone(_: crate::hub::HubStopped) -> HandlerError {
    HandlerError::Internal("hub stopped".into())
}
