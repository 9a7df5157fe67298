//! The store itself ([`Store`]) and its branches ([`Branch`]): opening and locking the
//! repository, listing branches, reading heads and commits, opening transactions and watches.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::commit::{Commit, load_commit, recent_commit};
use crate::refs::read_head;
use crate::state::{Shared, State, run_blocking};
use crate::transaction::Transaction;
use crate::{BranchName, CommitId, Error};

/// A Git-backed state store owned exclusively by this engine. Cheap to clone; the lock is released
/// when the last clone (and the last [`Branch`] or [`Transaction`] made from it) is dropped.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path())
            .finish()
    }
}

impl Store {
    /// Opens the bare repository at `path`, creating it (like `git init --bare`) if the directory is
    /// missing or empty, and takes the exclusive lock `<path>/datakit-ci.lock` (holding our PID).
    ///
    /// A second opener, in another process or this one, gets [`Error::Locked`] naming the holder's PID.
    /// This does a little blocking file-system work; call it at start-up.
    pub fn open(path: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Store {
            shared: Arc::new(Shared::open(path)?),
        })
    }

    /// Frees the disk that objects no branch reaches any more take (e.g. logs removed by
    /// retention): repacks what is reachable into one pack and deletes the rest, with `git`. Takes
    /// the store's lock, so it runs only while no store has the repository open ([`Error::Locked`]
    /// otherwise, after waiting up to 2 s for a store of this process that is closing): call it
    /// at start-up, before [`Store::open`]. Blocking.
    pub fn compact(path: &Path) -> Result<crate::Compaction, Error> {
        crate::compact::compact(path)
    }

    /// The bytes the store's files take on disk (walks its directory: blocking, and as slow as
    /// the number of files; the store keeps few).
    pub fn size_on_disk(&self) -> Result<u64, Error> {
        crate::compact::size_of(self.shared.path(), self.shared.path())
    }

    /// The store's directory (the bare repository).
    pub fn path(&self) -> &Path {
        self.shared.path()
    }

    /// Waits until the pack maintenance started by earlier commits has finished.
    ///
    /// Every commit writes one pack, and packs are merged (and the merged ones deleted) in the
    /// background once enough have gathered, so a commit never waits for a merge. Nothing needs to
    /// wait for it: a merge only makes lookups cheaper, and a run cut short by the process ending
    /// leaves at most a temporary file (removed the next time the store is opened) or packs whose
    /// objects are also in the merged one (merged again later). Tests and benchmarks that count the
    /// store's files wait for it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), datakit_ci_store::Error> {
    /// # let dir = tempfile::tempdir().expect("a temporary directory");
    /// let store = datakit_ci_store::Store::open(&dir.path().join("state.git"))?;
    /// store.wait_for_maintenance().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_maintenance(&self) {
        self.shared.repo().wait_for_maintenance().await;
    }

    /// A handle on the branch `name`, which may not exist yet.
    pub fn branch(&self, name: &BranchName) -> Branch {
        Branch {
            store: self.clone(),
            name: name.clone(),
        }
    }

    /// All branches, sorted by name.
    pub async fn branches(&self) -> Result<Vec<BranchName>, Error> {
        let repo = Arc::clone(self.shared.repo());
        run_blocking(move || {
            let repo = repo.get();
            let platform = repo.references().map_err(Error::git("list references"))?;
            let mut names = Vec::new();
            for reference in platform
                .local_branches()
                .map_err(Error::git("list branches"))?
            {
                let reference = reference.map_err(Error::git("read reference"))?;
                let short = reference.name().shorten().to_string();
                match BranchName::new(short) {
                    Ok(name) => names.push(name),
                    Err(error) => {
                        tracing::warn!(%error, "skipping branch with an unsupported name")
                    }
                }
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Loads the commit `id`.
    pub async fn commit(&self, id: CommitId) -> Result<Commit, Error> {
        let repo = Arc::clone(self.shared.repo());
        if let Some(commit) = recent_commit(&repo, id) {
            return Ok(commit);
        }
        run_blocking(move || load_commit(&repo, id)).await
    }

    pub(crate) fn repo(&self) -> &Arc<State> {
        self.shared.repo()
    }
}

/// A branch of the store (which may not exist yet). Cheap to clone.
#[derive(Clone)]
pub struct Branch {
    store: Store,
    name: BranchName,
}

impl std::fmt::Debug for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Branch").field("name", &self.name).finish()
    }
}

impl Branch {
    /// The branch's name.
    pub fn name(&self) -> &BranchName {
        &self.name
    }

    /// The commit the branch points at, or `None` if it does not exist.
    pub async fn head(&self) -> Result<Option<Commit>, Error> {
        let repo = Arc::clone(self.store.repo());
        let name = self.name.clone();
        run_blocking(move || match read_head(&repo.get(), &name)? {
            None => Ok(None),
            Some(id) => load_commit(&repo, id).map(Some),
        })
        .await
    }

    /// Opens a transaction on the branch's current head (or on an empty tree if it does not exist).
    pub async fn transaction(&self) -> Result<Transaction, Error> {
        let store = Arc::clone(&self.store.shared);
        let name = self.name.clone();
        run_blocking(move || Transaction::open(store, name)).await
    }

    /// Watches the branch head: the receiver's current value is the head now, and it changes after
    /// every commit made to this branch through this store. Nothing else writes to the store while we
    /// hold its lock, so in-process notification is enough.
    pub fn watch(&self) -> watch::Receiver<Option<CommitId>> {
        self.store.shared.branch_state(&self.name).head.subscribe()
    }
}
