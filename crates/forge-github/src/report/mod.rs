//! Commit statuses (and, as a GitHub App, check runs) to GitHub ([`StatusReporter`]). What is still to be sent is derived from the
//! store, never from memory: the statuses the engine wrote in `github-metadata` (`<owner>/<repo>/
//! commit/<hash>/status/ci/datakit/<test>/{state,description,target_url}`) against what GitHub
//! was last told, recorded on the branch `github-reported` (`<owner>/<repo>/commit/<hash>/
//! <context>/told`, plus `cursor`: the metadata commit up to which everything was told). So a
//! restart, even after `kill -9`, sends exactly what was not yet acknowledged, and only the latest
//! state of each status.
//!
//! As an App, each status also has a check run (name and `external_id` = the context,
//! `in_progress` while pending, then `completed` with a conclusion read from the state and the
//! description's prefixes — [`SKIPPED_PREFIX`](crate::SKIPPED_PREFIX) and friends —, the
//! description as title and summary, a failed job's last log lines in the summary (read through
//! a [`LogHook`]), `details_url` = the status link, and a `rebuild` action button): created
//! once, its id recorded beside the status (`check_run`), then updated (`check_run.rs`: the
//! body, conclusion and summary).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use datakit_ci_store::{Branch, BranchName, Commit, CommitId, Snapshot, Store, StorePath};
use datakit_ci_term::metadata::MetadataReader;
use datakit_ci_term::{CommitHash, RepoId};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::api::Client;

pub(crate) mod check_run;

/// The branch recording what GitHub was told.
pub const REPORTED_BRANCH: &str = "github-reported";

/// This CI's status contexts start with this.
const CONTEXT_PREFIX: &str = "ci/datakit/";

/// GitHub's limit on a status description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 140;

/// The first wait after a failure; doubled at each further failure, up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How many statuses are sent at once by default.
const CONCURRENCY: usize = 8;

/// One status: which commit and context.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    repo: RepoId,
    commit: CommitHash,
    /// e.g. `ci/datakit/build`.
    context: String,
}

/// What a status says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Told {
    state: String,
    description: String,
    target_url: String,
}

impl Told {
    fn to_record(&self) -> String {
        serde_json::json!({
            "state": self.state,
            "description": self.description,
            "target_url": self.target_url,
        })
        .to_string()
    }

    fn from_record(bytes: &[u8]) -> Option<Told> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let field = |name: &str| value.get(name)?.as_str().map(str::to_owned);
        Some(Told {
            state: field("state")?,
            description: field("description")?,
            target_url: field("target_url")?,
        })
    }
}

/// What is due for one status: the status itself, the check run, or both.
#[derive(Debug)]
struct Due {
    told: Told,
    /// The commit status differs from what GitHub was last told.
    status: bool,
    /// As an App: the check run differs; holds the check run's id if one was created.
    check: Option<Option<u64>>,
}

/// Which job's log a check run's summary shows ([`LogHook`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogRequest {
    /// The repository.
    pub repo: RepoId,
    /// The commit the job ran on.
    pub commit: CommitHash,
    /// The job (the status context without `ci/datakit/`).
    pub job: String,
    /// How many bytes of the log's end are wanted (at most).
    pub max_bytes: usize,
}

/// Reads the end of a failed job's log for its check run's summary: at most
/// [`LogRequest::max_bytes`], the last ones, or `None` if there is no log to show (the summary
/// then has none). Installed by the program ([`StatusReporter::with_logs`]), which knows where
/// logs are kept; this crate does not.
pub type LogHook = Arc<
    dyn Fn(
            LogRequest,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send>>
        + Send
        + Sync,
>;

/// What one pass sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportPass {
    /// Statuses GitHub accepted.
    pub sent: usize,
    /// Check runs created or updated (as a GitHub App).
    pub check_runs: usize,
    /// Statuses GitHub refused for good (a 4xx other than a rate limit); recorded as told, so
    /// they are not sent again until they change.
    pub refused: usize,
}

/// Sends this CI's commit statuses to GitHub. See the module docs.
pub struct StatusReporter {
    store: Store,
    metadata: Branch,
    record: Branch,
    client: Arc<Client>,
    repos: Vec<RepoId>,
    retry_delay: Duration,
    /// How many statuses the current pass still has to send (for the dashboard).
    waiting: Arc<AtomicUsize>,
    /// How many statuses are sent at once.
    concurrency: usize,
    /// Where failed jobs' logs are read, for check-run summaries.
    logs: Option<LogHook>,
}

impl std::fmt::Debug for StatusReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusReporter")
            .field("repos", &self.repos)
            .finish_non_exhaustive()
    }
}

impl StatusReporter {
    pub(crate) fn new(
        store: Store,
        client: Arc<Client>,
        repos: Vec<RepoId>,
        waiting: Arc<AtomicUsize>,
    ) -> StatusReporter {
        let name = |n: &str| BranchName::new(n).expect("a valid branch name");
        StatusReporter {
            metadata: store.branch(&name(crate::METADATA_BRANCH)),
            record: store.branch(&name(REPORTED_BRANCH)),
            store,
            client,
            repos,
            retry_delay: RETRY_DELAY,
            waiting,
            concurrency: CONCURRENCY,
            logs: None,
        }
    }

    /// Sets the first wait after a failed request (default 1 s, doubling up to 60 s). GitHub's
    /// `Retry-After` overrides it.
    #[must_use]
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Sets how many statuses are sent at once (default 8; at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Shows the end of a failed job's log in its check run's summary (as a GitHub App), read
    /// by `hook`. Without one, summaries have the description and the link only.
    #[must_use]
    pub fn with_logs(mut self, hook: LogHook) -> Self {
        self.logs = Some(hook);
        self
    }

    /// Sends every status not yet told until `cancel` fires, again at each change of the
    /// metadata; waits and tries again after a failure (network, 5xx, rate limits).
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let mut heads = self.metadata.watch();
        let mut failures: u32 = 0;
        loop {
            heads.borrow_and_update();
            let wait = match self.report_once().await {
                Ok(_) => {
                    failures = 0;
                    None
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = self
                        .retry_delay
                        .saturating_mul(2u32.saturating_pow(failures - 1).min(64))
                        .min(MAX_RETRY_DELAY);
                    let wait = error.retry_after().unwrap_or(backoff);
                    tracing::warn!(error = %crate::ErrorChain(&error), ?wait, "cannot send commit statuses to GitHub; trying again");
                    Some(wait)
                }
            };
            match wait {
                Some(wait) => tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                },
                None => tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    changed = heads.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                    }
                },
            }
        }
    }

    /// One pass: sends each status of the metadata's head that differs from what GitHub was last
    /// told, recording each as it is acknowledged, then moves the cursor to that head. Stops at
    /// the first transient failure (returned); the next pass starts where this one stopped.
    pub async fn report_once(&self) -> Result<ReportPass, Error> {
        let Some(head) = self.metadata.head().await? else {
            return Ok(ReportPass::default());
        };
        let record = self.record.head().await?;
        let record_tree = record.as_ref().map(Commit::tree);
        let cursor = match &record_tree {
            Some(tree) => read_cursor(&self.store, tree).await,
            None => None,
        };
        if cursor.as_ref().map(Commit::id) == Some(head.id()) {
            return Ok(ReportPass::default());
        }
        let tree = head.tree();
        let repos = self.repos.clone();
        let app = self.client.is_app();
        let wanted = {
            let tree = tree.clone();
            let cursor = cursor.map(|c| c.tree());
            let record_tree = record_tree.clone();
            tokio::task::spawn_blocking(move || {
                to_send(&tree, cursor.as_ref(), record_tree.as_ref(), &repos, app)
            })
            .await??
        };
        let mut pass = ReportPass::default();
        self.waiting.store(wanted.len(), Ordering::Relaxed);
        // Several statuses in flight: GitHub answers in 100-300 ms, and a push can change
        // hundreds. Dropping the stream at the first transient failure drops the requests in
        // flight; what they sent unrecorded is sent again by the next pass.
        let mut results = futures::stream::iter(wanted)
            .map(|(key, due)| async move { self.report_one(&key, &due).await })
            .buffer_unordered(self.concurrency);
        while let Some(result) = results.next().await {
            let one = result?;
            pass.sent += one.sent;
            pass.check_runs += one.check_runs;
            pass.refused += one.refused;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        drop(results);
        self.record_cursor(head.id()).await?;
        Ok(pass)
    }

    /// Sends what is due for one status (the status, the check run, or both), then records what
    /// GitHub acknowledged or refused for good in one commit. A transient failure is returned
    /// after recording what was already acknowledged.
    async fn report_one(&self, key: &Key, due: &Due) -> Result<ReportPass, Error> {
        let told = &due.told;
        let mut one = ReportPass::default();
        let mut files: Vec<(&str, String)> = Vec::new();
        if due.status {
            match self.send(key, told).await {
                Ok(()) => one.sent += 1,
                Err(error) => {
                    self.refused(key, error).await?;
                    one.refused += 1;
                }
            }
            files.push(("told", told.to_record()));
        }
        if let Some(id) = due.check {
            match self.send_check_run(key, told, id).await {
                Ok(id) => {
                    one.check_runs += 1;
                    files.push(("check_run", check_run::check_record(Some(id), told)));
                }
                Err(error) => match self.refused(key, error).await {
                    Ok(()) => {
                        one.refused += 1;
                        files.push(("check_run", check_run::check_record(id, told)));
                    }
                    Err(error) => {
                        self.record(key, &files).await?;
                        return Err(error);
                    }
                },
            }
        }
        self.record(key, &files).await?;
        Ok(one)
    }

    /// Returns a transient error (to stop the pass), or `Ok` for a refusal for good (recorded as
    /// told, so it is not sent again until it changes).
    async fn refused(&self, key: &Key, error: Error) -> Result<(), Error> {
        if error.is_transient() {
            return Err(error);
        }
        if matches!(error, Error::Status { status: 401, .. }) {
            self.client.token_refused(&key.repo).await;
            return Err(error);
        }
        tracing::warn!(error = %crate::ErrorChain(&error), commit = %key.commit, context = key.context, "GitHub refused a status or check run; not sending it again until it changes");
        Ok(())
    }

    /// Creates (no `id` yet) or updates the check run of `key`; returns its id.
    async fn send_check_run(&self, key: &Key, told: &Told, id: Option<u64>) -> Result<u64, Error> {
        let log = self.log_for(key, told).await;
        let mut body = check_run::body(&key.context, told, log.as_deref());
        let answer = match id {
            Some(id) => {
                self.client
                    .patch(
                        &key.repo,
                        &format!("repos/{}/check-runs/{id}", key.repo),
                        &body,
                    )
                    .await?
            }
            None => {
                body["head_sha"] = serde_json::Value::String(key.commit.to_string());
                self.client
                    .post(&key.repo, &format!("repos/{}/check-runs", key.repo), &body)
                    .await?
            }
        };
        let value: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|e| Error::Answer {
                url: format!("repos/{}/check-runs", key.repo),
                problem: e.to_string(),
            })?;
        value
            .get("id")
            .and_then(serde_json::Value::as_u64)
            .or(id)
            .ok_or_else(|| Error::Answer {
                url: format!("repos/{}/check-runs", key.repo),
                problem: "no check run id in the answer".to_owned(),
            })
    }

    /// The end of the log of a failed job, from a line's start, if a [`LogHook`] has it.
    async fn log_for(&self, key: &Key, told: &Told) -> Option<Vec<u8>> {
        let hook = self.logs.as_ref()?;
        if !check_run::Conclusion::of(told).is_some_and(check_run::Conclusion::shows_log) {
            return None;
        }
        let request = LogRequest {
            repo: key.repo.clone(),
            commit: key.commit.clone(),
            job: key
                .context
                .strip_prefix(CONTEXT_PREFIX)
                .unwrap_or(&key.context)
                .to_owned(),
            max_bytes: check_run::LOG_TAIL_BYTES,
        };
        let mut log = hook(request).await?;
        if log.len() >= check_run::LOG_TAIL_BYTES {
            // Cut: the first line is partial (maybe inside an escape sequence); drop it.
            let start = log
                .iter()
                .position(|&b| b == b'\n')
                .map_or(log.len(), |i| i + 1);
            log.drain(..start);
        }
        Some(log)
    }

    async fn send(&self, key: &Key, told: &Told) -> Result<(), Error> {
        let mut body = serde_json::json!({
            "state": told.state,
            "description": told.description,
            "context": key.context,
        });
        if !told.target_url.is_empty() {
            body["target_url"] = serde_json::Value::String(told.target_url.clone());
        }
        self.client
            .post(
                &key.repo,
                &format!("repos/{}/statuses/{}", key.repo, key.commit),
                &body,
            )
            .await?;

        tracing::debug!(repo = %key.repo, commit = %key.commit, context = key.context, state = told.state, "status sent to GitHub");
        Ok(())
    }

    /// Records `files` (`told`, `check_run`: name and contents) of `key` in one commit.
    async fn record(&self, key: &Key, files: &[(&str, String)]) -> Result<(), Error> {
        if files.is_empty() {
            return Ok(());
        }
        let mut transaction = self.record.transaction().await?;
        for (name, contents) in files {
            let path = StorePath::new(format!(
                "{}/commit/{}/{}/{name}",
                key.repo, key.commit, key.context
            ))?;
            transaction.create_file(&path, contents.as_str())?;
        }
        transaction
            .commit(&format!("Told GitHub {} on {}", key.context, key.commit))
            .await?;
        Ok(())
    }

    async fn record_cursor(&self, head: CommitId) -> Result<(), Error> {
        let mut transaction = self.record.transaction().await?;
        transaction.create_file(&cursor_path(), format!("{head}\n"))?;
        transaction
            .commit(&format!("Every status of {head} told"))
            .await?;
        Ok(())
    }
}

fn cursor_path() -> StorePath {
    StorePath::new("cursor").expect("a valid path")
}

/// The metadata commit named by the record's `cursor`, if it is readable.
async fn read_cursor(store: &Store, record: &Snapshot) -> Option<Commit> {
    let bytes = record.read_file(&cursor_path()).ok()??;
    let id: CommitId = String::from_utf8_lossy(&bytes).trim().parse().ok()?;
    store.commit(id).await.ok()
}

/// The statuses of `tree` that differ from the record (blocking: reads). With a `cursor`, only
/// the statuses changed since it are looked at; without, every status of `repos`.
fn to_send(
    tree: &Snapshot,
    cursor: Option<&Snapshot>,
    record: Option<&Snapshot>,
    repos: &[RepoId],
    app: bool,
) -> Result<BTreeMap<Key, Due>, Error> {
    let keys: Vec<Key> = match cursor {
        Some(cursor) => cursor
            .changed_files(tree)?
            .iter()
            .filter_map(|path| status_key(path.as_str(), repos))
            .collect(),
        None => all_keys(tree, repos)?,
    };
    let reader = MetadataReader::new(tree);
    let mut wanted = BTreeMap::new();
    for key in keys {
        if wanted.contains_key(&key) {
            continue;
        }
        let Ok(Some(status)) = reader.status(&key.repo, &key.commit, &key.context) else {
            continue;
        };
        let told = Told {
            state: status.state.to_string(),
            description: cut(status.description.as_deref().unwrap_or("")),
            target_url: status.target_url.unwrap_or_default(),
        };
        let read = |name: &str| -> Result<Option<Vec<u8>>, Error> {
            let Some(record) = record else {
                return Ok(None);
            };
            let path = StorePath::new(format!(
                "{}/commit/{}/{}/{name}",
                key.repo, key.commit, key.context
            ))?;
            Ok(record.read_file(&path)?)
        };
        let last = read("told")?.and_then(|b| Told::from_record(&b));
        let status = last.as_ref() != Some(&told);
        let check = if app {
            match read("check_run")?.and_then(|b| check_run::parse_check_record(&b)) {
                Some((_, last)) if last == told => None,
                Some((id, _)) => Some(id),
                None => Some(None),
            }
        } else {
            None
        };
        if status || check.is_some() {
            wanted.insert(
                key,
                Due {
                    told,
                    status,
                    check,
                },
            );
        }
    }
    Ok(wanted)
}

/// The status a metadata path belongs to, if it is one of ours in a monitored repository.
fn status_key(path: &str, repos: &[RepoId]) -> Option<Key> {
    let mut parts = path.splitn(5, '/');
    let (user, repo, commit_dir, commit, rest) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if commit_dir != "commit" {
        return None;
    }
    let repo = repos
        .iter()
        .find(|r| r.user() == user && r.repo() == repo)?
        .clone();
    let context = rest.strip_prefix("status/")?;
    let context = context
        .strip_suffix("/state")
        .or_else(|| context.strip_suffix("/description"))
        .or_else(|| context.strip_suffix("/target_url"))?;
    if !context.starts_with(CONTEXT_PREFIX) {
        return None;
    }
    Some(Key {
        repo,
        commit: commit.parse().ok()?,
        context: context.to_owned(),
    })
}

/// Every status of ours in `repos` (a first run: no cursor yet).
fn all_keys(tree: &Snapshot, repos: &[RepoId]) -> Result<Vec<Key>, Error> {
    let mut keys = Vec::new();
    for repo in repos {
        let commits = StorePath::new(format!("{repo}/commit"))?;
        for commit in tree.read_dir(&commits)?.unwrap_or_default() {
            let Ok(hash) = commit.parse::<CommitHash>() else {
                continue;
            };
            let ours = StorePath::new(format!("{repo}/commit/{commit}/status/ci/datakit"))?;
            let mut stack = vec![(ours, "ci/datakit".to_owned())];
            while let Some((dir, context)) = stack.pop() {
                for entry in tree.read_dir(&dir)?.unwrap_or_default() {
                    let child = dir.join(&entry)?;
                    if entry == "state" {
                        keys.push(Key {
                            repo: repo.clone(),
                            commit: hash.clone(),
                            context: context.clone(),
                        });
                    } else if tree.kind(&child)? == Some(datakit_ci_store::EntryKind::Dir) {
                        stack.push((child, format!("{context}/{entry}")));
                    }
                }
            }
        }
    }
    Ok(keys)
}

/// A description within GitHub's 140 characters.
fn cut(description: &str) -> String {
    description.chars().take(MAX_DESCRIPTION_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_paths_name_their_status() {
        let repos = vec![RepoId::new("me", "proj").expect("valid")];
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let key = status_key(
            &format!("me/proj/commit/{hash}/status/ci/datakit/build/state"),
            &repos,
        )
        .expect("ours");
        assert_eq!(key.context, "ci/datakit/build");
        assert!(
            status_key(
                &format!("me/proj/commit/{hash}/status/ci/other/state"),
                &repos
            )
            .is_none(),
            "another CI's"
        );
        assert!(
            status_key(
                &format!("me/other/commit/{hash}/status/ci/datakit/b/state"),
                &repos
            )
            .is_none(),
            "not monitored"
        );
        assert!(status_key("me/proj/ref/heads/main/head", &repos).is_none());
    }

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        assert_eq!(cut(&"é".repeat(200)).chars().count(), 140);
        assert_eq!(cut("short"), "short");
    }
}
