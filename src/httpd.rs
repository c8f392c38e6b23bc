//! The HTTP listener: HTTP/1.1 connections served with bounds no client can lift — a cap on
//! concurrent connections, a header-read timeout, an idle timeout, and a deadline for graceful
//! shutdown. What is served is the warp filter from `http`; this module knows connections, not
//! endpoints.
//!
//! warp's own server has none of these bounds (hyper's header timeout needs a timer it does not
//! configure), and it answers HTTP/2, which replguard does not document: HAProxy's checks and
//! browsers speak HTTP/1.1.

use crate::gate::{Gate, Refusal};
use hyper_util::rt::{TokioIo, TokioTimer};
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
/// The most headers a request may carry.
const MAX_HEADERS: usize = 48;

/// The bounds of the HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; one more is closed on arrival.
    pub max_connections: usize,
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
/// `limits.shutdown_grace`. `gate` decides who is served; `tls`, when given, wraps every
/// connection (its handshake bounded by the header-read timeout) with the acceptor current when
/// the connection arrives (certificates re-read on SIGHUP replace it). Each connection is served
/// by the `filters` current when it arrives (a config reload replaces them).
pub async fn serve<F>(
    listener: TcpListener,
    filters: tokio::sync::watch::Receiver<F>,
    limits: Limits,
    gate: Arc<Gate>,
    tls: Option<tokio::sync::watch::Receiver<tokio_rustls::TlsAcceptor>>,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            gate.count_limit_refusal("http");
            tracing::debug!(%peer, max = limits.max_connections, "http connection refused: limit reached");
            continue; // dropped: closed at once
        };
        let handler = Handler {
            service: warp::service(filters.borrow().clone()),
            gate: gate.clone(),
        };
        let io = Idle::new(stream, limits.idle_timeout);
        let (tls, watcher) = (tls.as_ref().map(|t| t.borrow().clone()), graceful.watcher());
        connections.spawn(async move {
            let result = match tls {
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
            };
            // A client that goes away mid-request is the client's business: debug only.
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
            drop(slot);
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
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Headers are small here: bound what a connection may buffer while sending them.
        .max_buf_size(MAX_BUF)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), handler);
    watcher.watch(conn).await.map_err(Into::into)
}

/// One connection's request handler: the gate's credentials check first (401), then the
/// endpoints. (An address not in `allow_from` never gets this far: it is answered at accept.)
struct Handler<S> {
    /// warp's service for the endpoints (its type cannot be named outside warp).
    service: S,
    gate: Arc<Gate>,
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
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let mut service = self.service.clone();
        let gate = self.gate.clone();
        Box::pin(async move {
            let auth = req
                .headers()
                .get(warp::http::header::AUTHORIZATION)
                .map(|v| v.as_bytes().to_vec());
            if let Err(r) = gate.authorize(req.uri().path(), auth.as_deref()).await {
                return Ok(refusal(r));
            }
            tower_service::Service::call(&mut service, req).await
        })
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

/// A stream that fails with `TimedOut` once nothing has been read or written for `timeout`.
///
/// Activity only records the time (no timer operation per read or write); the timer is moved
/// forward when it fires early, so a busy keep-alive connection costs one timer wake-up per
/// `timeout` rather than two timer updates per request.
struct Idle<S> {
    inner: S,
    timeout: Duration,
    /// When something last moved.
    last: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Idle<S> {
    fn new(inner: S, timeout: Duration) -> Idle<S> {
        Idle {
            inner,
            timeout,
            last: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }

    /// After the inner stream said Pending: fails once nothing has moved for `timeout` (and
    /// arms the waker for the deadline otherwise).
    fn check<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => {
                    let due = self.last + self.timeout;
                    if due <= Instant::now() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "idle connection closed",
                        )));
                    }
                    // Something moved since the timer was set: wait for the rest.
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
            done => done,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
