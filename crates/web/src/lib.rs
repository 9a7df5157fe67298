//! The datakit-ci web UI: pages, live logs, authentication, ACLs and metrics.
//!
//! # Overview
//!
//! - [`WebConfig`] (a builder) says how the UI is reached ([`PublicUrl`], [`ListenAddr`]), where
//!   its secrets live, where sessions are kept ([`SessionsBackend`]), who may read and build
//!   ([`Acl`]) and who may scrape `/metrics` ([`MetricsToken`]).
//! - [`AppState`] is what every request handler shares: the configuration, the state
//!   [`Store`](datakit_ci_store::Store), the live [`LogManager`](datakit_ci_log::LogManager), the
//!   Prometheus registry, the local users, and the engine's [`RebuildHook`].
//! - [`WebServer`] binds the listeners and serves the [`router`] until cancelled; [`serve`] does
//!   both.
//!
//! # Routes
//!
//! | Route | Role | What |
//! |---|---|---|
//! | `GET /` | Reader | dashboard: dashboard branches, PR/branch/tag counts, pools ([`ci_pages`]; a placeholder without them) |
//! | `GET /pr`, `/branch`, `/tag` | Reader | the targets of each kind, with their jobs' states |
//! | `GET /{user}/{repo}/pr/{n}`, `/{user}/{repo}/ref/{path…}` | Reader | a target's jobs, logs, buttons and recorded states (`?history=<commit>`, `?test=<job>`) |
//! | `GET /{user}/{repo}/commit/{hash}` | Reader | `303` to the only target on that head, else its live and archived builds |
//! | `POST /rebuild-failed/{user}/{repo}/pr/{n}`, `…/ref/{path…}`, `…/commit/{hash}` | Builder | rebuilds the failed jobs there |
//! | `GET /api/v1/…` | Reader | the JSON API (see [`api`]) |
//! | `GET /auth/intro/{token}` | – | first-run link: logs in as `admin` once |
//! | `GET, POST /auth/setup` | Admin | sets the admin password (once) |
//! | `GET, POST /auth/login` | – | login form (rate-limited) |
//! | `POST /auth/logout` | – | logs out |
//! | `GET /auth/github` | – | "Log in with GitHub": to GitHub's authorize page, with a `state` bound to the session ([`GithubLogin`]) |
//! | `GET /auth/github-callback` | – | back from GitHub: a `state` this session did not issue is refused (`403`) |
//! | `GET /user/profile` | LoggedIn | who you are, log-out button, password change for local users |
//! | `POST /user/profile/password` | LoggedIn | changes one's own password (current one required) |
//! | `GET, POST /settings/users` | Admin | the local users; adds one |
//! | `POST /settings/users/{name}/password`, `…/remove` | Admin | resets a password, removes a user |
//! | `GET /log/live/{branch}` | Reader | a running build's log, streamed (`?raw`: text) |
//! | `GET /log/saved/{branch}/{commit}` | Reader | the `log` file of a store commit (`?raw`: text) |
//! | `POST /log/rebuild/{branch}` | Builder | asks the engine to rebuild |
//! | `POST /cancel/{branch}` | Builder | cancels a running build |
//! | `GET /settings` | Admin | settings |
//! | `GET, POST /settings/github-auth` | Admin | the OAuth App's client id and secret for "Log in with GitHub" (kept in the secrets directory, mode 0600) |
//! | `GET /error/{id}` | – | explains an error code |
//! | `GET /metrics` | bearer token | Prometheus metrics |
//! | `POST /webhooks/github` | signature | a GitHub webhook delivery, handed to the [`WebhookReceiver`] (outside the CSRF check) |
//! | `GET /css/{name}` | – | the stylesheet |
//!
//! Anonymous viewers of a protected page are redirected (`303`) to
//! `/auth/login?redirect=<page>`; logged-in viewers lacking the role get a `403` page. Every POST
//! must carry the session's CSRF token (form field `CSRFToken`), or it is refused with `403`;
//! a visitor without a session gets a token bound to a cookie instead, and no session is stored
//! for them.
//!
//! # Security
//!
//! - Secrets directory created with mode 0700; the password file, certificate and key are
//!   written atomically with mode 0600.
//! - New passwords have at least [`MIN_PASSWORD_CHARS`] characters; a session ends once its user's
//!   password changes (except the one that changed it) or the user is removed.
//! - Passwords are hashed with argon2id (PHC strings in the file [`PASSWORD_FILE`]); an unknown
//!   user name costs as much time as a wrong password; login attempts are rate-limited per user
//!   name and client address ([`LOGIN_BURST`], then one more every [`LOGIN_REFILL`]), answered
//!   with `429`; passwords are never written back into a form.
//! - Session cookies (`__ci_session-<name>`) are `HttpOnly`, `SameSite=Lax`, `Secure` when the
//!   public URL is `https`; the session id changes at every login and logout.
//! - The first-run intro token is 24 random bytes, compared in constant time, usable once.
//! - CSRF tokens travel in form bodies (not URLs); redirects after login and actions only go to
//!   paths on this site; every response says `X-Frame-Options: SAMEORIGIN`,
//!   `Referrer-Policy: same-origin` and `X-Content-Type-Options: nosniff`.
//! - Logs are HTML-escaped, colours become `<span>`s and every other escape sequence is dropped
//!   ([`AnsiHtml`]); raw logs are `text/plain`.
//! - The `/metrics` token is configured as its SHA-256 in hex and compared in constant time.
//!
//! # Plugging in the engine
//!
//! The engine's pages (dashboard, `/pr`, `/branch`, `/tag`, target and commit pages, bulk
//! rebuilds) and the JSON API are the `Router<AppState>` made by [`ci_pages`] from an
//! [`Engine`](datakit_ci_engine::Engine) and the application's
//! [`Pools`](datakit_ci_pool::Pools), passed to [`WebServer::bind`] (or [`router`]); they replace
//! the placeholder `/`. They check roles with [`require`], render with [`pages::page`] and
//! [`pages::Chrome`], and put [`Viewer::csrf_token`] in their forms with [`pages::post_form`]. The
//! engine's rebuild entry point is installed with [`AppStateBuilder::engine_rebuilds`] (or any
//! function with [`AppStateBuilder::rebuild_hook`]).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//!
//! use datakit_ci_web::{Acl, AppState, WebConfig, WebServer};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> anyhow::Result<()> {
//! let store = datakit_ci_store::Store::open("/var/lib/ci/state.git".as_ref())?;
//! let config = WebConfig::new("/var/lib/ci/secrets")
//!     .public_url("http://127.0.0.1:8080/".parse()?)
//!     .listen("http://127.0.0.1:8080".parse()?)
//!     .can_read(Acl::everyone());
//! let registry = Arc::new(Mutex::new(prometheus_client::registry::Registry::default()));
//! let state = AppState::builder(config, store, datakit_ci_log::LogManager::new(), registry)
//!     .rebuild_hook(|branch| async move { Err(format!("cannot rebuild {branch} yet")) })
//!     .build()?;
//! if let Some(url) = state.setup_url() {
//!     println!("Configure the CI by visiting {url}");
//! }
//! let server = WebServer::bind(state, None).await?;
//! server.run(CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```

mod access;
mod acl;
mod actions;
mod ansi;
pub mod api;
mod artifacts;
mod auth;
mod ci;
mod cluster;
mod config;
mod csp;
mod csrf;
mod error;
mod forge_health;
mod github_grants;
mod github_login;
mod logs;
mod memory_sessions;
mod metrics;
pub mod pages;
mod read_only;
mod router;
mod secrets;
mod server;
mod session;
mod state;
mod static_files;
mod stored_file;
mod time;
pub mod urls;
mod webhooks;

pub use access::require;
pub use acl::{AccessPolicy, Acl, Decision, Role, UserAttrs};
pub use ansi::{AnsiHtml, MAX_STRING_SEQUENCE};
pub use auth::{
    LOGIN_BURST, LOGIN_REFILL, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, PASSWORD_FILE, PASSWORD_RULE,
};
pub use ci::ci_pages;
pub use cluster::{ClusterJob, ClusterNode, ClusterSnapshot, ClusterStatus, JobPlace, NodeState};
pub use config::{
    ConnectionLimits, GithubGrantTimes, ListenAddr, MetricsToken, PublicUrl, Scheme,
    SessionsBackend, WebConfig,
};
pub use csrf::CSRF_FIELD;
pub use error::Error;
pub use forge_health::{ForgeHealth, ForgeLink, ForgeLinks};
pub use github_login::{
    GithubIdentity, GithubLogin, GithubToken, OAUTH_CLIENT_ID_FILE, OAUTH_CLIENT_SECRET_FILE,
    OAuthClient, RecheckError,
};
pub use metrics::WebMetrics;
pub use router::router;
pub use secrets::{CERT_FILE, KEY_FILE};
pub use server::{WebServer, serve};
pub use session::Viewer;
pub use state::{AppState, AppStateBuilder, RebuildHook};
pub use webhooks::{WebhookDelivery, WebhookOutcome, WebhookReceiver, WebhookRejection};
