//! The bridge on real repositories and a real store: what `sync_once` writes, what it leaves alone,
//! what it skips, and `run` following changes as they happen.

mod common;

use std::time::Duration;

use datakit_ci_forge_local::{Error, LocalBridge, LocalRepo, SyncReport};
use datakit_ci_store::Snapshot;
use datakit_ci_term::metadata::MetadataReader;
use datakit_ci_term::{PrInfo, PrState, RefName, RepoId};
use tokio_util::sync::CancellationToken;

use common::{StoreFixture, WorkTree, files_under, git, git_with_env, read};

fn repo_id(id: &str) -> RepoId {
    id.parse().expect("valid repo id")
}

/// A repository with `main`, `feature/x`, a lightweight tag `v1`, an annotated tag `v2` and the PR
/// ref `refs/pull/7/head`, plus refs the bridge must ignore.
struct Project {
    repo: WorkTree,
    main: String,
    feature: String,
    v1: String,
    v2: String,
    pr: String,
}

impl Project {
    fn new() -> Project {
        let repo = WorkTree::new();
        let v1 = repo.rev_parse("HEAD");
        repo.git(&["tag", "v1"]);
        let main = repo.commit("Second commit");
        repo.git(&["tag", "-a", "v2", "-m", "Release 2"]);
        let v2 = main.clone();
        repo.git(&["checkout", "--quiet", "-b", "feature/x"]);
        let feature = repo.commit("Feature work");
        repo.git(&["checkout", "--quiet", "main"]);
        let pr = git_with_env(
            &repo.path,
            &[
                "commit-tree",
                "HEAD^{tree}",
                "-p",
                "HEAD",
                "-m",
                "Fix the thing\n\nA longer body.",
            ],
            &[("GIT_AUTHOR_NAME", "Bob")],
        );
        repo.git(&["update-ref", "refs/pull/7/head", &pr]);
        // Ignored: remote-tracking branches, PR merge refs, notes, stash.
        repo.git(&["update-ref", "refs/remotes/origin/main", &main]);
        repo.git(&["update-ref", "refs/pull/7/merge", &main]);
        repo.git(&["notes", "add", "-m", "a note", "HEAD"]);
        Project {
            repo,
            main,
            feature,
            v1,
            v2,
            pr,
        }
    }

    fn local(&self, id: &str) -> LocalRepo {
        LocalRepo::new(repo_id(id), &self.repo.path).expect("valid repository")
    }
}

fn refs(tree: &Snapshot, repo: &str) -> Vec<(String, String)> {
    MetadataReader::new(tree)
        .refs(&repo_id(repo))
        .expect("read refs")
        .into_iter()
        .map(|r| (r.name.to_string(), r.head.to_string()))
        .collect()
}

fn prs(tree: &Snapshot, repo: &str) -> Vec<PrInfo> {
    MetadataReader::new(tree)
        .prs(&repo_id(repo))
        .expect("read PRs")
}

fn report(added: usize, updated: usize, removed: usize, skipped: usize) -> SyncReport {
    let mut report = SyncReport::default();
    report.added = added;
    report.updated = updated;
    report.removed = removed;
    report.skipped = skipped;
    report
}

/// The report without its commit id (which differs on every run).
fn counts(mut report: SyncReport) -> SyncReport {
    report.commit = None;
    report
}

#[tokio::test]
async fn mirrors_branches_tags_and_prs() {
    let project = Project::new();
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);

    let first = bridge.sync_once().await.expect("sync");
    let head = store.head().await.expect("bridge committed");
    assert_eq!(first.commit, Some(head.id()));
    assert_eq!(counts(first), report(5, 0, 0, 0));

    let tree = head.tree();
    let tag_object = project.repo.git(&["rev-parse", "refs/tags/v2"]);
    assert_ne!(tag_object, project.v2, "v2 is an annotated tag");
    assert_eq!(
        refs(&tree, "me/project"),
        [
            ("heads/feature/x".to_owned(), project.feature.clone()),
            ("heads/main".to_owned(), project.main.clone()),
            ("tags/v1".to_owned(), project.v1.clone()),
            ("tags/v2".to_owned(), project.v2.clone()),
        ]
    );
    assert_eq!(
        prs(&tree, "me/project"),
        [PrInfo {
            repo: repo_id("me/project"),
            number: 7,
            head: project.pr.parse().expect("hash"),
            state: PrState::Open,
            title: "Fix the thing".to_owned(),
            owner: "Bob".to_owned(),
            base: "main".to_owned(),
            // The local bridge never writes `trust`: its refs are all trusted.
            trust: datakit_ci_term::PrTrust::Unknown,
        }]
    );

    // The exact files and their raw contents.
    assert_eq!(
        files_under(&tree, "me/project"),
        [
            "me/project/pr/7/base",
            "me/project/pr/7/head",
            "me/project/pr/7/owner",
            "me/project/pr/7/state",
            "me/project/pr/7/title",
            "me/project/ref/heads/feature/x/head",
            "me/project/ref/heads/main/head",
            "me/project/ref/tags/v1/head",
            "me/project/ref/tags/v2/head",
        ]
    );
    let file = |path: &str| read(&tree, &format!("me/project/{path}"));
    assert_eq!(
        file("ref/heads/main/head"),
        Some(format!("{}\n", project.main))
    );
    assert_eq!(file("ref/tags/v2/head"), Some(format!("{}\n", project.v2)));
    assert_eq!(file("pr/7/head"), Some(format!("{}\n", project.pr)));
    assert_eq!(file("pr/7/state").as_deref(), Some("open\n"));
    assert_eq!(file("pr/7/title").as_deref(), Some("Fix the thing\n"));
    assert_eq!(file("pr/7/owner").as_deref(), Some("Bob\n"));
    assert_eq!(file("pr/7/base").as_deref(), Some("main\n"));

    assert_eq!(
        head.message(),
        "Sync me/project: 5 updates\n\n\
         Tracking new branch feature/x\n\
         Tracking new branch main\n\
         Tracking new tag v1\n\
         Tracking new tag v2\n\
         Tracking new PR 7"
    );
}

#[tokio::test]
async fn a_sync_without_changes_commits_nothing() {
    let project = Project::new();
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    bridge.sync_once().await.expect("first sync");
    let before = store.head().await.expect("committed").id();

    let second = bridge.sync_once().await.expect("second sync");
    assert_eq!(second, report(0, 0, 0, 0));
    assert!(second.is_unchanged());
    assert_eq!(store.head().await.expect("still there").id(), before);

    // A new bridge (a restart) reads what is stored and finds nothing to do either.
    let restarted = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    assert_eq!(
        restarted.sync_once().await.expect("sync"),
        report(0, 0, 0, 0)
    );
    assert_eq!(store.head().await.expect("still there").id(), before);
}

#[tokio::test]
async fn moving_a_branch_changes_only_its_head() {
    let project = Project::new();
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    bridge.sync_once().await.expect("first sync");
    let before = store.tree().await;

    let new_main = project.repo.commit("Third commit");
    let update = bridge.sync_once().await.expect("sync");
    assert_eq!(counts(update), report(0, 1, 0, 0));

    let head = store.head().await.expect("committed");
    assert_eq!(
        head.message(),
        format!("Updating existing branch main to {new_main}")
    );
    let changed: Vec<String> = before
        .changed_files(&head.tree())
        .expect("diff")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(changed, ["me/project/ref/heads/main/head"]);
    assert_eq!(
        read(&head.tree(), "me/project/ref/heads/main/head"),
        Some(format!("{new_main}\n"))
    );
}

#[tokio::test]
async fn deleted_branches_tags_and_prs_are_removed() {
    let project = Project::new();
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    bridge.sync_once().await.expect("first sync");

    project.repo.git(&["branch", "--quiet", "-D", "feature/x"]);
    project.repo.git(&["tag", "-d", "v1"]);
    project.repo.git(&["update-ref", "-d", "refs/pull/7/head"]);
    let removal = bridge.sync_once().await.expect("sync");
    assert_eq!(counts(removal), report(0, 0, 3, 0));

    let head = store.head().await.expect("committed");
    assert_eq!(
        head.message(),
        "Sync me/project: 3 updates\n\n\
         Removing deleted branch feature/x\n\
         Removing deleted tag v1\n\
         Removing deleted PR 7"
    );
    let tree = head.tree();
    assert_eq!(
        files_under(&tree, "me/project"),
        [
            "me/project/ref/heads/main/head",
            "me/project/ref/tags/v2/head",
        ]
    );
    assert_eq!(prs(&tree, "me/project"), []);
}

#[tokio::test]
async fn pr_details_follow_the_head_commit() {
    let project = Project::new();
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    bridge.sync_once().await.expect("first sync");

    // A new head with a new subject and author: head, title and owner change; state and base stay.
    let new_head = git_with_env(
        &project.repo.path,
        &[
            "commit-tree",
            "HEAD^{tree}",
            "-p",
            &project.pr,
            "-m",
            "Fix it properly",
        ],
        &[("GIT_AUTHOR_NAME", "Carol")],
    );
    project
        .repo
        .git(&["update-ref", "refs/pull/7/head", &new_head]);
    let before = store.tree().await;
    assert_eq!(
        counts(bridge.sync_once().await.expect("sync")),
        report(0, 1, 0, 0)
    );
    let head = store.head().await.expect("committed");
    assert_eq!(
        head.message(),
        format!("Updating existing PR 7 to {new_head}")
    );
    let changed: Vec<String> = before
        .changed_files(&head.tree())
        .expect("diff")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changed,
        [
            "me/project/pr/7/head",
            "me/project/pr/7/owner",
            "me/project/pr/7/title"
        ]
    );
    let pr = &prs(&head.tree(), "me/project")[0];
    assert_eq!(
        (pr.title.as_str(), pr.owner.as_str()),
        ("Fix it properly", "Carol")
    );
}

#[tokio::test]
async fn pr_base_is_the_default_branch_and_owner_falls_back_to_the_user() {
    let repo = WorkTree::new();
    repo.git(&["checkout", "--quiet", "-b", "develop"]);
    // A commit whose author name is empty (git's porcelain refuses to make one).
    let tree = repo.git(&["rev-parse", "HEAD^{tree}"]);
    let raw = format!(
        "tree {tree}\nauthor  <nobody@example.com> 0 +0000\ncommitter C <c@example.com> 0 +0000\n\nNo author name\n"
    );
    let anonymous = {
        let file = repo.path.join("raw-commit");
        std::fs::write(&file, raw).expect("write raw commit");
        let path = file.to_str().expect("UTF-8 path");
        repo.git(&["hash-object", "-t", "commit", "-w", path])
    };
    repo.git(&["update-ref", "refs/pull/1/head", &anonymous]);

    let store = StoreFixture::new();
    let local = LocalRepo::new(repo_id("me/project"), &repo.path).expect("valid repository");
    let bridge = LocalBridge::new(store.store.clone(), vec![local]);
    bridge.sync_once().await.expect("sync");
    let pr = &prs(&store.tree().await, "me/project")[0];
    assert_eq!(pr.base, "develop", "HEAD names develop, which exists");
    assert_eq!(pr.owner, "me", "empty author name: the repository's user");
    assert_eq!(pr.title, "No author name");

    // HEAD names a branch that does not exist: `main` exists, so it is the base.
    repo.git(&["symbolic-ref", "HEAD", "refs/heads/gone"]);
    assert_eq!(
        counts(bridge.sync_once().await.expect("sync")),
        report(0, 1, 0, 0)
    );
    assert_eq!(prs(&store.tree().await, "me/project")[0].base, "main");
    assert_eq!(
        store.head().await.expect("committed").message(),
        "Updating existing PR 1 (base)"
    );

    // Neither HEAD's branch nor `main`: `master`.
    repo.git(&["branch", "--quiet", "-m", "main", "trunk"]);
    bridge.sync_once().await.expect("sync");
    assert_eq!(prs(&store.tree().await, "me/project")[0].base, "master");
}

#[tokio::test]
async fn files_written_by_others_survive_and_external_edits_are_repaired() {
    let project = Project::new();
    let store = StoreFixture::new();
    let status = format!(
        "me/project/commit/{}/status/ci/datakit/test/state",
        project.main
    );
    store
        .write(
            &[
                ("me/project/.monitor", ""),
                (&status, "success\n"),
                ("me/project/ref/heads/main/extra", "kept\n"),
                ("other/repo/ref/heads/main/head", "not ours\n"),
            ],
            "Written by the engine",
        )
        .await;
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    bridge.sync_once().await.expect("sync");

    project.repo.git(&["branch", "--quiet", "-D", "feature/x"]);
    project.repo.commit("Move main");
    bridge.sync_once().await.expect("sync");

    let tree = store.tree().await;
    assert_eq!(read(&tree, "me/project/.monitor").as_deref(), Some(""));
    assert_eq!(read(&tree, &status).as_deref(), Some("success\n"));
    assert_eq!(
        read(&tree, "me/project/ref/heads/main/extra").as_deref(),
        Some("kept\n")
    );
    assert_eq!(
        read(&tree, "other/repo/ref/heads/main/head").as_deref(),
        Some("not ours\n")
    );

    // Someone else deletes and corrupts the bridge's files: the next sync notices and repairs them,
    // although nothing changed in Git.
    store.remove("me/project/ref/tags/v1").await;
    store
        .write(
            &[("me/project/pr/7/title", "Vandalised\n")],
            "External edit",
        )
        .await;
    assert_eq!(
        counts(bridge.sync_once().await.expect("sync")),
        report(1, 1, 0, 0)
    );
    let tree = store.tree().await;
    assert_eq!(
        read(&tree, "me/project/ref/tags/v1/head"),
        Some(format!("{}\n", project.v1))
    );
    assert_eq!(
        read(&tree, "me/project/pr/7/title").as_deref(),
        Some("Fix the thing\n")
    );
}

/// Issue 14, defect 4: every branch and tag name Git accepts is mirrored, stored as it is (a
/// component named `head` included); only what is not a branch, tag or PR head is skipped.
#[tokio::test]
async fn issue_14_every_ref_name_git_accepts_is_mirrored() {
    let project = Project::new();
    let accepted = [
        "refs/heads/a@b",
        "refs/heads/ü",
        "refs/heads/feature/ü",
        "refs/heads/emoji-🚀",
        "refs/heads/a&q",
        "refs/heads/x<b>",
        "refs/heads/$(id)",
        "refs/heads/quo\"te",
        "refs/heads/weird#hash",
        "refs/heads/pct%2Fenc",
        "refs/tags/v1+build",
        "refs/heads/x/head",
        "refs/heads/y/head/z",
    ];
    let bad = ["refs/pull/abc/head", "refs/pull/007/head"];
    for name in accepted.iter().chain(&bad) {
        project.repo.git(&["check-ref-format", name]);
        project.repo.git(&["update-ref", name, &project.main]);
    }
    // A tag of a tree is not a commit.
    project.repo.git(&["tag", "tree-tag", "HEAD^{tree}"]);

    let store = StoreFixture::new();
    let bridge = LocalBridge::new(store.store.clone(), vec![project.local("me/project")]);
    let sync = bridge.sync_once().await.expect("sync despite bad names");
    assert_eq!(
        counts(sync),
        report(5 + accepted.len(), 0, 0, bad.len() + 1)
    );
    let tree = store.tree().await;
    let mut expected: Vec<String> = ["heads/feature/x", "heads/main", "tags/v1", "tags/v2"]
        .iter()
        .map(|name| (*name).to_owned())
        .chain(accepted.iter().map(|name| name["refs/".len()..].to_owned()))
        .collect();
    expected.sort_by_key(|name| RefName::new(name.split('/')).expect("valid ref name"));
    let mirrored = refs(&tree, "me/project");
    assert_eq!(
        mirrored.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        expected.iter().collect::<Vec<_>>()
    );
    for (name, head) in &mirrored {
        if accepted.contains(&format!("refs/{name}").as_str()) {
            assert_eq!(head, &project.main, "{name}");
        }
    }
    assert_eq!(
        read(&tree, "me/project/ref/heads/x/head/head"),
        Some(format!("{}\n", project.main)),
        "stored as it is"
    );
    assert_eq!(
        prs(&tree, "me/project")
            .iter()
            .map(|pr| pr.number)
            .collect::<Vec<_>>(),
        [7]
    );
    // Nothing to commit on the next sync; the bad ones are still skipped.
    assert_eq!(
        bridge.sync_once().await.expect("sync"),
        report(0, 0, 0, bad.len() + 1)
    );
}

#[tokio::test]
async fn two_repositories_side_by_side() {
    let first = Project::new();
    let second = WorkTree::new();
    let second_main = second.rev_parse("main");
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(
        store.store.clone(),
        vec![first.local("me/first"), {
            LocalRepo::new(repo_id("you/second"), &second.path).expect("valid repository")
        }],
    );
    assert_eq!(
        counts(bridge.sync_once().await.expect("sync")),
        report(6, 0, 0, 0)
    );
    let tree = store.tree().await;
    assert_eq!(refs(&tree, "me/first").len(), 4);
    assert_eq!(
        refs(&tree, "you/second"),
        [("heads/main".to_owned(), second_main)]
    );

    let moved = second.commit("Only the second moves");
    bridge.sync_once().await.expect("sync");
    let head = store.head().await.expect("committed");
    assert_eq!(
        head.message(),
        format!("Updating existing branch main to {moved}")
    );
    let changed: Vec<String> = tree
        .changed_files(&head.tree())
        .expect("diff")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(changed, ["you/second/ref/heads/main/head"]);

    // Changes in both: one commit naming both repositories.
    first.repo.commit("First moves");
    second.git(&["branch", "topic"]);
    bridge.sync_once().await.expect("sync");
    let message = store.head().await.expect("committed").message().to_owned();
    assert!(
        message.starts_with("Sync me/first, you/second: 2 updates\n\n"),
        "{message}"
    );
}

#[tokio::test]
async fn bare_repositories_work() {
    let work = WorkTree::new();
    let dir = tempfile::tempdir().expect("make temporary directory");
    let bare = dir.path().join("bare.git");
    let bare_str = bare.to_str().expect("UTF-8 path");
    git(dir.path(), &["init", "--quiet", "--bare", bare_str]);
    work.git(&[
        "push",
        "--quiet",
        bare_str,
        "main",
        "main:refs/heads/release/1.0",
    ]);
    let main = work.rev_parse("main");

    let store = StoreFixture::new();
    let local = LocalRepo::new(repo_id("me/bare"), &bare).expect("a bare repository is valid");
    assert_eq!(local.git_dir(), bare.canonicalize().expect("exists"));
    let bridge = LocalBridge::new(store.store.clone(), vec![local]);
    bridge.sync_once().await.expect("sync");
    assert_eq!(
        refs(&store.tree().await, "me/bare"),
        [
            ("heads/main".to_owned(), main.clone()),
            ("heads/release/1.0".to_owned(), main),
        ]
    );
}

#[test]
fn local_repo_rejects_what_is_not_a_repository() {
    let dir = tempfile::tempdir().expect("make temporary directory");
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).expect("make directory");
    let error = LocalRepo::new(repo_id("me/plain"), &plain).expect_err("not a repository");
    assert!(matches!(error, Error::NotARepository { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&plain.display().to_string()),
        "{error}"
    );

    // A directory inside a work tree is not the repository.
    let repo = WorkTree::new();
    let inner = repo.path.join("src");
    std::fs::create_dir(&inner).expect("make directory");
    let error = LocalRepo::new(repo_id("me/inner"), &inner).expect_err("inside a repository");
    assert!(error.to_string().contains("src"), "{error}");

    let missing = dir.path().join("missing");
    let error = LocalRepo::new(repo_id("me/missing"), &missing).expect_err("missing");
    assert!(matches!(error, Error::Path { .. }), "{error:?}");
    assert!(error.to_string().contains("missing"), "{error}");

    // A repository id the store cannot hold as a directory.
    let error = LocalRepo::new(repo_id("me/.git"), &repo.path).expect_err("bad id");
    assert!(matches!(error, Error::InvalidRepoId { .. }), "{error:?}");

    let local = LocalRepo::new(repo_id("me/project"), &repo.path).expect("valid");
    assert_eq!(local.path(), repo.path.canonicalize().expect("exists"));
    assert_eq!(local.id(), &repo_id("me/project"));
}

#[tokio::test]
async fn the_same_id_twice_is_an_error() {
    let first = WorkTree::new();
    let second = WorkTree::new();
    let store = StoreFixture::new();
    let bridge = LocalBridge::new(
        store.store.clone(),
        vec![
            LocalRepo::new(repo_id("me/project"), &first.path).expect("valid"),
            LocalRepo::new(repo_id("me/project"), &second.path).expect("valid"),
        ],
    );
    let error = bridge.sync_once().await.expect_err("duplicate");
    assert!(matches!(error, Error::DuplicateRepo { .. }), "{error:?}");
    assert!(error.to_string().contains("me/project"), "{error}");
    assert!(store.head().await.is_none(), "nothing written");
    let error = bridge
        .run(CancellationToken::new())
        .await
        .expect_err("run refuses too");
    assert!(matches!(error, Error::DuplicateRepo { .. }), "{error:?}");
}

/// Starts `bridge.run`, makes changes to `repo` and waits for each to show in the metadata.
async fn check_run_follows(bridge: LocalBridge, repo: &WorkTree, store: &StoreFixture) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(bridge.run(cancel.clone()));
    let head_of = |tree: &Snapshot, branch: &str| {
        MetadataReader::new(tree)
            .git_ref(
                &repo_id("me/live"),
                &RefName::branch(branch).expect("valid"),
            )
            .expect("read ref")
            .map(|r| r.head.to_string())
    };

    let main = repo.rev_parse("main");
    store
        .wait_for("the first sync", |tree| {
            head_of(tree, "main").as_ref() == Some(&main)
        })
        .await;

    let moved = repo.commit("A new commit on main");
    store
        .wait_for("main to move", |tree| {
            head_of(tree, "main").as_ref() == Some(&moved)
        })
        .await;

    repo.git(&["branch", "topic"]);
    store
        .wait_for("the new branch", |tree| {
            head_of(tree, "topic").as_ref() == Some(&moved)
        })
        .await;

    // Packed refs too: pack everything, move a packed branch, and (below) delete one, which only
    // rewrites packed-refs.
    repo.git(&["pack-refs", "--all"]);
    let packed = repo.commit("A commit on a packed branch");
    store
        .wait_for("the packed branch to move", |tree| {
            head_of(tree, "main").as_ref() == Some(&packed)
        })
        .await;

    repo.git(&["branch", "--quiet", "-D", "topic"]);
    store
        .wait_for("the deleted branch to go", |tree| {
            head_of(tree, "topic").is_none()
        })
        .await;

    cancel.cancel();
    task.await
        .expect("run task did not panic")
        .expect("run ends cleanly");
}

#[tokio::test]
async fn run_follows_changes_with_file_events() {
    let repo = WorkTree::new();
    let store = StoreFixture::new();
    let local = LocalRepo::new(repo_id("me/live"), &repo.path).expect("valid");
    // A long poll interval, so the file-system events have to do the work.
    let bridge = LocalBridge::new(store.store.clone(), vec![local])
        .with_poll_interval(Duration::from_secs(3600));
    check_run_follows(bridge, &repo, &store).await;
}

#[tokio::test]
async fn run_follows_changes_by_polling() {
    let repo = WorkTree::new();
    let store = StoreFixture::new();
    let local = LocalRepo::new(repo_id("me/live"), &repo.path).expect("valid");
    let bridge = LocalBridge::new(store.store.clone(), vec![local])
        .polling_only()
        .with_poll_interval(Duration::from_millis(50));
    check_run_follows(bridge, &repo, &store).await;
}

/// A burst of ref changes (here 40 branches made one `git branch` at a time, a few milliseconds
/// apart, as a fetch of many branches makes them) is synced a few times, not once per change:
/// syncs woken by events start at least 50 ms apart.
#[tokio::test]
async fn a_burst_of_ref_changes_is_synced_a_few_times() {
    const BRANCHES: usize = 40;
    let repo = WorkTree::new();
    let store = StoreFixture::new();
    let local = LocalRepo::new(repo_id("me/burst"), &repo.path).expect("valid");
    let bridge = LocalBridge::new(store.store.clone(), vec![local])
        .with_poll_interval(Duration::from_secs(3600));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(bridge.run(cancel.clone()));
    let branch_count = |tree: &Snapshot| refs(tree, "me/burst").len();
    store
        .wait_for("the first sync", |tree| branch_count(tree) == 1)
        .await;
    let commits_before = git(&store.path, &["rev-list", "--count", "github-metadata"]);

    let started = std::time::Instant::now();
    let path = repo.path.clone();
    tokio::task::spawn_blocking(move || {
        for n in 0..BRANCHES {
            git(&path, &["branch", &format!("burst-{n:02}")]);
        }
    })
    .await
    .expect("the branches are made");
    let burst = started.elapsed();
    store
        .wait_for("every branch", |tree| branch_count(tree) == BRANCHES + 1)
        .await;
    cancel.cancel();
    task.await
        .expect("run task did not panic")
        .expect("run ends cleanly");

    let count = |text: String| text.trim().parse::<u128>().expect("a commit count");
    let commits = count(git(
        &store.path,
        &["rev-list", "--count", "github-metadata"],
    )) - count(commits_before);
    // One sync per 50 ms of the burst, one for its end, and one to spare.
    let most = burst.as_millis() / 50 + 2;
    assert!(
        commits <= most,
        "{commits} metadata commits for {BRANCHES} branches made in {burst:?} (at most {most})"
    );
}

#[tokio::test]
async fn run_survives_a_failing_sync() {
    let repo = WorkTree::new();
    let store = StoreFixture::new();
    let local = LocalRepo::new(repo_id("me/live"), &repo.path).expect("valid");
    let bridge = LocalBridge::new(store.store.clone(), vec![local])
        .with_poll_interval(Duration::from_millis(50));
    // Occupy the path of `main`'s head with a directory, so writing it fails.
    store
        .write(&[("me/live/ref/heads/main/head/x", "blocker\n")], "Blocker")
        .await;
    let captured = Captured::default();
    // The test runtime is single-threaded, so the bridge's task logs to this subscriber.
    let _guard = tracing::subscriber::set_default(captured.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(bridge.run(cancel.clone()));

    // The sync fails (and says so) until the blocker goes; then it succeeds without a restart.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !captured.text().contains("local repository sync failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning about the failing sync: {}",
            captured.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        captured.text().contains("me/live/ref/heads/main/head"),
        "the warning names the path: {}",
        captured.text()
    );
    store.remove("me/live/ref/heads/main/head").await;
    let main = repo.rev_parse("main");
    store
        .wait_for("main after the blocker went", |tree| {
            read(tree, "me/live/ref/heads/main/head") == Some(format!("{main}\n"))
        })
        .await;
    cancel.cancel();
    task.await
        .expect("run task did not panic")
        .expect("run ends cleanly");
}

/// A tracing subscriber keeping the text of every event (message and fields), for assertions.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<String>>);

impl Captured {
    fn text(&self) -> String {
        self.0.lock().expect("log buffer lock").clone()
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Text<'a>(&'a mut String);
        impl tracing::field::Visit for Text<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        let mut text = format!("{}", event.metadata().level());
        event.record(&mut Text(&mut text));
        let mut log = self.0.lock().expect("log buffer lock");
        log.push_str(&text);
        log.push('\n');
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn a_restarted_bridge_reads_many_stored_refs_back() {
    let repo = WorkTree::new();
    let head = repo.rev_parse("HEAD");
    for i in 0..40 {
        repo.git(&["update-ref", &format!("refs/heads/many/b{i}"), &head]);
        repo.git(&["update-ref", &format!("refs/pull/{i}/head"), &head]);
    }
    let store = StoreFixture::new();
    let local = || LocalRepo::new(repo_id("me/many"), &repo.path).expect("valid");
    let bridge = LocalBridge::new(store.store.clone(), vec![local()]);
    assert_eq!(
        counts(bridge.sync_once().await.expect("sync")),
        report(81, 0, 0, 0)
    );
    let before = store.tree().await;

    // A new bridge reads the 81 stored targets back and finds nothing to do.
    let restarted = LocalBridge::new(store.store.clone(), vec![local()]);
    assert_eq!(
        restarted.sync_once().await.expect("sync"),
        report(0, 0, 0, 0)
    );

    // Another one, after a branch and a PR went away: only they are removed.
    repo.git(&["update-ref", "-d", "refs/heads/many/b7"]);
    repo.git(&["update-ref", "-d", "refs/pull/7/head"]);
    let restarted = LocalBridge::new(store.store.clone(), vec![local()]);
    assert_eq!(
        counts(restarted.sync_once().await.expect("sync")),
        report(0, 0, 2, 0)
    );
    let changed: Vec<String> = before
        .changed_files(&store.tree().await)
        .expect("diff")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changed,
        [
            "me/many/pr/7/base",
            "me/many/pr/7/head",
            "me/many/pr/7/owner",
            "me/many/pr/7/state",
            "me/many/pr/7/title",
            "me/many/ref/heads/many/b7/head",
        ]
    );
}
