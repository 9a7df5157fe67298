//! The fetch cache: a [`Builder`] that makes the head commit of a resolved target available in the
//! local repository as the branch `git-pull-of-<hash>`, fetching it from `origin` if needed.

use std::sync::Arc;

use datakit_ci_cache::{Build, Builder};
use datakit_ci_log::LiveLog;
use datakit_ci_store::{BranchName, Snapshot, StorePath};
use datakit_ci_term::{CommitHash, Target};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::git::{git, git_with_header};
use crate::objects::{Objects, ObjectsError, PACK_LIMIT};
use crate::repo::{Core, run_git};
use crate::{Error, error_chain};

/// Fetches the heads of targets into one repository.
///
/// The value is the commit's hash; [`Repo::fetch_head`](crate::Repo::fetch_head) pairs it with the
/// repository. (Storing the `Commit` itself in the cache would make the repository's cache hold
/// its own repository.)
pub(crate) struct Fetcher {
    core: Arc<Core>,
}

impl Fetcher {
    pub(crate) fn new(core: Arc<Core>) -> Fetcher {
        Fetcher { core }
    }

    async fn fetch(
        &self,
        log: &LiveLog,
        cancel: &CancellationToken,
        target: &Target,
    ) -> Result<(), Error> {
        let dir = self.core.dir();
        let hash = target.head();
        let id = object_id(&self.core, hash)?;
        if self
            .blocking(move |core| core.objects().contains_known(&id))
            .await?
        {
            log.log(&format!(
                "Commit {hash} is available locally, so not fetching"
            ));
            return self.set_branch(hash).await;
        }
        if let Some(origin) = self.core.objects().local_origin() {
            log.log(&format!("Copying commit {hash} from {}", origin.display()));
            match self.copy_from_origin(log, id).await? {
                Ok(copied) => {
                    log.log(&format!("Copied {} objects", copied.unwrap_or(0)));
                    return self.set_branch(hash).await;
                }
                // E.g. the ref moved and the commit was garbage-collected: ask origin for the ref.
                Err(e) => log.log(&format!("{e}; fetching instead")),
            }
        }
        log.log("Fetching PR branch");
        let source = match target {
            Target::Pr(pr) => format!("pull/{}/head", pr.number),
            Target::Ref(r) => format!("refs/{}", r.name),
        };
        // No destination ref and no tags: concurrent fetches into this repository then create no
        // refs (auto-followed tags and temporary refs made about 2% of 500 concurrent builds fail
        // on ref locks); the objects land in the object database, and the branch below makes
        // them reachable (automatic gc is off for the plugin's commands, see `git.rs`).
        let header = self.core.authorization().await;
        let fetch = git_with_header(
            dir,
            ["fetch", "--no-tags", "origin", &source],
            header.as_deref(),
        )
        .log(log.clone())
        .cancel(cancel.clone());
        run_git(dir, fetch).await?;
        // The ref may have moved on since the metadata named this commit.
        if !self
            .blocking(move |core| core.objects().contains(&id))
            .await?
        {
            return Err(Error::Objects {
                dir: dir.to_owned(),
                message: format!("fetching {source} from origin did not bring commit {hash}"),
            });
        }
        self.set_branch(hash).await
    }

    /// Copies commit `id` from the local origin, in one pack with the copies other fetches asked
    /// for meanwhile (`Objects::queue_copy`).
    async fn copy_from_origin(
        &self,
        log: &LiveLog,
        id: gix::ObjectId,
    ) -> Result<Result<Option<usize>, ObjectsError>, Error> {
        let (outcome, lead) = self.core.objects().queue_copy(id);
        if lead {
            // Runs to the end even if this fetch is cancelled meanwhile, so the copies queued
            // behind it are served.
            self.blocking(|core| core.objects().copy_queued()).await?;
        }
        let outcome = outcome.await.map_err(|_| Error::Objects {
            dir: self.core.dir().to_owned(),
            message: "the copy of the commit from origin stopped without an outcome".to_owned(),
        })?;
        if lead {
            self.repack_if_needed(log).await;
        }
        Ok(outcome)
    }

    /// Consolidates the repository's small packs (`git repack --geometric=2 -d`: rolls the
    /// small packs and any loose objects into one, reachable or not, and leaves the big packs
    /// alone) when copies have made more than `objects::PACK_LIMIT` of them. Git readers, such as
    /// builds' clones borrowing these objects, cope with packs replaced under them. A failure
    /// only costs lookup speed: it is logged, not returned.
    async fn repack_if_needed(&self, log: &LiveLog) {
        /// Ends the claim even if the fetch is cancelled during the repack.
        struct Claim<'a>(&'a Objects);
        impl Drop for Claim<'_> {
            fn drop(&mut self) {
                self.0.repacked();
            }
        }
        if !self.core.objects().claim_repack() {
            return;
        }
        let _claim = Claim(self.core.objects());
        let dir = self.core.dir();
        log.log(&format!(
            "More than {PACK_LIMIT} packs in {}: consolidating them",
            dir.display()
        ));
        let repack = git(dir, ["repack", "-d", "-q", "--geometric=2"]).log(log.clone());
        if let Err(e) = run_git(dir, repack).await {
            tracing::warn!(dir = %dir.display(), error = %error_chain(&e), "cannot consolidate packs");
        }
    }

    /// Points the local branch `git-pull-of-<hash>` at the commit, in-process.
    async fn set_branch(&self, hash: &CommitHash) -> Result<(), Error> {
        let _git = self.core.git_lock().lock().await;
        let (branch, id) = (local_branch(hash), object_id(&self.core, hash)?);
        self.blocking(move |core| core.objects().set_branch(&branch, id))
            .await?
            .map_err(|e| Error::Objects {
                dir: self.core.dir().to_owned(),
                message: e.to_string(),
            })
    }

    /// Runs `f` on the blocking thread pool (gix reads and writes files synchronously).
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let core = Arc::clone(&self.core);
        tokio::task::spawn_blocking(move || f(&core))
            .await
            .map_err(|e| Error::Io {
                path: self.core.dir().to_owned(),
                source: std::io::Error::other(e),
            })
    }
}

/// The gix id of a commit hash.
fn object_id(core: &Core, hash: &CommitHash) -> Result<gix::ObjectId, Error> {
    gix::ObjectId::from_hex(hash.as_str().as_bytes()).map_err(|e| Error::Objects {
        dir: core.dir().to_owned(),
        message: format!(
            "{hash} is not a SHA-1 commit hash (only SHA-1 repositories are supported): {e}"
        ),
    })
}

impl Builder for Fetcher {
    type Key = Target;
    type Context = ();
    type Value = CommitHash;

    fn name(&self) -> String {
        format!("git:{}", self.core.dir().display())
    }

    /// Names the commit, not the target: the result is shared by every target whose head it
    /// is, and the first target to ask would name it for all of them.
    fn title(&self, target: &Target) -> String {
        format!(
            "Git fetch commit {} of {}",
            target.head().short(8),
            target.id().repo()
        )
    }

    fn branch(&self, target: &Target) -> BranchName {
        BranchName::new(local_branch(target.head()))
            .expect("a hexadecimal hash makes a valid branch name")
    }

    async fn generate(
        &self,
        build: Build<'_>,
        _context: &(),
        target: &Target,
    ) -> Result<CommitHash, String> {
        let span = tracing::info_span!(
            "git_fetch",
            dir = %self.core.dir().display(),
            target = %target.id(),
            head = %target.head()
        );
        self.fetch(build.log, build.cancel, target)
            .instrument(span)
            .await
            .map_err(|e| error_chain(&e))?;
        // Several repositories (a fork and its upstream) may hold the same commit and so share
        // this branch: record which one the commit was fetched into.
        let marker = StorePath::new(FETCHED_INTO).expect("constant path is valid");
        let dir = self.core.dir().to_string_lossy().into_owned();
        build
            .transaction
            .create_file(&marker, dir)
            .map_err(|e| error_chain(&e))?;
        Ok(target.head().clone())
    }

    fn load(&self, tree: &Snapshot, target: &Target) -> Result<CommitHash, String> {
        let marker = StorePath::new(FETCHED_INTO).expect("constant path is valid");
        let fetched_into = tree.read_file(&marker).map_err(|e| error_chain(&e))?;
        let dir = self.core.dir().to_string_lossy();
        match fetched_into {
            Some(recorded) if recorded == dir.as_bytes() => Ok(target.head().clone()),
            // Fetched into another repository (or by an older version): fetch again here.
            _ => Err(format!(
                "commit {} was not fetched into {dir}",
                target.head()
            )),
        }
    }
}

/// The file of a fetch's cache branch naming the repository directory it fetched into.
const FETCHED_INTO: &str = "value/fetched-into";

/// `git-pull-of-<hash>`: the local branch and the cache branch of a fetched commit.
fn local_branch(hash: &CommitHash) -> String {
    format!("git-pull-of-{hash}")
}
