//! Test support shared by datakit-ci's crates (a dev-dependency only): the real `git`, to check
//! what a store or a repository holds, the real Docker engine ([`docker`]: the tests' base
//! image, and the removal of what a test's CI instance made there), and a real multi-node Docker
//! Swarm with a registry ([`swarm`]: the host's daemon as manager, worker `dockerd`s in network
//! namespaces; the `datakit-ci-swarm up|down` program drives it by hand and in `.ci/run`), and
//! standalone `dockerd`s a test starts and stops ([`dockerd`]: a second Docker host), outside
//! the swarm. Their failures are [`error::HarnessError`]s.
//!
//! ```no_run
//! # let git_dir = std::path::Path::new("state.git");
//! datakit_ci_testkit::assert_fsck_clean(git_dir);
//! let branches = datakit_ci_testkit::git(git_dir, &["branch", "--list"]);
//! ```

pub mod docker;
pub mod dockerd;
pub mod error;
#[cfg(feature = "github")]
pub mod github;
mod host;
pub mod swarm;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `git args` in `dir` with no system or user configuration and a fixed identity (so that
/// it can commit), feeding it `input`; fails the test unless it succeeds, and returns what it
/// printed.
pub fn git_with_input(dir: &Path, args: &[&str], input: &str) -> String {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run git");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write git's input");
    let output = child.wait_with_output().expect("wait for git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("git prints UTF-8")
}

/// [`git_with_input`] with no input.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_input(dir, args, "")
}

/// Fails the test unless `git fsck --strict` finds the repository at `git_dir` clean (dangling
/// objects, left by aborted transactions, are fine). Call it from a fixture's `Drop` only when the
/// thread is not already panicking (`std::thread::panicking()`): a second panic aborts the tests.
pub fn assert_fsck_clean(git_dir: &Path) {
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
        "git fsck --strict failed ({}):\n{}\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
}
