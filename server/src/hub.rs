//! The hub: the one task that knows which connections are online, and routes frames to
//! them.
//!
//! The hub owns its state outright (no locks): a map from user (canonical name) to that
//! user's live connections, each with its [`Registration`]: the sending half of the
//! connection's bounded outbound queue, and where to say why the hub ends the connection.
//! Everything else talks to it through a cloneable [`HubHandle`].
//!
//! It never waits for a client: frames are pushed with `try_send`, and a connection whose
//! queue is full (in frames, or in bytes: its budget) is dropped from the hub, which closes its queue; the connection's task
//! is told ([`Eviction::TooSlow`]) and disconnects the slow client. A key rotation ends
//! the user's other connections the same way ([`Eviction::KeyRotated`]). Membership is not
//! kept here — the store owns it — so callers name the recipients.
//!
//! It also keeps which connections watch the lobby (`WatchLobby`) and sends them the
//! lobby's hints, and, when spawned with [`HubHandle::spawn_reporting`], notes in a
//! [`PresenceChanges`] each user whose first connection here started or whose last one
//! ended (`crate::presence` tells their co-members).
//!
//! Handlers see delivery only through the [`Fanout`] trait (connect, disconnect, evict,
//! deliver, count who is online, lobby watching). [`HubHandle`] is its single-instance implementation;
//! [`crate::fanout::ChangeStreamFanout`] wraps it to reach the connections of other
//! instances through MongoDB change streams (docs/SCALING.md).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::presence::{Mark, PresenceChanges};
use crate::ws::outbound::PushSender;

/// Identifies one WebSocket connection for the lifetime of the process.
pub type ConnId = u64;

/// An encoded frame for one client, sent as one WebSocket message. A message's delivery
/// is the part all its copies share followed by the recipient's own copy: the shared part
/// is then held once for every recipient instead of copied into each frame. Other frames
/// are a single piece.
///
/// It is 40 bytes, not the 64 of two `Bytes`: every connection's push queue allocates
/// room for 32 of them when it is made, so the size counts for each idle connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushFrame {
    shared: Option<Arc<Bytes>>,
    own: Bytes,
}

impl PushFrame {
    /// The frame `shared` followed by `own`.
    pub fn new(shared: Arc<Bytes>, own: Bytes) -> Self {
        Self {
            shared: Some(shared),
            own,
        }
    }

    /// The frame's length in bytes.
    pub fn len(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.len()) + self.own.len()
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order, borrowed: the shared one (if any) and the frame's own.
    pub fn pieces(&self) -> (Option<&Arc<Bytes>>, &Bytes) {
        (self.shared.as_ref(), &self.own)
    }

    /// The pieces, in order; the shared one, if any, as a cheap clone.
    pub fn into_parts(self) -> (Option<Bytes>, Bytes) {
        (self.shared.map(|s| Bytes::clone(&s)), self.own)
    }
}

impl From<Bytes> for PushFrame {
    fn from(frame: Bytes) -> Self {
        Self {
            shared: None,
            own: frame,
        }
    }
}

/// Why the hub ended a connection; the connection's task closes the socket accordingly.
///
/// It is serialisable because an eviction asked for on one instance is carried to the
/// others (`crate::fanout`): a variant added here crosses instances with no more work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Eviction {
    /// Its push queue was full: the client does not keep up.
    TooSlow,
    /// The user's key was rotated on another connection, so this login's key is retired.
    KeyRotated,
    /// This instance may have missed deliveries (its change stream's history was lost):
    /// the client is to reconnect and re-read history. Only scale-out raises it.
    Resync,
    /// The user's account was deleted (on this connection or another).
    AccountDeleted,
}

/// What the hub holds for one logged-in connection. Made by the connection's task, kept
/// by it until login, then handed to the hub, which from then on holds the only push
/// sender: the push queue closes exactly when the hub lets the connection go.
#[derive(Debug)]
pub struct Registration {
    /// The connection's bounded push queue (in frames and in bytes).
    pub pushes: PushSender,
    /// Told why when the hub ends the connection (dropped unused on a plain disconnect).
    pub evicted: oneshot::Sender<Eviction>,
}

/// Why the hub could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("the hub has stopped")]
pub struct HubStopped;

enum Command {
    Connect {
        conn: ConnId,
        user: String,
        registration: Registration,
    },
    Disconnect {
        conn: ConnId,
        user: String,
    },
    Evict {
        user: String,
        except: Option<ConnId>,
        why: Eviction,
    },
    Deliver {
        frames: Vec<(String, PushFrame)>,
        except: Option<ConnId>,
    },
    Online {
        groups: Vec<Vec<String>>,
        reply: oneshot::Sender<OnlineCounts>,
    },
    Users {
        reply: oneshot::Sender<Vec<String>>,
    },
    EvictAll {
        why: Eviction,
    },
    WatchLobby {
        conn: ConnId,
        user: String,
        watch: bool,
    },
    Lobby {
        frame: Bytes,
    },
}

/// Online counts for groups of users (e.g. each room's members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineCounts {
    /// For each group asked about, how many of its users are online.
    pub per_group: Vec<u32>,
    /// Distinct users online on this server.
    pub users_online: u32,
}

/// How handlers reach connections: everything they know about delivery.
#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Registers a logged-in connection of `user` (canonical name).
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn connect(
        &self,
        conn: ConnId,
        user: String,
        registration: Registration,
    ) -> Result<(), HubStopped>;

    /// Forgets a connection.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn disconnect(&self, conn: ConnId, user: String) -> Result<(), HubStopped>;

    /// Ends every connection of `user` (canonical name) but `except`: each is told `why`
    /// and forgotten, so it gets no further pushes. Requests are applied in order, so a
    /// connection registered before this call is ended by it.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn evict(
        &self,
        user: String,
        except: Option<ConnId>,
        why: Eviction,
    ) -> Result<(), HubStopped>;

    /// Sends each `(user, frame)` pair to every online connection of that user, except
    /// connection `except`.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn deliver(
        &self,
        frames: Vec<(String, PushFrame)>,
        except: Option<ConnId>,
    ) -> Result<(), HubStopped>;

    /// Counts online users in each group, and online users overall.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn online(&self, groups: Vec<Vec<String>>) -> Result<OnlineCounts, HubStopped>;

    /// Starts (or stops) sending connection `conn` of `user` the lobby's hints
    /// ([`Fanout::lobby`]). Watching ends with the connection.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn watch_lobby(&self, conn: ConnId, user: String, watch: bool) -> Result<(), HubStopped>;

    /// Sends `frame` to every connection that watches the lobby, on every instance.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn lobby(&self, frame: Bytes) -> Result<(), HubStopped>;

    /// Sends the same frame to every online connection of each user in `users`.
    ///
    /// # Errors
    /// [`HubStopped`] if delivery has shut down.
    async fn broadcast(
        &self,
        users: Vec<String>,
        frame: Bytes,
        except: Option<ConnId>,
    ) -> Result<(), HubStopped> {
        let frame = PushFrame::from(frame);
        let frames = users.into_iter().map(|u| (u, frame.clone())).collect();
        self.deliver(frames, except).await
    }
}

/// A cloneable handle to the hub task: the single-instance [`Fanout`].
#[derive(Debug, Clone)]
pub struct HubHandle {
    tx: mpsc::Sender<Command>,
}

/// Commands queued to the hub before callers wait; bounds memory under bursts.
const HUB_QUEUE: usize = 65_536;

impl HubHandle {
    /// Starts the hub task on the current tokio runtime. It runs until every handle is
    /// dropped.
    pub fn spawn() -> (Self, tokio::task::JoinHandle<()>) {
        Self::start(Hub::default())
    }

    /// Like [`HubHandle::spawn`], noting in `changes` each user whose first connection
    /// here started or whose last one ended.
    pub fn spawn_reporting(changes: Arc<PresenceChanges>) -> (Self, tokio::task::JoinHandle<()>) {
        Self::start(Hub {
            changes: Some(changes),
            ..Hub::default()
        })
    }

    fn start(hub: Hub) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(HUB_QUEUE);
        let task = tokio::spawn(hub.run(rx));
        (Self { tx }, task)
    }

    async fn send(&self, cmd: Command) -> Result<(), HubStopped> {
        self.tx.send(cmd).await.map_err(|_| HubStopped)
    }

    /// The users (canonical names) with at least one connection on this instance.
    ///
    /// # Errors
    /// [`HubStopped`] if the hub has shut down.
    pub async fn users(&self) -> Result<Vec<String>, HubStopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Users { reply }).await?;
        rx.await.map_err(|_| HubStopped)
    }

    /// Ends every connection on this instance, each told `why`.
    ///
    /// # Errors
    /// [`HubStopped`] if the hub has shut down.
    pub async fn evict_all(&self, why: Eviction) -> Result<(), HubStopped> {
        self.send(Command::EvictAll { why }).await
    }
}

#[async_trait]
impl Fanout for HubHandle {
    async fn connect(
        &self,
        conn: ConnId,
        user: String,
        registration: Registration,
    ) -> Result<(), HubStopped> {
        self.send(Command::Connect {
            conn,
            user,
            registration,
        })
        .await
    }

    async fn disconnect(&self, conn: ConnId, user: String) -> Result<(), HubStopped> {
        self.send(Command::Disconnect { conn, user }).await
    }

    async fn evict(
        &self,
        user: String,
        except: Option<ConnId>,
        why: Eviction,
    ) -> Result<(), HubStopped> {
        self.send(Command::Evict { user, except, why }).await
    }

    async fn deliver(
        &self,
        frames: Vec<(String, PushFrame)>,
        except: Option<ConnId>,
    ) -> Result<(), HubStopped> {
        self.send(Command::Deliver { frames, except }).await
    }

    async fn online(&self, groups: Vec<Vec<String>>) -> Result<OnlineCounts, HubStopped> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Online { groups, reply }).await?;
        rx.await.map_err(|_| HubStopped)
    }

    async fn watch_lobby(&self, conn: ConnId, user: String, watch: bool) -> Result<(), HubStopped> {
        self.send(Command::WatchLobby { conn, user, watch }).await
    }

    async fn lobby(&self, frame: Bytes) -> Result<(), HubStopped> {
        self.send(Command::Lobby { frame }).await
    }
}

#[derive(Default)]
struct Hub {
    online: HashMap<String, HashMap<ConnId, Registration>>,
    /// The connections that watch the lobby, with their users.
    lobby: HashMap<ConnId, String>,
    /// Where users who came online or went offline here are noted, if anywhere.
    changes: Option<Arc<PresenceChanges>>,
}

impl Hub {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            self.apply(cmd);
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Connect {
                conn,
                user,
                registration,
            } => {
                let conns = self.online.entry(user.clone()).or_default();
                let first = conns.is_empty();
                conns.insert(conn, registration);
                if first {
                    self.note(&user);
                }
            }
            Command::Disconnect { conn, user } => {
                self.remove(&user, conn);
            }
            Command::Evict { user, except, why } => {
                let Some(conns) = self.online.get(&user) else {
                    return;
                };
                let ending: Vec<ConnId> = conns
                    .keys()
                    .copied()
                    .filter(|&conn| Some(conn) != except)
                    .collect();
                for conn in ending {
                    tracing::info!(conn, user, ?why, "ending connection");
                    self.evict(&user, conn, why);
                }
            }
            Command::Deliver { frames, except } => {
                let mut too_slow = Vec::new();
                for (user, frame) in frames {
                    let Some(conns) = self.online.get(&user) else {
                        continue;
                    };
                    for (&conn, registration) in conns {
                        if Some(conn) != except && !try_push(registration, frame.clone()) {
                            too_slow.push((user.clone(), conn));
                        }
                    }
                }
                self.drop_slow(too_slow);
            }
            Command::WatchLobby { conn, user, watch } => {
                let registered = self
                    .online
                    .get(&user)
                    .is_some_and(|conns| conns.contains_key(&conn));
                if watch && registered {
                    self.lobby.insert(conn, user);
                } else if !watch {
                    self.lobby.remove(&conn);
                }
            }
            Command::Lobby { frame } => {
                let frame = PushFrame::from(frame);
                let too_slow: Vec<(String, ConnId)> = self
                    .lobby
                    .iter()
                    .filter(|(conn, user)| {
                        self.online
                            .get(*user)
                            .and_then(|conns| conns.get(*conn))
                            .is_some_and(|registration| !try_push(registration, frame.clone()))
                    })
                    .map(|(&conn, user)| (user.clone(), conn))
                    .collect();
                self.drop_slow(too_slow);
            }
            Command::Online { groups, reply } => {
                let per_group = groups
                    .iter()
                    .map(|g| {
                        let n = g.iter().filter(|u| self.online.contains_key(*u)).count();
                        u32::try_from(n).unwrap_or(u32::MAX)
                    })
                    .collect();
                let users_online = u32::try_from(self.online.len()).unwrap_or(u32::MAX);
                let _ = reply.send(OnlineCounts {
                    per_group,
                    users_online,
                });
            }
            Command::Users { reply } => {
                let _ = reply.send(self.online.keys().cloned().collect());
            }
            Command::EvictAll { why } => {
                let ending: Vec<(String, ConnId)> = self
                    .online
                    .iter()
                    .flat_map(|(user, conns)| conns.keys().map(move |&c| (user.clone(), c)))
                    .collect();
                tracing::warn!(connections = ending.len(), ?why, "ending every connection");
                for (user, conn) in ending {
                    self.evict(&user, conn, why);
                }
            }
        }
    }

    /// Ends the connections whose queues were full.
    fn drop_slow(&mut self, too_slow: Vec<(String, ConnId)>) {
        for (user, conn) in too_slow {
            tracing::warn!(conn, user, "outbound queue full; dropping slow connection");
            self.evict(&user, conn, Eviction::TooSlow);
        }
    }

    /// Notes that `user` came online or went offline here.
    fn note(&self, user: &str) {
        if let Some(changes) = &self.changes {
            changes.note(user, Mark::Here);
        }
    }

    /// Forgets a connection and tells it why.
    fn evict(&mut self, user: &str, conn: ConnId, why: Eviction) {
        if let Some(registration) = self.remove(user, conn) {
            // The connection may have ended meanwhile; then no one is left to tell.
            let _ = registration.evicted.send(why);
        }
    }

    /// Forgets a connection and returns its registration. Dropping that closes the
    /// connection's push queue (the hub holds its only sender).
    fn remove(&mut self, user: &str, conn: ConnId) -> Option<Registration> {
        let conns = self.online.get_mut(user)?;
        let registration = conns.remove(&conn);
        self.lobby.remove(&conn);
        if conns.is_empty() {
            self.online.remove(user);
            self.note(user);
        }
        registration
    }
}

/// Queues `frame` for one connection without waiting. Returns `false` when its queue is
/// full (the connection is too slow); a closed queue (the connection is ending) is not.
fn try_push(registration: &Registration, frame: PushFrame) -> bool {
    !matches!(
        registration.pushes.try_send(frame),
        Err(mpsc::error::TrySendError::Full(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration with a push queue of `capacity`, and its receiving ends.
    fn registration(
        capacity: usize,
    ) -> (
        Registration,
        mpsc::Receiver<PushFrame>,
        oneshot::Receiver<Eviction>,
    ) {
        let (pushes, pushes_rx) = crate::ws::outbound::push_queue(capacity, 1 << 20);
        let (evicted, evicted_rx) = oneshot::channel();
        (Registration { pushes, evicted }, pushes_rx, evicted_rx)
    }

    #[tokio::test]
    async fn delivers_only_to_named_users_and_skips_the_origin() {
        let (hub, _task) = HubHandle::spawn();
        let (a1, mut a1_rx, _) = registration(4);
        let (a2, mut a2_rx, _) = registration(4);
        let (b, mut b_rx, _) = registration(4);
        hub.connect(1, "alice".into(), a1).await.expect("hub");
        hub.connect(2, "alice".into(), a2).await.expect("hub");
        hub.connect(3, "bob".into(), b).await.expect("hub");
        hub.deliver(
            vec![("alice".into(), Bytes::from_static(b"x").into())],
            Some(1),
        )
        .await
        .expect("hub");
        let counts = hub
            .online(vec![vec!["alice".into(), "carol".into()]])
            .await
            .expect("hub");
        assert_eq!(counts.per_group, vec![1]);
        assert_eq!(counts.users_online, 2);
        assert_eq!(
            a2_rx.recv().await,
            Some(PushFrame::from(Bytes::from_static(b"x")))
        );
        assert!(a1_rx.try_recv().is_err());
        assert!(b_rx.try_recv().is_err());
    }

    #[test]
    fn a_push_frame_takes_40_bytes_of_every_queue_slot() {
        // Each connection's queue allocates 32 slots up front: 64-byte frames cost every
        // idle connection another kilobyte.
        assert_eq!(std::mem::size_of::<PushFrame>(), 40);
        let frame = PushFrame::new(
            Arc::new(Bytes::from_static(b"shared ")),
            Bytes::from_static(b"own"),
        );
        assert_eq!(frame.len(), 10);
        let (shared, own) = frame.into_parts();
        assert_eq!(shared.as_deref(), Some(&b"shared "[..]));
        assert_eq!(own, b"own"[..]);
    }

    #[tokio::test]
    async fn evicting_a_user_ends_all_but_one_connection_and_says_why() {
        let (hub, _task) = HubHandle::spawn();
        let (a1, mut a1_rx, mut a1_why) = registration(4);
        let (a2, mut a2_rx, a2_why) = registration(4);
        let (a3, mut a3_rx, a3_why) = registration(4);
        let (b, mut b_rx, mut b_why) = registration(4);
        hub.connect(1, "alice".into(), a1).await.expect("hub");
        hub.connect(2, "alice".into(), a2).await.expect("hub");
        hub.connect(3, "alice".into(), a3).await.expect("hub");
        hub.connect(4, "bob".into(), b).await.expect("hub");
        hub.evict("alice".into(), Some(1), Eviction::KeyRotated)
            .await
            .expect("hub");
        assert_eq!(a2_why.await, Ok(Eviction::KeyRotated));
        assert_eq!(a3_why.await, Ok(Eviction::KeyRotated));
        assert!(a2_rx.recv().await.is_none(), "its push queue is closed");
        assert!(a3_rx.recv().await.is_none(), "its push queue is closed");

        hub.broadcast(
            vec!["alice".into(), "bob".into()],
            Bytes::from_static(b"after"),
            None,
        )
        .await
        .expect("hub");
        let after = PushFrame::from(Bytes::from_static(b"after"));
        assert_eq!(a1_rx.recv().await, Some(after.clone()), "the kept one");
        assert_eq!(b_rx.recv().await, Some(after), "other users untouched");
        assert!(a1_why.try_recv().is_err() && b_why.try_recv().is_err());
        let counts = hub.online(vec![vec!["alice".into()]]).await.expect("hub");
        assert_eq!(counts.per_group, vec![1]);
    }

    #[tokio::test]
    async fn users_lists_who_is_online_and_evict_all_ends_everyone() {
        let (hub, _task) = HubHandle::spawn();
        let (a, _a_rx, a_why) = registration(4);
        let (b, _b_rx, b_why) = registration(4);
        hub.connect(1, "alice".into(), a).await.expect("hub");
        hub.connect(2, "bob".into(), b).await.expect("hub");
        let mut users = hub.users().await.expect("hub");
        users.sort();
        assert_eq!(users, ["alice", "bob"]);
        hub.evict_all(Eviction::Resync).await.expect("hub");
        assert_eq!(a_why.await, Ok(Eviction::Resync));
        assert_eq!(b_why.await, Ok(Eviction::Resync));
        assert!(hub.users().await.expect("hub").is_empty());
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_connection() {
        let (hub, _task) = HubHandle::spawn();
        let (tx, mut rx, why) = registration(1);
        hub.connect(7, "slow".into(), tx).await.expect("hub");
        for _ in 0..3 {
            hub.broadcast(vec!["slow".to_owned()], Bytes::from_static(b"f"), None)
                .await
                .expect("hub");
        }
        let counts = hub.online(vec![]).await.expect("hub");
        assert_eq!(counts.users_online, 0, "slow connection must be forgotten");
        assert!(
            rx.recv().await.is_some(),
            "the frame that fit is still delivered"
        );
        assert!(rx.recv().await.is_none(), "then the queue is closed");
        assert_eq!(why.await, Ok(Eviction::TooSlow));
    }
}
