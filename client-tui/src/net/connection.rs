//! Request/reply over one WebSocket: the only code that reads or writes frames.
//!
//! - The **write half** sits behind a `tokio::sync::Mutex`: a request locks it, writes one
//!   binary frame and unlocks. Writes are short and rare compared with reads, so a writer
//!   task would add a queue without adding throughput, and the lock hands write errors
//!   straight back to the caller.
//! - The **read half** is owned by a background reader task. It decodes every frame with
//!   [`shared::protocol::codec`], completes the waiting request for each `Reply`/`Error`
//!   (a map of `oneshot` senders keyed by [`RequestId`]), and forwards everything else as
//!   [`Inbound`] values. Reading continuously is also what answers the server's pings
//!   (tungstenite queues the pong and flushes it on the next read).
//! - When the socket closes, every waiting request fails with a typed error and a final
//!   [`Inbound::Closed`] is sent.
//!
//! The `Inbound` channel is bounded ([`INBOUND_QUEUE`]) but the reader never waits on it:
//! replies and pushes share the reader, so if it could block on a full push queue, a
//! consumer that awaits a request while pushes pile up would deadlock itself. A server
//! that fills the queue is flooding the client: the reader closes the connection (1008)
//! and reports [`FLOOD_REASON`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use shared::protocol::{codec, ClientFrame, ClientMsg, Push, Reply, ServerMsg};
use shared::{ErrorCode, ErrorDetail, RequestId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::Message;

use super::transport::WsStream;
use crate::error::ClientError;
use crate::events::FLOOD_REASON;

/// Pushes queued between the reader and the push processor before the client treats the
/// server as flooding it.
pub(crate) const INBOUND_QUEUE: usize = 1024;

/// The write half, shared by requesters and (to close on a flood) the reader.
type Sink = Arc<tokio::sync::Mutex<SplitSink<WsStream, Message>>>;

/// What the reader hands to the rest of the client, in arrival order.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A server push.
    Push(Push),
    /// An error frame that answers no request (e.g. the server could not decode a frame).
    ServerError {
        /// Stable code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The connection is gone; nothing follows.
    Closed {
        /// What closed it.
        reason: String,
        /// The close code the server sent, if it sent a Close frame with one.
        code: Option<u16>,
    },
}

/// The outcome a waiting request receives.
type Outcome = Result<Reply, ClientError>;

/// State shared by requesters and the reader task.
#[derive(Default)]
struct Pending {
    /// Requests waiting for their reply.
    waiting: HashMap<RequestId, oneshot::Sender<Outcome>>,
    /// Set once the connection is closed: new requests fail immediately with this reason.
    closed: Option<String>,
    /// The last error frame without a request id, reported to requests that fail because
    /// the connection closed right after it (e.g. a refused handshake).
    last_error: Option<(ErrorCode, String, Option<ErrorDetail>)>,
}

/// A `std` mutex: it is never held across an `.await`, only for map operations.
type SharedPending = Arc<Mutex<Pending>>;

fn lock(pending: &SharedPending) -> MutexGuard<'_, Pending> {
    // A panic while holding the lock cannot leave the map inconsistent (single inserts
    // and removes), so a poisoned lock is still usable.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A handle on one server connection. Cheap to clone; the connection (and its reader task)
/// ends when the last handle is dropped or [`Connection::close`] is called.
#[derive(Clone)]
pub(crate) struct Connection {
    inner: Arc<Inner>,
}

/// A handle that does not keep the connection alive (for the push processor, which must
/// not prevent shutdown).
#[derive(Clone)]
pub(crate) struct WeakConnection {
    inner: Weak<Inner>,
}

struct Inner {
    /// The write half; a tokio mutex because writing awaits.
    sink: Sink,
    /// Waiting requests and the closed flag, shared with the reader.
    pending: SharedPending,
    /// Source of request ids; ids are never reused within a connection.
    next_id: AtomicU64,
    /// How long a request waits for its reply.
    timeout: Duration,
    /// Stops the reader when the last handle goes away.
    reader: AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Takes over an open socket and starts the reader task, which sends everything that
    /// is not a reply to `inbound`.
    pub(crate) fn start(
        stream: WsStream,
        timeout: Duration,
        inbound: mpsc::Sender<Inbound>,
    ) -> Self {
        let (sink, stream) = stream.split();
        let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
        let pending = SharedPending::default();
        let reader = tokio::spawn(read_loop(
            stream,
            Arc::clone(&pending),
            inbound,
            Arc::clone(&sink),
        ));
        Self {
            inner: Arc::new(Inner {
                sink,
                pending,
                next_id: AtomicU64::new(1),
                timeout,
                reader: reader.abort_handle(),
            }),
        }
    }

    /// A handle that does not keep the connection open.
    pub(crate) fn downgrade(&self) -> WeakConnection {
        WeakConnection {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Whether the connection is still open, as far as the reader knows.
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.inner.pending).closed.is_none()
    }

    /// Why the connection closed, once it has.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        lock(&self.inner.pending).closed.clone()
    }

    /// Sends `msg` and waits for its reply.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the server refuses; [`ClientError::Disconnected`] if the
    /// connection is or becomes closed; [`ClientError::Timeout`]; [`ClientError::Codec`] or
    /// [`ClientError::Transport`] if the frame cannot be encoded or written.
    pub(crate) async fn request(&self, msg: ClientMsg) -> Result<Reply, ClientError> {
        let inner = &self.inner;
        let request_id = RequestId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let bytes = codec::encode_client(&ClientFrame { request_id, msg })?;

        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&inner.pending);
            if let Some(reason) = &pending.closed {
                return Err(ClientError::Disconnected {
                    reason: reason.clone(),
                });
            }
            pending.waiting.insert(request_id, tx);
        }
        // Removes the entry however this future ends (reply, error, timeout, drop).
        let _guard = PendingGuard {
            pending: &inner.pending,
            request_id,
        };

        // One deadline for writing and answering: a server that stops reading must not
        // hang the caller either.
        let deadline = tokio::time::Instant::now() + inner.timeout;
        let write = async {
            inner
                .sink
                .lock()
                .await
                .send(Message::Binary(bytes.into()))
                .await
        };
        tokio::time::timeout_at(deadline, write)
            .await
            .map_err(|_| ClientError::Timeout(inner.timeout))??;

        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(outcome)) => outcome,
            // The reader dropped the sender without answering: it has stopped.
            Ok(Err(_)) => Err(ClientError::Disconnected {
                reason: "connection reader stopped".into(),
            }),
            Err(_) => Err(ClientError::Timeout(inner.timeout)),
        }
    }

    /// Starts a clean close: sends a Close frame. The reader then sees the server's Close,
    /// fails any waiting requests and reports [`Inbound::Closed`].
    pub(crate) async fn close(&self) {
        let mut sink = self.inner.sink.lock().await;
        // Already closed or broken: nothing more to do.
        let _ = sink.send(Message::Close(None)).await;
    }

    /// Closes the connection because the server floods the client (1008, policy).
    pub(crate) async fn close_flooded(&self) {
        close_flooded(&self.inner.sink).await;
    }
}

impl WeakConnection {
    /// The connection, if any handle still holds it.
    pub(crate) fn upgrade(&self) -> Option<Connection> {
        self.inner.upgrade().map(|inner| Connection { inner })
    }
}

/// Drops a request's `pending` entry when the request finishes or is cancelled.
struct PendingGuard<'a> {
    pending: &'a SharedPending,
    request_id: RequestId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).waiting.remove(&self.request_id);
    }
}

/// Sends a policy-violation Close frame (the server flooded the client).
async fn close_flooded(sink: &Sink) {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: "client flooded".into(),
    };
    // Already closed or broken: nothing more to do.
    let _ = sink.lock().await.send(Message::Close(Some(frame))).await;
}

/// The reader task: routes replies, forwards pushes, and reports the close.
async fn read_loop(
    mut stream: SplitStream<WsStream>,
    pending: SharedPending,
    inbound: mpsc::Sender<Inbound>,
    sink: Sink,
) {
    let mut close_code = None;
    let mut server_reason = None;
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Binary(bytes))) => match codec::decode_server(&bytes) {
                Ok(msg) => {
                    if route(msg, &pending, &inbound).is_err() {
                        tracing::warn!("push queue full: the server floods this client");
                        close_flooded(&sink).await;
                        break FLOOD_REASON.to_owned();
                    }
                }
                // Skip it: a request it answered will time out rather than hang.
                Err(e) => tracing::warn!(error = %e, "undecodable frame from server"),
            },
            Some(Ok(Message::Text(_))) => {
                tracing::warn!("ignoring text frame: the protocol only uses binary frames");
            }
            Some(Ok(Message::Close(frame))) => {
                tracing::debug!(?frame, "server closed the connection");
                if let Some(frame) = frame {
                    close_code = Some(u16::from(frame.code));
                    if !frame.reason.is_empty() {
                        server_reason = Some(format!("closed by the server: {}", frame.reason));
                    }
                }
                // Keep reading: the stream ends once the close handshake completes.
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(e)) => break e.to_string(),
            None => break "connection closed".to_owned(),
        }
    };
    let reason = server_reason.unwrap_or(reason);
    tracing::debug!(%reason, "connection reader stopped");
    fail_all(&pending, reason.clone());
    // If the queue is full the processor still learns of the end: this sender is the
    // last, and dropping it closes the queue once it is drained.
    let _ = inbound.try_send(Inbound::Closed {
        reason,
        code: close_code,
    });
}

/// Marks the connection closed and fails every waiting request.
fn fail_all(pending: &SharedPending, reason: String) {
    let (waiting, last_error) = {
        let mut p = lock(pending);
        p.closed = Some(reason.clone());
        (std::mem::take(&mut p.waiting), p.last_error.take())
    };
    for (_, tx) in waiting {
        let err = match &last_error {
            Some((code, message, detail)) => ClientError::Server {
                code: *code,
                message: message.clone(),
                detail: detail.clone(),
            },
            None => ClientError::Disconnected {
                reason: reason.clone(),
            },
        };
        let _ = tx.send(Err(err));
    }
}

/// Completes a waiting request or queues what is not a reply.
///
/// # Errors
/// `Err(())` if the inbound queue is full (a flood).
fn route(
    msg: ServerMsg,
    pending: &SharedPending,
    inbound: &mpsc::Sender<Inbound>,
) -> Result<(), ()> {
    let item = match msg {
        ServerMsg::Reply { request_id, reply } => {
            complete(pending, request_id, Ok(reply));
            return Ok(());
        }
        ServerMsg::Error {
            request_id: Some(request_id),
            code,
            message,
            detail,
        } => {
            complete(
                pending,
                request_id,
                Err(ClientError::Server {
                    code,
                    message,
                    detail,
                }),
            );
            return Ok(());
        }
        ServerMsg::Error {
            request_id: None,
            code,
            message,
            detail,
        } => {
            tracing::warn!(?code, %message, "server reported an error");
            lock(pending).last_error = Some((code, message.clone(), detail));
            Inbound::ServerError { code, message }
        }
        ServerMsg::Push(push) => Inbound::Push(push),
    };
    match inbound.try_send(item) {
        // A closed receiver means the client is shutting down.
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        Err(mpsc::error::TrySendError::Full(_)) => Err(()),
    }
}

fn complete(pending: &SharedPending, request_id: RequestId, outcome: Outcome) {
    let waiter = lock(pending).waiting.remove(&request_id);
    match waiter {
        Some(tx) => {
            // The requester may have been cancelled meanwhile; nothing to do then.
            let _ = tx.send(outcome);
        }
        None => tracing::debug!(?request_id, "reply to a request nobody waits for"),
    }
}
