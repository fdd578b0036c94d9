//! One connection's outbound half: the WebSocket response body and the handles that feed it.
//!
//! Everything the server writes to a client goes through [`OutboundBody`], which actix's
//! HTTP/1 dispatcher polls whenever the socket can take more. It draws from two bounded
//! queues:
//!
//! - **control**, fed through [`Outbound`] by the session loop and its send completions:
//!   replies, pings, pongs and the closing frame. Senders wait for room. It goes first.
//! - **pushes**, fed by the hub (messages and room events). The hub never waits: when this
//!   queue is full it evicts the connection as too slow and drops its sender, which the
//!   body reports through the `evicted` token.
//!
//! A slow client therefore backs up into these queues, never into unbounded memory: both
//! are bounded in frames, and together in bytes by the connection's [`Budget`] (the
//! server's `OUTBOUND_BUDGET_MB`). A frame is charged when it is queued and released when
//! the body hands it to actix; a push that would go over the budget is refused (the hub
//! then evicts the connection as too slow), and so is a reply (the session then closes
//! with 1008). Large payloads are handed to actix in slices of at most [`MAX_CHUNK`] bytes,
//! so the copy actix keeps in its write buffer stays small too. When the session ends, it
//! drops whatever pushes are still queued ([`Outbound::drop_queued_pushes`]): a client
//! that stopped reading must not pin them for as long as its socket stays open. The
//! budget also measures how long queued bytes have waited for the client
//! ([`Outbound::stalled_for`]), which the session uses to close a stalled reader.
//!
//! A binary frame's payload is not copied here: its header goes out as a small chunk of
//! its own, followed by the payload bytes as the handler encoded them, in the one or two
//! pieces of a [`PushFrame`] (a delivery's shared part is one buffer for all its
//! recipients). (actix-ws's own
//! body copies every payload into a fresh buffer, and its `Session` adds a channel and a
//! task hop per pushed frame.) Control frames are encoded by actix's WebSocket codec.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::ws::{CloseReason, Codec, Message};
use actix_web::body::BoxBody;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;
use tokio_util::sync::CancellationToken;

use crate::hub::PushFrame;

/// How many replies and control frames may wait for the socket.
const CONTROL_QUEUE: usize = 32;

/// The longest payload a ping, pong or close may carry (RFC 6455, section 5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest piece of a payload handed to actix at once (a slice, not a copy): actix
/// copies each piece into its write buffer, so this bounds what it holds beyond the budget.
pub const MAX_CHUNK: usize = 64 * 1024;

/// One connection's byte budget for frames queued and not yet handed to actix, shared by
/// the session, its send completions, the hub's push sender and the body.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Milliseconds after `epoch` when bytes last started waiting or last went out.
    progress_ms: AtomicU64,
    epoch: Instant,
    /// Cancelled when a frame is refused for the budget (as when the hub evicts).
    tripped: CancellationToken,
}

impl Budget {
    fn new(limit: usize, tripped: CancellationToken) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            tripped,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Charges `len` bytes, or refuses them (and trips) if the budget cannot hold them.
    fn charge(&self, len: usize) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let Some(total) = used.checked_add(len).filter(|&t| t <= self.limit) else {
                self.tripped.cancel();
                return false;
            };
            match self
                .used
                .compare_exchange_weak(used, total, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => used = now,
            }
        }
        if used == 0 {
            // Bytes start waiting now.
            self.progress_ms.store(self.now_ms(), Ordering::Release);
        }
        true
    }

    /// Releases `len` charged bytes: they went out to actix.
    fn release(&self, len: usize) {
        if len > 0 {
            self.used.fetch_sub(len, Ordering::AcqRel);
            self.progress_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// How long charged bytes have waited without any going out (zero when none wait).
    fn stalled_for(&self) -> Duration {
        if self.used.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let since = self.progress_ms.load(Ordering::Acquire);
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }
}

/// The hub's end of a connection's push queue: bounded in frames and, with the replies,
/// in bytes.
#[derive(Debug, Clone)]
pub struct PushSender {
    queue: mpsc::Sender<PushFrame>,
    budget: Arc<Budget>,
}

impl PushSender {
    /// Queues `frame` without waiting.
    ///
    /// # Errors
    /// `Full` when the queue has no free slot or the connection's byte budget cannot hold
    /// the frame; `Closed` when the connection is gone.
    pub fn try_send(&self, frame: PushFrame) -> Result<(), mpsc::error::TrySendError<PushFrame>> {
        let len = frame.len();
        if !self.budget.charge(len) {
            return Err(mpsc::error::TrySendError::Full(frame));
        }
        self.queue.try_send(frame).inspect_err(|_| {
            self.budget.release_uncounted(len);
        })
    }

    /// Whether the connection's push queue is closed.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

/// A push queue of `capacity` frames over `budget_bytes`, for tests of the hub and for
/// harnesses that drive the handlers without a socket: the receiver is the body's end.
#[cfg(any(test, feature = "test-util"))]
pub fn push_queue(capacity: usize, budget_bytes: usize) -> (PushSender, mpsc::Receiver<PushFrame>) {
    let (queue, rx) = mpsc::channel(capacity);
    let budget = Arc::new(Budget::new(budget_bytes, CancellationToken::new()));
    (PushSender { queue, budget }, rx)
}

impl Budget {
    /// Takes back a charge for bytes that were never queued (no progress is recorded).
    fn release_uncounted(&self, len: usize) {
        self.used.fetch_sub(len, Ordering::AcqRel);
    }
}

/// What the session loop sends to its client.
#[derive(Debug)]
enum Outgoing {
    /// One protocol frame.
    Binary(Bytes),
    /// A keepalive ping.
    Ping,
    /// The answer to the peer's ping.
    Pong(Bytes),
    /// The closing frame; nothing follows it.
    Close(CloseReason),
}

/// The client is gone: its response body was dropped, or it has been sent a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closed")]
pub struct Closed;

/// The receiving end of the push queue: read by the body, dropped by the session when the
/// connection ends (the body may no longer be polled then, if the client stopped reading).
type PushQueue = Arc<Mutex<Option<mpsc::Receiver<PushFrame>>>>;

/// Sends replies and control frames to one client. Clones share the queue.
#[derive(Debug, Clone)]
pub struct Outbound {
    control: mpsc::Sender<Outgoing>,
    pushes: PushQueue,
    budget: Arc<Budget>,
}

impl Outbound {
    /// Queues one binary frame, waiting while the control queue is full.
    ///
    /// # Errors
    /// [`Closed`] if the connection is gone, or if the frame does not fit in the
    /// connection's byte budget (which trips it: the session closes with 1008).
    pub async fn binary(&self, frame: Bytes) -> Result<(), Closed> {
        let len = frame.len();
        if !self.budget.charge(len) {
            return Err(Closed);
        }
        self.send(Outgoing::Binary(frame)).await.inspect_err(|_| {
            self.budget.release_uncounted(len);
        })
    }

    /// How long queued bytes have waited for the client without any going out: a reader
    /// that stopped reading shows here, even while no new frame is queued for it.
    pub fn stalled_for(&self) -> Duration {
        self.budget.stalled_for()
    }

    /// Queues a keepalive ping.
    ///
    /// # Errors
    /// [`Closed`] if the connection is gone.
    pub async fn ping(&self) -> Result<(), Closed> {
        self.send(Outgoing::Ping).await
    }

    /// Queues the answer to a ping carrying `payload`.
    ///
    /// # Errors
    /// [`Closed`] if the connection is gone.
    pub async fn pong(&self, payload: Bytes) -> Result<(), Closed> {
        self.send(Outgoing::Pong(payload)).await
    }

    /// Queues the closing frame; the body ends once it is written.
    ///
    /// # Errors
    /// [`Closed`] if the connection is gone.
    pub async fn close(&self, reason: CloseReason) -> Result<(), Closed> {
        self.send(Outgoing::Close(reason)).await
    }

    /// Drops the pushes still queued for this client, and any that would follow: the
    /// session calls it when it ends. (Messages among them stay in history.)
    pub fn drop_queued_pushes(&self) {
        drop(
            self.pushes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    async fn send(&self, item: Outgoing) -> Result<(), Closed> {
        self.control.send(item).await.map_err(|_| Closed)
    }
}

/// The pieces of a new connection's outbound half.
#[derive(Debug)]
pub struct OutboundParts {
    /// For the session loop: replies and control frames.
    pub outbound: Outbound,
    /// For the hub: pushes. Bounded; the hub evicts the connection when it is full.
    pub pushes: PushSender,
    /// Cancelled when the hub has dropped `pushes`, i.e. evicted the connection, or a frame
    /// went over the byte budget.
    pub evicted: CancellationToken,
    /// Cancelled when the body is dropped: everything it was to write is written, or the
    /// connection is gone.
    pub finished: CancellationToken,
    /// The response body to hand to actix.
    pub body: OutboundBody,
}

/// A new connection's outbound half, with room for `push_capacity` queued pushes and
/// `budget_bytes` of queued frames.
///
/// `actix_body` is the body `actix_ws::handle` made for the response. It is kept, never
/// polled, and dropped with this body: its drop is what tells actix-ws's `MessageStream`
/// that the connection is gone.
#[must_use]
pub fn outbound(actix_body: BoxBody, push_capacity: usize, budget_bytes: usize) -> OutboundParts {
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (push_tx, push_rx) = mpsc::channel(push_capacity);
    let evicted = CancellationToken::new();
    let finished = CancellationToken::new();
    let budget = Arc::new(Budget::new(budget_bytes, evicted.clone()));
    let pushes: PushQueue = Arc::new(Mutex::new(Some(push_rx)));
    OutboundParts {
        outbound: Outbound {
            control: control_tx,
            pushes: Arc::clone(&pushes),
            budget: Arc::clone(&budget),
        },
        pushes: PushSender {
            queue: push_tx,
            budget: Arc::clone(&budget),
        },
        evicted: evicted.clone(),
        finished: finished.clone(),
        body: OutboundBody {
            control: control_rx,
            pushes,
            evicted,
            finished,
            budget,
            ready: VecDeque::new(),
            headers: BytesMut::new(),
            codec: Codec::new(),
            closing: false,
            _actix_body: actix_body,
        },
    }
}

/// The WebSocket response body of one connection; see the module docs.
pub struct OutboundBody {
    control: mpsc::Receiver<Outgoing>,
    /// `None` once the hub has dropped its sender or the session has ended.
    pushes: PushQueue,
    evicted: CancellationToken,
    /// Cancelled when the body is dropped.
    finished: CancellationToken,
    budget: Arc<Budget>,
    /// Encoded chunks waiting to be handed to the dispatcher, each with whether it is
    /// charged to the budget (payload) or not (headers and control frames).
    ready: VecDeque<(Bytes, bool)>,
    /// Frame headers are split off this buffer, so they do not cost an allocation each.
    headers: BytesMut,
    codec: Codec,
    /// A close frame has been queued (or no one can send any more): end after `ready`.
    closing: bool,
    _actix_body: BoxBody,
}

impl std::fmt::Debug for OutboundBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundBody")
            .field("ready", &self.ready.len())
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

impl OutboundBody {
    /// Adds a binary frame to `ready`: its header, then the payload as it is.
    fn queue_binary(&mut self, payload: PushFrame) {
        if self.headers.capacity() < MAX_HEADER {
            self.headers.reserve(HEADER_BUFFER);
        }
        put_binary_header(&mut self.headers, payload.len());
        self.ready.push_back((self.headers.split().freeze(), false));
        let (shared, own) = payload.into_parts();
        for mut piece in shared.into_iter().chain([own]) {
            while piece.len() > MAX_CHUNK {
                self.ready.push_back((piece.split_to(MAX_CHUNK), true));
            }
            if !piece.is_empty() {
                self.ready.push_back((piece, true));
            }
        }
    }

    /// Adds the chunks of one outgoing frame to `ready`.
    fn encode(&mut self, item: Outgoing) -> Result<(), actix_http::ws::ProtocolError> {
        let message = match item {
            Outgoing::Binary(payload) => {
                self.queue_binary(payload.into());
                return Ok(());
            }
            Outgoing::Ping => Message::Ping(Bytes::new()),
            Outgoing::Pong(mut payload) => {
                payload.truncate(MAX_CONTROL_PAYLOAD);
                Message::Pong(payload)
            }
            Outgoing::Close(mut reason) => {
                if let Some(text) = reason.description.as_mut() {
                    truncate_at_char(text, MAX_CONTROL_PAYLOAD - 2);
                }
                self.closing = true;
                self.control.close();
                Message::Close(Some(reason))
            }
        };
        let mut buf = BytesMut::new();
        self.codec.encode(message, &mut buf)?;
        self.ready.push_back((buf.freeze(), false));
        Ok(())
    }
}

impl Drop for OutboundBody {
    fn drop(&mut self) {
        self.finished.cancel();
    }
}

impl Stream for OutboundBody {
    type Item = Result<Bytes, actix_http::ws::ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((chunk, charged)) = this.ready.pop_front() {
                if charged {
                    this.budget.release(chunk.len());
                }
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.closing {
                return Poll::Ready(None);
            }
            match this.control.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if let Err(e) = this.encode(item) {
                        return Poll::Ready(Some(Err(e)));
                    }
                    continue;
                }
                // The session loop and its completions are all gone: the connection is
                // over, and pushes still queued are dropped with it.
                Poll::Ready(None) => {
                    this.closing = true;
                    continue;
                }
                Poll::Pending => {}
            }
            let mut queue = this.pushes.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(pushes) = queue.as_mut() else {
                return Poll::Pending;
            };
            match pushes.poll_recv(cx) {
                Poll::Ready(Some(frame)) => {
                    drop(queue);
                    this.queue_binary(frame);
                }
                Poll::Ready(None) => {
                    *queue = None;
                    this.evicted.cancel();
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The longest frame header [`put_binary_header`] writes.
const MAX_HEADER: usize = 10;

/// Room for this many bytes of headers is allocated at a time: one allocation per 16
/// frames at most, and little held by an idle connection.
const HEADER_BUFFER: usize = 16 * MAX_HEADER;

/// Writes the header of an unmasked, final binary frame carrying `len` payload bytes
/// (RFC 6455, section 5.2): what `actix_http::ws::Parser::write_message` writes before the
/// payload, without copying the payload.
fn put_binary_header(header: &mut BytesMut, len: usize) {
    const FIN_BINARY: u8 = 0x80 | 0x2;
    header.put_u8(FIN_BINARY);
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if short < 126 => header.put_u8(short),
        (_, Ok(medium)) => {
            header.put_u8(126);
            header.put_u16(medium);
        }
        _ => {
            header.put_u8(127);
            header.put_u64(len as u64);
        }
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use actix_http::ws::{OpCode, Parser};
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn binary_header_matches_actix_framing() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 300_000] {
            let payload = vec![0xab; len];
            let mut actix = BytesMut::new();
            Parser::write_message(&mut actix, &payload, OpCode::Binary, true, false);
            let mut ours = BytesMut::new();
            put_binary_header(&mut ours, len);
            assert!(ours.len() <= MAX_HEADER);
            ours.extend_from_slice(&payload);
            assert_eq!(ours, actix, "payload of {len} bytes");
        }
    }

    /// A budget no test here comes near.
    const BUDGET: usize = 64 << 20;

    async fn collect(body: &mut OutboundBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.expect("encodes"));
        }
        out
    }

    /// Queues `frames` as the hub would.
    async fn queue_pushes(pushes: &PushSender, frames: &[&'static [u8]]) {
        for frame in frames {
            pushes
                .try_send(Bytes::from_static(frame).into())
                .expect("queued");
        }
    }

    /// What the body writes, chunk by chunk, until it has written at least `len` bytes.
    async fn read_at_least(body: &mut OutboundBody, len: usize) -> Vec<u8> {
        let mut written = Vec::new();
        while written.len() < len {
            let chunk = body.next().await.expect("open").expect("encodes");
            written.extend_from_slice(&chunk);
        }
        written
    }

    #[actix_web::test]
    async fn replies_go_first_and_the_close_frame_ends_the_body() {
        let parts = outbound(BoxBody::new(()), 4, BUDGET);
        let mut body = parts.body;
        queue_pushes(&parts.pushes, &[b"push"]).await;
        parts
            .outbound
            .binary(Bytes::from_static(b"reply"))
            .await
            .expect("queued");
        parts
            .outbound
            .close(CloseReason::from(actix_http::ws::CloseCode::Away))
            .await
            .expect("queued");
        let written = collect(&mut body).await;

        let mut expected = BytesMut::new();
        Parser::write_message(&mut expected, b"reply", OpCode::Binary, true, false);
        Parser::write_close(
            &mut expected,
            Some(CloseReason::from(actix_http::ws::CloseCode::Away)),
            false,
        );
        assert_eq!(
            written,
            expected.as_ref(),
            "the reply, then the close; the push waiting behind the close is not sent"
        );
        assert_eq!(
            parts.outbound.binary(Bytes::new()).await,
            Err(Closed),
            "nothing is accepted after the close"
        );
    }

    #[actix_web::test]
    async fn pushes_flow_and_a_dropped_push_queue_reports_eviction() {
        let parts = outbound(BoxBody::new(()), 4, BUDGET);
        let mut body = parts.body;
        queue_pushes(&parts.pushes, &[b"one", b"two"]).await;
        drop(parts.pushes);
        assert!(!parts.evicted.is_cancelled());
        let mut expected = BytesMut::new();
        for frame in [&b"one"[..], b"two"] {
            Parser::write_message(&mut expected, frame, OpCode::Binary, true, false);
        }
        let written = read_at_least(&mut body, expected.len()).await;
        assert_eq!(written, expected.as_ref());
        // The next poll finds the hub's sender gone.
        let pending = futures_util::poll!(body.next());
        assert!(pending.is_pending(), "the body stays open for replies");
        assert!(parts.evicted.is_cancelled());

        // Once every control sender is gone too, the body ends.
        drop(parts.outbound);
        assert!(body.next().await.is_none());
    }

    #[actix_web::test]
    async fn many_frames_keep_their_headers_apart() {
        // More frames than one header buffer holds, of sizes needing each header form;
        // every other frame comes in two pieces, split at a point that varies.
        let sizes: Vec<usize> = (0..150).map(|i| [3, 200, 70_000][i % 3] + i).collect();
        let parts = outbound(BoxBody::new(()), sizes.len(), BUDGET);
        let mut body = parts.body;
        let mut expected = BytesMut::new();
        for (i, &size) in sizes.iter().enumerate() {
            let frame: Vec<u8> = (0..size).map(|b| (i + b) as u8).collect();
            Parser::write_message(&mut expected, &frame, OpCode::Binary, true, false);
            let mut head = Bytes::from(frame);
            let push = if i % 2 == 1 {
                let own = head.split_off(size * (i % 7) / 7);
                PushFrame::new(Arc::new(head), own)
            } else {
                head.into()
            };
            parts.pushes.try_send(push).expect("queued");
        }
        drop(parts.pushes);
        let written = read_at_least(&mut body, expected.len()).await;
        assert!(
            written == expected,
            "150 frames, whole or in two pieces, written as actix frames them"
        );
    }

    #[actix_web::test]
    async fn an_ended_session_drops_the_pushes_queued_for_its_client() {
        let parts = outbound(BoxBody::new(()), 4, BUDGET);
        let body = parts.body;
        queue_pushes(&parts.pushes, &[b"one", b"two"]).await;
        // The client reads nothing, so the body is never polled; the session ends.
        assert!(!parts.pushes.is_closed());
        parts.outbound.drop_queued_pushes();
        assert!(
            parts.pushes.is_closed(),
            "the queue, with the frames in it, is gone although the body lives on"
        );
        assert!(!parts.evicted.is_cancelled(), "that is not an eviction");
        drop(body);
    }

    #[actix_web::test]
    async fn frames_past_the_byte_budget_are_refused_and_trip_the_connection() {
        let parts = outbound(BoxBody::new(()), 64, 3 * MAX_CHUNK);
        let mut body = parts.body;
        let big = || PushFrame::from(Bytes::from(vec![7u8; 2 * MAX_CHUNK]));
        parts.pushes.try_send(big()).expect("within the budget");
        assert!(
            matches!(
                parts.pushes.try_send(big()),
                Err(mpsc::error::TrySendError::Full(_))
            ),
            "a second push would pass the budget although the queue has slots"
        );
        assert!(parts.evicted.is_cancelled(), "the connection is tripped");
        assert_eq!(
            parts
                .outbound
                .binary(Bytes::from(vec![1u8; 2 * MAX_CHUNK]))
                .await,
            Err(Closed),
            "so is a reply"
        );
        assert!(parts.outbound.stalled_for() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            parts.outbound.stalled_for() >= Duration::from_millis(30),
            "queued bytes wait while the client reads nothing"
        );
        // Writing the push out frees the budget, in slices of MAX_CHUNK at most.
        let header = body.next().await.expect("open").expect("encodes");
        assert!(header.len() <= MAX_HEADER);
        for _ in 0..2 {
            let chunk = body.next().await.expect("open").expect("encodes");
            assert_eq!(chunk.len(), MAX_CHUNK);
        }
        assert_eq!(parts.outbound.stalled_for(), Duration::ZERO);
        parts.pushes.try_send(big()).expect("room again");
        assert!(!parts.finished.is_cancelled());
        drop(body);
        assert!(parts.finished.is_cancelled(), "a dropped body is finished");
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let mut text = "é".repeat(100);
        truncate_at_char(&mut text, 123);
        assert_eq!(text.len(), 122);
        let mut short = String::from("too slow");
        truncate_at_char(&mut short, 123);
        assert_eq!(short, "too slow");
    }
}
