//! The crate's one error type, [`Error`]: configuration and start-up failures, and the failures of
//! request handlers, each of which renders as an HTTP response ([`IntoResponse`]).
//!
//! Knows nothing of pages: bodies are short plain-text messages (as in the original), so they can be
//! produced without a session or the page chrome.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the web UI, from parsing its configuration to answering a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listen address is not `http://ADDR:PORT` or `https://ADDR:PORT`.
    #[error("invalid listen address {input:?}: {reason}")]
    InvalidListenAddr {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The public URL (`--web-ui`) is not an absolute `http` or `https` URL.
    #[error("invalid public URL {input:?}: {reason}")]
    InvalidPublicUrl {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The sessions backend is neither `memory://` nor `redis://host:port`.
    #[error("invalid sessions backend {input:?}: {reason}")]
    InvalidSessionsBackend {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// One part of an ACL does not parse.
    #[error("invalid ACL part {part:?}: {reason}")]
    InvalidAcl {
        /// The rejected part of the ACL text.
        part: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The metrics token digest is not 64 hexadecimal digits.
    #[error(
        "invalid metrics token digest {input:?}: expected the SHA-256 of the token as 64 hex digits"
    )]
    InvalidMetricsToken {
        /// The rejected text.
        input: String,
    },
    /// A file in the secrets directory could not be read or written.
    #[error("secrets file {}", .path.display())]
    Secrets {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The password file is malformed.
    #[error("password file {} line {line}: {reason}", .path.display())]
    PasswordFile {
        /// The password file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A password could not be hashed.
    #[error("cannot hash the password: {message}")]
    PasswordHash {
        /// The hasher's message.
        message: String,
    },
    /// The self-signed certificate could not be generated.
    #[error("cannot generate a self-signed certificate")]
    Certificate(#[source] rcgen::Error),
    /// The certificate or key in the secrets directory cannot be used for TLS.
    #[error("cannot use the TLS certificate in {}: {reason}", .path.display())]
    Tls {
        /// The secrets directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("web server on {addr} failed")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Redis sessions backend is unreachable.
    #[error("cannot connect to the Redis sessions backend at {url}")]
    Redis {
        /// The backend URL.
        url: String,
        /// The cause.
        #[source]
        source: tower_sessions_redis_store::fred::error::Error,
    },
    /// The session could not be loaded or saved.
    #[error("session backend failed")]
    Session(#[from] tower_sessions::session::Error),
    /// The state store failed.
    #[error("state store failed")]
    Store(#[from] datakit_ci_store::Error),
    /// A build's artifacts could not be read.
    #[error("cannot read artifacts")]
    Artifacts(#[from] datakit_ci_cache::ArtifactError),
    /// A request was refused with `403 Forbidden` and a plain message (bad CSRF token, bad metrics
    /// token, used intro token…).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// An anonymous viewer needs to log in to see `redirect` (answered with a `303` to the login
    /// page, which comes back to `redirect`).
    #[error("log in to see {redirect}")]
    LoginRequired {
        /// The page to return to after logging in.
        redirect: String,
    },
    /// A logged-in viewer lacks a role (or must log in again); answered with `403` and `page`.
    #[error("permission denied")]
    Denied {
        /// The rendered `403` page.
        page: String,
    },
    /// The rebuild hook is not installed: no engine is attached to the web UI.
    #[error("rebuilds are unavailable: no engine is attached to this web UI")]
    RebuildUnavailable,
    /// The engine refused or failed a rebuild.
    #[error("{0}")]
    RebuildFailed(String),
    /// The engine failed (e.g. a rebuild could not be requested).
    #[error("engine failed")]
    Engine(#[from] datakit_ci_engine::Error),
    /// A target's history could not be read.
    #[error("history failed")]
    History(#[from] datakit_ci_history::Error),
    /// A saved log could not be read from the store.
    #[error("cannot read the saved log of commit {commit}")]
    ReadLog {
        /// The cache commit holding the log.
        commit: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Forbidden(_) | Error::Denied { .. } => StatusCode::FORBIDDEN,
            Error::LoginRequired { .. } => StatusCode::SEE_OTHER,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::RebuildUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Error::LoginRequired { redirect } => {
                let location = format!(
                    "/auth/login?redirect={}",
                    crate::urls::encode_query(&redirect)
                );
                return (status, [(header::LOCATION, location)]).into_response();
            }
            Error::Denied { page } => {
                return (
                    status,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    page,
                )
                    .into_response();
            }
            _ => {}
        }
        let body = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %ErrorChain(&self), "request failed");
            match &self {
                Error::RebuildFailed(message) => message.clone(),
                _ => "Internal server error".to_owned(),
            }
        } else {
            self.to_string()
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body,
        )
            .into_response()
    }
}

/// Displays an error with its chain of sources, `a: b: c`.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
