//! Commits as history: a commit decoded ([`CommitData`]), read from the object database, and the
//! memory of the commits this process wrote last ([`RecentCommits`]), so that reading a head just
//! committed costs no object lookup (see the odb's `recent` module for why a lookup is not free).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::odb::find_object;
use crate::{CommitId, Error};

/// How many commits are remembered. Readers want the few latest heads; a lookup scans them all.
const COMMITS: usize = 64;

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

/// Reads and decodes the stored commit `id`. Every read of a commit goes through here (and so
/// through [`find_object`]): a commit that a branch was just moved to may be in a pack
/// this handle has not seen yet.
pub(crate) fn read_commit(handle: &gix::Repository, id: CommitId) -> Result<CommitData, Error> {
    let Some((gix::objs::Kind::Commit, data)) = find_object(handle, &id.object_id())? else {
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

/// The commits written last, newest last.
#[derive(Default)]
pub(crate) struct RecentCommits {
    commits: Mutex<VecDeque<Arc<CommitData>>>,
}

impl RecentCommits {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<CommitData>>> {
        self.commits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a commit that is now stored (its objects written and its branch moved).
    pub(crate) fn remember_commit(&self, commit: Arc<CommitData>) {
        let mut commits = self.lock();
        if commits.len() == COMMITS {
            commits.pop_front();
        }
        commits.push_back(commit);
    }

    /// The commit `id`, if it is one of those written last.
    pub(crate) fn commit(&self, id: CommitId) -> Option<Arc<CommitData>> {
        self.lock()
            .iter()
            .rev()
            .find(|c| c.id == id)
            .map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use gix::ObjectId;

    use super::*;

    fn object(n: u16) -> ObjectId {
        let mut bytes = [0; 20];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        ObjectId::from_bytes_or_panic(&bytes)
    }

    fn commit(n: u16) -> Arc<CommitData> {
        Arc::new(CommitData {
            id: CommitId::from_object_id(object(n)),
            parents: Vec::new(),
            message: format!("commit {n}"),
            tree: ObjectId::empty_tree(gix::hash::Kind::Sha1),
            time: 0,
        })
    }

    #[test]
    fn remembers_the_last_commits_only() {
        let recent = RecentCommits::default();
        for n in 0..=COMMITS as u16 {
            recent.remember_commit(commit(n));
        }
        assert!(
            recent.commit(commit(0).id).is_none(),
            "the oldest is forgotten"
        );
        for n in 1..=COMMITS as u16 {
            let found = recent.commit(commit(n).id).expect("a recent commit");
            assert_eq!(found.message, format!("commit {n}"));
        }
    }
}
