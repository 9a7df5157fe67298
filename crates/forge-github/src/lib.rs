//! GitHub as a forge for datakit-ci: mirrors the pull requests, branches and tags of GitHub
//! repositories into the metadata branch (`github-metadata`) of the state store, with the layout
//! of DESIGN §6.1 (the same as the local bridge's), and sends this CI's commit statuses back.
//!
//! This crate knows nothing of terms, jobs or HTTP servers: the web layer hands webhook
//! deliveries to [`GithubBridge::receive`], and the engine's statuses are read back from the
//! store.
//!
//! # Overview
//!
//! - [`GithubConfig`] says which repositories to monitor, where the API is
//!   (`https://api.github.com` or a GitHub Enterprise server), the [`Credentials`] (a token or a
//!   GitHub App) and the webhook secret; secrets are [`Secret`]s read from files.
//! - [`GithubBridge`] mirrors them. [`GithubBridge::receive`] checks a webhook delivery (size,
//!   `X-Hub-Signature-256` in constant time, replayed `X-GitHub-Delivery` ids, JSON) and queues
//!   what it says; [`GithubBridge::run`] applies queued events in the background, and does a
//!   **full sync** at start, on `installation` events and every [`GithubConfig::sync_interval`]
//!   (open PRs, branches and tags through the REST API, paginated and conditional, so an
//!   unchanged repository costs no rate limit). [`GithubBridge::sync_once`] is one full sync.
//! - [`OAuthApp`] is "Log in with GitHub": the authorize URL, then the user's login,
//!   organisations and read access to the repositories the ACLs name.
//! - [`StatusReporter`] ([`GithubBridge::status_reporter`]) sends every status the engine writes
//!   as a GitHub commit status (context `ci/datakit/<test>`) and, as a GitHub App, a check run
//!   (whose conclusion follows [`SKIPPED_PREFIX`], [`ALLOWED_FAILURE_PREFIX`],
//!   [`APPROVAL_PREFIX`], [`CANCELLED_PREFIX`] and [`TIMED_OUT_PHRASE`], and whose summary shows
//!   a failed job's last log lines, read through a [`LogHook`]), deriving what is left to send
//!   from the store, so nothing is lost across a restart or an outage.
//!
//! # What is written
//!
//! | GitHub | Metadata under `<owner>/<repo>/` |
//! |---|---|
//! | branch `x` at commit `c` | `ref/heads/x/head` = `c` |
//! | tag `v` (peeled to its commit) | `ref/tags/v/head` |
//! | pull request `n` | `pr/n/head`, `state` (`open`/`closed`), `title`, `owner` (the author's login), `base` (the target branch), `trust` |
//!
//! `trust` says whether the PR's code may run without a Builder's approval (issue 17), and why:
//! `fork: pull request from a fork (alice/proj)` when its head is in another repository (or a
//! deleted fork), else `outsider: …` when its author is not the owner, a member or a
//! collaborator (`author_association`), else `trusted: …`. Only `trusted` runs at once.
//!
//! A deleted branch or tag is removed; a PR that closed is kept with `state` = `closed`. The
//! bridge never writes `.monitor` or `commit/…`.
//!
//! GitHub does not promise to deliver webhooks in order: a `pull_request` event whose
//! `pull_request.updated_at` is older than the newest state already applied for that PR (from a
//! webhook or a full sync) is ignored, so a late delivery cannot move a PR's head back.
//!
//! # Webhook events
//!
//! `push` (branch or tag moved, created, deleted), `create` (a sync of that repository: the
//! payload has no commit), `delete`, `pull_request` (`opened`, `synchronize`, `reopened`,
//! `closed`, `edited`), `installation` and `installation_repositories` (a full sync), `ping`.
//! `check_run` (`rerequested`, `requested_action` `rebuild`) and `check_suite` (`rerequested`)
//! reach the program through [`GithubBridge::on_rerun`]; as a GitHub App, only if their
//! `installation.id` is the installation this CI uses for the repository's owner (others are
//! ignored with a warning). Events about repositories that are not monitored are acknowledged
//! and ignored.

mod api;
mod auth;
mod error;
mod metadata;
mod oauth;
mod pr_clock;
mod report;
mod sync;
mod trust;
mod webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use datakit_ci_store::{Branch, BranchName, Store};
use datakit_ci_term::{CommitHash, RepoId};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use api::ApiCounts;
pub use auth::{Credentials, Secret};
pub use error::{Error, WebhookError};
pub use oauth::{GithubUser, OAuthApp, UserClient, UserGrants, web_url};
pub use report::check_run::{
    ALLOWED_FAILURE_PREFIX, APPROVAL_PREFIX, CANCELLED_PREFIX, SKIPPED_PREFIX, TIMED_OUT_PHRASE,
};
pub use report::{LogHook, LogRequest, REPORTED_BRANCH, ReportPass, StatusReporter};
pub use sync::RepoInfo;
pub use webhook::{MAX_PAYLOAD_BYTES, sign, verify_signature};

use crate::api::Client;
use crate::metadata::Edit;
use crate::pr_clock::PrClock;
use crate::webhook::{Deliveries, Event};

/// The store branch the bridge writes.
const METADATA_BRANCH: &str = "github-metadata";

/// GitHub's API, the default [`GithubConfig::api_url`].
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The default interval between full syncs.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// How many webhook events may wait to be applied; past that, a full sync replaces them.
const QUEUE: usize = 4096;

/// How many queued events are applied in one metadata commit.
const BATCH: usize = 256;

/// What the bridge needs: the repositories, the API and the secrets.
#[derive(Clone, Debug)]
pub struct GithubConfig {
    /// The repositories to monitor.
    pub repos: Vec<RepoId>,
    /// The REST API's base URL (default [`DEFAULT_API_URL`]).
    pub api_url: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// The webhook secret; without one, every delivery is refused.
    pub webhook_secret: Option<Secret>,
    /// The interval between full syncs (default [`DEFAULT_SYNC_INTERVAL`]).
    pub sync_interval: Duration,
}

impl GithubConfig {
    /// Monitors `repos` on github.com with `credentials`, no webhook secret, a full sync every
    /// ten minutes.
    pub fn new(repos: Vec<RepoId>, credentials: Credentials) -> Self {
        GithubConfig {
            repos,
            api_url: DEFAULT_API_URL.to_owned(),
            credentials,
            webhook_secret: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

/// A webhook delivery as the web server received it.
#[derive(Clone, Copy, Debug)]
pub struct WebhookRequest<'a> {
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub delivery: Option<&'a str>,
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
    /// The body, exactly as received.
    pub body: &'a [u8],
}

/// What became of an accepted delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Receipt {
    /// Queued; it is applied in the background.
    Queued,
    /// A delivery id already handled: ignored.
    Replayed,
    /// Nothing to do (a ping, an action not followed, a repository not monitored).
    Ignored,
}

/// A request from GitHub to run jobs again (a check run's or suite's "Re-run" button).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RerunRequest {
    /// The repository.
    pub repo: RepoId,
    /// The commit.
    pub commit: CommitHash,
    /// The job (the check run's name, without `ci/datakit/`), or `None` for the failed jobs of
    /// the commit.
    pub job: Option<String>,
}

/// Called for each [`RerunRequest`]; the bridge awaits the future before applying further events.
pub type RerunHook = Arc<
    dyn Fn(RerunRequest) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The bridge's state for the dashboard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// When the last webhook delivery was accepted.
    pub last_webhook: Option<SystemTime>,
    /// When the last full sync succeeded.
    pub last_sync: Option<SystemTime>,
    /// The last full sync's error, if it failed.
    pub last_sync_error: Option<String>,
    /// The API requests counted.
    pub api: ApiCounts,
    /// Statuses (and check runs) found different from what GitHub was last told, not yet sent.
    pub statuses_waiting: usize,
}

/// Mirrors GitHub repositories into the metadata. Cheap to clone.
#[derive(Clone)]
pub struct GithubBridge {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    branch: Branch,
    client: Arc<Client>,
    repos: Vec<RepoId>,
    secret: Option<Secret>,
    sync_interval: Duration,
    deliveries: Mutex<Deliveries>,
    queue: mpsc::Sender<Event>,
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    /// Set when events were dropped (a full queue) or a full sync was asked for.
    resync: AtomicBool,
    wake: Notify,
    health: Mutex<Health>,
    rerun: Mutex<Option<RerunHook>>,
    /// Shared with the status reporters.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Serialises metadata writes (webhook batches and syncs).
    writing: tokio::sync::Mutex<()>,
    /// The newest state applied of each PR, so that a late delivery cannot move it back.
    pr_clock: Mutex<PrClock>,
}

impl std::fmt::Debug for GithubBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubBridge")
            .field("api", &self.inner.client.base())
            .field("repos", &self.inner.repos)
            .finish_non_exhaustive()
    }
}

/// What one full sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// One line per change written (empty: nothing changed, no commit).
    pub changes: Vec<String>,
    /// Repositories whose every listing page was answered `304 Not Modified`.
    pub unchanged_repos: usize,
}

impl GithubBridge {
    /// A bridge writing into `store`. Sends nothing until used.
    pub fn new(store: Store, config: GithubConfig) -> Result<Self, Error> {
        for (index, repo) in config.repos.iter().enumerate() {
            if config.repos[..index].contains(repo) {
                return Err(Error::DuplicateRepo(repo.to_string()));
            }
        }
        let client = Client::new(&config.api_url, config.credentials)?;
        let (queue, events) = mpsc::channel(QUEUE);
        let name =
            BranchName::new(METADATA_BRANCH).expect("\"github-metadata\" is a valid branch name");
        Ok(GithubBridge {
            inner: Arc::new(Inner {
                branch: store.branch(&name),
                store,
                client: Arc::new(client),
                repos: config.repos,
                secret: config.webhook_secret,
                sync_interval: config.sync_interval,
                deliveries: Mutex::new(Deliveries::default()),
                queue,
                events: tokio::sync::Mutex::new(events),
                resync: AtomicBool::new(false),
                wake: Notify::new(),
                health: Mutex::new(Health::default()),
                rerun: Mutex::new(None),
                waiting: Arc::default(),
                writing: tokio::sync::Mutex::new(()),
                pr_clock: Mutex::new(PrClock::default()),
            }),
        })
    }

    /// The monitored repositories.
    pub fn repos(&self) -> &[RepoId] {
        &self.inner.repos
    }

    /// Installs the function called when GitHub asks for jobs to run again.
    pub fn on_rerun(&self, hook: RerunHook) {
        *lock(&self.inner.rerun) = Some(hook);
    }

    /// The connection's health: last webhook, last sync, API counts.
    pub fn health(&self) -> Health {
        let mut health = lock(&self.inner.health).clone();
        health.api = self.inner.client.counts();
        health.statuses_waiting = self.inner.waiting.load(Ordering::Relaxed);
        health
    }

    /// `GET /repos/{owner}/{repo}`: where to clone it from.
    pub async fn repo_info(&self, repo: &RepoId) -> Result<RepoInfo, Error> {
        sync::repo_info(&self.inner.client, repo).await
    }

    /// The `Authorization` header for `git` fetching `repo` over https (`Basic`, user
    /// `x-access-token`, the token or the owner's installation token as password).
    pub async fn git_authorization(&self, repo: &RepoId) -> Result<Secret, Error> {
        use base64::Engine as _;
        let token = self.inner.client.token(repo).await?;
        let pair = format!("x-access-token:{}", token.expose());
        Ok(Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )))
    }

    /// The reporter of this CI's statuses, sharing the bridge's API client and rate limit.
    pub fn status_reporter(&self) -> StatusReporter {
        StatusReporter::new(
            self.inner.store.clone(),
            Arc::clone(&self.inner.client),
            self.inner.repos.clone(),
            Arc::clone(&self.inner.waiting),
        )
    }

    /// Checks a webhook delivery and queues what it says; returns at once (the metadata is
    /// written by [`run`](Self::run)). In order: a body over [`MAX_PAYLOAD_BYTES`] is refused,
    /// then a missing or wrong signature, then a missing event name; a delivery id already seen
    /// is [`Receipt::Replayed`]; then the payload must be the event's JSON. Nothing is written
    /// for a refused delivery.
    pub fn receive(&self, request: WebhookRequest<'_>) -> Result<Receipt, WebhookError> {
        if request.body.len() > MAX_PAYLOAD_BYTES {
            return Err(WebhookError::TooLarge {
                size: request.body.len(),
                limit: MAX_PAYLOAD_BYTES,
            });
        }
        let secret = self.inner.secret.as_ref().ok_or(WebhookError::NoSecret)?;
        verify_signature(secret.expose().as_bytes(), request.signature, request.body)?;
        let event_name = request.event.ok_or(WebhookError::MissingEvent)?;
        if let Some(id) = request.delivery
            && lock(&self.inner.deliveries).contains(id)
        {
            tracing::debug!(delivery = id, "replayed webhook delivery ignored");
            return Ok(Receipt::Replayed);
        }
        let event = webhook::parse(event_name, request.body)?;
        if let Some(id) = request.delivery
            && !lock(&self.inner.deliveries).insert(id)
        {
            return Ok(Receipt::Replayed);
        }
        lock(&self.inner.health).last_webhook = Some(SystemTime::now());
        let event = match self.monitored(event) {
            Some(event) => event,
            None => {
                tracing::debug!(event = event_name, "webhook event ignored");
                return Ok(Receipt::Ignored);
            }
        };
        tracing::debug!(
            event = event_name,
            delivery = request.delivery,
            "webhook event queued"
        );
        if self.inner.queue.try_send(event).is_err() {
            tracing::warn!("too many webhook events waiting; a full sync will catch up");
            self.inner.resync.store(true, Ordering::Relaxed);
            self.inner.wake.notify_one();
        }
        Ok(Receipt::Queued)
    }

    /// The event with its repository's name as configured, or `None` if there is nothing to do
    /// (not monitored, or [`Event::Nothing`]).
    fn monitored(&self, event: Event) -> Option<Event> {
        let find = |name: &str| -> Option<String> {
            self.inner
                .repos
                .iter()
                .find(|repo| repo.to_string().eq_ignore_ascii_case(name))
                .map(ToString::to_string)
        };
        match event {
            Event::Nothing => None,
            Event::Ref { repo, name, head } => Some(Event::Ref {
                repo: find(&repo)?,
                name,
                head,
            }),
            Event::Pr { repo, pr } => Some(Event::Pr {
                repo: find(&repo)?,
                pr,
            }),
            Event::Resync { repo: Some(repo) } => Some(Event::Resync {
                repo: Some(find(&repo)?),
            }),
            Event::Resync { repo: None } => Some(Event::Resync { repo: None }),
            Event::Rerun {
                repo,
                head_sha,
                check_name,
                installation,
            } => Some(Event::Rerun {
                repo: find(&repo)?,
                head_sha,
                check_name,
                installation,
            }),
        }
    }

    /// A full sync of every monitored repository: lists open PRs, branches and tags, and writes
    /// what differs in one commit (deleted refs removed, PRs no longer open closed).
    pub async fn sync_once(&self) -> Result<SyncReport, Error> {
        let repos = self.inner.repos.clone();
        self.sync_repos(&repos).await
    }

    async fn sync_repos(&self, repos: &[RepoId]) -> Result<SyncReport, Error> {
        let result = self.sync_repos_inner(repos).await;
        let mut health = lock(&self.inner.health);
        match &result {
            Ok(_) => {
                health.last_sync = Some(SystemTime::now());
                health.last_sync_error = None;
            }
            Err(error) => health.last_sync_error = Some(ErrorChain(error).to_string()),
        }
        result
    }

    async fn sync_repos_inner(&self, repos: &[RepoId]) -> Result<SyncReport, Error> {
        let mut listings = Vec::new();
        let mut report = SyncReport::default();
        for repo in repos {
            let (listing, unchanged) = sync::list(&self.inner.client, repo).await?;
            if unchanged {
                report.unchanged_repos += 1;
            }
            listings.push((repo.clone(), listing));
        }
        let _writing = self.inner.writing.lock().await;
        let head = self.inner.branch.head().await?;
        let tree = head.map(|commit| commit.tree());
        let times: Vec<(RepoId, u64, chrono::DateTime<chrono::Utc>)> = listings
            .iter()
            .flat_map(|(repo, listing)| {
                listing
                    .updated_at
                    .iter()
                    .map(move |(number, at)| (repo.clone(), *number, *at))
            })
            .collect();
        let edits = tokio::task::spawn_blocking(move || -> Result<Vec<Edit>, Error> {
            let mut edits = Vec::new();
            for (repo, listing) in listings {
                edits.extend(metadata::sync_edits(tree.as_ref(), &repo, listing)?);
            }
            Ok(edits)
        })
        .await??;
        report.changes = self.write(edits).await?;
        {
            let mut clock = lock(&self.inner.pr_clock);
            for (repo, number, at) in times {
                clock.synced(&repo, number, at);
            }
        }
        if !report.changes.is_empty() {
            tracing::info!(
                changes = report.changes.len(),
                "GitHub full sync updated the metadata"
            );
        }
        Ok(report)
    }

    /// Writes `edits` in one commit, if any changes something. The caller holds `writing`.
    async fn write(&self, edits: Vec<Edit>) -> Result<Vec<String>, Error> {
        if edits.is_empty() {
            return Ok(Vec::new());
        }
        let transaction = self.inner.branch.transaction().await?;
        let (transaction, lines) = tokio::task::spawn_blocking(move || {
            let mut transaction = transaction;
            metadata::apply(&mut transaction, &edits).map(|lines| (transaction, lines))
        })
        .await??;
        if lines.is_empty() {
            transaction.abort();
            return Ok(lines);
        }
        transaction.commit(&metadata::message(&lines)).await?;
        Ok(lines)
    }

    /// Applies every event queued by [`receive`](Self::receive) now, in one commit (what
    /// [`run`](Self::run) does in the background); returns how many events there were. Waits
    /// while `run` is running.
    pub async fn apply_queued(&self) -> Result<usize, Error> {
        let mut events = self.inner.events.lock().await;
        let mut batch = Vec::new();
        while let Ok(event) = events.try_recv() {
            batch.push(event);
        }
        let count = batch.len();
        if self.inner.resync.swap(false, Ordering::Relaxed) {
            self.sync_once().await?;
        }
        self.apply(batch).await?;
        Ok(count)
    }

    /// Applies queued webhook events (many in one commit), syncs at start, when asked and every
    /// [`GithubConfig::sync_interval`], until `cancel` fires. A failing sync or write is logged
    /// and tried again at the next event or interval; it never ends the loop.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), Error> {
        let mut events = self.inner.events.lock().await;
        let mut interval = tokio::time::interval(self.inner.sync_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = Vec::new();
            let mut sync = false;
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                _ = interval.tick() => sync = true,
                () = self.inner.wake.notified() => {}
                received = events.recv() => match received {
                    Some(event) => batch.push(event),
                    None => return Ok(()),
                },
            }
            while batch.len() < BATCH {
                match events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            sync |= self.inner.resync.swap(false, Ordering::Relaxed);
            if sync && let Err(error) = self.sync_once().await {
                tracing::warn!(error = %ErrorChain(&error), "GitHub full sync failed; trying again later");
            }
            if !batch.is_empty()
                && let Err(error) = self.apply(batch).await
            {
                tracing::warn!(error = %ErrorChain(&error), "cannot apply GitHub webhook events; a full sync will catch up");
                self.inner.resync.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Applies webhook events: ref and PR edits in one commit, then the syncs and reruns asked.
    async fn apply(&self, batch: Vec<Event>) -> Result<(), Error> {
        let mut edits = Vec::new();
        let mut resync: Vec<RepoId> = Vec::new();
        let mut reruns = Vec::new();
        for event in batch {
            match event {
                Event::Ref { repo, name, head } => {
                    let repo = self.repo_id(&repo)?;
                    edits.extend(metadata::ref_edit(&repo, &name, head.as_deref()));
                }
                Event::Pr { repo, pr } => {
                    let repo = self.repo_id(&repo)?;
                    if !lock(&self.inner.pr_clock).admit(&repo, pr.number, pr.updated_at) {
                        tracing::info!(%repo, number = pr.number, updated_at = ?pr.updated_at, "a late pull_request delivery, older than the PR's state already applied, ignored");
                        continue;
                    }
                    edits.extend(metadata::pr_edit(&repo, pr));
                }
                Event::Resync { repo: Some(repo) } => {
                    let repo = self.repo_id(&repo)?;
                    if !resync.contains(&repo) {
                        resync.push(repo);
                    }
                }
                Event::Resync { repo: None } => {
                    // An installation event: the App's installations may have changed.
                    self.inner.client.forget_installations().await;
                    resync = self.inner.repos.clone();
                }
                Event::Rerun {
                    repo,
                    head_sha,
                    check_name,
                    installation,
                } => {
                    let repo = self.repo_id(&repo)?;
                    if !self.our_installation(&repo, installation).await {
                        continue;
                    }
                    let Ok(commit) = head_sha.parse() else {
                        continue;
                    };
                    let job = check_name.map(|name| {
                        name.strip_prefix("ci/datakit/")
                            .map_or(name.clone(), str::to_owned)
                    });
                    reruns.push(RerunRequest { repo, commit, job });
                }
                Event::Nothing => {}
            }
        }
        {
            let _writing = self.inner.writing.lock().await;
            let lines = self.write(edits).await?;
            if !lines.is_empty() {
                tracing::info!(
                    changes = lines.len(),
                    "GitHub webhooks updated the metadata"
                );
            }
        }
        if !resync.is_empty() {
            self.sync_repos(&resync).await?;
        }
        if !reruns.is_empty() {
            let hook = lock(&self.inner.rerun).clone();
            for rerun in reruns {
                match &hook {
                    Some(hook) => hook(rerun).await,
                    None => {
                        tracing::info!(repo = %rerun.repo, commit = %rerun.commit, "GitHub asked for a re-run; nothing is set up to do it")
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether a re-run request sent for `installation` comes from the App installation this
    /// CI uses for `repo`'s owner (always, with a token: there is no installation to compare).
    /// Warns when it does not, or when GitHub cannot say which installation is ours.
    async fn our_installation(&self, repo: &RepoId, installation: Option<u64>) -> bool {
        match self.inner.client.installation_id(repo).await {
            Ok(None) => true,
            Ok(Some(ours)) if installation == Some(ours) => true,
            Ok(Some(ours)) => {
                tracing::warn!(%repo, ours, theirs = ?installation, "a re-run request from another installation than this CI's ignored");
                false
            }
            Err(error) => {
                tracing::warn!(%repo, error = %ErrorChain(&error), "cannot learn this CI's installation for a re-run request; ignored");
                false
            }
        }
    }

    fn repo_id(&self, name: &str) -> Result<RepoId, Error> {
        name.parse()
            .map_err(|e: datakit_ci_term::IdError| Error::Name {
                what: "repository",
                value: name.to_owned(),
                reason: e.to_string(),
            })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Displays an error with its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

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
