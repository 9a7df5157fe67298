//! Issue 14, defects 4 and 7: every ref name that the real `git check-ref-format` accepts is a
//! [`RefName`], and its target's status branch is a valid branch name of at most 250 bytes that
//! maps back to the target (through the name, or for a shortened name through its `target`
//! file); the commit-index sub-name round-trips too. Names are generated from every character
//! class Git allows or refuses, at lengths up to and beyond 250 bytes, and cross-checked against
//! the real `git`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use datakit_ci_history::{
    History, is_shortened, parse_status_branch, parse_target_sub, status_branch, target_sub,
};
use datakit_ci_store::{BranchName, Store};
use datakit_ci_term::{CommitHash, JobOutput, JobResult, Logs, RefName, RepoId, TargetId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Characters of every class: letters and digits, the punctuation Git allows (the issue's `&<>"#%$()`
/// among them), the escape character `_` and the separator `-`, non-ASCII letters of 2, 3 and 4
/// bytes, Unicode spaces, and what Git refuses (space, `~^:?*[\`, control characters).
const CHARACTERS: &[char] = &[
    'a', 'Z', '0', '9', '-', '_', '.', '/', '@', '{', '}', '&', '<', '>', '"', '\'', '#', '%', '$',
    '(', ')', '!', '+', '=', ',', ';', '`', '|', ']', 'ü', 'é', '中', '🚀', '\u{a0}', '\u{3000}',
    ' ', '~', '^', ':', '?', '*', '[', '\\', '\t', '\u{7f}', '\u{1}',
];

/// Words that make the rules' special cases likely: `.lock`, `..`, `@{`, `head` and escapes.
const WORDS: &[&str] = &[
    ".lock", "..", "@{", "head", "_2f", "%2F", "a-", "lock", "ü/",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(CHARACTERS).prop_map(String::from),
        1 => proptest::sample::select(WORDS).prop_map(str::to_owned),
    ]
}

/// A branch name: a few fragments, sometimes repeated up to exactly 250 bytes or beyond.
fn branch_name() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(fragment(), 1..12),
        prop_oneof![3 => Just(None), 1 => Just(Some(250usize)), 1 => Just(Some(300))],
    )
        .prop_map(|(fragments, length)| {
            let base: String = fragments.concat();
            let Some(length) = length else {
                return base;
            };
            let mut name = String::new();
            'fill: loop {
                for c in base.chars() {
                    if name.len() + c.len_utf8() > length {
                        break 'fill;
                    }
                    name.push(c);
                }
                if base.is_empty() {
                    break;
                }
            }
            name
        })
}

/// Whether the real `git check-ref-format` accepts `refs/heads/<name>`.
fn git_accepts(dir: &Path, name: &str) -> bool {
    Command::new("git")
        .args(["check-ref-format", &format!("refs/heads/{name}")])
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run git")
        .success()
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn issue_14_ref_names_are_what_git_accepts_and_their_names_round_trip() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let repo: RepoId = "me/my-project".parse().expect("valid repo id");
    let accepted = std::cell::Cell::new(0);
    let long = std::cell::Cell::new(0);
    runner()
        .run(&branch_name(), |name| {
            let git = git_accepts(dir.path(), &name);
            let ours = RefName::branch(&name);
            prop_assert_eq!(git, ours.is_ok(), "{:?}: {:?}", name, ours);
            let Ok(ref_name) = ours else {
                return Ok(());
            };
            accepted.set(accepted.get() + 1);
            prop_assert_eq!(ref_name.to_string(), format!("heads/{name}"));
            let target = TargetId::Ref(repo.clone(), ref_name);
            let branch = status_branch(&target);
            prop_assert!(branch.as_str().len() <= BranchName::MAX_COMPONENT_LEN);
            prop_assert!(git_accepts(dir.path(), branch.as_str()), "{}", branch);
            if is_shortened(branch.as_str()) {
                long.set(long.get() + 1);
                prop_assert!(parse_status_branch(branch.as_str()).is_err());
            } else {
                prop_assert_eq!(
                    parse_status_branch(branch.as_str()).ok(),
                    Some(target.clone())
                );
            }
            let sub = target_sub(&target);
            prop_assert_eq!(parse_target_sub(&repo, &sub).ok(), Some(target));
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    // The generator must not be degenerate. The counts vary with the random seed: about 120
    // valid and 50 shortened names of 512 (σ about 9), but a seed giving 96 valid was seen once,
    // which failed the earlier bound of 100; these bounds are many σ below the mean.
    let (accepted, long) = (accepted.get(), long.get());
    assert!(accepted >= 50, "only {accepted} generated names were valid");
    assert!(long >= 5, "only {long} generated names were shortened");
}

/// Issue 14, defect 7: a 250-byte branch and 125 × `a-` (three times as long once escaped) get
/// a history, on branches whose names fit, that read back, with the target in the branch.
#[tokio::test]
async fn issue_14_long_names_get_a_history() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("state.git"))?;
    let history = History::new(store.clone());
    let repo: RepoId = "me/proj".parse()?;
    let source: CommitHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
    let metadata = {
        let mut transaction = store
            .branch(&BranchName::new("github-metadata")?)
            .transaction()
            .await?;
        transaction.create_file(&"x".parse()?, "x")?;
        transaction.commit("metadata").await?
    };
    let names = [
        "b".repeat(250),
        "a-".repeat(125),
        format!("ü{}", "é".repeat(124)),
    ];
    let mut branches = Vec::new();
    for name in &names {
        let target = TargetId::Ref(repo.clone(), RefName::branch(name)?);
        let jobs = BTreeMap::from([(
            "build".to_owned(),
            JobOutput {
                result: JobResult::Success("Passed".to_owned()),
                logs: Logs::Empty,
            },
        )]);
        let commit = history
            .record(&target, &source, metadata, &jobs)
            .await?
            .expect("a first state is written");
        let branch = status_branch(&target);
        assert!(is_shortened(branch.as_str()), "{branch}");
        assert!(
            !branches.contains(&branch),
            "distinct names get distinct branches"
        );
        branches.push(branch.clone());
        // Another History (as after a restart) reads it back, by target and by branch.
        let reopened = History::new(store.clone());
        let latest = reopened.latest(&target).await?.expect("recorded");
        assert_eq!(latest.commit, Some(commit));
        assert_eq!(latest.jobs, jobs);
        assert_eq!(
            reopened.status_branch_target(&branch).await?,
            Some(target.clone())
        );
        reopened
            .index(&[(target.clone(), source.clone(), commit)])
            .await?;
        let builds = reopened.builds_of_commit(&repo, &source).await?;
        assert_eq!(builds.get(&target).and_then(|b| b.commit), Some(commit));
    }
    datakit_ci_testkit::assert_fsck_clean(&dir.path().join("state.git"));
    Ok(())
}
