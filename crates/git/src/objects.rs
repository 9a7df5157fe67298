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

use gix::ObjectId;
use gix::objs::{Kind, Write as _};

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

/// A repository's objects and refs, opened once and shared by its fetches.
pub(crate) struct Objects {
    local: gix::ThreadSafeRepository,
    /// `origin`, when it is a directory on this machine.
    origin: Option<LocalOrigin>,
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
        Ok(Objects {
            local: local.into(),
            origin,
        })
    }

    /// The repository's object database directory (absolute if the repository was opened by an
    /// absolute path).
    pub(crate) fn objects_dir(&self) -> std::path::PathBuf {
        self.local.to_thread_local().common_dir().join("objects")
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

    /// Copies `id` and every object it reaches that the repository lacks from the local origin;
    /// returns how many objects were written. `Ok(None)` if there is no local origin.
    ///
    /// Objects are written children first, so an object present in the repository always has
    /// everything it reaches (the invariant `git fetch` keeps too): the walk stops at any object
    /// already present.
    pub(crate) fn copy_from_origin(&self, id: ObjectId) -> Result<Option<usize>, ObjectsError> {
        let Some(origin) = &self.origin else {
            return Ok(None);
        };
        let source = origin.repo.to_thread_local();
        let local = self.local.to_thread_local();
        let copy_error = |id: ObjectId, message: String| ObjectsError::Copy {
            source_dir: origin.dir.clone(),
            id,
            message,
        };
        let mut written = 0;
        let mut seen = HashSet::new();
        // `(id, children_done)`: an object is written when it is popped the second time.
        let mut stack = vec![(id, false)];
        while let Some((id, children_done)) = stack.pop() {
            let object = source
                .try_find_object(id)
                .map_err(|e| copy_error(id, e.to_string()))?
                .ok_or_else(|| ObjectsError::Missing {
                    source_dir: origin.dir.clone(),
                    id,
                })?;
            if children_done {
                local
                    .objects
                    .write_buf(object.kind, &object.data)
                    .map_err(|e| copy_error(id, e.to_string()))?;
                written += 1;
                continue;
            }
            stack.push((id, true));
            for child in children(object.kind, &object.data, source.object_hash())
                .map_err(|e| copy_error(id, e))?
            {
                if seen.insert(child) && !local.has_object(child) {
                    stack.push((child, false));
                }
            }
        }
        Ok(Some(written))
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
