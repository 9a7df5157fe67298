//! New objects waiting to be written at commit. A transaction hashes the objects it makes as it
//! goes (so it can read its own writes) and hands them over only when it commits, to be written
//! as one pack with those of concurrent commits ([`crate::group`]): objects first, then the
//! reference, so a branch never points at a missing object.
//!
//! Packs used to be merged and deleted while other handles looked objects up, so readers sometimes
//! missed commits ("no commit … in the store"); see [`crate::repo`] for how deletions now wait.

use std::collections::HashMap;

use gix::ObjectId;
use gix::objs::Kind;

use crate::Error;
use crate::group::Object;
use crate::recent::RecentWrites;
use crate::tree::DecodedTree;

/// The encoded data of an object (without header). A tree keeps sharing its bytes with its decoded
/// form in the tree cache: the metadata's flat trees are hundreds of KB, and copying each (into
/// freshly faulted-in pages) was a visible part of a head change at 10,000 targets.
pub(crate) enum ObjectData {
    Bytes(Vec<u8>),
    Tree(DecodedTree),
}

impl AsRef<[u8]> for ObjectData {
    fn as_ref(&self) -> &[u8] {
        match self {
            ObjectData::Bytes(bytes) => bytes,
            ObjectData::Tree(tree) => tree.data(),
        }
    }
}

/// Objects made by a transaction but not yet in the object database.
#[derive(Default)]
pub(crate) struct PendingObjects {
    objects: Vec<Object>,
    index: HashMap<ObjectId, usize>,
}

impl PendingObjects {
    /// Adds an object (its encoded data, without header) and returns its id.
    pub(crate) fn add(&mut self, kind: Kind, data: Vec<u8>) -> Result<ObjectId, Error> {
        self.add_data(kind, ObjectData::Bytes(data))
    }

    /// Adds a tree, sharing its bytes, and returns its id.
    pub(crate) fn add_tree(&mut self, tree: DecodedTree) -> Result<ObjectId, Error> {
        self.add_data(Kind::Tree, ObjectData::Tree(tree))
    }

    fn add_data(&mut self, kind: Kind, data: ObjectData) -> Result<ObjectId, Error> {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, data.as_ref())
            .map_err(Error::git("hash object"))?;
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

    /// The pending objects the object database does not have yet, for the commit to write; forgets
    /// them all.
    pub(crate) fn take_new(
        &mut self,
        repo: &gix::Repository,
        recent: &RecentWrites,
    ) -> Vec<Object> {
        self.index.clear();
        let mut objects = std::mem::take(&mut self.objects);
        // Looking in the packs already known is a few binary searches, and the objects written
        // last are known without them; an object missed because its pack is too new for both
        // costs only a duplicate in the new pack. (A lookup that refreshes would list the pack
        // directory for every new object.)
        objects.retain(|(id, _, _)| {
            !recent.has_object(id) && !repo.objects.exists_without_refresh(id)
        });
        objects
    }
}
