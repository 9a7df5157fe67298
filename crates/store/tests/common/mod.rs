//! Test fixture: a store in a fresh temporary directory, cross-checked with the real `git` binary,
//! and `git fsck --strict` run on it at the end of every test.

use std::path::PathBuf;

use datakit_ci_store::{BranchName, Store, StorePath};

pub(crate) use datakit_ci_testkit::{assert_fsck_clean, git as git_in};

/// A store in a temporary directory; checked with `git fsck --strict` when dropped.
pub(crate) struct Fixture {
    pub(crate) store: Store,
    pub(crate) path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("make temporary directory");
        let path = dir.path().join("state.git");
        let store = Store::open(&path).expect("open store");
        Fixture {
            store,
            path,
            _dir: dir,
        }
    }

    /// Runs `git` in the store and returns its stdout, failing the test if it fails.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        git_in(&self.path, args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_fsck_clean(&self.path);
        }
    }
}

pub(crate) fn branch(name: &str) -> BranchName {
    BranchName::new(name).expect("valid branch name")
}

pub(crate) fn path(path: &str) -> StorePath {
    StorePath::new(path).expect("valid path")
}
