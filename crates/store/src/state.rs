//! The store's layers assembled: the object database, the cache of decoded trees and the commit
//! machinery of one repository ([`State`], shared by the store, its snapshots, commits and
//! transactions), and the open store that also holds the branches' state and the lock
//! ([`Shared`]). Only this top layer sees every layer at once; each layer below gets from here
//! what it needs as parameters.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Error;
use crate::odb::{PackThread, RecentWrites, Repo};
use crate::refs::{BranchState, Branches, CommitQueue, RecentCommits, StoreLock};
use crate::tree::{CachedRepo, TreeCache};

/// The repository shared by every clone of a store, its snapshots, commits and transactions. Holds
/// no lock: a snapshot may outlive its store.
pub(crate) struct State {
    /// The objects and their packs.
    odb: Arc<Repo>,
    /// Decoded trees by id, so that big trees are not decoded again by every reader.
    tree_cache: TreeCache,
    /// Commits waiting to be written together (see the `refs` layer's group commit).
    commits: Arc<CommitQueue>,
    /// The commits written last.
    recent_commits: RecentCommits,
}

impl State {
    /// Opens the bare repository at `path`, creating it first if the directory is missing or empty.
    pub(crate) fn open_or_init(path: &Path) -> Result<State, Error> {
        Ok(State {
            odb: Arc::new(Repo::open_or_init(path)?),
            tree_cache: TreeCache::default(),
            commits: Arc::default(),
            recent_commits: RecentCommits::default(),
        })
    }

    /// The object database.
    pub(crate) fn odb(&self) -> &Arc<Repo> {
        &self.odb
    }

    /// A handle for one operation, reading trees through the cache. Merged packs are deleted only
    /// while no handle is on loan, so handles are borrowed per operation (see the odb's `repo`).
    pub(crate) fn get(&self) -> CachedRepo<'_> {
        CachedRepo::new(self.odb.get(), &self.tree_cache)
    }

    /// The cache of decoded trees.
    #[cfg(test)]
    pub(crate) fn tree_cache(&self) -> &TreeCache {
        &self.tree_cache
    }

    /// The queue of commits to write together.
    pub(crate) fn commits(&self) -> &Arc<CommitQueue> {
        &self.commits
    }

    /// The commits written last.
    pub(crate) fn recent_commits(&self) -> &RecentCommits {
        &self.recent_commits
    }

    /// The objects written last.
    pub(crate) fn recent(&self) -> &RecentWrites {
        self.odb.recent()
    }

    /// The thread that writes the start of packs, or their checksums, beside commits.
    pub(crate) fn pack_thread(&self) -> &Arc<PackThread> {
        self.odb.pack_thread()
    }

    /// Merges packs in the background if enough have gathered.
    pub(crate) fn maintain_in_background(&self) {
        self.odb.maintain_in_background();
    }

    /// Waits until the pack maintenance started by earlier commits has finished.
    pub(crate) async fn wait_for_maintenance(&self) {
        self.odb.wait_for_maintenance().await;
    }
}

/// An open store: its repository, the in-process state of its branches and its lock, released
/// when the last [`Store`](crate::Store), [`Branch`](crate::Branch) or
/// [`Transaction`](crate::Transaction) holding this is dropped.
pub(crate) struct Shared {
    path: PathBuf,
    repo: Arc<State>,
    branches: Branches,
    _lock: StoreLock,
}

impl Shared {
    /// Opens (or creates) the repository at `path` and takes its lock.
    pub(crate) fn open(path: &Path) -> Result<Shared, Error> {
        // The repository is created before the lock file because `git init --bare` wants an empty directory.
        let repo = State::open_or_init(path)?;
        let lock = StoreLock::acquire(path)?;
        Ok(Shared {
            path: path.to_owned(),
            repo: Arc::new(repo),
            branches: Branches::default(),
            _lock: lock,
        })
    }

    /// The store's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The repository.
    pub(crate) fn repo(&self) -> &Arc<State> {
        &self.repo
    }

    /// The in-process state of `name`, made on first use from the branch's current head.
    pub(crate) fn branch_state(&self, name: &crate::BranchName) -> Arc<BranchState> {
        self.branches.state(self.repo.odb(), name)
    }
}

/// Runs blocking Git work on tokio's blocking pool.
pub(crate) async fn run_blocking<T, F>(work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(Error::Task)?
}
