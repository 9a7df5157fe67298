//! End-to-end tests of the `datakit-ci` binary on real Git repositories: which targets get which
//! commit statuses, how moving, sharing and deleting refs changes them, the history branches, and
//! canaries. Each test runs the real binary on a temporary repository and reads the state store
//! with `git show`.

mod common;

use common::{Ci, Repo, Scratch, State, Status, wait_until};

const FAILING: &str = r#"command "sh" "-c" "test ! -e fail" exited with status 1"#;

fn passed(url: &str) -> Status {
    Status {
        state: "success".to_owned(),
        description: "Passed".to_owned(),
        target_url: Some(url.to_owned()),
    }
}

#[test]
fn branches_tags_and_prs_get_their_statuses() {
    let repo = Repo::new("sample");
    let main = repo.rev("main");
    let broken = repo.commit(&main, "Break it", &[("fail", "yes\n")]);
    repo.set_ref("refs/heads/broken", &broken);
    let released = repo.commit(&main, "Release", &[("VERSION", "1.0\n")]);
    repo.annotated_tag("v1.0", &released);
    let proposed = repo.commit(&main, "Propose", &[("feature", "new\n")]);
    repo.set_ref("refs/pull/7/head", &proposed);
    let state = State::new();

    let ci = Ci::start(
        &[&repo],
        &[("build", "test ! -e fail")],
        &state,
        &["--web-ui", "https://ci.example.test:8443/ui/dashboard"],
    );

    ci.wait_for_line("local/sample/heads/main build: success (Passed)");
    ci.wait_for_line(&format!(
        "local/sample/heads/broken build: failure ({FAILING})"
    ));
    ci.wait_for_line("local/sample/tags/v1.0 build: success (Passed)");
    ci.wait_for_line("local/sample/prs/7 build: success (Passed)");
    let url = |commit: &str| {
        format!("https://ci.example.test:8443/local/sample/commit/{commit}?test=build")
    };
    assert_eq!(
        state.wait_for_status(&ci, "local/sample", &main, "build", "success"),
        passed(&url(&main))
    );
    assert_eq!(
        state.wait_for_status(&ci, "local/sample", &broken, "build", "failure"),
        Status {
            state: "failure".to_owned(),
            description: FAILING.to_owned(),
            target_url: Some(url(&broken)),
        }
    );
    assert_eq!(
        state.wait_for_status(&ci, "local/sample", &released, "build", "success"),
        passed(&url(&released))
    );
    assert_eq!(
        state.wait_for_status(&ci, "local/sample", &proposed, "build", "success"),
        passed(&url(&proposed))
    );
    // The tag's status is on the tagged commit, not on the tag object.
    let tag_object = repo.rev_object("v1.0");
    assert_ne!(tag_object, released);
    assert_eq!(state.status("local/sample", &tag_object, "build"), None);
    // The mirrored refs point at commits.
    assert_eq!(
        state.show("github-metadata", "local/sample/ref/tags/v1.0/head"),
        Some(format!("{released}\n"))
    );
    assert_eq!(
        state.show("github-metadata", "local/sample/pr/7/head"),
        Some(format!("{proposed}\n"))
    );
    // The failing build kept its log and failure on its cache branch.
    let failure = state.show(&format!("shell-of-build-on-{broken}"), "failure");
    assert!(
        failure.as_deref().is_some_and(|f| f.contains("status 1")),
        "failure file: {failure:?}"
    );
}

#[test]
fn moving_a_branch_tests_the_new_head_and_keeps_the_old_status() {
    let repo = Repo::new("moving");
    let first = repo.rev("main");
    let state = State::new();
    let ci = Ci::start(&[&repo], &[("build", "test ! -e fail")], &state, &[]);
    let old = state.wait_for_status(&ci, "local/moving", &first, "build", "success");

    let second = repo.commit(&first, "Break it", &[("fail", "yes\n")]);
    repo.set_ref("refs/heads/main", &second);

    ci.wait_for_line(&format!(
        "local/moving/heads/main build: failure ({FAILING})"
    ));
    let new = state.wait_for_status(&ci, "local/moving", &second, "build", "failure");
    assert_eq!(new.description, FAILING);
    assert_eq!(
        new.target_url.as_deref(),
        Some(format!("http://127.0.0.1:8080/local/moving/commit/{second}?test=build").as_str())
    );
    assert_eq!(state.status("local/moving", &first, "build"), Some(old));
}

#[test]
fn deleted_branches_and_prs_stop_being_tested() {
    let repo = Repo::new("pruned");
    let main = repo.rev("main");
    let feature = repo.commit(&main, "Feature", &[("feature", "1\n")]);
    repo.set_ref("refs/heads/feature", &feature);
    let proposed = repo.commit(&main, "Proposal", &[("proposal", "1\n")]);
    repo.set_ref("refs/pull/5/head", &proposed);
    let state = State::new();
    let ci = Ci::start(&[&repo], &[("build", "true")], &state, &[]);
    ci.wait_for_line("local/pruned/heads/feature build: success (Passed)");
    ci.wait_for_line("local/pruned/prs/5 build: success (Passed)");
    state.wait_for_status(&ci, "local/pruned", &feature, "build", "success");
    state.wait_for_status(&ci, "local/pruned", &proposed, "build", "success");
    let feature_history = "status-local-pruned-ref-heads-feature";
    let pr_history = "status-local-pruned-pr-5";
    let history_head = |branch: &str| {
        wait_until(
            &format!("history branch {branch} to record the success"),
            || {
                let output = state.show(branch, "job/build/output")?;
                if output.contains(r#""status":"success""#) {
                    state.rev(branch)
                } else {
                    None
                }
            },
            || ci.report(),
        )
    };
    let feature_head = history_head(feature_history);
    let pr_head = history_head(pr_history);
    assert_eq!(
        state.list("github-metadata", "local/pruned/ref/heads/"),
        Some(vec!["feature".to_owned(), "main".to_owned()])
    );

    let lines_before = ci.lines().len();
    repo.delete_ref("refs/heads/feature");
    repo.delete_ref("refs/pull/5/head");

    wait_until(
        "the deleted refs to leave the metadata",
        || {
            let heads = state.list("github-metadata", "local/pruned/ref/heads/");
            let pr = state.show("github-metadata", "local/pruned/pr/5");
            (heads == Some(vec!["main".to_owned()]) && pr.is_none()).then_some(())
        },
        || ci.report(),
    );
    // Move main so that the engine certainly processed the metadata without the deleted refs.
    let next = repo.commit(&main, "Next", &[("next", "1\n")]);
    repo.set_ref("refs/heads/main", &next);
    state.wait_for_status(&ci, "local/pruned", &next, "build", "success");

    let new_lines = ci.lines()[lines_before..].to_vec();
    assert!(
        new_lines
            .iter()
            .all(|line| !line.contains("/heads/feature") && !line.contains("/prs/5")),
        "statuses after the deletion: {new_lines:?}"
    );
    // The history stays, unchanged.
    assert_eq!(state.rev(feature_history), Some(feature_head));
    assert_eq!(state.rev(pr_history), Some(pr_head));
    // So do the statuses already given to the commits.
    assert_eq!(
        state
            .status("local/pruned", &feature, "build")
            .map(|s| s.state),
        Some("success".to_owned())
    );
}

#[test]
fn targets_on_the_same_commit_share_one_build() {
    let repo = Repo::new("shared");
    let main = repo.rev("main");
    repo.set_ref("refs/heads/copy", &main);
    repo.set_ref("refs/pull/2/head", &main);
    let scratch = Scratch::new();
    let state = State::new();
    let command = format!("echo run >> {}", scratch.shell_path("runs"));
    let ci = Ci::start(&[&repo], &[("build", &command)], &state, &[]);

    ci.wait_for_line("local/shared/heads/main build: success (Passed)");
    ci.wait_for_line("local/shared/heads/copy build: success (Passed)");
    ci.wait_for_line("local/shared/prs/2 build: success (Passed)");
    state.wait_for_status(&ci, "local/shared", &main, "build", "success");

    assert_eq!(scratch.count_lines("runs"), 1, "{}", ci.report());
    let builds: Vec<String> = state
        .branches()
        .into_iter()
        .filter(|b| b.starts_with("shell-of-build-on-"))
        .collect();
    assert_eq!(builds, [format!("shell-of-build-on-{main}")]);
}

#[test]
fn history_records_successive_states_and_the_commit_index() {
    let repo = Repo::new("history");
    let first = repo.rev("main");
    let state = State::new();
    let ci = Ci::start(&[&repo], &[("build", "test ! -e fail")], &state, &[]);
    let history = "status-local-history-ref-heads-main";
    let recorded = |commit: &str, state_name: &str| {
        wait_until(
            &format!("{history} to record {state_name} for {commit}"),
            || {
                let source = state.show(history, "source-commit")?;
                let output = state.show(history, "job/build/output")?;
                (source == commit && output.contains(&format!(r#""status":"{state_name}""#)))
                    .then_some(())
            },
            || format!("{:?}\n{}", state.subjects(history), ci.report()),
        );
    };
    recorded(&first, "success");
    let second = repo.commit(&first, "Break it", &[("fail", "yes\n")]);
    repo.set_ref("refs/heads/main", &second);
    recorded(&second, "failure");
    let fixed = repo.commit_removing(&second, "Fix it", &["fail"]);
    repo.set_ref("refs/heads/main", &fixed);
    recorded(&fixed, "success");

    let mut subjects = state.subjects(history);
    subjects.reverse();
    let finals: Vec<&str> = subjects
        .iter()
        .map(String::as_str)
        .filter(|s| *s == "build -> Passed" || s.starts_with("build -> command"))
        .collect();
    assert_eq!(
        finals,
        [
            "build -> Passed",
            &format!("build -> {FAILING}"),
            "build -> Passed"
        ],
        "all subjects: {subjects:?}"
    );
    for commit in [&first, &second, &fixed] {
        let entries = wait_until(
            &format!("the commit index to list {commit}"),
            || state.list("commit-index", &format!("local/history/commit/{commit}/")),
            || ci.report(),
        );
        assert_eq!(entries, ["ref-heads-main"], "{commit}");
        let status_commit = state
            .show(
                "commit-index",
                &format!("local/history/commit/{commit}/ref-heads-main"),
            )
            .expect("indexed");
        assert_eq!(
            state.show(status_commit.trim(), "source-commit").as_deref(),
            Some(commit.as_str())
        );
    }
}

#[test]
fn canaries_limit_testing_to_their_targets() {
    let repo = Repo::new("canaried");
    let main = repo.rev("main");
    let other = repo.commit(&main, "Other", &[("other", "1\n")]);
    repo.set_ref("refs/heads/other", &other);
    let proposed = repo.commit(&main, "Proposal", &[("proposal", "1\n")]);
    repo.set_ref("refs/pull/1/head", &proposed);
    let released = repo.commit(&main, "Release", &[("VERSION", "1\n")]);
    repo.annotated_tag("v1", &released);
    let state = State::new();
    let ci = Ci::start(
        &[&repo],
        &[("build", "true")],
        &state,
        &["--canary", "local/canaried/heads/main"],
    );
    ci.wait_for_line("local/canaried/heads/main build: success (Passed)");
    state.wait_for_status(&ci, "local/canaried", &main, "build", "success");
    // A second change of main: by the time it is tested, the engine has long seen the others.
    let next = repo.commit(&main, "Next", &[("next", "1\n")]);
    repo.set_ref("refs/heads/main", &next);
    state.wait_for_status(&ci, "local/canaried", &next, "build", "success");

    // The bridge mirrors every ref, but only main is tested.
    assert_eq!(
        state.list("github-metadata", "local/canaried/ref/heads/"),
        Some(vec!["main".to_owned(), "other".to_owned()])
    );
    for commit in [&other, &proposed, &released] {
        assert_eq!(state.status("local/canaried", commit, "build"), None);
    }
    let lines = ci.lines();
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with("local/canaried/heads/main ")),
        "{lines:?}"
    );
    let histories: Vec<String> = state
        .branches()
        .into_iter()
        .filter(|b| b.starts_with("status-"))
        .collect();
    assert_eq!(histories, ["status-local-canaried-ref-heads-main"]);
}

#[test]
fn names_are_escaped_and_descriptions_truncated() {
    let dashed = Repo::new("my-project");
    let main = dashed.rev("main");
    let feature = dashed.commit(&main, "Feature", &[("feature", "1\n")]);
    dashed.set_ref("refs/heads/feature/x_y", &feature);
    let other = Repo::new("other");
    let other_main = other.rev("main");
    let state = State::new();
    // A failing command long enough for its description to be truncated to 140 bytes.
    let long = format!("{}exit 3", "true; ".repeat(30));
    let ci = Ci::spawn([
        "--repo".into(),
        dashed.path().as_os_str().to_owned(),
        "--repo".into(),
        format!("me/renamed={}", other.path().display()).into(),
        "--test".into(),
        "unit.fast=true".into(),
        "--test".into(),
        format!("long={long}").into(),
        "--state-dir".into(),
        state.dir().as_os_str().to_owned(),
    ]);
    ci.wait_for_line("local/my-project/heads/feature/x_y unit.fast: success (Passed)");
    ci.wait_for_line("me/renamed/heads/main unit.fast: success (Passed)");
    let full = format!(r#"command "sh" "-c" "{long}" exited with status 3"#);
    let truncated = &full[..140];
    ci.wait_for_line(&format!(
        "me/renamed/heads/main long: failure ({truncated})"
    ));
    let status = state.wait_for_status(&ci, "me/renamed", &other_main, "long", "failure");
    assert_eq!(status.description, truncated);
    assert_eq!(
        status.target_url,
        Some(format!(
            "http://127.0.0.1:8080/me/renamed/commit/{other_main}?test=long"
        ))
    );
    state.wait_for_status(&ci, "local/my-project", &feature, "unit.fast", "success");
    let history = "status-local-my_2dproject-ref-heads-feature_2fx_5fy";
    wait_until(
        &format!("history branch {history}"),
        || {
            state
                .show(history, "job/unit.fast/output")
                .filter(|output| output.contains(r#""status":"success""#))
        },
        || format!("{:?}\n{}", state.branches(), ci.report()),
    );
    let indexed = wait_until(
        &format!("the commit index to list {feature}"),
        || {
            state.list(
                "commit-index",
                &format!("local/my-project/commit/{feature}/"),
            )
        },
        || ci.report(),
    );
    assert_eq!(indexed, ["ref-heads-feature_2fx_5fy"]);
    assert!(
        state
            .branches()
            .contains(&"status-me-renamed-ref-heads-main".to_owned())
    );
}
