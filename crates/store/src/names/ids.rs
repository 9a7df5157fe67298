//! What the store's names are: branch names, commit and tree ids, entry kinds and paths inside
//! trees, and what can be done with a valid one. Making one from outside input is in `parse`,
//! which returns the store's [`Error`](super::Error); these types know nothing of errors, so that
//! the error type can name them.

use std::fmt;

/// A validated branch name, following `git check-ref-format --branch` rules: non-empty, no `..`, no
/// control characters, space, `~^:?*[\`, no `@{`, not `@` or `HEAD`, no leading `-`, no component
/// starting with `.` or ending with `.lock`, no empty component, no trailing `/` or `.`; and no
/// component longer than [`BranchName::MAX_COMPONENT_LEN`] bytes, so that the ref's file and its
/// `.lock` fit in a file name (255 bytes on the usual file systems).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(pub(super) String);

impl BranchName {
    /// The longest `/`-separated component a branch name may have, in bytes: a file system's 255,
    /// less the `.lock` that Git and gix append while they update the ref.
    pub const MAX_COMPONENT_LEN: usize = 250;

    /// The name, without any `refs/heads/` prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full reference name, `refs/heads/<name>`.
    pub(crate) fn full_ref(&self) -> String {
        format!("refs/heads/{}", self.0)
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for BranchName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The id of a commit (SHA-1). Displays as 40 lowercase hex digits; parses from hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(pub(super) gix::ObjectId);

impl CommitId {
    pub(crate) fn from_object_id(id: gix::ObjectId) -> Self {
        CommitId(id)
    }

    pub(crate) fn object_id(self) -> gix::ObjectId {
        self.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_hex())
    }
}

/// The id of a tree object, as returned by [`Snapshot::tree_id`](crate::Snapshot::tree_id): two equal
/// ids mean two identical subtrees, so callers can skip unchanged parts cheaply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TreeId(gix::ObjectId);

impl TreeId {
    pub(crate) fn from_object_id(id: gix::ObjectId) -> Self {
        TreeId(id)
    }
}

impl fmt::Display for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_hex())
    }
}

/// What kind of object a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file (executable or not).
    File,
    /// A directory (a Git tree).
    Dir,
    /// A symbolic link.
    Symlink,
    /// A Git submodule link (a commit id in the tree).
    Submodule,
}

impl EntryKind {
    pub(crate) fn from_mode(mode: gix::objs::tree::EntryMode) -> Self {
        if mode.is_tree() {
            EntryKind::Dir
        } else if mode.is_link() {
            EntryKind::Symlink
        } else if mode.is_commit() {
            EntryKind::Submodule
        } else {
            EntryKind::File
        }
    }
}

/// A slash-separated path inside a tree. Components are non-empty, not `.` or `..`, contain no `/` or
/// NUL, and are not `.git` (or its NTFS aliases such as `git~1`), which `git fsck` rejects.
/// The empty path is the root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StorePath(pub(super) String);

impl StorePath {
    /// The root of the tree (the empty path).
    pub fn root() -> Self {
        StorePath(String::new())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends an already validated path.
    #[must_use]
    pub fn join_path(&self, relative: &StorePath) -> StorePath {
        if self.is_root() {
            relative.clone()
        } else if relative.is_root() {
            self.clone()
        } else {
            StorePath(format!("{}/{}", self.0, relative.0))
        }
    }

    /// The components, in order (none for the root).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The path without its last component (`None` for the root).
    pub fn parent(&self) -> Option<StorePath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(index) => StorePath(self.0[..index].to_owned()),
            None => StorePath::root(),
        })
    }

    /// The last component (`None` for the root).
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The path as a string (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends a component already known to be valid (read from a stored tree whose names we checked).
    pub(crate) fn push_unchecked(&self, name: &str) -> StorePath {
        if self.is_root() {
            StorePath(name.to_owned())
        } else {
            StorePath(format!("{}/{}", self.0, name))
        }
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StorePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
