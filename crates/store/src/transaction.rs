//! Transactions: a set of path-level edits on top of a branch head, committed atomically (objects
//! first, then a compare-and-swap of the branch reference), replayed on the new head if it moved.

use std::io::{Read, Seek, Write};
use std::sync::Arc;

use gix::ObjectId;
use gix::objs::tree::{EntryKind as GitEntryKind, EntryMode};

use crate::commit::load_commit;
use crate::odb::PendingObjects;
use crate::refs::{CommitData, Member, OpenTransaction, read_commit, read_head, signature};
use crate::state::{Shared, run_blocking};
use crate::tree::{CachedRepo, DirNode, Found, TreeSource, empty_tree};
use crate::{BranchName, CommitId, EntryKind, Error, StorePath};

/// How many times a commit retries when the branch keeps moving under it (only possible when
/// something outside this store writes to the repository).
const MAX_ATTEMPTS: usize = 10;

/// Blobs up to this size are kept in memory until commit (and then packed); bigger ones are
/// written at once, as loose objects.
///
/// Streamed contents use the same limit. A loose object costs a file, which matters for small
/// objects (a few hundred microseconds for an inode against a few for compressing 4 KiB) but not
/// for big ones (compressing 256 KiB takes milliseconds). Packed objects cost memory until the
/// commit (the pack of a group holds every member's objects at once) and a copy at every tier
/// merge, both of which grow with the limit.
const INLINE_BLOB_LIMIT: usize = 256 * 1024;

/// One recorded edit, kept so the transaction can be replayed on a newer head.
enum Edit {
    Write {
        path: StorePath,
        mode: EntryMode,
        id: ObjectId,
    },
    MakeDirs {
        path: StorePath,
    },
    Remove {
        path: StorePath,
    },
}

/// Changes to one branch, made on top of the head seen when it was opened.
///
/// Reads see the transaction's own writes. Nothing is visible to others until
/// [`commit`](Self::commit); dropping the transaction (or [`abort`](Self::abort)) discards it.
///
/// # Commits when the branch moved
///
/// A commit whose branch moved since the transaction opened does not do a Git 3-way merge (as the
/// original DataKit did): it *replays* the transaction's recorded edits on the new head, and the
/// resulting commit has the new head as its only parent. Edits are path-level (write this file,
/// remove that path), so replaying them is a merge in which this transaction's writes win, which is
/// what every caller wants and is much cheaper than a tree merge. An edit that cannot apply (a file
/// now where a directory is needed, or the reverse) fails with [`Error::Conflict`] and leaves the
/// branch unchanged; removing a path that has meanwhile disappeared is not a conflict.
pub struct Transaction {
    store: Arc<Shared>,
    branch: BranchName,
    parent: Option<CommitId>,
    base_tree: ObjectId,
    root: DirNode,
    edits: Vec<Edit>,
    /// Small blobs written so far, kept in memory until commit.
    pending: PendingObjects,
    /// The commit will have no parent (see [`Transaction::replace_history`]).
    orphan: bool,
    /// Lets group commits know how many commits may be coming (see the `refs` layer's group commit).
    _open: OpenTransaction,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("branch", &self.branch)
            .field("parent", &self.parent)
            .field("edits", &self.edits.len())
            .finish()
    }
}

impl Transaction {
    /// Opens a transaction on the current head of `branch` (blocking).
    pub(crate) fn open(store: Arc<Shared>, branch: BranchName) -> Result<Transaction, Error> {
        let open = OpenTransaction::new(store.repo().commits());
        let repo = store.repo().get();
        let parent = read_head(&repo, &branch)?;
        let base_tree = match parent {
            Some(id) => load_commit(store.repo(), id)?.tree_object_id(),
            None => empty_tree(),
        };
        drop(repo);
        Ok(Transaction {
            store,
            branch,
            parent,
            base_tree,
            root: DirNode::from_stored(base_tree),
            edits: Vec::new(),
            pending: PendingObjects::default(),
            orphan: false,
            _open: open,
        })
    }

    /// A handle for one operation. Handles are borrowed per operation, never for the transaction's
    /// life, because merged packs are deleted only while no handle is on loan.
    fn repo(&self) -> CachedRepo<'_> {
        self.store.repo().get()
    }

    /// The branch this transaction commits to.
    pub fn branch(&self) -> &BranchName {
        &self.branch
    }

    /// The head seen when the transaction was opened (`None` if the branch did not exist).
    pub fn parent(&self) -> Option<CommitId> {
        self.parent
    }

    /// The contents of the file at `path`, including this transaction's writes; `None` if absent or
    /// not a regular file.
    pub fn read_file(&self, path: &StorePath) -> Result<Option<Vec<u8>>, Error> {
        let repo = self.repo();
        match self.root.lookup(&repo, path)? {
            Some(Found::Leaf(mode, id)) if EntryKind::from_mode(mode) == EntryKind::File => {
                match self.pending.get(&id) {
                    Some(data) => Ok(Some(data.to_vec())),
                    None => crate::tree::read_blob(&repo, id).map(Some),
                }
            }
            _ => Ok(None),
        }
    }

    /// The sorted entry names of the directory at `path` (including empty directories made in this
    /// transaction); `None` if absent or not a directory.
    pub fn read_dir(&self, path: &StorePath) -> Result<Option<Vec<String>>, Error> {
        let repo = self.repo();
        match self.root.lookup(&repo, path)? {
            Some(Found::Dir(dir)) => dir.entry_names(&repo, path).map(Some),
            Some(Found::StoredDir(id)) => {
                DirNode::from_stored(id).entry_names(&repo, path).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// What `path` names in this transaction, if anything.
    pub fn kind(&self, path: &StorePath) -> Result<Option<EntryKind>, Error> {
        let repo = self.repo();
        Ok(self.root.lookup(&repo, path)?.map(|found| found.kind()))
    }

    /// Whether anything is at `path` in this transaction.
    pub fn exists(&self, path: &StorePath) -> Result<bool, Error> {
        Ok(self.kind(path)?.is_some())
    }

    /// Writes a file at `path`, replacing an existing file (or empty directory) and creating parent
    /// directories. Fails with [`Error::IsDir`] on a non-empty directory and [`Error::NotDir`] if a
    /// parent is a file.
    ///
    /// Small contents are kept in memory until commit; big ones go to the object database at once.
    pub fn create_file(
        &mut self,
        path: &StorePath,
        contents: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        let contents = contents.as_ref();
        let id = if contents.len() <= INLINE_BLOB_LIMIT {
            self.pending.add(gix::objs::Kind::Blob, contents.to_vec())?
        } else {
            let repo = self.repo();
            repo.write_blob(contents)
                .map_err(Error::git("write blob"))?
                .detach()
        };
        self.put_blob(path, id)
    }

    /// Like [`create_file`](Self::create_file), but streams the contents from `reader` so big files
    /// (a 200 MB build log) are never held in memory whole. Contents up to 256 KiB are kept in
    /// memory and packed at commit like those of `create_file`; bigger ones are spooled to a
    /// temporary file in the repository (Git's object header needs the size first), then
    /// compressed into the object database as a loose object.
    pub fn create_file_from_reader(
        &mut self,
        path: &StorePath,
        mut reader: impl Read,
    ) -> Result<(), Error> {
        // No handle is on loan while reading: the reader may be slow, and deleting merged packs
        // waits for every handle.
        let git_dir = self.repo().git_dir().to_owned();
        let io_error = |source| Error::Io {
            path: git_dir.clone(),
            source,
        };
        // One byte past the limit tells whether the contents fit.
        let mut head = Vec::new();
        (&mut reader)
            .take(INLINE_BLOB_LIMIT as u64 + 1)
            .read_to_end(&mut head)
            .map_err(io_error)?;
        let id = if head.len() <= INLINE_BLOB_LIMIT {
            self.pending.add(gix::objs::Kind::Blob, head)?
        } else {
            let mut spool = tempfile::tempfile_in(&git_dir).map_err(io_error)?;
            spool.write_all(&head).map_err(io_error)?;
            let rest = std::io::copy(&mut reader, &mut spool).map_err(io_error)?;
            let size = head.len() as u64 + rest;
            drop(head);
            spool.flush().map_err(io_error)?;
            spool.rewind().map_err(io_error)?;
            gix::objs::Write::write_stream(
                &self.repo().objects,
                gix::objs::Kind::Blob,
                size,
                &mut spool,
            )
            .map_err(Error::git("write blob"))?
        };
        self.put_blob(path, id)
    }

    fn put_blob(&mut self, path: &StorePath, id: ObjectId) -> Result<(), Error> {
        let mode = EntryMode::from(GitEntryKind::Blob);
        {
            let repo = self.store.repo().get();
            self.root.upsert_leaf(&repo, path, mode, id)?;
        }
        self.edits.push(Edit::Write {
            path: path.clone(),
            mode,
            id,
        });
        Ok(())
    }

    /// Makes the directory `path` and its parents. Empty directories are not persisted (Git trees
    /// cannot hold them); this only makes the path usable within the transaction.
    pub fn make_dirs(&mut self, path: &StorePath) -> Result<(), Error> {
        {
            let repo = self.store.repo().get();
            self.root.make_dirs(&repo, path)?;
        }
        self.edits.push(Edit::MakeDirs { path: path.clone() });
        Ok(())
    }

    /// Removes the file or directory (recursively) at `path`; [`Error::NotFound`] if there is none.
    pub fn remove(&mut self, path: &StorePath) -> Result<(), Error> {
        {
            let repo = self.store.repo().get();
            self.root.remove(&repo, path)?;
        }
        self.edits.push(Edit::Remove { path: path.clone() });
        Ok(())
    }

    /// Whether the transaction's tree is the same as its parent's (so committing would change nothing
    /// but history).
    pub fn is_empty(&self) -> bool {
        if self.edits.is_empty() {
            return true;
        }
        match self.root.is_stored(self.base_tree) {
            Ok(same) => same,
            Err(error) => {
                tracing::warn!(%error, "cannot hash transaction tree; assuming it changed");
                false
            }
        }
    }

    /// Commits the transaction with `message` and moves the branch to the new commit, replaying the
    /// edits on the new head if the branch moved since the transaction opened (see the type's docs).
    /// Commits to one branch are serialised within the store.
    ///
    /// Commits to other branches made while this one's objects are being written wait for that
    /// write and are then written together, as one pack; each still moves its own branch and gets
    /// its own result. If the pack cannot be written, every commit of the group fails with
    /// [`Error::WriteObjects`] and no branch moves.
    pub async fn commit(self, message: &str) -> Result<CommitId, Error> {
        let state = self.store.branch_state(&self.branch);
        let _serialised = state.commit_lock.lock().await;
        let message = message.to_owned();
        let repo = Arc::clone(self.store.repo());
        let id = run_blocking(move || self.commit_blocking(&message)).await?;
        state.head.send_replace(Some(id));
        drop(_serialised);
        // Merging packs (every few commits) keeps lookups cheap; the commit is already visible.
        repo.maintain_in_background();
        Ok(id)
    }

    /// Makes the commit the branch's only one: it gets no parent, so the branch's earlier commits
    /// (and whatever only they reference) are no longer reachable from it. For retention: the
    /// tree is the head's with this transaction's edits, as always, but the history is dropped.
    /// The compare-and-swap still checks that the branch did not move.
    pub fn replace_history(&mut self) {
        self.orphan = true;
    }

    /// Discards the transaction (the same as dropping it).
    pub fn abort(self) {}

    fn commit_blocking(self, message: &str) -> Result<CommitId, Error> {
        let Transaction {
            store,
            branch,
            parent,
            mut root,
            edits,
            mut pending,
            orphan,
            ..
        } = self;
        let repo = store.repo();
        let mut expected = parent;
        for _ in 0..MAX_ATTEMPTS {
            let (tree, commit, (objects, started_pack)) = {
                let handle = repo.get();
                let current = read_head(&handle, &branch)?;
                if current != expected {
                    tracing::debug!(%branch, "branch moved since the transaction opened; replaying its edits");
                    root = replay(&handle, &branch, current, &edits)?;
                    expected = current;
                }
                // A pack started early is for this commit alone: when it is likely to be written
                // with others, starting one would only take a core from them.
                let thread = (!repo.commits().busy()).then(|| Arc::clone(repo.pack_thread()));
                // Its trees and the commit.
                pending.expect_pack(&handle, repo.recent(), thread, root.changed_dirs() + 1);
                let (tree, _) = root.write(&mut pending)?;
                let parent = if orphan { None } else { expected };
                let (commit, time) = add_commit(&mut pending, tree, parent, message)?;
                (
                    tree,
                    (commit, time, parent),
                    pending.take_new(&handle, repo.recent()),
                )
            };
            let (commit, time, parent) = commit;
            // No handle is held while the group is written: deleting merged packs waits for them all.
            let member = Member {
                objects,
                started_pack,
                branch: branch.clone(),
                new: commit,
                expected,
            };
            match repo.commits().commit(repo.odb(), member) {
                Ok(()) => {
                    let id = CommitId::from_object_id(commit);
                    repo.recent_commits().remember_commit(Arc::new(CommitData {
                        id,
                        parents: parent.into_iter().collect(),
                        message: message.to_owned(),
                        tree,
                        time,
                    }));
                    return Ok(id);
                }
                Err(error @ Error::WriteObjects { .. }) => return Err(error),
                Err(error) => {
                    // The objects are stored; only the compare-and-swap failed. Replay if the
                    // branch moved, fail otherwise.
                    if read_head(&repo.get(), &branch)? == expected {
                        return Err(error);
                    }
                }
            }
        }
        Err(Error::Contended {
            branch,
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// Applies `edits` to the tree of `head`.
fn replay<S: TreeSource + ?Sized>(
    repo: &S,
    branch: &BranchName,
    head: Option<CommitId>,
    edits: &[Edit],
) -> Result<DirNode, Error> {
    let base = match head {
        Some(id) => read_commit(repo.objects(), id)?.tree,
        None => empty_tree(),
    };
    let mut root = DirNode::from_stored(base);
    let conflict = |path: &StorePath| Error::Conflict {
        branch: branch.clone(),
        path: path.clone(),
    };
    for edit in edits {
        let result = match edit {
            Edit::Write { path, mode, id } => root.upsert_leaf(repo, path, *mode, *id),
            Edit::MakeDirs { path } => root.make_dirs(repo, path),
            Edit::Remove { path } => match root.remove(repo, path) {
                Err(Error::NotFound { .. }) => Ok(()),
                other => other,
            },
        };
        match result {
            Ok(()) => {}
            Err(Error::IsDir { .. } | Error::NotDir { .. }) => {
                let path = match edit {
                    Edit::Write { path, .. } | Edit::MakeDirs { path } | Edit::Remove { path } => {
                        path
                    }
                };
                return Err(conflict(path));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(root)
}

fn add_commit(
    pending: &mut PendingObjects,
    tree: ObjectId,
    parent: Option<CommitId>,
    message: &str,
) -> Result<(ObjectId, i64), Error> {
    let signature = signature();
    let time = signature.time.seconds;
    let commit = gix::objs::Commit {
        tree,
        parents: parent.map(CommitId::object_id).into_iter().collect(),
        author: signature.clone(),
        committer: signature,
        encoding: None,
        message: message.into(),
        extra_headers: Vec::new(),
    };
    let id = pending.add(gix::objs::Kind::Commit, crate::odb::encode(&commit)?)?;
    Ok((id, time))
}
