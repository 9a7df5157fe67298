//! The history's error type: every failure of the public API, naming the branch, commit, job or
//! name involved.

use datakit_ci_store::{BranchName, CommitId};
use datakit_ci_term::FormatError;

/// Everything that can go wrong reading or writing target histories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A branch name is not the status branch of any target (spec §3.7).
    #[error("invalid status branch name {name:?}: {reason}")]
    InvalidStatusBranch {
        /// The rejected branch name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A target's sub-name (`pr-<n>` or `ref-<x>-<rest>`) could not be parsed (spec §3.7).
    #[error("invalid target sub-name {sub:?}: {reason}")]
    InvalidTargetSub {
        /// The rejected sub-name.
        sub: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An entry of the commit index is not the sub-name of a target (spec §3.8.4).
    #[error("invalid branch name in index: {name:?}")]
    InvalidIndexEntry {
        /// The entry's name.
        name: String,
        /// Why it could not be parsed.
        #[source]
        source: Box<Error>,
    },
    /// A job name cannot be stored as `job/<name>/output`.
    #[error("invalid job name {name:?}: {reason}")]
    InvalidJobName {
        /// The rejected job name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A job's `output` file in a status commit is not the JSON of a job output.
    #[error("invalid output of job {job:?} in status commit {commit}")]
    InvalidOutput {
        /// The status-branch commit holding the file.
        commit: CommitId,
        /// The job's name.
        job: String,
        /// What was wrong with the JSON.
        #[source]
        source: FormatError,
    },
    /// A file of a status commit or of the commit index holds something unexpected.
    #[error("invalid file {path:?} in commit {commit}: {reason}")]
    InvalidFile {
        /// The commit holding the file.
        commit: CommitId,
        /// The file's path in that commit.
        path: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Reading a branch or commit of the store failed.
    #[error("cannot read {what} from the state store")]
    Read {
        /// What was being read (a branch or a commit).
        what: String,
        /// The store's error.
        #[source]
        source: datakit_ci_store::Error,
    },
    /// Writing to a branch of the store failed.
    #[error("cannot write to branch {branch:?}")]
    Write {
        /// The branch being written.
        branch: BranchName,
        /// The store's error.
        #[source]
        source: datakit_ci_store::Error,
    },
}

impl Error {
    pub(crate) fn read(what: impl Into<String>) -> impl FnOnce(datakit_ci_store::Error) -> Error {
        let what = what.into();
        move |source| Error::Read { what, source }
    }

    pub(crate) fn write(branch: &BranchName) -> impl FnOnce(datakit_ci_store::Error) -> Error {
        let branch = branch.clone();
        move |source| Error::Write { branch, source }
    }
}
