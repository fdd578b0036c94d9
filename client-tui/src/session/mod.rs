//! The session: everything the client knows between requests (who is logged in, which
//! keys are trusted, which rooms are open, which messages were accepted), shared by the
//! [`Client`](crate::Client) API and the push processor.
//!
//! All of it sits behind one `std::sync::Mutex`. Every critical section is short and
//! synchronous; the lock is never held across an `.await` (network requests and the RSA
//! work on the blocking pool happen between sections), so one lock cannot deadlock and
//! keeps the invariants between the parts simple.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use shared::crypto::keys::Fingerprint;
use shared::crypto::message::Recipient;
use shared::crypto::rotation::{follow_chain, RotationCertificate};
use shared::crypto::RsaPrivateKey;
use shared::protocol::{
    ClientMsg, DeliveredMessage, GetKeyHistory, GetUserKey, HistoryPage, MemberInfo, Reply,
    RoomEvent, RoomKind, RoomSnapshot, SendAck, MAX_KEY_HISTORY,
};
use shared::{DeviceId, RoomName, Username};

use crate::credence::is_direct_between;
use crate::directory::{
    Alarm, KeyChange, KeyDirectory, KeyStatus, MemberView, NotUsable, SenderKey, SenderKeys,
};
use crate::error::ClientError;
use crate::events::{ClientEvent, EventSender, MembershipSource};
use crate::history_cache::HistoryCache;
use crate::identity::Identity;
use crate::inbox::{
    admit, open_delivered, DecryptedMessage, Opened, Origin, RejectReason, Rejection,
};
use crate::ledger::{Ledger, RetiredKey};
use crate::net::{Connection, WeakConnection};
use crate::pins::{PinError, PinStore};
use crate::rooms::{HistoryView, Rooms};

mod running;

/// Shared session state plus the event sender. Protocol 4's room pushes (moderation,
/// direct conversations, typing, read markers) are handled in `running`.
pub(crate) struct Session {
    events: EventSender,
    /// The connection, to close it when the server floods the client.
    conn: WeakConnection,
    state: Mutex<State>,
    /// Whether the login on this connection has been recorded: the server pushes right
    /// after its `LoggedIn` reply, and a push handled before the reply's rooms are
    /// recorded would be refused as being for a room the user is not in.
    logged_in: tokio::sync::watch::Sender<bool>,
    /// Canonical names of the rooms being joined, created or opened as a conversation
    /// ([`Session::opening`]): the server pushes the room's messages right after its
    /// snapshot, which brings the members' keys, and a push handled before the snapshot
    /// is recorded would find its sender unknown and ask the server for the key.
    opening: tokio::sync::watch::Sender<HashSet<String>>,
    /// Where the history cache is kept (`None`: in memory only).
    cache_path: Option<PathBuf>,
    /// The messages already decrypted and verified, opened at login. Apart from `state`
    /// so that saving it (on the blocking pool) never holds up the session.
    cache: Arc<Mutex<Option<HistoryCache>>>,
}

struct State {
    /// Set by a successful login (and replaced by a key rotation).
    identity: Option<Identity>,
    /// The user's private keys from before rotations, newest first, so copies sealed to
    /// an old key still open.
    previous_keys: Vec<Arc<RsaPrivateKey>>,
    directory: KeyDirectory,
    rooms: Rooms,
    ledger: Ledger,
    /// Whether the last ledger save failed (reported once until one succeeds).
    ledger_unsaved: bool,
    /// Canonical names of the rooms the user is a member of: those listed at login,
    /// joined or created since, not left.
    member_of: HashSet<String>,
    /// (room, sender, device) → the last counter accepted from a live push on this
    /// connection: skipped counters between two live messages were withheld.
    live: HashMap<(String, String, DeviceId), u64>,
    /// Canonical room name → the highest `seq` the user marked read (on any session).
    read_marks: HashMap<String, u64>,
    /// The users this one blocked: their direct conversations are not believed.
    blocked: Vec<Username>,
    /// The room events applied lately, so one that arrives both as the answer to the
    /// user's request and as a push is reported once.
    recent_events: VecDeque<RoomEvent>,
}

/// How long a push for a room being opened waits for the room's snapshot before asking
/// the server for an unknown sender's key itself.
const OPENING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A room marked as being opened ([`Session::opening`]); dropping it ends the mark.
pub(crate) struct Opening<'a> {
    rooms: &'a tokio::sync::watch::Sender<HashSet<String>>,
    room: String,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.rooms.send_modify(|rooms| {
            rooms.remove(&self.room);
        });
    }
}

/// How many applied room events are remembered to report each once.
const RECENT_EVENTS: usize = 64;

/// A delivered message with keys to verify it with.
struct Prepared {
    msg: DeliveredMessage,
    sender_keys: Vec<SenderKey>,
    /// The sender's current key is an unaccepted change.
    current_unaccepted: bool,
}

impl Session {
    pub(crate) fn new(
        pins: PinStore,
        ledger: Ledger,
        cache_path: Option<PathBuf>,
        events: EventSender,
        conn: WeakConnection,
    ) -> Self {
        Self {
            events,
            conn,
            state: Mutex::new(State {
                identity: None,
                previous_keys: Vec::new(),
                directory: KeyDirectory::new(pins),
                rooms: Rooms::default(),
                ledger,
                ledger_unsaved: false,
                member_of: HashSet::new(),
                live: HashMap::new(),
                read_marks: HashMap::new(),
                blocked: Vec::new(),
                recent_events: VecDeque::new(),
            }),
            logged_in: tokio::sync::watch::Sender::new(false),
            opening: tokio::sync::watch::Sender::new(HashSet::new()),
            cache_path,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// Waits (at most `limit`) until a login on this connection has been recorded. A
    /// server sends no push before login; one that does is answered as before once the
    /// wait runs out.
    pub(crate) async fn until_logged_in(&self, limit: std::time::Duration) {
        let mut seen = self.logged_in.subscribe();
        let _ = tokio::time::timeout(limit, seen.wait_for(|done| *done)).await;
    }

    /// Marks `room` as being opened (its join or create request is on its way) until the
    /// returned guard is dropped, once the reply's snapshot is recorded or has failed.
    pub(crate) fn opening(&self, room: &RoomName) -> Opening<'_> {
        let room = room.canonical();
        self.opening.send_modify(|rooms| {
            rooms.insert(room.clone());
        });
        Opening {
            rooms: &self.opening,
            room,
        }
    }

    /// Waits (at most `limit`) until `room` is no longer being opened.
    async fn until_opened(&self, room: &RoomName, limit: std::time::Duration) {
        let room = room.canonical();
        let mut rooms = self.opening.subscribe();
        let _ = tokio::time::timeout(limit, rooms.wait_for(|r| !r.contains(&room))).await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every section leaves the state consistent before anything can panic, so a
        // poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends an event. If the queue is full the server is flooding the client: the
    /// connection is closed and the receiver told why.
    pub(crate) fn emit(&self, event: ClientEvent) {
        if self.events.send(event) {
            return;
        }
        tracing::warn!("event queue full: the server floods this client");
        self.events.flooded();
        if let Some(conn) = self.conn.upgrade() {
            tokio::spawn(async move { conn.close_flooded().await });
        }
    }

    /// Saves the ledger, reporting a failure once until a save succeeds.
    fn save_ledger(&self, st: &mut State) -> Option<ClientEvent> {
        match st.ledger.save() {
            Ok(()) => {
                st.ledger_unsaved = false;
                None
            }
            Err(e) if !st.ledger_unsaved => {
                tracing::error!(error = %e, "could not save the ledger");
                st.ledger_unsaved = true;
                Some(ClientEvent::LocalStateError {
                    reason: e.to_string(),
                })
            }
            Err(_) => None,
        }
    }

    /// Runs `f` on the state, saves the ledger, and emits what it returns.
    fn update<T>(&self, f: impl FnOnce(&mut State) -> (T, Vec<ClientEvent>)) -> T {
        let (out, mut events) = {
            let mut st = self.lock();
            let (out, events) = f(&mut st);
            (out, events)
        };
        if let Some(problem) = self.save_ledger(&mut self.lock()) {
            events.push(problem);
        }
        for event in events {
            self.emit(event);
        }
        out
    }

    // --- identity -------------------------------------------------------------------

    /// The logged-in identity.
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`].
    pub(crate) fn identity(&self) -> Result<Identity, ClientError> {
        self.lock().identity.clone().ok_or(ClientError::NotLoggedIn)
    }

    /// The logged-in username, if any.
    pub(crate) fn username(&self) -> Option<Username> {
        self.lock().identity.as_ref().map(|i| i.username().clone())
    }

    /// This installation's device id for the account on this server.
    pub(crate) fn device(&self) -> DeviceId {
        self.lock().ledger.device()
    }

    /// Pins the user's own key (after registering): the client holds the private key, so
    /// this key is trusted regardless of earlier pins.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted.
    pub(crate) fn pin_own(&self, identity: &Identity) -> Result<(), PinError> {
        self.lock().directory.set_own(identity)
    }

    /// Records a successful login, the rooms the user is a member of and the users they
    /// blocked.
    ///
    /// # Errors
    /// [`PinError`] if the own-key pin cannot be persisted.
    pub(crate) fn logged_in(
        &self,
        identity: Identity,
        rooms: &[RoomName],
        blocked: &[Username],
    ) -> Result<(), PinError> {
        let mut st = self.lock();
        st.directory.set_own(&identity)?;
        st.identity = Some(identity);
        st.member_of = rooms.iter().map(RoomName::canonical).collect();
        st.blocked = blocked.to_vec();
        drop(st);
        self.logged_in.send_replace(true);
        Ok(())
    }

    /// Opens the history cache for `identity`, just logged in (on the blocking pool). If it
    /// cannot be opened every message is decrypted, as without a cache.
    pub(crate) async fn open_cache(&self, identity: &Identity) {
        let path = self.cache_path.clone();
        let owner = identity.username().clone();
        let key = identity.private_key_arc();
        let opened =
            tokio::task::spawn_blocking(move || HistoryCache::open(path, &owner, &key)).await;
        let cache = match opened {
            Ok(Ok(cache)) => Some(cache),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no history cache");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "opening the history cache failed");
                None
            }
        };
        *lock_cache(&self.cache) = cache;
    }

    /// Writes the history cache if it changed (on the blocking pool).
    pub(crate) async fn save_cache(&self) {
        let _ = tokio::task::spawn_blocking(save_cache(Arc::clone(&self.cache))).await;
    }

    /// Records a key rotation: `new` becomes the identity, the old private key is kept to
    /// open copies sealed to it.
    ///
    /// # Errors
    /// [`PinError`] if the new own-key pin cannot be persisted.
    pub(crate) fn rotated(&self, new: Identity) -> Result<(), PinError> {
        let mut st = self.lock();
        st.directory.set_own(&new)?;
        if let Some(old) = st.identity.replace(new) {
            st.previous_keys.insert(0, old.private_key_arc());
        }
        Ok(())
    }

    /// Adds a private key the user held before a rotation, to open copies sealed to it.
    pub(crate) fn add_previous_key(&self, key: Arc<RsaPrivateKey>) {
        self.lock().previous_keys.push(key);
    }

    // --- counters ---------------------------------------------------------------------

    /// The next counter for a message to `room`, saved before it is used.
    ///
    /// # Errors
    /// [`ClientError::Ledger`] if it cannot be saved: a counter that could be handed out
    /// again after a restart would make recipients refuse the later message as a replay.
    pub(crate) fn next_counter(&self, room: &RoomName) -> Result<u64, ClientError> {
        let mut st = self.lock();
        let counter = st.ledger.next_counter(room);
        if let Err(e) = st.ledger.save() {
            st.ledger.release_counter(room, counter);
            return Err(e.into());
        }
        Ok(counter)
    }

    /// Gives a refused message's counter back (see [`Ledger::release_counter`]).
    pub(crate) fn release_counter(&self, room: &RoomName, counter: u64) {
        self.update(|st| (st.ledger.release_counter(room, counter), Vec::new()));
    }

    /// The last counter this device signed in each of the user's rooms.
    pub(crate) fn own_marks(&self) -> Vec<shared::crypto::rotation::CounterMark> {
        let st = self.lock();
        let rooms: Vec<RoomName> = st
            .ledger
            .rooms()
            .filter(|r| st.member_of.contains(*r))
            .filter_map(|r| RoomName::parse(r).ok())
            .collect();
        st.ledger.own_marks(&rooms)
    }

    // --- keys -----------------------------------------------------------------------

    /// Runs reported keys through pin checking. A key that differs from the pin is first
    /// checked for a rotation chain from the pinned key (fetched with `GetKeyHistory`
    /// over `conn`): a valid chain moves the pin with a calm [`ClientEvent::KeyRotated`];
    /// otherwise the change raises [`ClientEvent::KeyChanged`]. `rooms` is where the keys
    /// were seen.
    ///
    /// # Errors
    /// [`ClientError::Pins`] if a pin cannot be persisted.
    pub(crate) async fn observe(
        &self,
        conn: Option<&Connection>,
        infos: &[MemberInfo],
        rooms: &[RoomName],
    ) -> Result<Vec<MemberView>, ClientError> {
        let changes: Vec<(Username, Fingerprint, Fingerprint)> = {
            let st = self.lock();
            infos
                .iter()
                .filter_map(|info| {
                    let pinned = st.directory.unexplained_change(info)?;
                    Some((
                        info.username.clone(),
                        pinned,
                        Fingerprint::of_der(&info.public_key),
                    ))
                })
                .collect()
        };
        let mut events = Vec::new();
        for (username, pinned, presented) in changes {
            let Some(path) = self.rotation_path(conn, &username, pinned, presented).await else {
                continue;
            };
            let moved = self.update(|st| {
                let moved = st.directory.rotated(&username, &presented);
                if moved.is_ok() {
                    for cert in path.iter().rev() {
                        st.ledger.retire(
                            &username,
                            RetiredKey {
                                public_key: cert.old_public_key.clone(),
                                marks: cert.final_counters.clone(),
                            },
                        );
                    }
                    st.ledger
                        .unretire(&username, &path[path.len() - 1].new_public_key);
                }
                (moved, Vec::new())
            });
            moved?;
            tracing::info!(user = %username, "key rotation verified; pin moved");
            events.push(ClientEvent::KeyRotated {
                username,
                old_fingerprint: pinned,
                new_fingerprint: presented,
                rooms: rooms.to_vec(),
            });
        }
        let mut views = Vec::with_capacity(infos.len());
        {
            let mut st = self.lock();
            for info in infos {
                let (view, alarm) = st.directory.observe(info)?;
                views.push(view);
                events.extend(alarm.map(|a| alarm_event(a, rooms, &st)));
            }
        }
        for event in events {
            self.emit(event);
        }
        Ok(views)
    }

    /// The verified rotation certificates from `pinned` to `presented`, if the server has
    /// a chain that leads there.
    async fn rotation_path(
        &self,
        conn: Option<&Connection>,
        username: &Username,
        pinned: Fingerprint,
        presented: Fingerprint,
    ) -> Option<Vec<RotationCertificate>> {
        let reply = conn?
            .request(ClientMsg::GetKeyHistory(GetKeyHistory {
                username: username.clone(),
            }))
            .await;
        let certificates = match reply {
            // A server may keep at most MAX_KEY_HISTORY; a longer list is only work.
            Ok(Reply::KeyHistory(history))
                if history.username.same_as(username)
                    && history.certificates.len() <= MAX_KEY_HISTORY =>
            {
                history.certificates
            }
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(error = %e, user = %username, "no key history");
                return None;
            }
        };
        let username = username.clone();
        tokio::task::spawn_blocking(move || {
            match follow_chain(&username, &pinned, &presented, &certificates) {
                Ok(path) => Some(path.into_iter().cloned().collect::<Vec<_>>()),
                Err(e) => {
                    tracing::warn!(user = %username, error = %e, "key change without a valid rotation chain");
                    None
                }
            }
        })
        .await
        .ok()
        .flatten()
        .filter(|path| !path.is_empty())
    }

    /// Accepts a changed key (re-pins it). The keys it replaces are retired: they verify
    /// only messages up to the counters accepted from the user so far.
    ///
    /// # Errors
    /// [`ClientError::NoPendingKeyChange`] or [`ClientError::Pins`].
    pub(crate) fn accept(&self, username: &Username) -> Result<Fingerprint, ClientError> {
        let accepted = self.update(|st| {
            let accepted = st.directory.accept(username);
            if let Ok(Some((_, replaced))) = &accepted {
                let rooms: Vec<RoomName> = st
                    .ledger
                    .rooms()
                    .filter_map(|r| RoomName::parse(r).ok())
                    .collect();
                let marks: Vec<_> = rooms
                    .iter()
                    .flat_map(|r| st.ledger.last_counters(r, username))
                    .collect();
                for key in replaced {
                    if let Ok(public_key) = shared::crypto::keys::public_to_der(key) {
                        st.ledger.retire(
                            username,
                            RetiredKey {
                                public_key,
                                marks: marks.clone(),
                            },
                        );
                    }
                }
            }
            (accepted, Vec::new())
        });
        accepted?
            .map(|(fingerprint, _)| fingerprint)
            .ok_or_else(|| ClientError::NoPendingKeyChange(username.clone()))
    }

    /// Marks a user's current key as verified after the user compared fingerprints.
    ///
    /// # Errors
    /// [`ClientError::NoPendingKeyChange`] if the key is not a trusted, pinned one;
    /// [`ClientError::Pins`].
    pub(crate) fn mark_verified(&self, username: &Username) -> Result<Fingerprint, ClientError> {
        self.lock()
            .directory
            .mark_verified(username)?
            .ok_or_else(|| ClientError::NoPendingKeyChange(username.clone()))
    }

    /// Unaccepted key changes.
    pub(crate) fn pending_changes(&self) -> Vec<KeyChange> {
        self.lock().directory.pending_changes()
    }

    // --- rooms ----------------------------------------------------------------------

    /// Opens a room from its snapshot (checking every member's key); returns the members.
    /// Members that differ from the list last shown for the room are reported as joins
    /// and leaves ([`MembershipSource::Reopened`]).
    ///
    /// # Errors
    /// [`ClientError::Pins`].
    pub(crate) async fn open_room(
        &self,
        conn: &Connection,
        snapshot: &RoomSnapshot,
    ) -> Result<Vec<MemberView>, ClientError> {
        let room = &snapshot.room;
        if let RoomKind::Direct { peer } = &snapshot.kind {
            let me = self.username().ok_or(ClientError::NotLoggedIn)?;
            if !is_direct_between(room, &me, peer) {
                return Err(ClientError::UnexpectedReply {
                    expected: "a direct conversation named for its two users",
                    got: format!("{room} presented as a conversation with {peer}"),
                });
            }
        }
        let views = self
            .observe(Some(conn), &snapshot.members, std::slice::from_ref(room))
            .await?;
        let names: Vec<Username> = snapshot
            .members
            .iter()
            .map(|m| m.username.clone())
            .collect();
        self.update(|st| {
            let mut events = Vec::new();
            if let Some(before) = st.ledger.members(room) {
                events = membership_diff(before, &views, room, MembershipSource::Reopened, st);
            }
            st.ledger.set_members(room, names);
            st.rooms.open(snapshot);
            let mark = st.read_marks.entry(room.canonical()).or_insert(0);
            *mark = (*mark).max(snapshot.read_up_to);
            if st.member_of.insert(room.canonical()) {
                // A (re)join: messages sent while the user was not a member were not
                // sealed for them, so counters seen before say nothing about gaps.
                st.live.retain(|(r, _, _), _| *r != room.canonical());
            }
            ((), events)
        });
        Ok(views)
    }

    /// Forgets a room the user left.
    pub(crate) fn close_room(&self, room: &RoomName) {
        self.update(|st| (forget_room(st, room), Vec::new()));
    }

    /// Runs one user's reported key (seen in `room`) through pin checking; a key that
    /// cannot be recorded is shown as unusable.
    async fn observe_one(
        &self,
        conn: Option<&Connection>,
        member: &MemberInfo,
        room: &RoomName,
    ) -> MemberView {
        let observed = self
            .observe(
                conn,
                std::slice::from_ref(member),
                std::slice::from_ref(room),
            )
            .await;
        match observed {
            Ok(mut views) if !views.is_empty() => views.remove(0),
            result => {
                let reason = match result {
                    Err(e) => e.to_string(),
                    Ok(_) => "no view".into(),
                };
                tracing::error!(error = %reason, user = %member.username, "could not record key");
                MemberView {
                    username: member.username.clone(),
                    fingerprint: Fingerprint::of_der(&member.public_key),
                    status: KeyStatus::Invalid { reason },
                    verified: false,
                }
            }
        }
    }

    /// A member joined (a push): check their key, list them, tell the user.
    pub(crate) async fn member_joined(
        &self,
        conn: Option<&Connection>,
        room: &RoomName,
        member: &MemberInfo,
    ) {
        let view = self.observe_one(conn, member, room).await;
        self.update(|st| {
            st.rooms.add_member(room, &member.username);
            st.ledger.add_member(room, &member.username);
            let event = ClientEvent::MemberJoined {
                room: room.clone(),
                member: view,
                source: MembershipSource::Push,
            };
            ((), vec![event])
        });
    }

    /// A member left (a push).
    pub(crate) fn member_left(&self, room: &RoomName, username: &Username) {
        self.update(|st| {
            remove_member(st, room, username);
            let event = ClientEvent::MemberLeft {
                room: room.clone(),
                username: username.clone(),
                source: MembershipSource::Push,
            };
            ((), vec![event])
        });
    }

    /// The server refused a send and listed the current members: report every difference
    /// as a join or leave ([`MembershipSource::SendRefused`]) and adopt the list. Returns
    /// who was added.
    ///
    /// # Errors
    /// [`ClientError::Pins`].
    pub(crate) async fn members_changed(
        &self,
        conn: &Connection,
        room: &RoomName,
        members: &[MemberInfo],
    ) -> Result<Vec<Username>, ClientError> {
        let views = self
            .observe(Some(conn), members, std::slice::from_ref(room))
            .await?;
        Ok(self.update(|st| {
            let before = st
                .rooms
                .get(room)
                .map(|r| r.members.clone())
                .unwrap_or_default();
            let added = views
                .iter()
                .filter(|v| !before.iter().any(|b| b.same_as(&v.username)))
                .map(|v| v.username.clone())
                .collect();
            let events = membership_diff(&before, &views, room, MembershipSource::SendRefused, st);
            let names: Vec<Username> = views.iter().map(|v| v.username.clone()).collect();
            st.rooms.set_members(room, names.clone());
            st.ledger.set_members(room, names);
            (added, events)
        }))
    }

    /// The room's members and their trusted keys, in member order, for sealing.
    ///
    /// # Errors
    /// [`ClientError::RoomNotOpen`]; [`ClientError::UntrustedKeys`] if any member's key is
    /// unaccepted, invalid or unknown.
    pub(crate) fn recipients(&self, room: &RoomName) -> Result<Vec<Recipient>, ClientError> {
        let st = self.lock();
        let state = st
            .rooms
            .get(room)
            .ok_or_else(|| ClientError::RoomNotOpen(room.clone()))?;
        if let Some(peer) = &state.direct_peer {
            let me = st.identity.as_ref().map(|i| i.username().clone());
            let intruders: Vec<Username> = state
                .members
                .iter()
                .filter(|m| !m.same_as(peer) && !me.as_ref().is_some_and(|me| me.same_as(m)))
                .cloned()
                .collect();
            if !intruders.is_empty() {
                return Err(ClientError::DirectIntruders {
                    room: state.name.clone(),
                    usernames: intruders,
                });
            }
        }
        let mut recipients = Vec::with_capacity(state.members.len());
        let mut untrusted = Vec::new();
        for member in &state.members {
            match st.directory.recipient_key(member) {
                Ok(key) => recipients.push(Recipient {
                    username: member.clone(),
                    key,
                }),
                Err(NotUsable::Unknown | NotUsable::Untrusted) => untrusted.push(member.clone()),
            }
        }
        if untrusted.is_empty() {
            Ok(recipients)
        } else {
            Err(ClientError::UntrustedKeys {
                room: state.name.clone(),
                usernames: untrusted,
            })
        }
    }

    /// The members of an open room with the client's view of their keys.
    pub(crate) fn members(&self, room: &RoomName) -> Option<Vec<MemberView>> {
        let st = self.lock();
        let state = st.rooms.get(room)?;
        Some(
            state
                .members
                .iter()
                .map(|m| {
                    st.directory.view(m).unwrap_or_else(|| MemberView {
                        username: m.clone(),
                        fingerprint: Fingerprint([0; 32]),
                        status: KeyStatus::Invalid {
                            reason: "key not seen".into(),
                        },
                        verified: false,
                    })
                })
                .collect(),
        )
    }

    /// The rooms open in this session.
    pub(crate) fn open_rooms(&self) -> Vec<RoomName> {
        self.lock().rooms.names()
    }

    /// Records the user's own sent message, so a replay of it is caught.
    pub(crate) fn remember_sent(&self, ack: &SendAck, counter: u64) {
        self.update(|st| {
            if let Some(me) = st.identity.as_ref().map(|i| i.username().clone()) {
                let device = st.ledger.device();
                let _ = st.ledger.record(&ack.room, &me, &device, counter, ack.seq);
            }
            ((), Vec::new())
        });
    }

    // --- receiving ------------------------------------------------------------------

    /// Decrypts and verifies one delivered message. `conn` is used to fetch the key of a
    /// sender never seen before (`None` if the connection is gone).
    pub(crate) async fn receive(
        &self,
        conn: Option<&Connection>,
        msg: DeliveredMessage,
        origin: Origin,
    ) -> Result<DecryptedMessage, Rejection> {
        let (own_name, own_keys) = self.own_keys().map_err(|r| Rejection::new(&msg, r))?;
        let prepared = self.prepare(conn, msg).await?;
        // Only used if the blocking task panics or the runtime is shutting down.
        let failed = Rejection::new(&prepared.msg, task_failed());
        let (prepared, result) = tokio::task::spawn_blocking(move || {
            let result = open_prepared(&prepared, &own_name, &own_keys);
            (prepared, result)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "decryption task failed");
            failed
        })?;
        let verified_by = result.as_ref().ok().map(|o| o.verified_by);
        let (message, withheld) = self.update(|st| {
            let result = result.map(|o| o.message);
            (finish(st, &prepared, result, origin), Vec::new())
        })?;
        if let (Some(index), Some(cache)) = (verified_by, lock_cache(&self.cache).as_mut()) {
            cache.insert(&prepared.msg, &message, &prepared.sender_keys[index]);
        }
        if let Some(event) = withheld {
            self.emit(event);
        }
        Ok(message)
    }

    /// Decrypts a history page: keys are resolved first, then the messages are opened on
    /// the blocking pool (from the history cache where it holds exactly this content, the
    /// rest spread over the cores) and admitted in page order. Newly verified messages are
    /// added to the cache, which is saved in the background.
    pub(crate) async fn receive_page(&self, conn: &Connection, page: HistoryPage) -> HistoryView {
        let mut view = HistoryView {
            room: page.room,
            messages: Vec::with_capacity(page.messages.len()),
            rejected: Vec::new(),
            has_more: page.has_more,
            next_before: page.next_before_seq,
        };
        let (own_name, own_keys) = match self.own_keys() {
            Ok(keys) => keys,
            Err(reason) => {
                view.rejected = page
                    .messages
                    .iter()
                    .map(|m| Rejection::new(m, reason.clone()))
                    .collect();
                return view;
            }
        };
        let mut prepared = Vec::with_capacity(page.messages.len());
        for msg in page.messages {
            match self.prepare(Some(conn), msg).await {
                Ok(p) => prepared.push(p),
                Err(r) => view.rejected.push(r),
            }
        }
        let cache = Arc::clone(&self.cache);
        let opened = tokio::task::spawn_blocking(move || {
            let results = open_page(&prepared, &own_name, &own_keys, &cache);
            prepared.into_iter().zip(results).collect::<Vec<_>>()
        })
        .await;
        let mut verified = Vec::new();
        match opened {
            Ok(opened) => self.update(|st| {
                for (p, (result, verified_by)) in opened {
                    match finish(st, &p, result, Origin::History) {
                        Ok((m, _)) => {
                            if let Some(index) = verified_by {
                                verified.push((p, m.clone(), index));
                            }
                            view.messages.push(m);
                        }
                        Err(r) => view.rejected.push(r),
                    }
                }
                ((), Vec::new())
            }),
            Err(e) => tracing::error!(error = %e, "history decryption task failed"),
        }
        if !verified.is_empty() {
            if let Some(cache) = lock_cache(&self.cache).as_mut() {
                for (p, message, index) in &verified {
                    cache.insert(&p.msg, message, &p.sender_keys[*index]);
                }
            }
            tokio::task::spawn_blocking(save_cache(Arc::clone(&self.cache)));
        }
        view.rejected.sort_by_key(|r| r.seq);
        view
    }

    fn own_keys(&self) -> Result<(Username, Vec<Arc<RsaPrivateKey>>), RejectReason> {
        let st = self.lock();
        let identity = st.identity.as_ref().ok_or(RejectReason::NotLoggedIn)?;
        let mut keys = Vec::with_capacity(1 + st.previous_keys.len());
        keys.push(identity.private_key_arc());
        keys.extend(st.previous_keys.iter().cloned());
        Ok((identity.username().clone(), keys))
    }

    /// Membership check and sender keys (fetched and pin-checked if never seen).
    async fn prepare(
        &self,
        conn: Option<&Connection>,
        msg: DeliveredMessage,
    ) -> Result<Prepared, Rejection> {
        let known = {
            let st = self.lock();
            if !st.member_of.contains(&msg.room.canonical()) {
                return Err(Rejection::new(&msg, RejectReason::NotAMember));
            }
            st.directory
                .sender_keys(&msg.sender, st.ledger.retired(&msg.sender))
        };
        let known = match known {
            // The room's snapshot, on its way, may bring the sender's key.
            SenderKeys::Unknown if self.opening.borrow().contains(&msg.room.canonical()) => {
                self.until_opened(&msg.room, OPENING_WAIT).await;
                let st = self.lock();
                st.directory
                    .sender_keys(&msg.sender, st.ledger.retired(&msg.sender))
            }
            known => known,
        };
        let known = match known {
            SenderKeys::Unknown => match self.fetch_key(conn, &msg).await {
                Ok(keys) => keys,
                Err(why) => return Err(Rejection::new(&msg, RejectReason::UnknownSender(why))),
            },
            known => known,
        };
        match known {
            SenderKeys::Known {
                keys,
                current_unaccepted,
            } if !keys.is_empty() => Ok(Prepared {
                msg,
                sender_keys: keys,
                current_unaccepted,
            }),
            SenderKeys::Known {
                current_unaccepted: true,
                ..
            } => Err(Rejection::new(&msg, RejectReason::UntrustedSenderKey)),
            _ => Err(Rejection::new(
                &msg,
                RejectReason::UnknownSender("the sender's key is unusable".into()),
            )),
        }
    }

    /// Fetches a sender's key with `GetUserKey` and runs it through pin checking.
    async fn fetch_key(
        &self,
        conn: Option<&Connection>,
        msg: &DeliveredMessage,
    ) -> Result<SenderKeys, String> {
        let conn = conn.ok_or_else(|| "disconnected".to_owned())?;
        let reply = conn
            .request(ClientMsg::GetUserKey(GetUserKey {
                username: msg.sender.clone(),
            }))
            .await
            .map_err(|e| e.to_string())?;
        let Reply::UserKey(info) = reply else {
            return Err("unexpected reply to GetUserKey".into());
        };
        if !info.username.same_as(&msg.sender) {
            return Err("the server returned another user's key".into());
        }
        self.observe(
            Some(conn),
            std::slice::from_ref(&info),
            std::slice::from_ref(&msg.room),
        )
        .await
        .map_err(|e| e.to_string())?;
        let st = self.lock();
        Ok(st
            .directory
            .sender_keys(&msg.sender, st.ledger.retired(&msg.sender)))
    }
}

/// Records an opened message as accepted in the ledger; for a live message also checks
/// the signed recipients against the known members and the sender's counter against the
/// last live one (a skipped counter is a withheld message).
fn finish(
    st: &mut State,
    prepared: &Prepared,
    result: Result<DecryptedMessage, RejectReason>,
    origin: Origin,
) -> Result<(DecryptedMessage, Option<ClientEvent>), Rejection> {
    let mut message = match result {
        Ok(message) => message,
        // A signature that fails under the old trusted keys while the current key is
        // an unaccepted change is most likely signed with that new key.
        Err(RejectReason::BadSignature) if prepared.current_unaccepted => {
            return Err(Rejection::new(
                &prepared.msg,
                RejectReason::UntrustedSenderKey,
            ))
        }
        Err(reason) => return Err(Rejection::new(&prepared.msg, reason)),
    };
    admit(&mut st.ledger, &message, origin).map_err(|r| Rejection::new(&prepared.msg, r))?;
    if origin != Origin::Live {
        return Ok((message, None));
    }
    let known: Vec<Username> = match st.rooms.get(&message.room) {
        Some(room) => room.members.clone(),
        None => st
            .ledger
            .members(&message.room)
            .map(<[Username]>::to_vec)
            .unwrap_or_default(),
    };
    if !known.is_empty() {
        message.unknown_recipients = message
            .recipients
            .iter()
            .filter(|r| !known.iter().any(|k| k.same_as(r)))
            .cloned()
            .collect();
    }
    let key = (
        message.room.canonical(),
        message.sender.canonical(),
        message.device,
    );
    let withheld = match st.live.get(&key) {
        Some(&last) if message.counter > last + 1 => Some(ClientEvent::MessagesWithheld {
            room: message.room.clone(),
            sender: message.sender.clone(),
            missing: message.counter - last - 1,
        }),
        _ => None,
    };
    let last = st.live.entry(key).or_insert(0);
    *last = (*last).max(message.counter);
    Ok((message, withheld))
}

/// Takes `user` out of `room`'s member set, in the open room and in the ledger's list last
/// shown, so nothing is sealed for them from now on. The user themself stops being a
/// member.
fn remove_member(st: &mut State, room: &RoomName, user: &Username) {
    st.rooms.remove_member(room, user);
    st.ledger.remove_member(room, user);
    if st
        .identity
        .as_ref()
        .is_some_and(|i| i.username().same_as(user))
    {
        st.member_of.remove(&room.canonical());
    }
}

/// Forgets a room the user is no longer in (left, removed, or deleted).
fn forget_room(st: &mut State, room: &RoomName) {
    st.rooms.close(room);
    st.member_of.remove(&room.canonical());
    st.ledger.clear_members(room);
}

/// Join and leave events for the differences between `before` and `after`.
fn membership_diff(
    before: &[Username],
    after: &[MemberView],
    room: &RoomName,
    source: MembershipSource,
    st: &State,
) -> Vec<ClientEvent> {
    let mut events: Vec<ClientEvent> = after
        .iter()
        .filter(|v| !before.iter().any(|b| b.same_as(&v.username)))
        .map(|v| ClientEvent::MemberJoined {
            room: room.clone(),
            member: v.clone(),
            source,
        })
        .collect();
    let me = st.identity.as_ref().map(|i| i.username().clone());
    events.extend(
        before
            .iter()
            .filter(|b| !after.iter().any(|v| v.username.same_as(b)))
            .filter(|b| me.as_ref().is_none_or(|m| !m.same_as(b)))
            .map(|b| ClientEvent::MemberLeft {
                room: room.clone(),
                username: b.clone(),
                source,
            }),
    );
    events
}

fn open_prepared(
    prepared: &Prepared,
    own_name: &Username,
    own_keys: &[Arc<RsaPrivateKey>],
) -> Result<Opened, RejectReason> {
    open_delivered(&prepared.msg, own_name, own_keys, &prepared.sender_keys)
}

/// What opening one message of a page gave: the message or why not, and for a message
/// verified now (not taken from the cache) which sender key verified it.
type PageResult = (Result<DecryptedMessage, RejectReason>, Option<usize>);

/// Opens a page's messages, in page order: from the cache where it holds exactly this
/// content under a key still trusted, the rest decrypted and verified spread over the
/// machine's cores (RSA decryption is the cost of opening a room).
fn open_page(
    prepared: &[Prepared],
    own_name: &Username,
    own_keys: &[Arc<RsaPrivateKey>],
    cache: &Mutex<Option<HistoryCache>>,
) -> Vec<PageResult> {
    let cached: Vec<Option<DecryptedMessage>> = {
        let cache = lock_cache(cache);
        prepared
            .iter()
            .map(|p| cache.as_ref()?.lookup(&p.msg, &p.sender_keys))
            .collect()
    };
    let missing: Vec<&Prepared> = prepared
        .iter()
        .zip(&cached)
        .filter(|(_, hit)| hit.is_none())
        .map(|(p, _)| p)
        .collect();
    let mut opened = open_spread(&missing, own_name, own_keys).into_iter();
    cached
        .into_iter()
        .map(|hit| match hit {
            Some(message) => (Ok(message), None),
            None => match opened.next() {
                Some(Ok(o)) => (Ok(o.message), Some(o.verified_by)),
                Some(Err(reason)) => (Err(reason), None),
                None => (Err(task_failed()), None),
            },
        })
        .collect()
}

/// Opens `prepared` in order, split over the machine's cores.
fn open_spread(
    prepared: &[&Prepared],
    own_name: &Username,
    own_keys: &[Arc<RsaPrivateKey>],
) -> Vec<Result<Opened, RejectReason>> {
    let open_part = |part: &[&Prepared]| -> Vec<Result<Opened, RejectReason>> {
        part.iter()
            .map(|p| open_prepared(p, own_name, own_keys))
            .collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if prepared.len() < 2 || threads == 1 {
        return open_part(prepared);
    }
    let chunk = prepared.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = prepared
            .chunks(chunk)
            .map(|part| (part.len(), scope.spawn(move || open_part(part))))
            .collect();
        handles
            .into_iter()
            .flat_map(|(len, handle)| {
                handle.join().unwrap_or_else(|_| {
                    tracing::error!("a decryption thread panicked");
                    (0..len).map(|_| Err(task_failed())).collect()
                })
            })
            .collect()
    })
}

fn task_failed() -> RejectReason {
    RejectReason::Mismatch("decryption task failed".into())
}

fn lock_cache(cache: &Mutex<Option<HistoryCache>>) -> MutexGuard<'_, Option<HistoryCache>> {
    // A cache left half-updated by a panic is at worst missing entries.
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Saves the cache, for the blocking pool.
fn save_cache(cache: Arc<Mutex<Option<HistoryCache>>>) -> impl FnOnce() {
    move || {
        if let Some(cache) = lock_cache(&cache).as_mut() {
            if let Err(e) = cache.save() {
                tracing::warn!(error = %e, "could not save the history cache");
            }
        }
    }
}

fn alarm_event(alarm: Alarm, rooms: &[RoomName], st: &State) -> ClientEvent {
    match alarm {
        Alarm::Changed(change) => {
            tracing::warn!(
                user = %change.username,
                pinned = %change.pinned_fingerprint,
                new = %change.new_fingerprint,
                verified = change.verified,
                "key differs from the pinned one"
            );
            ClientEvent::KeyChanged {
                username: change.username,
                pinned_fingerprint: change.pinned_fingerprint,
                new_fingerprint: change.new_fingerprint,
                verified: change.verified,
                rooms: rooms.to_vec(),
            }
        }
        Alarm::Invalid { username, reason } => {
            tracing::warn!(user = %username, %reason, "server presented an unusable key");
            ClientEvent::InvalidKey { username, reason }
        }
        Alarm::OwnKey { presented } => {
            tracing::error!(presented = %presented, "the server presents another key for this user");
            ClientEvent::OwnKeyMismatch {
                presented_fingerprint: presented,
                own_fingerprint: st
                    .identity
                    .as_ref()
                    .map_or(Fingerprint([0; 32]), Identity::fingerprint),
            }
        }
    }
}
