//! Protocol 4's requests: moderating a group room, direct conversations, blocking, typing,
//! read markers, and deleting the account; and protocol 5's lobby watching.

use shared::protocol::{
    direct_room_name, ClientMsg, DeleteAccount, MarkRead, Moderate, ModerationAction, OpenDirect,
    Reply, RoomEvent, RoomKind, SetBlocked, SetTyping, WatchLobby, MAX_HISTORY_PAGE,
};
use shared::{RoomName, Username};

use super::Client;
use crate::error::ClientError;
use crate::rooms::RoomView;

impl Client {
    /// Runs a group room: kick, ban, unban, roles, topic, password, visibility, ownership,
    /// deletion. The change is applied as the pushed event would be (a removed member
    /// leaves the member set; a deleted room is closed) and reported once as
    /// [`ClientEvent::RoomChanged`](crate::ClientEvent::RoomChanged). Returns the event.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `NotAMember`, `NotPermitted`, `UnknownUser`,
    /// `InvalidInput`, `RoomExists` or `QuotaExceeded`; [`ClientError::UnexpectedReply`]
    /// if the server answers with an event for another room; connection errors.
    pub async fn moderate(
        &self,
        room: &RoomName,
        action: ModerationAction,
    ) -> Result<RoomEvent, ClientError> {
        let reply = self
            .request(ClientMsg::Moderate(Moderate {
                room: room.clone(),
                action,
            }))
            .await?;
        let Reply::Moderated(event) = reply else {
            return Err(ClientError::unexpected("Moderated", &reply));
        };
        if !event.room.same_as(room) {
            return Err(ClientError::UnexpectedReply {
                expected: "the event of the room moderated",
                got: format!("an event of {}", event.room),
            });
        }
        self.inner.session.room_event(event.clone());
        Ok(event)
    }

    /// Starts (or re-opens) the direct conversation with `with` and opens it. The snapshot
    /// must be the conversation of these two users (its name is computed locally); the
    /// peer's key is checked against the pins like any member's.
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`]; [`ClientError::Server`] with `UnknownUser`,
    /// `InvalidInput` (oneself) or `NotPermitted` (the other user blocked this one);
    /// [`ClientError::UnexpectedReply`] for a snapshot of another room; connection errors.
    pub async fn open_direct(&self, with: &Username) -> Result<RoomView, ClientError> {
        let me = self.inner.session.identity()?.username().clone();
        let _opening = self.inner.session.opening(&direct_room_name(&me, with));
        let reply = self
            .request(ClientMsg::OpenDirect(OpenDirect {
                with: with.clone(),
                history_limit: self.inner.config.history_limit.min(MAX_HISTORY_PAGE),
            }))
            .await?;
        let Reply::Joined(snapshot) = reply else {
            return Err(ClientError::unexpected("Joined", &reply));
        };
        let expected = direct_room_name(&me, with);
        let is_peer = matches!(&snapshot.kind, RoomKind::Direct { peer } if peer.same_as(with));
        if !snapshot.room.same_as(&expected) || !is_peer {
            return Err(ClientError::UnexpectedReply {
                expected: "the direct conversation with the user asked for",
                got: format!("{} ({:?})", snapshot.room, snapshot.kind),
            });
        }
        self.open_snapshot(snapshot).await
    }

    /// Blocks `user` (their direct conversations are refused from then on, and the one
    /// with them ends) or unblocks them.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `UnknownUser`, `InvalidInput` (oneself) or
    /// `QuotaExceeded`; connection errors.
    pub async fn set_blocked(&self, user: &Username, blocked: bool) -> Result<(), ClientError> {
        let reply = self
            .request(ClientMsg::SetBlocked(SetBlocked {
                user: user.clone(),
                blocked,
            }))
            .await?;
        expect_done(&reply)?;
        self.inner.session.set_blocked(user, blocked);
        Ok(())
    }

    /// The users this one blocked (as of login, and changed since in this session).
    pub fn blocked(&self) -> Vec<Username> {
        self.inner.session.blocked()
    }

    /// Tells the room's other members that the user is typing (or stopped). The server
    /// stores nothing; repeat `true` more often than every `TYPING_LAPSE_SECS`.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `NotAMember`; connection errors.
    pub async fn set_typing(&self, room: &RoomName, typing: bool) -> Result<(), ClientError> {
        let reply = self
            .request(ClientMsg::SetTyping(SetTyping {
                room: room.clone(),
                typing,
            }))
            .await?;
        expect_done(&reply)
    }

    /// Starts (or stops) the server's hints that the public listing changed
    /// ([`ClientEvent::LobbyChanged`](crate::ClientEvent::LobbyChanged)) on this connection.
    /// Watching ends with the connection: a reconnected client asks again.
    ///
    /// # Errors
    /// Connection errors.
    pub async fn watch_lobby(&self, watch: bool) -> Result<(), ClientError> {
        let reply = self
            .request(ClientMsg::WatchLobby(WatchLobby { watch }))
            .await?;
        expect_done(&reply)
    }

    /// Records that the user has read `room` up to `seq`, for their other sessions. Only a
    /// marker that moves forward is sent; returns whether one was.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `NotAMember`; connection errors.
    pub async fn mark_read(&self, room: &RoomName, seq: u64) -> Result<bool, ClientError> {
        if seq <= self.inner.session.read_mark(room) {
            return Ok(false);
        }
        let reply = self
            .request(ClientMsg::MarkRead(MarkRead {
                room: room.clone(),
                seq,
            }))
            .await?;
        expect_done(&reply)?;
        self.inner.session.advance_read_mark(room, seq);
        Ok(true)
    }

    /// The user's read marker for `room`: the highest `seq` marked read on any session
    /// (0: none).
    pub fn read_up_to(&self, room: &RoomName) -> u64 {
        self.inner.session.read_mark(room)
    }

    /// Deletes the logged-in user's account for good. The server then closes every session
    /// of the account ([`ClientEvent::AccountDeleted`](crate::ClientEvent::AccountDeleted)).
    ///
    /// # Errors
    /// [`ClientError::NotLoggedIn`]; [`ClientError::Server`] with `InvalidInput`;
    /// connection errors.
    pub async fn delete_account(&self) -> Result<(), ClientError> {
        let me = self.inner.session.identity()?.username().clone();
        let reply = self
            .request(ClientMsg::DeleteAccount(DeleteAccount { confirm: me }))
            .await?;
        match reply {
            Reply::AccountDeleted => Ok(()),
            other => Err(ClientError::unexpected("AccountDeleted", &other)),
        }
    }
}

/// Checks for `Reply::Done`.
fn expect_done(reply: &Reply) -> Result<(), ClientError> {
    match reply {
        Reply::Done => Ok(()),
        other => Err(ClientError::unexpected("Done", other)),
    }
}
