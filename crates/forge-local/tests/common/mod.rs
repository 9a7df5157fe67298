//! Test fixtures: local Git repositories made with the real `git` in temporary directories, a state
//! store checked with `git fsck --strict` when dropped, and readers of the metadata branch.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use datakit_ci_store::{BranchName, Commit, Snapshot, Store, StorePath};

/// The identity every test commit is made with, so machines without a Git identity work.
const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "Alice"),
    ("GIT_AUTHOR_EMAIL", "alice@example.com"),
    ("GIT_COMMITTER_NAME", "Alice"),
    ("GIT_COMMITTER_EMAIL", "alice@example.com"),
];

/// Runs `git` with `args` in `dir` (or with `--git-dir` when `bare`) and returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

/// Like [`git`], with extra environment variables.
pub fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(IDENTITY)
        .envs(env.iter().copied())
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git prints UTF-8")
        .trim()
        .to_owned()
}

/// A Git repository with a work tree in a temporary directory.
pub struct WorkTree {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl WorkTree {
    /// A new repository whose first branch is `main`, with one commit.
    pub fn new() -> WorkTree {
        let dir = tempfile::tempdir().expect("make temporary directory");
        let path = dir.path().join("project");
        std::fs::create_dir(&path).expect("make repository directory");
        git(&path, &["init", "--quiet", "--initial-branch=main"]);
        let repo = WorkTree { path, _dir: dir };
        repo.commit("Initial commit");
        repo
    }

    /// Runs `git` in the repository.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path, args)
    }

    /// Commits on the current branch (no file changes needed) and returns the new hash.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["commit", "--quiet", "--allow-empty", "-m", message]);
        self.rev_parse("HEAD")
    }

    /// The commit `rev` names.
    pub fn rev_parse(&self, rev: &str) -> String {
        self.git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")])
    }
}

/// A state store in a temporary directory; checked with `git fsck --strict` when dropped.
pub struct StoreFixture {
    pub store: Store,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl StoreFixture {
    pub fn new() -> StoreFixture {
        let dir = tempfile::tempdir().expect("make temporary directory");
        let path = dir.path().join("state.git");
        let store = Store::open(&path).expect("open store");
        StoreFixture {
            store,
            path,
            _dir: dir,
        }
    }

    /// The head of `github-metadata`, if any.
    pub async fn head(&self) -> Option<Commit> {
        self.store
            .branch(&metadata_branch())
            .head()
            .await
            .expect("read metadata head")
    }

    /// The tree of `github-metadata` (which must exist).
    pub async fn tree(&self) -> Snapshot {
        self.head().await.expect("metadata branch exists").tree()
    }

    /// Writes `files` to `github-metadata` as someone other than the bridge would.
    pub async fn write(&self, files: &[(&str, &str)], message: &str) {
        let mut transaction = self
            .store
            .branch(&metadata_branch())
            .transaction()
            .await
            .expect("open transaction");
        for (path, contents) in files {
            transaction
                .create_file(&store_path(path), contents)
                .expect("write file");
        }
        transaction.commit(message).await.expect("commit");
    }

    /// Removes `path` from `github-metadata` as someone other than the bridge would.
    pub async fn remove(&self, path: &str) {
        let mut transaction = self
            .store
            .branch(&metadata_branch())
            .transaction()
            .await
            .expect("open transaction");
        transaction.remove(&store_path(path)).expect("remove");
        transaction
            .commit("External removal")
            .await
            .expect("commit");
    }

    /// Polls the metadata tree until `condition` holds, for up to ten seconds.
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&Snapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(head) = self.head().await
                && condition(&head.tree())
            {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StoreFixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            datakit_ci_testkit::assert_fsck_clean(&self.path);
        }
    }
}

pub fn metadata_branch() -> BranchName {
    BranchName::new("github-metadata").expect("valid branch name")
}

pub fn store_path(path: &str) -> StorePath {
    StorePath::new(path).expect("valid store path")
}

/// The contents of the file at `path`, as text.
pub fn read(tree: &Snapshot, path: &str) -> Option<String> {
    tree.read_file(&store_path(path))
        .expect("read file")
        .map(|bytes| String::from_utf8(bytes).expect("UTF-8 file"))
}

/// Every file path under `dir`, sorted.
pub fn files_under(tree: &Snapshot, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Some(entries) = tree.read_dir(&store_path(&dir)).expect("read dir") else {
            if read(tree, &dir).is_some() {
                out.push(dir);
            }
            continue;
        };
        for entry in entries {
            stack.push(format!("{dir}/{entry}"));
        }
    }
    out.sort();
    out
}
