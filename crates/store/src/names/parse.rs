//! Making names from outside input: validating branch names and paths, parsing commit ids, and the
//! `_XX` escaping that turns arbitrary strings into branch-name-safe ones and back. Every failure
//! is an [`Error`] naming the input and the problem.

use std::str::FromStr;

use super::error::Error;
use super::ids::{BranchName, CommitId, StorePath};

impl BranchName {
    /// Validates `name` as a branch name.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        match branch_name_problem(&name) {
            None => Ok(BranchName(name)),
            Some(reason) => Err(Error::InvalidBranch { name, reason }),
        }
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

    /// Appends `relative`, itself a slash-separated path (validated like [`StorePath::new`]).
    pub fn join(&self, relative: &str) -> Result<StorePath, Error> {
        let relative = StorePath::new(relative)?;
        Ok(self.join_path(&relative))
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
