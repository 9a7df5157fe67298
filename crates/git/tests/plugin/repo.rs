//! `Repo::open`, `is_after`, `with_checkout` and `with_clone` on real repositories.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use datakit_ci_git::{Commit, Error, Repo};
use datakit_ci_log::{LiveLog, LiveLogSpec};
use datakit_ci_term::{CommitHash, TargetId};

use crate::fixture::{Fixture, branch_target, git, hash, repo_id, tag_target, value};

fn live_log(fx: &Fixture, branch: &str) -> anyhow::Result<LiveLog> {
    Ok(fx.services.logs.create(LiveLogSpec {
        branch: branch.to_owned(),
        title: branch.to_owned(),
        pending: "Testing".to_owned(),
        cancel: None,
    })?)
}

async fn fetch(fx: &Fixture, repo: &Repo, target: TargetId) -> anyhow::Result<Commit> {
    value(fx.eval(&repo.fetch_head(target)).await.result)
}

fn text(log: &LiveLog) -> anyhow::Result<String> {
    Ok(String::from_utf8(log.contents()?)?)
}

#[tokio::test]
async fn a_missing_directory_without_remote_is_an_error() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    // Relative to the test's working directory: the error names the absolute path.
    let relative = PathBuf::from("no-such-directory-for-datakit-ci-git-tests");
    let error = Repo::open(&relative, None, &fx.services)
        .await
        .expect_err("missing directory");
    let absolute = std::env::current_dir()?.join(&relative);
    assert_eq!(
        error.to_string(),
        format!(
            "directory {:?} does not exist (and no remote was given to clone it from)",
            absolute
        )
    );
    assert!(!absolute.exists());
    Ok(())
}

#[tokio::test]
async fn a_missing_directory_with_remote_is_cloned() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let dir = fx.root.join("new/clone");
    let remote = fx.origin.to_str().expect("UTF-8 temp path");
    let repo = Repo::open(&dir, Some(remote), &fx.services).await?;
    assert_eq!(repo.dir(), dir);
    assert_eq!(hash(&dir, "HEAD"), fx.main);
    // `git fetch` into the CI's clone keeps no reflogs (a file per branch, for nothing).
    assert_eq!(
        git(&dir, &["config", "core.logAllRefUpdates"]).trim(),
        "false"
    );
    let pools: Vec<String> = fx
        .services
        .pools
        .list()
        .iter()
        .map(|pool| format!("{} {}", pool.name(), pool.capacity()))
        .collect();
    assert_eq!(pools, vec![format!("{} 1", dir.display())]);
    // The same directory cannot have two locks in one application.
    let error = Repo::open(&dir, None, &fx.services)
        .await
        .expect_err("second open");
    assert!(matches!(error, Error::Lock { .. }), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_failed_clone_is_an_error() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let dir = fx.root.join("clone");
    let remote = fx.root.join("no-such-origin");
    let remote = remote.to_str().expect("UTF-8 temp path");
    let error = Repo::open(&dir, Some(remote), &fx.services)
        .await
        .expect_err("nothing to clone");
    assert_eq!(
        error.to_string(),
        format!("cannot clone {remote:?} into {dir:?}")
    );
    Ok(())
}

#[tokio::test]
async fn only_the_top_of_a_work_tree_can_be_opened() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let plain = fx.root.join("plain");
    std::fs::create_dir(&plain)?;
    let bare = fx.root.join("bare.git");
    git(&fx.root, &["init", "--quiet", "--bare", "bare.git"]);
    let inside = fx.local.join("sub");
    std::fs::create_dir(&inside)?;
    for dir in [plain, bare, inside] {
        let error = Repo::open(&dir, None, &fx.services)
            .await
            .expect_err("not a work tree");
        assert!(
            error.to_string().starts_with(&format!(
                "{dir:?} is not the top level of a git work tree: "
            )),
            "{error}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn is_after_follows_ancestry() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let pr = fetch(&fx, &repo, TargetId::Pr(repo_id(), 1)).await?;
    let main = fetch(&fx, &repo, branch_target("main")).await?;
    assert!(repo.is_after(&fx.main, &pr).await?);
    assert!(repo.is_after(&fx.main, &main).await?);
    assert!(!repo.is_after(&fx.pr, &main).await?);
    let unknown: CommitHash = "0123456789012345678901234567890123456789".parse()?;
    let error = repo
        .is_after(&unknown, &main)
        .await
        .expect_err("unknown commit");
    assert!(
        error.to_string().contains(
            r#""git" "merge-base" "--is-ancestor" "0123456789012345678901234567890123456789""#
        ),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn with_checkout_resets_and_cleans_the_work_tree() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let pr = fetch(&fx, &repo, TargetId::Pr(repo_id(), 1)).await?;
    std::fs::write(fx.local.join("README"), "modified\n")?;
    std::fs::write(fx.local.join("untracked.txt"), "junk\n")?;
    std::fs::create_dir(fx.local.join("build"))?;
    std::fs::write(fx.local.join("build/out.o"), "junk\n")?;
    std::fs::write(fx.local.join(".git/info/exclude"), "*.log\n")?;
    std::fs::write(fx.local.join("ignored.log"), "junk\n")?;

    let log = live_log(&fx, "checkout-test")?;
    let seen = repo
        .with_checkout(&log, &fx.job(), &pr, async |dir: PathBuf| {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .expect("read checkout")
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            names.sort();
            (dir, names, hash(&fx.local, "HEAD"))
        })
        .await?;
    assert_eq!(seen.0, fx.local);
    assert_eq!(seen.1, [".git", "README", "pr.txt"]);
    assert_eq!(seen.2, fx.pr);
    assert_eq!(
        std::fs::read_to_string(fx.local.join("README"))?,
        "one\ntwo\n"
    );
    let log = text(&log)?;
    assert!(
        log.contains(&format!(r#"Running "git" "reset" "--hard" "{}""#, fx.pr)),
        "{log}"
    );
    assert!(log.contains(r#"Running "git" "clean" "-xdf""#), "{log}");
    Ok(())
}

#[tokio::test]
async fn with_checkout_waits_for_the_directory_lock() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let main = fetch(&fx, &repo, branch_target("main")).await?;
    let first_log = live_log(&fx, "first")?;
    let second_log = live_log(&fx, "second")?;
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let waiting = format!("Waiting for lock on {}", fx.local.display());
    let job = fx.job();

    let first = repo.with_checkout(&first_log, &job, &main, async |_dir| {
        entered_tx.send(()).expect("the test waits for this");
        release_rx.await.expect("the test releases the lock");
    });
    let second = repo.with_checkout(&second_log, &job, &main, async |_dir| {
        second_log.pending_reason()
    });
    let observer = async {
        entered_rx.await.expect("first holds the lock");
        // `join!` polled `second` (which queued for the lock) before `first` could send this.
        let reason = second_log.pending_reason();
        let holders = repo_holders(&fx);
        release_tx.send(()).expect("first is waiting");
        (reason, holders)
    };
    let (first, second, (reason, holders)) = tokio::join!(first, second, observer);
    first?;
    assert_eq!(reason, Some(waiting));
    // Once it holds the lock, the second user no longer shows the waiting reason.
    assert_eq!(second?.as_deref(), Some("Testing"));
    assert_eq!(holders, vec![(fx.job().to_string(), "checkout".to_owned())]);
    Ok(())
}

fn repo_holders(fx: &Fixture) -> Vec<(String, String)> {
    fx.services
        .pools
        .list()
        .iter()
        .flat_map(|pool| pool.holders())
        .map(|holder| (holder.job, holder.label))
        .collect()
}

#[tokio::test]
async fn with_clone_gives_a_private_clone_at_the_commit_and_removes_it() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let tagged = fetch(&fx, &repo, tag_target("v0.1")).await?;
    let log = live_log(&fx, "clone-test")?;
    let (dir, mode, head, release, clone_git) = repo
        .with_clone(&log, &tagged, async |dir: PathBuf| {
            let mode = std::fs::metadata(&dir)
                .expect("clone exists")
                .permissions()
                .mode();
            let release = std::fs::read_to_string(dir.join("release.txt")).expect("checked out");
            let head = hash(&dir, "HEAD");
            let clone_git = [
                git(&dir, &["status", "--porcelain"]),
                git(&dir, &["config", "remote.origin.url"]),
                git(&dir, &["for-each-ref"]),
                git(&dir, &["log", "--format=%s", "-1"]),
            ];
            (dir, mode, head, release, clone_git)
        })
        .await?;
    let [status, origin, refs, subject] = clone_git;
    assert_eq!(status, "", "a clean work tree and index");
    assert_eq!(origin.trim(), fx.local.to_str().expect("UTF-8 path"));
    assert_eq!(refs, "", "no refs are copied");
    assert_eq!(subject.trim(), "release");
    assert!(
        dir.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("with_clone")),
        "{dir:?}"
    );
    assert_eq!(mode & 0o777, 0o700);
    assert_eq!(head, fx.tag);
    assert_eq!(release, "0.1\n");
    assert!(!dir.exists(), "the clone is removed afterwards");
    // The repository's own checkout is untouched.
    assert_eq!(hash(&fx.local, "HEAD"), fx.main);
    assert!(!fx.local.join("release.txt").exists());
    let log = text(&log)?;
    assert!(
        log.contains(r#"Running "git" "read-tree" "--reset" "-u" "HEAD""#),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
async fn with_clone_removes_the_clone_when_cancelled() -> anyhow::Result<()> {
    let fx = Fixture::new().await?;
    let repo = fx.repo().await?;
    let main = fetch(&fx, &repo, branch_target("main")).await?;
    let log = live_log(&fx, "clone-cancel-test")?;
    let (dir_tx, dir_rx) = tokio::sync::oneshot::channel();
    let work = repo.with_clone(&log, &main, async |dir: PathBuf| {
        dir_tx.send(dir).expect("the test waits for the directory");
        std::future::pending::<()>().await;
    });
    let dir = tokio::select! {
        result = work => panic!("the work never ends, yet got {result:?}"),
        dir = dir_rx => dir?,
    };
    assert!(
        !dir.exists(),
        "the clone is removed when the future is dropped"
    );
    Ok(())
}

/// Issue 14, defect 8: a CI keeps its temporary clones under its state directory (given as
/// `Services::temp_dir`), so that it can remove those a crash left behind.
#[tokio::test]
async fn issue_14_with_clone_makes_its_clone_in_the_services_temp_dir() -> anyhow::Result<()> {
    let mut fx = Fixture::new().await?;
    let temp_dir = fx.root.join("state").join("tmp");
    fx.services.temp_dir = Some(temp_dir.clone());
    let repo = fx.repo().await?;
    let main = fetch(&fx, &repo, branch_target("main")).await?;
    let log = live_log(&fx, "clone-temp-dir-test")?;
    let (dir, listed) = repo
        .with_clone(&log, &main, async |dir: PathBuf| {
            let listed: Vec<PathBuf> = std::fs::read_dir(&temp_dir)
                .expect("the temporary directory is made")
                .map(|entry| entry.expect("a directory entry").path())
                .collect();
            (dir, listed)
        })
        .await?;
    assert_eq!(dir.parent(), Some(temp_dir.as_path()));
    assert_eq!(listed, vec![dir.clone()]);
    assert!(!dir.exists(), "the clone is removed afterwards");
    assert_eq!(std::fs::read_dir(&temp_dir)?.count(), 0);
    Ok(())
}
