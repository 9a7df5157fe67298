//! The bridge's error type: every failure of the public API, naming the repository, path or Git
//! command involved.

use std::path::PathBuf;

use datakit_ci_term::RepoId;

/// Everything that can go wrong while mirroring local repositories.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path given for a repository does not exist or cannot be resolved.
    #[error("cannot resolve repository path {}", .path.display())]
    Path {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be resolved.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a Git repository (neither a work tree's top directory nor a bare repository).
    #[error("{} is not a git repository: {message}", .path.display())]
    NotARepository {
        /// The path as given.
        path: PathBuf,
        /// What `git rev-parse` said.
        message: String,
    },
    /// The repository id cannot be used as a directory of the metadata branch.
    #[error("repository id {id:?} cannot be stored in the metadata branch")]
    InvalidRepoId {
        /// The rejected id.
        id: String,
        /// Why the store rejected it.
        #[source]
        source: datakit_ci_store::Error,
    },
    /// Two configured repositories have the same id, so they would overwrite each other.
    #[error("repository {id} is configured twice ({} and {})", .first.display(), .second.display())]
    DuplicateRepo {
        /// The id used twice.
        id: RepoId,
        /// The first repository's path.
        first: PathBuf,
        /// The second repository's path.
        second: PathBuf,
    },
    /// The `git` program could not be started.
    #[error("cannot run git in {}", .path.display())]
    Spawn {
        /// The repository it was to run in.
        path: PathBuf,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// A `git` command failed.
    #[error("`git {command}` failed in {}: {stderr}", .path.display())]
    Git {
        /// The repository it ran in.
        path: PathBuf,
        /// The arguments, space-separated.
        command: String,
        /// What it printed on standard error (trimmed).
        stderr: String,
    },
    /// Reading or committing the metadata branch failed.
    #[error("cannot update the metadata branch")]
    Store(#[from] datakit_ci_store::Error),
    /// A background task (reading the store) panicked or was cancelled.
    #[error("metadata reader task failed")]
    Task(#[from] tokio::task::JoinError),
}
