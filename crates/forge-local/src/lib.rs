//! Local Git repositories as a forge for datakit-ci: mirrors their refs into the metadata branch
//! (`github-metadata`) of the state store, with the layout the GitHub bridge writes, so the engine
//! sees them like GitHub repositories.
//!
//! This crate knows nothing of terms, jobs or HTTP; it reads refs with the real `git` and writes
//! files in one store branch.
//!
//! # Overview
//!
//! - [`LocalRepo`] names one repository to mirror: its forge id `user/repo` and its path (a work
//!   tree or a bare repository), validated by [`LocalRepo::new`].
//! - [`LocalBridge`] mirrors a set of repositories: [`LocalBridge::sync_once`] reads every
//!   repository's refs (one `git for-each-ref` each) and writes what changed in one commit, returning
//!   a [`SyncReport`]; [`LocalBridge::run`] syncs again after every ref change (file-system
//!   notifications, with polling as the fallback) until cancelled.
//!
//! # What is written
//!
//! Every value is written as `<value>\n`, under `<user>/<repo>/`:
//!
//! | Git ref | Metadata |
//! |---|---|
//! | `refs/heads/<name>` | `ref/heads/<name>/head` = the commit |
//! | `refs/tags/<name>` | `ref/tags/<name>/head` = the commit (annotated tags peeled) |
//! | `refs/pull/<n>/head` | `pr/<n>/head`, `state` = `open`, `title` (the commit's subject), `owner` (its author, or `<user>` if empty), `base` (the default branch) |
//!
//! Other refs are ignored. Deleted refs are removed (`ref/…/head`, or the whole `pr/<n>`); an
//! unchanged value is not rewritten, and a sync that changes nothing makes no commit. A ref whose
//! name the layout cannot hold (components outside `[A-Za-z0-9._-]`), a tag of something other
//! than a commit and a PR ref whose number is not an integer are skipped with a warning. The bridge
//! never touches `.monitor`, `commit/…` or other repositories' directories.
//!
//! Commit messages have one line per change (`Tracking new branch main`, `Updating existing branch
//! main to <hash>`, `Removing deleted tag v1.0`, `Tracking new PR 7`, …), preceded by a summary line
//! (`Sync user/repo: 3 updates`) and a blank line when there are several.
//!
//! # Example
//!
//! ```
//! use datakit_ci_forge_local::{LocalBridge, LocalRepo};
//! use datakit_ci_store::{BranchName, Store, StorePath};
//! use std::process::Command;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let project = dir.path().join("project");
//! let git = |args: &[&str]| {
//!     Command::new("git").arg("-C").arg(&project).args(args)
//!         .env("GIT_AUTHOR_NAME", "Alice").env("GIT_AUTHOR_EMAIL", "alice@example.com")
//!         .env("GIT_COMMITTER_NAME", "Alice").env("GIT_COMMITTER_EMAIL", "alice@example.com")
//!         .output()
//! };
//! std::fs::create_dir(&project)?;
//! git(&["init", "--quiet", "--initial-branch=main"])?;
//! git(&["commit", "--quiet", "--allow-empty", "-m", "First"])?;
//!
//! let store = Store::open(&dir.path().join("state.git"))?;
//! let repo = LocalRepo::new("me/project".parse()?, &project)?;
//! let bridge = LocalBridge::new(store.clone(), vec![repo]);
//! let report = bridge.sync_once().await?;
//! assert_eq!(report.added, 1);
//! assert_eq!(bridge.sync_once().await?.commit, None, "nothing changed");
//!
//! let metadata = store.branch(&BranchName::new("github-metadata")?);
//! let head = metadata.head().await?.expect("the bridge committed");
//! assert_eq!(head.message(), "Tracking new branch main");
//! let file = head.tree().read_file(&StorePath::new("me/project/ref/heads/main/head")?)?;
//! assert_eq!(file.map(|bytes| bytes.len()), Some(41), "40 hex digits and a newline");
//! # Ok(())
//! # }
//! ```

mod error;
mod mirror;
mod repo;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use datakit_ci_health::Health;
use datakit_ci_store::{Branch, BranchName, Commit, CommitId, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use error::Error;
pub use repo::LocalRepo;

use crate::mirror::{ChangeKind, Mirror, RepoChanges};
use crate::watch::RefWatcher;

/// The store branch the bridge writes.
const METADATA_BRANCH: &str = "github-metadata";

/// How long [`LocalBridge::run`] waits after a file-system event for more of them (a `git commit`
/// or `git fetch` touches several files within a millisecond or two) before syncing. Short,
/// because it adds to every push-to-status latency; a sync that runs before the last ref moved
/// is followed by another (events that arrive during a sync wake the loop again).
const DEBOUNCE: Duration = Duration::from_millis(2);

/// The least time between the starts of two syncs woken by file-system events. A sync lists
/// every ref (`git for-each-ref`) and may commit the metadata, so its cost grows with the
/// repository; a burst of ref changes (a fetch or push of hundreds of branches, each its own lock
/// file and rename) woke one sync per [`DEBOUNCE`]: 15 metadata commits for 40 branches made a
/// few milliseconds apart. A change after a quiet spell is still synced after [`DEBOUNCE`] only.
const MIN_SYNC_GAP: Duration = Duration::from_millis(50);

/// The default interval of the polling fallback.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Every this many polls, [`LocalBridge::run`] syncs even if no ref file seems to have changed
/// (a file system with coarse modification times can hide a change from the fingerprint).
const FULL_SYNC_EVERY: u32 = 20;

/// The health key of the bridge's failing syncs.
pub const HEALTH_KEY: &str = "local repositories";

/// Mirrors local repositories into the `github-metadata` branch of a store.
///
/// It remembers what it last wrote (read once from the branch, then kept up to date), so a sync
/// costs one `git for-each-ref` per repository and a comparison in memory; the store is read again
/// only if someone else changed the bridge's files.
pub struct LocalBridge {
    store: Store,
    branch: Branch,
    repos: Vec<LocalRepo>,
    poll_interval: Duration,
    file_events: bool,
    mirror: tokio::sync::Mutex<Option<Mirror>>,
    health: Health,
}

impl std::fmt::Debug for LocalBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBridge")
            .field("store", &self.store)
            .field("repos", &self.repos)
            .field("poll_interval", &self.poll_interval)
            .field("file_events", &self.file_events)
            .finish()
    }
}

/// What one sync changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The commit made on `github-metadata`, or `None` if nothing changed.
    pub commit: Option<CommitId>,
    /// Refs and PRs that appeared.
    pub added: usize,
    /// Refs and PRs whose files changed.
    pub updated: usize,
    /// Refs and PRs that disappeared.
    pub removed: usize,
    /// Refs left out because the metadata layout cannot hold them (see the crate docs).
    pub skipped: usize,
}

impl SyncReport {
    /// Whether the sync changed nothing.
    pub fn is_unchanged(&self) -> bool {
        self.commit.is_none()
    }
}

impl LocalBridge {
    /// A bridge mirroring `repos` into `store`. Nothing is read until the first sync.
    pub fn new(store: Store, repos: Vec<LocalRepo>) -> Self {
        let name =
            BranchName::new(METADATA_BRANCH).expect("\"github-metadata\" is a valid branch name");
        LocalBridge {
            branch: store.branch(&name),
            store,
            repos,
            poll_interval: DEFAULT_POLL_INTERVAL,
            file_events: true,
            mirror: tokio::sync::Mutex::new(None),
            health: Health::default(),
        }
    }

    /// Reports failing syncs (e.g. a repository that disappeared) on `health`, under the key
    /// [`HEALTH_KEY`], until a sync succeeds again.
    #[must_use]
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Sets how often [`run`](Self::run) checks the repositories for changes file-system
    /// notifications missed (default 500 ms). A check costs a few `stat`s per ref file; a sync
    /// runs only when they changed.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Makes [`run`](Self::run) rely on polling only, without file-system notifications (for file
    /// systems that do not deliver them, such as network mounts).
    #[must_use]
    pub fn polling_only(mut self) -> Self {
        self.file_events = false;
        self
    }

    /// The repositories mirrored.
    pub fn repos(&self) -> &[LocalRepo] {
        &self.repos
    }

    /// Reads the refs of every repository and mirrors them into `github-metadata` in one
    /// transaction, committing only when something changed. Returns what changed.
    ///
    /// Fails with [`Error::DuplicateRepo`] if two repositories share an id, and with the Git or
    /// store error if reading a repository or committing fails (nothing is written then).
    pub async fn sync_once(&self) -> Result<SyncReport, Error> {
        self.check_repos()?;
        let mut guard = self.mirror.lock().await;
        let mut states = Vec::with_capacity(self.repos.len());
        for repo in &self.repos {
            states.push(repo.read().await?);
        }

        let transaction = self.branch.transaction().await?;
        let ids: Vec<_> = self.repos.iter().map(|repo| repo.id().clone()).collect();
        let previous = guard.take();
        let up_to_date = previous
            .as_ref()
            .is_some_and(|mirror| mirror.seen().map(Commit::id) == transaction.parent());
        // On failure the mirror stays dropped, so the next sync reads the branch again.
        let (mut mirror, transaction) = if up_to_date {
            (previous.expect("checked above"), transaction)
        } else {
            let head = match transaction.parent() {
                Some(id) => Some(self.store.commit(id).await?),
                None => None,
            };
            let ids = ids.clone();
            tokio::task::spawn_blocking(move || {
                let mut transaction = transaction;
                let mirror = match previous {
                    Some(mut mirror) => mirror
                        .refresh(head, &mut transaction, &ids)
                        .map(|()| mirror),
                    None => Mirror::load(head, &mut transaction, &ids),
                };
                mirror.map(|mirror| (mirror, transaction))
            })
            .await??
        };

        let changes: Vec<RepoChanges> = ids
            .iter()
            .zip(states)
            .map(|(id, state)| mirror.diff(id, state))
            .collect();
        let mut report = SyncReport {
            skipped: changes.iter().map(|c| c.skipped).sum(),
            ..SyncReport::default()
        };
        for change in changes.iter().flat_map(|c| &c.changes) {
            match change.kind() {
                ChangeKind::Added => report.added += 1,
                ChangeKind::Updated => report.updated += 1,
                ChangeKind::Removed => report.removed += 1,
            }
        }
        if changes.iter().all(|c| c.changes.is_empty()) {
            transaction.abort();
            *guard = Some(mirror);
            return Ok(report);
        }

        let message = mirror::message(&changes);
        let (transaction, changes) = tokio::task::spawn_blocking(move || {
            let mut transaction = transaction;
            mirror::apply(&mut transaction, &changes).map(|()| (transaction, changes))
        })
        .await??;
        let id = transaction.commit(&message).await?;
        let commit = self.store.commit(id).await?;
        mirror.committed(&changes, commit);
        *guard = Some(mirror);
        report.commit = Some(id);
        tracing::info!(
            commit = %id,
            added = report.added,
            updated = report.updated,
            removed = report.removed,
            "mirrored local refs"
        );
        Ok(report)
    }

    /// Syncs once, then again after every change to the repositories' refs — file-system
    /// notifications on each Git directory (`refs/`, `packed-refs`, `HEAD`), debounced, with a
    /// polling fallback — until `cancel` fires.
    ///
    /// A failing sync is logged with `tracing::warn!` and retried at the next event or poll; it
    /// never ends the loop. Returns an error only for a configuration that can never work
    /// ([`Error::DuplicateRepo`]).
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        self.check_repos()?;
        let git_dirs: Vec<PathBuf> = self
            .repos
            .iter()
            .map(|repo| repo.git_dir().to_owned())
            .collect();
        let (wake, mut woken) = mpsc::channel(1);
        let _watcher = if self.file_events {
            match RefWatcher::start(&git_dirs, wake) {
                Ok(watcher) => Some(watcher),
                Err(error) => {
                    tracing::warn!(%error, "cannot watch the repositories for changes; polling only");
                    None
                }
            }
        } else {
            None
        };
        let mut interval = tokio::time::interval(self.poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fingerprints: Option<Vec<u64>> = None;
        let mut polls_since_sync = 0;
        let mut sync_needed = true;
        let mut last_sync = tokio::time::Instant::now();
        loop {
            if sync_needed {
                polls_since_sync = 0;
                last_sync = tokio::time::Instant::now();
                let before = fingerprints_of(&git_dirs).await?;
                match self.sync_once().await {
                    Ok(_) => {
                        fingerprints = Some(before);
                        self.health.resolve(HEALTH_KEY);
                    }
                    Err(error) => {
                        tracing::warn!(error = %ErrorChain(&error), "local repository sync failed; retrying at the next change or poll");
                        self.health
                            .report(HEALTH_KEY, format!("{}; retrying", ErrorChain(&error)));
                        // Force a sync at the next poll.
                        fingerprints = None;
                    }
                }
            }
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                Some(()) = woken.recv() => {
                    let settled = tokio::time::Instant::now() + DEBOUNCE;
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep_until(settled.max(last_sync + MIN_SYNC_GAP)) => {}
                    }
                    while woken.try_recv().is_ok() {}
                    sync_needed = true;
                }
                _ = interval.tick() => {
                    polls_since_sync += 1;
                    let now = fingerprints_of(&git_dirs).await?;
                    sync_needed = fingerprints.as_ref() != Some(&now) || polls_since_sync >= FULL_SYNC_EVERY;
                }
            }
        }
    }

    fn check_repos(&self) -> Result<(), Error> {
        for (index, repo) in self.repos.iter().enumerate() {
            if let Some(first) = self.repos[..index].iter().find(|r| r.id() == repo.id()) {
                return Err(Error::DuplicateRepo {
                    id: repo.id().clone(),
                    first: first.path().to_owned(),
                    second: repo.path().to_owned(),
                });
            }
        }
        Ok(())
    }
}

async fn fingerprints_of(git_dirs: &[PathBuf]) -> Result<Vec<u64>, Error> {
    let git_dirs = git_dirs.to_vec();
    Ok(tokio::task::spawn_blocking(move || {
        git_dirs.iter().map(|dir| watch::fingerprint(dir)).collect()
    })
    .await?)
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
