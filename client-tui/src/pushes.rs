//! The push processor: a task that turns what the reader forwards ([`Inbound`]) into
//! [`ClientEvent`]s, in arrival order.
//!
//! It is separate from the reader because handling a push can itself need a request (the
//! key of a sender never seen before), and the reply to that request must be read by the
//! reader while this task waits. It holds only a weak connection handle, so it never keeps
//! a dropped client's connection alive; it ends when the reader's channel closes.

use std::sync::Arc;

use shared::protocol::Push;
use tokio::sync::mpsc;

use crate::directory::{KeyStatus, MemberView};
use crate::events::ClientEvent;
use crate::inbox::{Origin, RejectReason};
use crate::net::{Inbound, WeakConnection};
use crate::session::Session;

/// Processes inbound items until the connection closes.
pub(crate) async fn run(
    mut inbound: mpsc::UnboundedReceiver<Inbound>,
    session: Arc<Session>,
    conn: WeakConnection,
) {
    while let Some(item) = inbound.recv().await {
        match item {
            Inbound::Push(push) => handle_push(&session, &conn, push).await,
            Inbound::ServerError { code, message } => {
                session.emit(ClientEvent::ServerError { code, message });
            }
            Inbound::Closed { reason } => {
                session.emit(ClientEvent::Disconnected { reason });
                break;
            }
        }
    }
}

async fn handle_push(session: &Session, conn: &WeakConnection, push: Push) {
    match push {
        Push::Message(msg) => {
            let conn = conn.upgrade();
            match session.receive(conn.as_ref(), msg, Origin::Live).await {
                Ok(message) => session.emit(ClientEvent::Message(message)),
                // The same message at the same position again (e.g. it was both in a join
                // snapshot and pushed while joining): nothing new, nothing suspicious.
                Err(r) if r.reason == (RejectReason::Duplicate { first_seq: r.seq }) => {
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
            let view = session.member_joined(&room, &member).unwrap_or_else(|e| {
                tracing::error!(error = %e, user = %member.username, "could not record key");
                MemberView {
                    username: member.username.clone(),
                    fingerprint: shared::crypto::keys::Fingerprint::of_der(&member.public_key),
                    status: KeyStatus::Invalid {
                        reason: e.to_string(),
                    },
                }
            });
            session.emit(ClientEvent::MemberJoined { room, member: view });
        }
        Push::MemberLeft { room, username } => {
            session.member_left(&room, &username);
            session.emit(ClientEvent::MemberLeft { room, username });
        }
        Push::KeyChanged { member, rooms } => {
            // A changed key raises `KeyChanged` from inside `observe`; a key seen for the
            // first time is simply pinned.
            if let Err(e) = session.observe(std::slice::from_ref(&member), &rooms) {
                tracing::error!(error = %e, user = %member.username, "could not record key");
            }
        }
    }
}
