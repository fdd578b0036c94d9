//! The push processor: a task that turns what the reader forwards ([`Inbound`]) into
//! [`ClientEvent`]s, in arrival order.
//!
//! It is separate from the reader because handling a push can itself need a request (the
//! key of a sender never seen before), and the reply to that request must be read by the
//! reader while this task waits. It holds only a weak connection handle, so it never keeps
//! a dropped client's connection alive; it ends when the reader's channel closes.

use std::sync::Arc;

use shared::protocol::{Push, CLOSE_ACCOUNT_DELETED, CLOSE_KEY_ROTATED};
use tokio::sync::mpsc;

use crate::events::ClientEvent;
use crate::inbox::{Origin, RejectReason};
use crate::net::{Inbound, WeakConnection};
use crate::session::Session;

/// How long the first push waits for the login before it to be recorded (it is recorded
/// as soon as the task that logged in runs again; only a server pushing before any login
/// waits this long, and only once).
const LOGIN_RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Processes inbound items until the connection closes.
pub(crate) async fn run(
    mut inbound: mpsc::Receiver<Inbound>,
    session: Arc<Session>,
    conn: WeakConnection,
) {
    let mut login_awaited = false;
    while let Some(item) = inbound.recv().await {
        match item {
            Inbound::Push(push) => {
                // The reader forwards the login's reply and the pushes behind it at once;
                // the login is recorded by the task that asked for it, which may not have
                // run yet.
                if !login_awaited {
                    session.until_logged_in(LOGIN_RECORD_WAIT).await;
                    login_awaited = true;
                }
                handle_push(&session, &conn, push).await;
            }
            Inbound::ServerError { code, message } => {
                session.emit(ClientEvent::ServerError { code, message });
            }
            Inbound::Closed { reason, code } => {
                match code {
                    Some(CLOSE_KEY_ROTATED) => session.emit(ClientEvent::KeyRotatedElsewhere),
                    Some(CLOSE_ACCOUNT_DELETED) => session.emit(ClientEvent::AccountDeleted),
                    _ => {}
                }
                session.emit(ClientEvent::Disconnected { reason });
                return;
            }
        }
    }
    // The reader ended without a final item (its queue was full): say why anyway.
    let reason = conn
        .upgrade()
        .and_then(|c| c.closed_reason())
        .unwrap_or_else(|| "connection closed".into());
    session.emit(ClientEvent::Disconnected { reason });
}

async fn handle_push(session: &Session, conn: &WeakConnection, push: Push) {
    match push {
        Push::Message(msg) => {
            let conn = conn.upgrade();
            match session.receive(conn.as_ref(), msg, Origin::Live).await {
                Ok(message) => session.emit(ClientEvent::Message(message)),
                // The same message at the same position again (e.g. it was both in a join
                // snapshot and pushed while joining): nothing new, nothing suspicious.
                Err(r) if matches!(r.reason, RejectReason::Duplicate { .. }) => {
                    tracing::debug!(room = %r.room, seq = r.seq, "message delivered twice");
                }
                Err(rejection) => {
                    tracing::warn!(
                        room = %rejection.room,
                        seq = rejection.seq,
                        sender = %rejection.sender,
                        reason = %rejection.reason,
                        "message rejected"
                    );
                    session.emit(ClientEvent::Rejected(rejection));
                }
            }
        }
        Push::MemberJoined { room, member } => {
            let conn = conn.upgrade();
            session.member_joined(conn.as_ref(), &room, &member).await;
        }
        Push::MemberLeft { room, username } => session.member_left(&room, &username),
        Push::KeyChanged { member, rooms } => {
            // A rotation with a valid chain moves the pin quietly; any other change raises
            // `KeyChanged` from inside `observe`; a key seen for the first time is pinned.
            let conn = conn.upgrade();
            if let Err(e) = session
                .observe(conn.as_ref(), std::slice::from_ref(&member), &rooms)
                .await
            {
                tracing::error!(error = %e, user = %member.username, "could not record key");
            }
        }
        Push::RoomEvent(event) => {
            session.room_event(event);
        }
        Push::DirectOpened { room, peer } => {
            let conn = conn.upgrade();
            session.direct_opened(conn.as_ref(), &room, &peer).await;
        }
        Push::Typing {
            room,
            username,
            typing,
        } => session.typing(&room, &username, typing),
        Push::ReadUpTo { room, seq } => session.read_up_to(&room, seq),
        Push::Presence { username, online } => session.presence(&username, online),
        Push::LobbyChanged => session.emit(ClientEvent::LobbyChanged),
    }
}
