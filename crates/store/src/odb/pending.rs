//! New objects waiting to be written at commit. A transaction hashes the objects it makes as it
//! goes (so it can read its own writes) and hands them over only when it commits, to be written
//! as one pack with those of concurrent commits (group commit, in the layer above): objects
//! first, then the reference, so a branch never points at a missing object.
//!
//! Packs used to be merged and deleted while other handles looked objects up, so readers sometimes
//! missed commits ("no commit … in the store"); see [`super::repo`] for how deletions now wait.

use std::collections::HashMap;
use std::sync::Arc;

use gix::ObjectId;
use gix::objs::Kind;

use super::object::{Object, ObjectData, SharedBytes};
use super::pack::{self, PackThread, StartedPack};
use super::recent::RecentWrites;
use crate::Error;

/// Objects made by a transaction but not yet in the object database.
#[derive(Default)]
pub(crate) struct PendingObjects {
    objects: Vec<Object>,
    index: HashMap<ObjectId, usize>,
    /// How many of the first objects are known not to be in the object database.
    checked: usize,
    early: Option<EarlyPack>,
}

/// The pack a commit expects to write, which its first big tree starts (see [`StartedPack`]).
enum EarlyPack {
    /// The pack will hold `count` objects; no big tree yet.
    Expected {
        count: usize,
        thread: Arc<PackThread>,
    },
    /// A pack is being started.
    Started(StartedPack),
}

impl PendingObjects {
    /// Drops the pending objects the object database has already and announces that `more`
    /// objects are to be added before [`take_new`](Self::take_new) (a commit's trees and the
    /// commit itself), so that the first big tree added has `thread` (if any) start a pack holding
    /// every pending object.
    pub(crate) fn expect_pack(
        &mut self,
        repo: &gix::Repository,
        recent: &RecentWrites,
        thread: Option<Arc<PackThread>>,
        more: usize,
    ) {
        self.drop_stored(repo, recent);
        self.early = thread.map(|thread| EarlyPack::Expected {
            count: self.objects.len() + more,
            thread,
        });
    }

    /// Adds an object (its encoded data, without header) and returns its id.
    pub(crate) fn add(&mut self, kind: Kind, data: Vec<u8>) -> Result<ObjectId, Error> {
        self.add_data(kind, ObjectData::Bytes(data))
    }

    /// Adds a tree, sharing its bytes, and returns its id.
    pub(crate) fn add_tree(&mut self, tree: impl Into<SharedBytes>) -> Result<ObjectId, Error> {
        self.add_data(Kind::Tree, ObjectData::Shared(tree.into()))
    }

    fn add_data(&mut self, kind: Kind, data: ObjectData) -> Result<ObjectId, Error> {
        // Before hashing the id, so that the thread writes the pack entry meanwhile.
        let started = match (&data, &self.early) {
            (ObjectData::Shared(tree), Some(EarlyPack::Expected { count, thread }))
                if pack::starts_pack_early(kind, tree.bytes()) =>
            {
                thread.start(*count, tree)
            }
            _ => None,
        };
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, data.as_ref())
            .map_err(Error::git("hash object"))?;
        if let Some(mut pack) = started {
            pack.set_tree_id(id);
            self.early = Some(EarlyPack::Started(pack));
        }
        if !self.index.contains_key(&id) {
            self.index.insert(id, self.objects.len());
            self.objects.push((id, kind, data));
        }
        Ok(id)
    }

    /// The data of a pending object.
    pub(crate) fn get(&self, id: &ObjectId) -> Option<&[u8]> {
        self.index
            .get(id)
            .map(|&index| self.objects[index].2.as_ref())
    }

    /// The pending objects for the commit to write, and the pack started for them if there is
    /// one; forgets them all.
    ///
    /// With a pack started, they are all of them: the pack's object count is fixed, the
    /// objects stored already were dropped [before](Self::expect_pack), and what was added since
    /// are new trees and a new commit (a tree that happens to be stored already is only a
    /// duplicate, which merging packs drops). Otherwise only those the object database does not
    /// have yet.
    pub(crate) fn take_new(
        &mut self,
        repo: &gix::Repository,
        recent: &RecentWrites,
    ) -> (Vec<Object>, Option<StartedPack>) {
        let early = match self.early.take() {
            Some(EarlyPack::Started(pack)) if pack.count() == self.objects.len() => Some(pack),
            _ => {
                self.drop_stored(repo, recent);
                None
            }
        };
        self.index.clear();
        self.checked = 0;
        (std::mem::take(&mut self.objects), early)
    }

    /// Drops the objects the object database has, among those not checked yet.
    fn drop_stored(&mut self, repo: &gix::Repository, recent: &RecentWrites) {
        // Looking in the packs already known is a few binary searches, and the objects written
        // last are known without them; an object missed because its pack is too new for both
        // costs only a duplicate in the new pack. (A lookup that refreshes would list the pack
        // directory for every new object.)
        let mut kept = self.checked;
        for at in self.checked..self.objects.len() {
            let id = self.objects[at].0;
            if recent.has_object(&id) || repo.objects.exists_without_refresh(&id) {
                self.index.remove(&id);
            } else {
                self.objects.swap(kept, at);
                self.index.insert(id, kept);
                kept += 1;
            }
        }
        self.objects.truncate(kept);
        self.checked = kept;
    }
}

#[cfg(test)]
mod tests;
