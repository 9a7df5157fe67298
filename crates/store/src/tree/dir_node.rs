//! The editable tree of a transaction. A directory is the stored tree it started from (decoded and
//! shared with the store's cache) plus an overlay of the children changed since, so editing one
//! entry of a 10,000-entry directory costs a lookup, not a copy of the directory. Writing merges
//! the two in Git's order, copying runs of unchanged entries as bytes, and puts the new tree in the
//! cache, so the commit just made is never decoded. Knows nothing of commits or references.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::{EntryKind as GitEntryKind, EntryMode, name_order};

use super::{
    DecodedTree, TreeBuilder, TreeCache, TreeSource, empty_tree, lookup_stored, read_tree,
};
use crate::odb::PendingObjects;
use crate::{EntryKind, Error, StorePath};

/// What a path names, in a transaction's tree.
pub(crate) enum Found<'a> {
    /// A file, symlink or submodule.
    Leaf(EntryMode, ObjectId),
    /// A directory already loaded into memory.
    Dir(&'a DirNode),
    /// A directory still only in the object database.
    StoredDir(ObjectId),
}

impl Found<'_> {
    pub(crate) fn kind(&self) -> EntryKind {
        match self {
            Found::Leaf(mode, _) => EntryKind::from_mode(*mode),
            Found::Dir(_) | Found::StoredDir(_) => EntryKind::Dir,
        }
    }

    fn from_stored((mode, id): (EntryMode, ObjectId)) -> Found<'static> {
        if mode.is_tree() {
            Found::StoredDir(id)
        } else {
            Found::Leaf(mode, id)
        }
    }
}

/// A changed child of a directory.
pub(crate) enum Node {
    Leaf(EntryMode, ObjectId),
    Dir(DirNode),
}

/// A directory of the editable tree.
pub(crate) struct DirNode {
    /// The stored tree this directory is an edit of (`None` for a directory made in memory).
    base: Option<Base>,
    /// The children changed since `base`, by name: `Some` added or replaced, `None` removed. Empty
    /// while the directory still equals `base`.
    changes: BTreeMap<BString, Option<Node>>,
    /// The id [`hash`](Self::hash) computed and whether the tree is empty; cleared by every edit,
    /// so that a caller asking twice does not encode and hash the tree twice.
    hashed: OnceLock<(ObjectId, bool)>,
    /// Where to put the trees written; taken from the source of the first edit.
    cache: Option<TreeCache>,
}

struct Base {
    id: ObjectId,
    /// The decoded tree, loaded on the first edit.
    tree: Option<DecodedTree>,
}

/// What a changed child becomes in the tree being built.
#[derive(Clone, Copy)]
enum Outcome {
    Absent,
    Entry(EntryMode, ObjectId),
}

impl Outcome {
    /// What a changed subdirectory becomes, given the `(id, empty)` it was written or hashed to:
    /// an empty directory is not persisted.
    fn of_dir((id, empty): (ObjectId, bool)) -> Outcome {
        if empty {
            Outcome::Absent
        } else {
            Outcome::Entry(GitEntryKind::Tree.into(), id)
        }
    }
}

impl DirNode {
    /// A directory equal to the stored tree `id`, loaded on first edit.
    pub(crate) fn from_stored(id: ObjectId) -> DirNode {
        DirNode {
            base: Some(Base { id, tree: None }),
            changes: BTreeMap::new(),
            hashed: OnceLock::new(),
            cache: None,
        }
    }

    fn new_empty() -> DirNode {
        DirNode {
            base: None,
            changes: BTreeMap::new(),
            hashed: OnceLock::new(),
            cache: None,
        }
    }

    /// Loads the base tree and forgets the memoised hash, before an edit.
    fn edit<S: TreeSource + ?Sized>(&mut self, source: &S) -> Result<(), Error> {
        if let Some(base) = &mut self.base
            && base.tree.is_none()
        {
            base.tree = Some(read_tree(source, base.id)?);
        }
        if self.cache.is_none() {
            self.cache = source.tree_cache().cloned();
        }
        self.hashed = OnceLock::new();
        Ok(())
    }

    /// The base tree of a directory that has changes (which are only made after loading it).
    fn loaded_base(&self) -> Option<&DecodedTree> {
        self.base.as_ref().map(|base| {
            base.tree
                .as_ref()
                .expect("a directory is loaded before it is changed")
        })
    }

    /// The id and emptiness of a directory without changes.
    fn unchanged_id(&self) -> (ObjectId, bool) {
        let id = self.base.as_ref().map_or_else(empty_tree, |base| base.id);
        (id, id == empty_tree())
    }

    /// Whether `name` is in this (loaded) directory.
    fn contains(&self, name: &[u8]) -> bool {
        match self.changes.get(name.as_bstr()) {
            Some(change) => change.is_some(),
            None => self
                .loaded_base()
                .is_some_and(|tree| tree.position(name).is_some()),
        }
    }

    /// Brings the base's child `name` into the changes (unchanged) so that it can be edited, and
    /// returns it; `None` if there is no such child.
    fn materialise(&mut self, name: &[u8]) -> Option<&mut Node> {
        if !self.changes.contains_key(name.as_bstr()) {
            let entry = self.loaded_base()?.find(name)?;
            let node = if entry.mode.is_tree() {
                Node::Dir(DirNode::from_stored(entry.id))
            } else {
                Node::Leaf(entry.mode, entry.id)
            };
            self.changes.insert(BString::from(name), Some(node));
        }
        self.changes
            .get_mut(name.as_bstr())
            .and_then(Option::as_mut)
    }

    /// Walks to the directory at the first `depth` components of `path`, marking every directory on
    /// the way as edited. With `create`, missing directories are made.
    fn descend<S: TreeSource + ?Sized>(
        &mut self,
        source: &S,
        path: &StorePath,
        depth: usize,
        create: bool,
    ) -> Result<&mut DirNode, Error> {
        let mut dir = self;
        for (index, name) in path.components().take(depth).enumerate() {
            dir.edit(source)?;
            let name = name.as_bytes();
            if dir.materialise(name).is_none() {
                if !create {
                    return Err(Error::NotFound {
                        path: prefix(path, index + 1),
                    });
                }
                dir.changes
                    .insert(BString::from(name), Some(Node::Dir(DirNode::new_empty())));
            }
            match dir.changes.get_mut(name.as_bstr()) {
                Some(Some(Node::Dir(child))) => dir = child,
                _ => {
                    return Err(Error::NotDir {
                        path: prefix(path, index + 1),
                    });
                }
            }
        }
        Ok(dir)
    }

    /// Whether the directory holds no file at any depth (so it would not be persisted).
    fn holds_no_file(&self) -> bool {
        if self.changes.is_empty() {
            return self.unchanged_id().1;
        }
        let changed_hold_none = self.changes.values().all(|change| match change {
            None => true,
            Some(Node::Leaf(..)) => false,
            Some(Node::Dir(child)) => child.holds_no_file(),
        });
        changed_hold_none
            && self.loaded_base().is_none_or(|tree| {
                // Usually decided by the first entry.
                tree.iter().all(|entry| {
                    self.changes.contains_key(entry.name)
                        || (entry.mode.is_tree() && entry.id == empty_tree())
                })
            })
    }

    /// Whether the child `name` of this (loaded) directory is a directory holding some file.
    fn holds_files_at(&self, name: &[u8]) -> bool {
        match self.changes.get(name.as_bstr()) {
            Some(Some(Node::Dir(child))) => !child.holds_no_file(),
            Some(_) => false,
            None => self
                .loaded_base()
                .and_then(|tree| tree.find(name))
                .is_some_and(|entry| entry.mode.is_tree() && entry.id != empty_tree()),
        }
    }

    /// Puts a file (or other non-tree entry) at `path`, replacing a file or an empty directory there
    /// and creating missing parents.
    pub(crate) fn upsert_leaf<S: TreeSource + ?Sized>(
        &mut self,
        source: &S,
        path: &StorePath,
        mode: EntryMode,
        id: ObjectId,
    ) -> Result<(), Error> {
        let Some(name) = path.file_name() else {
            return Err(Error::IsDir { path: path.clone() });
        };
        let depth = path.components().count() - 1;
        let parent = self.descend(source, path, depth, true)?;
        parent.edit(source)?;
        if parent.holds_files_at(name.as_bytes()) {
            return Err(Error::IsDir { path: path.clone() });
        }
        parent
            .changes
            .insert(BString::from(name), Some(Node::Leaf(mode, id)));
        Ok(())
    }

    /// Makes the directory at `path` and its parents.
    pub(crate) fn make_dirs<S: TreeSource + ?Sized>(
        &mut self,
        source: &S,
        path: &StorePath,
    ) -> Result<(), Error> {
        let depth = path.components().count();
        self.descend(source, path, depth, true).map(|_| ())
    }

    /// Removes whatever is at `path` (recursively); the root empties the whole tree.
    pub(crate) fn remove<S: TreeSource + ?Sized>(
        &mut self,
        source: &S,
        path: &StorePath,
    ) -> Result<(), Error> {
        let Some(name) = path.file_name() else {
            *self = DirNode::new_empty();
            return Ok(());
        };
        let not_found = || Error::NotFound { path: path.clone() };
        let depth = path.components().count() - 1;
        let parent = match self.descend(source, path, depth, false) {
            Ok(parent) => parent,
            Err(Error::NotFound { .. } | Error::NotDir { .. }) => return Err(not_found()),
            Err(other) => return Err(other),
        };
        parent.edit(source)?;
        if !parent.contains(name.as_bytes()) {
            return Err(not_found());
        }
        parent.changes.insert(BString::from(name), None);
        Ok(())
    }

    /// Finds what `path` names without loading anything into the tree.
    pub(crate) fn lookup<S: TreeSource + ?Sized>(
        &self,
        source: &S,
        path: &StorePath,
    ) -> Result<Option<Found<'_>>, Error> {
        let mut dir = self;
        let mut components = path.components();
        while let Some(name) = components.next() {
            match dir.changes.get(name.as_bytes().as_bstr()) {
                Some(None) => return Ok(None),
                Some(Some(Node::Dir(child))) => dir = child,
                Some(Some(Node::Leaf(mode, id))) => {
                    return Ok(if components.next().is_none() {
                        Some(Found::Leaf(*mode, *id))
                    } else {
                        None
                    });
                }
                None => {
                    let Some(base) = &dir.base else {
                        return Ok(None);
                    };
                    let found = match &base.tree {
                        Some(tree) => match tree.find(name.as_bytes()) {
                            None => None,
                            Some(entry) => {
                                let mut rest = components.peekable();
                                if rest.peek().is_none() {
                                    Some((entry.mode, entry.id))
                                } else if entry.mode.is_tree() {
                                    lookup_stored(source, entry.id, rest)?
                                } else {
                                    None
                                }
                            }
                        },
                        None => {
                            lookup_stored(source, base.id, std::iter::once(name).chain(components))?
                        }
                    };
                    return Ok(found.map(Found::from_stored));
                }
            }
        }
        Ok(Some(Found::Dir(dir)))
    }

    /// The sorted entry names of this directory (including empty directories made in memory).
    pub(crate) fn entry_names<S: TreeSource + ?Sized>(
        &self,
        source: &S,
        path: &StorePath,
    ) -> Result<Vec<String>, Error> {
        let base = match &self.base {
            None => None,
            Some(Base {
                tree: Some(tree), ..
            }) => Some(tree.clone()),
            Some(Base { id, tree: None }) => Some(read_tree(source, *id)?),
        };
        let from_base = base
            .iter()
            .flat_map(DecodedTree::iter)
            .map(|entry| entry.name)
            .filter(|name| !self.changes.contains_key(*name));
        let from_changes = self
            .changes
            .iter()
            .filter(|(_, change)| change.is_some())
            .map(|(name, _)| name.as_bstr());
        super::names(path, from_base.chain(from_changes))
    }

    /// Whether this directory's tree is the stored tree `id`, decided from the changes alone where
    /// possible (a lookup per change), hashing only directories made anew.
    pub(crate) fn is_stored(&self, id: ObjectId) -> Result<bool, Error> {
        let Some(base) = self.base.as_ref().filter(|base| base.id == id) else {
            return Ok(self.hash()?.0 == id);
        };
        if self.changes.is_empty() {
            return Ok(true);
        }
        let tree = base
            .tree
            .as_ref()
            .expect("a directory is loaded before it is changed");
        for (name, change) in &self.changes {
            let old = tree.find(name);
            let same = match (change, old) {
                (None, old) => old.is_none(),
                (Some(Node::Leaf(mode, id)), Some(old)) => old.mode == *mode && old.id == *id,
                (Some(Node::Dir(child)), Some(old))
                    if old.mode.is_tree() && old.id != empty_tree() =>
                {
                    child.is_stored(old.id)?
                }
                (Some(Node::Dir(child)), None) => child.holds_no_file(),
                (Some(_), _) => false,
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// How many trees [`write`](Self::write) adds at most: one per directory with changes (fewer
    /// if some changes undo others, or two new trees are the same).
    pub(crate) fn changed_dirs(&self) -> usize {
        if self.changes.is_empty() {
            return 0;
        }
        let below: usize = self
            .changes
            .values()
            .map(|change| match change {
                Some(Node::Dir(child)) => child.changed_dirs(),
                _ => 0,
            })
            .sum();
        below + 1
    }

    /// Adds this directory's changed trees to `pending` (dropping empty directories), puts them in
    /// the store's tree cache and remembers them as unchanged. Returns the tree id and whether the
    /// tree is empty.
    pub(crate) fn write(
        &mut self,
        pending: &mut PendingObjects,
    ) -> Result<(ObjectId, bool), Error> {
        let cache = self.cache.clone();
        let (id, empty) = self.write_with(pending, cache.as_ref())?;
        if empty {
            // Git reads the empty tree without it being stored, but `git fsck` wants a commit's
            // tree to exist.
            pending.add(gix::objs::Kind::Tree, Vec::new())?;
        }
        Ok((id, empty))
    }

    fn write_with(
        &mut self,
        pending: &mut PendingObjects,
        cache: Option<&TreeCache>,
    ) -> Result<(ObjectId, bool), Error> {
        if self.changes.is_empty() {
            return Ok(self.unchanged_id());
        }
        let mut outcomes = Vec::with_capacity(self.changes.len());
        for change in self.changes.values_mut() {
            outcomes.push(match change {
                None => Outcome::Absent,
                Some(Node::Leaf(mode, id)) => Outcome::Entry(*mode, *id),
                Some(Node::Dir(child)) => Outcome::of_dir(child.write_with(pending, cache)?),
            });
        }
        let result = match self.merge(&outcomes) {
            None => self.unchanged_id(),
            Some(builder) => {
                let empty = builder.is_empty();
                let tree = builder.finish();
                let id = pending.add_tree(tree.clone())?;
                if let Some(cache) = cache {
                    cache.insert(id, tree.clone());
                }
                self.base = Some(Base {
                    id,
                    tree: Some(tree),
                });
                (id, empty)
            }
        };
        self.changes.clear();
        self.hashed = OnceLock::new();
        Ok(result)
    }

    /// Computes the id [`write`](Self::write) would return, without writing anything.
    pub(crate) fn hash(&self) -> Result<(ObjectId, bool), Error> {
        if let Some(hashed) = self.hashed.get() {
            return Ok(*hashed);
        }
        if self.changes.is_empty() {
            return Ok(self.unchanged_id());
        }
        let mut outcomes = Vec::with_capacity(self.changes.len());
        for change in self.changes.values() {
            outcomes.push(match change {
                None => Outcome::Absent,
                Some(Node::Leaf(mode, id)) => Outcome::Entry(*mode, *id),
                Some(Node::Dir(child)) => Outcome::of_dir(child.hash()?),
            });
        }
        let result = match self.merge(&outcomes) {
            None => self.unchanged_id(),
            Some(builder) => {
                let id = gix::objs::compute_hash(
                    gix::hash::Kind::Sha1,
                    gix::objs::Kind::Tree,
                    builder.data(),
                )
                .map_err(Error::git("hash tree"))?;
                (id, builder.is_empty())
            }
        };
        Ok(*self.hashed.get_or_init(|| result))
    }

    /// Builds the tree of the base with the changes' `outcomes` (one per change, in order) applied;
    /// `None` if that is the base itself.
    fn merge(&self, outcomes: &[Outcome]) -> Option<TreeBuilder> {
        let base = self.loaded_base();
        let mut dropped = Vec::new();
        let mut added: Vec<(&BStr, EntryMode, ObjectId)> = Vec::new();
        for ((name, _), outcome) in self.changes.iter().zip(outcomes) {
            let old = base.and_then(|tree| {
                let index = tree.position(name)?;
                tree.get(index).map(|entry| (index, entry.mode, entry.id))
            });
            match (*outcome, old) {
                (Outcome::Absent, None) => {}
                (Outcome::Entry(mode, id), Some((_, old_mode, old_id)))
                    if mode == old_mode && id == old_id => {}
                (outcome, old) => {
                    if let Some((index, ..)) = old {
                        dropped.push(index);
                    }
                    if let Outcome::Entry(mode, id) = outcome {
                        added.push((name.as_bstr(), mode, id));
                    }
                }
            }
        }
        if self.base.is_some() && dropped.is_empty() && added.is_empty() {
            return None;
        }
        dropped.sort_unstable();
        added.sort_by(|a, b| name_order(a.0, a.1.is_tree(), b.0, b.1.is_tree()));
        // Exact, not estimated: a flat tree of 10,000 entries outgrowing its estimate by one
        // entry was reallocated and copied whole, on every head change.
        let added_bytes: usize = added
            .iter()
            .map(|(name, mode, _)| TreeBuilder::entry_len(name, *mode))
            .sum();
        let pool = self.cache.as_ref().map(TreeCache::buffers);
        let Some(base) = base else {
            let mut builder = TreeBuilder::with_capacity_in(pool, added_bytes, added.len());
            for (name, mode, id) in added {
                builder.push(name, mode, &id);
            }
            return Some(builder);
        };
        let mut builder = TreeBuilder::with_capacity_in(
            pool,
            base.data_len() + added_bytes,
            base.len() + added.len(),
        );
        let mut runs = Runs {
            base,
            next: 0,
            dropped: dropped.into_iter().peekable(),
        };
        for (name, mode, id) in added {
            runs.copy_until(&mut builder, base.insertion_point(name, mode.is_tree()));
            builder.push(name, mode, &id);
        }
        runs.copy_until(&mut builder, base.len());
        Some(builder)
    }
}

/// Copies the base's entries to a tree being built, in runs between the dropped ones.
struct Runs<'a> {
    base: &'a DecodedTree,
    /// The first base entry not copied yet.
    next: usize,
    /// The indices of the base entries to leave out, ascending.
    dropped: std::iter::Peekable<std::vec::IntoIter<usize>>,
}

impl Runs<'_> {
    /// Copies the entries before `end` not copied yet, leaving out the dropped ones.
    fn copy_until(&mut self, builder: &mut TreeBuilder, end: usize) {
        while self.next < end {
            match self.dropped.next_if(|&dropped| dropped < end) {
                Some(dropped) => {
                    builder.copy_run(self.base, self.next..dropped);
                    self.next = dropped + 1;
                }
                None => {
                    builder.copy_run(self.base, self.next..end);
                    self.next = end;
                }
            }
        }
    }
}

/// The path made of the first `depth` components of `path`.
fn prefix(path: &StorePath, depth: usize) -> StorePath {
    let joined = path.components().take(depth).collect::<Vec<_>>().join("/");
    StorePath::new(joined).expect("a prefix of a valid path is valid")
}
