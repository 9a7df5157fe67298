//! The fetch cache: a [`Builder`] that makes the head commit of a resolved target available in the
//! local repository as the branch `git-pull-of-<hash>`, fetching it from `origin` if needed.

use std::sync::Arc;

use datakit_ci_cache::{Build, Builder};
use datakit_ci_log::LiveLog;
use datakit_ci_store::{BranchName, Snapshot, StorePath};
use datakit_ci_term::{CommitHash, Target};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::git::git;
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
        {
            let _git = self.core.git_lock().lock().await;
            if make_local_branch(&self.core, hash).await {
                log.log(&format!(
                    "Commit {hash} is available locally, so not fetching"
                ));
                return Ok(());
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
        let fetch = git(dir, ["fetch", "--no-tags", "origin", &source])
            .log(log.clone())
            .cancel(cancel.clone());
        run_git(dir, fetch).await?;
        let _git = self.core.git_lock().lock().await;
        let branch =
            git(dir, ["branch", "-f", &local_branch(hash), hash.as_str()]).log(log.clone());
        run_git(dir, branch).await
    }
}

impl Builder for Fetcher {
    type Key = Target;
    type Context = ();
    type Value = CommitHash;

    fn name(&self) -> String {
        format!("git:{}", self.core.dir().display())
    }

    fn title(&self, target: &Target) -> String {
        format!("Git fetch {} ({})", target.id(), target.head().short(8))
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

/// Tries `git branch -f git-pull-of-<hash> <hash>`; whether it worked (the commit is local).
async fn make_local_branch(core: &Core, hash: &CommitHash) -> bool {
    let cmd = git(
        core.dir(),
        ["branch", "-f", &local_branch(hash), hash.as_str()],
    );
    match datakit_ci_process::run_with_exit_status(cmd).await {
        Ok(status) => status.success(),
        Err(e) => {
            tracing::warn!(dir = %core.dir().display(), error = %e, "cannot run git branch");
            false
        }
    }
}
