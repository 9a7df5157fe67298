//! The store's error type: every failure of the public API, naming the path, branch or PID involved.

use std::path::PathBuf;
use std::sync::Arc;

use super::ids::{BranchName, CommitId, StorePath};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A branch name failed `git check-ref-format --branch` rules.
    #[error("invalid branch name {name:?}: {reason}")]
    InvalidBranch {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A path inside a tree was malformed.
    #[error("invalid store path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A string passed to [`unescape`](crate::unescape) was not produced by [`escape`](crate::escape).
    #[error("invalid escaped string {input:?}: {reason}")]
    InvalidEscape {
        /// The rejected string.
        input: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A commit id was not 40 hexadecimal digits.
    #[error("invalid commit id {input:?}: expected 40 hexadecimal digits")]
    InvalidCommitId {
        /// The rejected string.
        input: String,
    },
    /// Another engine (this process or another one) already owns the store.
    #[error("state store at {} is locked by another engine (pid {})", .path.display(), display_pid(*.pid))]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// The PID written in the lock file by the holder, if it could be read.
        pid: Option<u32>,
    },
    /// A file or directory of the store (its directory, lock file, packs) could not be used.
    #[error("file system error at {}", .path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The path does not exist (in the transaction's tree).
    #[error("no such file or directory {path:?}")]
    NotFound {
        /// The missing path.
        path: StorePath,
    },
    /// A file was to be written where a (non-empty) directory is.
    #[error("{path:?} is a directory")]
    IsDir {
        /// The directory's path.
        path: StorePath,
    },
    /// A path goes through something that is not a directory.
    #[error("{path:?} is not a directory")]
    NotDir {
        /// The path of the file that is in the way.
        path: StorePath,
    },
    /// The branch moved while a transaction was open and its edits could not be replayed on the new head.
    #[error("conflict committing to branch {branch:?} at {path:?}")]
    Conflict {
        /// The branch that was being committed to.
        branch: BranchName,
        /// The path of the edit that could not be applied.
        path: StorePath,
    },
    /// The branch kept moving under a commit (someone outside this process writes to the store).
    #[error("branch {branch:?} kept moving while committing; gave up after {attempts} attempts")]
    Contended {
        /// The branch that was being committed to.
        branch: BranchName,
        /// How many compare-and-swap attempts failed.
        attempts: usize,
    },
    /// The new objects of a commit could not be written, so its branch did not move. Commits made
    /// at the same time write their objects together (one pack), so every commit of that group
    /// fails with the same cause; nothing stored before is affected, and a later commit may succeed.
    #[error(
        "cannot write the objects of the commit to branch {branch:?} (one pack for {group} commits)"
    )]
    WriteObjects {
        /// The branch that was being committed to.
        branch: BranchName,
        /// How many commits shared the pack.
        group: usize,
        /// Why the pack could not be written (shared by the commits of the group).
        #[source]
        source: Arc<Error>,
    },
    /// A commit id does not name a commit in the store.
    #[error("no commit {id} in the store")]
    MissingCommit {
        /// The id that was looked up.
        id: CommitId,
    },
    /// An object a tree or commit refers to is not in the store (the repository is damaged).
    #[error("object {id} is missing from the store")]
    MissingObject {
        /// The object's id.
        id: gix::ObjectId,
    },
    /// An object is not of the kind its reference says (the repository is damaged).
    #[error("object {id} is a {found}, not a {expected}")]
    UnexpectedObject {
        /// The object's id.
        id: gix::ObjectId,
        /// The kind the reference to it implies.
        expected: gix::objs::Kind,
        /// Its actual kind.
        found: gix::objs::Kind,
    },
    /// A tree entry name stored in the repository is not valid UTF-8.
    #[error("entry name {name:?} in {dir:?} is not valid UTF-8")]
    NonUtf8Name {
        /// The directory holding the entry.
        dir: StorePath,
        /// The name, lossily decoded.
        name: String,
    },
    /// The repository object or reference database failed.
    #[error("git operation failed: {action}")]
    Git {
        /// What the store was doing.
        action: &'static str,
        /// gix's error.
        #[source]
        source: gix::Error,
    },
    /// A `git` maintenance command (compaction) failed.
    #[error("git {command} in {} failed: {message}", .path.display())]
    Maintenance {
        /// The repository.
        path: std::path::PathBuf,
        /// The git subcommand.
        command: &'static str,
        /// What git said, or why it could not run.
        message: String,
    },
    /// A background task running blocking Git work panicked or was cancelled.
    #[error("store worker task failed")]
    Task(#[source] tokio::task::JoinError),
}

fn display_pid(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => pid.to_string(),
        None => "unknown".to_owned(),
    }
}

impl Error {
    /// Wraps a gix error with what the store was doing.
    pub(crate) fn git(action: &'static str) -> impl FnOnce(gix::Error) -> Error {
        move |source| Error::Git { action, source }
    }

    /// Wraps any other error coming out of gix's plumbing crates.
    pub(crate) fn git_other<E>(action: &'static str) -> impl FnOnce(E) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |source| Error::Git {
            action,
            source: gix::Error::from_error(source),
        }
    }
}
