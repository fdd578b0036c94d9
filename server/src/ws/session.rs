//! One connection's task. It reads the socket and runs a single `select!` over:
//! inbound frames, a heartbeat interval, the server's shutdown token, and the signals that
//! the hub ended the connection (its word why, and its push queue closing). What it writes (replies, pings, pongs, the close) goes
//! through the connection's [`Outbound`]; pushes routed by the hub go straight from their
//! bounded queue into the response body ([`super::outbound`]), so they keep flowing while
//! a request is being handled (a send waits for a durable commit); otherwise a client that
//! both sends and receives would look slow and be dropped under load.
//!
//! - Only binary frames are accepted; each is one `ClientFrame`. An undecodable frame gets
//!   a `MalformedFrame` error and the connection carries on; an oversized one gets
//!   `FrameTooLarge` and the connection is closed (the stream cannot be resynchronised).
//! - Every data frame, decodable or not (text frames too), takes a turn of the
//!   connection's request rate and, once logged in, its user's (`limits::rates`); frames
//!   over either get `RateLimited` and nothing else is done with them. Before a frame is
//!   handled, the loop waits until its bytes fit the connection's and the user's byte
//!   budgets, reading nothing meanwhile, so a client that writes faster is read slower. Requests are handled in order by [`handlers::dispatch`]. A send is checked and queued in
//!   the store in order, then completed (durable, delivered, acknowledged) by a task of its
//!   own while the loop reads on, up to [`MAX_SENDS_IN_FLIGHT`] at a time; so a `Sent`
//!   reply may come after the replies to later requests. Replies name their request.
//! - A peer silent for three heartbeat intervals is dropped.
//! - A connection not logged in within the login deadline is closed with 1008.
//! - If the hub drops the connection because its queue is full, the client is closed with
//!   a policy-violation close ("too slow").
//! - If the hub ends it because the user's key was rotated on another connection, the
//!   client is closed with `CLOSE_KEY_ROTATED` (4001), at once: the loop reads no further
//!   request of a login whose key is retired. When its account is deleted, the session
//!   that deleted it is closed with `CLOSE_ACCOUNT_DELETED` (4002) after the reply, and
//!   every other session of the account at once.
//! - A client whose queued frames have not gone out for about two heartbeats (it stopped
//!   reading), or that has more queued than its byte budget, is closed with 1008
//!   ("too slow").
//! - On shutdown the loop reads no further request, waits (at most [`SEND_DRAIN`]) until
//!   the sends in flight are answered, and closes with 1001 "going away".
//! - However it ends, the session then waits at most [`CLOSE_WAIT`] for the client to take
//!   its close, and otherwise aborts the connection ([`Abort`]): a client that stopped
//!   reading holds neither memory nor shutdown beyond that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason};
use bytes::Bytes;
use futures_util::StreamExt;
use governor::clock::QuantaClock;
use shared::protocol::{
    codec, codec::CodecError, Reply, ServerMsg, CLOSE_ACCOUNT_DELETED, CLOSE_KEY_ROTATED,
};
use shared::{ErrorCode, RequestId};
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::HandlerError;
use crate::handlers::{self, AppState, Connection, Handled};
use crate::hub::{ConnId, Eviction, Registration};
use crate::limits::address::ClientAddress;
use crate::limits::connections::ConnectionSlot;
use crate::limits::rates::{ConnectionRates, RateSettings};
use crate::ws::outbound::{Outbound, PushSender};
use crate::ws::socket::Abort;

/// Settings a session needs from the configuration.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Interval between pings.
    pub heartbeat: Duration,
    /// Capacity of the outbound queue.
    pub outbound_queue: usize,
    /// Bytes of replies and pushes that may wait for the client (see `ws::outbound`).
    pub outbound_budget: usize,
    /// Requests and bytes per second allowed on one connection (and per user).
    pub rates: RateSettings,
    /// The rate limiters' clock, made once: making one probes the CPU (CPUID), which in a
    /// virtual machine traps to the hypervisor, about 2.5 % of a login's CPU when each
    /// connection made its own.
    pub clock: QuantaClock,
    /// How long a new connection has to log in before it is closed.
    pub login_deadline: Duration,
}

/// Sends one connection may have queued in the store and not yet completed. More lets
/// the store commit more of them together; each may hold a frame of up to
/// `MAX_FRAME_BYTES` until it completes.
pub const MAX_SENDS_IN_FLIGHT: usize = 8;

/// How long a session ending at shutdown waits for its sends in flight to be answered.
pub const SEND_DRAIN: Duration = Duration::from_secs(3);

/// How long an ending session waits for its close frame to be queued, and then for the
/// client to take everything up to it, before it aborts the connection.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why the loop ended, which decides the close frame.
enum Exit {
    PeerClosed,
    Close(CloseReason),
}

fn close(code: CloseCode, description: &str) -> Exit {
    Exit::Close(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

/// The close for a connection the hub ended.
fn evicted_close(why: Eviction) -> Exit {
    match why {
        Eviction::TooSlow => close(CloseCode::Policy, "too slow"),
        Eviction::KeyRotated => close(
            CloseCode::Other(CLOSE_KEY_ROTATED),
            "key rotated on another session",
        ),
        // 1012 "service restart": a standard code every client already answers by
        // reconnecting, and a reconnecting client re-reads history (docs/SCALING.md).
        Eviction::Resync => close(
            CloseCode::Restart,
            "deliveries may have been missed; reconnect and re-read history",
        ),
        Eviction::AccountDeleted => {
            close(CloseCode::Other(CLOSE_ACCOUNT_DELETED), "account deleted")
        }
    }
}

/// A new connection's ends, as the WebSocket upgrade made them.
#[derive(Debug)]
pub struct Ends {
    /// The connection's id.
    pub conn_id: ConnId,
    /// The client's address.
    pub address: ClientAddress,
    /// The connection's place in its address's count, held for as long as it lives.
    pub slot: ConnectionSlot,
    /// Where the session writes replies and control frames.
    pub outbound: Outbound,
    /// The push queue's sender, handed to the hub at login.
    pub pushes: PushSender,
    /// Cancelled when the hub evicts the connection as too slow, or a frame goes over its
    /// byte budget.
    pub evicted: CancellationToken,
    /// Cancelled once the response body is gone (everything it had is written).
    pub finished: CancellationToken,
    /// Ends the connection when its body cannot (the client stopped reading).
    pub abort: Abort,
}

/// Runs the connection until the peer leaves, fails, is too slow, or the server stops.
#[tracing::instrument(name = "session", skip_all, fields(conn = ends.conn_id, user = tracing::field::Empty))]
pub async fn run(
    state: Arc<AppState>,
    settings: SessionSettings,
    ends: Ends,
    mut stream: AggregatedMessageStream,
    shutdown: CancellationToken,
) {
    let Ends {
        conn_id,
        address,
        slot,
        outbound,
        pushes,
        evicted,
        finished,
        abort,
    } = ends;
    let (told, mut why) = oneshot::channel();
    let mut conn = Connection::new(
        conn_id,
        address,
        Registration {
            pushes,
            evicted: told,
        },
    );
    // Whether `why` has resolved (a resolved receiver must not be polled again).
    let mut why_heard = false;
    let rates = ConnectionRates::new(settings.rates, &settings.clock);
    let sends = Arc::new(Semaphore::new(MAX_SENDS_IN_FLIGHT));
    // The first ping goes out one heartbeat from now, not at once: a client that has just
    // connected is not silent, and an immediate ping would race its first reply.
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.heartbeat,
        settings.heartbeat,
    );
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let login_deadline = tokio::time::sleep(settings.login_deadline);
    tokio::pin!(login_deadline);
    let exit = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break close(CloseCode::Away, "server shutting down"),
            // Before inbound frames: once the hub has ended the login, no request of it runs.
            told = &mut why, if !why_heard => {
                why_heard = true;
                // Without a word (the hub stopped), the queue's closing below ends it.
                if let Ok(told) = told {
                    break evicted_close(told);
                }
            }
            () = &mut login_deadline, if !conn.is_authenticated() => {
                tracing::debug!("not logged in before the deadline; closing");
                break close(CloseCode::Policy, "login deadline passed");
            }
            inbound = stream.next() => {
                last_heard = Instant::now();
                match inbound {
                    None => break Exit::PeerClosed,
                    Some(Ok(AggregatedMessage::Binary(bytes))) => {
                        // Read no further until the frame fits the byte budgets. The frame
                        // is answered however the wait ends: it has been read.
                        let user = user_key(&conn);
                        tokio::select! {
                            () = rates.pace(&state.limits.users, user.as_deref(), bytes.len()) => {}
                            () = shutdown.cancelled() => {}
                            () = evicted.cancelled() => {}
                        }
                        if let Some(exit) = handle_frame(&state, &mut conn, &outbound, (&rates, user.as_deref()), &sends, &bytes).await {
                            break exit;
                        }
                        // Frames already read do not make the stream yield: a client that
                        // writes a thousand at once would hold its worker, and every other
                        // session on it, until all were answered.
                        tokio::task::yield_now().await;
                    }
                    Some(Ok(AggregatedMessage::Text(_))) => {
                        let err = if !rates.admit(&state.limits.users, user_key(&conn).as_deref()) {
                            rate_limited(None)
                        } else {
                            error_frame(None, ErrorCode::MalformedFrame, "text frames are not accepted; send binary frames", None)
                        };
                        if send(&outbound, err).await.is_err() { break Exit::PeerClosed; }
                    }
                    Some(Ok(AggregatedMessage::Ping(p))) => {
                        if outbound.pong(p).await.is_err() { break Exit::PeerClosed; }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    // Complete the closing handshake by echoing the peer's close.
                    Some(Ok(AggregatedMessage::Close(reason))) => {
                        break Exit::Close(reason.unwrap_or_else(|| CloseCode::Normal.into()));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket protocol error");
                        let err = error_frame(None, ErrorCode::FrameTooLarge, "frame rejected: too large or invalid websocket data", None);
                        let _ = send(&outbound, err).await;
                        break close(CloseCode::Size, "frame too large or invalid");
                    }
                }
            }
            () = evicted.cancelled() => break close(CloseCode::Policy, "too slow"),
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > settings.heartbeat * 3 {
                    tracing::debug!("peer silent; dropping");
                    break close(CloseCode::Normal, "heartbeat timeout");
                }
                // Checked every heartbeat, so a reader that stopped is closed between 1.5
                // and 2.5 heartbeats after its queued bytes stopped going out.
                if outbound.stalled_for() > settings.heartbeat * 3 / 2 {
                    tracing::debug!("peer stopped reading; dropping");
                    break close(CloseCode::Policy, "too slow");
                }
                if outbound.ping().await.is_err() { break Exit::PeerClosed; }
            }
        }
    };

    // A reply refused for the byte budget ends the loop like a closed peer; it is the
    // budget's eviction.
    let exit = match exit {
        Exit::PeerClosed if evicted.is_cancelled() => close(CloseCode::Policy, "too slow"),
        other => other,
    };
    outbound.drop_queued_pushes();
    drop(slot);
    if let Ok(user) = conn.user() {
        let _ = state.hub.disconnect(conn.id, user.canonical()).await;
    }
    if shutdown.is_cancelled() {
        // Every request read is answered before the close: wait for the sends in flight
        // (a client that does not read cannot make this wait past the bound).
        let all = u32::try_from(MAX_SENDS_IN_FLIGHT).unwrap_or(u32::MAX);
        if tokio::time::timeout(SEND_DRAIN, sends.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("sends still in flight at shutdown; closing without their answers");
        }
    }
    if let Exit::Close(reason) = exit {
        let _ = tokio::time::timeout(CLOSE_WAIT, outbound.close(reason)).await;
    }
    // The body ends once the close (and whatever is queued before it) is written. Behind a
    // client that stopped reading it never is, and actix would keep the connection until
    // the kernel gives up on it: abort it instead.
    drop(outbound);
    if tokio::time::timeout(CLOSE_WAIT, finished.cancelled())
        .await
        .is_err()
    {
        tracing::debug!("the client did not take its close in time; aborting the connection");
        abort.abort();
    }
}

/// Decodes and answers one frame, charging its turns to the connection's rates and to
/// `user`'s (its user key, read once per frame). Returns `Some` when the connection must
/// end.
async fn handle_frame(
    state: &Arc<AppState>,
    conn: &mut Connection,
    outbound: &Outbound,
    (rates, user): (&ConnectionRates, Option<&str>),
    sends: &Arc<Semaphore>,
    bytes: &[u8],
) -> Option<Exit> {
    // Every frame takes its turn, undecodable ones too: garbage costs a reply like any
    // request, so it must not come for free. A frame over the rate is refused unread but
    // for its request id.
    if !rates.admit(&state.limits.users, user) {
        return send(outbound, rate_limited(codec::request_id_of(bytes)))
            .await
            .err();
    }
    let frame = match codec::decode_client(bytes) {
        Ok(frame) => frame,
        Err(e) => {
            let (code, text) = match &e {
                CodecError::TooLarge { .. } => (ErrorCode::FrameTooLarge, "frame too large"),
                CodecError::Malformed(_) => (ErrorCode::MalformedFrame, "malformed frame"),
            };
            tracing::debug!(error = %e, "undecodable frame");
            let reply = error_frame(None, code, text, None);
            return send(outbound, reply).await.err();
        }
    };
    let request_id = frame.request_id;
    if !rates.admit_request(&state.limits.users, user, &frame.msg) {
        return send(outbound, rate_limited(Some(request_id))).await.err();
    }
    // Every request takes a permit; a queued send keeps it until it completes, so a
    // connection has at most MAX_SENDS_IN_FLIGHT sends in flight, and past that the loop
    // stops reading its frames.
    let permit = Arc::clone(sends).acquire_owned().await.ok();
    let was_authenticated = conn.is_authenticated();
    let result = handlers::dispatch(state, conn, frame.msg).await;
    if !was_authenticated {
        if let Ok(user) = conn.user() {
            tracing::Span::current().record("user", tracing::field::display(user));
        }
    }
    // Errors after which the connection cannot go on: the reply is sent, then the close.
    let ending = match &result {
        Err(HandlerError::ProtocolVersion(_) | HandlerError::HelloFirst) => Some(close(
            CloseCode::Protocol,
            "protocol version or handshake error",
        )),
        Err(HandlerError::KeyRotated) => Some(evicted_close(Eviction::KeyRotated)),
        // The account is gone: the reply goes out, then this session closes too.
        Ok(Handled::Reply(Reply::AccountDeleted)) => Some(evicted_close(Eviction::AccountDeleted)),
        _ => None,
    };
    let result = match result {
        Ok(Handled::Queued(queued)) => {
            let (state, outbound, conn_id) = (Arc::clone(state), outbound.clone(), conn.id);
            let completion = async move {
                let reply = reply_frame(request_id, queued.complete(&state, conn_id).await);
                // The connection may be gone by now; the message is stored and delivered
                // all the same.
                let _ = outbound.binary(reply).await;
                drop(permit);
            };
            actix_web::rt::spawn(completion.instrument(tracing::Span::current()));
            return None;
        }
        Ok(Handled::Reply(reply)) => Ok(reply),
        Err(e) => Err(e),
    };
    if let Some(exit) = send(outbound, reply_frame(request_id, result)).await.err() {
        return Some(exit);
    }
    ending
}

/// The frame answering `request_id`: the reply, or the error (logged by its kind).
fn reply_frame(request_id: RequestId, result: Result<Reply, HandlerError>) -> Bytes {
    match result {
        Ok(reply) => encode_reply(request_id, reply),
        Err(e) => {
            if e.is_server_fault() {
                tracing::error!(error.cause_chain = %crate::error::CauseChain(&e), "request failed");
            } else {
                tracing::debug!(error = %e, "request refused");
            }
            let (code, message, detail) = e.to_wire();
            error_frame(Some(request_id), code, &message, detail)
        }
    }
}

fn encode_reply(request_id: RequestId, reply: Reply) -> Bytes {
    match codec::encode_server(&ServerMsg::Reply { request_id, reply }) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(error = %e, "reply does not encode");
            error_frame(
                Some(request_id),
                ErrorCode::Internal,
                "internal server error",
                None,
            )
        }
    }
}

/// The key of the connection's user in the per-user rates, once it is logged in.
fn user_key(conn: &Connection) -> Option<String> {
    conn.user().ok().map(shared::Username::canonical)
}

/// The `RateLimited` error for a frame over the connection's rate.
fn rate_limited(request_id: Option<RequestId>) -> Bytes {
    let (code, message, _) = HandlerError::RateLimited.to_wire();
    error_frame(request_id, code, &message, None)
}

fn error_frame(
    request_id: Option<RequestId>,
    code: ErrorCode,
    message: &str,
    detail: Option<shared::ErrorDetail>,
) -> Bytes {
    let msg = ServerMsg::Error {
        request_id,
        code,
        message: message.to_owned(),
        detail,
    };
    // An error frame without detail is tiny and always encodes; with detail it is bounded
    // by MAX_ROOM_MEMBERS keys.
    codec::encode_server(&msg).map_or_else(|_| Bytes::new(), Bytes::from)
}

async fn send(outbound: &Outbound, frame: Bytes) -> Result<(), Exit> {
    outbound.binary(frame).await.map_err(|_| Exit::PeerClosed)
}
