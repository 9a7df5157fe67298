//! The Git plugin of datakit-ci (spec §5.5): fetch the head of a target into a local working
//! directory, check a commit out or clone it, and run cached commands on commits.
//!
//! # Overview
//!
//! - [`Services`] is what the plugin needs from the application: the state [`Store`], the live-log
//!   [`LogManager`] and the metrics/pool registries. There is no global state.
//! - [`Repo::open`] opens (cloning it first if asked) a local, non-bare working directory. Each
//!   `Repo` owns a directory lock (a [`MonitoredPool`](datakit_ci_pool::MonitoredPool) of one,
//!   named after the directory), an async mutex serialising the git commands that move refs or
//!   the index, and the *fetch cache*.
//! - [`Repo::fetch_head`] is a [`Term`] with the head [`Commit`] of a target, fetched into the
//!   local repository and recorded on the cache branch `git-pull-of-<hash>`.
//! - [`Repo::with_checkout`] runs a closure in the working directory reset to a commit, holding the
//!   directory lock; [`Repo::with_clone`] runs it in a temporary clone instead ([`SharedClone`]:
//!   it borrows the repository's objects and takes no lock), so builds of different commits run
//!   concurrently.
//! - When `origin` is a directory on this machine, [`Repo::fetch_head`] copies a missing commit's
//!   objects from it in-process instead of running `git fetch`.
//! - [`Command`] runs a list of argument vectors on a commit, in a clone or the checkout, cached
//!   on the branch `shell-of-<label>-on-<hash>`: the log and any failure are kept in the store, and
//!   the command runs again only when a rebuild is requested.
//!
//! # Example
//!
//! Test every new head of `main`: fetch it, then run `make test` on it in a temporary clone.
//!
//! ```
//! use datakit_ci_git::{Command, CommandConfig, Repo, Services};
//! use datakit_ci_term::{JobId, RefName, TargetId};
//! # use datakit_ci_store::{BranchName, Store, StorePath};
//! # fn git(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<String> {
//! #     let out = std::process::Command::new("git").args(args).current_dir(dir)
//! #         .env("GIT_AUTHOR_NAME", "A").env("GIT_AUTHOR_EMAIL", "a@example.com")
//! #         .env("GIT_COMMITTER_NAME", "A").env("GIT_COMMITTER_EMAIL", "a@example.com")
//! #         .output()?;
//! #     anyhow::ensure!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
//! #     Ok(String::from_utf8(out.stdout)?)
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! # let tmp = tempfile::tempdir()?;
//! # let origin = tmp.path().join("origin");
//! # std::fs::create_dir(&origin)?;
//! # git(&origin, &["init", "--quiet", "--initial-branch=main"])?;
//! # std::fs::write(origin.join("Makefile"), "test:\n\techo all good\n")?;
//! # git(&origin, &["add", "Makefile"])?;
//! # git(&origin, &["commit", "--quiet", "-m", "first"])?;
//! # let head = git(&origin, &["rev-parse", "HEAD"])?;
//! # let mut registry = prometheus_client::registry::Registry::default();
//! # let services = Services {
//! #     store: Store::open(&tmp.path().join("state.git"))?,
//! #     logs: Default::default(),
//! #     cache_metrics: datakit_ci_cache::CacheMetrics::new(&mut registry),
//! #     pool_metrics: datakit_ci_pool::PoolMetrics::new(&mut registry),
//! #     pools: Default::default(),
//! #     temp_dir: None,
//! #     health: Default::default(),
//! # };
//! # let metadata = services.store.branch(&BranchName::new("github-metadata")?);
//! # let mut transaction = metadata.transaction().await?;
//! # transaction.create_file(&StorePath::new("me/project/ref/heads/main/head")?, &head)?;
//! # transaction.commit("main moved").await?;
//! # let snapshot = metadata.head().await?.expect("just committed").tree();
//! # let remote = origin.to_str().expect("UTF-8 path");
//! // `services` comes from the application; `snapshot` is the `github-metadata` state, in
//! // which `me/project/ref/heads/main/head` names the commit to test.
//! let repo = Repo::open(&tmp.path().join("project"), Some(remote), &services).await?;
//! let make = Command::new(
//!     &repo,
//!     "make-test",
//!     vec![vec!["make".to_owned(), "test".to_owned()]],
//!     CommandConfig::default(),
//! )?;
//! let main = TargetId::Ref("me/project".parse()?, RefName::branch("main")?);
//! let test = make.run(repo.fetch_head(main.clone()));
//!
//! let evaluation = test
//!     .evaluate_until_settled(JobId::new(main, "test"), Some(snapshot))
//!     .await;
//! assert_eq!(evaluation.status.result, Ok(()));
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;

use datakit_ci_cache::CacheMetrics;
use datakit_ci_log::LogManager;
use datakit_ci_pool::{PoolMetrics, Pools};
use datakit_ci_store::Store;

mod command;
mod credentials;
mod environment;
mod fetch;
mod git;
mod objects;
mod pack;
mod repo;
mod shared_clone;
mod tree;

pub use command::{Command, CommandConfig};
pub use credentials::RemoteCredentials;
pub use environment::JobEnvironment;
pub use repo::{Commit, Repo};
pub use shared_clone::SharedClone;
pub use tree::{TreeEntry, TreeReader};

#[cfg(doc)]
use datakit_ci_term::Term;

/// What the plugin needs from the application (no globals): the state store, the live-log
/// manager, and the metrics/pool registries.
#[derive(Clone, Debug)]
pub struct Services {
    /// The state store, where cache branches are recorded.
    pub store: Store,
    /// The live logs of running builds.
    pub logs: LogManager,
    /// The `DataKitCI_cache_*` metrics.
    pub cache_metrics: CacheMetrics,
    /// The `DataKitCI_pool_*` metrics.
    pub pool_metrics: PoolMetrics,
    /// The pools shown on the UI's main page; each repository adds its directory lock.
    pub pools: Pools,
    /// Where [`Repo::with_clone`] makes its temporary clones; `None`: the system's temporary
    /// directory. A CI gives a directory of its state, which it empties when it starts, so that
    /// the clones of builds a crash interrupted do not pile up.
    pub temp_dir: Option<PathBuf>,
    /// Where plugins report trouble they retry (e.g. a Docker host that does not answer), for
    /// the dashboard; a program gives the engine's, so that one list shows everything.
    pub health: datakit_ci_health::Health,
}

/// Errors of the Git plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Repo::open`] was given a directory that does not exist, and no remote to clone.
    #[error("directory {dir:?} does not exist (and no remote was given to clone it from)")]
    MissingDirectory {
        /// The directory (made absolute).
        dir: PathBuf,
    },
    /// Cloning the remote into the directory failed.
    #[error("cannot clone {remote:?} into {dir:?}")]
    Clone {
        /// The remote given to [`Repo::open`].
        remote: String,
        /// The directory.
        dir: PathBuf,
        /// Why `git clone` failed.
        #[source]
        source: datakit_ci_process::Error,
    },
    /// The directory is not the top level of a (non-bare) Git working tree.
    #[error("{dir:?} is not the top level of a git work tree: {detail}")]
    NotWorkTree {
        /// The directory.
        dir: PathBuf,
        /// What git said, or where the work tree's top level is.
        detail: String,
    },
    /// A file-system operation failed.
    #[error("cannot access {path:?}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory lock (a monitored pool named after the directory) could not be created,
    /// e.g. because the directory is already open in the same [`Pools`].
    #[error("cannot create the lock of {dir:?}")]
    Lock {
        /// The directory.
        dir: PathBuf,
        /// The pool's error.
        #[source]
        source: datakit_ci_pool::Error,
    },
    /// A git command failed.
    #[error("git failed in {dir:?}")]
    Git {
        /// Where it ran.
        dir: PathBuf,
        /// The command's error (it names the command and its exit status).
        #[source]
        source: datakit_ci_process::Error,
    },
    /// A git command ended in a way that has no meaning for the question asked.
    #[error("command {command} in {dir:?} {status}")]
    UnexpectedStatus {
        /// The command, as shown to users.
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// How it ended.
        status: datakit_ci_process::ExitStatus,
    },
    /// A git command failed; what it printed on standard error says why.
    #[error("command {command} in {dir:?} {status}: {stderr}")]
    Failed {
        /// The command, as shown to users.
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// How it ended.
        status: datakit_ci_process::ExitStatus,
        /// Its standard error.
        stderr: String,
    },
    /// Reading or writing the repository's objects or refs in-process failed.
    #[error("cannot update the repository {dir:?}: {message}")]
    Objects {
        /// The repository's directory.
        dir: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// [`Command::new`] was given a label that cannot be part of a branch name.
    #[error("invalid command label {label:?}: {reason}")]
    InvalidLabel {
        /// The label.
        label: String,
        /// Why it is invalid.
        reason: String,
    },
    /// [`Command::new`] was given an empty argument vector.
    #[error("command {index} of {label:?} has no arguments")]
    EmptyCommand {
        /// The label of the [`Command`].
        label: String,
        /// The position of the empty vector in the list (from 0).
        index: usize,
    },
}

/// `error`, then each of its sources, separated by `: ` (for failure messages shown to users).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
