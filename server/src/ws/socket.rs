//! The TCP stream under every HTTP connection, with a switch that ends it from outside.
//!
//! actix's HTTP/1 dispatcher polls a response body only while its write buffer has room.
//! Behind a client that stopped reading, the buffer stays full, so the body is never polled
//! again and cannot end the connection, not even after the session has queued its close
//! frame: the socket would live on until the kernel gives up on it. [`AbortableStream`]
//! wraps each accepted socket, and [`Abort::abort`] wakes the dispatcher, whose next read
//! or write then fails, so actix drops the connection at once. The socket is reset
//! (`SO_LINGER` 0): the data queued behind the client's zero window is discarded instead
//! of being held by the kernel.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Ends one connection from outside; cheap to clone. Each connection's is in its
/// connection data (`HttpRequest::conn_data`).
#[derive(Debug, Clone, Default)]
pub struct Abort(Arc<Switch>);

#[derive(Debug, Default)]
struct Switch {
    aborted: AtomicBool,
    /// The dispatcher's task, registered at its last read or write.
    waker: AtomicWaker,
}

impl Abort {
    /// Ends the connection: its next read or write fails, and the dispatcher is woken to
    /// make one.
    pub fn abort(&self) {
        self.0.aborted.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Whether [`abort`](Self::abort) was called.
    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::Acquire)
    }
}

/// An accepted TCP stream that fails once its [`Abort`] is used.
#[derive(Debug)]
pub struct AbortableStream {
    io: TcpStream,
    abort: Abort,
    /// `SO_LINGER` 0 has been set.
    reset: bool,
}

impl AbortableStream {
    /// Wraps an accepted stream.
    pub fn new(io: TcpStream) -> Self {
        Self {
            io,
            abort: Abort::default(),
            reset: false,
        }
    }

    /// The switch that ends this stream.
    pub fn abort_handle(&self) -> Abort {
        self.abort.clone()
    }

    /// `Some(error)` once aborted; otherwise registers the task to be woken by an abort.
    fn aborted(&mut self, cx: &Context<'_>) -> Option<io::Error> {
        if !self.abort.is_aborted() {
            self.abort.0.waker.register(cx.waker());
            if !self.abort.is_aborted() {
                return None;
            }
        }
        if !self.reset {
            self.reset = true;
            if let Err(e) = socket2::SockRef::from(&self.io).set_linger(Some(Duration::ZERO)) {
                tracing::debug!(error = %e, "could not set SO_LINGER on an aborted connection");
            }
        }
        Some(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection aborted by the server",
        ))
    }
}

impl AsyncRead for AbortableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.aborted(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for AbortableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.aborted(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.aborted(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.aborted(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.aborted(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
