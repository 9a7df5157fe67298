//! `Repo` (a local working directory, its lock and its fetch cache) and `Commit`: opening or
//! cloning the directory, ancestry checks, and running code in a checkout or a temporary clone.
//! Fetching lives in `fetch`, cached commands in `command`.

use std::collections::HashMap;
use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

use datakit_ci_cache::Cache;
use datakit_ci_log::{LiveLog, PendingReasonGuard};
use datakit_ci_pool::{Holder, MonitoredPool};
use datakit_ci_process::{Cmd, ExitStatus, run, run_with_exit_status};
use datakit_ci_term::{CommitHash, JobId, TargetId, Term};

use crate::credentials::RemoteCredentials;
use crate::fetch::Fetcher;
use crate::git::{capture, git, git_with_header};
use crate::objects::Objects;
use crate::shared_clone::SharedClone;
use crate::{Error, Services};

/// A local, non-bare Git working directory the CI fetches into and builds from.
///
/// Cheap to clone: clones share the directory lock, the git mutex and the fetch cache.
#[derive(Clone)]
pub struct Repo {
    core: Arc<Core>,
    fetch: Cache<Fetcher>,
}

/// The parts of a [`Repo`] the fetch cache needs too (the cache is not in here, so that cached
/// values never keep their own cache alive).
pub(crate) struct Core {
    dir: PathBuf,
    /// The directory lock: a pool of one, shown in the UI.
    lock: MonitoredPool,
    /// Serialises the git commands that move refs or change the index (the original's global
    /// `git_lock`, per repository here).
    git_lock: tokio::sync::Mutex<()>,
    /// Answers of [`Repo::is_after`], by (old, commit).
    ancestry: Mutex<HashMap<(CommitHash, CommitHash), bool>>,
    /// The object database and refs, for fetch steps that need no `git` process.
    objects: Objects,
    /// How [`Repo::with_clone`] makes its clones.
    clones: SharedClone,
    /// Where builds on this repository are recorded.
    services: Services,
    /// The `Authorization` header for fetches from `origin` over https, if it needs one.
    credentials: Option<Arc<dyn RemoteCredentials>>,
}

impl Repo {
    /// Opens the local non-bare working directory `dir` (made absolute).
    ///
    /// If `dir` does not exist: with a `remote`, runs `git clone <remote> <dir>` first; without,
    /// fails with [`Error::MissingDirectory`]. A directory that is not the top level of a Git work
    /// tree gives [`Error::NotWorkTree`]. Creates the directory lock, a monitored pool named
    /// `<dir>` with capacity 1 in `services.pools` (so a directory can be opened once per
    /// [`Pools`](datakit_ci_pool::Pools)), and the fetch cache, named `git:<dir>`.
    ///
    /// Clones over SSH accept a host key never seen before (`StrictHostKeyChecking=accept-new`,
    /// unless `GIT_SSH_COMMAND` is set), but never a changed one.
    pub async fn open(
        dir: &Path,
        remote: Option<&str>,
        services: &Services,
    ) -> Result<Repo, Error> {
        Repo::open_with_credentials(dir, remote, services, None).await
    }

    /// [`Repo::open`], with `credentials` giving the `Authorization` header of the clone and of
    /// every fetch from `origin` over http(s) (e.g. a GitHub installation token).
    pub async fn open_with_credentials(
        dir: &Path,
        remote: Option<&str>,
        services: &Services,
        credentials: Option<Arc<dyn RemoteCredentials>>,
    ) -> Result<Repo, Error> {
        let dir = std::path::absolute(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let exists = match tokio::fs::metadata(&dir).await {
            Ok(metadata) => metadata.is_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => return Err(Error::Io { path: dir, source }),
        };
        if !exists {
            match remote {
                None => return Err(Error::MissingDirectory { dir }),
                Some(remote) => {
                    let header = authorization(credentials.as_deref()).await;
                    clone_remote(remote, &dir, header.as_deref()).await?
                }
            }
        }
        check_work_tree(&dir).await?;
        let opened = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let objects = Objects::open(&dir).map_err(|e| Error::NotWorkTree {
                    dir: dir.clone(),
                    detail: e.to_string(),
                })?;
                let clones = SharedClone::with_objects(&dir, &objects.objects_dir())?;
                Ok((objects, clones))
            })
        };
        let (objects, clones) = opened.await.map_err(|e| Error::Io {
            path: dir.clone(),
            source: std::io::Error::other(e),
        })??;
        let lock = MonitoredPool::new(
            dir.display().to_string(),
            1,
            &services.pool_metrics,
            &services.pools,
        )
        .map_err(|source| Error::Lock {
            dir: dir.clone(),
            source,
        })?;
        let core = Arc::new(Core {
            dir,
            lock,
            git_lock: tokio::sync::Mutex::new(()),
            ancestry: Mutex::new(HashMap::new()),
            objects,
            clones,
            services: services.clone(),
            credentials,
        });
        let fetch = Cache::new(
            Fetcher::new(Arc::clone(&core)),
            services.store.clone(),
            services.logs.clone(),
            &services.cache_metrics,
        );
        Ok(Repo { core, fetch })
    }

    /// The working directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.core.dir
    }

    /// The head commit of `target`, fetched into this repository.
    ///
    /// Resolves the target in the evaluation's metadata snapshot ([`Term::target`]; an unknown
    /// target fails with `Target <id> does not exist`), then looks the resolved PR or ref up in the
    /// fetch cache, on the branch `git-pull-of-<head hash>`, so that all targets with that head
    /// share one entry. The build makes the local branch `git-pull-of-<hash>` point at the commit,
    /// fetching it from `origin` (`pull/<N>/head` for a PR, `refs/<ref name>` for a ref) unless it
    /// is already available locally. Its title is `Git fetch commit <short hash> of <repo id>`.
    pub fn fetch_head(&self, target: TargetId) -> Term<Commit> {
        let repo = self.clone();
        Term::target(target).and_then(move |resolved| {
            let repo = repo.clone();
            repo.fetch
                .find((), resolved)
                .map(move |hash| Commit::new(repo.clone(), hash))
        })
    }

    /// Whether `old` is an ancestor of (or equal to) `commit`, by
    /// `git merge-base --is-ancestor <old> <commit>`: exit status 0 means yes, 1 no; anything else
    /// (an unknown commit, a signal) is an error. Answers are remembered per (old, commit).
    pub async fn is_after(&self, old: &CommitHash, commit: &Commit) -> Result<bool, Error> {
        let key = (old.clone(), commit.hash.clone());
        if let Some(answer) = self.core.ancestry().get(&key) {
            return Ok(*answer);
        }
        let dir = self.dir();
        let cmd = git(
            dir,
            [
                "merge-base",
                "--is-ancestor",
                old.as_str(),
                commit.hash.as_str(),
            ],
        );
        let command = cmd.display();
        let status = run_with_exit_status(cmd)
            .await
            .map_err(|source| git_error(dir, source))?;
        let answer = match status {
            ExitStatus::Exited(0) => true,
            ExitStatus::Exited(1) => false,
            status => {
                return Err(Error::UnexpectedStatus {
                    command,
                    dir: dir.to_owned(),
                    status,
                });
            }
        };
        self.core.ancestry().insert(key, answer);
        Ok(answer)
    }

    /// Runs `f(dir)` in the working directory reset to `commit`, holding the directory lock.
    ///
    /// Waits for the lock (first come, first served) with the pending reason
    /// `Waiting for lock on <dir>` on `log`, the holder shown as `job`. Holding it, runs
    /// `git reset --hard <hash>` and `git clean -xdf` (untracked and ignored files are removed;
    /// output to `log`), then `f(dir)`, and releases the lock when `f`'s future ends.
    pub async fn with_checkout<F, Fut, R>(
        &self,
        log: &LiveLog,
        job: &JobId,
        commit: &Commit,
        f: F,
    ) -> Result<R, Error>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = R>,
    {
        let dir = self.dir();
        self.locked(log, job, "checkout", async {
            {
                let _git = self.core.git_lock.lock().await;
                let reset = git(dir, ["reset", "--hard", commit.hash.as_str()]);
                run_git(dir, reset.log(log.clone())).await?;
                run_git(dir, git(dir, ["clean", "-xdf"]).log(log.clone())).await?;
            }
            Ok(f(dir.to_owned()).await)
        })
        .await
    }

    /// Runs `f(clone)` in a temporary clone of this repository at `commit`, then deletes the
    /// clone (also when `f` fails or the returned future is dropped).
    ///
    /// The clone is a fresh directory with the prefix `with_clone` in the services'
    /// [`temp_dir`](Services::temp_dir) (created if missing) or else the system's temporary
    /// directory, mode 0700, made by [`SharedClone`]: it shares this repository's object database
    /// (like `git clone --shared`), has `HEAD` detached at `commit` and `origin` set to this
    /// directory, and copies no refs. The directory lock is not taken: objects are only ever
    /// added (automatic gc is off for the plugin's commands). Output goes to `log`.
    pub async fn with_clone<F, Fut, R>(
        &self,
        log: &LiveLog,
        commit: &Commit,
        f: F,
    ) -> Result<R, Error>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = R>,
    {
        let tmp = self.temp_dir("with_clone")?;
        let clone_dir = tmp.path().to_owned();
        log.log(&format!(
            "Cloning {} at {} into {}",
            self.dir().display(),
            commit.hash,
            clone_dir.display()
        ));
        self.core
            .clones
            .checkout(&commit.hash, &clone_dir, Some(log))
            .await?;
        let output = f(clone_dir.clone()).await;
        tokio::task::spawn_blocking(move || tmp.close())
            .await
            .expect("removing a directory does not panic")
            .map_err(|source| Error::Io {
                path: clone_dir,
                source,
            })?;
        Ok(output)
    }

    /// The application's services this repository records its builds with.
    /// A fresh directory `<prefix>…` (mode 0700, removed when dropped) where the builds of
    /// this repository make their temporary files: the services'
    /// [`temp_dir`](Services::temp_dir), else the system's temporary directory.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, Error> {
        temp_dir(self.core.services.temp_dir.as_deref(), prefix)
    }

    pub(crate) fn services(&self) -> &Services {
        &self.core.services
    }

    /// Runs `fut` holding the directory lock, with the pending reason `Waiting for lock on <dir>`
    /// on `log` only while waiting for it.
    async fn locked<Fut: Future>(
        &self,
        log: &LiveLog,
        job: &JobId,
        label: &str,
        fut: Fut,
    ) -> Fut::Output {
        let holder = Holder {
            job: job.to_string(),
            label: label.to_owned(),
            log_branch: Some(log.branch().to_owned()),
        };
        let acquired = AtomicBool::new(false);
        let waiting: Mutex<Option<PendingReasonGuard>> = Mutex::new(None);
        let inner = async {
            acquired.store(true, Ordering::Relaxed);
            drop(lock_guard(&waiting).take());
            fut.await
        };
        let mut use_lock = pin!(self.core.lock.use_(holder, None, inner));
        let first = poll_fn(|cx| Poll::Ready(use_lock.as_mut().poll(cx))).await;
        match first {
            Poll::Ready(output) => output,
            Poll::Pending => {
                if !acquired.load(Ordering::Relaxed) {
                    let reason = format!("Waiting for lock on {}", self.dir().display());
                    *lock_guard(&waiting) = Some(log.push_pending_reason(reason));
                }
                let output = use_lock.await;
                drop(lock_guard(&waiting).take());
                output
            }
        }
    }
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repo").field("dir", &self.core.dir).finish()
    }
}

impl Core {
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `Authorization` header for a fetch from `origin`, if credentials are configured.
    pub(crate) async fn authorization(&self) -> Option<String> {
        authorization(self.credentials.as_deref()).await
    }

    /// The per-repository git mutex.
    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }

    pub(crate) fn git_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.git_lock
    }

    fn ancestry(&self) -> std::sync::MutexGuard<'_, HashMap<(CommitHash, CommitHash), bool>> {
        self.ancestry
            .lock()
            .expect("no code panics while holding the ancestry memo")
    }
}

/// A commit of a local repository: the [`Repo`] and the commit's hash.
///
/// Two commits are equal when they have the same hash in the same directory.
#[derive(Clone)]
pub struct Commit {
    repo: Repo,
    hash: CommitHash,
}

impl Commit {
    pub(crate) fn new(repo: Repo, hash: CommitHash) -> Commit {
        Commit { repo, hash }
    }

    /// The commit's hash.
    pub fn hash(&self) -> &CommitHash {
        &self.hash
    }

    /// The repository the commit was fetched into.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }
}

impl fmt::Debug for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commit")
            .field("dir", &self.repo.dir())
            .field("hash", &self.hash.as_str())
            .finish()
    }
}

impl fmt::Display for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.hash, self.repo.dir().display())
    }
}

impl PartialEq for Commit {
    fn eq(&self, other: &Commit) -> bool {
        self.hash == other.hash && self.repo.dir() == other.repo.dir()
    }
}

impl Eq for Commit {}

impl Hash for Commit {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash.hash(state);
        self.repo.dir().hash(state);
    }
}

/// Runs a git command, mapping its failure to [`Error::Git`].
pub(crate) async fn run_git(dir: &Path, cmd: Cmd) -> Result<(), Error> {
    run(cmd).await.map_err(|source| git_error(dir, source))
}

pub(crate) fn git_error(dir: &Path, source: datakit_ci_process::Error) -> Error {
    Error::Git {
        dir: dir.to_owned(),
        source,
    }
}

fn not_utf8(path: &Path) -> Error {
    Error::Io {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
    }
}

fn lock_guard(
    waiting: &Mutex<Option<PendingReasonGuard>>,
) -> std::sync::MutexGuard<'_, Option<PendingReasonGuard>> {
    waiting
        .lock()
        .expect("no code panics while holding the pending-reason slot")
}

/// A fresh temporary directory `<prefix>…`, mode 0700, in `parent` (created if missing) or
/// the system's temporary directory.
fn temp_dir(parent: Option<&Path>, prefix: &str) -> Result<tempfile::TempDir, Error> {
    use std::os::unix::fs::PermissionsExt;
    let parent = parent.map_or_else(std::env::temp_dir, Path::to_owned);
    let made = std::fs::create_dir_all(&parent).and_then(|()| {
        tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
    });
    made.map_err(|source| Error::Io {
        path: parent,
        source,
    })
}

/// The header `credentials` give now; a failure is logged and the command goes on without.
pub(crate) async fn authorization(credentials: Option<&dyn RemoteCredentials>) -> Option<String> {
    match credentials?.authorization().await {
        Ok(header) => Some(header),
        Err(message) => {
            tracing::warn!(%message, "no credentials for the remote; trying without");
            None
        }
    }
}

/// `git clone <remote> <dir>`, output to the application log.
async fn clone_remote(remote: &str, dir: &Path, header: Option<&str>) -> Result<(), Error> {
    let clone_error = |source| Error::Clone {
        remote: remote.to_owned(),
        dir: dir.to_owned(),
        source,
    };
    let parent = dir.parent().unwrap_or(dir);
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|source| Error::Io {
            path: parent.to_owned(),
            source,
        })?;
    let target = dir.to_str().ok_or_else(|| not_utf8(dir))?;
    // No reflogs: see `Objects::open` (`git fetch` of a target's ref would write them otherwise).
    let mut cmd = git_with_header(
        parent,
        [
            "clone",
            "--config",
            "core.logAllRefUpdates=false",
            "--",
            remote,
            target,
        ],
        header,
    )
    .stdout(|chunk| tracing::info!("git clone: {}", String::from_utf8_lossy(chunk).trim_end()));
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        cmd = cmd.env("GIT_SSH_COMMAND", "ssh -o StrictHostKeyChecking=accept-new");
    }
    tracing::info!(remote, dir = %dir.display(), "cloning");
    run(cmd).await.map_err(|source| {
        tracing::error!("Failed to clone Git repository: {source}");
        clone_error(source)
    })
}

/// Checks that `dir` is the top level of a non-bare work tree.
async fn check_work_tree(dir: &Path) -> Result<(), Error> {
    let not_work_tree = |detail: String| Error::NotWorkTree {
        dir: dir.to_owned(),
        detail,
    };
    let output = capture(git(dir, ["rev-parse", "--show-toplevel"]))
        .await
        .map_err(|source| git_error(dir, source))?;
    if !output.status.success() {
        return Err(not_work_tree(output.stderr.trim().to_owned()));
    }
    let top = PathBuf::from(output.stdout.trim_end_matches('\n'));
    let canonical = async |path: &Path| {
        tokio::fs::canonicalize(path)
            .await
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })
    };
    if canonical(&top).await? != canonical(dir).await? {
        return Err(not_work_tree(format!(
            "it is inside the work tree at {:?}",
            top
        )));
    }
    Ok(())
}
