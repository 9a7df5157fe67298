//! What this process wrote last: the commits, decoded, and the ids of the objects. Reading a head
//! just committed (the engine following `github-metadata`, the next transaction on a branch) then
//! costs no object lookup, and a commit still skips the objects an earlier commit stored.
//!
//! A lookup is not free: a commit just written sits in a pack that no handle has seen yet, so gix
//! first misses it, lists the pack directory again and loads the new index; at 10,000 targets that
//! was 0.5–1 ms of every head change, before the engine could even diff the metadata. Handles see
//! new packs later, when a read misses; until then, [`RecentWrites::has_object`] answers for them.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gix::ObjectId;

use crate::CommitId;
use crate::store::CommitData;

/// How many commits are remembered. Readers want the few latest heads; a lookup scans them all.
const COMMITS: usize = 64;

/// How many object ids are remembered: those of the last few hundred commits.
const OBJECTS: usize = 8192;

/// The commits and objects written last.
#[derive(Default)]
pub(crate) struct RecentWrites {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Newest last.
    commits: VecDeque<Arc<CommitData>>,
    objects: HashSet<ObjectId>,
    /// The ids of `objects`, oldest first.
    object_order: VecDeque<ObjectId>,
}

impl RecentWrites {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers objects that are now stored.
    pub(crate) fn remember_objects(&self, ids: impl IntoIterator<Item = ObjectId>) {
        let mut inner = self.lock();
        for id in ids {
            if !inner.objects.insert(id) {
                continue;
            }
            inner.object_order.push_back(id);
            if inner.object_order.len() > OBJECTS
                && let Some(oldest) = inner.object_order.pop_front()
            {
                inner.objects.remove(&oldest);
            }
        }
    }

    /// Whether object `id` is one of those stored last.
    pub(crate) fn has_object(&self, id: &ObjectId) -> bool {
        self.lock().objects.contains(id)
    }

    /// Remembers a commit that is now stored (its objects written and its branch moved).
    pub(crate) fn remember_commit(&self, commit: Arc<CommitData>) {
        let mut inner = self.lock();
        if inner.commits.len() == COMMITS {
            inner.commits.pop_front();
        }
        inner.commits.push_back(commit);
    }

    /// The commit `id`, if it is one of those written last.
    pub(crate) fn commit(&self, id: CommitId) -> Option<Arc<CommitData>> {
        let inner = self.lock();
        inner
            .commits
            .iter()
            .rev()
            .find(|c| c.id == id)
            .map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
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
        })
    }

    #[test]
    fn remembers_the_last_commits_only() {
        let recent = RecentWrites::default();
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

    #[test]
    fn remembers_the_last_objects_only() {
        let recent = RecentWrites::default();
        recent.remember_objects((0..=OBJECTS as u16).map(object));
        // Remembering one again does not make it count twice.
        recent.remember_objects([object(5)]);
        assert!(!recent.has_object(&object(0)), "the oldest is forgotten");
        assert!((1..=OBJECTS as u16).all(|n| recent.has_object(&object(n))));
        assert!(!recent.has_object(&object(OBJECTS as u16 + 1)));
    }
}
