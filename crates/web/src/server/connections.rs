//! Accepting and serving connections, within bounds (issue 20): a connection that does not send a
//! whole request header in time is closed, a request body that stops arriving is dropped, and the
//! number of open connections is bounded so that clients cannot take every file descriptor the CI
//! needs for `git`, its store and its builds.
//!
//! hyper's own header-read timer covers idle keep-alive connections too: it starts whenever a
//! connection waits for a request head, which is from accept until the first request and again from
//! the end of each response. So one timeout bounds slow headers and idle connections alike; a
//! streaming response (a live log) is not idle and is never cut.
//!
//! Knows nothing of routes or pages: it serves any `Router`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::config::ConnectionLimits;

/// How long in-flight requests may run after cancellation before connections are closed.
const GRACE: Duration = Duration::from_secs(10);

/// How long accepting pauses after an error that is not the client's (e.g. out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` (over TLS if `tls` is given) until `stopping` is cancelled, then
/// lets in-flight requests finish for at most [`GRACE`]. `open` counts the open connections.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionLimits,
    stopping: CancellationToken,
    open: Gauge,
) {
    let permits = Arc::new(Semaphore::new(limits.resolved_max_connections()));
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);
    loop {
        // Past the bound, connections wait in the kernel's backlog rather than cost a descriptor.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stopping.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_connection_error(&error) {
                        tracing::warn!(%error, "cannot accept a connection; pausing");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                    continue;
                }
            },
            () = stopping.cancelled() => break,
        };
        let watcher = graceful.watcher();
        let router = router.clone();
        let tls = tls.clone();
        let limits = Arc::clone(&limits);
        let open = open.clone();
        open.inc();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, remote, router, &limits, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, remote, router, &limits, watcher).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open {GRACE:?} after shutdown began; closing them");
    }
}

async fn serve_connection<S>(
    stream: S,
    remote: SocketAddr,
    router: Router,
    limits: &ConnectionLimits,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        let router = router.clone();
        async move {
            let response = router
                .oneshot(request.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never: Infallible| match never {});
            Ok::<_, Infallible>(response)
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connection = http.serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        // Timeouts, resets and clients that go away are normal on the open internet.
        tracing::debug!(%remote, %error, "connection ended with an error");
    }
}

/// Errors of one connection being accepted (the client went away), as opposed to the listener's.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
