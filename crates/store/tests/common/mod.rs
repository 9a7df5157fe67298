//! Test fixture: a store in a fresh temporary directory, cross-checked with the real `git` binary,
//! and `git fsck --strict` run on it at the end of every test.

use std::path::{Path, PathBuf};
use std::process::Command;

use datakit_ci_store::{BranchName, Store, StorePath};

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

/// Fails the test unless `git fsck --strict` finds the repository clean (dangling objects, left by
/// aborted transactions, are fine).
pub(crate) fn assert_fsck_clean(git_dir: &Path) {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["fsck", "--strict", "--no-progress"])
        .output()
        .expect("run git fsck");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("dangling ") && !line.starts_with("notice: "))
        .collect();
    assert!(
        output.status.success() && problems.is_empty(),
        "git fsck --strict failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        stderr
    );
}

pub(crate) fn git_in(git_dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(git_dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("git prints UTF-8")
}

pub(crate) fn branch(name: &str) -> BranchName {
    BranchName::new(name).expect("valid branch name")
}

pub(crate) fn path(path: &str) -> StorePath {
    StorePath::new(path).expect("valid path")
}
