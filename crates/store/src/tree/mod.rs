//! Trees: reading stored Git trees (shared by snapshots and transactions) and the in-memory,
//! lazily loaded, editable tree a transaction works on ([`DirNode`]). Only the trees along edited
//! paths are loaded and, at commit, only changed trees are written; unchanged subtrees keep their
//! ids. Decoded trees ([`DecodedTree`]) are shared through the store's [`TreeCache`].
//!
//! This layer owns the tree format in memory (decoded trees, [`TreeBuilder`]), the cache of
//! decoded trees and the editable tree. It knows the object database (it reads objects through a
//! pooled handle and hands new trees to a transaction's pending objects, sharing their bytes
//! through the odb's `ObjectBytes`) and the names; it must never know branches, commits, group
//! commit or transactions. Like `gix-object`'s trees, plus the editing `gix` does above them.
//!
//! - `decoded.rs`: [`DecodedTree`] is the raw bytes plus the entry offsets in Git's order;
//!   [`TreeBuilder`] copies unchanged runs into buffers sized exactly, and a tree of 64 KiB or more
//!   is built in the buffers of a dropped one ([`BufferPool`], owned by the cache: fresh memory
//!   cost a page fault per 4 KiB).
//! - `dir_node.rs`: a transaction's directory is a shared base plus an overlay of changes; writing
//!   puts the new tree in the cache and queues the same bytes for the pack (as the odb's shared
//!   object data), so nothing reads back a tree this process has just written.
//! - `cache.rs`: a bounded cache of decoded trees by id shared by all readers; an evicted
//!   generation is freed on a thread of its own.
//!
//! So a one-entry edit of a 10,000-entry tree costs a byte copy and a hash, and
//! `Snapshot::changed_files` skips the entries two versions share at each end.

use gix::ObjectId;
use gix::bstr::{BStr, ByteSlice};
use gix::objs::tree::{EntryKind as GitEntryKind, EntryMode};

use crate::odb::PooledRepo;
use crate::{Error, StorePath};

mod cache;
mod decoded;
mod dir_node;
#[cfg(test)]
mod tests;

pub(crate) use cache::TreeCache;
pub(crate) use decoded::{BufferPool, DecodedTree, EntryRef, TreeBuilder};
pub(crate) use dir_node::{DirNode, Found};

/// The id of the empty tree.
pub(crate) fn empty_tree() -> ObjectId {
    ObjectId::empty_tree(gix::hash::Kind::Sha1)
}

/// Where trees are read from. A handle from the store's pool reads through the store's cache of
/// decoded trees; a bare `gix::Repository` decodes every time. A trait rather than a cache
/// parameter so that callers keep passing their handle.
pub(crate) trait TreeSource {
    /// The repository holding the objects.
    fn objects(&self) -> &gix::Repository;
    /// The cache of decoded trees, if any.
    fn tree_cache(&self) -> Option<&TreeCache>;
}

impl TreeSource for gix::Repository {
    fn objects(&self) -> &gix::Repository {
        self
    }
    fn tree_cache(&self) -> Option<&TreeCache> {
        None
    }
}

/// A handle from the store's pool that reads trees through the store's cache of decoded trees.
pub(crate) struct CachedRepo<'a> {
    handle: PooledRepo,
    cache: &'a TreeCache,
}

impl<'a> CachedRepo<'a> {
    /// Reads through `handle`, decoding trees into `cache`.
    pub(crate) fn new(handle: PooledRepo, cache: &'a TreeCache) -> CachedRepo<'a> {
        CachedRepo { handle, cache }
    }
}

impl std::ops::Deref for CachedRepo<'_> {
    type Target = PooledRepo;
    fn deref(&self) -> &PooledRepo {
        &self.handle
    }
}

impl TreeSource for CachedRepo<'_> {
    fn objects(&self) -> &gix::Repository {
        &self.handle
    }
    fn tree_cache(&self) -> Option<&TreeCache> {
        Some(self.cache)
    }
}

/// The stored tree `id`, decoded; from the cache if there is one.
pub(crate) fn read_tree<S: TreeSource + ?Sized>(
    source: &S,
    id: ObjectId,
) -> Result<DecodedTree, Error> {
    if id == empty_tree() {
        return Ok(DecodedTree::empty());
    }
    let cache = source.tree_cache();
    if let Some(found) = cache.and_then(|cache| cache.get(&id)) {
        return Ok(found);
    }
    let data = read_object(source.objects(), id, gix::objs::Kind::Tree)?;
    let tree = DecodedTree::decode(data).map_err(Error::git_other("decode tree"))?;
    if let Some(cache) = cache {
        cache.count_decode();
        cache.insert(id, tree.clone());
    }
    Ok(tree)
}

/// Finds `name` in the stored tree `id`.
fn find_in_tree<S: TreeSource + ?Sized>(
    source: &S,
    id: ObjectId,
    name: &str,
) -> Result<Option<(EntryMode, ObjectId)>, Error> {
    let tree = read_tree(source, id)?;
    Ok(tree
        .find(name.as_bytes())
        .map(|entry| (entry.mode, entry.id)))
}

/// Follows `components` from the stored tree `root`; `None` if some component is missing or a file.
pub(crate) fn lookup_stored<'a, S: TreeSource + ?Sized>(
    source: &S,
    root: ObjectId,
    components: impl IntoIterator<Item = &'a str>,
) -> Result<Option<(EntryMode, ObjectId)>, Error> {
    let mut current = (EntryMode::from(GitEntryKind::Tree), root);
    for name in components {
        if !current.0.is_tree() {
            return Ok(None);
        }
        match find_in_tree(source, current.1, name)? {
            Some(found) => current = found,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Reads a blob's contents: a small one written last from memory, others from the object database.
pub(crate) fn read_blob(repo: &PooledRepo, id: ObjectId) -> Result<Vec<u8>, Error> {
    match repo.home().recent().small_blob(&id) {
        Some(data) => Ok(data.to_vec()),
        None => read_object(repo, id, gix::objs::Kind::Blob),
    }
}

/// The data of object `id`, which must exist and be of `kind`.
fn read_object(
    repo: &gix::Repository,
    id: ObjectId,
    kind: gix::objs::Kind,
) -> Result<Vec<u8>, Error> {
    match crate::odb::find_object(repo, &id)? {
        Some((found, data)) if found == kind => Ok(data),
        Some((found, _)) => Err(Error::UnexpectedObject {
            id,
            expected: kind,
            found,
        }),
        None => Err(Error::MissingObject { id }),
    }
}

/// Converts stored entry names to sorted strings.
pub(crate) fn names<'a>(
    dir: &StorePath,
    names: impl Iterator<Item = &'a BStr>,
) -> Result<Vec<String>, Error> {
    let mut out = names
        .map(|name| {
            name.to_str()
                .map(str::to_owned)
                .map_err(|_| Error::NonUtf8Name {
                    dir: dir.clone(),
                    name: name.to_str_lossy().into_owned(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    Ok(out)
}
