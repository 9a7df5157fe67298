//! The bridge's error types: [`Error`] for the REST API, the store and the configuration, and
//! [`WebhookError`] for a delivery that is refused. Messages name the repository, URL or file
//! involved, and never hold a secret.

use std::path::PathBuf;

/// Everything that can go wrong while talking to GitHub or writing the metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A secret file (token, webhook secret, App key) cannot be read.
    #[error("cannot read secret file {}", .path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret file is empty.
    #[error("secret file {} is empty", .path.display())]
    EmptySecret {
        /// The file.
        path: PathBuf,
    },
    /// The App's private key is not an RSA key in PEM form.
    #[error("the GitHub App key is not an RSA private key in PEM form")]
    AppKey(#[source] jsonwebtoken::errors::Error),
    /// The App's JWT could not be signed.
    #[error("cannot sign the GitHub App's JWT")]
    Jwt(#[source] jsonwebtoken::errors::Error),
    /// The API URL is not an http(s) URL.
    #[error("GitHub API URL {0:?} must start with http:// or https://")]
    ApiUrl(String),
    /// The HTTP client could not be made.
    #[error("cannot make the HTTP client")]
    Client(#[source] reqwest::Error),
    /// A request could not be sent or its answer read (network error, timeout).
    #[error("{method} {url}: request failed")]
    Network {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// GitHub answered with an error status.
    #[error("{method} {url}: GitHub answered {status}: {message}")]
    Status {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// GitHub's `message`, or the start of the body.
        message: String,
        /// How long GitHub asked us to wait (`Retry-After`, or until the rate limit resets).
        retry_after: Option<std::time::Duration>,
    },
    /// GitHub's answer is not the JSON expected.
    #[error("{url}: unexpected answer from GitHub: {problem}")]
    Answer {
        /// The URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// A repository is configured twice.
    #[error("GitHub repository {0} is configured twice")]
    DuplicateRepo(String),
    /// A name from GitHub cannot be stored in the metadata.
    #[error("{what} {value:?} from GitHub cannot be stored: {reason}")]
    Name {
        /// What it names (`branch`, `tag`, `repository`).
        what: &'static str,
        /// The name.
        value: String,
        /// Why.
        reason: String,
    },
    /// Reading or committing the store failed.
    #[error("cannot update the state store")]
    Store(#[from] datakit_ci_store::Error),
    /// A background task panicked or was cancelled.
    #[error("GitHub bridge task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Whether trying again later may succeed: network errors, 5xx, 429, and a 403 that is a
    /// rate limit (GitHub's secondary limits answer 403 with `Retry-After`).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::Status {
                status,
                retry_after,
                ..
            } => *status >= 500 || *status == 429 || retry_after.is_some(),
            _ => false,
        }
    }

    /// How long GitHub asked to wait before the next request, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Why a webhook delivery is refused. Nothing is written for a refused delivery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The delivery has no `X-Hub-Signature-256` header (and a secret is configured).
    #[error("missing X-Hub-Signature-256 header")]
    MissingSignature,
    /// The signature is malformed or does not match the body.
    #[error("X-Hub-Signature-256 does not match the body")]
    BadSignature,
    /// No webhook secret is configured, so no delivery can be trusted.
    #[error("no webhook secret is configured")]
    NoSecret,
    /// The body is larger than GitHub ever sends.
    #[error("body of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The body's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The `X-GitHub-Event` header is missing.
    #[error("missing X-GitHub-Event header")]
    MissingEvent,
    /// The body is not the JSON of the event named.
    #[error("malformed {event} payload: {problem}")]
    Malformed {
        /// The event.
        event: String,
        /// What is wrong, as the JSON parser says (with line and column).
        problem: String,
    },
}
