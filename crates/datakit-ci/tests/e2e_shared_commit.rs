//! Regression: two repositories holding the same commit (a fork and its upstream) both pass; the
//! second used to fail with "can't create new live log" because both shared the cache branches.

mod common;

use common::{Ci, Repo, State, run_git};

#[test]
fn two_repositories_with_the_same_commit_both_pass() {
    let upstream = Repo::new("upstream");
    let main = upstream.rev("main");
    let forks = tempfile::tempdir().expect("temporary directory");
    let fork = forks.path().join("fork");
    run_git(
        forks.path(),
        &[
            "clone",
            "--quiet",
            &upstream.path().display().to_string(),
            "fork",
        ],
    );
    let state = State::new();
    let ci = Ci::spawn([
        "--repo".into(),
        upstream.path().as_os_str().to_owned(),
        "--repo".into(),
        fork.as_os_str().to_owned(),
        "--test".into(),
        "build=true".into(),
        "--state-dir".into(),
        state.dir().as_os_str().to_owned(),
    ]);
    ci.wait_for_line("local/upstream/heads/main build: success (Passed)");
    ci.wait_for_line("local/fork/heads/main build: success (Passed)");
    state.wait_for_status(&ci, "local/fork", &main, "build", "success");
}
