//! The engine: tracks the targets of every project in the metadata, runs one evaluation task per
//! job, and flushes statuses and history to the store.
//!
//! Evaluation is incremental. Each metadata commit is compared with the previous one
//! (`Snapshot::changed_files`, which skips identical subtrees); only targets whose files changed
//! are re-read, and only jobs whose recorded dependencies cover a changed path are woken (an index
//! from path prefix to jobs). A job's task re-evaluates its term when woken, when a `ready` future
//! of its pending parts resolves, or after a rebuild; a superseded evaluation's watches are
//! dropped with its `Dependencies`. Nothing here walks every job of every target per event.
//!
//! The engine's own status commits come back through the same watch; their changed paths are
//! known (the engine wrote them), so they are not diffed again: the metadata's `commit/` tree holds
//! one directory per commit ever reported, and diffing it costs as much as there are commits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus_client::registry::Registry;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use datakit_ci_health::Health;
use datakit_ci_history::History;
use datakit_ci_store::{Branch, BranchName, Commit, CommitId, Snapshot, Store, StorePath};
use datakit_ci_term::metadata::{MetadataError, MetadataReader};
use datakit_ci_term::{CommitHash, JobOutput, LogLeaf, RefName, RepoId, Target, TargetId, Term};

use crate::config::{EngineConfig, Plan, Project};
use crate::metrics::{EngineMetrics, TypeLabel};
use crate::status::{self, ReportedStatus};

mod approval;
mod flush;
mod job;
mod plan;
mod queries;
mod view;

use flush::error_chain;

/// The branch the forge bridges and the engine share.
pub const METADATA_BRANCH: &str = "github-metadata";

/// An engine operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error("state store error")]
    Store(#[from] datakit_ci_store::Error),
    /// The metadata branch could not be read.
    #[error("cannot read the metadata")]
    Metadata(#[from] datakit_ci_term::metadata::MetadataError),
    /// A background task of the engine failed.
    #[error("engine task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The history could not be read or written.
    #[error("history error")]
    History(#[from] datakit_ci_history::Error),
    /// A rebuild was requested for a branch no job uses.
    #[error("No job depends on {branch:?}, so can't rebuild anything")]
    NothingToRebuild {
        /// The cache branch.
        branch: String,
    },
    /// An approval was asked for a job that cannot take one.
    #[error("cannot approve job {job:?} of {target}: {reason}")]
    NotApprovable {
        /// The target.
        target: String,
        /// The job.
        job: String,
        /// Why not.
        reason: &'static str,
    },
    /// Marking a cache branch for rebuild failed.
    #[error("rebuild of {branch:?} failed: {message}")]
    Rebuild {
        /// The cache branch.
        branch: String,
        /// The cache's message.
        message: String,
    },
}

/// A status written to the metadata, as announced to subscribers (the CLI prints these); also,
/// for a target that appears or moves while the engine runs, the status it starts with when the
/// metadata already has it (e.g. a new branch on a commit already tested).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// The target.
    pub target: TargetId,
    /// The test's name.
    pub job: String,
    /// The commit the status is about.
    pub commit: CommitHash,
    /// `pending`, `success` or `failure`.
    pub state: &'static str,
    /// The description.
    pub description: String,
}

/// One job as seen from outside.
#[derive(Clone, Debug)]
pub struct JobView {
    /// The test's name.
    pub name: String,
    /// Its latest output for the target's current head, if evaluated yet.
    pub output: Option<JobOutput>,
    /// The jobs it waits for, for a job of a project's plan ([`PlannedJob::needs`](crate::PlannedJob)).
    pub needs: Vec<String>,
}

/// A target whose metadata is malformed (e.g. a PR whose `head` is not a commit hash): it is not
/// tested until the metadata is corrected, and shown with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableTarget {
    /// The target.
    pub id: TargetId,
    /// What is wrong with its metadata.
    pub reason: String,
}

/// One target as seen from outside.
#[derive(Clone, Debug)]
pub struct TargetView {
    /// The target's current metadata.
    pub target: Target,
    /// Its jobs, by name.
    pub jobs: Vec<JobView>,
}

type JobKey = (TargetId, String);

/// The CI engine. Cheap to clone; [`Engine::run`] drives it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    metadata: Branch,
    history: History,
    web_ui: String,
    projects: BTreeMap<RepoId, Project>,
    canaries: Option<BTreeSet<TargetId>>,
    metrics: EngineMetrics,
    state: Mutex<State>,
    flush_wanted: Notify,
    flush_lock: tokio::sync::Mutex<()>,
    /// Commit-index entries were queued (`flush::index_loop` writes them).
    index_wanted: Notify,
    events: broadcast::Sender<StatusChange>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Where the engine reports problems it retries (failing store writes), for the dashboard.
    health: Health,
}

#[derive(Default)]
struct State {
    /// The newest metadata commit: what job evaluations read.
    snapshot: Option<Commit>,
    /// The newest metadata commit whose target changes were all applied: the next head is
    /// diffed against it, so that changes a failed `apply_head` did not apply are applied by
    /// the next attempt (or with the next head).
    applied: Option<Commit>,
    /// Targets whose metadata cannot be read, with the reason: shown, not tested.
    unreadable: BTreeMap<TargetId, String>,
    targets: BTreeMap<TargetId, TargetState>,
    /// Metadata path prefix → jobs whose last evaluation read below it.
    index: HashMap<StorePath, HashSet<JobKey>>,
    /// Targets with outputs not yet recorded in history, or statuses not yet written.
    dirty: BTreeSet<TargetId>,
    /// The engine's latest status commits and the paths each wrote, newest last, so that
    /// `apply_head` need not diff them (see the module docs).
    own_commits: VecDeque<(CommitId, Vec<StorePath>)>,
}

/// The health key of failures to apply the metadata.
const HEALTH_METADATA: &str = "metadata";
/// The health key of failures to write statuses.
pub(crate) const HEALTH_STATUSES: &str = "statuses";
/// The health key of failures to record history.
pub(crate) const HEALTH_HISTORY: &str = "history";
/// The health key of failures to write the commit index.
pub(crate) const HEALTH_INDEX: &str = "commit index";

/// How long the builds of a removed target keep running before they are stopped as unneeded:
/// long enough for the jobs of a target that appeared in the same metadata commit (a renamed
/// branch) to be evaluated and show them. While some job is not yet evaluated for its target's
/// head, the check waits again, at most [`ABANDON_ROUNDS`] times in all.
const ABANDON_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How many times the check for unneeded builds waits [`ABANDON_GRACE`] at most.
const ABANDON_ROUNDS: u32 = 10;

/// How many of the engine's own status commits are remembered: more than can be committed
/// while one `apply_head` runs; an older one is diffed like any other commit.
const OWN_COMMITS_KEPT: usize = 16;

struct TargetState {
    target: Target,
    jobs: BTreeMap<String, JobState>,
    history_dirty: bool,
    /// When the target appeared or its head last moved: statuses for a new head wait (a
    /// little) for all its jobs, so that they share one metadata commit.
    head_since: Instant,
    /// Set while recording the target's history fails: when to try again, and how many
    /// attempts failed in a row (see `flush::retry_delay`).
    history_retry: Option<(Instant, u32)>,
}

/// What a job evaluates.
#[derive(Clone)]
enum JobTerm {
    /// A test, or a job of a plan.
    Test(Term<String>),
    /// A project's plan: its value becomes the target's planned jobs.
    Plan(Term<Plan>),
}

struct JobState {
    term: JobTerm,
    /// For a job of a plan: the head it was planned for (it is not evaluated for another) and
    /// the jobs it waits for.
    planned: Option<(CommitHash, Vec<String>)>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    output: Option<JobOutput>,
    /// The head `output` was computed for: after a head moves, the old output stays visible
    /// until the job is evaluated again, but it must not be reported for the new head.
    output_head: Option<CommitHash>,
    /// What the metadata says for (head, job), as far as the engine knows.
    reported: Option<ReportedStatus>,
    deps: Vec<StorePath>,
    /// The target appeared or moved while the engine ran (not at its start): its first status
    /// for the head is announced to subscribers even if the metadata already has it (a new
    /// branch on a tested commit), so that the CLI shows what the new target starts with.
    announce: bool,
}

impl JobState {
    /// The output, if it was computed for `head`.
    fn output_for(&self, head: &CommitHash) -> Option<&JobOutput> {
        self.output
            .as_ref()
            .filter(|_| self.output_head.as_ref() == Some(head))
    }

    /// Whether this is a job of a plan made for another head than `head`.
    fn is_stale(&self, head: &CommitHash) -> bool {
        self.planned
            .as_ref()
            .is_some_and(|(planned_for, _)| planned_for != head)
    }

    /// Whether the metadata's status for `head` differs from the job's result for it.
    fn wants_status_write(&self, head: &CommitHash) -> bool {
        self.output_for(head).is_some_and(|output| {
            self.reported.as_ref() != Some(&ReportedStatus::of_result(&output.result))
        })
    }
}

/// What a job's next evaluation needs.
struct JobInputs {
    term: JobTerm,
    tree: Snapshot,
    head: CommitHash,
    /// A job of a plan for another head than the target's: not evaluated until the plan for
    /// the new head replaces or removes it.
    stale: bool,
}

/// A status to write, collected under the lock and written outside it.
struct StatusWrite {
    target: TargetId,
    job: String,
    head: CommitHash,
    status: ReportedStatus,
}

impl State {
    /// The paths written by the engine's own commit `id`, if it is a recent one (forgotten then).
    fn take_own_commit(&mut self, id: CommitId) -> Option<Vec<StorePath>> {
        let position = self.own_commits.iter().position(|(own, _)| *own == id)?;
        self.own_commits.remove(position).map(|(_, paths)| paths)
    }

    /// Remembers that the engine's commit `id` changed `paths`.
    fn remember_own_commit(&mut self, id: CommitId, paths: Vec<StorePath>) {
        if self.own_commits.len() == OWN_COMMITS_KEPT {
            self.own_commits.pop_front();
        }
        self.own_commits.push_back((id, paths));
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // Updates under this lock are small and complete; a panic cannot leave them half-done.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// An engine for `config` on `store`, with its metrics registered on `registry`.
    pub fn new(config: EngineConfig, store: Store, registry: &mut Registry) -> Self {
        Engine::with_health(config, store, registry, Health::default())
    }

    /// [`Engine::new`], reporting the problems it retries on `health` (shared with the other
    /// parts of the program, so that the dashboard shows them all).
    pub fn with_health(
        config: EngineConfig,
        store: Store,
        registry: &mut Registry,
        health: Health,
    ) -> Self {
        let projects = config
            .projects
            .into_iter()
            .map(|p| (p.id().clone(), p))
            .collect();
        let canaries = (!config.canaries.is_empty()).then(|| config.canaries.into_iter().collect());
        let metadata = store.branch(&BranchName::new(METADATA_BRANCH).expect("constant is valid"));
        Engine {
            inner: Arc::new(Inner {
                history: History::new(store.clone()),
                store,
                metadata,
                web_ui: config.web_ui,
                projects,
                canaries,
                metrics: EngineMetrics::new(registry),
                state: Mutex::new(State::default()),
                flush_wanted: Notify::new(),
                flush_lock: tokio::sync::Mutex::new(()),
                index_wanted: Notify::new(),
                events: broadcast::channel(4096).0,
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                health,
            }),
        }
    }

    /// The problems the engine is retrying (keys `metadata`, `statuses`, `history`, `commit
    /// index`): shared with whatever shows them. Other parts of the application may report on it
    /// too, under keys of their own.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The targets' history.
    pub fn history(&self) -> &History {
        &self.inner.history
    }

    /// The configured projects.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.inner.projects.values()
    }

    /// Receives every status the engine writes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<StatusChange> {
        self.inner.events.subscribe()
    }

    /// The tracked targets, in order, with their jobs.
    pub fn targets(&self) -> Vec<TargetView> {
        let state = lock(&self.inner.state);
        state.targets.values().map(view).collect()
    }

    /// One tracked target, if present.
    pub fn target(&self, id: &TargetId) -> Option<TargetView> {
        lock(&self.inner.state).targets.get(id).map(view)
    }

    /// The tracked targets whose head is `commit` (in `repo`).
    pub fn targets_of_commit(&self, repo: &RepoId, commit: &CommitHash) -> Vec<TargetId> {
        let state = lock(&self.inner.state);
        state
            .targets
            .iter()
            .filter(|(id, t)| id.repo() == repo && t.target.head() == commit)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Runs the engine until `cancel` fires: writes the `.monitor` files, follows the metadata
    /// branch, and keeps every job evaluated and its status flushed. On cancellation, job
    /// evaluations stop, pending writes are flushed, and all tasks are awaited.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), Error> {
        self.enable_monitoring().await?;
        let flusher = tokio::spawn(self.clone().flush_loop());
        let index_stop = CancellationToken::new();
        let indexer = tokio::spawn(self.clone().index_loop(index_stop.clone()));
        let mut watch = self.inner.metadata.watch();
        let mut current = *watch.borrow_and_update();
        let result = async {
            loop {
                if let Some(head) = current {
                    self.inner.metrics.update_notifications.inc();
                    // A failure here (e.g. a store read error) must not stop the CI: retry until
                    // it works or a newer head arrives.
                    loop {
                        let Err(e) = self.apply_head(head).await else {
                            self.inner.health.resolve(HEALTH_METADATA);
                            break;
                        };
                        let error = error_chain(&e);
                        tracing::warn!(%head, %error, "cannot process metadata; retrying in 1s");
                        self.inner.health.report(
                            HEALTH_METADATA,
                            format!("cannot process the metadata: {error}; retrying"),
                        );
                        tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        }
                        if *watch.borrow() != Some(head) {
                            break;
                        }
                    }
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    changed = watch.changed() => {
                        if changed.is_err() {
                            return Ok(());
                        }
                        current = *watch.borrow_and_update();
                    }
                }
            }
        }
        .await;
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.flush_wanted.notify_one();
        if let Err(e) = flusher.await {
            tracing::error!(error = %e, "the flush task failed");
        }
        // After the last flush, so that the index gets its entries too.
        index_stop.cancel();
        if let Err(e) = indexer.await {
            tracing::error!(error = %e, "the commit-index task failed");
        }
        result
    }

    /// Marks every cached result stored on `branch` for rebuild and re-evaluates the jobs that
    /// use it.
    pub async fn rebuild(&self, branch: &BranchName) -> Result<(), Error> {
        let (triggers, wakes) = {
            let state = lock(&self.inner.state);
            let mut triggers = Vec::new();
            let mut wakes = Vec::new();
            for job in state.targets.values().flat_map(|t| t.jobs.values()) {
                let Some(output) = &job.output else { continue };
                for leaf in output.logs.leaves() {
                    if let LogLeaf::Saved(saved) = leaf
                        && saved.branch() == branch
                    {
                        triggers.extend(saved.request_rebuild());
                        wakes.push(Arc::clone(&job.wake));
                    }
                }
            }
            (triggers, wakes)
        };
        if wakes.is_empty() {
            return Err(Error::NothingToRebuild {
                branch: branch.to_string(),
            });
        }
        for trigger in triggers {
            trigger.fire().await.map_err(|message| Error::Rebuild {
                branch: branch.to_string(),
                message,
            })?;
        }
        for wake in wakes {
            wake.notify_one();
        }
        Ok(())
    }

    /// Records that `user` approved job `job` of `target` on its current head, in the metadata
    /// (`metadata::approval_path`), where the job's term reads it (`Term::approval`); returns
    /// that head. An approval already recorded is kept as it is (the first approver stays).
    ///
    /// On an untrusted pull request whose head is not approved yet, every job waits for that
    /// approval first, so approving any of its jobs approves the head
    /// ([`Engine::approve_pull_request`]) instead.
    pub async fn approve(
        &self,
        target: &TargetId,
        job: &str,
        user: &str,
    ) -> Result<CommitHash, Error> {
        let refuse = |reason| Error::NotApprovable {
            target: target.to_string(),
            job: job.to_owned(),
            reason,
        };
        let head = {
            let state = lock(&self.inner.state);
            let tracked = state
                .targets
                .get(target)
                .ok_or_else(|| refuse("the target is not tracked"))?;
            if !tracked.jobs.contains_key(job) {
                return Err(refuse("the target has no such job"));
            }
            tracked.target.head().clone()
        };
        if self.pull_request_waits(target)? {
            return self.approve_pull_request(target, user).await;
        }
        let path = datakit_ci_term::metadata::approval_path(target.repo(), &head, job)?;
        let message = format!("Approve {job} of {target} on {} ({user})", head.short(8));
        self.record_approval(&path, user, &message).await?;
        Ok(head)
    }

    async fn enable_monitoring(&self) -> Result<(), Error> {
        let mut transaction = self.inner.metadata.transaction().await?;
        for repo in self.inner.projects.keys() {
            let monitor = StorePath::new(format!("{repo}/.monitor"))?;
            if !transaction.exists(&monitor)? {
                transaction.create_file(&monitor, b"")?;
            }
        }
        if transaction.is_empty() {
            transaction.abort();
        } else {
            transaction.commit("Add .monitor files").await?;
        }
        Ok(())
    }

    /// Brings the tracked targets and jobs up to date with metadata commit `head`.
    ///
    /// A target whose metadata is malformed becomes an [`UnreadableTarget`] and the rest of the
    /// commit applies. Any other failure (the store's) leaves the applied commit unchanged, so
    /// that the next attempt diffs against it again and loses nothing.
    async fn apply_head(&self, head: CommitId) -> Result<(), Error> {
        let commit = self.inner.store.commit(head).await?;
        let (previous, known) = {
            let mut state = lock(&self.inner.state);
            state.snapshot = Some(commit.clone());
            let previous = state.applied.clone();
            let known = previous
                .as_ref()
                .filter(|previous| commit.parents() == [previous.id()])
                .and_then(|_| state.take_own_commit(commit.id()));
            (previous, known)
        };
        let new_tree = commit.tree();
        let engine = self.clone();
        let (changed, observed) = tokio::task::spawn_blocking(move || {
            engine.observe_targets(previous.as_ref().map(Commit::tree), &new_tree, known)
        })
        .await??;

        // Targets appeared, moved, vanished or became unreadable.
        for (id, observation) in observed {
            match observation {
                Observed::Present(target) => {
                    self.set_unreadable(&id, None);
                    self.upsert_target(target, &commit.tree()).await?;
                }
                Observed::Gone => {
                    self.set_unreadable(&id, None);
                    self.remove_target(&id);
                }
                Observed::Unreadable(reason) => {
                    tracing::warn!(target = %id, reason, "cannot read the target's metadata");
                    self.remove_target(&id);
                    self.set_unreadable(&id, Some(reason));
                }
            }
        }
        // Jobs that read a changed path.
        let mut state = lock(&self.inner.state);
        if let Some(changed) = changed {
            let mut woken = HashSet::new();
            for path in &changed {
                let mut prefix = Some(path.clone());
                while let Some(p) = prefix {
                    for key in state.index.get(&p).into_iter().flatten() {
                        if woken.insert(key.clone())
                            && let Some(job) =
                                state.targets.get(&key.0).and_then(|t| t.jobs.get(&key.1))
                        {
                            job.wake.notify_one();
                        }
                    }
                    prefix = p.parent();
                }
            }
        }
        state.applied = Some(commit);
        Ok(())
    }

    /// Records (`Some`) or clears (`None`) why `id`'s metadata cannot be read.
    fn set_unreadable(&self, id: &TargetId, reason: Option<String>) {
        let mut state = lock(&self.inner.state);
        match reason {
            Some(reason) => {
                state.unreadable.insert(id.clone(), reason);
            }
            None => {
                state.unreadable.remove(id);
            }
        }
    }

    /// The targets to re-read: every target of every project the first time, then only those
    /// whose files changed (`known`: the changes, when the engine made the commit itself; else
    /// they are diffed). Returns the changed paths and what was observed of each target.
    ///
    /// A malformed value makes its target [`Observed::Unreadable`]; only a store failure fails
    /// the whole observation.
    #[allow(clippy::type_complexity)]
    fn observe_targets(
        &self,
        previous: Option<Snapshot>,
        tree: &Snapshot,
        known: Option<Vec<StorePath>>,
    ) -> Result<(Option<Vec<StorePath>>, Vec<(TargetId, Observed)>), Error> {
        let reader = MetadataReader::new(tree);
        let Some(previous) = previous else {
            let mut observed = Vec::new();
            let mut present = BTreeSet::new();
            for repo in self.inner.projects.keys() {
                for id in reader.target_ids(repo)? {
                    if self.wanted(&id) {
                        let observation = observe(&reader, &id)?;
                        if !matches!(observation, Observed::Gone) {
                            present.insert(id.clone());
                        }
                        observed.push((id, observation));
                    }
                }
            }
            let gone = {
                let state = lock(&self.inner.state);
                state
                    .targets
                    .keys()
                    .chain(state.unreadable.keys())
                    .filter(|id| !present.contains(*id))
                    .cloned()
                    .collect::<BTreeSet<_>>()
            };
            observed.extend(gone.into_iter().map(|id| (id, Observed::Gone)));
            return Ok((None, observed));
        };
        let changed = match known {
            Some(changed) => changed,
            None => previous.changed_files(tree)?,
        };
        let candidates: BTreeSet<TargetId> = changed
            .iter()
            .filter_map(|path| self.target_of_path(path))
            .collect();
        let mut observed = Vec::new();
        for id in candidates {
            let observation = if self.wanted(&id) {
                observe(&reader, &id)?
            } else {
                Observed::Gone
            };
            observed.push((id, observation));
        }
        Ok((Some(changed), observed))
    }

    /// The target of a configured project that a metadata file belongs to, if any.
    fn target_of_path(&self, path: &StorePath) -> Option<TargetId> {
        let parts: Vec<&str> = path.components().collect();
        let [user, repo, kind, rest @ ..] = parts.as_slice() else {
            return None;
        };
        let repo = RepoId::new(user, repo).ok()?;
        if !self.inner.projects.contains_key(&repo) {
            return None;
        }
        match (*kind, rest) {
            ("pr", [number, _, ..]) => number.parse().ok().map(|n| TargetId::Pr(repo, n)),
            ("ref", [name @ .., "head"]) if !name.is_empty() => RefName::new(name.iter())
                .ok()
                .map(|name| TargetId::Ref(repo, name)),
            _ => None,
        }
    }

    fn wanted(&self, id: &TargetId) -> bool {
        self.inner.projects.contains_key(id.repo())
            && self
                .inner
                .canaries
                .as_ref()
                .is_none_or(|canaries| canaries.contains(id))
    }

    /// Starts tracking `target`, or updates it and wakes its jobs if it changed.
    async fn upsert_target(&self, target: Target, tree: &Snapshot) -> Result<(), Error> {
        let id = target.id();
        let reader = MetadataReader::new(tree);
        {
            let mut state = lock(&self.inner.state);
            let State { targets, dirty, .. } = &mut *state;
            if let Some(tracked) = targets.get_mut(&id) {
                if tracked.target == target {
                    return Ok(());
                }
                if tracked.target.head() != target.head() {
                    let reported = status::ReportedStatuses::read(tree, id.repo(), target.head());
                    for (name, job) in &mut tracked.jobs {
                        job.reported = reported.get(&reader, name);
                        job.announce = true;
                    }
                    // The history records the new source commit even if no output changes.
                    tracked.history_dirty = true;
                    tracked.head_since = Instant::now();
                    dirty.insert(id.clone());
                }
                tracked.target = target;
                // A planned job waits for the plan of the new head instead.
                for job in tracked.jobs.values().filter(|job| job.planned.is_none()) {
                    job.wake.notify_one();
                }
                return Ok(());
            }
        }
        let project = self
            .inner
            .projects
            .get(id.repo())
            .expect("only configured projects are observed");
        let tests = project
            .tests_for(&id)
            .into_iter()
            .map(|(name, term)| (name, JobTerm::Test(term)))
            .chain(
                project
                    .plan_for(&id)
                    .map(|(name, plan)| (name, JobTerm::Plan(plan))),
            );
        let mut jobs = BTreeMap::new();
        let mut spawn = Vec::new();
        let reported_statuses = status::ReportedStatuses::read(tree, id.repo(), target.head());
        // Targets found when the engine starts are not news (a restart prints nothing).
        let announce = lock(&self.inner.state).applied.is_some();
        for (name, term) in tests {
            let reported = reported_statuses.get(&reader, &name);
            let job = self.new_job(term, None, reported, announce);
            spawn.push((
                (id.clone(), name.clone()),
                Arc::clone(&job.wake),
                job.cancel.clone(),
            ));
            jobs.insert(name, job);
        }
        tracing::info!(target = %id, jobs = jobs.len(), "tracking new target");
        {
            let mut state = lock(&self.inner.state);
            state.targets.insert(
                id,
                TargetState {
                    target,
                    jobs,
                    history_dirty: false,
                    head_since: Instant::now(),
                    history_retry: None,
                },
            );
            self.update_gauges(&state);
        }
        for (key, wake, cancel) in spawn {
            self.inner
                .tasks
                .spawn(self.clone().run_job(key, wake, cancel));
        }
        Ok(())
    }

    /// Stops tracking `id`: its evaluations stop, and builds only it was showing are abandoned
    /// (see [`LiveLog::abandon`](datakit_ci_log::LiveLog::abandon): not a result) unless a
    /// target shows them again after [`ABANDON_GRACE`], once every job is evaluated (a renamed
    /// branch, or the same commit pushed again).
    fn remove_target(&self, id: &TargetId) {
        let mut state = lock(&self.inner.state);
        let Some(removed) = state.targets.remove(id) else {
            return;
        };
        tracing::info!(target = %id, "Removing closed target");
        state.dirty.remove(id);
        let mut unneeded = Vec::new();
        for (name, job) in removed.jobs {
            job.cancel.cancel();
            let key = (id.clone(), name);
            for path in &job.deps {
                if let Some(keys) = state.index.get_mut(path) {
                    keys.remove(&key);
                }
            }
            unneeded.extend(job.output.iter().flat_map(live_branches));
        }
        self.update_gauges(&state);
        drop(state);
        if unneeded.is_empty() {
            return;
        }
        let engine = self.clone();
        self.inner.tasks.spawn(async move {
            for round in 1..=ABANDON_ROUNDS {
                tokio::select! {
                    () = engine.inner.shutdown.cancelled() => return,
                    () = tokio::time::sleep(ABANDON_GRACE) => {}
                }
                // A job not yet evaluated for its target's head may be about to show the build.
                if round == ABANDON_ROUNDS || engine.all_jobs_evaluated() {
                    engine.abandon_unneeded(unneeded);
                    return;
                }
            }
        });
    }

    /// Whether every job of every tracked target has an output for its target's head.
    fn all_jobs_evaluated(&self) -> bool {
        let state = lock(&self.inner.state);
        state.targets.values().all(|target| {
            target.jobs.values().all(|job| {
                job.output_for(target.target.head()).is_some() || job.is_stale(target.target.head())
            })
        })
    }

    /// Abandons the builds of `logs` that no tracked job shows.
    fn abandon_unneeded(&self, logs: Vec<datakit_ci_log::LiveLog>) {
        let still_shown: HashSet<String> = {
            let state = lock(&self.inner.state);
            state
                .targets
                .values()
                .flat_map(|t| t.jobs.values())
                .filter_map(|j| j.output.as_ref())
                .flat_map(|o| live_branches(o).into_iter().map(|l| l.branch().to_owned()))
                .collect()
        };
        for log in logs {
            if !still_shown.contains(log.branch())
                && log.can_cancel()
                && let Err(e) = log.abandon()
            {
                tracing::warn!(branch = log.branch(), error = %e, "cannot stop build");
            }
        }
    }

    fn update_gauges(&self, state: &State) {
        let (mut prs, mut branches, mut tags) = (0, 0, 0);
        for id in state.targets.keys() {
            match id {
                TargetId::Pr(..) => prs += 1,
                TargetId::Ref(_, name) if name.is_tag() => tags += 1,
                TargetId::Ref(..) => branches += 1,
            }
        }
        let gauges = &self.inner.metrics.active_targets;
        gauges.get_or_create(&TypeLabel { r#type: "pr" }).set(prs);
        gauges
            .get_or_create(&TypeLabel { r#type: "branch" })
            .set(branches);
        gauges.get_or_create(&TypeLabel { r#type: "tag" }).set(tags);
    }

    fn job_inputs(&self, key: &JobKey) -> Option<JobInputs> {
        let state = lock(&self.inner.state);
        let target = state.targets.get(&key.0)?;
        let job = target.jobs.get(&key.1)?;
        let head = target.target.head();
        Some(JobInputs {
            term: job.term.clone(),
            tree: state.snapshot.as_ref()?.tree(),
            head: head.clone(),
            stale: job
                .planned
                .as_ref()
                .is_some_and(|(planned_for, _)| planned_for != head),
        })
    }
}

/// What the metadata says of one target.
enum Observed {
    /// Present and well-formed.
    Present(Target),
    /// Not in the metadata (or not wanted).
    Gone,
    /// Present but malformed: the reason.
    Unreadable(String),
}

/// Reads `id` from the metadata; a malformed value is [`Observed::Unreadable`], a store failure
/// an error.
fn observe(reader: &MetadataReader<'_>, id: &TargetId) -> Result<Observed, Error> {
    match reader.target(id) {
        Ok(Some(target)) => Ok(Observed::Present(target)),
        Ok(None) => Ok(Observed::Gone),
        Err(MetadataError::Invalid { path, problem }) => Ok(Observed::Unreadable(format!(
            "invalid metadata at {path:?}: {problem}"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn view(target: &TargetState) -> TargetView {
    TargetView {
        target: target.target.clone(),
        jobs: target
            .jobs
            .iter()
            .map(|(name, job)| JobView {
                name: name.clone(),
                output: job.output.clone(),
                needs: job
                    .planned
                    .as_ref()
                    .map(|(_, needs)| needs.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

fn live_branches(output: &JobOutput) -> Vec<datakit_ci_log::LiveLog> {
    output
        .logs
        .leaves()
        .into_iter()
        .filter_map(|leaf| match leaf {
            LogLeaf::Live(log) => Some(log.clone()),
            LogLeaf::Saved(_) => None,
        })
        .collect()
}
