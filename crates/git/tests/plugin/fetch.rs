//! `Repo::fetch_head`: resolving targets in the metadata, fetching only what is missing, and
//! sharing one cache entry per head commit.

use datakit_ci_term::{CommitHash, Problem, TargetId};

use crate::fixture::{Fixture, branch_target, git, git_succeeds, hash, repo_id, tag_target, value};

/// Fetches every target of `targets` with `repo` in `snapshot`, `concurrently` or one by one, and
/// checks each result and local branch.
async fn fetch_all(
    fx: &Fixture,
    repo: &datakit_ci_git::Repo,
    targets: &[(TargetId, datakit_ci_term::CommitHash)],
    snapshot: &datakit_ci_store::Snapshot,
    concurrently: bool,
) -> anyhow::Result<()> {
    let fetch = |target: TargetId| {
        let term = repo.fetch_head(target);
        let snapshot = snapshot.clone();
        async move {
            term.evaluate_until_settled(fx.job(), Some(snapshot))
                .await
                .status
        }
    };
    let statuses = if concurrently {
        futures::future::join_all(targets.iter().map(|(target, _)| fetch(target.clone()))).await
    } else {
        let mut statuses = Vec::new();
        for (target, _) in targets {
            statuses.push(fetch(target.clone()).await);
        }
        statuses
    };
    for ((_, expected), status) in targets.iter().zip(statuses) {
        assert_eq!(value(status.result)?.hash(), expected);
        assert_eq!(
            &hash(&fx.local, &format!("git-pull-of-{expected}")),
            expected
        );
    }
    Ok(())
}

/// Fetches `target` and checks the commit, the local branch and the absence of the temporary tag;
/// returns the saved log.
async fn fetch_and_check(
    fx: &Fixture,
    target: TargetId,
    expected: &datakit_ci_term::CommitHash,
) -> anyhow::Result<String> {
    let repo = fx.repo().await?;
    let status = fx.eval(&repo.fetch_head(target)).await;
    let commit = value(status.result.clone())?;
    assert_eq!(commit.hash(), expected);
    assert_eq!(commit.repo().dir(), fx.local);
    let branch = format!("git-pull-of-{expected}");
    assert_eq!(&hash(&fx.local, &branch), expected);
    assert!(
        !git_succeeds(
            &fx.local,
            &["rev-parse", "--verify", &format!("refs/tags/{branch}.new")]
        ),
        "the temporary tag is deleted"
    );
    fx.saved_log(&status.output).await
}

#[tokio::test]
async fn a_commit_available_locally_is_not_fetched() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let log = fetch_and_check(&fx, branch_target("main"), &fx.main).await?;
    assert!(
        log.contains(&format!(
            "Commit {} is available locally, so not fetching",
            fx.main
        )),
        "{log}"
    );
    assert!(!log.contains("Fetching"), "{log}");
    assert!(
        log.starts_with(&format!(
            "=== Git fetch commit {} of me/proj\n",
            fx.main.short(8)
        )),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_pr_only_in_origin_is_fetched() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    fx.use_url_origin();
    assert!(!git_succeeds(
        &fx.local,
        &["cat-file", "-e", fx.pr.as_str()]
    ));
    let log = fetch_and_check(&fx, TargetId::Pr(repo_id(), 1), &fx.pr).await?;
    assert!(log.contains("Fetching PR branch"), "{log}");
    assert!(
        log.contains(r#"Running "git" "fetch" "--no-tags" "origin" "pull/1/head""#),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn an_annotated_tag_is_fetched_as_its_commit() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    fx.use_url_origin();
    assert!(!git_succeeds(
        &fx.local,
        &["cat-file", "-e", fx.tag.as_str()]
    ));
    let log = fetch_and_check(&fx, tag_target("v0.1"), &fx.tag).await?;
    assert!(
        log.contains(r#""git" "fetch" "--no-tags" "origin" "refs/tags/v0.1""#),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_target_missing_from_the_metadata_fails() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let status = fx.eval(&repo.fetch_head(branch_target("nope"))).await;
    assert_eq!(
        status.result.map(|commit| commit.hash().clone()),
        Err(Problem::Failure(
            "Target me/proj/heads/nope does not exist".to_owned()
        ))
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_fetch_is_a_failure() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    fx.use_url_origin();
    git(&fx.origin, &["update-ref", "-d", "refs/pull/1/head"]);
    let repo = fx.repo().await?;
    let status = fx.eval(&repo.fetch_head(TargetId::Pr(repo_id(), 1))).await;
    let Err(Problem::Failure(message)) = &status.result else {
        panic!("expected a failure, got {:?}", status.result);
    };
    assert!(message.starts_with("git failed in "), "{message}");
    assert!(
        message.contains(r#"command "git" "fetch" "--no-tags" "origin" "pull/1/head""#)
            && message.contains("exited with status"),
        "{message}"
    );
    let log = fx.saved_log(&status.output).await?;
    assert!(log.contains(&format!("Failed: {message}")), "{log}");
    Ok(())
}

#[tokio::test]
async fn targets_with_the_same_head_share_one_fetch() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let by_pr = fx.eval(&repo.fetch_head(TargetId::Pr(repo_id(), 1))).await;
    let by_branch = fx.eval(&repo.fetch_head(branch_target("same-as-pr"))).await;
    assert_eq!(value(by_pr.result)?, value(by_branch.result)?);
    assert_eq!(fx.store_commits(&format!("git-pull-of-{}", fx.pr)), 1);
    // A second repository handle (as after a restart) reuses the recorded result.
    drop(repo);
    let mut services = fx.services.clone();
    services.pools = datakit_ci_pool::Pools::new();
    let again = datakit_ci_git::Repo::open(&fx.local, None, &services).await?;
    let status = fx.eval(&again.fetch_head(TargetId::Pr(repo_id(), 1))).await;
    assert_eq!(value(status.result)?.hash(), &fx.pr);
    assert_eq!(fx.store_commits(&format!("git-pull-of-{}", fx.pr)), 1);
    Ok(())
}

#[tokio::test]
async fn a_commit_in_a_local_origin_is_copied_without_git_fetch() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    for (target, expected) in [
        (TargetId::Pr(repo_id(), 1), &fx.pr),
        (tag_target("v0.1"), &fx.tag),
    ] {
        assert!(!git_succeeds(
            &fx.local,
            &["cat-file", "-e", expected.as_str()]
        ));
        let status = fx.eval(&repo.fetch_head(target)).await;
        assert_eq!(value(status.result.clone())?.hash(), expected);
        assert_eq!(
            &hash(&fx.local, &format!("git-pull-of-{expected}")),
            expected
        );
        // The branch only keeps the commit from being collected: no reflog file for it.
        let reflog = fx
            .local
            .join(format!(".git/logs/refs/heads/git-pull-of-{expected}"));
        assert!(!reflog.exists(), "{} exists", reflog.display());
        let log = fx.saved_log(&status.output).await?;
        assert!(
            log.contains(&format!(
                "Copying commit {expected} from {}",
                fx.origin.display()
            )),
            "{log}"
        );
        assert!(!log.contains(r#""git" "fetch""#), "{log}");
    }
    // Only the new commits' objects were copied (each adds one file to a shared history), and
    // what was copied is complete: the local repository is consistent and has the new files.
    git(&fx.local, &["fsck", "--strict", "--no-dangling"]);
    assert_eq!(
        git(&fx.local, &["show", &format!("{}:pr.txt", fx.pr)]),
        "proposed\n"
    );
    Ok(())
}

#[tokio::test]
async fn a_commit_missing_from_a_local_origin_is_fetched_by_ref() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    // Origin moves PR 1 on and forgets the commit the metadata still names.
    git(
        &fx.origin,
        &["update-ref", "refs/pull/1/head", fx.main.as_str()],
    );
    git(&fx.origin, &["reflog", "expire", "--expire=now", "--all"]);
    git(&fx.origin, &["gc", "--quiet", "--prune=now"]);
    assert!(!git_succeeds(
        &fx.origin,
        &["cat-file", "-e", fx.pr.as_str()]
    ));
    let repo = fx.repo().await?;
    let status = fx.eval(&repo.fetch_head(TargetId::Pr(repo_id(), 1))).await;
    let Err(Problem::Failure(message)) = &status.result else {
        panic!("expected a failure, got {:?}", status.result);
    };
    assert_eq!(
        message,
        &format!(
            "cannot update the repository {:?}: fetching pull/1/head from origin did not bring commit {}",
            fx.local, fx.pr
        )
    );
    let log = fx.saved_log(&status.output).await?;
    assert!(
        log.contains(&format!(
            "{:?} does not have object {}; fetching instead",
            fx.origin, fx.pr
        )),
        "{log}"
    );
    assert!(
        log.contains(r#""git" "fetch" "--no-tags" "origin" "pull/1/head""#),
        "{log}"
    );
    // No branch points at a commit the repository does not have.
    assert!(!git_succeeds(
        &fx.local,
        &[
            "rev-parse",
            "--verify",
            &format!("refs/heads/git-pull-of-{}", fx.pr)
        ]
    ));
    Ok(())
}

/// Checks that the copies of the commits of [`Fixture::new_branches`] are complete: `git fsck`
/// passes and each commit has its file.
fn assert_copies_complete(fx: &Fixture, targets: &[(TargetId, CommitHash)]) {
    git(&fx.local, &["fsck", "--strict", "--no-dangling"]);
    for (i, (_, commit)) in targets.iter().enumerate() {
        assert_eq!(
            git(&fx.local, &["show", &format!("{commit}:b{i}.txt")]),
            format!("{i}\n")
        );
    }
}

/// How many loose objects the local clone has.
fn loose_objects(fx: &Fixture) -> String {
    let counts = git(&fx.local, &["count-objects", "-v"]);
    counts
        .lines()
        .find(|line| line.starts_with("count: "))
        .unwrap_or("no count")
        .to_owned()
}

#[tokio::test]
async fn commits_copied_from_a_local_origin_go_into_packs_not_loose_objects() -> anyhow::Result<()>
{
    let fx = Fixture::new().await?;
    let (targets, snapshot) = fx.new_branches(12).await?;
    let repo = fx.repo().await?;
    // (`git clone` of a path hard-links origin's loose objects.)
    let loose_before = loose_objects(&fx);
    fetch_all(&fx, &repo, &targets, &snapshot, true).await?;
    // Each loose object is a file to create; copies write packs instead (copies made while one
    // is being written share the next pack).
    assert_eq!(loose_objects(&fx), loose_before);
    assert!(
        fx.local_packs()? <= 1 + targets.len(),
        "{} packs",
        fx.local_packs()?
    );
    // What was copied is complete: every object a branch reaches is there.
    assert_copies_complete(&fx, &targets);
    Ok(())
}

#[tokio::test]
async fn packs_of_copied_commits_are_consolidated_past_a_limit() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    // One by one, each copy writes its own pack: more than the limit of 32 in the end.
    let (targets, snapshot) = fx.new_branches(40).await?;
    let repo = fx.repo().await?;
    fetch_all(&fx, &repo, &targets, &snapshot, false).await?;
    let packs = fx.local_packs()?;
    assert!(packs <= 10, "{packs} packs after 40 copies");
    assert_copies_complete(&fx, &targets);
    Ok(())
}

#[tokio::test]
async fn a_commit_packed_by_another_process_after_opening_is_not_copied_again() -> anyhow::Result<()>
{
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    // The repository's view of its packs is loaded now...
    let status = fx.eval(&repo.fetch_head(branch_target("main"))).await;
    assert_eq!(value(status.result)?.hash(), &fx.main);
    // ...and another process then brings PR 1 in a new pack.
    git(
        &fx.local,
        &[
            "-c",
            "fetch.unpackLimit=1",
            "fetch",
            "--quiet",
            "origin",
            "refs/pull/1/head",
        ],
    );
    let status = fx.eval(&repo.fetch_head(TargetId::Pr(repo_id(), 1))).await;
    assert_eq!(value(status.result.clone())?.hash(), &fx.pr);
    let log = fx.saved_log(&status.output).await?;
    // Lookups before a copy do not list the pack directory again, but the copy does, once.
    assert!(log.contains("Copied 0 objects"), "{log}");
    git(&fx.local, &["fsck", "--strict", "--no-dangling"]);
    Ok(())
}
