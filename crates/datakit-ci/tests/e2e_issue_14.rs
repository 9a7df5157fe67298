//! End-to-end regression tests of issue 14 ("trustworthy results") through the real binary on
//! real Git repositories: a changed test command is run again after a restart, and a new branch
//! on a commit already tested prints the statuses it starts with.

mod common;

use common::{Ci, Repo, State};

/// Defect 2: restarting with another command under the same test name shows the new command's
/// result, not the one recorded for the old command.
#[test]
fn issue_14_a_changed_test_command_is_run_again_after_a_restart() {
    let repo = Repo::new("changed");
    let main = repo.rev("main");
    let state = State::new();
    let mut ci = Ci::start(&[&repo], &[("build", "echo passing")], &state, &[]);
    ci.wait_for_line("local/changed/heads/main build: success (Passed)");
    state.wait_for_status(&ci, "local/changed", &main, "build", "success");
    ci.terminate();

    let ci = Ci::start(
        &[&repo],
        &[("build", "echo now failing; exit 3")],
        &state,
        &[],
    );
    ci.wait_for_line(
        r#"local/changed/heads/main build: failure (command "sh" "-c" "echo now failing; exit 3" exited with status 3)"#,
    );
    state.wait_for_status(&ci, "local/changed", &main, "build", "failure");
}

/// Defect 5: a new branch or tag on a commit already tested prints its statuses (they are
/// already in the metadata, so nothing is written for it); a restart prints nothing.
#[test]
fn issue_14_a_new_branch_on_a_tested_commit_prints_its_statuses() {
    let repo = Repo::new("copied");
    let main = repo.rev("main");
    let state = State::new();
    let mut ci = Ci::start(&[&repo], &[("build", "true")], &state, &[]);
    ci.wait_for_line("local/copied/heads/main build: success (Passed)");
    repo.set_ref("refs/heads/copy", &main);
    ci.wait_for_line("local/copied/heads/copy build: success (Passed)");
    repo.set_ref("refs/tags/v2", &main);
    ci.wait_for_line("local/copied/tags/v2 build: success (Passed)");
    ci.terminate();

    // A restart finds nothing new: the next line printed is about the branch pushed after it.
    let ci = Ci::start(&[&repo], &[("build", "true")], &state, &[]);
    let next = repo.commit(&main, "Next", &[("next", "yes\n")]);
    repo.set_ref("refs/heads/next", &next);
    ci.wait_for_line("local/copied/heads/next build: success (Passed)");
    let lines = ci.lines();
    assert!(
        lines.iter().all(|line| line.contains("heads/next")),
        "{lines:#?}"
    );
}
