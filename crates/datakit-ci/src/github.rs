//! GitHub in the program: the `--github-*` options ([`GithubArgs`], validated without I/O into
//! [`GithubOptions`]), reading their secret files and making the bridge ([`GithubOptions::bridge`]),
//! and the adapter that hands the web server's `POST /webhooks/github` deliveries to the bridge
//! ([`WebhookAdapter`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;

use datakit_ci_engine::Engine;
use datakit_ci_forge_github::{
    Credentials, GithubBridge, GithubConfig, LogHook, LogRequest, MAX_PAYLOAD_BYTES, OAuthApp,
    Receipt, RerunHook, RerunRequest, Secret, UserClient, WebhookError, WebhookRequest,
};
use datakit_ci_git::RemoteCredentials;
use datakit_ci_store::{BranchName, Store};
use datakit_ci_term::{JobOutput, LogLeaf, RebuildStateKind, RepoId, SavedLog, TargetId};
use datakit_ci_web::{
    ForgeHealth, ForgeLink, ForgeLinks, GithubIdentity, GithubLogin, GithubToken, OAuthClient,
    RecheckError, UserAttrs, WebhookDelivery, WebhookOutcome, WebhookReceiver, WebhookRejection,
};

use crate::cli::UsageError;

/// The GitHub options (issue 15).
#[derive(Debug, Args)]
pub struct GithubArgs {
    /// A GitHub repository to test, `OWNER/REPO` (repeatable): its open pull requests, branches
    /// and tags, with commit statuses posted back.
    #[arg(long = "github-repo", value_name = "OWNER/REPO")]
    pub github_repos: Vec<String>,
    /// The GitHub REST API (a GitHub Enterprise server's is `https://HOST/api/v3`).
    #[arg(long, value_name = "URL", default_value = datakit_ci_forge_github::DEFAULT_API_URL)]
    pub github_api_url: String,
    /// A file holding a GitHub token (a personal access token, or any token with the
    /// `repo:status` and read access to the repositories).
    #[arg(long, value_name = "FILE", conflicts_with = "github_app_id")]
    pub github_token_file: Option<PathBuf>,
    /// The id of the GitHub App to act as (with --github-app-key).
    #[arg(long, value_name = "N", requires = "github_app_key")]
    pub github_app_id: Option<u64>,
    /// The GitHub App's private key (PEM file).
    #[arg(long, value_name = "FILE", requires = "github_app_id")]
    pub github_app_key: Option<PathBuf>,
    /// A file holding the webhook secret; webhooks are served on `POST /webhooks/github` only
    /// with one.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// How often to list every repository's PRs, branches and tags, in case a webhook was missed
    /// (e.g. `10m`).
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub github_sync_interval: humantime::Duration,
}

/// How the program reaches GitHub, checked but not yet read (the secret files are read at
/// start).
#[derive(Clone, Debug)]
pub struct GithubOptions {
    /// The repositories.
    pub repos: Vec<RepoId>,
    /// The API's base URL.
    pub api_url: String,
    /// The credentials' files.
    pub auth: GithubAuth,
    /// The webhook secret's file.
    pub webhook_secret_file: Option<PathBuf>,
    /// The interval between full syncs.
    pub sync_interval: Duration,
}

/// Where the credentials are.
#[derive(Clone, Debug)]
pub enum GithubAuth {
    /// `--github-token-file`.
    TokenFile(PathBuf),
    /// `--github-app-id`, `--github-app-key`.
    App {
        /// The App's id.
        app_id: u64,
        /// Its key's file.
        key_file: PathBuf,
    },
}

impl GithubArgs {
    /// `None` without `--github-repo`; else the checked options.
    pub fn into_options(self) -> Result<Option<GithubOptions>, UsageError> {
        let error = |option: &'static str, reason: String| UsageError::Github { option, reason };
        if self.github_repos.is_empty() {
            return Ok(None);
        }
        let mut repos: Vec<RepoId> = Vec::new();
        for value in &self.github_repos {
            let repo: RepoId = value
                .parse()
                .map_err(|e| error("--github-repo", format!("{value:?}: {e}")))?;
            if repos.contains(&repo) {
                return Err(error("--github-repo", format!("{value:?} is given twice")));
            }
            repos.push(repo);
        }
        if !(self.github_api_url.starts_with("http://")
            || self.github_api_url.starts_with("https://"))
        {
            return Err(error(
                "--github-api-url",
                format!(
                    "{:?} must start with http:// or https://",
                    self.github_api_url
                ),
            ));
        }
        let auth = match (
            self.github_token_file,
            self.github_app_id,
            self.github_app_key,
        ) {
            (Some(file), None, None) => GithubAuth::TokenFile(file),
            (None, Some(app_id), Some(key_file)) => GithubAuth::App { app_id, key_file },
            _ => {
                return Err(error(
                    "--github-repo",
                    "needs --github-token-file FILE, or --github-app-id N with --github-app-key FILE"
                        .to_owned(),
                ));
            }
        };
        let sync_interval: Duration = self.github_sync_interval.into();
        if sync_interval.is_zero() {
            return Err(error(
                "--github-sync-interval",
                "must be longer than 0s".to_owned(),
            ));
        }
        Ok(Some(GithubOptions {
            repos,
            api_url: self.github_api_url,
            auth,
            webhook_secret_file: self.webhook_secret_file,
            sync_interval,
        }))
    }
}

impl GithubOptions {
    /// Reads the secret files and makes the bridge over `store`.
    pub fn bridge(&self, store: &Store) -> Result<GithubBridge, datakit_ci_forge_github::Error> {
        let credentials = match &self.auth {
            GithubAuth::TokenFile(file) => Credentials::Token(Secret::from_file(file)?),
            GithubAuth::App { app_id, key_file } => Credentials::App {
                app_id: *app_id,
                key: Secret::from_file(key_file)?,
            },
        };
        let mut config = GithubConfig::new(self.repos.clone(), credentials);
        config.api_url = self.api_url.clone();
        config.sync_interval = self.sync_interval;
        config.webhook_secret = self
            .webhook_secret_file
            .as_deref()
            .map(Secret::from_file)
            .transpose()?;
        GithubBridge::new(store.clone(), config)
    }
}

/// What GitHub's "Re-run" buttons do: `check_run.rerequested` (and the check run's `rebuild`
/// action) rebuilds that job on every target at the commit (its failed steps, else its last
/// step); `check_suite.rerequested` rebuilds the failed steps of every job there.
pub fn rerun_hook(engine: Engine) -> RerunHook {
    Arc::new(move |request: RerunRequest| {
        let engine = engine.clone();
        Box::pin(async move {
            let mut branches: BTreeSet<BranchName> = BTreeSet::new();
            for id in engine.targets_of_commit(&request.repo, &request.commit) {
                let Some(view) = engine.target(&id) else {
                    continue;
                };
                for job in &view.jobs {
                    if request.job.as_ref().is_some_and(|name| name != &job.name) {
                        continue;
                    }
                    let Some(output) = &job.output else { continue };
                    let saved: Vec<&SavedLog> = output
                        .logs
                        .leaves()
                        .into_iter()
                        .filter_map(|leaf| match leaf {
                            LogLeaf::Saved(saved)
                                if saved.rebuild_state() == RebuildStateKind::Rebuildable =>
                            {
                                Some(saved)
                            }
                            _ => None,
                        })
                        .collect();
                    let failed: Vec<&SavedLog> =
                        saved.iter().copied().filter(|s| s.failed()).collect();
                    if !failed.is_empty() {
                        branches.extend(failed.iter().map(|s| s.branch().clone()));
                    } else if request.job.is_some()
                        && let Some(last) = saved.last()
                    {
                        branches.insert(last.branch().clone());
                    }
                }
            }
            if branches.is_empty() {
                tracing::info!(repo = %request.repo, commit = %request.commit, job = request.job, "GitHub asked for a re-run of nothing this CI built");
            }
            for branch in branches {
                match engine.rebuild(&branch).await {
                    Ok(()) => tracing::info!(%branch, "rebuilding, as GitHub asked"),
                    Err(error) => {
                        tracing::warn!(%branch, %error, "cannot rebuild, as GitHub asked")
                    }
                }
            }
        })
    })
}

/// Where a check run's summary finds a failed job's log: the job's saved logs on a target at
/// that commit (its last failed step's, else its last step's), read from the `log` file of the
/// cache commit that holds it, only its last [`LogRequest::max_bytes`].
pub fn log_hook(engine: Engine) -> LogHook {
    Arc::new(move |request: LogRequest| {
        let engine = engine.clone();
        Box::pin(async move {
            let commit = saved_log_commit(&engine, &request).await?;
            let snapshot = match engine.store().commit(commit).await {
                Ok(found) => found.tree(),
                Err(error) => {
                    tracing::info!(%error, %commit, job = request.job, "a failed job's log is gone; its check run shows none");
                    return None;
                }
            };
            let max_bytes = request.max_bytes;
            let read = tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, String> {
                let path = datakit_ci_store::StorePath::new("log").map_err(|e| e.to_string())?;
                let Some(reader) = snapshot.open_file(&path).map_err(|e| e.to_string())? else {
                    return Ok(None);
                };
                read_tail(reader, max_bytes)
                    .map(Some)
                    .map_err(|e| e.to_string())
            })
            .await;
            match read {
                Ok(Ok(log)) => log,
                Ok(Err(error)) => {
                    tracing::warn!(%error, %commit, job = request.job, "cannot read a failed job's log for its check run");
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, "reading a job's log for its check run stopped");
                    None
                }
            }
        })
    })
}

/// The cache commit of the log to show for `request`'s job: its last failed saved log, from
/// the engine's view of the targets at that commit or else from their recorded history (after a
/// restart, before the engine has evaluated them again, or for a commit no longer any target's
/// head); failing that, its last saved log, from the same places. A failed log is looked for
/// everywhere first because, just after a restart, the engine's view of the job may hold only
/// the steps it has re-read so far (e.g. the fetch) while the history has the failure.
async fn saved_log_commit(
    engine: &Engine,
    request: &LogRequest,
) -> Option<datakit_ci_store::CommitId> {
    let mut outputs: Vec<JobOutput> = engine
        .targets_of_commit(&request.repo, &request.commit)
        .into_iter()
        .filter_map(|id| {
            engine.target(&id).and_then(|view| {
                view.jobs
                    .iter()
                    .find(|job| job.name == request.job)
                    .and_then(|job| job.output.clone())
            })
        })
        .collect();
    if let Some(failed) = outputs.iter().find_map(last_failed_log) {
        return Some(failed);
    }
    match engine
        .history()
        .builds_of_commit(&request.repo, &request.commit)
        .await
    {
        Ok(builds) => outputs.extend(
            builds
                .values()
                .filter_map(|state| state.jobs.get(&request.job).cloned()),
        ),
        Err(error) => {
            tracing::warn!(%error, repo = %request.repo, commit = %request.commit, "cannot read a commit's builds for a check run's log");
        }
    }
    outputs
        .iter()
        .find_map(last_failed_log)
        .or_else(|| outputs.iter().find_map(last_log))
}

/// A job's saved logs, in order.
fn saved_logs(output: &JobOutput) -> Vec<&SavedLog> {
    output
        .logs
        .leaves()
        .into_iter()
        .filter_map(|leaf| match leaf {
            LogLeaf::Saved(saved) => Some(saved),
            LogLeaf::Live(_) => None,
        })
        .collect()
}

/// The cache commit of a job's last failed saved log.
fn last_failed_log(output: &JobOutput) -> Option<datakit_ci_store::CommitId> {
    saved_logs(output)
        .into_iter()
        .rev()
        .find(|s| s.failed())
        .map(|chosen| chosen.commit())
}

/// The cache commit of a job's last saved log.
fn last_log(output: &JobOutput) -> Option<datakit_ci_store::CommitId> {
    saved_logs(output).last().map(|chosen| chosen.commit())
}

/// The last `max_bytes` of what `reader` reads, holding at most twice that in memory.
fn read_tail(mut reader: impl std::io::Read, max_bytes: usize) -> std::io::Result<Vec<u8>> {
    let mut tail = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let read = reader.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..read]);
        if tail.len() > 2 * max_bytes.max(chunk.len()) {
            tail.drain(..tail.len() - max_bytes);
        }
    }
    if tail.len() > max_bytes {
        tail.drain(..tail.len() - max_bytes);
    }
    Ok(tail)
}

/// The credentials `git` uses to fetch a GitHub repository over https: the bridge's token (or
/// the owner's installation token), asked for before each clone or fetch.
pub struct GitCredentials {
    /// The bridge that knows the tokens.
    pub bridge: GithubBridge,
    /// The repository fetched.
    pub repo: RepoId,
}

impl RemoteCredentials for GitCredentials {
    fn authorization(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>> {
        let bridge = self.bridge.clone();
        let repo = self.repo.clone();
        Box::pin(async move {
            bridge
                .git_authorization(&repo)
                .await
                .map(|header| header.expose().to_owned())
                .map_err(|e| e.to_string())
        })
    }
}

/// "Log in with GitHub" on the GitHub whose API is at `api_url` (the OAuth App's client id and
/// secret are kept by the web UI in its secrets directory, set at `/settings/github-auth`).
pub fn oauth_login(api_url: &str) -> Arc<dyn GithubLogin> {
    Arc::new(LoginAdapter {
        api_url: api_url.to_owned(),
        // The API URL was checked at start; an unusable one makes every re-check fail.
        user: UserClient::new(api_url).map_err(|e| e.to_string()),
    })
}

/// The web's [`GithubLogin`] from the bridge crate's [`OAuthApp`] and [`UserClient`].
struct LoginAdapter {
    api_url: String,
    user: Result<UserClient, String>,
}

impl LoginAdapter {
    fn app(&self, client: &OAuthClient) -> Result<OAuthApp, datakit_ci_forge_github::Error> {
        OAuthApp::new(
            client.id.clone(),
            Secret::new(client.secret.clone()),
            &self.api_url,
        )
    }
}

impl GithubLogin for LoginAdapter {
    fn authorize_url(&self, client_id: &str, state: &str, redirect_uri: &str) -> String {
        let client = OAuthClient {
            id: client_id.to_owned(),
            secret: String::new(),
        };
        match self.app(&client) {
            Ok(app) => app.authorize_url(state, redirect_uri),
            // The API URL was checked at start; an unusable one leads back to the login page.
            Err(_) => "/auth/login".to_owned(),
        }
    }

    fn complete(
        &self,
        client: OAuthClient,
        code: String,
        redirect_uri: String,
        repos: Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<GithubIdentity, String>> + Send>>
    {
        let app = self.app(&client);
        Box::pin(async move {
            let user = app
                .map_err(|e| e.to_string())?
                .complete(&code, &redirect_uri, &repos)
                .await
                .map_err(|e| e.to_string())?;
            Ok(GithubIdentity {
                login: user.login,
                attrs: UserAttrs {
                    github_orgs: user.orgs,
                    can_read_github: user.can_read,
                },
                token: GithubToken::new(user.token.expose()),
            })
        })
    }

    fn recheck(
        &self,
        token: GithubToken,
        repos: Vec<String>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<UserAttrs, RecheckError>> + Send>>
    {
        let user = self.user.clone();
        Box::pin(async move {
            let user = user.map_err(RecheckError::Unreachable)?;
            match user.grants(&Secret::new(token.expose()), &repos).await {
                Ok(grants) => Ok(UserAttrs {
                    github_orgs: grants.orgs,
                    can_read_github: grants.can_read,
                }),
                Err(datakit_ci_forge_github::Error::Status { status: 401, .. }) => {
                    Err(RecheckError::Rejected)
                }
                Err(error) => Err(RecheckError::Unreachable(error.to_string())),
            }
        })
    }
}

/// Each GitHub target's page on GitHub, for the web UI.
pub struct LinksAdapter {
    /// GitHub's web root (see [`datakit_ci_forge_github::web_url`]).
    pub web_url: String,
    /// The GitHub repositories (the others have no GitHub page).
    pub repos: Vec<RepoId>,
}

impl ForgeLinks for LinksAdapter {
    fn target_link(&self, target: &TargetId) -> Option<ForgeLink> {
        let repo = target.repo();
        if !self.repos.contains(repo) {
            return None;
        }
        let root = format!("{}/{repo}", self.web_url);
        let url = match target {
            TargetId::Pr(_, number) => format!("{root}/pull/{number}"),
            TargetId::Ref(_, name) => {
                let text = name.to_string();
                match (text.strip_prefix("heads/"), text.strip_prefix("tags/")) {
                    (Some(branch), _) => format!("{root}/tree/{branch}"),
                    (_, Some(tag)) => format!("{root}/releases/tag/{tag}"),
                    _ => return None,
                }
            }
        };
        Some(ForgeLink {
            forge: "GitHub".to_owned(),
            url,
        })
    }
}

/// The dashboard's GitHub line: last webhook, last sync, rate limit left, statuses waiting.
pub struct HealthAdapter(pub GithubBridge);

impl ForgeHealth for HealthAdapter {
    fn lines(&self) -> Vec<String> {
        let health = self.0.health();
        let ago = |time: Option<SystemTime>| match time {
            None => "never".to_owned(),
            Some(time) => {
                let age = time.elapsed().unwrap_or_default();
                format!(
                    "{} ago",
                    humantime::format_duration(Duration::from_secs(age.as_secs()))
                )
            }
        };
        let sync = match &health.last_sync_error {
            Some(error) => format!("last sync failed: {error}"),
            None => format!("last sync {}", ago(health.last_sync)),
        };
        let limit = health
            .api
            .rate_limit_remaining
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        vec![format!(
            "GitHub: last webhook {} · {sync} · rate limit left {limit} · statuses waiting {}",
            ago(health.last_webhook),
            health.statuses_waiting
        )]
    }
}

/// Hands `POST /webhooks/github` deliveries to the bridge.
pub struct WebhookAdapter(pub GithubBridge);

impl WebhookAdapter {
    /// The adapter as the web server takes it.
    pub fn shared(bridge: GithubBridge) -> Arc<dyn WebhookReceiver> {
        Arc::new(WebhookAdapter(bridge))
    }
}

impl WebhookReceiver for WebhookAdapter {
    fn max_body_bytes(&self) -> usize {
        MAX_PAYLOAD_BYTES
    }

    fn receive(&self, delivery: WebhookDelivery) -> Result<WebhookOutcome, WebhookRejection> {
        let request = WebhookRequest {
            event: delivery.event.as_deref(),
            delivery: delivery.delivery.as_deref(),
            signature: delivery.signature.as_deref(),
            body: &delivery.body,
        };
        match self.0.receive(request) {
            Ok(Receipt::Queued) => Ok(WebhookOutcome::Accepted),
            Ok(Receipt::Replayed) => Ok(WebhookOutcome::Replayed),
            Ok(_) => Ok(WebhookOutcome::Ignored),
            Err(error) => {
                let message = error.to_string();
                Err(match error {
                    WebhookError::MissingSignature
                    | WebhookError::BadSignature
                    | WebhookError::NoSecret => WebhookRejection::Unauthorized(message),
                    WebhookError::TooLarge { .. } => WebhookRejection::TooLarge(message),
                    _ => WebhookRejection::BadRequest(message),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::read_tail;

    #[test]
    fn only_the_end_of_a_log_is_kept() -> std::io::Result<()> {
        let log: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_tail(log.as_slice(), 1_000)?, &log[log.len() - 1_000..]);
        assert_eq!(
            read_tail(log.as_slice(), 100_000)?,
            &log[log.len() - 100_000..]
        );
        assert_eq!(read_tail(&b"short"[..], 1_000)?, b"short");
        Ok(())
    }
}
