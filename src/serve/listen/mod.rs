//! The HTTP listener: HTTP/1.1 connections served with bounds no client can lift — a cap on
//! concurrent connections, a header-read timeout, an idle timeout, and a deadline for graceful
//! shutdown. What is served is the warp filter from `http`; this module knows connections, not
//! endpoints.
//!
//! warp's own server has none of these bounds (hyper's header timeout needs a timer it does not
//! configure), and it answers HTTP/2, which replguard does not document: HAProxy's checks and
//! browsers speak HTTP/1.1.

pub mod admission;
pub mod gate;

use crate::serve::http::{Direct, Served};
use crate::serve::listen::admission::{Admission, Conn};
use crate::serve::listen::gate::{Gate, Refusal};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use warp::reply::Response;
use warp::Filter;

/// The most a connection buffers (request head included): a check's request is a few hundred
/// bytes, a browser's a few KB.
const MAX_BUF: usize = 16 * 1024;

/// The bounds of the HTTP listener (the connection caps are the [`Admission`]'s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers must arrive within this (slowloris), counted from when the server
    /// waits for them, so it also bounds a keep-alive connection waiting for its next request.
    pub header_read_timeout: Duration,
    /// A connection on which nothing moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// At shutdown, connections get this long to finish the request in flight; then they are
    /// dropped.
    pub shutdown_grace: Duration,
}

/// Serves `filter` on `listener` until `shutdown`, then drains connections for at most
/// `limits.shutdown_grace`. `gate` decides who is served, `admission` how many and which
/// connection makes room for a newer one; `tls`, when given, wraps every
/// connection (its handshake bounded by the header-read timeout) with the acceptor current when
/// the connection arrives (certificates re-read on SIGHUP replace it). Each connection is served
/// by the `filters` current when it arrives (a config reload replaces them).
pub async fn serve<F>(
    listener: TcpListener,
    filters: tokio::sync::watch::Receiver<Served<F>>,
    limits: Limits,
    gate: Arc<Gate>,
    admission: Arc<Admission>,
    tls: Option<tokio::sync::watch::Receiver<tokio_rustls::TlsAcceptor>>,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow with the traffic.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, typically: wait rather than spin.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Before a slot is taken: refused peers must not be able to fill the cap.
        if !gate.allows(peer.ip(), "http") {
            if tls.is_none() {
                // One small answer, sent without waiting (it fits the socket buffer), then
                // closed: a refused client costs no task, no slot and no timer.
                let _ = stream.try_write(FORBIDDEN);
            }
            continue;
        }
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(why) => {
                tracing::debug!(%peer, ?why, "http connection refused: every place answers a request");
                continue; // dropped: closed at once
            }
        };
        let conn = ticket.conn.clone();
        // Already in (the usual case for a check under load: the client wrote before the
        // accept): busy at once.
        if waiting(
            &stream,
            if tls.is_some() {
                Waiting::TlsHello
            } else {
                Waiting::HttpHead
            },
        ) {
            conn.arrived();
        }
        let served = filters.borrow().clone();
        let handler = Handler {
            service: warp::service(served.filter),
            direct: served.direct,
            gate: gate.clone(),
            conn: conn.clone(),
        };
        let io = Idle::new(stream, limits, conn.clone());
        let (tls, watcher) = (tls.as_ref().map(|t| t.borrow().clone()), graceful.watcher());
        let what = if tls.is_some() {
            Waiting::TlsHello
        } else {
            Waiting::HttpHead
        };
        connections.spawn(async move {
            let served = async {
                // Read the first request head (or ClientHello) here, so the connection is
                // marked busy the moment it is in, not once TLS and hyper have got to it.
                let first = first_delivery(io, what, &handler.conn);
                let io = match tokio::time::timeout(limits.header_read_timeout, first).await {
                    Ok(Ok(io)) => io,
                    Ok(Err(e)) => {
                        return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    }
                    Err(_) => return Err("no request within header_read_timeout".into()),
                };
                match tls {
                    None => serve_connection(io, handler, limits, watcher).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(io))
                            .await
                        {
                            Ok(Ok(tls_stream)) => {
                                serve_connection(tls_stream, handler, limits, watcher).await
                            }
                            Ok(Err(e)) => {
                                handler.gate.count_tls_refusal();
                                Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                            }
                            Err(_) => Err("TLS handshake took too long".into()),
                        }
                    }
                }
            };
            // A displaced connection (it had delivered no request) is dropped at once.
            let result = tokio::select! {
                r = served => r,
                _ = conn.displaced() => Err("displaced by a newer connection".into()),
            };
            // A client that goes away mid-request is the client's business: debug only.
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
            drop(ticket);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::info!(open = connections.len(), "shutdown deadline: dropping open http connections");
        }
    }
    connections.shutdown().await;
}

/// Serves one connection (plain or TLS) with the listener's bounds.
async fn serve_connection<IO, S>(
    io: IO,
    handler: Handler<S>,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Handler<S>: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        > + Send
        + 'static,
    <Handler<S> as hyper::service::Service<hyper::Request<hyper::body::Incoming>>>::Future:
        Send + 'static,
{
    let _ = limits; // header and idle timeouts: `Idle`, below TLS and hyper
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No timer for hyper: its header timeout armed and dropped a boxed timer per request (a
    // quarter of a check's CPU with the header cap below); `Idle` enforces the same bound with
    // one timer per connection. Headers are small here: bound what a connection may buffer
    // while sending them. The count of headers is hyper's own bound (100; setting one
    // initialises a header array per request).
    builder.max_buf_size(MAX_BUF).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), handler);
    watcher.watch(conn).await.map_err(Into::into)
}

/// What a new connection may already have sent, complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// An HTTP request head (up to the blank line).
    HttpHead,
    /// A TLS record (the ClientHello) whole.
    TlsHello,
    /// A line (an agent-send).
    Line,
}

/// Whether `stream` already holds a complete `what`, looked at without reading it (a peek of
/// at most 4 KiB that never waits; more than that counts as incomplete).
pub(crate) fn waiting(stream: &tokio::net::TcpStream, what: Waiting) -> bool {
    let mut bytes = [0u8; 4096];
    let mut buf = ReadBuf::new(&mut bytes);
    // Polled once with a waker that does nothing: ready data or not, no waiting. The
    // connection's own reads register their wakers later.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    if !matches!(stream.poll_peek(&mut cx, &mut buf), Poll::Ready(Ok(_))) {
        return false;
    }
    complete(buf.filled(), what)
}

/// Whether `got` begins with a complete `what`.
fn complete(got: &[u8], what: Waiting) -> bool {
    match what {
        Waiting::HttpHead => got.windows(4).any(|w| w == b"\r\n\r\n"),
        Waiting::Line => got.contains(&b'\n'),
        Waiting::TlsHello => {
            got.len() >= 5
                && got[0] == 0x16
                && got.len() >= 5 + usize::from(u16::from_be_bytes([got[3], got[4]]))
        }
    }
}

/// Reads from `io` until it holds a complete `what` (or [`MAX_BUF`] bytes, or the end), marks
/// `conn` busy once it does, and gives back a stream that replays what was read first.
async fn first_delivery<S: AsyncRead + Unpin>(
    mut io: S,
    what: Waiting,
    conn: &Conn,
) -> io::Result<Prefixed<S>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if complete(&buf, what) {
            conn.arrived();
            break;
        }
        if buf.len() >= MAX_BUF {
            break; // hyper refuses an oversized head itself
        }
        let mut chunk = [0u8; 2048];
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            break; // closed: hyper sees the end after the replay
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Prefixed {
        prefix: buf,
        at: 0,
        inner: io,
    })
}

/// A stream that first yields `prefix` (bytes read ahead), then reads from `inner`.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection's request handler: the gate's credentials check first (401), then the
/// endpoints. (An address not in `allow_from` never gets this far: it is answered at accept.)
struct Handler<S> {
    /// warp's service for the endpoints (its type cannot be named outside warp).
    service: S,
    /// The answers that need no warp, asked first.
    direct: Arc<dyn Direct>,
    gate: Arc<Gate>,
    /// Marked busy from a request's arrival until its answer is flushed ([`Idle`]).
    conn: Arc<Conn>,
}

impl<S> hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Handler<S>
where
    S: tower_service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answering;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        // The head has arrived: from here the connection is answering, never displaced.
        self.conn.busy();
        // A check needing no credentials: answered here and now, with no future to box.
        if self.gate.open_for(req.uri().path()) {
            if let Some(answer) = self.direct.answer(&req) {
                self.conn.responded();
                return Answering::Ready(Some(answer));
            }
        }
        let mut service = self.service.clone();
        let gate = self.gate.clone();
        let conn = self.conn.clone();
        Answering::Later(Box::pin(async move {
            let auth = req
                .headers()
                .get(warp::http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            if let Err(r) = gate.authorize(req.uri().path(), auth.as_deref()).await {
                conn.responded();
                return Ok(refusal(r));
            }
            let answer = tower_service::Service::call(&mut service, req).await;
            // Busy until the transport has flushed it (`Idle::poll_flush`).
            conn.responded();
            answer
        }))
    }
}

/// A request's answer: ready at once (a direct answer), or from the gate and warp.
enum Answering {
    Ready(Option<Response>),
    Later(Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>),
}

impl Future for Answering {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            Answering::Ready(answer) => Poll::Ready(Ok(answer
                .take()
                .expect("an answer is polled until it is ready, once"))),
            Answering::Later(fut) => fut.as_mut().poll(cx),
        }
    }
}

/// The whole answer to a plain-HTTP client whose address is not in `allow_from`.
const FORBIDDEN: &[u8] = b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\
content-length: 37\r\nconnection: close\r\n\r\nforbidden: address not in allow_from\n";

/// The answer to a refused request.
fn refusal(r: Refusal) -> Response {
    use warp::http::{header, StatusCode};
    use warp::Reply;
    match r {
        Refusal::Credentials => warp::reply::with_header(
            warp::reply::with_status("authentication required\n", StatusCode::UNAUTHORIZED),
            header::WWW_AUTHENTICATE,
            "Basic realm=\"replguard\"",
        )
        .into_response(),
    }
}

/// A stream that fails with `TimedOut` once nothing has been read or written for the idle
/// timeout, or once the connection has waited longer than the header-read timeout for a request
/// (from when its last answer was flushed, or from the accept) without one arriving: the
/// listener's slowloris bound for every request, the first one included.
///
/// Activity only records the time (no timer operation per read or write, none per request);
/// the one timer is moved forward when it fires early, and while a request is being answered it
/// fires at least every quarter of the header timeout to notice when the wait for the next one
/// starts: a busy keep-alive connection costs a few timer wake-ups per header timeout rather
/// than timer updates per request.
struct Idle<S> {
    inner: S,
    timeout: Duration,
    header_timeout: Duration,
    /// When something last moved.
    last: Instant,
    /// When the connection started waiting for its next request head (accept, or the flush
    /// that ended the last answer).
    waiting_since: Instant,
    deadline: Pin<Box<Sleep>>,
    /// Told when a flush has sent the answers handed to the transport; says whether a request
    /// is being answered.
    conn: Arc<Conn>,
}

impl<S> Idle<S> {
    fn new(inner: S, limits: Limits, conn: Arc<Conn>) -> Idle<S> {
        let now = Instant::now();
        let first = limits.idle_timeout.min(limits.header_read_timeout);
        Idle {
            inner,
            timeout: limits.idle_timeout,
            header_timeout: limits.header_read_timeout,
            last: now,
            waiting_since: now,
            deadline: Box::pin(tokio::time::sleep_until(now + first)),
            conn,
        }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }

    /// After the inner stream said Pending: fails once nothing has moved for `timeout`, or no
    /// request has arrived for `header_timeout` (and arms the waker for the deadline otherwise).
    fn check<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let now = Instant::now();
                    let idle_due = self.last + self.timeout;
                    if idle_due <= now {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "idle connection closed",
                        )));
                    }
                    let mut due = idle_due.min(now + self.header_timeout / 4);
                    if !self.conn.is_busy() {
                        let head_due = self.waiting_since + self.header_timeout;
                        if head_due <= now {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no request within header_read_timeout",
                            )));
                        }
                        due = due.min(head_due);
                    }
                    // Not yet: wait for the nearer bound.
                    self.deadline.as_mut().reset(due);
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check(cx),
            Poll::Ready(Ok(())) => {
                // Only a flush that sent an answer starts a wait (hyper flushes on every
                // wake-up, also while a slow client trickles in its headers).
                if self.conn.flushed() > 0 && !self.conn.is_busy() {
                    // Answered: from now the connection waits for its next request.
                    self.waiting_since = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
