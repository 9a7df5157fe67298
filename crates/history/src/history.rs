//! [`History`]: the per-target cache of status-branch states, recording new states (spec §3.8.3),
//! the commit index (§3.8.3 step 5, batched) and the builds of a source commit (§3.8.4).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use datakit_ci_store::{BranchName, CommitId, Store, StorePath, Transaction};
use datakit_ci_term::{CommitHash, JobOutput, RepoId, TargetId};

use crate::Error;
use crate::names::{
    TARGET_FILE, full_name_if_shortened, is_shortened, parse_shortened, parse_status_branch,
    parse_target_sub, status_branch, target_sub,
};
use crate::state::{self, HistoryState, METADATA_COMMIT, SOURCE_COMMIT};

/// The branch holding the commit index.
const COMMIT_INDEX: &str = "commit-index";

/// The name of the branch holding the commit index: `commit-index`.
pub fn commit_index_branch() -> BranchName {
    BranchName::new(COMMIT_INDEX).expect("a valid constant branch name")
}

/// The histories of all targets, kept on their status branches (see the [crate] docs).
///
/// Cheap to clone; clones share one cache. The cache has an entry per target, made on first use,
/// which loads the head of the target's status branch once and is never evicted: after that,
/// [`latest`](Self::latest) and [`record`](Self::record) compare in memory and only write changes.
/// Everything that writes status branches must go through one `History` per store.
#[derive(Clone)]
pub struct History {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    entries: Mutex<HashMap<TargetId, Arc<Entry>>>,
    /// Commit-index entries not yet committed (see [`History::queue_index`]).
    index_queue: Mutex<IndexQueue>,
    /// Serialises commits to the commit index, so that concurrent writers coalesce.
    index_write: tokio::sync::Mutex<()>,
}

/// One commit-index entry: target, source commit, status-branch commit.
type IndexEntry = (TargetId, CommitHash, CommitId);

/// Commit-index entries known in memory but not yet in the `commit-index` branch. Readers
/// ([`History::builds_of_commit`]) see them at once, so writing the index late loses nothing
/// for them.
#[derive(Default)]
struct IndexQueue {
    /// Waiting for the next index commit, oldest first.
    queued: Vec<IndexEntry>,
    /// Taken by the index commit now being written; they leave memory once it succeeded.
    in_flight: Vec<IndexEntry>,
}

impl IndexQueue {
    /// The not-yet-committed entries for source commit `hash` of `repo`, oldest first.
    fn entries_for(&self, repo: &RepoId, hash: &CommitHash) -> Vec<(TargetId, CommitId)> {
        self.in_flight
            .iter()
            .chain(&self.queued)
            .filter(|(target, source, _)| target.repo() == repo && source == hash)
            .map(|(target, _, status)| (target.clone(), *status))
            .collect()
    }
}

/// The cache entry of one target.
struct Entry {
    branch: BranchName,
    /// The branch's full name when `branch` is shortened, written to its [`TARGET_FILE`].
    full_name: Option<String>,
    /// Serialises the loading of the branch head and the recording of new states.
    write_lock: tokio::sync::Mutex<()>,
    /// The state; only changed while `write_lock` is held, read at any time.
    slot: Mutex<Slot>,
}

enum Slot {
    Unloaded,
    /// The latest state (`None`: the branch does not exist and nothing was recorded).
    Loaded(Option<Recorded>),
}

struct Recorded {
    state: HistoryState,
    /// The JSON of each job in `state`, to compare new outputs without re-encoding old ones.
    json: BTreeMap<String, String>,
}

impl Recorded {
    fn new(state: HistoryState) -> Recorded {
        let json = state
            .jobs
            .iter()
            .map(|(name, output)| (name.clone(), output.to_json()))
            .collect();
        Recorded { state, json }
    }
}

impl Entry {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        // The slot is replaced in single assignments; a panic elsewhere cannot leave it torn.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached state, if loaded.
    fn loaded(&self) -> Option<Option<HistoryState>> {
        match &*self.slot() {
            Slot::Unloaded => None,
            Slot::Loaded(recorded) => Some(recorded.as_ref().map(|r| r.state.clone())),
        }
    }
}

/// One change of a job between two states.
enum Change {
    Write { json: String, description: String },
    Delete,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl History {
    /// A history kept in `store`, with an empty cache.
    pub fn new(store: Store) -> Self {
        History {
            inner: Arc::new(Inner {
                store,
                entries: Mutex::new(HashMap::new()),
                index_queue: Mutex::new(IndexQueue::default()),
                index_write: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The store the history is kept in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The latest recorded state of `target`, or `None` if nothing was ever recorded.
    ///
    /// The first call for a target reads the head of its status branch (concurrent callers wait for
    /// that read); later calls answer from memory.
    pub async fn latest(&self, target: &TargetId) -> Result<Option<HistoryState>, Error> {
        let entry = self.entry(target);
        if let Some(state) = entry.loaded() {
            return Ok(state);
        }
        let _serialised = entry.write_lock.lock().await;
        self.ensure_loaded(&entry).await?;
        Ok(entry.loaded().flatten())
    }

    /// Reads the latest state of `target` again from its status branch, replacing what
    /// [`latest`](Self::latest) remembered, and returns it.
    ///
    /// Only for a store that something else writes: a replica that `git fetch` updates (the
    /// read-only web UI). A store this `History` writes is always up to date in memory.
    pub async fn reload(&self, target: &TargetId) -> Result<Option<HistoryState>, Error> {
        let entry = self.entry(target);
        let _serialised = entry.write_lock.lock().await;
        *entry.slot() = Slot::Unloaded;
        self.ensure_loaded(&entry).await?;
        Ok(entry.loaded().flatten())
    }

    /// Records `jobs` as the state of `target` for `source_commit`, computed from the metadata commit
    /// `metadata_commit` (spec §3.8.3 steps 1–4). Calls for one target are serialised.
    ///
    /// Outputs are compared by their JSON ([`JobOutput::to_json`]) with the latest state. If no job
    /// was added, changed or removed and the source commit is the same, nothing is written (the
    /// in-memory outputs are still replaced, to pick up live logs and rebuild triggers) and the
    /// result is `None`. Otherwise one commit on the target's status branch writes
    /// `source-commit`, `metadata-commit` and each new or changed `job/<name>/output`, removes
    /// `job/<name>` of each removed job, and the result is the new commit. Its message is
    /// `<name> -> <description>` or `Remove old job <name>` for a single change,
    /// `<N> updates (<last>, ...)` followed by a blank line and all messages (most recent first) for
    /// several, and `Update` when only the source commit changed.
    ///
    /// The commit index is not written here: pass the result to [`index`](Self::index), which
    /// batches many targets into one commit.
    ///
    /// Fails with [`Error::InvalidJobName`] for a new or changed job whose name cannot be a file
    /// name (contains `/`, is empty, `.`, `..`, ...); nothing is written or cached then.
    pub async fn record(
        &self,
        target: &TargetId,
        source_commit: &CommitHash,
        metadata_commit: CommitId,
        jobs: &BTreeMap<String, JobOutput>,
    ) -> Result<Option<CommitId>, Error> {
        let entry = self.entry(target);
        let _serialised = entry.write_lock.lock().await;
        self.ensure_loaded(&entry).await?;

        let json: BTreeMap<String, String> = jobs
            .iter()
            .map(|(name, output)| (name.clone(), output.to_json()))
            .collect();
        let (patch, same_source) = {
            let slot = entry.slot();
            let old = match &*slot {
                Slot::Loaded(old) => old.as_ref(),
                Slot::Unloaded => unreachable!("ensure_loaded just loaded the entry"),
            };
            let patch = diff(old.map(|old| &old.json), &json, jobs);
            let same_source =
                old.is_some_and(|old| old.state.source_commit.as_ref() == Some(source_commit));
            (patch, same_source)
        };

        if patch.is_empty() && same_source {
            if let Slot::Loaded(Some(old)) = &mut *entry.slot() {
                old.state.jobs = jobs.clone();
                old.json = json;
            }
            return Ok(None);
        }

        let branch = self.inner.store.branch(&entry.branch);
        let write = Error::write(&entry.branch);
        let mut transaction = branch.transaction().await.map_err(write)?;
        let parent = transaction.parent();
        let messages = apply(
            &mut transaction,
            &entry.branch,
            entry.full_name.as_deref(),
            source_commit,
            metadata_commit,
            &patch,
        )?;
        let message = commit_message(&messages);
        let id = transaction
            .commit(&message)
            .await
            .map_err(Error::write(&entry.branch))?;

        let state = HistoryState {
            commit: Some(id),
            parents: parent.into_iter().collect(),
            source_commit: Some(source_commit.clone()),
            metadata_commit: Some(metadata_commit),
            jobs: jobs.clone(),
        };
        *entry.slot() = Slot::Loaded(Some(Recorded { state, json }));
        Ok(Some(id))
    }

    /// Writes commit-index entries (spec §3.8.3 step 5): for each `(target, source, status)`, file
    /// `<user>/<repo>/commit/<source>/<sub(target)>` of branch `commit-index` gets the status-branch
    /// commit id `status` (no newline), replacing any previous value. Entries queued earlier with
    /// [`queue_index`](Self::queue_index) and not yet written go into the same commit; when this
    /// returns `Ok`, all of them are in the branch.
    ///
    /// **Deviation** (spec §9 item 15): all entries go into *one* commit, not one commit per status
    /// commit, so recording 10,000 targets makes one index commit. Its message is
    /// `Update <sub>:<source> -> <status>` for one entry, and for several
    /// `<N> index updates`, a blank line, then those lines in the order given (queued entries
    /// first). Nothing is committed when there is no entry or every entry already has that value.
    ///
    /// Concurrent calls coalesce: a call whose entries another call already committed returns
    /// without writing. On failure the entries stay queued for the next call.
    pub async fn index(&self, entries: &[IndexEntry]) -> Result<(), Error> {
        self.queue_index(entries);
        let _serialised = self.inner.index_write.lock().await;
        let batch = {
            let mut queue = self.index_queue();
            debug_assert!(queue.in_flight.is_empty(), "only one index write at a time");
            queue.in_flight = std::mem::take(&mut queue.queued);
            queue.in_flight.clone()
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = self.write_index(&batch).await;
        let mut queue = self.index_queue();
        let written = std::mem::take(&mut queue.in_flight);
        if result.is_err() {
            // Keep them, oldest first, for the next call.
            written
                .into_iter()
                .rev()
                .for_each(|e| queue.queued.insert(0, e));
        }
        result
    }

    /// Adds commit-index entries to write with the next [`index`](Self::index) call, without
    /// writing anything now. [`builds_of_commit`](Self::builds_of_commit) sees them at once.
    ///
    /// The index's tree holds one directory per source commit of a repository, so each index
    /// commit rewrites a tree that grows with the number of builds; queueing lets a caller keep
    /// that write off its path (e.g. the engine reports statuses first) and lets one commit
    /// carry the entries of several batches.
    pub fn queue_index(&self, entries: &[IndexEntry]) {
        if !entries.is_empty() {
            self.index_queue().queued.extend_from_slice(entries);
        }
    }

    /// Whether commit-index entries are waiting for an [`index`](Self::index) call.
    pub fn index_pending(&self) -> bool {
        !self.index_queue().queued.is_empty()
    }

    fn index_queue(&self) -> MutexGuard<'_, IndexQueue> {
        // Every update of the queue is a single move or extend; a panic cannot leave it torn.
        self.inner
            .index_queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits `entries` (oldest first; a later entry for the same file wins) to the index.
    async fn write_index(&self, entries: &[IndexEntry]) -> Result<(), Error> {
        let name = commit_index_branch();
        let write = |source| Error::Write {
            branch: name.clone(),
            source,
        };
        let mut transaction = self
            .inner
            .store
            .branch(&name)
            .transaction()
            .await
            .map_err(write)?;
        let mut lines = Vec::with_capacity(entries.len());
        for (target, source, status) in entries {
            let sub = target_sub(target);
            let path = commit_dir(target.repo(), source)
                .and_then(|dir| dir.join(&sub))
                .map_err(write)?;
            transaction
                .create_file(&path, status.to_string())
                .map_err(write)?;
            lines.push(format!("Update {sub}:{source} -> {status}"));
        }
        if transaction.is_empty() {
            tracing::debug!(entries = entries.len(), "commit index already up to date");
            return Ok(());
        }
        let message = match lines.as_slice() {
            [line] => line.clone(),
            _ => format!("{} index updates\n\n{}", lines.len(), lines.join("\n")),
        };
        transaction.commit(&message).await.map_err(write)?;
        Ok(())
    }

    /// Loads the state held by any status-branch commit, e.g. to browse a target's history.
    ///
    /// Fails with [`Error::InvalidOutput`] if a job's output is not valid JSON (the whole load fails
    /// rather than hiding the job), and [`Error::InvalidFile`] for a malformed `source-commit` or
    /// `metadata-commit`.
    pub async fn load(&self, commit: CommitId) -> Result<HistoryState, Error> {
        let commit = self
            .inner
            .store
            .commit(commit)
            .await
            .map_err(Error::read(format!("status commit {commit}")))?;
        HistoryState::from_commit(&commit)
    }

    /// Every target of `repo` recorded for the source commit `hash`, with the latest state recorded
    /// for it while it had that source commit (spec §3.8.4). Empty if the index has none. Entries
    /// queued but not yet written ([`queue_index`](Self::queue_index)) count.
    ///
    /// Fails with [`Error::InvalidIndexEntry`] for an index entry that names no target.
    pub async fn builds_of_commit(
        &self,
        repo: &RepoId,
        hash: &CommitHash,
    ) -> Result<BTreeMap<TargetId, HistoryState>, Error> {
        // Read the queue before the branch: an entry leaves the queue only after its commit moved
        // the branch, so it is seen in one or the other.
        let unwritten = self.index_queue().entries_for(repo, hash);
        let mut statuses = self.indexed_statuses(repo, hash).await?;
        statuses.extend(unwritten);
        let mut builds = BTreeMap::new();
        for (target, status) in statuses {
            builds.insert(target, self.load(status).await?);
        }
        Ok(builds)
    }

    /// The status commits the `commit-index` branch holds for source commit `hash` of `repo`.
    async fn indexed_statuses(
        &self,
        repo: &RepoId,
        hash: &CommitHash,
    ) -> Result<BTreeMap<TargetId, CommitId>, Error> {
        let mut builds = BTreeMap::new();
        let name = commit_index_branch();
        let Some(head) = self
            .inner
            .store
            .branch(&name)
            .head()
            .await
            .map_err(Error::read(format!("branch {name:?}")))?
        else {
            return Ok(builds);
        };
        let tree = head.tree();
        let dir = commit_dir(repo, hash).map_err(Error::read(format!("branch {name:?}")))?;
        let Some(subs) = tree.read_dir(&dir).map_err(Error::read(format!(
            "directory {dir:?} of commit {}",
            head.id()
        )))?
        else {
            return Ok(builds);
        };
        for sub in subs {
            let target =
                parse_target_sub(repo, &sub).map_err(|source| Error::InvalidIndexEntry {
                    name: sub.clone(),
                    source: Box::new(source),
                })?;
            let path = format!("{dir}/{sub}");
            let invalid = |reason: String| Error::InvalidFile {
                commit: head.id(),
                path: path.clone(),
                reason,
            };
            let text = state::read_text(&tree, head.id(), &path)?
                .ok_or_else(|| invalid("not a file".to_owned()))?;
            let status: CommitId = text
                .trim()
                .parse()
                .map_err(|error: datakit_ci_store::Error| invalid(error.to_string()))?;
            builds.insert(target, status);
        }
        Ok(builds)
    }

    /// The target whose history the status branch `name` holds: parsed from the name
    /// ([`parse_status_branch`]), or for a shortened name read from the `target` file of the
    /// branch's head (see [`status_branch`]); `None` for a shortened name whose branch does not
    /// exist.
    pub async fn status_branch_target(&self, name: &BranchName) -> Result<Option<TargetId>, Error> {
        if !is_shortened(name.as_str()) {
            return parse_status_branch(name.as_str()).map(Some);
        }
        let Some(head) = self
            .inner
            .store
            .branch(name)
            .head()
            .await
            .map_err(Error::read(format!("branch {:?}", name.as_str())))?
        else {
            return Ok(None);
        };
        let full = state::read_text(&head.tree(), head.id(), TARGET_FILE)?.ok_or_else(|| {
            Error::InvalidStatusBranch {
                name: name.as_str().to_owned(),
                reason: format!("a shortened name without a {TARGET_FILE} file"),
            }
        })?;
        parse_shortened(name.as_str(), full.trim()).map(Some)
    }

    /// The cache entry of `target`, made on first use.
    fn entry(&self, target: &TargetId) -> Arc<Entry> {
        let mut entries = self
            .inner
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = entries.get(target) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Entry {
            branch: status_branch(target),
            full_name: full_name_if_shortened(target),
            write_lock: tokio::sync::Mutex::new(()),
            slot: Mutex::new(Slot::Unloaded),
        });
        entries.insert(target.clone(), Arc::clone(&entry));
        entry
    }

    /// Loads the head of the entry's branch unless already loaded; call with `write_lock` held.
    async fn ensure_loaded(&self, entry: &Entry) -> Result<(), Error> {
        if matches!(*entry.slot(), Slot::Loaded(_)) {
            return Ok(());
        }
        let head = self
            .inner
            .store
            .branch(&entry.branch)
            .head()
            .await
            .map_err(Error::read(format!("branch {:?}", entry.branch.as_str())))?;
        let recorded = match head {
            None => None,
            Some(commit) => Some(Recorded::new(HistoryState::from_commit(&commit)?)),
        };
        tracing::debug!(branch = %entry.branch, exists = recorded.is_some(), "loaded status branch");
        *entry.slot() = Slot::Loaded(recorded);
        Ok(())
    }
}

/// `<user>/<repo>/commit/<hash>` in the commit index.
fn commit_dir(repo: &RepoId, hash: &CommitHash) -> Result<StorePath, datakit_ci_store::Error> {
    StorePath::new(format!("{}/{}/commit/{hash}", repo.user(), repo.repo()))
}

/// The changes from `old` to `new`, in job-name order.
fn diff(
    old: Option<&BTreeMap<String, String>>,
    new: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, JobOutput>,
) -> BTreeMap<String, Change> {
    let mut patch = BTreeMap::new();
    for (name, json) in new {
        if old.and_then(|old| old.get(name)) != Some(json) {
            let description = outputs
                .get(name)
                .map(|output| output.result.description().to_owned())
                .unwrap_or_default();
            patch.insert(
                name.clone(),
                Change::Write {
                    json: json.clone(),
                    description,
                },
            );
        }
    }
    for name in old.into_iter().flat_map(BTreeMap::keys) {
        if !new.contains_key(name) {
            patch.insert(name.clone(), Change::Delete);
        }
    }
    patch
}

/// Applies the state files and `patch` to `transaction`; returns the messages, in order.
fn apply(
    transaction: &mut Transaction,
    branch: &BranchName,
    full_name: Option<&str>,
    source_commit: &CommitHash,
    metadata_commit: CommitId,
    patch: &BTreeMap<String, Change>,
) -> Result<Vec<String>, Error> {
    let write = |source| Error::Write {
        branch: branch.clone(),
        source,
    };
    let fixed = |name: &str| StorePath::new(name).expect("a valid constant path");
    transaction
        .create_file(&fixed(SOURCE_COMMIT), source_commit.as_str())
        .map_err(write)?;
    transaction
        .create_file(&fixed(METADATA_COMMIT), metadata_commit.to_string())
        .map_err(write)?;
    if let Some(full_name) = full_name {
        transaction
            .create_file(&fixed(TARGET_FILE), format!("{full_name}\n"))
            .map_err(write)?;
    }
    let mut messages = Vec::with_capacity(patch.len());
    for (name, change) in patch {
        let message = match change {
            Change::Delete => {
                let path = state::job_path(name)?;
                if transaction.exists(&path).map_err(write)? {
                    transaction.remove(&path).map_err(write)?;
                }
                format!("Remove old job {name}")
            }
            Change::Write { json, description } => {
                let path = state::output_path(name)?;
                transaction.create_file(&path, json).map_err(write)?;
                format!("{name} -> {description}")
            }
        };
        tracing::info!("Record: {branch}: {message}");
        messages.push(message);
    }
    Ok(messages)
}

/// The commit message of a recording with `messages` in job-name order (spec §3.8.3).
fn commit_message(messages: &[String]) -> String {
    match messages {
        [] => "Update".to_owned(),
        [one] => one.clone(),
        [.., last] => {
            let recent_first: Vec<&str> = messages.iter().rev().map(String::as_str).collect();
            format!(
                "{} updates ({last}, ...)\n\n{}",
                messages.len(),
                recent_first.join("\n")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_messages_follow_the_original() {
        assert_eq!(commit_message(&[]), "Update");
        assert_eq!(commit_message(&["a -> ok".to_owned()]), "a -> ok");
        assert_eq!(
            commit_message(&["a -> ok".to_owned(), "Remove old job b".to_owned()]),
            "2 updates (Remove old job b, ...)\n\nRemove old job b\na -> ok"
        );
    }
}
