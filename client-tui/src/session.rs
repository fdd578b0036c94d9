//! The session: everything the client knows between requests (who is logged in, which
//! keys are trusted, which rooms are open, which messages were accepted), shared by the
//! [`Client`](crate::Client) API and the push processor.
//!
//! All of it sits behind one `std::sync::Mutex`. Every critical section is short and
//! synchronous; the lock is never held across an `.await` (network requests and the RSA
//! work on the blocking pool happen between sections), so one lock cannot deadlock and
//! keeps the invariants between the parts simple.

use std::sync::{Arc, Mutex, MutexGuard};

use shared::crypto::keys::Fingerprint;
use shared::crypto::message::Recipient;
use shared::crypto::{RsaPrivateKey, RsaPublicKey};
use shared::protocol::{
    ClientMsg, DeliveredMessage, GetUserKey, HistoryPage, MemberInfo, Reply, RoomSnapshot, SendAck,
};
use shared::{DeviceId, RoomName, Username};
use tokio::sync::mpsc;

use crate::directory::{
    Alarm, KeyChange, KeyDirectory, KeyStatus, MemberView, NotUsable, SenderKeys,
};
use crate::error::ClientError;
use crate::events::ClientEvent;
use crate::identity::Identity;
use crate::inbox::{open_delivered, DecryptedMessage, Inbox, Origin, RejectReason, Rejection};
use crate::net::Connection;
use crate::pins::{PinError, PinStore};
use crate::rooms::{HistoryView, Rooms};

/// Shared session state plus the event sender.
pub(crate) struct Session {
    events: mpsc::UnboundedSender<ClientEvent>,
    state: Mutex<State>,
}

struct State {
    /// Set by a successful login (and replaced by a key rotation).
    identity: Option<Identity>,
    /// The user's private keys from before rotations in this session, newest first, so
    /// copies sealed to an old key still open.
    previous_keys: Vec<Arc<RsaPrivateKey>>,
    directory: KeyDirectory,
    rooms: Rooms,
    inbox: Inbox,
    /// This installation's device id.
    device: DeviceId,
    /// The last counter this device used per room (canonical name).
    counters: std::collections::HashMap<String, u64>,
}

/// A delivered message that passed the duplicate check and has keys to verify it with.
struct Prepared {
    msg: DeliveredMessage,
    sender_keys: Vec<RsaPublicKey>,
    /// The sender's current key is an unaccepted change.
    current_unaccepted: bool,
}

impl Session {
    pub(crate) fn new(pins: PinStore, events: mpsc::UnboundedSender<ClientEvent>) -> Self {
        Self {
            events,
            state: Mutex::new(State {
                identity: None,
                previous_keys: Vec::new(),
                directory: KeyDirectory::new(pins),
                rooms: Rooms::default(),
                inbox: Inbox::default(),
                device: DeviceId::random(),
                counters: std::collections::HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every section leaves the state consistent before anything can panic, so a
        // poisoned lock is still safe to use.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends an event; if nobody listens any more, the event is simply dropped.
    pub(crate) fn emit(&self, event: ClientEvent) {
        let _ = self.events.send(event);
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

    /// Pins the user's own key (after registering): the client holds the private key, so
    /// this key is trusted regardless of earlier pins.
    ///
    /// # Errors
    /// [`PinError`] if the pin cannot be persisted.
    pub(crate) fn pin_own(&self, identity: &Identity) -> Result<(), PinError> {
        self.lock().directory.set_own(identity)
    }

    /// Records a successful login.
    ///
    /// # Errors
    /// [`PinError`] if the own-key pin cannot be persisted.
    pub(crate) fn logged_in(&self, identity: Identity) -> Result<(), PinError> {
        let mut st = self.lock();
        st.directory.set_own(&identity)?;
        st.identity = Some(identity);
        Ok(())
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

    /// This installation's device id.
    pub(crate) fn device(&self) -> DeviceId {
        self.lock().device
    }

    /// The next counter for a message to `room`.
    pub(crate) fn next_counter(&self, room: &RoomName) -> u64 {
        let mut st = self.lock();
        let counter = st.counters.entry(room.canonical()).or_default();
        *counter += 1;
        *counter
    }

    // --- keys -----------------------------------------------------------------------

    /// Runs reported keys through pin checking, raising an event for each new alarm.
    /// `rooms` is where the keys were seen, for the alarm.
    ///
    /// # Errors
    /// [`ClientError::Pins`] if a first-sight pin cannot be persisted.
    pub(crate) fn observe(
        &self,
        infos: &[MemberInfo],
        rooms: &[RoomName],
    ) -> Result<Vec<MemberView>, ClientError> {
        let mut views = Vec::with_capacity(infos.len());
        let mut alarms = Vec::new();
        {
            let mut st = self.lock();
            for info in infos {
                let (view, alarm) = st.directory.observe(info)?;
                views.push(view);
                alarms.extend(alarm);
            }
        }
        for alarm in alarms {
            self.emit(alarm_event(alarm, rooms));
        }
        Ok(views)
    }

    /// Accepts a changed key (re-pins it).
    ///
    /// # Errors
    /// [`ClientError::NoPendingKeyChange`] or [`ClientError::Pins`].
    pub(crate) fn accept(&self, username: &Username) -> Result<Fingerprint, ClientError> {
        self.lock()
            .directory
            .accept(username)?
            .ok_or_else(|| ClientError::NoPendingKeyChange(username.clone()))
    }

    /// Unaccepted key changes.
    pub(crate) fn pending_changes(&self) -> Vec<KeyChange> {
        self.lock().directory.pending_changes()
    }

    // --- rooms ----------------------------------------------------------------------

    /// Opens a room from its snapshot (checking every member's key); returns the members.
    ///
    /// # Errors
    /// [`ClientError::Pins`].
    pub(crate) fn open_room(
        &self,
        snapshot: &RoomSnapshot,
    ) -> Result<Vec<MemberView>, ClientError> {
        let views = self.observe(&snapshot.members, std::slice::from_ref(&snapshot.room))?;
        self.lock().rooms.open(snapshot);
        Ok(views)
    }

    /// Forgets a room the user left.
    pub(crate) fn close_room(&self, room: &RoomName) {
        let mut st = self.lock();
        st.rooms.close(room);
        st.inbox.forget_room(room);
    }

    /// A member joined: check their key, list them.
    ///
    /// # Errors
    /// [`ClientError::Pins`].
    pub(crate) fn member_joined(
        &self,
        room: &RoomName,
        member: &MemberInfo,
    ) -> Result<MemberView, ClientError> {
        let views = self.observe(std::slice::from_ref(member), std::slice::from_ref(room))?;
        self.lock().rooms.add_member(room, &member.username);
        views
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Task("observe returned no view".into()))
    }

    /// A member left.
    pub(crate) fn member_left(&self, room: &RoomName, username: &Username) {
        self.lock().rooms.remove_member(room, username);
    }

    /// Replaces a room's member list with the server's current one (after a recipient
    /// mismatch), checking every key.
    ///
    /// # Errors
    /// [`ClientError::Pins`].
    pub(crate) fn set_members(
        &self,
        room: &RoomName,
        members: &[MemberInfo],
    ) -> Result<(), ClientError> {
        self.observe(members, std::slice::from_ref(room))?;
        let names = members.iter().map(|m| m.username.clone()).collect();
        self.lock().rooms.set_members(room, names);
        Ok(())
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
                    })
                })
                .collect(),
        )
    }

    /// The rooms open in this session.
    pub(crate) fn open_rooms(&self) -> Vec<RoomName> {
        self.lock().rooms.names()
    }

    /// Records the user's own sent message so a replay of its id is caught.
    pub(crate) fn remember_sent(&self, ack: &SendAck) {
        self.lock()
            .inbox
            .remember(&ack.room, ack.message_id, ack.seq);
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
        let prepared = self.prepare(conn, msg, origin).await?;
        // Only used if the blocking task panics or the runtime is shutting down.
        let failed = Rejection::new(
            &prepared.msg,
            RejectReason::Mismatch("decryption task failed".into()),
        );
        let (prepared, result) = tokio::task::spawn_blocking(move || {
            let result = open_prepared(&prepared, &own_name, &own_keys);
            (prepared, result)
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "decryption task failed");
            failed
        })?;
        self.finish(prepared, result, origin)
    }

    /// Decrypts a history page: keys are resolved first, then every message is opened in
    /// one blocking task.
    pub(crate) async fn receive_page(&self, conn: &Connection, page: HistoryPage) -> HistoryView {
        let mut view = HistoryView {
            room: page.room,
            messages: Vec::with_capacity(page.messages.len()),
            rejected: Vec::new(),
            has_more: page.has_more,
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
            match self.prepare(Some(conn), msg, Origin::History).await {
                Ok(p) => prepared.push(p),
                Err(r) => view.rejected.push(r),
            }
        }
        let opened = tokio::task::spawn_blocking(move || {
            prepared
                .into_iter()
                .map(|p| {
                    let result = open_prepared(&p, &own_name, &own_keys);
                    (p, result)
                })
                .collect::<Vec<_>>()
        })
        .await;
        match opened {
            Ok(opened) => {
                for (p, result) in opened {
                    match self.finish(p, result, Origin::History) {
                        Ok(m) => view.messages.push(m),
                        Err(r) => view.rejected.push(r),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "history decryption task failed"),
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

    /// Duplicate check and sender keys (fetched and pin-checked if never seen).
    async fn prepare(
        &self,
        conn: Option<&Connection>,
        msg: DeliveredMessage,
        origin: Origin,
    ) -> Result<Prepared, Rejection> {
        let known = {
            let st = self.lock();
            if let Err(reason) = st.inbox.check(&msg, origin) {
                return Err(Rejection::new(&msg, reason));
            }
            st.directory.sender_keys(&msg.sender)
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
        self.observe(std::slice::from_ref(&info), std::slice::from_ref(&msg.room))
            .map_err(|e| e.to_string())?;
        Ok(self.lock().directory.sender_keys(&msg.sender))
    }

    /// Records an opened message as accepted (re-checking for duplicates).
    fn finish(
        &self,
        prepared: Prepared,
        result: Result<DecryptedMessage, RejectReason>,
        origin: Origin,
    ) -> Result<DecryptedMessage, Rejection> {
        let reason = match result {
            Ok(message) => match self.lock().inbox.record(&prepared.msg, origin) {
                Ok(()) => return Ok(message),
                Err(reason) => reason,
            },
            // A signature that fails under the old trusted keys while the current key is
            // an unaccepted change is most likely signed with that new key.
            Err(RejectReason::BadSignature) if prepared.current_unaccepted => {
                RejectReason::UntrustedSenderKey
            }
            Err(reason) => reason,
        };
        Err(Rejection::new(&prepared.msg, reason))
    }
}

fn open_prepared(
    prepared: &Prepared,
    own_name: &Username,
    own_keys: &[Arc<RsaPrivateKey>],
) -> Result<DecryptedMessage, RejectReason> {
    open_delivered(&prepared.msg, own_name, own_keys, &prepared.sender_keys)
}

fn alarm_event(alarm: Alarm, rooms: &[RoomName]) -> ClientEvent {
    match alarm {
        Alarm::Changed(change) => {
            tracing::warn!(
                user = %change.username,
                pinned = %change.pinned_fingerprint,
                new = %change.new_fingerprint,
                "key differs from the pinned one"
            );
            ClientEvent::KeyChanged {
                username: change.username,
                pinned_fingerprint: change.pinned_fingerprint,
                new_fingerprint: change.new_fingerprint,
                rooms: rooms.to_vec(),
            }
        }
        Alarm::Invalid { username, reason } => {
            tracing::warn!(user = %username, %reason, "server presented an unusable key");
            ClientEvent::InvalidKey { username, reason }
        }
    }
}
