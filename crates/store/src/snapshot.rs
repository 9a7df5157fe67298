//! Read-only views of a stored tree ([`Snapshot`]) and the differences between two of them.
//!
//! Reads are synchronous: they load small objects from the local object database through a pooled
//! handle with an object cache, which takes microseconds, so calling them from async code is fine
//! (the same reasoning as reading a small local file). Only commits go through `spawn_blocking`.

use std::cmp::Ordering;
use std::sync::Arc;

use gix::ObjectId;
use gix::bstr::BStr;
use gix::objs::tree::{EntryMode, name_order};

use crate::odb::FileReader;
use crate::state::State;
use crate::tree::{self, DecodedTree, EntryRef, TreeSource, read_tree};
use crate::{EntryKind, Error, StorePath, TreeId};

/// A read-only tree: the state of a branch at one commit. Cheap to clone.
#[derive(Clone)]
pub struct Snapshot {
    repo: Arc<State>,
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
    pub(crate) fn new(repo: Arc<State>, root: ObjectId) -> Snapshot {
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
                tree::names(path, entries.iter().map(|entry| entry.name)).map(Some)
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

fn entries_of<S: TreeSource + ?Sized>(
    source: &S,
    id: Option<ObjectId>,
) -> Result<DecodedTree, Error> {
    match id {
        None => Ok(DecodedTree::empty()),
        Some(id) => read_tree(source, id),
    }
}

fn diff_trees<S: TreeSource + ?Sized>(
    source: &S,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    dir: &StorePath,
    out: &mut Vec<StorePath>,
) -> Result<(), Error> {
    if old == new {
        return Ok(());
    }
    let old_entries = entries_of(source, old)?;
    let new_entries = entries_of(source, new)?;
    // Both lists are in Git's order: walk them together, as a merge does. A name that is a file on
    // one side and a directory on the other sorts apart, so it is seen as a removal and an addition,
    // which reports the same paths as a change would.
    // Versions of a big tree mostly differ in a few entries: skip the equal ones at both ends.
    let (head, tail) = old_entries.common_ends(&new_entries);
    let (old_end, new_end) = (old_entries.len() - tail, new_entries.len() - tail);
    let (mut o, mut n) = (head, head);
    while o < old_end || n < new_end {
        let older = (o < old_end).then(|| old_entries.get(o)).flatten();
        let newer = (n < new_end).then(|| new_entries.get(n)).flatten();
        let order = match (older, newer) {
            (Some(older), Some(newer)) => name_order(
                older.name,
                older.mode.is_tree(),
                newer.name,
                newer.mode.is_tree(),
            ),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        let side = |entry: EntryRef<'_>| Some((entry.mode, entry.id));
        let (name, before, after) = match (order, older, newer) {
            (Ordering::Equal, Some(older), Some(newer)) => {
                o += 1;
                n += 1;
                (older.name, side(older), side(newer))
            }
            (Ordering::Less, Some(older), _) => {
                o += 1;
                (older.name, side(older), None)
            }
            (_, _, Some(newer)) => {
                n += 1;
                (newer.name, None, side(newer))
            }
            _ => unreachable!("the loop runs while either list has an entry left"),
        };
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
            diff_trees(source, old_tree, new_tree, &path, out)?;
        }
    }
    Ok(())
}

fn child_path(dir: &StorePath, name: &BStr) -> Result<StorePath, Error> {
    let names = tree::names(dir, std::iter::once(name))?;
    let name = names.into_iter().next().expect("one name in, one name out");
    Ok(dir.push_unchecked(&name))
}

#[cfg(test)]
mod tests {

    use super::diff_trees;
    use crate::tree::lookup_stored;
    use crate::{BranchName, Store, StorePath};

    /// Lookups and diffs read trees through the store's cache; they must give what reading the
    /// objects afresh gives (and what Git says), cold and warm. The names include ones where Git's
    /// order (a directory sorts as if its name ended with `/`) differs from byte order.
    #[tokio::test]
    async fn cached_trees_give_the_same_lookups_and_diffs() -> Result<(), crate::Error> {
        let dir = tempfile::tempdir().expect("make a temporary directory");
        let git_dir = dir.path().join("state.git");
        let store = Store::open(&git_dir)?;
        let main = store.branch(&BranchName::new("main")?);
        let mut transaction = main.transaction().await?;
        let mut before = vec![
            "a/x", "a.b", "a-", "a0", "ab", "b", "c/d/e", "c/d.e", "dir/file",
        ];
        let many: Vec<String> = (0..300).map(|n| format!("big/{n}")).collect();
        before.extend(many.iter().map(String::as_str));
        for path in &before {
            transaction.create_file(&StorePath::new(*path)?, *path)?;
        }
        let old = transaction.commit("before").await?;
        let mut transaction = main.transaction().await?;
        transaction.remove(&StorePath::new("a.b")?)?;
        transaction.create_file(&StorePath::new("a.b/now-a-dir")?, "x")?;
        transaction.remove(&StorePath::new("dir")?)?;
        transaction.create_file(&StorePath::new("dir")?, "now a file")?;
        transaction.create_file(&StorePath::new("c/d/e")?, "changed")?;
        transaction.create_file(&StorePath::new("big/7")?, "changed")?;
        transaction.remove(&StorePath::new("big/250")?)?;
        transaction.create_file(&StorePath::new("big/a")?, "added")?;
        let new = transaction.commit("after").await?;

        let old_snapshot = store.commit(old).await?.tree();
        let new_snapshot = store.commit(new).await?.tree();
        // Run inside the bare repository, which git finds as its own directory.
        let expected = datakit_ci_testkit::git(
            &git_dir,
            &[
                "diff-tree",
                "-r",
                "--name-only",
                "--no-renames",
                &old.to_string(),
                &new.to_string(),
            ],
        );
        let mut expected: Vec<&str> = expected.lines().collect();
        expected.sort();
        let handle = store.repo().get();
        let uncached: &gix::Repository = &handle;
        let mut fresh = Vec::new();
        diff_trees(
            uncached,
            Some(old_snapshot.root),
            Some(new_snapshot.root),
            &StorePath::root(),
            &mut fresh,
        )?;
        fresh.sort();
        let as_strings =
            |paths: &[StorePath]| paths.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(as_strings(&fresh), expected);
        drop(handle);
        // The transactions above filled the cache.
        store.repo().tree_cache().clear();
        // Cold, then warm.
        for _ in 0..2 {
            assert_eq!(
                as_strings(&old_snapshot.changed_files(&new_snapshot)?),
                expected
            );
        }
        assert!(store.repo().tree_cache().entries() > 300, "warm");

        for (commit, snapshot) in [(old, &old_snapshot), (new, &new_snapshot)] {
            let listed = datakit_ci_testkit::git(
                &git_dir,
                &["ls-tree", "-r", "-t", "--name-only", &commit.to_string()],
            );
            let mut paths: Vec<&str> = listed.lines().collect();
            paths.extend(["missing", "a/missing", "a.b/x/y", "big/1/x", "a/x/y"]);
            for path in paths {
                store.repo().tree_cache().clear();
                let path = StorePath::new(path)?;
                let handle = store.repo().get();
                let uncached: &gix::Repository = &handle;
                let fresh = lookup_stored(uncached, snapshot.root, path.components())?;
                for _ in 0..2 {
                    let cached = lookup_stored(&handle, snapshot.root, path.components())?;
                    assert_eq!(cached, fresh, "{path}");
                }
                drop(handle);
                let kind = fresh.map(|(mode, _)| crate::EntryKind::from_mode(mode));
                assert_eq!(snapshot.kind(&path)?, kind, "{path}");
            }
        }
        Ok(())
    }
}
