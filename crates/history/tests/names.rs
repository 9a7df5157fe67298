//! Status-branch names and target sub-names (spec §3.7), both ways, and the rejection of names
//! that name no target.

use datakit_ci_history::{Error, parse_status_branch, parse_target_sub, status_branch, target_sub};
use datakit_ci_term::{RefName, RepoId, TargetId};

fn repo(id: &str) -> RepoId {
    id.parse().expect("valid repo id in test")
}

fn git_ref(repo_id: &str, name: &str) -> TargetId {
    TargetId::Ref(repo(repo_id), name.parse().expect("valid ref in test"))
}

/// `target` has status branch `branch` and sub-name `sub`, and both parse back to it.
fn check(target: TargetId, branch: &str, sub: &str) {
    assert_eq!(status_branch(&target).as_str(), branch, "{target}");
    assert_eq!(target_sub(&target), sub, "{target}");
    match parse_status_branch(branch) {
        Ok(parsed) => assert_eq!(parsed, target, "{branch}"),
        Err(error) => panic!("{branch}: {error}"),
    }
    match parse_target_sub(target.repo(), sub) {
        Ok(parsed) => assert_eq!(parsed, target, "{sub}"),
        Err(error) => panic!("{sub}: {error}"),
    }
}

#[test]
fn spec_examples_hold_both_ways() {
    check(
        TargetId::Pr(repo("user/project"), 3907),
        "status-user-project-pr-3907",
        "pr-3907",
    );
    check(
        git_ref("me/repo", "heads/master"),
        "status-me-repo-ref-heads-master",
        "ref-heads-master",
    );
    check(
        git_ref("me/my-project", "heads/feature/x_y"),
        "status-me-my_2dproject-ref-heads-feature_2fx_5fy",
        "ref-heads-feature_2fx_5fy",
    );
    check(
        TargetId::Ref(repo("u/r"), RefName::tag("v1.0").expect("valid tag")),
        "status-u-r-ref-tags-v1.0",
        "ref-tags-v1.0",
    );
}

#[test]
fn single_component_refs_and_odd_names_round_trip() {
    check(git_ref("u/r", "v0.1"), "status-u-r-ref-v0.1-", "ref-v0.1-");
    check(
        git_ref("my_user/r.s", "heads/a-b/c_d/e"),
        "status-my_5fuser-r.s-ref-heads-a_2db_2fc_5fd_2fe",
        "ref-heads-a_2db_2fc_5fd_2fe",
    );
    check(
        TargetId::Pr(repo("u/r"), u64::MAX),
        &format!("status-u-r-pr-{}", u64::MAX),
        &format!("pr-{}", u64::MAX),
    );
}

fn status_branch_error(name: &str) -> String {
    match parse_status_branch(name) {
        Ok(target) => panic!("{name:?} parsed as {target}"),
        Err(error) => {
            assert!(
                matches!(&error, Error::InvalidStatusBranch { name: bad, .. } if bad == name),
                "{error:?}"
            );
            error.to_string()
        }
    }
}

#[test]
fn bad_status_branch_names_are_rejected_with_the_reason() {
    assert_eq!(
        status_branch_error("master"),
        r#"invalid status branch name "master": does not start with "status-""#
    );
    assert_eq!(
        status_branch_error("status-u-r"),
        r#"invalid status branch name "status-u-r": expected status-<user>-<repo>-pr-<n> or status-<user>-<repo>-ref-<x>-<rest>"#
    );
    assert_eq!(
        status_branch_error("status-u-r-pr-x1"),
        r#"invalid status branch name "status-u-r-pr-x1": PR number "x1" is not a decimal number"#
    );
    assert_eq!(
        status_branch_error("status-u-r-pr-+1"),
        r#"invalid status branch name "status-u-r-pr-+1": PR number "+1" is not a decimal number"#
    );
    assert_eq!(
        status_branch_error("status-u-r-pr-1-2"),
        r#"invalid status branch name "status-u-r-pr-1-2": expected pr-<n> or ref-<x>-<rest>"#
    );
    assert_eq!(
        status_branch_error("status-u-r-ref-heads"),
        r#"invalid status branch name "status-u-r-ref-heads": expected pr-<n> or ref-<x>-<rest>"#
    );
    assert_eq!(
        status_branch_error("status-u_zz-r-pr-1"),
        r#"invalid status branch name "status-u_zz-r-pr-1": invalid escaped string "u_zz": '_' not followed by two hex digits"#
    );
    assert_eq!(
        status_branch_error("status-u_20x-r-pr-1"),
        r#"invalid status branch name "status-u_20x-r-pr-1": invalid character ' ' in user "u x""#
    );
    // Decodes to a target, but is not how that target's branch is spelled.
    assert_eq!(
        status_branch_error("status-u-r-pr-007"),
        r#"invalid status branch name "status-u-r-pr-007": not the canonical name of u/r/prs/7 (which is "status-u-r-pr-7")"#
    );
    assert_eq!(
        status_branch_error("status-u-r-ref-tags-v1_2e0"),
        r#"invalid status branch name "status-u-r-ref-tags-v1_2e0": not the canonical name of u/r/tags/v1.0 (which is "status-u-r-ref-tags-v1.0")"#
    );
}

#[test]
fn bad_sub_names_are_rejected_with_the_reason() {
    let messages: Vec<String> = ["ref", "pr-", "ref-heads-a_2f_2fb", "pr-1x", "xyz-1"]
        .into_iter()
        .map(|sub| match parse_target_sub(&repo("u/r"), sub) {
            Ok(target) => panic!("{sub:?} parsed as {target}"),
            Err(error) => error.to_string(),
        })
        .collect();
    assert_eq!(
        messages,
        [
            r#"invalid target sub-name "ref": expected pr-<n> or ref-<x>-<rest>"#,
            r#"invalid target sub-name "pr-": PR number "" is not a decimal number"#,
            r#"invalid target sub-name "ref-heads-a_2f_2fb": empty ref component in "heads/a//b""#,
            r#"invalid target sub-name "pr-1x": PR number "1x" is not a decimal number"#,
            r#"invalid target sub-name "xyz-1": expected pr-<n> or ref-<x>-<rest>"#,
        ]
    );
}
