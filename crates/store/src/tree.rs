//! Trees: reading stored Git trees (shared by snapshots and transactions) and the in-memory,
//! lazily loaded, editable tree a transaction works on. Only the trees along edited paths are
//! loaded and, at commit, only changed trees are written; unchanged subtrees keep their ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};
use gix::objs::tree::{EntryKind as GitEntryKind, EntryMode};

use crate::pending::PendingObjects;
use crate::repo::PooledRepo;
use crate::{EntryKind, Error, StorePath};

mod cache;

pub(crate) use cache::{SortedEntries, TreeCache};

/// One entry of a stored tree, owned.
pub(crate) struct StoredEntry {
    pub(crate) name: BString,
    pub(crate) mode: EntryMode,
    pub(crate) id: ObjectId,
}

/// The id of the empty tree.
pub(crate) fn empty_tree() -> ObjectId {
    ObjectId::empty_tree(gix::hash::Kind::Sha1)
}

/// Where trees are read from. A handle from the store's pool reads through the store's cache of
/// decoded trees; a bare `gix::Repository` (replaying a transaction's edits, which is rare) decodes
/// every time. A trait rather than a cache parameter so that callers keep passing their handle.
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

impl TreeSource for PooledRepo {
    fn objects(&self) -> &gix::Repository {
        self
    }
    fn tree_cache(&self) -> Option<&TreeCache> {
        Some(self.home().tree_cache())
    }
}

/// The entries of the stored tree `id`, sorted by name bytes; from the cache if there is one.
pub(crate) fn read_tree<S: TreeSource + ?Sized>(
    source: &S,
    id: ObjectId,
) -> Result<SortedEntries, Error> {
    if id == empty_tree() {
        return Ok(Arc::from([]));
    }
    let cache = source.tree_cache();
    if let Some(found) = cache.and_then(|cache| cache.get(&id)) {
        return Ok(found);
    }
    let repo = source.objects();
    let data = read_object(repo, id, gix::objs::Kind::Tree)?;
    let decoded = gix::objs::TreeRef::from_bytes(&data, repo.object_hash())
        .map_err(Error::git("decode tree"))?;
    let mut entries: Vec<StoredEntry> = decoded
        .entries
        .iter()
        .map(|entry| StoredEntry {
            name: entry.filename.to_owned(),
            mode: entry.mode,
            id: entry.oid.to_owned(),
        })
        .collect();
    // Git's order differs from byte order only around names that are prefixes of others, so the
    // entries are nearly sorted and this (adaptive) sort is close to linear.
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let entries: SortedEntries = entries.into();
    if let Some(cache) = cache {
        cache.insert(id, Arc::clone(&entries));
    }
    Ok(entries)
}

/// Finds `name` among entries sorted by name.
pub(crate) fn find_entry<'a>(entries: &'a [StoredEntry], name: &[u8]) -> Option<&'a StoredEntry> {
    entries
        .binary_search_by(|entry| entry.name.as_slice().cmp(name))
        .ok()
        .map(|index| &entries[index])
}

/// Finds `name` in the stored tree `id`.
fn find_in_tree<S: TreeSource + ?Sized>(
    source: &S,
    id: ObjectId,
    name: &str,
) -> Result<Option<(EntryMode, ObjectId)>, Error> {
    let entries = read_tree(source, id)?;
    Ok(find_entry(&entries, name.as_bytes()).map(|entry| (entry.mode, entry.id)))
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

/// Reads a blob's contents.
pub(crate) fn read_blob(repo: &gix::Repository, id: ObjectId) -> Result<Vec<u8>, Error> {
    read_object(repo, id, gix::objs::Kind::Blob)
}

/// The data of object `id`, which must exist and be of `kind`.
fn read_object(
    repo: &gix::Repository,
    id: ObjectId,
    kind: gix::objs::Kind,
) -> Result<Vec<u8>, Error> {
    match crate::repo::find_object(repo, &id)? {
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
}

/// A node of the editable tree.
pub(crate) enum Node {
    Leaf(EntryMode, ObjectId),
    Dir(DirNode),
}

/// A directory of the editable tree.
pub(crate) struct DirNode {
    /// The stored tree this directory still equals, if it has not been edited since loading or writing.
    stored: Option<ObjectId>,
    /// The entries, once loaded (always `Some` when `stored` is `None`).
    entries: Option<BTreeMap<BString, Node>>,
}

impl DirNode {
    /// A directory equal to the stored tree `id`, loaded on first edit.
    pub(crate) fn from_stored(id: ObjectId) -> DirNode {
        DirNode {
            stored: Some(id),
            entries: None,
        }
    }

    fn new_empty() -> DirNode {
        DirNode {
            stored: None,
            entries: Some(BTreeMap::new()),
        }
    }

    fn load<S: TreeSource + ?Sized>(&mut self, repo: &S) -> Result<(), Error> {
        if self.entries.is_none() {
            let id = self.stored.expect("an unloaded directory has a stored id");
            let entries = read_tree(repo, id)?
                .iter()
                .map(|entry| {
                    let node = if entry.mode.is_tree() {
                        Node::Dir(DirNode::from_stored(entry.id))
                    } else {
                        Node::Leaf(entry.mode, entry.id)
                    };
                    (entry.name.clone(), node)
                })
                .collect();
            self.entries = Some(entries);
        }
        Ok(())
    }

    /// Loads this directory and marks it as edited, returning its entries.
    fn edit<S: TreeSource + ?Sized>(
        &mut self,
        repo: &S,
    ) -> Result<&mut BTreeMap<BString, Node>, Error> {
        self.load(repo)?;
        self.stored = None;
        Ok(self.entries.as_mut().expect("loaded just above"))
    }

    /// Walks to the directory at the first `depth` components of `path`, marking every directory on
    /// the way as edited. With `create`, missing directories are made.
    fn descend<S: TreeSource + ?Sized>(
        &mut self,
        repo: &S,
        path: &StorePath,
        depth: usize,
        create: bool,
    ) -> Result<&mut DirNode, Error> {
        let mut dir = self;
        for (index, name) in path.components().take(depth).enumerate() {
            let entries = dir.edit(repo)?;
            let key = BString::from(name);
            if !entries.contains_key(&key) {
                if !create {
                    return Err(Error::NotFound {
                        path: prefix(path, index + 1),
                    });
                }
                entries.insert(key.clone(), Node::Dir(DirNode::new_empty()));
            }
            match entries.get_mut(&key).expect("present or inserted above") {
                Node::Dir(child) => dir = child,
                Node::Leaf(..) => {
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
        match &self.entries {
            None => self.stored == Some(empty_tree()),
            Some(entries) => entries.values().all(|node| match node {
                Node::Leaf(..) => false,
                Node::Dir(child) => child.holds_no_file(),
            }),
        }
    }

    /// Puts a file (or other non-tree entry) at `path`, replacing a file or an empty directory there
    /// and creating missing parents.
    pub(crate) fn upsert_leaf<S: TreeSource + ?Sized>(
        &mut self,
        repo: &S,
        path: &StorePath,
        mode: EntryMode,
        id: ObjectId,
    ) -> Result<(), Error> {
        let Some(name) = path.file_name() else {
            return Err(Error::IsDir { path: path.clone() });
        };
        let depth = path.components().count() - 1;
        let parent = self.descend(repo, path, depth, true)?;
        let entries = parent.edit(repo)?;
        let key = BString::from(name);
        if let Some(Node::Dir(existing)) = entries.get(&key)
            && !existing.holds_no_file()
        {
            return Err(Error::IsDir { path: path.clone() });
        }
        entries.insert(key, Node::Leaf(mode, id));
        Ok(())
    }

    /// Makes the directory at `path` and its parents.
    pub(crate) fn make_dirs<S: TreeSource + ?Sized>(
        &mut self,
        repo: &S,
        path: &StorePath,
    ) -> Result<(), Error> {
        let depth = path.components().count();
        self.descend(repo, path, depth, true).map(|_| ())
    }

    /// Removes whatever is at `path` (recursively); the root empties the whole tree.
    pub(crate) fn remove<S: TreeSource + ?Sized>(
        &mut self,
        repo: &S,
        path: &StorePath,
    ) -> Result<(), Error> {
        let Some(name) = path.file_name() else {
            *self = DirNode::new_empty();
            return Ok(());
        };
        let not_found = || Error::NotFound { path: path.clone() };
        let depth = path.components().count() - 1;
        let parent = match self.descend(repo, path, depth, false) {
            Ok(parent) => parent,
            Err(Error::NotFound { .. } | Error::NotDir { .. }) => return Err(not_found()),
            Err(other) => return Err(other),
        };
        match parent.edit(repo)?.remove(&BString::from(name)) {
            Some(_) => Ok(()),
            None => Err(not_found()),
        }
    }

    /// Finds what `path` names without loading anything into the tree.
    pub(crate) fn lookup<S: TreeSource + ?Sized>(
        &self,
        repo: &S,
        path: &StorePath,
    ) -> Result<Option<Found<'_>>, Error> {
        let mut dir = self;
        let mut components = path.components();
        while let Some(name) = components.next() {
            let Some(entries) = &dir.entries else {
                let stored = dir.stored.expect("an unloaded directory has a stored id");
                let rest = std::iter::once(name).chain(components);
                return Ok(lookup_stored(repo, stored, rest)?.map(|(mode, id)| {
                    if mode.is_tree() {
                        Found::StoredDir(id)
                    } else {
                        Found::Leaf(mode, id)
                    }
                }));
            };
            match entries.get(name.as_bytes().as_bstr()) {
                None => return Ok(None),
                Some(Node::Dir(child)) => dir = child,
                Some(Node::Leaf(mode, id)) => {
                    return Ok(if components.next().is_none() {
                        Some(Found::Leaf(*mode, *id))
                    } else {
                        None
                    });
                }
            }
        }
        Ok(Some(Found::Dir(dir)))
    }

    /// The sorted entry names of this directory (including empty directories made in memory).
    pub(crate) fn entry_names<S: TreeSource + ?Sized>(
        &self,
        repo: &S,
        path: &StorePath,
    ) -> Result<Vec<String>, Error> {
        match &self.entries {
            Some(entries) => names(path, entries.keys().map(|k| k.as_bstr())),
            None => {
                let stored = read_tree(
                    repo,
                    self.stored.expect("an unloaded directory has a stored id"),
                )?;
                names(path, stored.iter().map(|e| e.name.as_bstr()))
            }
        }
    }

    /// Adds this directory's changed trees to `pending` (dropping empty directories) and remembers
    /// them as unchanged. Returns the tree id and whether the tree is empty.
    pub(crate) fn write(
        &mut self,
        pending: &mut PendingObjects,
    ) -> Result<(ObjectId, bool), Error> {
        if let Some(id) = self.stored {
            return Ok((id, id == empty_tree()));
        }
        let entries = self
            .entries
            .as_mut()
            .expect("an edited directory is loaded");
        let mut tree = gix::objs::Tree::empty();
        for (name, node) in entries.iter_mut() {
            let (mode, id, empty) = match node {
                Node::Leaf(mode, id) => (*mode, *id, false),
                Node::Dir(child) => {
                    let (id, empty) = child.write(pending)?;
                    (EntryMode::from(GitEntryKind::Tree), id, empty)
                }
            };
            push_entry(&mut tree, name, mode, id, empty);
        }
        tree.entries.sort();
        let id = pending.add(gix::objs::Kind::Tree, encode(&tree)?)?;
        self.stored = Some(id);
        Ok((id, tree.entries.is_empty()))
    }

    /// Computes the id [`write`](Self::write) would return, without writing anything.
    pub(crate) fn hash(&self) -> Result<(ObjectId, bool), Error> {
        if let Some(id) = self.stored {
            return Ok((id, id == empty_tree()));
        }
        let entries = self
            .entries
            .as_ref()
            .expect("an edited directory is loaded");
        let mut tree = gix::objs::Tree::empty();
        for (name, node) in entries {
            let (mode, id, empty) = match node {
                Node::Leaf(mode, id) => (*mode, *id, false),
                Node::Dir(child) => {
                    let (id, empty) = child.hash()?;
                    (EntryMode::from(GitEntryKind::Tree), id, empty)
                }
            };
            push_entry(&mut tree, name, mode, id, empty);
        }
        tree.entries.sort();
        let id = gix::objs::compute_hash(
            gix::hash::Kind::Sha1,
            gix::objs::Kind::Tree,
            &encode(&tree)?,
        )
        .map_err(Error::git("hash tree"))?;
        Ok((id, tree.entries.is_empty()))
    }
}

/// Encodes an object as stored in Git (without the header).
pub(crate) fn encode(object: &impl gix::objs::WriteTo) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    object
        .write_to(&mut buf)
        .map_err(Error::git_other("encode object"))?;
    Ok(buf)
}

/// Adds an entry to a tree being built, skipping empty directories (Git trees cannot hold them).
fn push_entry(
    tree: &mut gix::objs::Tree,
    name: &BString,
    mode: EntryMode,
    id: ObjectId,
    empty: bool,
) {
    if mode.is_tree() && empty {
        return;
    }
    tree.entries.push(gix::objs::tree::Entry {
        mode,
        filename: name.clone(),
        oid: id,
    });
}

/// The path made of the first `depth` components of `path`.
fn prefix(path: &StorePath, depth: usize) -> StorePath {
    let joined = path.components().take(depth).collect::<Vec<_>>().join("/");
    StorePath::new(joined).expect("a prefix of a valid path is valid")
}
