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
//! A slow client therefore backs up into these queues, never into unbounded memory. When
//! the session ends, it drops whatever pushes are still queued
//! ([`Outbound::drop_queued_pushes`]): a client that stopped reading must not pin them for
//! as long as its socket stays open.
//!
//! A binary frame's payload is not copied here: its header goes out as a small chunk of
//! its own, followed by the payload bytes as the handler encoded them, in the one or two
//! pieces of a [`PushFrame`] (a delivery's shared part is one buffer for all its
//! recipients). (actix-ws's own
//! body copies every payload into a fresh buffer, and its `Session` adds a channel and a
//! task hop per pushed frame.) Control frames are encoded by actix's WebSocket codec.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

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
}

impl Outbound {
    /// Queues one binary frame, waiting while the control queue is full.
    ///
    /// # Errors
    /// [`Closed`] if the connection is gone.
    pub async fn binary(&self, frame: Bytes) -> Result<(), Closed> {
        self.send(Outgoing::Binary(frame)).await
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
    pub pushes: mpsc::Sender<PushFrame>,
    /// Cancelled when the hub has dropped `pushes`, i.e. evicted the connection.
    pub evicted: CancellationToken,
    /// The response body to hand to actix.
    pub body: OutboundBody,
}

/// A new connection's outbound half, with room for `push_capacity` queued pushes.
///
/// `actix_body` is the body `actix_ws::handle` made for the response. It is kept, never
/// polled, and dropped with this body: its drop is what tells actix-ws's `MessageStream`
/// that the connection is gone.
#[must_use]
pub fn outbound(actix_body: BoxBody, push_capacity: usize) -> OutboundParts {
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (push_tx, push_rx) = mpsc::channel(push_capacity);
    let evicted = CancellationToken::new();
    let pushes: PushQueue = Arc::new(Mutex::new(Some(push_rx)));
    OutboundParts {
        outbound: Outbound {
            control: control_tx,
            pushes: Arc::clone(&pushes),
        },
        pushes: push_tx,
        evicted: evicted.clone(),
        body: OutboundBody {
            control: control_rx,
            pushes,
            evicted,
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
    /// Encoded chunks waiting to be handed to the dispatcher.
    ready: VecDeque<Bytes>,
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
        self.ready.push_back(self.headers.split().freeze());
        let (shared, own) = payload.into_parts();
        self.ready.extend(
            shared
                .into_iter()
                .chain([own])
                .filter(|piece| !piece.is_empty()),
        );
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
        self.ready.push_back(buf.freeze());
        Ok(())
    }
}

impl Stream for OutboundBody {
    type Item = Result<Bytes, actix_http::ws::ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(chunk) = this.ready.pop_front() {
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

    async fn collect(body: &mut OutboundBody) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk.expect("encodes"));
        }
        out
    }

    /// Queues `frames` as the hub would.
    async fn queue_pushes(pushes: &mpsc::Sender<PushFrame>, frames: &[&'static [u8]]) {
        for frame in frames {
            pushes
                .send(Bytes::from_static(frame).into())
                .await
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
        let parts = outbound(BoxBody::new(()), 4);
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
        let parts = outbound(BoxBody::new(()), 4);
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
        let parts = outbound(BoxBody::new(()), sizes.len());
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
            parts.pushes.send(push).await.expect("queued");
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
        let parts = outbound(BoxBody::new(()), 4);
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
