//! A commit of the store ([`Commit`]): its id, parents, message and time, and its tree as a
//! [`Snapshot`]. Commits just written come from the memory of recent commits, others from the
//! object database.

use std::sync::Arc;

use crate::refs::{CommitData, read_commit};
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::{CommitId, Error};

/// Loads commit `id`: one of the last written if it is, else from the object database.
pub(crate) fn load_commit(repo: &Arc<State>, id: CommitId) -> Result<Commit, Error> {
    let data = match repo.recent_commits().commit(id) {
        Some(data) => data,
        None => Arc::new(read_commit(&repo.get(), id)?),
    };
    Ok(Commit {
        data,
        repo: Arc::clone(repo),
    })
}

/// Commit `id` if it is one of those written last (no object lookup, no blocking).
pub(crate) fn recent_commit(repo: &Arc<State>, id: CommitId) -> Option<Commit> {
    let data = repo.recent_commits().commit(id)?;
    Some(Commit {
        data,
        repo: Arc::clone(repo),
    })
}

/// A commit of the store. Cheap to clone.
#[derive(Clone)]
pub struct Commit {
    data: Arc<CommitData>,
    repo: Arc<State>,
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

    /// The commit message, exactly as given to [`Transaction::commit`](crate::Transaction::commit).
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
