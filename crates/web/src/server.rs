//! The server: binds the listeners (HTTP, or HTTPS with the secrets directory's certificate, plus
//! the optional Prometheus listener), connects the sessions backend, and serves until cancelled.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{
    ClientLike as _, Config as RedisConfig, Pool, ReconnectPolicy,
};

use crate::config::{Scheme, SessionsBackend};
use crate::{AppState, Error, router, secrets};

mod connections;

/// How long start-up waits for the Redis sessions backend.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound web server, ready to [`run`](WebServer::run).
///
/// ```no_run
/// # async fn example(state: datakit_ci_web::AppState) -> Result<(), datakit_ci_web::Error> {
/// use tokio_util::sync::CancellationToken;
///
/// let server = datakit_ci_web::WebServer::bind(state, None).await?;
/// println!("listening on {}", server.local_addr());
/// server.run(CancellationToken::new()).await
/// # }
/// ```
pub struct WebServer {
    state: AppState,
    router: Router,
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
    prometheus: Option<(tokio::net::TcpListener, SocketAddr)>,
    redis: Option<Pool>,
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("local_addr", &self.local_addr)
            .field("prometheus_addr", &self.prometheus_addr())
            .finish_non_exhaustive()
    }
}

impl WebServer {
    /// Binds the configured listeners and connects the sessions backend. With an `https://` listen
    /// address, the certificate and key are read from the secrets directory, generated
    /// (self-signed) first if missing. `pages`: see [`router`](crate::router).
    pub async fn bind(
        state: AppState,
        pages: Option<Router<AppState>>,
    ) -> Result<WebServer, Error> {
        let config = state.config();
        let (router, redis) = match config.sessions_backend() {
            SessionsBackend::Memory => (router::router(&state, pages), None),
            SessionsBackend::Redis { host, port } => {
                let url = format!("redis://{host}:{port}");
                let pool = connect_redis(&url).await?;
                let store = RedisStore::new(pool.clone());
                (router::with_sessions(&state, pages, store), Some(pool))
            }
        };
        let listen = config.listen_addr();
        let std_listener =
            std::net::TcpListener::bind(listen.addr()).map_err(|source| Error::Bind {
                addr: listen.addr(),
                source,
            })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind {
                addr: listen.addr(),
                source,
            })?;
        let local_addr = std_listener.local_addr().map_err(|source| Error::Bind {
            addr: listen.addr(),
            source,
        })?;
        let listener =
            tokio::net::TcpListener::from_std(std_listener).map_err(|source| Error::Bind {
                addr: local_addr,
                source,
            })?;
        let tls = match listen.scheme() {
            Scheme::Http => None,
            Scheme::Https => {
                let dir = config.secrets_dir().to_owned();
                let hosts = certificate_hosts(config.public().authority());
                let tls = tokio::task::spawn_blocking(move || secrets::tls_config(&dir, &hosts))
                    .await??;
                Some(TlsAcceptor::from(tls))
            }
        };
        let prometheus = match config.prometheus_addr() {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| Error::Bind { addr, source })?;
                let local = listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?;
                Some((listener, local))
            }
            None => None,
        };
        tracing::info!(addr = %local_addr, scheme = ?listen.scheme(), "web UI listening");
        Ok(WebServer {
            state,
            router,
            listener,
            tls,
            local_addr,
            prometheus,
            redis,
        })
    }

    /// The main listener's address (with the real port when the configuration said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The Prometheus listener's address, if configured.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus.as_ref().map(|(_, addr)| *addr)
    }

    /// The shared state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `cancel` is cancelled, then ends streaming responses, lets in-flight requests
    /// finish (for at most 10 seconds) and returns. Connections are bounded and timed out as the
    /// configuration's [`ConnectionLimits`](crate::ConnectionLimits) say.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let WebServer {
            state,
            router,
            listener,
            tls,
            local_addr: _,
            prometheus,
            redis,
        } = self;
        let stopping = CancellationToken::new();
        let shutdown = {
            let cancel = cancel.clone();
            let stopping = stopping.clone();
            let shutdown = state.shutdown_token().clone();
            async move {
                cancel.cancelled().await;
                shutdown.cancel();
                stopping.cancel();
            }
        };
        let limits = *state.config().connections();
        let main = async {
            tokio::join!(
                connections::serve(
                    listener,
                    tls,
                    router,
                    limits,
                    stopping.clone(),
                    state.metrics().connections_open.clone(),
                ),
                shutdown
            );
            Ok::<(), Error>(())
        };
        let metrics = async {
            match prometheus {
                Some((listener, addr)) => axum::serve(listener, router::prometheus_router(&state))
                    .with_graceful_shutdown(cancel.clone().cancelled_owned())
                    .await
                    .map_err(|source| Error::Serve { addr, source }),
                None => Ok(()),
            }
        };
        let result = tokio::try_join!(main, metrics).map(|_| ());
        if let Some(pool) = redis
            && let Err(error) = pool.quit().await
        {
            tracing::warn!(%error, "error closing the Redis sessions backend");
        }
        result
    }
}

/// Binds and serves `state`'s web UI (without engine pages) until `cancel` is cancelled.
pub async fn serve(state: AppState, cancel: CancellationToken) -> Result<(), Error> {
    WebServer::bind(state, None).await?.run(cancel).await
}

async fn connect_redis(url: &str) -> Result<Pool, Error> {
    let redis = |source| Error::Redis {
        url: url.to_owned(),
        source,
    };
    let config = RedisConfig::from_url(url).map_err(redis)?;
    let policy = ReconnectPolicy::new_exponential(0, 100, 30_000, 2);
    let pool = Pool::new(config, None, None, Some(policy), 4).map_err(redis)?;
    // The connection tasks are owned by the pool and end when `run` quits it.
    let _connections = match tokio::time::timeout(REDIS_CONNECT_TIMEOUT, pool.init()).await {
        Ok(connected) => connected.map_err(redis)?,
        Err(_) => {
            return Err(redis(tower_sessions_redis_store::fred::error::Error::new(
                tower_sessions_redis_store::fred::error::ErrorKind::Timeout,
                "no connection within 10 seconds",
            )));
        }
    };
    tracing::info!(url, "sessions kept in Redis");
    Ok(pool)
}

/// The names the self-signed certificate is valid for: the public URL's host, and loopback.
fn certificate_hosts(authority: &str) -> Vec<String> {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !hosts.iter().any(|h| h == host) {
        hosts.push(host.to_owned());
    }
    hosts
}
