//! In-process access to a repository's object database and refs (gix), for the steps of a fetch
//! that do not need a `git` process: is a commit here, copy it from a local origin, point a branch
//! at it.
//!
//! Spawning `git` costs milliseconds per command, which dominated the latency from a push to a
//! status on local repositories. When `origin` is a directory on this machine, a commit's missing
//! objects are copied straight from its object database instead of running `git fetch` (which
//! starts `git upload-pack` and `git pack-objects`, and writes a pack per fetch).

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use gix::ObjectId;
use gix::objs::Kind;

use crate::pack::PackBuilder;

/// Why an in-process object or ref operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectsError {
    /// The repository could not be opened.
    #[error("cannot open the repository at {path:?}: {message}")]
    Open { path: PathBuf, message: String },
    /// The origin does not have an object the commit needs (e.g. it was garbage-collected).
    #[error("{source_dir:?} does not have object {id}")]
    Missing { source_dir: PathBuf, id: ObjectId },
    /// Reading, decoding or writing an object failed.
    #[error("cannot copy object {id} from {source_dir:?}: {message}")]
    Copy {
        source_dir: PathBuf,
        id: ObjectId,
        message: String,
    },
    /// Writing the pack of copied objects failed.
    #[error(
        "cannot write the objects copied from {source_dir:?} as a pack in {pack_dir:?}: {message}"
    )]
    WritePack {
        source_dir: PathBuf,
        pack_dir: PathBuf,
        message: String,
    },
    /// Updating a branch failed.
    #[error("cannot point branch {branch} at {id}: {message}")]
    Branch {
        branch: String,
        id: ObjectId,
        message: String,
    },
}

/// How long [`Objects::set_branch`] waits for another writer's lock on the branch (git's default
/// `core.filesRefLockTimeout`).
const REF_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// Compressed bytes of copied objects past which a batch writes its pack and starts another, so
/// that copying a huge commit does not hold all of it in memory.
const PACK_FLUSH_BYTES: usize = 32 << 20;

/// The receiver of a queued copy's outcome: the number of objects written (`None` without a local
/// origin).
pub(crate) type CopyOutcome = tokio::sync::oneshot::Receiver<Result<Option<usize>, ObjectsError>>;

/// The sending side of a [`CopyOutcome`].
type CopySender = tokio::sync::oneshot::Sender<Result<Option<usize>, ObjectsError>>;

/// A repository's objects and refs, opened once and shared by its fetches.
pub(crate) struct Objects {
    local: gix::ThreadSafeRepository,
    /// `origin`, when it is a directory on this machine.
    origin: Option<LocalOrigin>,
    /// Copies from `origin` waiting for the next pack.
    copies: Mutex<CopyQueue>,
    /// How many packs the repository has (counted at open and after each repack, plus those
    /// written since), to tell when to consolidate them.
    packs: AtomicUsize,
    /// Whether a caller is consolidating packs ([`claim_repack`](Self::claim_repack)).
    repacking: AtomicBool,
}

/// Pack count past which [`Objects::claim_repack`] asks for a consolidation (git's own
/// `gc.autoPackLimit` is 50). Every lookup of an object may search every pack's index, and each
/// batch of copied commits adds a pack, so a long-running CI would otherwise slow every git
/// command in its clone; a repack of the small packs costs tens of milliseconds.
pub(crate) const PACK_LIMIT: usize = 32;

/// Commits to copy from the origin, and whether a caller is writing packs.
#[derive(Default)]
struct CopyQueue {
    waiting: Vec<(ObjectId, CopySender)>,
    writing: bool,
}

/// A repository on this machine that `origin` points at.
struct LocalOrigin {
    dir: PathBuf,
    repo: gix::ThreadSafeRepository,
}

impl Objects {
    /// Opens the repository whose work tree is `dir`, and its `origin` if that is a local path.
    pub(crate) fn open(dir: &Path) -> Result<Objects, ObjectsError> {
        let mut local = gix::open(dir).map_err(|e| ObjectsError::Open {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
        // The CI's `git-pull-of-<hash>` branches only keep commits from being collected; a reflog
        // per branch would be one more file to create per build, and file creation is what builds
        // mostly wait for (see `crate::shared_clone`).
        local.refs.write_reflog = gix::refs::store::WriteReflog::Disable;
        let origin = local_origin_dir(&local, dir).and_then(|origin_dir| {
            match gix::open(&origin_dir) {
                Ok(repo) => Some(LocalOrigin {
                    dir: origin_dir,
                    repo: repo.into(),
                }),
                Err(e) => {
                    // Not fatal: `git fetch` will report what is wrong with it, if anything.
                    tracing::debug!(origin = %origin_dir.display(), error = %e, "origin is not a repository gix can open");
                    None
                }
            }
        });
        let pack_dir = local.common_dir().join("objects").join("pack");
        Ok(Objects {
            local: local.into(),
            origin,
            copies: Mutex::new(CopyQueue::default()),
            packs: AtomicUsize::new(count_packs(&pack_dir)),
            repacking: AtomicBool::new(false),
        })
    }

    /// The repository's object database directory (absolute if the repository was opened by an
    /// absolute path).
    pub(crate) fn objects_dir(&self) -> std::path::PathBuf {
        self.local.to_thread_local().common_dir().join("objects")
    }

    fn copies(&self) -> MutexGuard<'_, CopyQueue> {
        self.copies
            .lock()
            .expect("no code panics while holding the copy queue")
    }

    /// The local directory `origin` points at, if objects can be copied from it.
    pub(crate) fn local_origin(&self) -> Option<&Path> {
        self.origin.as_ref().map(|origin| origin.dir.as_path())
    }

    /// Whether the repository has the object `id` (refreshing its view of packs written by other
    /// processes when it does not).
    pub(crate) fn contains(&self, id: &ObjectId) -> bool {
        self.local.to_thread_local().has_object(id)
    }

    /// Whether the repository has the object `id` among the objects it knows of, without listing
    /// the pack directory again on a miss. Copying from a local origin rechecks (see
    /// [`copy_queued`](Self::copy_queued)), so a miss here costs nothing when there is one.
    pub(crate) fn contains_known(&self, id: &ObjectId) -> bool {
        if self.origin.is_none() {
            return self.contains(id);
        }
        self.local
            .to_thread_local()
            .objects
            .exists_without_refresh(id)
    }

    /// Queues a copy of `id` and every object it reaches that the repository lacks from the local
    /// origin. Returns the receiver of its outcome (the number of objects written; `None` if there
    /// is no local origin) and whether the caller must run [`copy_queued`](Self::copy_queued),
    /// which serves every queued copy.
    ///
    /// Copies queued while one runs are written together as one pack: a loose object per file
    /// cost about three new files per build, and new files are what builds mostly wait for (see
    /// `crate::pack`).
    pub(crate) fn queue_copy(&self, id: ObjectId) -> (CopyOutcome, bool) {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let mut queue = self.copies();
        queue.waiting.push((id, done));
        let lead = !queue.writing;
        queue.writing = true;
        (outcome, lead)
    }

    /// Copies every queued commit (see [`queue_copy`](Self::queue_copy)), batch after batch, until
    /// the queue is empty; reports each outcome to its receiver. Only the caller `queue_copy` told
    /// to lead runs this, so one batch is written at a time.
    ///
    /// Objects are gathered children first, and a present object always has everything it
    /// reaches (the invariant `git fetch` keeps too): the walk stops at any object already
    /// present, and a pack becomes visible all at once, when its index is renamed into place.
    pub(crate) fn copy_queued(&self) {
        /// If a batch panics, fails the queued copies (dropping their senders) and lets the next
        /// caller lead, rather than leaving every later copy waiting for a writer that is gone.
        struct Abandon<'a>(&'a Objects);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    let mut queue = self.0.copies();
                    queue.waiting.clear();
                    queue.writing = false;
                }
            }
        }
        let _abandon = Abandon(self);
        loop {
            let batch = {
                let mut queue = self.copies();
                if queue.waiting.is_empty() {
                    queue.writing = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            let outcomes = self.copy_batch(batch.iter().map(|(id, _)| *id));
            for ((_, done), outcome) in batch.into_iter().zip(outcomes) {
                // The receiver is gone when its fetch was cancelled: nothing left to tell.
                let _ = done.send(outcome);
            }
        }
    }

    /// Copies the commits `ids` into one pack (more when they exceed [`PACK_FLUSH_BYTES`]);
    /// returns the outcome of each, in order.
    fn copy_batch(
        &self,
        ids: impl Iterator<Item = ObjectId>,
    ) -> Vec<Result<Option<usize>, ObjectsError>> {
        let Some(origin) = &self.origin else {
            return ids.map(|_| Ok(None)).collect();
        };
        let source = origin.repo.to_thread_local();
        let local = self.local.to_thread_local();
        // Each miss of a lookup lists the pack directory again (to find packs written by others),
        // and every object a copy writes misses at first: that was a tenth of the CI's CPU. List
        // it once per batch instead, which also finds the packs earlier batches wrote, then look
        // up without refreshing. A stale miss costs only a redundant copy of an object.
        let _refreshed = local.has_object(ObjectId::null(local.object_hash()));
        let pack_dir = local.common_dir().join("objects").join("pack");
        let mut pack = PackBuilder::new();
        // Objects gathered for the pack being built and those written by earlier packs of this
        // batch: the local repository may not see the latter until it refreshes its pack list.
        let mut gathered = HashSet::new();
        let mut outcomes: Vec<Result<Option<usize>, ObjectsError>> = Vec::new();
        // Indices into `outcomes` of the copies whose objects are in `pack`, not yet written.
        let mut unwritten = Vec::new();
        for id in ids {
            let before = pack.len();
            let outcome = copy_one(origin, &source, &local, id, &mut pack, &mut gathered);
            match outcome {
                Ok(written) => {
                    outcomes.push(Ok(Some(written)));
                    unwritten.push(outcomes.len() - 1);
                }
                Err(e) => {
                    // Everything the failed walk gathered is complete (children first), but
                    // nothing refers to it: leave it out.
                    pack.truncate(before);
                    outcomes.push(Err(e));
                }
            }
            if pack.size() >= PACK_FLUSH_BYTES {
                self.write_pack(
                    &mut pack,
                    &pack_dir,
                    &origin.dir,
                    &mut outcomes,
                    &mut unwritten,
                );
            }
        }
        self.write_pack(
            &mut pack,
            &pack_dir,
            &origin.dir,
            &mut outcomes,
            &mut unwritten,
        );
        outcomes
    }

    /// Whether the caller should consolidate the repository's packs now: there are more than
    /// [`PACK_LIMIT`] and no one else is at it. A caller told yes must call
    /// [`repacked`](Self::repacked) when done, whatever the outcome.
    pub(crate) fn claim_repack(&self) -> bool {
        self.packs.load(Ordering::Relaxed) > PACK_LIMIT
            && !self.repacking.swap(true, Ordering::AcqRel)
    }

    /// Ends the consolidation [`claim_repack`](Self::claim_repack) allowed: recounts the packs.
    pub(crate) fn repacked(&self) {
        let pack_dir = self.objects_dir().join("pack");
        self.packs.store(count_packs(&pack_dir), Ordering::Relaxed);
        self.repacking.store(false, Ordering::Release);
    }

    /// Writes `pack`; if that fails, the copies in `unwritten` fail with the error.
    fn write_pack(
        &self,
        pack: &mut PackBuilder,
        pack_dir: &Path,
        origin_dir: &Path,
        outcomes: &mut [Result<Option<usize>, ObjectsError>],
        unwritten: &mut Vec<usize>,
    ) {
        let written = pack.write(pack_dir);
        if let Ok(Some(_)) = written {
            self.packs.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = written {
            tracing::warn!(dir = %pack_dir.display(), error = %e, "cannot write a pack of copied objects");
            for &i in unwritten.iter() {
                if let Ok(Some(_)) = &outcomes[i] {
                    outcomes[i] = Err(ObjectsError::WritePack {
                        source_dir: origin_dir.to_owned(),
                        pack_dir: pack_dir.to_owned(),
                        message: e.to_string(),
                    });
                }
            }
        }
        unwritten.clear();
    }

    /// Points the local branch `branch` at `id`, creating or moving it.
    ///
    /// Writes the loose ref under its lock file rather than through `Repository::reference`: for
    /// every ref edit, gix also locks `packed-refs` when the repository has one (every clone has),
    /// which is one more file created and deleted per build. A loose ref takes precedence over a
    /// packed one of the same name, so writing it alone is a complete update.
    pub(crate) fn set_branch(&self, branch: &str, id: ObjectId) -> Result<(), ObjectsError> {
        let branch_error = |message: String| ObjectsError::Branch {
            branch: branch.to_owned(),
            id,
            message,
        };
        let name = format!("refs/heads/{branch}");
        let _valid: gix::refs::FullName = name
            .as_str()
            .try_into()
            .map_err(|e: gix::validate::reference::name::Error| branch_error(e.to_string()))?;
        let git_dir = self.local.to_thread_local().common_dir().to_owned();
        let mut lock = gix::lock::File::acquire_to_update_resource(
            git_dir.join(&name),
            gix::lock::acquire::Fail::AfterDurationWithBackoff(REF_LOCK_TIMEOUT),
            Some(git_dir),
            0,
        )
        .map_err(|e| branch_error(e.to_string()))?;
        writeln!(lock, "{id}").map_err(|e| branch_error(e.to_string()))?;
        lock.commit()
            .map_err(|e| branch_error(e.error.to_string()))?;
        Ok(())
    }
}

/// How many packs (indices) `pack_dir` holds; 0 if it cannot be read (the count only decides
/// when to consolidate).
fn count_packs(pack_dir: &Path) -> usize {
    match std::fs::read_dir(pack_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".idx"))
            .count(),
        Err(e) => {
            tracing::debug!(dir = %pack_dir.display(), error = %e, "cannot count packs");
            0
        }
    }
}

/// Adds to `pack` the commit `id` and every object it reaches that neither the repository nor
/// `gathered` has, children first; returns how many objects it added.
fn copy_one(
    origin: &LocalOrigin,
    source: &gix::Repository,
    local: &gix::Repository,
    id: ObjectId,
    pack: &mut PackBuilder,
    gathered: &mut HashSet<ObjectId>,
) -> Result<usize, ObjectsError> {
    let copy_error = |id: ObjectId, message: String| ObjectsError::Copy {
        source_dir: origin.dir.clone(),
        id,
        message,
    };
    let present = |id: &ObjectId| local.objects.exists_without_refresh(id);
    if gathered.contains(&id) || present(&id) {
        return Ok(0);
    }
    let mut added = Vec::new();
    let mut seen = HashSet::from([id]);
    // `(id, children_done)`: an object is added when it is popped the second time.
    let mut stack = vec![(id, false)];
    let walked = (|| {
        while let Some((id, children_done)) = stack.pop() {
            let object = source
                .try_find_object(id)
                .map_err(|e| copy_error(id, e.to_string()))?
                .ok_or_else(|| ObjectsError::Missing {
                    source_dir: origin.dir.clone(),
                    id,
                })?;
            if children_done {
                pack.add(id, object.kind, &object.data)
                    .map_err(|e| copy_error(id, e.to_string()))?;
                added.push(id);
                continue;
            }
            stack.push((id, true));
            for child in children(object.kind, &object.data, source.object_hash())
                .map_err(|e| copy_error(id, e))?
            {
                if seen.insert(child) && !gathered.contains(&child) && !present(&child) {
                    stack.push((child, false));
                }
            }
        }
        Ok(())
    })();
    walked?;
    let count = added.len();
    gathered.extend(added);
    Ok(count)
}

/// The objects an object of `kind` with `data` refers to (submodule commits excepted: they live in
/// other repositories).
fn children(kind: Kind, data: &[u8], hash: gix::hash::Kind) -> Result<Vec<ObjectId>, String> {
    match kind {
        Kind::Blob => Ok(Vec::new()),
        Kind::Commit => {
            let commit = gix::objs::CommitRef::from_bytes(data, hash).map_err(|e| e.to_string())?;
            let mut ids = vec![commit.tree()];
            ids.extend(commit.parents());
            Ok(ids)
        }
        Kind::Tree => {
            let tree = gix::objs::TreeRef::from_bytes(data, hash).map_err(|e| e.to_string())?;
            Ok(tree
                .entries
                .iter()
                .filter(|entry| !entry.mode.is_commit())
                .map(|entry| entry.oid.to_owned())
                .collect())
        }
        Kind::Tag => {
            let tag = gix::objs::TagRef::from_bytes(data, hash).map_err(|e| e.to_string())?;
            Ok(vec![tag.target()])
        }
    }
}

/// The directory `remote.origin.url` names, if it is a local path rather than a URL.
///
/// Like git, only plain paths count as local: `file://` URLs and `host:path` go through
/// `git fetch`. A relative path is relative to the work tree `dir`.
fn local_origin_dir(repo: &gix::Repository, dir: &Path) -> Option<PathBuf> {
    let config = repo.config_snapshot();
    let url = config.string("remote.origin.url")?;
    let url = std::str::from_utf8(url.as_ref()).ok()?;
    if url.contains("://") {
        return None;
    }
    // `host:path` (scp-like) unless a slash comes before the colon.
    if let Some(colon) = url.find(':')
        && !url[..colon].contains('/')
    {
        return None;
    }
    let path = dir.join(url);
    path.is_dir().then_some(path)
}
