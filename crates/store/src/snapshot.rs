//! Read-only views of a stored tree ([`Snapshot`]) and the differences between two of them.
//!
//! Reads are synchronous: they load small objects from the local object database through a pooled
//! handle with an object cache, which takes microseconds, so calling them from async code is fine
//! (the same reasoning as reading a small local file). Only commits go through `spawn_blocking`.

use std::collections::BTreeMap;
use std::sync::Arc;

use gix::ObjectId;
use gix::bstr::BString;
use gix::objs::tree::EntryMode;

use crate::file_reader::FileReader;
use crate::repo::Repo;
use crate::tree::{self, read_tree};
use crate::{EntryKind, Error, StorePath, TreeId};

/// A read-only tree: the state of a branch at one commit. Cheap to clone.
#[derive(Clone)]
pub struct Snapshot {
    repo: Arc<Repo>,
    root: ObjectId,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("root", &self.root)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(repo: Arc<Repo>, root: ObjectId) -> Snapshot {
        Snapshot { repo, root }
    }

    fn lookup(&self, path: &StorePath) -> Result<Option<(EntryMode, ObjectId)>, Error> {
        let repo = self.repo.get();
        tree::lookup_stored(&repo, self.root, path.components())
    }

    /// The contents of the file at `path`; `None` if absent or not a regular file.
    pub fn read_file(&self, path: &StorePath) -> Result<Option<Vec<u8>>, Error> {
        let repo = self.repo.get();
        match tree::lookup_stored(&repo, self.root, path.components())? {
            Some((mode, id)) if EntryKind::from_mode(mode) == EntryKind::File => {
                tree::read_blob(&repo, id).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A reader over the file at `path`, streaming it without holding it whole in memory (for big
    /// files such as build logs); `None` if absent or not a regular file.
    pub fn open_file(&self, path: &StorePath) -> Result<Option<FileReader>, Error> {
        let repo = self.repo.get();
        match tree::lookup_stored(&repo, self.root, path.components())? {
            Some((mode, id)) if EntryKind::from_mode(mode) == EntryKind::File => {
                let objects = repo.git_dir().join("objects");
                match FileReader::loose(&objects, id) {
                    Ok(Some(reader)) => Ok(Some(reader)),
                    Ok(None) => {
                        tree::read_blob(&repo, id).map(|data| Some(FileReader::memory(data)))
                    }
                    Err(source) => Err(Error::Io {
                        path: objects,
                        source,
                    }),
                }
            }
            _ => Ok(None),
        }
    }

    /// The sorted entry names of the directory at `path`; `None` if absent or not a directory.
    pub fn read_dir(&self, path: &StorePath) -> Result<Option<Vec<String>>, Error> {
        let repo = self.repo.get();
        match tree::lookup_stored(&repo, self.root, path.components())? {
            Some((mode, id)) if mode.is_tree() => {
                let entries = read_tree(&repo, id)?;
                tree::names(path, entries.iter().map(|e| e.name.as_ref())).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// What `path` names, if anything.
    pub fn kind(&self, path: &StorePath) -> Result<Option<EntryKind>, Error> {
        Ok(self
            .lookup(path)?
            .map(|(mode, _)| EntryKind::from_mode(mode)))
    }

    /// Whether anything is at `path`.
    pub fn exists(&self, path: &StorePath) -> Result<bool, Error> {
        Ok(self.lookup(path)?.is_some())
    }

    /// The id of the directory at `path` (`None` if absent or not a directory). Equal ids mean equal
    /// contents, so callers can skip unchanged subtrees without reading them.
    pub fn tree_id(&self, path: &StorePath) -> Result<Option<TreeId>, Error> {
        Ok(match self.lookup(path)? {
            Some((mode, id)) if mode.is_tree() => Some(TreeId::from_object_id(id)),
            _ => None,
        })
    }

    /// Paths of the files (and symlinks) that differ between this tree and `newer`: added, removed or
    /// changed, sorted. Identical subtrees are skipped by id without being read.
    pub fn changed_files(&self, newer: &Snapshot) -> Result<Vec<StorePath>, Error> {
        let repo = self.repo.get();
        let mut out = Vec::new();
        diff_trees(
            &repo,
            Some(self.root),
            Some(newer.root),
            &StorePath::root(),
            &mut out,
        )?;
        out.sort();
        Ok(out)
    }
}

type Entries = BTreeMap<BString, (EntryMode, ObjectId)>;

fn entries_of(repo: &gix::Repository, id: Option<ObjectId>) -> Result<Entries, Error> {
    match id {
        None => Ok(BTreeMap::new()),
        Some(id) => Ok(read_tree(repo, id)?
            .into_iter()
            .map(|e| (e.name, (e.mode, e.id)))
            .collect()),
    }
}

fn diff_trees(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    dir: &StorePath,
    out: &mut Vec<StorePath>,
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    let old_entries = entries_of(repo, old)?;
    let new_entries = entries_of(repo, new)?;
    let mut names: Vec<&BString> = old_entries.keys().chain(new_entries.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let before = old_entries.get(name).copied();
        let after = new_entries.get(name).copied();
        if before == after {
            continue;
        }
        let path = child_path(dir, name)?;
        let tree_of = |side: Option<(EntryMode, ObjectId)>| {
            side.filter(|(m, _)| m.is_tree()).map(|(_, id)| id)
        };
        let is_leaf = |side: Option<(EntryMode, ObjectId)>| side.is_some_and(|(m, _)| !m.is_tree());
        if is_leaf(before) || is_leaf(after) {
            out.push(path.clone());
        }
        let (old_tree, new_tree) = (tree_of(before), tree_of(after));
        if old_tree.is_some() || new_tree.is_some() {
            diff_trees(repo, old_tree, new_tree, &path, out)?;
        }
    }
    Ok(())
}

fn child_path(dir: &StorePath, name: &BString) -> Result<StorePath, Error> {
    let names = tree::names(dir, std::iter::once(name.as_ref()))?;
    let name = names.into_iter().next().expect("one name in, one name out");
    Ok(dir.push_unchecked(&name))
}
