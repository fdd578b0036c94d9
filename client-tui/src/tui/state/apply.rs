//! [`AppState::apply`]: how a report from the network task changes the state.

use std::time::Instant;

use shared::protocol::RoomKind;
use shared::{RoomName, Username};

use super::super::command::Command;
use super::super::event::{describe_disconnect, list, ConnectionState, UiEvent};
use super::words::{join_line, mentions, plural, rejection_words, short_fingerprint};
use super::{AppState, DialogKind, Effect, KeyAlert, Level, OutState, Phase};
use crate::directory::KeyStatus;
use crate::events::{ClientEvent, MembershipSource};

impl AppState {
    /// Takes in a report from the network task.
    pub fn apply(&mut self, event: UiEvent) -> Vec<Effect> {
        match event {
            UiEvent::Progress { title, elapsed } => {
                match &mut self.phase {
                    Phase::Onboarding(o) => o.busy = Some((title, elapsed)),
                    Phase::Main => self.busy = Some((title, elapsed)),
                }
                Vec::new()
            }
            UiEvent::OnboardingFailed { message } => {
                if let Phase::Onboarding(o) = &mut self.phase {
                    o.busy = None;
                    o.error = Some(message);
                }
                Vec::new()
            }
            UiEvent::Ready(me) => {
                self.set_status(
                    format!("Signed in as {} · F2 shows your fingerprint", me.username),
                    Level::Info,
                );
                self.me = Some(me);
                self.phase = Phase::Main;
                vec![Effect::EnterMain]
            }
            UiEvent::Connection(state) => self.connection_changed(state),
            UiEvent::RoomList(list) => {
                self.lobby.replace(list);
                if self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.text.starts_with("Refreshing"))
                {
                    self.status = None;
                }
                Vec::new()
            }
            UiEvent::RoomOpened { view, focus } => {
                let me = self.my_name().cloned();
                let shown = self.is_focused(&view.room) || focus;
                let buffer = self.room_or_insert(&view.room);
                let first_open = buffer.owner.is_none();
                let newest_shown = buffer.timeline.newest_seq();
                buffer.owner = Some(view.owner.clone());
                buffer.peer = match &view.kind {
                    RoomKind::Direct { peer } => Some(peer.clone()),
                    RoomKind::Group => None,
                };
                buffer.admins.clone_from(&view.admins);
                buffer.topic.clone_from(&view.topic);
                buffer.read_up_to = buffer.read_up_to.max(view.read_up_to);
                buffer.ended = None;
                buffer.has_password = view.has_password;
                buffer.hidden = view.hidden;
                buffer.members = view.members.clone();
                buffer.online = view.online.iter().map(Username::canonical).collect();
                let added = buffer.merge_history(&view.history, me.as_ref());
                // Re-opened after a reconnect while the user looks elsewhere: what arrived
                // meanwhile is unread, as if it had been pushed. Opened at start-up: what
                // the user's sessions marked read is not.
                if !first_open && !shown {
                    buffer.count_caught_up(&added, newest_shown);
                } else if first_open && !shown && view.read_up_to > 0 {
                    buffer.recount_unread();
                }
                let mut effects = Vec::new();
                if !first_open && !buffer.loading_older {
                    buffer.gap_floor = newest_shown;
                    effects = buffer.continue_gap_fill(&view.history);
                }
                if let (true, Some(peer)) = (first_open, buffer.peer.clone()) {
                    buffer.timeline.push_notice(
                        format!(
                            "Direct conversation with {peer} · never listed, nobody else can \
                             join · end-to-end encrypted"
                        ),
                        Level::Info,
                    );
                } else if first_open {
                    let kind = match (view.hidden, view.has_password) {
                        (true, true) => "hidden, password",
                        (true, false) => "hidden",
                        (false, true) => "public, password",
                        (false, false) => "public",
                    };
                    buffer.timeline.push_notice(
                        format!(
                            "#{} · {kind} · owner {} · end-to-end encrypted",
                            view.room, view.owner
                        ),
                        Level::Info,
                    );
                }
                if focus {
                    effects.extend(self.show_room(&view.room));
                    let label = self.room(&view.room).map(|r| r.label()).unwrap_or_default();
                    self.set_status(format!("Joined {label}"), Level::Info);
                }
                self.settle_outbox(&view.room);
                effects.extend(self.direct_ready(&view));
                effects
            }
            UiEvent::HistoryLoaded(page) => {
                let me = self.my_name().cloned();
                let shown = self.is_focused(&page.room);
                let buffer = self.room_or_insert(&page.room);
                buffer.loading_older = false;
                let added = buffer.merge_history(&page, me.as_ref());
                if let (Some(floor), false) = (buffer.gap_floor, shown) {
                    buffer.count_caught_up(&added, Some(floor));
                }
                let effects = buffer.continue_gap_fill(&page);
                self.settle_outbox(&page.room);
                if self
                    .status
                    .as_ref()
                    .is_some_and(|s| s.text.starts_with("Loading older"))
                {
                    self.status = None;
                }
                effects
            }
            UiEvent::Members { room, members } => {
                if let Some(buffer) = self.room_mut(&room) {
                    buffer.members = members;
                }
                Vec::new()
            }
            UiEvent::Sent {
                room,
                local_id,
                ack,
            } => {
                self.resent.remove(&local_id);
                self.outbox.remove(local_id);
                if let Some(buffer) = self.room_mut(&room) {
                    buffer.timeline.confirm(local_id, &ack);
                }
                Vec::new()
            }
            UiEvent::AlreadyStored { room, local_id } => {
                self.resent.remove(&local_id);
                if let Some(sent) = self.outbox.remove(local_id) {
                    if let Some(buffer) = self.room_mut(&room) {
                        buffer.timeline.confirm_stored(local_id, sent.message_id);
                    }
                }
                Vec::new()
            }
            UiEvent::SendFailed {
                room,
                local_id,
                reason,
                waiting,
            } => {
                self.resent.remove(&local_id);
                self.outbox.failed(local_id, waiting);
                if let Some(buffer) = self.room_mut(&room) {
                    if waiting {
                        buffer.timeline.wait(local_id);
                    } else {
                        buffer.timeline.fail(local_id, &reason);
                    }
                }
                // Not re-sent from here even if the state still says online: the report
                // of the lost connection may be on its way, and re-sending into it would
                // loop. The next connection (or /retry) sends it.
                if waiting {
                    self.set_status(
                        format!(
                            "Not sent to #{room} yet: {reason} It goes out once you are \
                             connected (/reconnect to try now, /retry to send it now)."
                        ),
                        Level::Warning,
                    );
                } else {
                    self.set_status(
                        format!("Not sent to #{room}: {reason} /retry sends it again."),
                        Level::Error,
                    );
                }
                Vec::new()
            }
            UiEvent::Left(room) => {
                let label = self
                    .room(&room)
                    .map_or_else(|| format!("#{room}"), |r| r.label());
                let effects = self.forget(&room);
                self.set_status(format!("You left {label}."), Level::Info);
                effects
            }
            UiEvent::Memberships(rooms) => {
                self.memberships(&rooms);
                Vec::new()
            }
            UiEvent::Blocked { user, blocked } => self.blocked(&user, blocked),
            UiEvent::DirectFailed { user, message } => self.direct_failed(&user, message),
            UiEvent::PasswordNeeded { room, wrong } => {
                self.status = None;
                vec![Effect::Dialog(DialogKind::Password { room, wrong })]
            }
            UiEvent::KeyAccepted {
                username,
                fingerprint,
            } => {
                self.key_changes.retain(|k| !k.username.same_as(&username));
                for buffer in &mut self.rooms {
                    if buffer.has_member(&username) {
                        for m in &mut buffer.members {
                            if m.username.same_as(&username) {
                                m.status = KeyStatus::Trusted;
                                m.fingerprint = fingerprint;
                            }
                        }
                        buffer.timeline.push_notice(
                            format!("You accepted {username}'s new key {fingerprint}."),
                            Level::Info,
                        );
                    }
                }
                self.set_status(format!("{username}'s new key is trusted."), Level::Info);
                Vec::new()
            }
            UiEvent::Verified {
                username,
                fingerprint,
            } => {
                for buffer in &mut self.rooms {
                    let mut listed = false;
                    for m in &mut buffer.members {
                        if m.username.same_as(&username) && m.fingerprint == fingerprint {
                            m.verified = true;
                            listed = true;
                        }
                    }
                    if listed {
                        buffer.timeline.push_notice(
                            format!(
                                "✓✓ You verified {username}'s key {}.",
                                short_fingerprint(&fingerprint)
                            ),
                            Level::Info,
                        );
                    }
                }
                self.set_status(
                    format!("{username}'s key is verified: a change to it will be a loud alarm."),
                    Level::Info,
                );
                Vec::new()
            }
            UiEvent::MembersAdded {
                room,
                local_id,
                added,
            } => self.members_added(&room, local_id, &added),
            UiEvent::OwnKeyRotated { old, new, backup } => {
                self.busy = None;
                let me = self.me.as_mut().map(|me| {
                    me.fingerprint = new;
                    me.username.clone()
                });
                let kept = match &backup {
                    Some(path) => format!(" The old key is kept in {}.", path.display()),
                    None => String::new(),
                };
                for buffer in &mut self.rooms {
                    for m in &mut buffer.members {
                        if me.as_ref().is_some_and(|me| me.same_as(&m.username)) {
                            m.fingerprint = new;
                            m.status = KeyStatus::Trusted;
                        }
                    }
                    buffer.timeline.push_notice(
                        format!(
                            "You rotated your key: {} → {}. Others see the change signed by \
                             your old key.",
                            short_fingerprint(&old),
                            short_fingerprint(&new)
                        ),
                        Level::Info,
                    );
                }
                self.set_status(
                    format!("Your new key is in use: {}.{kept}", short_fingerprint(&new)),
                    Level::Info,
                );
                Vec::new()
            }
            UiEvent::RotationFailed { message } => {
                self.busy = None;
                self.set_status(
                    format!("Your key was not replaced: {message}"),
                    Level::Error,
                );
                vec![Effect::Dialog(DialogKind::Error {
                    title: "Replacing your key".into(),
                    message,
                })]
            }
            UiEvent::Warning(text) => {
                self.set_status(text, Level::Warning);
                Vec::new()
            }
            UiEvent::NotificationsFailed => self.notifications_failed(),
            UiEvent::Client(event) => self.client_event(event),
            UiEvent::Failed { action, message } => {
                self.set_status(format!("{action}: {message}"), Level::Error);
                vec![Effect::Dialog(DialogKind::Error {
                    title: action,
                    message,
                })]
            }
        }
    }

    /// After a (re)connection, every message waiting for it goes out again.
    fn resend_waiting(&mut self) -> Vec<Effect> {
        let again = self.outbox.resend_waiting();
        for command in &again {
            if let Command::Send { room, local_id, .. } = command {
                if let Some(buffer) = self.room_mut(room) {
                    buffer.timeline.sending(*local_id);
                }
            }
        }
        again.into_iter().map(Effect::Command).collect()
    }

    /// Forgets unconfirmed messages of `room` that history shows stored already (an
    /// earlier attempt was stored and its ack lost), so they are not sent again.
    fn settle_outbox(&mut self, room: &RoomName) {
        let Some(index) = self.rooms.iter().position(|r| r.name.same_as(room)) else {
            return;
        };
        let stored: Vec<u64> = self
            .outbox
            .items()
            .iter()
            .filter(|o| o.room.same_as(room) && o.state != OutState::InFlight)
            .filter(|o| self.rooms[index].timeline.has_message_id(&o.message_id))
            .map(|o| o.local_id)
            .collect();
        for local_id in stored {
            self.outbox.remove(local_id);
            self.rooms[index].timeline.remove_pending(local_id);
        }
    }

    fn connection_changed(&mut self, state: ConnectionState) -> Vec<Effect> {
        let was_online = self.connection == ConnectionState::Online;
        let mut effects = Vec::new();
        match &state {
            ConnectionState::Online if !was_online => {
                self.set_status(format!("Connected to {}", self.server_url), Level::Info);
                self.connection = state.clone();
                effects = self.resend_waiting();
                if self.rooms.iter().any(|r| !r.timeline.entries().is_empty()) {
                    for buffer in &mut self.rooms {
                        buffer.timeline.push_notice("Reconnected.", Level::Info);
                    }
                }
            }
            ConnectionState::Offline {
                reason, retry_in, ..
            } => {
                self.set_status(
                    format!(
                        "Disconnected: {reason} Reconnecting in {} s…",
                        retry_in.as_secs().max(1)
                    ),
                    Level::Warning,
                );
                if was_online {
                    for buffer in &mut self.rooms {
                        buffer.timeline.push_notice(
                            format!("Connection lost: {reason} Reconnecting…"),
                            Level::Warning,
                        );
                    }
                }
            }
            ConnectionState::Stopped { reason } => {
                self.set_status(format!("Offline: {reason}"), Level::Error);
            }
            ConnectionState::Connecting | ConnectionState::Online => {}
        }
        self.connection = state;
        effects
    }

    /// A send refused because members were added: shows the additions the client's
    /// events have not shown yet, then sends the pending message once more (a second
    /// refusal fails it: it is never sent twice, and never silently dropped).
    fn members_added(&mut self, room: &RoomName, local_id: u64, added: &[Username]) -> Vec<Effect> {
        let first_refusal = !self.resent.contains(&local_id);
        let Some(buffer) = self.room_mut(room) else {
            return Vec::new();
        };
        for user in added {
            let key = user.canonical();
            if buffer.has_member(user) || buffer.announced_joins.contains(&key) {
                continue;
            }
            buffer
                .timeline
                .push_notice(join_line(user, "was added", None), Level::Info);
            buffer.announced_joins.push(key);
        }
        if buffer.timeline.pending_text(local_id).is_none() {
            return Vec::new();
        }
        if !first_refusal {
            let reason = "more members were added while sending.";
            buffer.timeline.fail(local_id, reason);
            self.outbox.failed(local_id, false);
            self.resent.remove(&local_id);
            self.set_status(
                format!("Not sent to #{room}: {reason} /retry sends it to them too."),
                Level::Warning,
            );
            return Vec::new();
        }
        // This attempt is over (nothing was stored): send it again under the same id.
        self.outbox.failed(local_id, false);
        let Some(again) = self.outbox.resend(local_id) else {
            return Vec::new();
        };
        self.resent.insert(local_id);
        self.set_status(
            format!(
                "{} joined #{room}: your message is being sent again, now also to them.",
                list(added)
            ),
            Level::Info,
        );
        vec![Effect::Command(again)]
    }

    fn client_event(&mut self, event: ClientEvent) -> Vec<Effect> {
        match event {
            ClientEvent::Message(msg) => {
                let own = self.my_name().is_some_and(|m| m.same_as(&msg.sender));
                let mentioned = !own && self.my_name().is_some_and(|me| mentions(&msg.text, me));
                let focused = self.is_focused(&msg.room);
                let buffer = self.room_or_insert(&msg.room);
                // Their message is what they were typing.
                buffer.typing.retain(|(u, _)| !u.same_as(&msg.sender));
                let mut effects = Vec::new();
                if buffer.timeline.insert_message(&msg, own) && !focused && !own {
                    buffer.unread += 1;
                    if mentioned {
                        buffer.mentions += 1;
                        self.set_status(
                            format!("{} mentioned you in #{}.", msg.sender, msg.room),
                            Level::Info,
                        );
                    }
                    effects.extend(self.call_attention(&msg.room, &msg.sender, mentioned));
                }
                if !msg.unknown_recipients.is_empty() {
                    self.set_status(
                        format!(
                            "{}'s message in #{} was also sent to {}, not shown as a member.",
                            msg.sender,
                            msg.room,
                            list(&msg.unknown_recipients)
                        ),
                        Level::Warning,
                    );
                }
                effects
            }
            ClientEvent::Rejected(rejection) => {
                let room = rejection.room.clone();
                let sender = rejection.sender.clone();
                let reason = rejection_words(&rejection.reason);
                self.room_or_insert(&room)
                    .timeline
                    .insert_rejection(&rejection);
                self.set_status(
                    format!("Refused a message from {sender} in #{room}: {reason}"),
                    Level::Warning,
                );
                Vec::new()
            }
            ClientEvent::MemberJoined {
                room,
                member,
                source,
            } => {
                if let Some(buffer) = self.room_mut(&room) {
                    let how = match source {
                        MembershipSource::Push => "joined",
                        MembershipSource::Reopened => "joined while you were away",
                        MembershipSource::SendRefused => "was added",
                    };
                    let text = join_line(&member.username, how, Some(&member.fingerprint));
                    let key = member.username.canonical();
                    let announced = buffer.announced_joins.iter().position(|k| *k == key);
                    let replaced = announced.is_some_and(|i| {
                        buffer.announced_joins.remove(i);
                        let earlier = join_line(&member.username, "was added", None);
                        buffer.timeline.replace_notice(&earlier, text.clone())
                    });
                    if !replaced {
                        buffer.timeline.push_notice(text, Level::Info);
                    }
                    buffer
                        .members
                        .retain(|m| !m.username.same_as(&member.username));
                    buffer.members.push(member);
                }
                Vec::new()
            }
            ClientEvent::MemberLeft {
                room,
                username,
                source,
            } => {
                if let Some(buffer) = self.room_mut(&room) {
                    let how = match source {
                        MembershipSource::Push => "left",
                        MembershipSource::Reopened => "left while you were away",
                        MembershipSource::SendRefused => "is no longer a member",
                    };
                    buffer.members.retain(|m| !m.username.same_as(&username));
                    buffer.admins.retain(|a| !a.same_as(&username));
                    buffer
                        .announced_joins
                        .retain(|k| *k != username.canonical());
                    buffer
                        .timeline
                        .push_notice(format!("← {username} {how}"), Level::Info);
                }
                Vec::new()
            }
            ClientEvent::KeyRotated {
                username,
                old_fingerprint,
                new_fingerprint,
                rooms,
            } => {
                let text = format!(
                    "{username} rotated their key: {} → {} (signed by the old key)",
                    short_fingerprint(&old_fingerprint),
                    short_fingerprint(&new_fingerprint)
                );
                for buffer in &mut self.rooms {
                    let listed = rooms.iter().any(|r| r.same_as(&buffer.name));
                    if !(listed || buffer.has_member(&username)) {
                        continue;
                    }
                    for m in &mut buffer.members {
                        if m.username.same_as(&username) {
                            m.fingerprint = new_fingerprint;
                            m.status = KeyStatus::Trusted;
                        }
                    }
                    buffer.timeline.push_notice(text.clone(), Level::Info);
                }
                let had_alert = self
                    .key_changes
                    .iter()
                    .any(|k| k.username.same_as(&username));
                self.key_changes.retain(|k| !k.username.same_as(&username));
                self.set_status(text, Level::Info);
                if had_alert {
                    vec![Effect::CloseKeyAlert(username)]
                } else {
                    Vec::new()
                }
            }
            ClientEvent::OwnKeyMismatch {
                presented_fingerprint,
                own_fingerprint,
            } => {
                let text = format!(
                    "⚠ The server presents a different key for YOU ({}; yours is {}). Your \
                     client keeps using your own key, but someone may be trying to read your \
                     messages.",
                    short_fingerprint(&presented_fingerprint),
                    short_fingerprint(&own_fingerprint)
                );
                for buffer in &mut self.rooms {
                    buffer.timeline.push_notice(text.clone(), Level::Error);
                }
                self.set_status(text, Level::Error);
                if self.own_key_alarm == Some(presented_fingerprint) {
                    return Vec::new();
                }
                self.own_key_alarm = Some(presented_fingerprint);
                vec![Effect::Dialog(DialogKind::OwnKeyAlarm {
                    presented: presented_fingerprint,
                    own: own_fingerprint,
                })]
            }
            ClientEvent::MessagesWithheld {
                room,
                sender,
                missing,
            } => {
                let text = format!(
                    "⚠ {} from {sender} did not arrive: the server may be withholding them.",
                    plural(usize::try_from(missing).unwrap_or(usize::MAX), "message")
                );
                self.room_or_insert(&room)
                    .timeline
                    .push_notice(text.clone(), Level::Warning);
                self.set_status(format!("#{room}: {text}"), Level::Warning);
                Vec::new()
            }
            ClientEvent::KeyRotatedElsewhere => {
                self.set_status(
                    "Your key was rotated on another device: this key no longer logs in. \
                     Import the new key (--import) to use this account here.",
                    Level::Error,
                );
                Vec::new()
            }
            ClientEvent::LocalStateError { reason } => {
                self.set_status(
                    format!(
                        "Could not save what this client must remember ({reason}); replayed \
                         messages may not be recognised after a restart until it can."
                    ),
                    Level::Error,
                );
                Vec::new()
            }
            ClientEvent::KeyChanged {
                username,
                pinned_fingerprint,
                new_fingerprint,
                verified,
                rooms,
            } => {
                let alert = KeyAlert {
                    username: username.clone(),
                    pinned: pinned_fingerprint,
                    new: new_fingerprint,
                    verified,
                    rooms: rooms.clone(),
                };
                let text = if verified {
                    format!(
                        "⚠⚠ {username}'s VERIFIED key was REPLACED without a rotation signed by \
                         the verified key: {} → {}. Treat this as an attack unless {username} \
                         confirms it in person. Nothing is encrypted to the new key and its \
                         messages stay hidden.",
                        short_fingerprint(&pinned_fingerprint),
                        short_fingerprint(&new_fingerprint)
                    )
                } else {
                    format!(
                        "⚠ {username}'s key CHANGED without a rotation signed by the old key: \
                         {} → {}. Their new messages stay hidden and nothing is encrypted to \
                         them until you accept (F3).",
                        short_fingerprint(&pinned_fingerprint),
                        short_fingerprint(&new_fingerprint)
                    )
                };
                for buffer in &mut self.rooms {
                    let listed = rooms.iter().any(|r| r.same_as(&buffer.name));
                    if !(listed || buffer.has_member(&username)) {
                        continue;
                    }
                    for m in &mut buffer.members {
                        if m.username.same_as(&username) {
                            m.fingerprint = new_fingerprint;
                            m.status = KeyStatus::Unaccepted {
                                pinned: pinned_fingerprint,
                            };
                            m.verified = false;
                        }
                    }
                    let level = if verified {
                        Level::Error
                    } else {
                        Level::Warning
                    };
                    buffer.timeline.push_notice(text.clone(), level);
                }
                self.key_changes.retain(|k| !k.username.same_as(&username));
                self.key_changes.push_back(alert.clone());
                if verified {
                    self.set_status(
                        format!(
                            "{username}'s VERIFIED key was replaced: do not accept it unless \
                             {username} confirms the new fingerprint in person."
                        ),
                        Level::Error,
                    );
                } else {
                    self.set_status(
                        format!("{username}'s key changed: compare fingerprints before accepting."),
                        Level::Warning,
                    );
                }
                vec![Effect::Dialog(DialogKind::KeyAlert(alert))]
            }
            ClientEvent::InvalidKey { username, reason } => {
                for buffer in &mut self.rooms {
                    if buffer.has_member(&username) {
                        buffer.timeline.push_notice(
                            format!("⚠ The server sent an unusable key for {username}: {reason}"),
                            Level::Warning,
                        );
                    }
                }
                self.set_status(
                    format!("Unusable key for {username}: {reason}"),
                    Level::Warning,
                );
                Vec::new()
            }
            ClientEvent::RoomChanged(event) => self.room_changed(&event),
            ClientEvent::DirectOpened { room, peer } => self.direct_opened(&room, peer),
            ClientEvent::Typing {
                room,
                username,
                typing,
            } => {
                self.member_typing(&room, &username, typing);
                Vec::new()
            }
            ClientEvent::ReadUpTo { room, seq } => {
                self.read_elsewhere(&room, seq);
                Vec::new()
            }
            ClientEvent::Presence { username, online } => {
                self.member_online(&username, online);
                Vec::new()
            }
            ClientEvent::LobbyChanged => self.lobby_changed(Instant::now()),
            ClientEvent::AccountDeleted => {
                self.set_status(
                    "Your account was deleted: this client can no longer sign in with it.",
                    Level::Error,
                );
                vec![Effect::Dialog(DialogKind::AccountDeleted)]
            }
            ClientEvent::ServerError { message, .. } => {
                self.set_status(format!("Server error: {message}"), Level::Error);
                Vec::new()
            }
            ClientEvent::Disconnected { reason } => {
                self.set_status(
                    format!("Disconnected: {}.", describe_disconnect(&reason)),
                    Level::Warning,
                );
                Vec::new()
            }
        }
    }
}
