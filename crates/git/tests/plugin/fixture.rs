//! Test fixture: an "origin" repository made by the real `git` (commits on `main`, an annotated
//! tag `v0.1` and a PR ref `refs/pull/1/head` that only origin has), a local clone of it to use as
//! the `Repo` directory, a state store with a `github-metadata` snapshot describing the targets,
//! and `git fsck` run on the store at the end of every test.

use std::path::{Path, PathBuf};
use std::process::Command;

use datakit_ci_cache::CacheMetrics;
use datakit_ci_git::{Repo, Services};
use datakit_ci_log::LogManager;
use datakit_ci_pool::{PoolMetrics, Pools};
use datakit_ci_store::{BranchName, Snapshot, Store, StorePath};
use datakit_ci_term::{CommitHash, JobId, Logs, RefName, RepoId, Status, TargetId, Term};
use prometheus_client::registry::Registry;

pub(crate) struct Fixture {
    pub(crate) root: PathBuf,
    pub(crate) origin: PathBuf,
    pub(crate) local: PathBuf,
    pub(crate) store_path: PathBuf,
    pub(crate) services: Services,
    /// Head of `main`, present in the local clone.
    pub(crate) main: CommitHash,
    /// The commit the annotated tag `v0.1` points to; only in origin.
    pub(crate) tag: CommitHash,
    /// Head of PR 1; only in origin.
    pub(crate) pr: CommitHash,
    pub(crate) snapshot: Snapshot,
    _tmp: tempfile::TempDir,
}

impl Fixture {
    pub(crate) async fn new() -> anyhow::Result<Fixture> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().canonicalize()?;
        let origin = root.join("origin");
        let local = root.join("local");

        git(
            &root,
            &["init", "--quiet", "--initial-branch=main", "origin"],
        );
        std::fs::write(origin.join("README"), "one\n")?;
        git(&origin, &["add", "README"]);
        git(&origin, &["commit", "--quiet", "-m", "one"]);
        std::fs::write(origin.join("README"), "one\ntwo\n")?;
        git(&origin, &["commit", "--quiet", "-am", "two"]);
        let main = hash(&origin, "HEAD");
        git(&root, &["clone", "--quiet", "origin", "local"]);

        // Made after the clone, so that the local repository has to fetch them.
        git(&origin, &["checkout", "--quiet", "--detach", "main"]);
        std::fs::write(origin.join("pr.txt"), "proposed\n")?;
        git(&origin, &["add", "pr.txt"]);
        git(&origin, &["commit", "--quiet", "-m", "proposal"]);
        let pr = hash(&origin, "HEAD");
        git(&origin, &["update-ref", "refs/pull/1/head", pr.as_str()]);
        git(&origin, &["checkout", "--quiet", "--detach", "main"]);
        std::fs::write(origin.join("release.txt"), "0.1\n")?;
        git(&origin, &["add", "release.txt"]);
        git(&origin, &["commit", "--quiet", "-m", "release"]);
        let tag = hash(&origin, "HEAD");
        git(&origin, &["tag", "-a", "v0.1", "-m", "release 0.1"]);
        git(&origin, &["checkout", "--quiet", "main"]);

        let store_path = root.join("state.git");
        let store = Store::open(&store_path)?;
        let mut registry = Registry::default();
        let services = Services {
            store,
            logs: LogManager::new(),
            cache_metrics: CacheMetrics::new(&mut registry),
            pool_metrics: PoolMetrics::new(&mut registry),
            pools: Pools::new(),
            temp_dir: None,
            health: Default::default(),
        };
        let snapshot = write_metadata(
            &services.store,
            &[
                ("me/proj/.monitor", String::new()),
                ("me/proj/ref/heads/main/head", format!("{main}\n")),
                ("me/proj/ref/heads/same-as-pr/head", format!("{pr}\n")),
                ("me/proj/ref/tags/v0.1/head", format!("{tag}\n")),
                ("me/proj/pr/1/head", format!("{pr}\n")),
                ("me/proj/pr/1/state", "open\n".to_owned()),
                ("me/proj/pr/1/owner", "alice\n".to_owned()),
                ("me/proj/pr/1/title", "A proposal\n".to_owned()),
            ],
        )
        .await?;
        Ok(Fixture {
            root,
            origin,
            local,
            store_path,
            services,
            main,
            tag,
            pr,
            snapshot,
            _tmp: tmp,
        })
    }

    /// Makes the local clone's `origin` a `file://` URL, so that fetches go through `git fetch`
    /// (a plain path lets the plugin copy objects in-process).
    pub(crate) fn use_url_origin(&self) {
        let url = format!("file://{}", self.origin.display());
        git(&self.local, &["remote", "set-url", "origin", &url]);
    }

    /// Opens the local clone as a `Repo`.
    pub(crate) async fn repo(&self) -> anyhow::Result<Repo> {
        Ok(Repo::open(&self.local, None, &self.services).await?)
    }

    /// The job the tests evaluate terms as.
    pub(crate) fn job(&self) -> JobId {
        JobId::new(branch_target("main"), "test")
    }

    /// Evaluates `term` until it is no longer pending on something that can resolve.
    pub(crate) async fn eval<T: Clone + Send + Sync + 'static>(&self, term: &Term<T>) -> Status<T> {
        term.evaluate_until_settled(self.job(), Some(self.snapshot.clone()))
            .await
            .status
    }

    /// The text of the saved log in `logs` (the last saved one in the tree).
    pub(crate) async fn saved_log(&self, logs: &Logs) -> anyhow::Result<String> {
        let saved = logs
            .leaves()
            .into_iter()
            .filter_map(|leaf| match leaf {
                datakit_ci_term::LogLeaf::Saved(saved) => Some(saved.clone()),
                datakit_ci_term::LogLeaf::Live(_) => None,
            })
            .next_back()
            .ok_or_else(|| anyhow::anyhow!("no saved log in {logs:?}"))?;
        let commit = self.services.store.commit(saved.commit()).await?;
        let text = commit
            .tree()
            .read_file(&StorePath::new("log")?)?
            .ok_or_else(|| anyhow::anyhow!("no log file in {}", saved.commit()))?;
        Ok(String::from_utf8(text)?)
    }

    /// Makes `count` root commits in origin, each with its own file, on branches `b0`, `b1`, …
    /// (so the local clone lacks them), and adds those branches to the metadata; returns the
    /// targets with their commits and the new metadata snapshot.
    pub(crate) async fn new_branches(
        &self,
        count: usize,
    ) -> anyhow::Result<(Vec<(TargetId, CommitHash)>, Snapshot)> {
        let mut targets = Vec::new();
        let mut files = Vec::new();
        for i in 0..count {
            let name = format!("b{i}");
            git(&self.origin, &["checkout", "--quiet", "--orphan", &name]);
            git(&self.origin, &["rm", "--quiet", "-rf", "--cached", "."]);
            std::fs::write(self.origin.join(format!("{name}.txt")), format!("{i}\n"))?;
            git(&self.origin, &["add", &format!("{name}.txt")]);
            git(&self.origin, &["commit", "--quiet", "-m", &name]);
            let commit = hash(&self.origin, "HEAD");
            files.push((
                format!("me/proj/ref/heads/{name}/head"),
                format!("{commit}\n"),
            ));
            targets.push((branch_target(&name), commit));
        }
        git(&self.origin, &["checkout", "--quiet", "--force", "main"]);
        let files: Vec<(&str, String)> = files
            .iter()
            .map(|(path, contents)| (path.as_str(), contents.clone()))
            .collect();
        let snapshot = write_metadata(&self.services.store, &files).await?;
        Ok((targets, snapshot))
    }

    /// How many packs the local clone has.
    pub(crate) fn local_packs(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        for entry in std::fs::read_dir(self.local.join(".git/objects/pack"))? {
            if entry?.file_name().to_string_lossy().ends_with(".idx") {
                count += 1;
            }
        }
        Ok(count)
    }

    /// How many commits the store branch `branch` has.
    pub(crate) fn store_commits(&self, branch: &str) -> usize {
        let count = git(
            &self.store_path,
            &["rev-list", "--count", &format!("refs/heads/{branch}")],
        );
        count
            .trim()
            .parse()
            .expect("rev-list --count prints a number")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            datakit_ci_testkit::assert_fsck_clean(&self.store_path);
        }
    }
}

/// The value of a successful result, or an error describing the problem.
pub(crate) fn value<T>(result: Result<T, datakit_ci_term::Problem>) -> anyhow::Result<T> {
    result.map_err(|problem| anyhow::anyhow!("expected a value, got {problem:?}"))
}

pub(crate) fn repo_id() -> RepoId {
    "me/proj".parse().expect("valid repo id")
}

pub(crate) fn branch_target(name: &str) -> TargetId {
    TargetId::Ref(repo_id(), RefName::branch(name).expect("valid branch name"))
}

pub(crate) fn tag_target(name: &str) -> TargetId {
    TargetId::Ref(repo_id(), RefName::tag(name).expect("valid tag name"))
}

/// Runs the real `git` in `dir` with a fixed identity and no user configuration; returns stdout.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir, args).output().expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {dir:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("git prints UTF-8 here")
}

/// Whether `git <args>` succeeds in `dir`.
pub(crate) fn git_succeeds(dir: &Path, args: &[&str]) -> bool {
    git_command(dir, args)
        .output()
        .expect("run git")
        .status
        .success()
}

fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    command
}

/// The commit `rev` names in `dir`.
pub(crate) fn hash(dir: &Path, rev: &str) -> CommitHash {
    git(dir, &["rev-parse", &format!("{rev}^{{commit}}")])
        .trim()
        .parse()
        .expect("git prints a commit hash")
}

async fn write_metadata(store: &Store, files: &[(&str, String)]) -> anyhow::Result<Snapshot> {
    let branch = store.branch(&BranchName::new("github-metadata")?);
    let mut transaction = branch.transaction().await?;
    for (path, contents) in files {
        transaction.create_file(&StorePath::new(*path)?, contents)?;
    }
    transaction.commit("test metadata").await?;
    Ok(branch
        .head()
        .await?
        .ok_or_else(|| anyhow::anyhow!("metadata branch has no head after a commit"))?
        .tree())
}
