//! [`AppState`]: what every handler needs (configuration, store, live logs, metrics, local users,
//! the engine's rebuild hook), shared by all requests.
//!
//! The engine plugs in here: it installs its rebuild hook with [`AppStateBuilder::rebuild_hook`];
//! its pages are a `Router<AppState>` given to `WebServer::bind`.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use datakit_ci_log::LogManager;
use datakit_ci_store::{BranchName, Store};
use futures::future::BoxFuture;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::cluster::ClusterStatus;
use crate::csrf::CsrfKey;
use crate::forge_health::{ForgeHealth, ForgeLink, ForgeLinks};
use crate::github_login::GithubLogin;
use crate::metrics::WebMetrics;
use crate::webhooks::WebhookReceiver;
use crate::{Error, WebConfig, secrets};

/// The engine's rebuild entry point: marks the cache entry on `branch` for rebuild. An `Err` holds
/// a message for the user (e.g. `No job depends on "<branch>", so can't rebuild anything`).
pub type RebuildHook =
    Arc<dyn Fn(BranchName) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The shared state of the web UI. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: WebConfig,
    store: Store,
    logs: LogManager,
    registry: Arc<Mutex<Registry>>,
    metrics: WebMetrics,
    auth: Auth,
    rebuild: Option<RebuildHook>,
    webhooks: Option<Arc<dyn WebhookReceiver>>,
    forge_health: Option<Arc<dyn ForgeHealth>>,
    github_login: Option<Arc<dyn GithubLogin>>,
    forge_links: Option<Arc<dyn ForgeLinks>>,
    cluster: Option<Arc<dyn ClusterStatus>>,
    /// Cancelled when the server shuts down, to end streaming responses.
    shutdown: CancellationToken,
    /// Signs the CSRF tokens of visitors without a session (`csrf::AnonymousToken`).
    csrf_key: CsrfKey,
    /// The tails of big saved logs recently shown.
    log_tails: crate::logs::TailCache,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("name", &self.inner.config.ci_name())
            .field("store", &self.inner.store)
            .field("rebuild_hook", &self.inner.rebuild.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds an [`AppState`]; see [`AppState::builder`].
#[must_use]
pub struct AppStateBuilder {
    config: WebConfig,
    store: Store,
    logs: LogManager,
    registry: Arc<Mutex<Registry>>,
    rebuild: Option<RebuildHook>,
    webhooks: Option<Arc<dyn WebhookReceiver>>,
    forge_health: Option<Arc<dyn ForgeHealth>>,
    github_login: Option<Arc<dyn GithubLogin>>,
    forge_links: Option<Arc<dyn ForgeLinks>>,
    cluster: Option<Arc<dyn ClusterStatus>>,
}

impl std::fmt::Debug for AppStateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStateBuilder").finish_non_exhaustive()
    }
}

impl AppStateBuilder {
    /// Installs the engine's rebuild hook, called by `POST /log/rebuild/<branch>`. Without one,
    /// that route answers `503 Service Unavailable`.
    pub fn rebuild_hook<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(BranchName) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.rebuild = Some(Arc::new(move |branch| Box::pin(hook(branch))));
        self
    }

    /// Installs the receiver of `POST /webhooks/github` (the GitHub bridge, wired by the
    /// program). Without one, that route answers `404`.
    pub fn webhook_receiver(mut self, receiver: Arc<dyn WebhookReceiver>) -> Self {
        self.webhooks = Some(receiver);
        self
    }

    /// Installs what the dashboard says of the forge connections (the GitHub bridge's health).
    pub fn forge_health(mut self, health: Arc<dyn ForgeHealth>) -> Self {
        self.forge_health = Some(health);
        self
    }

    /// Installs "Log in with GitHub" (`/auth/github`); without it, those routes answer `404`.
    pub fn github_login(mut self, login: Arc<dyn GithubLogin>) -> Self {
        self.github_login = Some(login);
        self
    }

    /// Installs the links from targets to their forge's pages.
    pub fn forge_links(mut self, links: Arc<dyn ForgeLinks>) -> Self {
        self.forge_links = Some(links);
        self
    }

    /// Installs what the dashboard shows of the cluster that runs jobs (the Swarm executor's
    /// nodes and jobs). Without one, the dashboard has no cluster section.
    pub fn cluster(mut self, cluster: Arc<dyn ClusterStatus>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Creates the secrets directory if needed (mode 0700), loads the password file (or generates
    /// the first-run intro token, logging the setup URL as a warning) and registers the web
    /// metrics on the registry. Blocking file-system work: call at start-up.
    pub fn build(self) -> Result<AppState, Error> {
        let dir = self.config.secrets_dir();
        secrets::ensure_dir(dir)?;
        let auth = Auth::load(dir)?;
        let metrics = {
            let mut registry = self
                .registry
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            WebMetrics::new(&mut registry)
        };
        let state = AppState {
            inner: Arc::new(Inner {
                config: self.config,
                store: self.store,
                logs: self.logs,
                registry: self.registry,
                metrics,
                auth,
                rebuild: self.rebuild,
                webhooks: self.webhooks,
                forge_health: self.forge_health,
                github_login: self.github_login,
                forge_links: self.forge_links,
                cluster: self.cluster,
                shutdown: CancellationToken::new(),
                log_tails: crate::logs::TailCache::default(),
                csrf_key: CsrfKey::random(),
            }),
        };
        if let Some(url) = state.setup_url() {
            tracing::warn!(">>> Configure the CI by visiting\n{url}");
        }
        Ok(state)
    }
}

impl AppState {
    /// Starts building the state of a web UI configured by `config`, reading `store`, following the
    /// live logs of `logs` and exposing `registry` on `/metrics` (the web metrics are registered on
    /// it by [`AppStateBuilder::build`]).
    pub fn builder(
        config: WebConfig,
        store: Store,
        logs: LogManager,
        registry: Arc<Mutex<Registry>>,
    ) -> AppStateBuilder {
        AppStateBuilder {
            config,
            store,
            logs,
            registry,
            rebuild: None,
            webhooks: None,
            forge_health: None,
            github_login: None,
            forge_links: None,
            cluster: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &WebConfig {
        &self.inner.config
    }

    /// The state store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The live logs.
    pub fn logs(&self) -> &LogManager {
        &self.inner.logs
    }

    /// The metrics registry exposed on `/metrics`.
    pub fn registry(&self) -> &Arc<Mutex<Registry>> {
        &self.inner.registry
    }

    /// The first-run setup URL, `<public URL>/auth/intro/<token>`, until the admin password is set
    /// (`None` afterwards, or once the token has been used).
    pub fn setup_url(&self) -> Option<String> {
        self.inner
            .auth
            .intro_token()
            .map(|token| self.config().public().join(&format!("/auth/intro/{token}")))
    }

    /// The secrets directory.
    pub fn secrets_dir(&self) -> &Path {
        self.config().secrets_dir()
    }

    pub(crate) fn metrics(&self) -> &WebMetrics {
        &self.inner.metrics
    }

    pub(crate) fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The dashboard's forge-connection lines (none without a [`ForgeHealth`]).
    pub(crate) fn forge_health_lines(&self) -> Vec<String> {
        self.inner
            .forge_health
            .as_ref()
            .map(|health| health.lines())
            .unwrap_or_default()
    }

    /// The cluster that runs jobs, if one is installed.
    pub(crate) fn cluster(&self) -> Option<&dyn ClusterStatus> {
        self.inner.cluster.as_deref()
    }

    /// The forge's page of `target`, if a [`ForgeLinks`] knows one.
    pub(crate) fn forge_link(&self, target: &datakit_ci_term::TargetId) -> Option<ForgeLink> {
        self.inner.forge_links.as_ref()?.target_link(target)
    }

    pub(crate) fn github_login(&self) -> Option<&Arc<dyn GithubLogin>> {
        self.inner.github_login.as_ref()
    }

    pub(crate) fn webhook_receiver(&self) -> Option<&Arc<dyn WebhookReceiver>> {
        self.inner.webhooks.as_ref()
    }

    pub(crate) fn rebuild_hook(&self) -> Option<&RebuildHook> {
        self.inner.rebuild.as_ref()
    }

    /// Cancelled when the server stops; streaming responses end then.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn csrf_key(&self) -> &CsrfKey {
        &self.inner.csrf_key
    }

    /// The tails of big saved logs recently shown.
    pub(crate) fn log_tails(&self) -> &crate::logs::TailCache {
        &self.inner.log_tails
    }
}
