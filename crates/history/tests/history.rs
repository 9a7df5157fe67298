//! `History` on real stores in temporary directories: recording, reloading, the commit index and
//! the Git history of status branches, checked with the real `git` (and `git fsck --strict`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use datakit_ci_history::{Error, History, HistoryState, status_branch};
use datakit_ci_log::{LiveLogSpec, LogManager};
use datakit_ci_store::{BranchName, CommitId, Store, StorePath};
use datakit_ci_term::{
    CommitHash, JobOutput, JobResult, Logs, RebuildStateKind, RebuildTrigger, RefName, SavedLog,
    TargetId,
};

const SOURCE_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const SOURCE_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A store in a temporary directory, with one `github-metadata` commit to use as input.
struct Fixture {
    /// Keeps the directory alive as long as the fixture.
    _dir: tempfile::TempDir,
    store: Store,
    metadata: CommitId,
}

impl Fixture {
    async fn new() -> Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(&dir.path().join("state.git"))?;
        let metadata = metadata_commit(&store, "open").await?;
        Ok(Fixture {
            _dir: dir,
            store,
            metadata,
        })
    }

    fn path(&self) -> &Path {
        self.store.path()
    }

    /// `git log --format=%B` of `branch`, one string per commit, newest first.
    fn messages(&self, branch: &BranchName) -> Result<Vec<String>> {
        let log = git(
            self.path(),
            &["log", "--format=%B%x00", branch.as_str(), "--"],
        )?;
        Ok(log
            .split('\0')
            .map(|message| message.trim().to_owned())
            .filter(|message| !message.is_empty())
            .collect())
    }

    fn assert_fsck_clean(&self) -> Result<()> {
        assert_fsck_clean(self.path())
    }
}

/// `git fsck --strict` finds nothing wrong with the store at `path`.
fn assert_fsck_clean(path: &Path) -> Result<()> {
    datakit_ci_testkit::assert_fsck_clean(path);
    Ok(())
}

/// A new commit on `github-metadata`.
async fn metadata_commit(store: &Store, state: &str) -> Result<CommitId> {
    let branch = store.branch(&BranchName::new("github-metadata")?);
    let mut transaction = branch.transaction().await?;
    transaction.create_file(&StorePath::new("me/repo/pr/1/state")?, state)?;
    Ok(transaction.commit(&format!("PR 1 is {state}")).await?)
}

/// Runs the real `git` in the bare repository `store`; fails unless it succeeds.
fn git(store: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(store)
        .args(args)
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn source(hash: &str) -> CommitHash {
    hash.parse().expect("valid hash in test")
}

fn main_branch() -> TargetId {
    TargetId::Ref(
        "me/repo".parse().expect("valid repo"),
        RefName::branch("main").expect("valid branch"),
    )
}

fn pr(n: u64) -> TargetId {
    TargetId::Pr("me/repo".parse().expect("valid repo"), n)
}

fn output(result: JobResult) -> JobOutput {
    JobOutput {
        result,
        logs: Logs::Empty,
    }
}

fn jobs<const N: usize>(entries: [(&str, JobResult); N]) -> BTreeMap<String, JobOutput> {
    entries
        .into_iter()
        .map(|(name, result)| (name.to_owned(), output(result)))
        .collect()
}

fn json(jobs: &BTreeMap<String, JobOutput>) -> BTreeMap<String, String> {
    jobs.iter()
        .map(|(name, output)| (name.clone(), output.to_json()))
        .collect()
}

/// The file `path` at the head of `branch`, as text.
async fn read_head_file(store: &Store, branch: &BranchName, path: &str) -> Result<Option<String>> {
    let head = store
        .branch(branch)
        .head()
        .await?
        .context("branch exists")?;
    let bytes = head.tree().read_file(&StorePath::new(path)?)?;
    Ok(bytes.map(String::from_utf8).transpose()?)
}

#[tokio::test]
async fn recording_the_same_jobs_twice_writes_one_commit() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = main_branch();
    assert!(history.latest(&target).await?.is_none());

    let state = jobs([("build", JobResult::Success("built".into()))]);
    let first = history
        .record(&target, &source(SOURCE_A), fixture.metadata, &state)
        .await?
        .context("first recording writes")?;
    let later_metadata = metadata_commit(&fixture.store, "closed").await?;
    let second = history
        .record(&target, &source(SOURCE_A), later_metadata, &state)
        .await?;
    assert_eq!(second, None);

    let branch = status_branch(&target);
    assert_eq!(fixture.messages(&branch)?, ["build -> built"]);
    let latest = history.latest(&target).await?.context("recorded")?;
    assert_eq!(latest.commit, Some(first));
    assert!(latest.parents.is_empty());
    assert_eq!(latest.source_commit, Some(source(SOURCE_A)));
    // Unchanged recordings keep the metadata commit of the last change, as in the original.
    assert_eq!(latest.metadata_commit, Some(fixture.metadata));
    // The files, exactly.
    let store = &fixture.store;
    assert_eq!(
        read_head_file(store, &branch, "source-commit")
            .await?
            .as_deref(),
        Some(SOURCE_A)
    );
    assert_eq!(
        read_head_file(store, &branch, "metadata-commit").await?,
        Some(fixture.metadata.to_string())
    );
    assert_eq!(
        read_head_file(store, &branch, "job/build/output")
            .await?
            .as_deref(),
        Some(r#"{"result":{"status":"success","descr":"built"},"logs":null}"#)
    );
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn changes_make_commits_with_the_original_messages() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = pr(7);
    let a = source(SOURCE_A);
    let metadata = fixture.metadata;

    let first = history
        .record(
            &target,
            &a,
            metadata,
            &jobs([
                ("build", JobResult::Pending("building".into())),
                ("test", JobResult::Pending("waiting".into())),
            ]),
        )
        .await?
        .context("first")?;

    // One job changes.
    let second = history
        .record(
            &target,
            &a,
            metadata,
            &jobs([
                ("build", JobResult::Success("built".into())),
                ("test", JobResult::Pending("waiting".into())),
            ]),
        )
        .await?
        .context("second")?;
    let state = history.latest(&target).await?.context("recorded")?;
    assert_eq!(state.commit, Some(second));
    assert_eq!(state.parents, [first]);
    let commit = fixture.store.commit(second).await?;
    assert_eq!(commit.parents(), [first]);
    assert_eq!(commit.message(), "build -> built");

    // Several changes: a job removed, one changed, one added.
    let third = history
        .record(
            &target,
            &a,
            metadata,
            &jobs([
                ("lint", JobResult::Failure("2 warnings".into())),
                ("test", JobResult::Success("passed".into())),
            ]),
        )
        .await?
        .context("third")?;
    assert_eq!(
        fixture.store.commit(third).await?.message(),
        "3 updates (test -> passed, ...)\n\ntest -> passed\nlint -> 2 warnings\nRemove old job build"
    );

    // A job removed alone.
    let fourth = history
        .record(
            &target,
            &a,
            metadata,
            &jobs([("test", JobResult::Success("passed".into()))]),
        )
        .await?
        .context("fourth")?;
    assert_eq!(
        fixture.store.commit(fourth).await?.message(),
        "Remove old job lint"
    );
    let branch = status_branch(&target);
    let tree = fixture.store.commit(fourth).await?.tree();
    assert_eq!(
        tree.read_dir(&StorePath::new("job")?)?,
        Some(vec!["test".to_owned()])
    );
    assert_eq!(
        read_head_file(&fixture.store, &branch, "job/lint/output").await?,
        None
    );

    // Only the source commit changes.
    let fifth = history
        .record(
            &target,
            &source(SOURCE_B),
            metadata,
            &jobs([("test", JobResult::Success("passed".into()))]),
        )
        .await?
        .context("fifth")?;
    assert_eq!(fixture.store.commit(fifth).await?.message(), "Update");
    assert_eq!(
        read_head_file(&fixture.store, &branch, "source-commit")
            .await?
            .as_deref(),
        Some(SOURCE_B)
    );

    // What `git log` of the status branch shows.
    let subjects = git(
        fixture.path(),
        &["log", "--format=%s", branch.as_str(), "--"],
    )?;
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        [
            "Update",
            "Remove old job lint",
            "3 updates (test -> passed, ...)",
            "build -> built",
            "2 updates (test -> waiting, ...)",
        ]
    );
    let parents = git(
        fixture.path(),
        &["log", "--format=%H %P", branch.as_str(), "--"],
    )?;
    let chain: Vec<String> = [fifth, fourth, third, second]
        .iter()
        .zip([fourth, third, second, first])
        .map(|(child, parent)| format!("{child} {parent}"))
        .chain([first.to_string()])
        .collect();
    assert_eq!(parents.lines().map(str::trim).collect::<Vec<_>>(), chain);
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn a_new_history_on_a_reopened_store_sees_the_same_state() -> Result<()> {
    let fixture = Fixture::new().await?;
    let store_path = fixture.path().to_owned();
    let target = main_branch();
    let logs = LogManager::new();
    let live = logs.create(LiveLogSpec {
        branch: "docker-build-of-abc".to_owned(),
        title: "Docker build".to_owned(),
        pending: "building".to_owned(),
        cancel: None,
    })?;
    let saved = SavedLog::new(
        "Git pull",
        fixture.metadata,
        BranchName::new("git-pull-of-abc")?,
        false,
        Some(RebuildTrigger::new(async { Ok(()) })),
    );
    assert_eq!(saved.rebuild_state(), RebuildStateKind::Rebuildable);
    let recorded: BTreeMap<String, JobOutput> = BTreeMap::from([
        (
            "build".to_owned(),
            JobOutput {
                result: JobResult::Pending("building".into()),
                logs: Logs::pair(Logs::Saved(saved), Logs::Live(live)),
            },
        ),
        (
            "lint".to_owned(),
            output(JobResult::Failure("bad \"style\"\nsee log".into())),
        ),
    ]);
    let (commit, before) = {
        let history = History::new(fixture.store.clone());
        let commit = history
            .record(&target, &source(SOURCE_A), fixture.metadata, &recorded)
            .await?
            .context("written")?;
        (commit, history.latest(&target).await?.context("recorded")?)
    };
    drop(fixture.store);
    let store = Store::open(&store_path)?;
    let history = History::new(store.clone());
    let after = history.latest(&target).await?.context("recorded")?;

    assert_eq!(after.commit, Some(commit));
    assert_eq!(after.commit, before.commit);
    assert_eq!(after.parents, before.parents);
    assert_eq!(after.source_commit, before.source_commit);
    assert_eq!(after.metadata_commit, Some(fixture.metadata));
    // The live log cannot come back: it is gone from the output; the saved log is archived.
    let build = &after.jobs["build"];
    assert_eq!(build.result, JobResult::Pending("building".into()));
    let Logs::Saved(saved) = &build.logs else {
        bail!("expected the saved log alone, got {:?}", build.logs);
    };
    assert_eq!(saved.title(), "Git pull");
    assert_eq!(saved.branch().as_str(), "git-pull-of-abc");
    assert_eq!(saved.commit(), fixture.metadata);
    assert!(!saved.failed());
    assert_eq!(saved.rebuild_state(), RebuildStateKind::Archived);
    assert_eq!(after.jobs["lint"], recorded["lint"]);
    assert_ne!(
        after.jobs["build"], recorded["build"],
        "a live log differs from its reloaded form"
    );

    // The reloaded state is what `load` gives for the commit, and recording it again is a no-op.
    let loaded = history.load(commit).await?;
    assert_eq!(json(&loaded.jobs), json(&after.jobs));
    assert_eq!(
        history
            .record(&target, &source(SOURCE_A), fixture.metadata, &after.jobs)
            .await?,
        None
    );
    drop(store);
    assert_fsck_clean(&store_path)
}

#[tokio::test]
async fn unchanged_recordings_pick_up_new_logs_in_memory() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = pr(1);
    let a = source(SOURCE_A);
    let plain = jobs([("build", JobResult::Success("built".into()))]);
    history
        .record(&target, &a, fixture.metadata, &plain)
        .await?
        .context("written")?;
    // An output with the same JSON but a different log tree (a pair of empty logs): nothing is
    // written, but memory holds the new value.
    let same_json = BTreeMap::from([(
        "build".to_owned(),
        JobOutput {
            result: JobResult::Success("built".into()),
            logs: Logs::Pair(Box::new(Logs::Empty), Box::new(Logs::Empty)),
        },
    )]);
    assert_eq!(
        history
            .record(&target, &a, fixture.metadata, &same_json)
            .await?,
        None
    );
    let latest = history.latest(&target).await?.context("recorded")?;
    assert!(
        matches!(latest.jobs["build"].logs, Logs::Pair(..)),
        "the in-memory outputs are replaced: {:?}",
        latest.jobs["build"].logs
    );
    assert_eq!(fixture.messages(&status_branch(&target))?.len(), 1);
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn older_commits_load_as_they_were() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = main_branch();
    let first_jobs = jobs([
        ("build", JobResult::Pending("building".into())),
        ("docs", JobResult::Success("ok".into())),
    ]);
    let first = history
        .record(&target, &source(SOURCE_A), fixture.metadata, &first_jobs)
        .await?
        .context("first")?;
    let later = metadata_commit(&fixture.store, "closed").await?;
    let second = history
        .record(
            &target,
            &source(SOURCE_B),
            later,
            &jobs([("build", JobResult::Failure("broken".into()))]),
        )
        .await?
        .context("second")?;

    let old: HistoryState = history.load(first).await?;
    assert_eq!(old.commit, Some(first));
    assert!(old.parents.is_empty());
    assert_eq!(old.source_commit, Some(source(SOURCE_A)));
    assert_eq!(old.metadata_commit, Some(fixture.metadata));
    assert_eq!(json(&old.jobs), json(&first_jobs));

    let new = history.load(second).await?;
    assert_eq!(new.parents, [first]);
    assert_eq!(new.source_commit, Some(source(SOURCE_B)));
    assert_eq!(new.metadata_commit, Some(later));
    assert_eq!(
        new.jobs.keys().collect::<Vec<_>>(),
        ["build"],
        "docs was removed"
    );
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn the_commit_index_lists_the_builds_of_a_commit() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let repo = "me/repo".parse()?;
    let a = source(SOURCE_A);
    let b = source(SOURCE_B);
    assert!(history.builds_of_commit(&repo, &a).await?.is_empty());

    let branch_jobs = jobs([("build", JobResult::Success("built".into()))]);
    let pr_jobs = jobs([("build", JobResult::Pending("queued".into()))]);
    let main_first = history
        .record(&main_branch(), &a, fixture.metadata, &pr_jobs)
        .await?
        .context("main")?;
    history
        .index(&[(main_branch(), a.clone(), main_first)])
        .await?;
    let index = BranchName::new("commit-index")?;
    assert_eq!(
        fixture.messages(&index)?,
        [format!("Update ref-heads-main:{SOURCE_A} -> {main_first}")]
    );

    let main_second = history
        .record(&main_branch(), &a, fixture.metadata, &branch_jobs)
        .await?
        .context("main again")?;
    let pr_status = history
        .record(&pr(7), &a, fixture.metadata, &pr_jobs)
        .await?
        .context("pr")?;
    history
        .index(&[
            (main_branch(), a.clone(), main_second),
            (pr(7), a.clone(), pr_status),
        ])
        .await?;
    assert_eq!(
        fixture.messages(&index)?[0],
        format!(
            "2 index updates\n\nUpdate ref-heads-main:{SOURCE_A} -> {main_second}\nUpdate pr-7:{SOURCE_A} -> {pr_status}"
        )
    );
    assert_eq!(
        read_head_file(
            &fixture.store,
            &index,
            &format!("me/repo/commit/{SOURCE_A}/ref-heads-main")
        )
        .await?,
        Some(main_second.to_string())
    );
    // Writing the same entries again changes nothing, so nothing is committed.
    history.index(&[(pr(7), a.clone(), pr_status)]).await?;
    history.index(&[]).await?;
    assert_eq!(fixture.messages(&index)?.len(), 2);

    let builds = history.builds_of_commit(&repo, &a).await?;
    assert_eq!(
        builds.keys().cloned().collect::<Vec<_>>(),
        [main_branch(), pr(7)]
    );
    assert_eq!(builds[&main_branch()].commit, Some(main_second));
    assert_eq!(builds[&main_branch()].parents, [main_first]);
    assert_eq!(json(&builds[&main_branch()].jobs), json(&branch_jobs));
    assert_eq!(builds[&pr(7)].commit, Some(pr_status));
    assert_eq!(json(&builds[&pr(7)].jobs), json(&pr_jobs));
    assert!(history.builds_of_commit(&repo, &b).await?.is_empty());
    assert!(
        history
            .builds_of_commit(&"other/repo".parse()?, &a)
            .await?
            .is_empty()
    );
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn queued_index_entries_are_seen_before_they_are_written_and_then_batched() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let repo = "me/repo".parse()?;
    let a = source(SOURCE_A);
    let pr_jobs = jobs([("build", JobResult::Pending("queued".into()))]);
    let main_status = history
        .record(&main_branch(), &a, fixture.metadata, &pr_jobs)
        .await?
        .context("main")?;
    let pr_status = history
        .record(&pr(7), &a, fixture.metadata, &pr_jobs)
        .await?
        .context("pr")?;
    history.queue_index(&[(main_branch(), a.clone(), main_status)]);
    history.queue_index(&[(pr(7), a.clone(), pr_status)]);
    assert!(history.index_pending());
    let index = BranchName::new("commit-index")?;
    assert!(
        fixture.store.branch(&index).head().await?.is_none(),
        "nothing written yet"
    );
    let builds = history.builds_of_commit(&repo, &a).await?;
    assert_eq!(
        builds.keys().cloned().collect::<Vec<_>>(),
        [main_branch(), pr(7)]
    );

    history.index(&[]).await?;
    assert!(!history.index_pending());
    assert_eq!(
        fixture.messages(&index)?,
        [format!(
            "2 index updates\n\nUpdate ref-heads-main:{SOURCE_A} -> {main_status}\nUpdate pr-7:{SOURCE_A} -> {pr_status}"
        )]
    );
    let builds = history.builds_of_commit(&repo, &a).await?;
    assert_eq!(builds[&pr(7)].commit, Some(pr_status));
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn bad_index_entries_and_outputs_are_reported() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = pr(3);
    let a = source(SOURCE_A);
    history
        .record(
            &target,
            &a,
            fixture.metadata,
            &jobs([("build", JobResult::Success("built".into()))]),
        )
        .await?
        .context("written")?;

    // A corrupt output, written behind the history's back.
    let branch = status_branch(&target);
    let mut transaction = fixture.store.branch(&branch).transaction().await?;
    transaction.create_file(&StorePath::new("job/test/output")?, "{\"result\":")?;
    transaction.make_dirs(&StorePath::new("job/empty")?)?;
    let corrupt = transaction.commit("corrupt").await?;
    match history.load(corrupt).await {
        Err(error @ Error::InvalidOutput { .. }) => assert_eq!(
            error.to_string(),
            format!("invalid output of job \"test\" in status commit {corrupt}")
        ),
        other => bail!("expected InvalidOutput, got {other:?}"),
    }
    // A fresh cache loading that head reports it too.
    let fresh = History::new(fixture.store.clone());
    ensure!(
        matches!(fresh.latest(&target).await, Err(Error::InvalidOutput { ref job, .. }) if job == "test"),
        "the corrupt head is reported"
    );

    // An index entry that names no target.
    let index = BranchName::new("commit-index")?;
    let mut transaction = fixture.store.branch(&index).transaction().await?;
    transaction.create_file(
        &StorePath::new(format!("me/repo/commit/{SOURCE_A}/bogus"))?,
        corrupt.to_string(),
    )?;
    transaction.commit("bogus").await?;
    match history.builds_of_commit(&"me/repo".parse()?, &a).await {
        Err(error @ Error::InvalidIndexEntry { .. }) => {
            assert_eq!(
                error.to_string(),
                r#"invalid branch name in index: "bogus""#
            )
        }
        other => bail!("expected InvalidIndexEntry, got {other:?}"),
    }
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn job_names_that_cannot_be_files_are_rejected() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = pr(4);
    for (name, reason) in [
        ("a/b", "contains '/'"),
        (
            "..",
            "not a valid file name (empty, '.', '..', '.git' or NUL)",
        ),
        (
            "",
            "not a valid file name (empty, '.', '..', '.git' or NUL)",
        ),
    ] {
        let result = history
            .record(
                &target,
                &source(SOURCE_A),
                fixture.metadata,
                &jobs([(name, JobResult::Success("ok".into()))]),
            )
            .await;
        match result {
            Err(error) => assert_eq!(
                error.to_string(),
                format!("invalid job name {name:?}: {reason}")
            ),
            Ok(commit) => bail!("{name:?} was recorded as {commit:?}"),
        }
    }
    assert!(
        fixture
            .store
            .branch(&status_branch(&target))
            .head()
            .await?
            .is_none()
    );
    assert!(history.latest(&target).await?.is_none());
    fixture.assert_fsck_clean()
}

#[tokio::test]
async fn concurrent_recordings_of_one_target_form_a_line() -> Result<()> {
    let fixture = Fixture::new().await?;
    let history = History::new(fixture.store.clone());
    let target = main_branch();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let history = history.clone();
        let target = target.clone();
        let metadata = fixture.metadata;
        tasks.spawn(async move {
            let state = jobs([("build", JobResult::Pending(format!("step {n}")))]);
            history
                .record(&target, &source(SOURCE_A), metadata, &state)
                .await
        });
    }
    let mut written = Vec::new();
    while let Some(result) = tasks.join_next().await {
        written.push(result??.context("every recording changes the job")?);
    }
    let latest = history.latest(&target).await?.context("recorded")?;
    let branch = status_branch(&target);
    let log = git(
        fixture.path(),
        &["log", "--format=%H %P", branch.as_str(), "--"],
    )?;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 8);
    let head = lines[0].split(' ').collect::<Vec<_>>();
    assert_eq!(
        Some(head[0].to_owned()),
        latest.commit.map(|c| c.to_string())
    );
    assert_eq!(
        latest
            .parents
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        head[1..]
    );
    written.sort();
    let mut in_git: Vec<String> = lines
        .iter()
        .map(|line| line.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    in_git.sort();
    assert_eq!(
        written.iter().map(ToString::to_string).collect::<Vec<_>>(),
        in_git
    );
    fixture.assert_fsck_clean()
}
