//! The store itself ([`Store`]), its branches ([`Branch`]) and commits ([`Commit`]): opening and
//! locking the repository, reading refs and commits, and per-branch commit serialisation and watches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::lock::StoreLock;
use crate::repo::Repo;
use crate::transaction::Transaction;
use crate::{BranchName, CommitId, Error, Snapshot};

/// A Git-backed state store owned exclusively by this engine. Cheap to clone; the lock is released
/// when the last clone (and the last [`Branch`] or [`Transaction`] made from it) is dropped.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    repo: Arc<Repo>,
    branches: Mutex<HashMap<BranchName, Arc<BranchState>>>,
    _lock: StoreLock,
}

/// In-process state of one branch: commits to it are serialised, and its head is broadcast.
pub(crate) struct BranchState {
    pub(crate) commit_lock: tokio::sync::Mutex<()>,
    pub(crate) head: watch::Sender<Option<CommitId>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
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
        // The repository is created before the lock file because `git init --bare` wants an empty directory.
        let repo = Repo::open_or_init(path)?;
        let lock = StoreLock::acquire(path)?;
        Ok(Store {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                repo: Arc::new(repo),
                branches: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
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
        crate::compact::size_of(&self.shared.path, &self.shared.path)
    }

    /// The store's directory (the bare repository).
    pub fn path(&self) -> &Path {
        &self.shared.path
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
        self.shared.repo.wait_for_maintenance().await;
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
        let repo = Arc::clone(&self.shared.repo);
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
        let repo = Arc::clone(&self.shared.repo);
        if let Some(data) = repo.recent().commit(id) {
            return Ok(Commit { data, repo });
        }
        run_blocking(move || load_commit(&repo, id)).await
    }

    pub(crate) fn repo(&self) -> &Arc<Repo> {
        &self.shared.repo
    }

    /// The in-process state of `name`, made on first use from the branch's current head.
    pub(crate) fn branch_state(&self, name: &BranchName) -> Arc<BranchState> {
        let mut branches = self
            .shared
            .branches
            .lock()
            .expect("branch table lock poisoned");
        if let Some(state) = branches.get(name) {
            return Arc::clone(state);
        }
        let head = match read_head(&self.shared.repo.get(), name) {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(branch = %name, %error, "cannot read branch head; watching from none");
                None
            }
        };
        let state = Arc::new(BranchState {
            commit_lock: tokio::sync::Mutex::new(()),
            head: watch::Sender::new(head),
        });
        branches.insert(name.clone(), Arc::clone(&state));
        state
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

/// Reads the commit the branch points at (`None` if the branch does not exist).
pub(crate) fn read_head(
    repo: &gix::Repository,
    name: &BranchName,
) -> Result<Option<CommitId>, Error> {
    let reference = repo
        .try_find_reference(name.full_ref().as_str())
        .map_err(Error::git("read branch reference"))?;
    match reference {
        None => Ok(None),
        // Our branches point straight at commits; only peel (which reads objects) other kinds.
        Some(reference) if reference.target().try_id().is_some() => {
            let id = reference
                .target()
                .try_id()
                .expect("checked just above")
                .to_owned();
            Ok(Some(CommitId::from_object_id(id)))
        }
        Some(mut reference) => {
            let id = reference
                .peel_to_id()
                .map_err(Error::git("resolve branch reference"))?;
            Ok(Some(CommitId::from_object_id(id.detach())))
        }
    }
}

/// Name and e-mail of the author and committer of every commit.
const IDENTITY: (&str, &str) = ("datakit-ci", "datakit-ci@localhost");

/// The author and committer of every commit, now.
pub(crate) fn signature() -> gix::actor::Signature {
    gix::actor::Signature {
        name: IDENTITY.0.into(),
        email: IDENTITY.1.into(),
        time: gix::date::Time::now_utc(),
    }
}

/// Moves `refs/heads/<branch>` to `new` if it still is `expected` (compare-and-swap).
pub(crate) fn update_head(
    repo: &gix::Repository,
    branch: &BranchName,
    new: gix::ObjectId,
    expected: Option<CommitId>,
) -> Result<(), Error> {
    use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

    let name = branch
        .full_ref()
        .try_into()
        .map_err(Error::git_other("make reference name"))?;
    let expected = match expected {
        Some(id) => PreviousValue::MustExistAndMatch(gix::refs::Target::Object(id.object_id())),
        None => PreviousValue::MustNotExist,
    };
    let edit = RefEdit {
        change: Change::Update {
            log: LogChange {
                mode: RefLog::AndReference,
                force_create_reflog: false,
                message: "datakit-ci commit".into(),
            },
            expected,
            new: gix::refs::Target::Object(new),
        },
        name,
        deref: false,
    };
    let signature = signature();
    let mut time = gix::date::parse::TimeBuf::default();
    repo.edit_references_as(Some(edit), Some(signature.to_ref(&mut time)))
        .map_err(Error::git("update branch reference"))?;
    Ok(())
}

/// Loads commit `id`: one of the last written if it is, else from the object database.
pub(crate) fn load_commit(repo: &Arc<Repo>, id: CommitId) -> Result<Commit, Error> {
    let data = match repo.recent().commit(id) {
        Some(data) => data,
        None => Arc::new(read_commit(&repo.get(), id)?),
    };
    Ok(Commit {
        data,
        repo: Arc::clone(repo),
    })
}

/// Reads and decodes the stored commit `id`. Every read of a commit goes through here (and so
/// through [`crate::repo::find_object`]): a commit that a branch was just moved to may be in a pack
/// this handle has not seen yet.
pub(crate) fn read_commit(handle: &gix::Repository, id: CommitId) -> Result<CommitData, Error> {
    let Some((gix::objs::Kind::Commit, data)) = crate::repo::find_object(handle, &id.object_id())?
    else {
        return Err(Error::MissingCommit { id });
    };
    let decoded = gix::objs::CommitRef::from_bytes(&data, handle.object_hash())
        .map_err(Error::git("decode commit"))?;
    let time = decoded
        .committer()
        .map_err(Error::git("decode commit"))?
        .time()
        .map_err(Error::git("decode commit time"))?
        .seconds;
    Ok(CommitData {
        id,
        parents: decoded.parents().map(CommitId::from_object_id).collect(),
        message: String::from_utf8_lossy(decoded.message).into_owned(),
        tree: decoded.tree(),
        time,
    })
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
        let store = self.store.clone();
        let name = self.name.clone();
        run_blocking(move || Transaction::open(store, name)).await
    }

    /// Watches the branch head: the receiver's current value is the head now, and it changes after
    /// every commit made to this branch through this store. Nothing else writes to the store while we
    /// hold its lock, so in-process notification is enough.
    pub fn watch(&self) -> watch::Receiver<Option<CommitId>> {
        self.store.branch_state(&self.name).head.subscribe()
    }
}

/// A decoded commit.
pub(crate) struct CommitData {
    pub(crate) id: CommitId,
    pub(crate) parents: Vec<CommitId>,
    pub(crate) message: String,
    /// Its root tree.
    pub(crate) tree: gix::ObjectId,
    /// The committer's time, in seconds since the Unix epoch.
    pub(crate) time: i64,
}

/// A commit of the store. Cheap to clone.
#[derive(Clone)]
pub struct Commit {
    data: Arc<CommitData>,
    repo: Arc<Repo>,
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commit")
            .field("id", &self.data.id)
            .field("parents", &self.data.parents)
            .field("message", &self.data.message)
            .finish()
    }
}

impl Commit {
    /// The commit's id.
    pub fn id(&self) -> CommitId {
        self.data.id
    }

    /// The parent commits (none for the first commit of a branch).
    pub fn parents(&self) -> &[CommitId] {
        &self.data.parents
    }

    /// The commit message, exactly as given to [`Transaction::commit`].
    pub fn message(&self) -> &str {
        &self.data.message
    }

    /// When the commit was made (its committer time, to the second).
    pub fn time(&self) -> std::time::SystemTime {
        let seconds = self.data.time;
        match u64::try_from(seconds) {
            Ok(after) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(after),
            Err(_) => {
                std::time::UNIX_EPOCH - std::time::Duration::from_secs(seconds.unsigned_abs())
            }
        }
    }

    pub(crate) fn tree_object_id(&self) -> gix::ObjectId {
        self.data.tree
    }

    /// The tree of the commit.
    pub fn tree(&self) -> Snapshot {
        Snapshot::new(Arc::clone(&self.repo), self.data.tree)
    }
}
