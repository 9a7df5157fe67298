//! Validated identifiers: branch names, commit and tree ids, paths inside trees, and the `_XX` escaping
//! used to turn arbitrary strings into branch names. No I/O here.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A validated branch name, following `git check-ref-format --branch` rules: non-empty, no `..`, no
/// control characters, space, `~^:?*[\`, no `@{`, not `@` or `HEAD`, no leading `-`, no component
/// starting with `.` or ending with `.lock`, no empty component, no trailing `/` or `.`; and no
/// component longer than [`BranchName::MAX_COMPONENT_LEN`] bytes, so that the ref's file and its
/// `.lock` fit in a file name (255 bytes on the usual file systems).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(String);

impl BranchName {
    /// The longest `/`-separated component a branch name may have, in bytes: a file system's 255,
    /// less the `.lock` that Git and gix append while they update the ref.
    pub const MAX_COMPONENT_LEN: usize = 250;

    /// Validates `name` as a branch name.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        match branch_name_problem(&name) {
            None => Ok(BranchName(name)),
            Some(reason) => Err(Error::InvalidBranch { name, reason }),
        }
    }

    /// The name, without any `refs/heads/` prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full reference name, `refs/heads/<name>`.
    pub(crate) fn full_ref(&self) -> String {
        format!("refs/heads/{}", self.0)
    }
}

fn branch_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name == "@" || name == "HEAD" {
        return Some("reserved name");
    }
    if name.starts_with('-') {
        return Some("starts with '-'");
    }
    if name.ends_with('/') {
        return Some("ends with '/'");
    }
    if name.ends_with('.') {
        return Some("ends with '.'");
    }
    if name.contains("..") {
        return Some("contains '..'");
    }
    if name.contains("@{") {
        return Some("contains '@{'");
    }
    if name
        .chars()
        .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
    {
        return Some("contains a control character, space or one of ~^:?*[\\");
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Some("has an empty component");
        }
        if component.starts_with('.') {
            return Some("has a component starting with '.'");
        }
        if component.ends_with(".lock") {
            return Some("has a component ending with '.lock'");
        }
        if component.len() > BranchName::MAX_COMPONENT_LEN {
            return Some("has a component longer than 250 bytes, which no file name can hold");
        }
    }
    None
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

impl FromStr for BranchName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        BranchName::new(s)
    }
}

/// Escapes `s` for use in a branch name: every byte not in `[A-Za-z0-9.]` becomes `_` followed by two
/// lowercase hex digits (so `-` is `_2d`, `_` is `_5f`, `/` is `_2f`).
///
/// ```
/// assert_eq!(datakit_ci_store::escape("feature/x_y"), "feature_2fx_5fy");
/// ```
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'.' {
            out.push(char::from(byte));
        } else {
            out.push('_');
            out.push_str(&format!("{byte:02x}"));
        }
    }
    out
}

/// Reverses [`escape`]: every `_` followed by two hex digits becomes the byte they encode.
///
/// Fails if a `_` is not followed by two hex digits or the decoded bytes are not UTF-8.
pub fn unescape(s: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidEscape {
        input: s.to_owned(),
        reason,
    };
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'_' {
            let hex = bytes
                .get(index + 1..index + 3)
                .ok_or_else(|| invalid("'_' not followed by two hex digits"))?;
            let hex = std::str::from_utf8(hex)
                .map_err(|_| invalid("'_' not followed by two hex digits"))?;
            let byte = u8::from_str_radix(hex, 16)
                .map_err(|_| invalid("'_' not followed by two hex digits"))?;
            out.push(byte);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("decodes to invalid UTF-8"))
}

/// The id of a commit (SHA-1). Displays as 40 lowercase hex digits; parses from hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(gix::ObjectId);

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

impl FromStr for CommitId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidCommitId {
                input: s.to_owned(),
            });
        }
        let id = gix::ObjectId::from_hex(s.to_ascii_lowercase().as_bytes()).map_err(|_| {
            Error::InvalidCommitId {
                input: s.to_owned(),
            }
        })?;
        Ok(CommitId(id))
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
pub struct StorePath(String);

impl StorePath {
    /// Validates a slash-separated path such as `"a/b/c"`. The empty string is the root.
    pub fn new(path: impl Into<String>) -> Result<Self, Error> {
        let path = path.into();
        if path.is_empty() {
            return Ok(StorePath(path));
        }
        for component in path.split('/') {
            if let Some(reason) = component_problem(component) {
                return Err(Error::InvalidPath { path, reason });
            }
        }
        Ok(StorePath(path))
    }

    /// The root of the tree (the empty path).
    pub fn root() -> Self {
        StorePath(String::new())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends `relative`, itself a slash-separated path (validated like [`StorePath::new`]).
    pub fn join(&self, relative: &str) -> Result<StorePath, Error> {
        let relative = StorePath::new(relative)?;
        Ok(self.join_path(&relative))
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

fn component_problem(component: &str) -> Option<&'static str> {
    if component.is_empty() {
        return Some("empty component");
    }
    if component == "." || component == ".." {
        return Some("'.' or '..' component");
    }
    if component.contains('\0') {
        return Some("contains NUL");
    }
    let folded = component.trim_end_matches([' ', '.']).to_ascii_lowercase();
    if folded == ".git" || folded == "git~1" {
        return Some("'.git' component");
    }
    None
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

impl FromStr for StorePath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        StorePath::new(s)
    }
}

impl TryFrom<&str> for StorePath {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        StorePath::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_examples_from_the_spec() {
        let branch = format!(
            "status-{}-{}-ref-{}-{}",
            escape("me"),
            escape("my-project"),
            escape("heads"),
            escape("feature/x_y")
        );
        assert_eq!(branch, "status-me-my_2dproject-ref-heads-feature_2fx_5fy");
        assert_eq!(escape("v1.0"), "v1.0");
        assert_eq!(unescape("feature_2fx_5fy").expect("valid"), "feature/x_y");
        assert!(unescape("bad_2").is_err());
        assert!(unescape("bad_zz").is_err());
    }

    #[test]
    fn branch_names() {
        for good in [
            "main",
            "status-me-repo-pr-1",
            "a/b",
            "git-pull-of-abc",
            "x_2d.y",
        ] {
            assert!(BranchName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "-x", ".x", "a/.x", "a..b", "a b", "a~", "a^", "a:", "a?", "a*", "a[", "a\\b",
            "a/", "a.", "a.lock", "a.lock/b", "a//b", "@", "a@{b", "HEAD", "a\u{7}",
        ] {
            assert!(BranchName::new(bad).is_err(), "{bad:?}");
        }
        let longest = "x".repeat(BranchName::MAX_COMPONENT_LEN);
        assert!(BranchName::new(longest.as_str()).is_ok());
        assert!(BranchName::new(format!("{longest}/{longest}")).is_ok());
        assert!(BranchName::new(format!("{longest}y")).is_err());
    }

    #[test]
    fn paths() {
        let path = StorePath::new("a/b/c").expect("valid");
        assert_eq!(path.components().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(path.parent(), Some(StorePath::new("a/b").expect("valid")));
        assert_eq!(path.file_name(), Some("c"));
        assert_eq!(
            StorePath::root().join("x/y").expect("valid").to_string(),
            "x/y"
        );
        assert_eq!(StorePath::root().components().count(), 0);
        for bad in [
            "a//b", "/a", "a/", "..", "a/../b", "./a", "a\0b", ".git", "x/.GIT", "git~1",
        ] {
            assert!(StorePath::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commit_ids() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let id: CommitId = hex.parse().expect("valid");
        assert_eq!(id.to_string(), hex);
        assert!("0123".parse::<CommitId>().is_err());
        assert!(
            "g123456789abcdef0123456789abcdef01234567"
                .parse::<CommitId>()
                .is_err()
        );
    }
}
