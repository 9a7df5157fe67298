//! Ref names and their escaping on any text: every branch name Git accepts (the store's
//! `BranchName` implements `git check-ref-format --branch`) is a target; its status branch is a
//! valid name of at most 250 bytes that names it back (directly, or through the `target` file
//! when shortened); its commit-index name and the store's escaping round-trip; nothing panics.
#![no_main]

use datakit_ci_history::{
    is_shortened, parse_status_branch, parse_target_sub, status_branch, target_sub,
};
use datakit_ci_store::{BranchName, escape, unescape};
use datakit_ci_term::{RefName, RepoId, TargetId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &str| {
    assert_eq!(
        unescape(&escape(name)).ok().as_deref(),
        Some(name),
        "escaping round-trips"
    );
    // Parsing never panics, whatever it is given.
    let _parsed = parse_status_branch(name);
    let repo: RepoId = "me/proj".parse().expect("a valid id");
    let _sub = parse_target_sub(&repo, name);

    if BranchName::new(name).is_err() {
        return;
    }
    let branch = RefName::branch(name)
        .unwrap_or_else(|e| panic!("Git accepts the branch {name:?}, but: {e}"));
    assert_eq!(branch.to_string(), format!("heads/{name}"));
    for target in [TargetId::Ref(repo.clone(), branch), tag(&repo, name)] {
        let status = status_branch(&target);
        assert!(
            status.as_str().len() <= BranchName::MAX_COMPONENT_LEN,
            "{status}"
        );
        if is_shortened(status.as_str()) {
            // The full name is kept in the branch's `target` file; it still parses.
            assert!(parse_status_branch(status.as_str()).is_err());
        } else {
            assert_eq!(
                parse_status_branch(status.as_str()).ok().as_ref(),
                Some(&target),
                "{status}"
            );
        }
        assert_eq!(
            parse_target_sub(&repo, &target_sub(&target)).ok().as_ref(),
            Some(&target)
        );
    }
});

fn tag(repo: &RepoId, name: &str) -> TargetId {
    let tag =
        RefName::tag(name).unwrap_or_else(|e| panic!("Git accepts the tag {name:?}, but: {e}"));
    TargetId::Ref(repo.clone(), tag)
}
